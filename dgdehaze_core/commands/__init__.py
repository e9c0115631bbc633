"""Subcommands of the `dgdehaze` CLI, one module each (see `dgdehaze_core.cli.COMMANDS`)."""
