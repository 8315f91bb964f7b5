"""Run once: config -> runtime -> result file + exit code. Shared by the pod entry and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

from agentry_common import constants as c
from agentry_common.models import Runtime

from . import secrets, telemetry
from .config import ConfigError, RunConfig, load_pod_config, result_file_from_env
from .events import EventSink, JsonEventSink, result_event_fields, secret_values
from .hardening import end_strays, forbid_inspection
from .outcome import Outcome, StopReason, write_result
from .runner import Runner


def finish(outcome: Outcome, sink: EventSink, result_file: Path) -> int:
    end_strays()  # in a pod: nothing a tool left running may rewrite the result after us
    # The result leaves the pod (termination message -> Execution status): redact it like events.
    outcome.summary = sink.scrub(outcome.summary)
    if outcome.approval is not None:
        approval = outcome.approval.items()
        outcome.approval = {k: sink.scrub(v) if isinstance(v, str) else v for k, v in approval}
    write_result(result_file, outcome)
    sink.emit("result", **result_event_fields(outcome))
    return outcome.exit_code


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
    # Kubernetes stops a pod with SIGTERM (deletion, activeDeadlineSeconds): stop cleanly so the
    # result still reaches the termination log within the grace period.
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, runner.request_stop, "terminated (SIGTERM)")
    try:
        with telemetry.run_span(cfg) as span:
            outcome = await runner.run()
            telemetry.record_outcome(span, outcome)
            return outcome
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGTERM)


def execute(cfg: RunConfig, sink: EventSink) -> int:
    """Run a loaded config to its end; never raises, always writes a result."""
    sink.bind(
        correlation_id=cfg.correlation_id,
        execution=cfg.execution,
        # The Agent's own secrets (spec.secrets, from Kubernetes Secrets or Secret Manager) too: tools
        # may use them, but a tool that prints one must not carry it into the events or the result.
        secrets=[*secret_values(cfg.env), *secrets.agent_secret_values(cfg.spec.secrets, cfg.env)],
    )
    telemetry.start()  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
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
    return finish(outcome, sink, cfg.result_file)


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
