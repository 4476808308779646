"""The `aicredits` command line."""
