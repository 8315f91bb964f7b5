"""`agentry run -f agent.yaml`: the same runtime on an author's machine, outside Kubernetes."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from agentry_common import constants as c

from .app import config_failure, execute
from .config import (
    ENV_WORKSPACE,
    STATE_DIR,
    ConfigError,
    build_config,
    load_manifest_file,
    read_saved_state,
)
from .events import EventSink, JsonEventSink, secret_values
from .hardening import forbid_inspection
from .state import Decision, ResumeRequest


class PrettySink(EventSink):
    """Readable progress for a terminal: model text as it streams, one line per step."""

    def __init__(self, stream: TextIO | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stream = stream
        self._midline = False
        self._streamed = ""  # model text already shown while it streamed

    @property
    def out(self) -> TextIO:
        return self._stream or sys.stdout

    def _line(self, text: str) -> None:
        if self._midline:
            self.out.write("\n")
            self._midline = False
        self.out.write(text + "\n")
        self.out.flush()

    def text_delta(self, text: str) -> None:
        self._streamed = (self._streamed + text)[-65536:]
        self.out.write(self.scrub(text))
        self.out.flush()
        self._midline = not text.endswith("\n")

    def write(self, line: str, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "start":
            self._line(
                f"▶ {event['agent']} · {', '.join(event['providers'])} · "
                f"tools: {', '.join(event['tools']) or 'none'}"
            )
        elif kind == "turn" and event.get("toolCalls"):
            self._line(f"  turn {event['turn']} → {', '.join(event['toolCalls'])}")
        elif kind == "tool_call":
            self._line(f"  ⚙ {event['tool']}: {event['arguments']}  [{event.get('risk')}]")
        elif kind == "tool_result":
            mark = "✗" if event["isError"] else "✓"
            self._line(f"    {mark} {event['summary'][:160]}")
        elif kind in ("retry", "fallback", "breaker", "warning", "error", "approval_decision"):
            details = {k: v for k, v in event.items() if k not in ("ts", "type", "correlationId")}
            self._line(f"  ! {kind}: {details}")
        elif kind == "approval_request":
            self._line(
                f"⏸ approval needed ({event['approvalId']}): {event['tool']} {event['arguments']}\n"
                f"  reason: {event['reason']}\n"
                "  resume with: agentry run -f <agent.yaml> --approve  (or --deny --reason ...)"
            )
        elif kind == "result":
            usage = event.get("usage") or {}
            self._line(
                f"■ {event['stopReason']} (exit {event['exitCode']}) · "
                f"{usage.get('inputTokens', 0)} in / {usage.get('outputTokens', 0)} out tokens · "
                f"${usage.get('costUSD', '0')}"
            )
            summary = event.get("summary") or ""
            if summary and not self._streamed.rstrip().endswith(summary.rstrip()):
                self._line(summary)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentry", description="Agentry agent runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an agent locally")
    run.add_argument("-f", "--file", required=True, type=Path, help="agent.yaml (an Agent manifest)")
    run.add_argument("--input", default=None, help="the task text for this run ('-' reads stdin)")
    run.add_argument("--json", action="store_true", help="JSON events on stdout instead of text")
    run.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="working directory for tools (default: $AGENTRY_WORKSPACE or ./agentry-workspace)",
    )
    run.add_argument(
        "--result-file",
        type=Path,
        default=None,
        help="where to write the termination message (default: <workspace>/.agentry/termination-log)",
    )
    decision = run.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="resume, approving what waits")
    decision.add_argument("--deny", action="store_true", help="resume, denying what waits")
    run.add_argument("--reason", default="", help="reason recorded with --approve/--deny")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    forbid_inspection()  # tools must not read this process's environment or memory (hardening.py)
    env = dict(os.environ)
    workspace = (args.workspace or Path(env.get(ENV_WORKSPACE) or "agentry-workspace")).absolute()
    result_file = args.result_file or workspace / STATE_DIR / "termination-log"
    sink_kwargs: dict[str, Any] = {
        "correlation_id": env.get(c.ENV_CORRELATION_ID, ""),
        "execution": env.get(c.ENV_EXECUTION, ""),
        "secrets": secret_values(env),
    }
    sink: EventSink = JsonEventSink(**sink_kwargs) if args.json else PrettySink(**sink_kwargs)
    try:
        name, namespace, spec = load_manifest_file(args.file)
        resume = None
        execution = None
        if args.approve or args.deny:
            state = read_saved_state(workspace)
            execution = state.execution
            resume = ResumeRequest(
                state=state,
                decision=Decision(
                    approval_id=state.pending.approval_id,
                    approved=bool(args.approve),
                    decided_by=_whoami(),
                    reason=args.reason,
                ),
            )
        input_text = sys.stdin.read() if args.input == "-" else args.input
        cfg = build_config(
            env,
            spec=spec,
            name=name,
            namespace=namespace,
            input_text=input_text or "",
            workspace=workspace,
            result_file=result_file,
            resume=resume,
            execution=execution,
        )
    except ConfigError as err:
        return config_failure(str(err), sink, result_file)
    return execute(cfg, sink)


def _whoami() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


if __name__ == "__main__":
    sys.exit(main())
