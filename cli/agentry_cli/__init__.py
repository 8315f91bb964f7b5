"""The `agentry` command: one entry point with a subcommand per job (see main.py)."""
