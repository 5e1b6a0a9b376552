"""The `scribe` command-line interface."""
