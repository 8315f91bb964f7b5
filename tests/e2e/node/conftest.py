"""The whole path on real containers: a local single-node cluster with Agentry installed by its chart.

One cluster for this package (scope "package": it is stopped before other e2e modules, such as the
`make dev` test, start their own; only one local node can run per machine, see cluster.py). Images
are built (cached by their inputs) and imported into the node; the operator, the API and the LLM
gateway run as pods of the chart, governed as `make dev` installs it: runs call the gateway with
a per-Execution token, and the gateway calls the provider — the scripted server on the node's
address (one for the package; each test scripts it afresh) — with the key only it holds.

Binaries and images are built before the first test (`make prepare`, or pytest's collection hook in
tests/conftest.py), so here they are a cache check; the cluster itself starts in about a minute. A
cluster that cannot start fails every test here with the reason, never skips.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from agentry_localcluster.procs import ServerError
from agentry_testing.scripted_llm import ScriptedLLM

from .stack import NodeStack, booted


def _say(msg: str) -> None:
    print(f"[e2e-node] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="package")
def upstream() -> Iterator[ScriptedLLM]:
    """The provider behind the gateway, on every address: the gateway pod reaches it on the node's
    (its URL says 0.0.0.0, which the install gives pods as the node's address; the node's bridge does
    not exist yet when this starts)."""
    with ScriptedLLM(host="0.0.0.0") as server:
        yield server


@pytest.fixture(scope="package")
def node_stack(tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedLLM) -> Iterator[NodeStack]:
    workdir = tmp_path_factory.mktemp("node-cluster")
    with contextlib.ExitStack() as on_exit:
        try:
            stack = on_exit.enter_context(booted(workdir, upstream, _say, owner="pytest tests/e2e/node"))
        except (ServerError, subprocess.SubprocessError) as exc:
            pytest.fail(f"the local cluster did not start: {exc}", pytrace=False)
        yield stack


@pytest.fixture
def llm(upstream: ScriptedLLM) -> ScriptedLLM:
    """The provider, with nothing scripted or recorded yet."""
    upstream.reset()
    return upstream
