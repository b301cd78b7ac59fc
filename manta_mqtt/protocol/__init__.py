"""Protocol v1, with no I/O: topic layout, codec, chunking and message schemas."""
