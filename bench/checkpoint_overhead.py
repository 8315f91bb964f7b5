"""Checkpoint overhead per turn: a run's turn time with its journal at the gateway, as a ratio to the
same run without a journal, in the same process and the same rounds.

    python -m bench.checkpoint_overhead [--runs 15] [--turns 10] [--delays 0,0.5]

Three processes: the scripted LLM server, the gateway (`python -m agentry_gateway`, memory ledger)
and this one, which runs the runtime's agent loop (agentry_workspace.runner.Runner) with the run
token as its key and the gateway as its provider. Each turn is one model call (a `files list` tool
call, or the final answer) and its tool call; with the journal, each turn's entries (model answer,
intent and result) ride the next model call (`files list` is idempotent and quick: its intent goes
with its result), which the gateway stores while it routes the call and checks for a queued steering
message; the final answer goes in the run's closing append. A turn's time is the
run's time after its first model answer, per turn after it (reading the journal and starting are once
per pod, printed as the whole run's ratio). Runs alternate with and
without the journal, so drift on a shared machine hits both alike. Goals (issue 38): at most +5 % with
the model answering at once, at most +1 % with a 500 ms model.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from agentry_common.checkpoints import ENV_CHECKPOINT_URL, derive_state_key
from agentry_common.models import AgentSpec
from agentry_common.statesig import ENV_STATE_KEY
from agentry_common.tokens import Keyring, mint_run_token
from agentry_localcluster import localhttp
from agentry_localcluster.procs import Proc
from agentry_workspace.config import build_config
from agentry_workspace.events import JsonEventSink
from agentry_workspace.outcome import StopReason
from agentry_workspace.runner import Runner

from .gateway_overhead import KEY, start_gateway
from .results import record

GOALS = {0.0: 1.05, 0.5: 1.01}  # model delay (s) -> the largest ratio allowed


def script(turns: int, runs: int, delay: float) -> list[dict[str, object]]:
    tool = {"tool_use": {"name": "files", "input": {"operation": "list", "path": "."}}, "delay": delay}
    final = {"text": "done", "delay": delay}
    return [*([tool] * (turns - 1)), final] * runs


async def one_run(work: Path, url: str, journal: bool, turns: int) -> tuple[float, float]:
    """Seconds per turn of one run, and the whole run's seconds."""
    uid = uuid.uuid4().hex
    token = mint_run_token(
        Keyring.single(KEY, "bench"),
        namespace="bench",
        execution=f"ex-{uid[:8]}",
        agent="a",
        execution_uid=uid,
        active_deadline_seconds=3600,
    )
    env = {"ANTHROPIC_API_KEY": token, "ANTHROPIC_BASE_URL": url, "AGENTRY_RETRY_ATTEMPTS": "1"}
    if journal:
        env |= {ENV_CHECKPOINT_URL: url, ENV_STATE_KEY: derive_state_key(KEY.encode(), "bench", uid)}
    spec = AgentSpec.model_validate(
        {
            "instructions": "bench",
            "model": {"provider": "anthropic", "name": "claude-sonnet-4-6"},
            "tools": ["files"],
            "budget": {"maxTurns": turns + 1},
        }
    )
    cfg = build_config(
        env,
        spec=spec,
        name="a",
        namespace="bench",
        input_text="go",
        workspace=work / "ws",
        result_file=work / "result",
        execution=f"ex-{uid[:8]}",
    )
    sink = TurnClock(io.StringIO(), correlation_id="bench", execution=cfg.execution)
    started = time.perf_counter()
    outcome = await Runner(cfg, sink).run()
    ended = time.perf_counter()
    if outcome.stop_reason is not StopReason.END_TURN or (journal and not outcome.checkpoint):
        raise SystemExit(f"bench run failed: {outcome.stop_reason} {outcome.summary}")
    # Turns: from the end of the first model call to the run's end, per turn after the first (the
    # start, reading the journal, and the first call are the run's, once).
    first = sink.first_turn or started
    return (ended - first) / (turns - 1), ended - started


class TurnClock(JsonEventSink):
    """Notes when the first `turn` event (the first model answer) is emitted."""

    first_turn = 0.0

    def write(self, line: str, event: dict[str, object]) -> None:
        if event["type"] == "turn" and not self.first_turn:
            self.first_turn = time.perf_counter()
        super().write(line, event)


def start_llm(work: Path, items: list[dict[str, object]]) -> tuple[Proc, str]:
    path = work / "script.json"
    path.write_text(json.dumps(items))
    argv = [sys.executable, "-m", "agentry_testing.scripted_llm", "--port", "0", "--script", str(path)]
    llm = Proc("scripted-llm", argv, work / "llm.log").start()
    port = int(llm.wait_for_log(r"scripted LLM listening on http://[^:]+:(\d+)", 30, "listening").group(1))
    url = f"http://127.0.0.1:{port}"
    llm.wait_ready(lambda: localhttp.get(f"{url}/healthz").status_code == 200, 30, "ready")
    return llm, url


def measure(work: Path, delay: float, runs: int, turns: int) -> dict[bool, tuple[float, float]]:
    """Median seconds per turn and per run, without and with the journal (one unmeasured run of each
    first)."""
    llm, llm_url = start_llm(work, script(turns, 2 * (runs + 1), delay))
    gateway, url = start_gateway(work, f"gw-{delay}", llm_url, "memory", {})
    try:
        samples: dict[bool, list[tuple[float, float]]] = {False: [], True: []}

        async def rounds() -> None:
            for i in range(runs + 1):
                for journal in (False, True):
                    sample = await one_run(work, url, journal, turns)
                    if i:
                        samples[journal].append(sample)

        asyncio.run(rounds())
        return {
            j: (statistics.median(t for t, _ in v), statistics.median(r for _, r in v))
            for j, v in samples.items()
        }
    finally:
        gateway.stop()
        llm.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_overhead")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--delays", default="0,0.5", help="model seconds per answer, comma separated")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentry-bench-ckpt-"))
    print(f"checkpoint overhead per turn: {args.runs} runs of {args.turns} turns per path, alternating")
    failed = False
    for delay in (float(d) for d in args.delays.split(",")):
        figures = measure(work, delay, args.runs, args.turns)
        (base, base_run), (journaled, journaled_run) = figures[False], figures[True]
        ratio = journaled / base
        goal = GOALS.get(delay)
        met = None if goal is None else ratio <= goal
        failed |= met is False
        print(
            f"  model {delay * 1000:4.0f} ms: a turn without {base * 1000:8.2f} ms, with journal "
            f"{journaled * 1000:8.2f} ms: {ratio:.3f}x (+{(journaled - base) * 1000:.2f} ms)"
            + ("" if goal is None else f", goal <= {goal:.2f}x: {'met' if met else 'NOT met'}")
        )
        print(
            f"  {'':13} the whole run (start, journal read): without {base_run * 1000:8.1f} ms, with "
            f"{journaled_run * 1000:8.1f} ms: {journaled_run / base_run:.3f}x"
        )
        record(
            "checkpoint_overhead",
            f"a turn (model call + tool call) with its journal at the gateway, model {delay * 1000:.0f} ms",
            f"{journaled * 1000:.2f} ms",
            baseline=f"no journal {base * 1000:.2f} ms",
            ratio=f"{ratio:.3f}x",
            goal="" if goal is None else f"<= {goal:.2f}x",
            met=met,
        )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
