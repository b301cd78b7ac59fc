"""The coordinator: places tasks, runs rounds, keeps every result, runs the central tasks."""
