"""The warm pool on the local node (docs/runs.md, "Warm pool"): runs claim pre-started pods and succeed
under the same NetworkPolicy, egress proxy, gateway and Pod Security as any run; a warm pod killed
before its claim is replaced; a run created while the operator restarts still runs once; a pool scaled
to zero starts runs as Jobs, saying so, and fills again."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from agentry_common import constants as c
from agentry_common import pool as p
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import eventually

from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

POOL = {"name": "e2e", "min": 1, "max": 2, "idleSeconds": 600}


def _say(msg: str) -> None:
    print(f"[e2e-pool] {msg}", file=sys.stderr, flush=True)


def _configure(stack: NodeStack, pools: list[dict[str, Any]]) -> None:
    stack.install.extra_values = {"operator": {"pools": pools}} if pools else {}
    stack.install.install(_say)


@pytest.fixture(scope="module")
def pooled(node_stack: NodeStack) -> Iterator[NodeStack]:
    _configure(node_stack, [POOL])
    yield node_stack
    _configure(node_stack, [])
    node_stack.kubectl("delete", "jobs", "-l", p.LABEL_POOL, "--wait=false", check=False)


def _wait(what: str, check: Any, timeout: float = 180) -> Any:
    """`eventually` with a pool's patience: a warm pod's start takes seconds, a refill a minute."""
    return eventually(check, timeout, what)


def _pooled(status: dict[str, Any]) -> dict[str, Any]:
    return next((cond for cond in status.get("conditions") or [] if cond["type"] == "Pooled"), {})


def _one_turn(llm: ScriptedLLM) -> None:
    llm.script(
        [
            {"tool_use": {"name": "shell", "input": {"command": "id -u; echo from-the-pool"}}},
            {"text": "Done in a warm pod."},
        ]
    )


def _succeeds(stack: NodeStack, llm: ScriptedLLM) -> dict[str, Any]:
    agent = unique("pooled")
    stack.apply_agent(agent, agent_spec())
    _one_turn(llm)
    execution = stack.run(agent, "Say where you run.")
    done = stack.wait_phase(execution, ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert "Done in a warm pod." in done["status"]["result"]["summary"]
    # One Job ran it: the claimed warm Job, or the run's own.
    jobs = stack.items("jobs", "-l", f"{c.LABEL_EXECUTION}={execution}")
    assert [j["metadata"]["name"] for j in jobs] == [done["status"]["jobName"]]
    return dict(done)


def test_a_run_claims_a_warm_pod_and_succeeds(pooled: NodeStack, llm: ScriptedLLM) -> None:
    _wait("a warm pod runs", pooled.warm_pods)
    done = _succeeds(pooled, llm)
    condition = _pooled(done["status"])
    assert (condition["status"], condition["reason"]) == ("True", "Claimed"), done["status"]
    job = pooled.get("job", done["status"]["jobName"])
    assert job["metadata"]["labels"][p.LABEL_POOL] == "e2e"
    assert job["metadata"]["ownerReferences"][0]["name"] == done["metadata"]["name"]
    # The tool ran as the runtime's user, in the pod the pool made (restricted, as every run pod).
    (call,) = [r for r in llm.requests if "from-the-pool" in str(r.body)][:1]
    assert "10001" in str(call.body)
    _wait("the pool refills", pooled.warm_pods)


def test_a_warm_pod_killed_before_its_claim_is_replaced(pooled: NodeStack, llm: ScriptedLLM) -> None:
    before = {pod["metadata"]["name"] for pod in _wait("a warm pod runs", pooled.warm_pods)}
    pooled.kubectl("delete", "pods", *sorted(before), "--wait=false")
    _wait(
        "a new warm pod runs",
        lambda: [pod for pod in pooled.warm_pods() if pod["metadata"]["name"] not in before],
    )
    done = _succeeds(pooled, llm)
    assert _pooled(done["status"])["reason"] == "Claimed", done["status"]


def test_a_run_created_while_the_operator_restarts_runs_once(pooled: NodeStack, llm: ScriptedLLM) -> None:
    _wait("a warm pod runs", pooled.warm_pods)
    agent = unique("restart")
    pooled.apply_agent(agent, agent_spec())
    _one_turn(llm)
    execution = pooled.run(agent, "Say where you run.")
    pooled.cluster.plane.kubectl(
        "-n", "agentry-system", "delete", "pods", "-l", "app.kubernetes.io/component=operator", "--wait=false"
    )
    done = pooled.wait_phase(execution, ("Succeeded", "Failed"), timeout=300)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    jobs = pooled.items("jobs", "-l", f"{c.LABEL_EXECUTION}={execution}")
    assert [j["metadata"]["name"] for j in jobs] == [done["status"]["jobName"]]
    assert _pooled(done["status"])["reason"] in ("Claimed", "PoolEmpty"), done["status"]


def test_a_pool_scaled_to_zero_starts_runs_as_jobs_and_fills_again(
    pooled: NodeStack, llm: ScriptedLLM
) -> None:
    _configure(pooled, [{**POOL, "min": 0, "idleSeconds": 30}])
    unclaimed = f"{p.LABEL_POOL},!{c.LABEL_EXECUTION}"
    _wait(
        "the idle pool scaled to zero", lambda: not pooled.items("jobs", "-l", unclaimed) or None, timeout=120
    )
    done = _succeeds(pooled, llm)
    condition = _pooled(done["status"])
    assert (condition["status"], condition["reason"]) == ("False", "PoolEmpty"), done["status"]
    assert p.LABEL_POOL not in pooled.get("job", done["status"]["jobName"])["metadata"]["labels"]
    _wait("the pool fills again once asked", pooled.warm_pods)
