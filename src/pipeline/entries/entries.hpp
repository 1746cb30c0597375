// The registry entries, each defined beside its protocol's other pipeline glue in
// src/pipeline/entries/<protocol>.cpp and listed once in src/pipeline/registry.cpp.
// They are constant-initialised (constinit), so no static initialisation order applies.
#pragma once

#include "strata/pipeline/registry.hpp"

namespace strata::pipeline_detail {

extern const protocol_entry tcp_connect_entry;         ///< tcp:HOST:PORT
extern const protocol_entry tcp_listen_entry;          ///< tcp-listen:HOST:PORT
extern const protocol_entry unix_connect_entry;        ///< unix:PATH | unix:@NAME
extern const protocol_entry unix_listen_entry;         ///< unix-listen:PATH | unix-listen:@NAME
extern const protocol_entry udp_connect_entry;         ///< udp:HOST:PORT
extern const protocol_entry udp_listen_entry;          ///< udp-listen:HOST:PORT
extern const protocol_entry udp_bind_entry;            ///< udp-bind:HOST:PORT
extern const protocol_entry unix_dgram_connect_entry;  ///< unix-dgram:PATH | unix-dgram:@NAME
extern const protocol_entry unix_dgram_listen_entry;   ///< unix-dgram-listen:PATH | unix-dgram-listen:@NAME
extern const protocol_entry unix_dgram_bind_entry;     ///< unix-dgram-bind:PATH | unix-dgram-bind:@NAME
extern const protocol_entry seqpacket_connect_entry;   ///< seqpacket:PATH | seqpacket:@NAME
extern const protocol_entry seqpacket_listen_entry;    ///< seqpacket-listen:PATH | seqpacket-listen:@NAME
extern const protocol_entry exec_connect_entry;        ///< exec:COMMAND (pipe)
extern const protocol_entry fifo_read_entry;           ///< fifo-read:PATH (pipe)
extern const protocol_entry fifo_write_entry;          ///< fifo-write:PATH (pipe)
extern const protocol_entry mq_connect_entry;          ///< mq:/NAME
extern const protocol_entry mq_listen_entry;           ///< mq-listen:/NAME
extern const protocol_entry inproc_connect_entry;      ///< inproc:NAME
extern const protocol_entry inproc_listen_entry;       ///< inproc-listen:NAME
extern const protocol_entry shm_connect_entry;         ///< shm:NAME
extern const protocol_entry shm_listen_entry;          ///< shm-listen:NAME
extern const protocol_entry shm_pub_entry;             ///< shm-pub:NAME
extern const protocol_entry shm_sub_entry;             ///< shm-sub:NAME
extern const protocol_entry shm_queue_entry;           ///< shm-queue:NAME
extern const protocol_entry prefix_entry;              ///< prefix(BYTES, order=, max=)
extern const protocol_entry buffered_entry;            ///< buffered(SIZE)
extern const protocol_entry crlf_entry;                ///< crlf(max=, delim=)
extern const protocol_entry term_entry;                ///< term(DELIM, max=)
extern const protocol_entry mux_entry;   ///< mux(window=, max-frame=, max-streams=, keepalive=, dead-after=)
extern const protocol_entry tls_entry;   ///< tls(sni=, alpn=, ca=, cert=, key=, ...)
extern const protocol_entry dtls_entry;  ///< dtls(sni=, alpn=, ca=, cert=, key=, mtu=, ...)
extern const protocol_entry dccp_entry;  ///< dccp(service=, mtu=, retransmit=, min-rto=, ack-ratio=, window=)
extern const protocol_entry websocket_entry;  ///< websocket(path=, host=, protocols=, deflate=, max=, ...)
extern const protocol_entry http1_entry;      ///< http1(max-body=, header-timeout=, ...)
extern const protocol_entry http_entry;       ///< http(...): http1 or http2 as the peers agree
extern const protocol_entry http2_entry;      ///< http2(max-streams=, ...)

/// reliable(mtu=, window=, send-buffer=, rto-min=, rto-max=, ack-delay=, keepalive=, dead-after=)
extern const protocol_entry reliable_entry;
/// bytes: a byte stream over reliable, ordered messages
extern const protocol_entry bytes_entry;

}  // namespace strata::pipeline_detail
