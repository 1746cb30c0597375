// Registry entries for pipes and FIFOs (include/strata/transport/pipe.hpp): one-way byte
// streams between processes; a spawned child's stdin and stdout as one duplex stream.
//
// row:  pipe::duplex_row for exec (connection-based stream reliable ordered dup_free ipc
//       p2p related-only duplex); fifo::row for fifo-read and fifo-write (the same,
//       any-process simplex: the missing direction answers not_supported)
// spec: exec:COMMAND(shell=0|1, stderr=inherit|stdout|null)
//       fifo-read:PATH(create=0|1, mode=0600), fifo-write:PATH(create=0|1, mode=0600)
#include "strata/transport/pipe.hpp"
#include "../entry_support.hpp"
#include "entries.hpp"

namespace strata::pipeline_detail {
namespace {

constexpr param_info exec_params[] = {
    {.name = "shell",
     .default_value = "0",
     .help = "1 runs COMMAND with /bin/sh -c; 0 splits it on blanks (no quoting)"},
    {.name = "stderr",
     .default_value = "inherit",
     .help = "the child's stderr: inherit (ours), stdout (into the stream) or null"},
};

constexpr param_info fifo_params[] = {
    {.name = "create", .default_value = "1", .help = "1 creates the FIFO (mkfifo) when PATH does not exist"},
    {.name = "mode",
     .default_value = "0600",
     .help = "octal permissions of a created FIFO (before the umask)"},
};

constexpr std::string_view stderr_choices[] = {"inherit", "stdout", "null"};

// connected is a task that completes at once with `c` (set-up that does not block).
task<result<any_connection>> connected(any_connection c) { co_return std::move(c); }

// -- exec ---------------------------------------------------------------------------------

/// exec_config is exec:COMMAND(...) parsed: the child's argv and how to start it.
struct exec_config final : layer_options {
  std::vector<std::string> argv;
  pipe::spawn_options options;
};

bool exec_argv(const spec_layer& layer, std::vector<std::string>& argv, pipe::spawn_options& options,
               spec_error& error) {
  const auto& entry = exec_connect_entry;
  bool shell = false;
  std::size_t where = 0;
  if (!flag_param(entry, layer, "shell", false, shell, error)) return false;
  if (!choice_param(entry, layer, "stderr", stderr_choices, 0, where, error)) return false;
  options.error = where == 1   ? pipe::child_stderr::to_stdout
                  : where == 2 ? pipe::child_stderr::null
                               : pipe::child_stderr::inherit;
  if (layer.target.find('\0') != std::string::npos)
    return fail(error, "exec: a command cannot contain a NUL byte", layer.target_position);
  if (shell) {
    argv = {"/bin/sh", "-c", layer.target};
  } else {
    argv = pipe::split_command(layer.target);
  }
  if (argv.empty()) {
    return fail(error, "exec: empty command; quote a command with arguments: exec:\"sort -r\"",
                layer.target_position);
  }
  return true;
}

layer_options_ptr configure_exec(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<exec_config>();
  if (!check_shape(exec_connect_entry, layer, error) ||
      !exec_argv(layer, config->argv, config->options, error)) {
    return nullptr;
  }
  return config;
}

task<result<any_connection>> connect_exec(layer_options_ptr options, deadline) {
  const auto& config = static_cast<const exec_config&>(*options);
  auto c = pipe::spawn(config.argv, config.options);
  if (!c) return failed_connect(c.error());
  return connected(any_connection(any_stream(std::move(*c))));
}

// -- fifo-read / fifo-write ---------------------------------------------------------------

/// fifo_config is fifo-read:PATH(...) or fifo-write:PATH(...) parsed.
struct fifo_config final : layer_options {
  std::string path;
  fifo::open_options options;
};

bool fifo_options_of(const protocol_entry& entry, const spec_layer& layer, fifo::open_options& options,
                     spec_error& error) {
  if (layer.target.find('\0') != std::string::npos) {
    return fail(error, std::string(entry.name) + ": a path cannot contain a NUL byte", layer.target_position);
  }
  if (!flag_param(entry, layer, "create", true, options.create, error)) return false;
  options.mode = 0600;
  if (const auto* p = entry.find_param(layer, "mode")) {
    const std::string& v = p->value;
    bool octal = !v.empty() && v.size() <= 4 && v.find_first_not_of("01234567") == std::string::npos;
    unsigned long mode = octal ? std::stoul(v, nullptr, 8) : 0;
    if (!octal || mode > 0777) {
      return fail(error,
                  std::string(entry.name) + ": mode must be octal permissions 0 to 0777, got '" + v + "'",
                  p->position);
    }
    options.mode = static_cast<mode_t>(mode);
  }
  return true;
}

template <const protocol_entry& Entry>
layer_options_ptr configure_fifo(const protocol_entry&, const spec_layer& layer, spec_error& error) {
  auto config = std::make_shared<fifo_config>();
  if (!check_shape(Entry, layer, error) || !fifo_options_of(Entry, layer, config->options, error))
    return nullptr;
  config->path = layer.target;
  return config;
}

task<result<any_connection>> connect_fifo_read(layer_options_ptr options, deadline) {
  const auto& config = static_cast<const fifo_config&>(*options);
  auto r = fifo::open_reader(config.path, config.options);
  if (!r) return failed_connect(r.error());
  return connected(any_connection(any_stream(pipe::simplex_stream<pipe::reader>(std::move(*r)))));
}

task<result<any_connection>> connect_fifo_write(layer_options_ptr options, deadline dl) {
  const auto& config = static_cast<const fifo_config&>(*options);
  auto w = co_await fifo::open_writer(config.path, dl, config.options);
  if (!w) co_return unexpected(w.error());
  co_return any_connection(any_stream(pipe::simplex_stream<pipe::writer>(std::move(*w))));
}

}  // namespace

constinit const protocol_entry exec_connect_entry{
    .name = "exec",
    .protocol = "pipe",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &pipe::duplex_row,
    .summary = "start COMMAND with its stdin and stdout as a byte stream (two pipes)",
    .target_help = "COMMAND",
    .params = exec_params,
    .parses_peer_input = false,
    .configure = configure_exec,
    .refine = nullptr,
    .connect = connect_exec,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry fifo_read_entry{
    .name = "fifo-read",
    .protocol = "pipe",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &fifo::row,
    .summary = "read the FIFO at PATH (simplex: writing answers not_supported)",
    .target_help = "PATH",
    .params = fifo_params,
    .parses_peer_input = false,
    .configure = configure_fifo<fifo_read_entry>,
    .refine = nullptr,
    .connect = connect_fifo_read,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

constinit const protocol_entry fifo_write_entry{
    .name = "fifo-write",
    .protocol = "pipe",
    .layer = "transport",
    .role = layer_role::connector,
    .row = &fifo::row,
    .summary = "write the FIFO at PATH once a reader has it open (simplex: reading answers not_supported)",
    .target_help = "PATH",
    .params = fifo_params,
    .parses_peer_input = false,
    .configure = configure_fifo<fifo_write_entry>,
    .refine = nullptr,
    .connect = connect_fifo_write,
    .listen = nullptr,
    .bind = nullptr,
    .wrap = nullptr,
};

}  // namespace strata::pipeline_detail
