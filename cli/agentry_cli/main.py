"""`agentry <command>`: the one CLI of Agentry.

    agentry run -f agent.yaml ...   run an agent on this machine, outside Kubernetes (authors)
    agentry doctor ...              check every channel of an installation (operators)

Each subcommand keeps its own option parser (the runtime's and the doctor's), so `agentry run --help`
and `agentry doctor --help` describe exactly what they accept; Typer only dispatches.
"""

from __future__ import annotations

import sys

import typer

# Options after the subcommand belong to it: Typer must neither parse nor reject them.
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

app = typer.Typer(
    name="agentry",
    help="Agentry: run agents locally and check an installation.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command(context_settings=_PASS_THROUGH)
def run(ctx: typer.Context) -> None:
    """Run an agent locally from an Agent manifest (`agentry run --help` for its options)."""
    from agentry_workspace.cli import main as runtime_main  # the runtime loads only when asked for

    raise typer.Exit(runtime_main(["run", *ctx.args]))


@app.command(context_settings=_PASS_THROUGH)
def doctor(ctx: typer.Context) -> None:
    """Check the gateway, every LLM channel, Firestore, the API server, the operator and the API."""
    from .doctor import main as doctor_main

    raise typer.Exit(doctor_main(ctx.args))


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the subcommand's exit status (2 for a usage error)."""
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="agentry")
    except SystemExit as done:  # standalone mode always ends with one, as does argparse in a subcommand
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
