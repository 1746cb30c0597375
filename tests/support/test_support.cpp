// Placeholder translation unit; the support library grows with mem_stream and conformance.
