"""Run once: config -> runtime -> result file + exit code. Shared by the pod entry and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

from agentry_common import constants as c
from agentry_common.heap import freeze_startup_heap
from agentry_common.models import Runtime

from . import secrets, telemetry
from .config import FULL_RESULT_FILE, ConfigError, RunConfig, load_pod_config, result_file_from_env
from .events import EventSink, JsonEventSink, result_event_fields, secret_values
from .hardening import end_strays, forbid_inspection
from .outcome import Outcome, StopReason, write_result
from .pidguard import PidGuard
from .redaction import redacted_stderr
from .runner import Runner
from .workspace_guard import WorkspaceGuard


def finish(outcome: Outcome, sink: EventSink, result_file: Path, full_result: Path | None = None) -> int:
    end_strays()  # in a pod: nothing a tool left running may rewrite the result after us
    # All of the result leaves the pod (termination message -> Execution status and the next
    # workflow step, the log, result.json): each is written from one copy redacted as a whole.
    report = outcome.redacted(sink.redact)
    write_result(result_file, report)
    if full_result is not None:
        save_full_result(full_result, report, sink)
    sink.emit("result", **result_event_fields(report))
    return report.exit_code


def save_full_result(path: Path, report: Outcome, sink: EventSink) -> None:
    """The untruncated result, <workspace>/.agentry/result.json."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.full(), ensure_ascii=False), encoding="utf-8")
    except OSError as err:
        sink.emit("warning", message=f"cannot save the full result: {err}")


def config_failure(message: str, sink: EventSink, result_file: Path) -> int:
    message = sink.scrub(message)
    sink.emit("error", stopReason=StopReason.CONFIG_ERROR.value, message=message)
    print(f"agentry: configuration error: {message}", file=sys.stderr)
    outcome = Outcome(StopReason.CONFIG_ERROR, f"Configuration error: {message}")
    return finish(outcome, sink, result_file)


async def _run_async(cfg: RunConfig, sink: EventSink) -> Outcome:
    if cfg.spec.runtime is Runtime.CLAUDE_CODE:
        from .claude_code import ClaudeCodeRunner  # only needs the CLI when asked for

        runner: Runner | ClaudeCodeRunner = ClaudeCodeRunner(cfg, sink)
    else:
        runner = Runner(cfg, sink)
    loop = asyncio.get_running_loop()
    # Kubernetes stops a pod with SIGTERM (deletion, eviction, activeDeadlineSeconds): stop cleanly so
    # the result still reaches the termination log within the grace period; a run with a journal
    # finishes its step and stops at the checkpoint (exit 75: a new pod resumes it).
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, runner.interrupt)
    # In a pod: a tool that uses up the pod's process limit ends the run (pidguard.py).
    guard = PidGuard.for_pod(runner.request_stop)
    watch = asyncio.create_task(guard.watch()) if guard is not None else None
    # A kept workspace: one that grows past spec.workspace.size ends the run (workspace_guard.py).
    kept = WorkspaceGuard.from_env(cfg.env, cfg.workspace, runner.request_stop)
    measure = asyncio.create_task(kept.watch()) if kept is not None else None
    try:
        with telemetry.run_span(cfg) as span:
            outcome = pid_limit_outcome(guard, await runner.run())
            if kept is not None and outcome.stop_reason is not StopReason.PID_LIMIT:
                outcome = kept.outcome(outcome)
            telemetry.record_outcome(span, outcome)
            return outcome
    finally:
        for task in (watch, measure):
            if task is not None:
                task.cancel()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


def pid_limit_outcome(guard: PidGuard | None, outcome: Outcome) -> Outcome:
    """The run's outcome, or `pid_limit` with its usage when the guard stopped it (the runner saw only
    a stop request, whatever it was doing then)."""
    if guard is None or not guard.check():
        return outcome
    outcome.stop_reason = StopReason.PID_LIMIT
    outcome.summary = f"Stopped: {guard.note}."
    outcome.approval = None
    return outcome


def execute(cfg: RunConfig, sink: EventSink) -> int:
    """Run a loaded config to its end; never raises, always writes a result."""
    with redacted_stderr(sink.redactor):  # stderr is the pod's log too: tracebacks may quote secrets
        return _execute(cfg, sink)


def _execute(cfg: RunConfig, sink: EventSink) -> int:
    sink.bind(
        correlation_id=cfg.correlation_id,
        execution=cfg.execution,
        # The Agent's own secrets (spec.secrets, from Kubernetes Secrets or Secret Manager) too: tools
        # may use them, but a tool that prints one must not carry it into the events or the result.
        secrets=[*secret_values(cfg.env), *secrets.agent_secret_values(cfg.spec.secrets, cfg.env)],
    )
    telemetry.start()  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    # Full collections during the run skip the tens of thousands of objects the imports made.
    freeze_startup_heap(collect=False)  # not collected first: that would slow every run's start
    try:
        outcome = asyncio.run(_run_async(cfg, sink))
    except ConfigError as err:
        return config_failure(str(err), sink, cfg.result_file)
    except Exception as err:  # the last line of defence: report, don't crash without a result
        traceback.print_exc(file=sys.stderr)
        message = sink.scrub(f"{type(err).__name__}: {err}")
        sink.emit("error", stopReason=StopReason.ERROR.value, message=message)
        outcome = Outcome(StopReason.ERROR, f"Internal error: {message}")
    finally:
        telemetry.stop()  # the spans leave before the process does
    return finish(outcome, sink, cfg.result_file, cfg.state_dir / FULL_RESULT_FILE)


def pod_main(env: Mapping[str, str] | None = None) -> int:
    """`python -m agentry_workspace`: the contract in workspace_image/README.md."""
    forbid_inspection()  # first: before any secret is read, no tool may read this process's memory
    env = dict(os.environ if env is None else env)
    sink = JsonEventSink(
        correlation_id=env.get(c.ENV_CORRELATION_ID, ""),
        execution=env.get(c.ENV_EXECUTION, ""),
        secrets=secret_values(env),
    )
    try:
        # Secret Manager references become env values first: providers read keys from there.
        resolved = secrets.resolve(env)
        env.update(resolved)
        sink.bind(
            correlation_id=sink.correlation_id, execution=sink.execution, secrets=secrets.redactable(resolved)
        )
        cfg = load_pod_config(env)
    except ConfigError as err:
        return config_failure(str(err), sink, result_file_from_env(env))
    return execute(cfg, sink)
