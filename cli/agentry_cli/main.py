"""`agentry <command>`: the one CLI of Agentry.

    agentry login --url URL --token TOKEN      save where the API is and who you are
    agentry agents list|get|apply              agents through the API
    agentry runs submit|reply|interrupt|list|get|cancel  runs (`submit --wait` exits by how the run ended)
    agentry logs RUN [-f]                      a run's log, then its progress live
    agentry approvals list, approve, deny      the approval inbox
    agentry triggers list|create|show|test ... URLs whose signed deliveries start runs
    agentry usage, budgets                     what you spent, and what you may still spend
    agentry run -f agent.yaml ...              run an agent on this machine (authors)
    agentry doctor ...                         check every channel of an installation (operators)

`run` and `doctor` keep their own option parsers (the runtime's and the doctor's); Typer only
dispatches to them. The API commands share --api-url/--token (or AGENTRY_API_URL/AGENTRY_TOKEN, or
the file `agentry login` writes) and the exit codes of `exits.ExitCode` (docs/cli.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .client import ApiError
from .commands import account, agents, approvals, logs, notifications, runs, triggers
from .config import ConfigError
from .exits import ExitCode
from .session import InputError, Session

# Options after the subcommand belong to it: Typer must neither parse nor reject them.
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

app = typer.Typer(
    name="agentry",
    help="Agentry: agents, runs, logs, approvals and budgets through the API; run agents locally; doctor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def options(
    ctx: typer.Context,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="the Agentry API (default: AGENTRY_API_URL, the config file)"),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="API token (default: AGENTRY_TOKEN, the config file)")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="config file (default: ~/.config/agentry/config.yaml)")
    ] = None,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="cluster mode: agents and runs through the Kubernetes API with this kubeconfig",
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="cluster mode: namespace (default: the kubeconfig's)"),
    ] = None,
) -> None:
    ctx.obj = Session(api_url, token, config_file, kubeconfig, namespace)
    ctx.call_on_close(ctx.obj.close)


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


app.command()(account.login)
app.add_typer(agents.app, name="agents")
app.add_typer(runs.app, name="runs")
app.command("logs")(logs.logs)
app.add_typer(approvals.app, name="approvals")
app.command()(approvals.approve)
app.command()(approvals.deny)
app.command()(account.usage)
app.add_typer(account.budgets_app, name="budgets")
app.add_typer(triggers.app, name="triggers")
app.add_typer(notifications.app, name="notifications")


def fail(message: str, code: ExitCode) -> int:
    print(message, file=sys.stderr)
    return int(code)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status (docs/cli.md; 2 for a usage error)."""
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="agentry")
    except SystemExit as done:  # standalone mode always ends with one, as does argparse in a subcommand
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    except ApiError as exc:
        return fail(exc.one_line(), exc.exit_code)
    except (ConfigError, InputError) as exc:
        return fail(f"error: {exc}", ExitCode.USAGE)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
