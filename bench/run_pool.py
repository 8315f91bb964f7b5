"""How fast runs start from a warm pool on the local node, beside runs of the same install without one.

    python -m bench.run_pool [--runs 20] [--burst 100] [--pool 10]

It boots the local node with Agentry installed by its chart (as the e2e tier does; serialized with it
through the node's lock), with the scripted provider answering at once and one warm pool, then measures:

- one-turn runs one at a time, each with a warm pod ready: created -> first model call (p50, p99; goals
  1.0 s and 2.0 s, issue 40) and -> Succeeded;
- the baseline from the same run: the same runs of an Agent whose profile (its memory request) no pool
  serves, so each starts as a Job of its own;
- `--burst` runs created at once with a pool of `--pool`: every run ends (claimed or as a Job), and the
  time from the burst's creation until the pool is full again (its refill);
- the pool's idle cost: the memory a warm pod uses while it waits (its cgroup's, read on the node).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from lightkube import Client, KubeConfig

from agentry_testing.scripted_llm import ScriptedLLM
from tests.e2e.node.stack import NodeStack, agent_spec, booted

from .results import record
from .run_starts import Seen, create_run

POOL = "bench"
CLAIM_GOALS = (1.0, 2.0)  # created -> first model call from a warm pool, p50 and p99 (issue 40)


def _q(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wait_full(stack: NodeStack, size: int, timeout: float = 600) -> float:
    """Seconds until `size` warm pods run."""
    started = time.monotonic()
    while len(stack.warm_pods()) < size:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the pool did not reach {size} warm pods in {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def configure(stack: NodeStack, size: int) -> None:
    pool = {"name": POOL, "min": size, "max": size, "idleSeconds": 3600}
    stack.install.extra_values = {"operator": {"pools": [pool]}}
    stack.install.install(lambda msg: print(f"  [node] {msg}", file=sys.stderr, flush=True))


def one_at_a_time(
    client: Client, seen: Seen, stack: NodeStack, llm: ScriptedLLM, agent: str, runs: int, pooled: bool
) -> tuple[list[float], list[float]]:
    first, done = [], []
    for i in range(runs + 1):
        if pooled:
            wait_full(stack, 1)
        llm.reset()
        llm.script([{"text": "done"}])
        name, started = create_run(client, stack.namespace, agent, "Say done.")
        state, at = seen.wait(name, ("Succeeded", "Failed"))
        assert state == "Succeeded", f"run {name} ended {state}"
        conditions = stack.get("execution", name)["status"].get("conditions") or []
        reason = next((x["reason"] for x in conditions if x["type"] == "Pooled"), "")
        assert (reason == "Claimed") == pooled, f"run {name}: Pooled {reason}"
        if i:  # the first run warms the Agent's caches
            first.append(llm.requests[0].at - started)
            done.append(at - started)
    return first, done


def burst(
    client: Client, seen: Seen, stack: NodeStack, llm: ScriptedLLM, agent: str, count: int, size: int
) -> tuple[float, float, int]:
    """`count` runs created at once: seconds until the last ended, until the pool was full again after
    the burst emptied it (its refill, sampled every half second during the burst), and how many runs
    were claimed from it."""
    wait_full(stack, size)
    llm.reset()
    llm.script([{"text": "done", "keep": True}])
    names: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        name, _ = create_run(client, stack.namespace, agent, "Say done.")
        with lock:
            names.append(name)

    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.monotonic() - started, len(stack.warm_pods())))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=create) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(names) == count, f"{count - len(names)} of the {count} runs could not be created (above)"
    for name in names:
        state, _ = seen.wait(name, ("Succeeded", "Failed"), timeout=1200)
        assert state == "Succeeded", f"run {name} ended {state}: {stack.get('execution', name).get('status')}"
    ended = time.monotonic() - started
    wait_full(stack, size)
    done.set()
    sampler.join()
    samples.append((time.monotonic() - started, size))
    emptied = next((t for t, n in samples if n < size), 0.0)
    refill = next(t for t, n in samples if t > emptied and n >= size)
    claimed = sum(
        1
        for name in names
        if any(
            x["type"] == "Pooled" and x["reason"] == "Claimed"
            for x in stack.get("execution", name)["status"].get("conditions") or []
        )
    )
    return ended, refill, claimed


def idle_memory_mib(stack: NodeStack) -> float:
    """A warm pod's memory while it waits: its cgroup's resident memory on this node (cgroup v1's
    `total_rss`, v2's `anon`), MiB."""
    uid = stack.warm_pods()[0]["metadata"]["uid"]
    names = {f"pod{uid}", f"pod{uid.replace('-', '_')}"}
    for root in (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup")):
        for found in root.rglob("memory.stat"):
            if any(name in part for part in found.parts for name in names):
                stat = dict(line.split() for line in found.read_text().splitlines() if " " in line)
                resident = stat.get("total_rss") or stat.get("anon")
                if resident is not None:
                    return int(resident) / 2**20
    raise FileNotFoundError(f"no memory cgroup of pod {uid} on this node")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_pool")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--pool", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentry-bench-pool-"))
    say = lambda msg: print(f"  [node] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    with (
        ScriptedLLM(host="0.0.0.0") as llm,
        booted(work, llm, say, owner="python -m bench.run_pool") as stack,
    ):
        configure(stack, 2)
        client = Client(KubeConfig.from_file(stack.cluster.plane.kubeconfig))
        seen = Seen(client, stack.namespace)
        warm_agent, cold_agent = f"pool-{uuid.uuid4().hex[:4]}", f"cold-{uuid.uuid4().hex[:4]}"
        stack.apply_agent(warm_agent, agent_spec(tools=[]))
        # The baseline: a profile no pool serves (one MiB more memory requested), so a Job of its own.
        stack.apply_agent(cold_agent, agent_spec(tools=[], resources={"requests": {"memory": "257Mi"}}))
        if args.runs:  # 0: the burst only
            cold_first, cold_done = one_at_a_time(client, seen, stack, llm, cold_agent, args.runs, False)
            warm_first, warm_done = one_at_a_time(client, seen, stack, llm, warm_agent, args.runs, True)
            report(cold_first, cold_done, warm_first, warm_done, idle_memory_mib(stack))
        configure(stack, args.pool)
        # Runs queued behind a full node for minutes: a deadline that counts their wait is no failure here.
        burst_agent = f"burst-{uuid.uuid4().hex[:4]}"
        kept = {"succeeded": 100, "failed": 100}  # every run of the burst kept to be counted
        stack.apply_agent(burst_agent, agent_spec(tools=[], timeoutSeconds=1800, historyLimits=kept))
        ended, refill, claimed = burst(client, seen, stack, llm, burst_agent, args.burst, args.pool)
        report_burst(args.burst, args.pool, ended, refill, claimed)


def report(
    cold_first: list[float], cold_done: list[float], first: list[float], done: list[float], idle: float
) -> None:
    base, base_done = statistics.median(cold_first), statistics.median(cold_done)
    p50, p99, end = statistics.median(first), _q(first, 0.99), statistics.median(done)
    print(f"runs from a warm pool on the local node ({len(first)} runs, each with a warm pod ready):")
    print(f"  created -> first model call: p50 {p50:.2f} s, p99 {p99:.2f} s (own Job: p50 {base:.2f} s)")
    print(f"  created -> Succeeded: p50 {end:.2f} s (a Job of its own: p50 {base_done:.2f} s)")
    print(f"  a warm pod's memory while it waits: {idle:.0f} MiB")
    for figure, value, goal in (("p50", p50, CLAIM_GOALS[0]), ("p99", p99, CLAIM_GOALS[1])):
        record(
            "run_pool",
            f"a one-turn run from a warm pool, created -> first model call, {figure}",
            f"{value:.2f} s",
            baseline=f"own Job {base if figure == 'p50' else _q(cold_first, 0.99):.2f} s",
            ratio=f"{value / (base if figure == 'p50' else _q(cold_first, 0.99)):.2f}x",
            goal=f"<= {goal:.1f} s (issue 40)",
            met=value <= goal,
        )
    record(
        "run_pool",
        "a one-turn run from a warm pool, created -> Succeeded, p50",
        f"{end:.2f} s",
        baseline=f"own Job {base_done:.2f} s",
        ratio=f"{end / base_done:.2f}x",
    )
    record("run_pool", "a warm pod's memory while it waits (idle cost)", f"{idle:.0f} MiB")


def report_burst(count: int, size: int, ended: float, refill: float, claimed: int) -> None:
    print(f"  {count} runs created at once, pool of {size}: all ended in {ended:.1f} s ({claimed} claimed),")
    print(f"    the pool full again {refill:.1f} s after the burst began (refill, sampled every 0.5 s)")
    record(
        "run_pool",
        f"{count} runs created at once, pool of {size}: every run ended",
        f"{ended:.1f} s",
        baseline=f"{claimed} claimed, {count - claimed} as Jobs",
        goal="no run waits forever",
        met=True,
    )
    record("run_pool", f"{count} runs at once, pool of {size}: pool full again (refill)", f"{refill:.1f} s")


if __name__ == "__main__":
    main()
