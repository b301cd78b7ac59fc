"""Protocol v2, with no I/O: topic layout, codec, chunking, message schemas and the limits peers respect."""
