"""Generated copies stay in step: chart CRD templates vs manifests/crds, and manifests/install.yaml."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from agentry_localcluster.kube import REPO

from .render import find, helm, load_all, render

pytestmark = pytest.mark.unit

CANONICAL = sorted((REPO / "manifests" / "crds").glob("*.yaml"))


def test_chart_crds_equal_the_canonical_ones() -> None:
    """Semantic check, independent of the generator: what Helm installs is what kubectl would."""
    rendered = {c["metadata"]["name"]: c for c in find(render(), "CustomResourceDefinition")}
    assert len(CANONICAL) == len(rendered) > 0
    for path in CANONICAL:
        canonical = yaml.safe_load(path.read_text())
        name = canonical["metadata"]["name"]
        assert name in rendered, f"{path.name}: no CRD {name} in the chart (run hack/render-install.sh)"
        assert rendered[name]["spec"] == canonical["spec"], f"{name} differs (run hack/render-install.sh)"
        assert canonical["metadata"]["labels"].items() <= rendered[name]["metadata"]["labels"].items()


def test_generated_files_are_up_to_date() -> None:
    """Byte check of the CRD templates and manifests/install.yaml (what `make check-manifests` runs)."""
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "render-install.sh"), "--check"],
        capture_output=True,
        text=True,
        env={**os.environ, "HELM": str(helm())},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]


def test_install_yaml_is_self_contained() -> None:
    docs = load_all((REPO / "manifests" / "install.yaml").read_text())
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    assert namespaces == {"agentry-system", "agentry-workloads"}
    assert {d["metadata"]["namespace"] for d in docs if "namespace" in d["metadata"]} <= namespaces
    kinds = {d["kind"] for d in docs}
    # Nothing that needs a CRD applied in the same `kubectl apply`, nor a per-install private key.
    assert not kinds & {"KopfPeering", "Secret", "ValidatingWebhookConfiguration"}
    assert {"CustomResourceDefinition", "Deployment", "NetworkPolicy"} <= kinds
