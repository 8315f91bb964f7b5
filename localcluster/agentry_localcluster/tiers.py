"""`make test`'s order: the one-time builds in the background, each tier as soon as what it needs is done.

The builds run one after another in one background line (helm; the control plane, the MCP server and
the collector; the node's binaries, the images and Chromium). Beside them:

1. lint, and the unit tier once helm is built;
2. the e2e tier once the images are built: its time goes to pods starting and runs on the node (under
   half a core on the test machine besides the pods), so it need not wait for the unit tier;
3. the integration tier once the control plane is built and the unit tier is done (both keep the two
   cores busy), and beside it the chaos tier (its five minutes mostly wait on kills and restarts: half
   a core).

Cold, the integration and chaos tiers run while the images build.

A tier starts only after the build it needs succeeded, with `AGENTRY_NO_BUILD=1` so its own pytest does
not check the builds again (it would wait on the lock the background builds hold). Every tier runs
even after another failed, so one run reports every failure; the exit code is 1 if anything failed.
Lines of tiers running side by side carry their tier's name. At the end, each failed step's failures
are printed again (pytest's FAILED/ERROR lines, else its last lines): a CI log is often read by its tail.
The last line gives the run's time and how the machine's CPU was shared over it: on a virtual machine
the host may take a share (steal), which makes the same run take longer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PY = sys.executable
PYTEST = (PY, "-m", "pytest")
# Two xdist workers, a module each at a time (its module fixtures stay on one worker), in collection
# order (pyproject's addopts).
PARALLEL = ("-n", "2", "--dist", "loadfile")
RECAP_LINES = 40  # at most this many lines of each failed step are printed again at the end


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    needs: str | None = None  # the build this step waits for (a tier of prepare)
    after: tuple[str, ...] = ()  # the steps it waits for (whatever their outcome): they take the CPU


BUILDS = ("unit", "integration", "e2e")
LINT = Step("lint", ("make", "--no-print-directory", "lint"))
UNIT = Step("unit tier", (*PYTEST, "-m", "unit", "-q", *PARALLEL), "unit")
INTEGRATION = Step(
    "integration tier",
    (*PYTEST, "-m", "integration and not chaos", "-q", *PARALLEL, "--durations=15"),
    "integration",
    after=(UNIT.name,),
)
CHAOS = Step("chaos tier", (*PYTEST, "-m", "chaos", "-q", "--durations=5"), "integration", (UNIT.name,))
E2E = Step("e2e tier", (*PYTEST, "-m", "e2e", "-q", "--durations=10"), "e2e")
STEPS: tuple[Step, ...] = (LINT, UNIT, E2E, INTEGRATION, CHAOS)


@dataclass
class Run:
    """What has happened so far: the builds done (or failed) and every step's outcome."""

    built: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    ended: dict[str, asyncio.Event] = field(default_factory=dict)
    results: dict[str, int] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)  # what each failed step printed last
    prefix: bool = False


class _Recap:
    """A step's pytest FAILED/ERROR lines and its last lines, to print again if it fails."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.tail: deque[str] = deque(maxlen=RECAP_LINES)

    def add(self, line: str) -> None:
        self.tail.append(line)
        if line.startswith(("FAILED ", "ERROR ")) and len(self.failed) < RECAP_LINES:
            self.failed.append(line)

    def lines(self) -> list[str]:
        if not self.failed:
            return list(self.tail)
        return [*self.failed, self.tail[-1]] if self.tail else self.failed


def _say(msg: str) -> None:
    print(f"[make test] {msg}", flush=True)


async def _run(run: Run, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Run argv, its output line by line (prefixed with `name` when steps run side by side)."""
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    assert proc.stdout is not None
    recap = _Recap()
    async for raw in proc.stdout:
        line = raw.decode(errors="replace").rstrip("\n")
        recap.add(line)
        print(f"[{name}] {line}" if run.prefix else line, flush=True)
    rc = await proc.wait()
    _say(f"{name}: {time.monotonic() - t0:.0f} s (exit {rc})")
    run.results[name] = rc
    if rc:
        run.failures[name] = recap.lines()
    return rc


def prepare_argv(tier: str) -> tuple[str, ...]:
    return (PY, "-m", "agentry_localcluster.prepare", tier)


async def _builds(run: Run, build: Callable[[str], Sequence[str]]) -> None:
    """The one-time builds, tier by tier; a failed one fails the later ones too (they include it)."""
    ok = True
    for tier in BUILDS:
        if ok:
            ok = await _run(run, f"builds for {tier}", build(tier)) == 0
        run.built[tier].set_result(ok)


async def _step(run: Run, step: Step) -> None:
    try:
        await _start(run, step)
    finally:
        run.ended[step.name].set()


async def _start(run: Run, step: Step) -> None:
    for earlier in step.after:
        await run.ended[earlier].wait()
    env = None
    if step.needs is not None:
        if not await run.built[step.needs]:
            _say(f"{step.name}: not run, its one-time builds failed (above)")
            run.results[step.name] = 1
            return
        env = {**os.environ, "AGENTRY_NO_BUILD": "1"}
    await _run(run, step.name, step.argv, env)


async def pipeline(steps: Sequence[Step], build: Callable[[str], Sequence[str]] = prepare_argv) -> int:
    """Run every step beside the builds, each once its build and the steps it comes after are done;
    0 if every build and step passed."""
    unknown = {a for s in steps for a in s.after} - {s.name for s in steps}
    if unknown:
        raise ValueError(f"steps come after steps that are not run: {sorted(unknown)}")
    loop = asyncio.get_running_loop()
    run = Run(
        built={tier: loop.create_future() for tier in BUILDS},
        ended={s.name: asyncio.Event() for s in steps},
        prefix=True,
    )
    builds = asyncio.create_task(_builds(run, build))
    await asyncio.gather(*(_step(run, s) for s in steps))
    await builds
    failed = sorted(name for name, rc in run.results.items() if rc)
    for name in failed:
        if run.failures.get(name):
            _say(f"{name} failed with:")
            print("\n".join(f"  {line}" for line in run.failures[name]), flush=True)
    _say(f"failed: {', '.join(failed)}" if failed else "every step passed")
    return 1 if failed else 0


# /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest time is inside user).
_CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def cpu_times(stat: str) -> dict[str, int]:
    """The machine's CPU time by kind (clock ticks) from /proc/stat's text."""
    values = stat.splitlines()[0].split()[1 : 1 + len(_CPU_FIELDS)]
    return dict(zip(_CPU_FIELDS, map(int, values), strict=False))


def cpu_shares(before: dict[str, int], after: dict[str, int]) -> str:
    """How the CPU was spent between two samples: busy (ours), idle (idle and I/O wait), and steal
    (taken by the host), in per cent."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in _CPU_FIELDS}
    total = sum(delta.values()) or 1
    idle, steal = delta["idle"] + delta["iowait"], delta["steal"]
    busy = total - idle - steal
    pct = [round(100 * part / total) for part in (busy, idle, steal)]
    return f"CPU {pct[0]} % busy, {pct[1]} % idle, {pct[2]} % steal"


def _cpu_now() -> dict[str, int]:
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return cpu_times(stat.read())
    except OSError:
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentry-test", description=__doc__)
    parser.parse_args(argv)
    t0, cpu0 = time.monotonic(), _cpu_now()
    rc = asyncio.run(pipeline(STEPS))
    cpu1 = _cpu_now()
    shares = f" ({cpu_shares(cpu0, cpu1)})" if cpu0 and cpu1 else ""
    _say(f"total: {time.monotonic() - t0:.0f} s{shares}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
