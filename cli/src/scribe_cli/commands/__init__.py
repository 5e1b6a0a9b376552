"""The `scribe` commands, one module per concern; `scribe_cli.main` assembles them."""
