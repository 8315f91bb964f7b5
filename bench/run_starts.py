"""How fast runs start and resume on the local node, step by step, as ratios to a bare Job of the same image.

    python -m bench.run_starts [--runs 10] [--resumes 5]

It boots the local node with Agentry installed by its chart (as the e2e tier does; serialized with it
through the node's lock), with the scripted provider answering at once, then measures, one at a time:

- a bare Job of the workspace image running `python3 -c 'print(1)'` under the run pods' security
  context: created -> Complete (the baseline), and created -> its pod's exit seen;
- a one-turn Agent run: Execution created -> its first model call, and -> Succeeded, with each step
  between (docs/runs.md, "How a run starts, step by step"): the token Secret, the Job and its pod
  seen by watches, the pod bound, the runtime's process start and `start` event (from its log; the
  event carries the process's age), the provider's stamp of the first call, the runtime's `result`
  event, the container's exit seen, Succeeded;
- a resumed run (issue 38): a long run's pod is deleted the way a drain deletes it (SIGTERM, its step
  finishes and is journaled), and the next model call of the run's new pod is timed from the deletion.
  Goal: within 1 s of a new run's start (created -> first model call).

Times are wall clock: the scripted provider stamps each request as it arrives, and a watch on the API
server stamps each phase as it is seen.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import httpx2
from lightkube import ApiError, Client, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod, Secret

from agentry_common.resources import prime_decoders
from agentry_testing.scripted_llm import ScriptedLLM
from tests.e2e.node.stack import NodeStack, agent_spec, booted

from .results import record

Execution = create_namespaced_resource("agentry.dev", "v1alpha1", "Execution", "executions")
RESUME_GOAL_S = 1.0  # resumed call at most this much later than a new run's first call (issue 38)


class Seen:
    """When each run's objects were first seen in each state, by a watch of their kind (one thread per
    kind). Keyed by the run: a child's `agentry.dev/execution` label, a bare Job's pod's `job-name`,
    else the object's name."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client, self.namespace = client, namespace
        self.at: dict[tuple[str, str], float] = {}
        self.cond = threading.Condition()
        kinds = ((Execution, _phase), (Job, _job_states), (Pod, _pod_states), (Secret, _seen))
        prime_decoders(kind for kind, _ in kinds)  # before the watch threads
        for kind, states in kinds:
            threading.Thread(target=self._watch, args=(kind, states), daemon=True).start()

    def _watch(self, kind: Any, states: Any) -> None:
        client = Client(self.client.config)  # its own connection: a sync client is not shared by threads
        while True:
            try:
                for _op, obj in client.watch(kind, namespace=self.namespace):
                    now, key = time.time(), _run_key(obj)
                    with self.cond:
                        for state in states(obj):
                            self.at.setdefault((key, state), now)
                        self.cond.notify_all()
            except Exception:  # a watch the server ended: watch again
                time.sleep(0.2)

    def wait(self, name: str, states: tuple[str, ...], timeout: float = 300) -> tuple[str, float]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while time.monotonic() < deadline:
                for s in states:
                    if (name, s) in self.at:
                        return s, self.at[(name, s)]
                self.cond.wait(0.5)
        raise TimeoutError(f"{name} not in {states} after {timeout:.0f} s")


def _run_key(obj: Any) -> str:
    labels = obj.metadata.labels or {}
    return str(labels.get("agentry.dev/execution") or labels.get("job-name") or obj.metadata.name)


def _phase(obj: Any) -> list[str]:
    return [str((getattr(obj, "status", None) or {}).get("phase") or "")]


def _job_states(job: Any) -> list[str]:
    """A Job's: seen, `Complete`, `JobFailed` (not `Failed`: that is its run's phase, the same key)."""
    states = ["job"]
    for cond in (job.status and job.status.conditions) or []:
        if cond.status == "True" and cond.type in ("Complete", "Failed"):
            states.append("Complete" if cond.type == "Complete" else "JobFailed")
    return states


def _pod_states(pod: Any) -> list[str]:
    states = ["pod"]
    if pod.spec.nodeName:
        states.append("bound")
    for status in (pod.status and pod.status.containerStatuses) or []:
        if status.state and status.state.running:
            states.append("running")
        if status.state and status.state.terminated:
            states.append("terminated")
    return states


def _seen(_obj: Any) -> list[str]:
    return ["secret"]


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def bare_jobs(
    client: Client, seen: Seen, ns: str, template: dict[str, Any], runs: int
) -> tuple[list[float], list[Moments]]:
    pod = {
        k: v for k, v in template["spec"].items() if k in ("securityContext", "automountServiceAccountToken")
    }
    container = template["spec"]["containers"][0]
    times, moments = [], []
    for _ in range(runs):
        name = f"bare-{uuid.uuid4().hex[:6]}"
        spec = {
            **pod,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": container["image"],
                    "imagePullPolicy": container.get("imagePullPolicy", "IfNotPresent"),
                    "command": ["python3", "-c", "print(1)"],
                    "securityContext": container.get("securityContext", {}),
                }
            ],
        }
        started = time.time()
        body = {
            "metadata": {"name": name, "namespace": ns},
            "spec": {"backoffLimit": 0, "template": {"spec": spec}},
        }
        client.create(cast(Job, Job.from_dict(body)))
        state, at = seen.wait(name, ("Complete", "JobFailed"))
        assert state == "Complete", f"bare Job {name} failed"
        times.append(at - started)
        moments.append({state: t for (key, state), t in seen.at.items() if key == name} | {"job": started})
    return times, moments


def create_run(client: Client, ns: str, agent: str, task: str, attempts: int = 3) -> tuple[str, float]:
    """Create a run, as `kubectl create` would, again after a timed-out request (a busy API server
    under a burst): one that was made anyway answers 409, and is the run."""
    name = f"{agent}-{uuid.uuid4().hex[:5]}"
    started = time.time()
    body = {"metadata": {"name": name, "namespace": ns}, "spec": {"agentRef": {"name": agent}, "input": task}}
    for attempt in range(attempts):
        try:
            client.create(Execution.from_dict(body))
            break
        except httpx2.TimeoutException:
            if attempt == attempts - 1:
                raise
        except ApiError as err:
            if attempt == 0 or err.status.code != 409:
                raise
            break
    return name, started


# A start's steps: (what, from, to), each a moment of Moments (below).
RUN_STEPS = (
    ("admission and the token Secret", "created", "secret"),
    ("the Job (created by the operator)", "secret", "job"),
    ("the Job controller (its pod)", "job", "pod"),
    ("scheduling", "pod", "bound"),
    ("the sandbox and the image (to the runtime's process)", "bound", "process"),
    ("the runtime's start-up (imports, configuration)", "process", "start"),
    ("to the first model call (at the provider, through the gateway)", "start", "call"),
    ("the turn and the run's end (to its result)", "call", "result"),
    ("the process's exit, seen by the kubelet", "result", "terminated"),
    ("the report back (-> Succeeded)", "terminated", "Succeeded"),
)
BARE_STEPS = (
    ("the Job controller (its pod)", "job", "pod"),
    ("scheduling", "pod", "bound"),
    # A process this short is seen terminated without ever being seen running.
    ("the sandbox, the image, the process and its exit, seen by the kubelet", "bound", "terminated"),
    ("the Job controller (-> Complete)", "terminated", "Complete"),
)
Moments = dict[str, float]


def run_moments(seen: Seen, stack: NodeStack, name: str, started: float, call: float) -> Moments:
    """When each step of a run's start ended: the watches' stamps, the provider's, and the runtime's
    own from its events (`start` carries the process's age, so its start is known to 10 ms)."""
    at = {state: t for (key, state), t in seen.at.items() if key == name}
    at.update(created=started, call=call)
    pods = stack.items("pods", "-l", f"agentry.dev/execution={name}")
    for line in stack.kubectl("logs", pods[0]["metadata"]["name"]).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in ("start", "result"):
            at[kind] = datetime.fromisoformat(event["ts"]).timestamp()
        if kind == "start":
            at["process"] = at["start"] - float(event.get("startupSeconds") or 0)
    return at


def steps_p50(moments: list[Moments], steps: tuple[tuple[str, str, str], ...]) -> list[tuple[str, float]]:
    """Each step's p50 over the starts where both of its moments were seen (a step seen in none is
    left out, and said so)."""
    out = []
    for what, begin, end in steps:
        spans = [m[end] - m[begin] for m in moments if begin in m and end in m]
        if spans:
            out.append((what, statistics.median(spans)))
        else:
            print(f"  (step not seen in any start: {what})", file=sys.stderr)
    return out


def one_turn_runs(
    client: Client, seen: Seen, stack: NodeStack, llm: ScriptedLLM, runs: int
) -> tuple[list[float], list[float], str, list[Moments]]:
    agent = f"starts-{uuid.uuid4().hex[:4]}"
    stack.apply_agent(agent, agent_spec(tools=[]))
    first, done, last, moments = [], [], "", []
    for i in range(runs + 1):
        llm.reset()
        llm.script([{"text": "done"}])
        name, started = create_run(client, stack.namespace, agent, "Say done.")
        state, at = seen.wait(name, ("Succeeded", "Failed"))
        assert state == "Succeeded", f"run {name} ended {state}"
        if i:  # the first run warms the Agent's caches and the image
            first.append(llm.requests[0].at - started)
            done.append(at - started)
            moments.append(run_moments(seen, stack, name, started, llm.requests[0].at))
        last = name
    return first, done, last, moments


# The model answer in flight at the deletion: long enough that SIGTERM always lands within it, so the
# old pod ends with that step and the next model call is the new pod's.
STEP_DELAY = 5.0


def resumes(
    client: Client, seen: Seen, stack: NodeStack, llm: ScriptedLLM, count: int, seed: int
) -> list[tuple[float, float]]:
    """Delete a long run's pod while a model answer is in flight: the old pod finishes that step and
    journals it, a new pod resumes. Per resume: seconds from the deletion, and from the old pod's step
    end (its answer sent), to the new pod's first model call."""
    agent = f"resume-{uuid.uuid4().hex[:4]}"
    spec = agent_spec(
        tools=["files"], approval={"requiredFor": []}, budget={"maxTurns": 40}, timeoutSeconds=600
    )
    stack.apply_agent(agent, spec)
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        point = rng.randrange(3, 10)
        llm.reset()
        step = {"tool_use": {"name": "files", "input": {"operation": "list", "path": "."}}}
        llm.script(
            [{**step, "delay": STEP_DELAY if k == point else 0.05} for k in range(1, 20)] + [{"text": "done"}]
        )
        name, _ = create_run(client, stack.namespace, agent, "List the files, again and again.")
        while len(llm.requests) < point:
            time.sleep(0.005)
        killed = time.time()
        pods = stack.items("pods", "-l", f"agentry.dev/execution={name}")
        live = [p["metadata"]["name"] for p in pods if p["status"].get("phase") in ("Pending", "Running")]
        stack.kubectl("delete", "pod", *live, "--wait=false")
        step_end = llm.requests[point - 1].at + STEP_DELAY
        state, _ = seen.wait(name, ("Succeeded", "Failed"))
        if state != "Succeeded":
            listing = stack.kubectl("get", "jobs,pods", "-o", "wide", check=False)
            raise AssertionError(
                f"run {name} ended {state}: {stack.get('execution', name).get('status')}\n{listing}"
            )
        jobs = stack.items("jobs", "-l", f"agentry.dev/execution={name}")
        assert len(jobs) == 2, f"run {name}: {len(jobs)} Jobs, not one resume"
        resumed = llm.requests[point].at
        out.append((resumed - killed, resumed - step_end))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run_starts")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--resumes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=38)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agentry-bench-starts-"))
    say = lambda msg: print(f"  [node] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    with (
        ScriptedLLM(host="0.0.0.0") as llm,
        booted(work, llm, say, owner="python -m bench.run_starts") as stack,
    ):
        client = Client(KubeConfig.from_file(stack.cluster.plane.kubeconfig))
        seen = Seen(client, stack.namespace)
        first, done, last, run_steps = one_turn_runs(client, seen, stack, llm, args.runs)
        job = stack.items("jobs", "-l", f"agentry.dev/execution={last}")[0]
        bare, bare_steps = bare_jobs(client, seen, stack.namespace, job["spec"]["template"], args.runs)
        resumed = resumes(client, seen, stack, llm, args.resumes, args.seed)
    report_steps(steps_p50(run_steps, RUN_STEPS), steps_p50(bare_steps, BARE_STEPS))
    pod_done = [m["terminated"] - m["job"] for m in bare_steps if "terminated" in m]
    report(bare, pod_done, first, done, resumed)


def report_steps(run: list[tuple[str, float]], bare: list[tuple[str, float]]) -> None:
    """Where a start's time goes, step by step (p50 of each step over the runs)."""
    for label, steps in (("a one-turn run", run), ("a bare Job", bare)):
        print(f"  {label}, step by step (p50):")
        for what, seconds in steps:
            print(f"    {seconds:6.3f} s  {what}")
    base = dict(bare)
    for what, seconds in run:
        same = base.get(what)
        record(
            "run_starts",
            f"a one-turn run's start, step: {what}, p50",
            f"{seconds:.3f} s",
            baseline=f"bare Job {same:.3f} s" if same is not None else "",
            ratio=f"{seconds / same:.2f}x" if same else "",
        )


def report(
    bare: list[float],
    pod_done: list[float],
    first: list[float],
    done: list[float],
    resumed: list[tuple[float, float]],
) -> None:
    """The goal's ratio is to the bare Job's Complete (issue 40); a run ends with its pod, before the
    Job controller's Complete, so the ratio to the bare pod's own end is reported beside it."""
    base, start, end = statistics.median(bare), statistics.median(first), statistics.median(done)
    pod = statistics.median(pod_done) if pod_done else float("nan")
    print(f"starts on the local node ({len(first)} runs, {len(resumed)} resumes), p50 (p90):")
    print(f"  bare Job of the workspace image, created -> Complete: {base:.2f} s ({_p(bare, 90):.2f} s)")
    print(f"  bare Job's pod, created -> its exit seen: {pod:.2f} s")
    print(f"  one-turn run, created -> first model call: {start:.2f} s ({_p(first, 90):.2f} s)")
    print(
        f"  one-turn run, created -> Succeeded: {end:.2f} s ({_p(done, 90):.2f} s): {end / base:.2f}x the Job"
    )
    record(
        "run_starts",
        "a one-turn run, created -> Succeeded, p50",
        f"{end:.2f} s",
        baseline=f"bare Job {base:.2f} s",
        ratio=f"{end / base:.2f}x",
        goal="<= 1.2x (issue 40)",
        met=end / base <= 1.2,
    )
    record(
        "run_starts",
        "a one-turn run, created -> Succeeded, p50, to the bare pod's own end",
        f"{end:.2f} s",
        baseline=f"bare Job's pod, created -> exit seen {pod:.2f} s",
        ratio=f"{end / pod:.2f}x",
    )
    record(
        "run_starts",
        "a one-turn run, created -> first model call, p50",
        f"{start:.2f} s",
        baseline=f"bare Job {base:.2f} s",
        ratio=f"{start / base:.2f}x",
    )
    if not resumed:
        return
    from_kill = statistics.median(k for k, _ in resumed)
    from_step = statistics.median(s for _, s in resumed)
    met = from_step - start <= RESUME_GOAL_S
    print(f"  resume, pod deleted -> the new pod's first model call: {from_kill:.2f} s; from the old pod's")
    print(
        f"    step end (its in-flight answer, {STEP_DELAY:.1f} s, finished and journaled): {from_step:.2f} s,"
    )
    verdict = "met" if met else "NOT met"
    print(
        f"    {from_step - start:+.2f} s vs a new run's first call (goal +{RESUME_GOAL_S:.0f} s: {verdict})"
    )
    record(
        "run_starts",
        "resume: old pod's step end -> new pod's first model call, p50",
        f"{from_step:.2f} s",
        baseline=f"new run's first call {start:.2f} s",
        ratio=f"{from_step / start:.2f}x",
        goal=f"<= +{RESUME_GOAL_S:.0f} s",
        met=met,
    )
    record(
        "run_starts",
        "resume: pod deleted -> new pod's first model call, p50",
        f"{from_kill:.2f} s",
        baseline=f"new run's first call {start:.2f} s",
        ratio=f"{from_kill / start:.2f}x",
    )
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
