"""The `xvit` command line."""
