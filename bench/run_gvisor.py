"""What gVisor costs a run's start on the local node: the `gvisor` RuntimeClass beside runc.

    python -m bench.run_gvisor [--runs 10]

It boots the local node with Agentry installed by its chart (as the e2e tier does; serialized with it
through the node's lock), with the scripted provider answering at once, then measures, one after the
other and alternating the two runtimes so both see the same machine:

- a one-turn Agent run (no tools), Execution created -> Succeeded, under runc (the Agent without
  spec.runtimeClassName) and under gVisor (the same Agent with `runtimeClassName: gvisor`);
- a bare Job of the workspace image running `python3 -c 'print(1)'` under the run pods' security
  context, created -> Complete, under each.

Reported: each p50 and gVisor's ratio to runc (no goal: the price of the stronger sandbox, issue 40).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from lightkube import Client, KubeConfig
from lightkube.resources.batch_v1 import Job

from agentry_localcluster.gvisor import RUNTIME_CLASS
from agentry_testing.scripted_llm import ScriptedLLM
from tests.e2e.node.stack import NodeStack, agent_spec, booted

from .results import record
from .run_starts import Seen, create_run

RUNTIMES: dict[str, str | None] = {"runc": None, "gvisor": RUNTIME_CLASS}


def one_turn(client: Client, seen: Seen, stack: NodeStack, llm: ScriptedLLM, agent: str) -> tuple[str, float]:
    llm.reset()
    llm.script([{"text": "done"}])
    name, started = create_run(client, stack.namespace, agent, "Say done.")
    state, at = seen.wait(name, ("Succeeded", "Failed"))
    if state != "Succeeded":
        raise AssertionError(f"run {name} ended {state}: {stack.get('execution', name).get('status')}")
    return name, at - started


def bare_job(client: Client, seen: Seen, ns: str, template: dict[str, Any], runtime: str | None) -> float:
    """A Job of the run pod's image, security context and RuntimeClass printing 1: created -> Complete."""
    pod, container = template["spec"], template["spec"]["containers"][0]
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": pod["securityContext"],
        "containers": [
            {
                "name": "main",
                "image": container["image"],
                "imagePullPolicy": container.get("imagePullPolicy", "IfNotPresent"),
                "command": ["python3", "-c", "print(1)"],
                "securityContext": container["securityContext"],
            }
        ],
    }
    if runtime:
        spec["runtimeClassName"] = runtime
    name = f"bare-{uuid.uuid4().hex[:6]}"
    body = {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"backoffLimit": 0, "template": {"spec": spec}},
    }
    started = time.time()
    client.create(cast(Job, Job.from_dict(body)))
    state, at = seen.wait(name, ("Complete", "JobFailed"))
    if state != "Complete":
        raise AssertionError(f"bare Job {name} ({runtime or 'runc'}) failed")
    return at - started


def measure(stack: NodeStack, llm: ScriptedLLM, runs: int) -> dict[str, dict[str, list[float]]]:
    client = Client(KubeConfig.from_file(stack.cluster.plane.kubeconfig))
    seen = Seen(client, stack.namespace)
    agents = {}
    for runtime, cls in RUNTIMES.items():
        agents[runtime] = f"gv-{runtime}-{uuid.uuid4().hex[:4]}"
        extra = {"runtimeClassName": cls} if cls else {}
        stack.apply_agent(agents[runtime], agent_spec(tools=[], **extra))
    times: dict[str, dict[str, list[float]]] = {r: {"run": [], "bare": []} for r in RUNTIMES}
    template: dict[str, Any] = {}
    for i in range(runs + 1):
        for runtime in RUNTIMES:
            name, took = one_turn(client, seen, stack, llm, agents[runtime])
            if i:  # the first of each warms the Agent's caches and the image in each runtime
                times[runtime]["run"].append(took)
            template = (
                template or stack.items("jobs", "-l", f"agentry.dev/execution={name}")[0]["spec"]["template"]
            )
    for i in range(runs + 1):
        for runtime, cls in RUNTIMES.items():
            took = bare_job(client, seen, stack.namespace, template, cls)
            if i:
                times[runtime]["bare"].append(took)
    return times


def report(times: dict[str, dict[str, list[float]]]) -> None:
    p50 = {r: {k: statistics.median(v) for k, v in kinds.items()} for r, kinds in times.items()}
    runs = len(times["runc"]["run"])
    print(f"gVisor beside runc on the local node ({runs} of each), p50:")
    for what, label in (
        ("run", "one-turn run, created -> Succeeded"),
        ("bare", "bare Job, created -> Complete"),
    ):
        runc, gvisor = p50["runc"][what], p50["gvisor"][what]
        print(f"  {label}: runc {runc:.2f} s, gVisor {gvisor:.2f} s ({gvisor / runc:.2f}x)")
        record(
            "run_gvisor",
            f"{label} under gVisor (runtimeClassName: gvisor), p50",
            f"{gvisor:.2f} s",
            baseline=f"runc {runc:.2f} s",
            ratio=f"{gvisor / runc:.2f}x",
        )
    gvisor, runc = (p50[r]["run"] / p50[r]["bare"] for r in ("gvisor", "runc"))
    print(f"  a run costs {gvisor:.2f}x a bare Job under gVisor, {runc:.2f}x under runc")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_gvisor")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentry-bench-gvisor-"))
    say = lambda msg: print(f"  [node] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    with (
        ScriptedLLM(host="0.0.0.0") as llm,
        booted(work, llm, say, owner="python -m bench.run_gvisor") as stack,
    ):
        times = measure(stack, llm, args.runs)
    report(times)


if __name__ == "__main__":
    main()
