"""Durable runs on real pods: a run's pod deleted at random points resumes in a new pod from its
checkpoint journal, as the same Execution, and every tool call takes effect exactly once.

The run: nine turns that each append a line to a file on the Agent's kept workspace and POST a step
to a receiver on the node (a RED call, run without approval here), then a final answer. The scripted
model answers by the run's last message (a step's receipt), so a call a lost pod made would be
answered the same again. The pod is deleted (gracefully, as a drain or eviction does) when the run
reaches seeded points: after the n-th model request or the n-th POST.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .sandbox_sites import Site
from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

STEPS = 9
FINAL = "All nine steps are done."


@pytest.fixture
def receiver() -> Iterator[Site]:
    """Answers a POST to /step-k with that step's receipt, and records it."""
    site = Site("receiver", pages={f"/step-{k}": f"receipt-for-step-{k}" for k in range(1, STEPS + 1)})
    site.start()
    try:
        yield site
    finally:
        site.stop()


def _posts(site: Site) -> list[str]:
    return [seen.path for seen in list(site.seen) if seen.method == "POST"]


def _script(origin: str) -> list[dict[str, Any]]:
    """Turn k POSTs step-k; each answer is chosen by the last message (the previous step's receipt)."""
    items: list[dict[str, Any]] = []
    for k in range(1, STEPS + 1):
        after = "Post the nine steps" if k == 1 else f"receipt-for-step-{k - 1}"
        items.append(
            {
                "match_last": after,
                "keep": True,
                "delay": 0.5,  # room for a deletion to land while the model "thinks"
                "tool_uses": [
                    {"name": "shell", "input": {"command": f"echo step-{k} >> steps.log"}},
                    {"name": "http", "input": {"method": "POST", "url": f"{origin}/step-{k}"}},
                ],
                "usage": {"input_tokens": 100 * k, "output_tokens": 10 + k},
            }
        )
    items.append(
        {
            "match_last": f"receipt-for-step-{STEPS}",
            "keep": True,
            "text": FINAL,
            "delay": 0.5,
            "usage": {"input_tokens": 1000, "output_tokens": 20},
        }
    )
    return items


def _progress(llm: ScriptedLLM, receiver: Site) -> int:
    """Points reached: model requests plus POSTs (19 in a run that nothing interrupts)."""
    return len(llm.requests) + len(_posts(receiver))


def _delete_pods_at(
    stack: NodeStack, execution: str, points: list[int], llm: ScriptedLLM, receiver: Site
) -> int:
    """Delete the run's live pod as progress reaches each point; how many pods were deleted."""
    deleted: set[str] = set()
    deadline = time.monotonic() + patient(240)
    for point in points:
        while _progress(llm, receiver) < point and time.monotonic() < deadline:
            if stack.get("execution", execution).get("status", {}).get("phase") in ("Succeeded", "Failed"):
                return len(deleted)
            time.sleep(0.05)
        live = [
            p["metadata"]["name"]
            for p in stack.items("pods", "-l", f"agentry.dev/execution={execution}")
            if p["status"].get("phase") in ("Pending", "Running") and p["metadata"]["name"] not in deleted
        ]
        for pod in live:
            stack.kubectl("delete", "pod", pod, "--wait=false")
            deleted.add(pod)
    return len(deleted)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_whose_pod_is_deleted_resumes_and_each_call_takes_effect_once(
    node_stack: NodeStack, llm: ScriptedLLM, receiver: Site, seed: int
) -> None:
    llm.script(_script(receiver.origin))
    agent = unique("durable")
    node_stack.apply_agent(
        agent,
        agent_spec(
            tools=["http", "shell"],
            http={"allowedHosts": [receiver.origin]},
            workspace={"persistent": True},
            approval={"requiredFor": []},
            budget={"maxTurns": 20},
            timeoutSeconds=600,
        ),
    )
    # Points 2..17: the last is the ninth model request (the tenth would race the run's end).
    points = sorted(random.Random(seed).sample(range(2, 2 * STEPS), 3))
    execution = node_stack.run(agent, "Post the nine steps, one per turn.")
    deleted = _delete_pods_at(node_stack, execution, points, llm, receiver)

    status = node_stack.wait_phase(execution, ("Succeeded", "Failed"), timeout=300)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"]["summary"] == FINAL
    # Each step's POST happened exactly once, in order, across every pod of the run.
    assert _posts(receiver) == [f"/step-{k}" for k in range(1, STEPS + 1)], receiver.log()
    # Usage counts each model answer once: the nine steps' and the final one.
    assert status["usage"]["inputTokens"] == sum(100 * k for k in range(1, STEPS + 1)) + 1000
    assert status["usage"]["outputTokens"] == sum(10 + k for k in range(1, STEPS + 1)) + 20
    assert status["usage"]["turns"] == STEPS + 1
    # The conversation is whole: the final request carried every step's call and receipt, in order.
    last = str(llm.requests[-1].body["messages"])
    receipts = [last.index(f"receipt-for-step-{k}") for k in range(1, STEPS + 1)]
    assert receipts == sorted(receipts), last
    assert len(llm.requests[-1].body["messages"]) == 1 + 2 * STEPS
    # Every deleted pod was replaced by one that resumed from the journal.
    assert deleted >= 1, f"no pod was deleted before the run ended (points {points})"
    # A pod deleted before it began the run (the next Job's, still starting: two points close
    # together) resumes nothing; each one that stopped at a checkpoint was followed by a new Job.
    assert 1 <= status["checkpoint"]["resumes"] <= deleted, status["checkpoint"]
    jobs = node_stack.items("jobs", "-l", f"agentry.dev/execution={execution}")
    ended = [j for j in jobs if j["metadata"]["name"] != status["jobName"]]
    assert len(ended) >= status["checkpoint"]["resumes"], [j["metadata"]["name"] for j in jobs]
    for job in ended:
        [failed] = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
        assert "exit code 75" in failed["message"], failed
    assert status["checkpoint"]["interruptedCalls"] == 0, status["checkpoint"]
    # The kept workspace's file got each step's line exactly once, in order, across every pod.
    assert _kept_file(node_stack, agent, "steps.log") == [f"step-{k}" for k in range(1, STEPS + 1)]


def _kept_file(stack: NodeStack, agent: str, name: str) -> list[str]:
    """The lines of a file on the Agent's kept workspace, read from its volume's directory on the node."""
    [claim] = stack.items("pvc", "-l", f"agentry.dev/agent={agent},app.kubernetes.io/component=workspace")
    volume = json.loads(stack.kubectl("get", "pv", claim["spec"]["volumeName"], "-o", "json"))
    return (Path(volume["spec"]["local"]["path"]) / name).read_text().splitlines()


def test_a_follow_up_continues_the_whole_conversation_as_a_run_of_its_own(
    node_stack: NodeStack, llm: ScriptedLLM
) -> None:
    llm.script(
        [
            {
                "match_last": "Plan Thursday",
                "text": "Thursday: standup, then review.",
                "keep": True,
                "usage": {"input_tokens": 400, "output_tokens": 30},
            },
            {
                "match_last": "same for Friday",
                "text": "Friday: demo, then retro.",
                "keep": True,
                "usage": {"input_tokens": 700, "output_tokens": 25},
            },
        ]
    )
    agent = unique("thread")
    node_stack.apply_agent(agent, agent_spec(tools=[]))
    parent = node_stack.run(agent, "Plan Thursday.")
    assert node_stack.wait_phase(parent, ("Succeeded", "Failed"))["status"]["phase"] == "Succeeded"

    name = node_stack.run(agent, "Now the same for Friday.", parent=parent)
    done = node_stack.wait_phase(name, ("Succeeded", "Failed"))
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"]["summary"] == "Friday: demo, then retro."
    # Its own usage: the parent's call is not counted again.
    assert (status["usage"]["inputTokens"], status["usage"]["outputTokens"]) == (700, 25)
    assert done["metadata"]["labels"]["agentry.dev/parent"] == parent
    # The model got the whole conversation: the parent's question and answer, then the new message.
    messages = llm.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"], messages
    assert "Plan Thursday" in str(messages[0]) and "standup, then review" in str(messages[1])
    assert "same for Friday" in str(messages[2])
