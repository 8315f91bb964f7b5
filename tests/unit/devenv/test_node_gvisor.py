"""gVisor on the local node (gvisor.py): containerd's `runsc` handler, the shim's runsc.toml, the
RuntimeClass, and that runsc and the shim are built before the e2e tier. Pods under it run on a real node
in tests/e2e/node/test_gvisor.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agentry_localcluster import gvisor, prepare
from agentry_localcluster.host import HOST_PACKAGES
from agentry_localcluster.layout import NODE_RUN
from agentry_localcluster.nodeconf import containerd_config

pytestmark = pytest.mark.unit

CRI = "io.containerd.grpc.v1.cri"


def _runtimes(config: str) -> dict[str, dict[str, object]]:
    return dict(tomllib.loads(config)["plugins"][CRI]["containerd"]["runtimes"])


def test_containerd_gets_the_runsc_handler_through_gvisors_shim() -> None:
    runtimes = _runtimes(containerd_config(Path("/state/node/runsc.toml")))
    assert set(runtimes) == {"runc", gvisor.HANDLER}
    runsc = runtimes[gvisor.HANDLER]
    assert runsc["runtime_type"] == "io.containerd.runsc.v1"  # -> containerd-shim-runsc-v1 on PATH
    assert runsc["options"] == {
        "TypeUrl": "io.containerd.runsc.v1.options",
        "ConfigPath": "/state/node/runsc.toml",
    }
    # runc stays the default; without a shim there is no runsc handler at all.
    assert tomllib.loads(containerd_config())["plugins"][CRI]["containerd"]["default_runtime_name"] == "runc"
    assert set(_runtimes(containerd_config())) == {"runc"}


def test_the_shim_runs_the_built_runsc_with_its_own_network_stack() -> None:
    config = tomllib.loads(gvisor.shim_config(Path("/cache/gvisor/v1-r3")))
    assert config["binary_name"] == "/cache/gvisor/v1-r3/runsc"  # built beside the shim, not Debian's
    assert config["root"] == str(NODE_RUN / "runsc")  # removed with the node's run directory
    assert config["runsc_config"] == {"network": "sandbox", "platform": "ptrace"}
    debug = tomllib.loads(gvisor.shim_config(Path("/b"), Path("/state/node/runsc-debug")))["runsc_config"]
    assert debug["debug"] == "true" and debug["debug-log"] == "/state/node/runsc-debug/"


def test_the_runtime_class_names_the_handler_as_gke_sandbox_does() -> None:
    rc = gvisor.runtime_class()
    assert (rc["apiVersion"], rc["kind"]) == ("node.k8s.io/v1", "RuntimeClass")
    assert rc["metadata"]["name"] == "gvisor" and rc["handler"] == gvisor.HANDLER


def test_runsc_is_built_not_a_node_package_and_is_built_before_the_e2e_tier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "runsc" not in HOST_PACKAGES  # Debian's lets a tool read the run token (build-runsc-shim.sh)
    built: list[str] = []
    monkeypatch.setattr(prepare, "provision", lambda components: built.append("binaries"))
    monkeypatch.setattr(prepare, "build_images", lambda say: built.append("images"))

    def shim() -> Path:
        built.append("shim")
        return Path("/shim")

    monkeypatch.setattr(prepare, "build_shim", shim)
    monkeypatch.setattr(prepare, "_chromium", lambda say: None)
    prepare._prepare(["e2e"], lambda msg: None)
    assert built == ["binaries", "images", "shim"]
    built.clear()
    prepare._prepare(["unit"], lambda msg: None)
    assert "shim" not in built
