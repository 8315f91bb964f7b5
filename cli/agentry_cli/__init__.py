"""The `agentry` command: one entry point with a subcommand per job (see main.py)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentry-cli")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
