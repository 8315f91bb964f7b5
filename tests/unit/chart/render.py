"""Render charts/agentry with the real helm binary (no cluster needed); shared by the chart tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from agentry_localcluster.kube import REPO, provision

CHART = REPO / "charts" / "agentry"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.34.0"
RELEASE, NAMESPACE = "agentry", "agentry-system"

Obj = dict[str, Any]


@cache
def helm() -> Path:
    return provision(("helm",)) / "helm"


def run_helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm()), *args], capture_output=True, text=True, check=check, timeout=120)


def template_args(
    values: Iterable[Path] = (), set_: dict[str, str] | None = None, include_crds: bool = False
) -> list[str]:
    args = [f"--namespace={NAMESPACE}", f"--kube-version={KUBE_VERSION}"]
    args += [f"--values={v}" for v in values]
    args += [f"--set={k}={v}" for k, v in (set_ or {}).items()]
    if include_crds:
        args.append("--include-crds")
    return args


def render_text(
    values: Iterable[Path] = (),
    set_: dict[str, str] | None = None,
    include_crds: bool = False,
    fresh: bool = False,
) -> str:
    """`helm template` of the chart; the same arguments render once per test process (the chart does
    not change during a run, and a render is half a second). `fresh`: render again (the chart's
    generated keys differ per render)."""
    key = (tuple(values), tuple((set_ or {}).items()), include_crds)
    return _rendered.__wrapped__(*key) if fresh else _rendered(*key)


@cache
def _rendered(values: tuple[Path, ...], set_: tuple[tuple[str, str], ...], include_crds: bool) -> str:
    result = run_helm(
        "template", RELEASE, str(CHART), *template_args(values, dict(set_), include_crds), check=False
    )
    if result.returncode != 0:
        raise RenderError(result.stderr)
    return result.stdout


def load_all(text: str) -> list[Obj]:
    """The documents of a YAML stream (libyaml's parser: eight times the pure-Python one's speed)."""
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]


def render(
    values: Iterable[Path] = (), include_crds: bool = False, fresh: bool = False, **set_: str
) -> list[Obj]:
    """Render and parse; keyword arguments are --set pairs with "__" standing for "."."""
    flat = {k.replace("__", "."): v for k, v in set_.items()}
    return load_all(render_text(values, flat, include_crds, fresh))


class RenderError(AssertionError):
    pass


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_specs(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(owner object, pod spec) of every workload object."""
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o, o["spec"]


def env_of(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
