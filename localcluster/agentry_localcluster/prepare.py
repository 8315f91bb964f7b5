"""One-time builds, done before any test starts (`make prepare`, and pytest's collection hook).

Kubernetes and node binaries, helm, the OpenTelemetry Collector, the images and Chromium are built
or installed once and cached (`paths.cache_dir()`); warm, each step is a cache check of a second or
two. They never run inside a test's or fixture's timeout: `make test` runs this first, and
`tests/conftest.py` calls `prepare()` for the tiers it collected, before the first test, so a plain
`pytest -m e2e` is covered too.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator

from .gvisor import build_shim
from .images import build_images
from .kube import CONTROL_PLANE, provision
from .layout import NODE_BINARIES
from .mcpservers import install_mcp_servers
from .otelcol import build_otelcol
from .paths import cache_dir
from .procs import ServerError

Say = Callable[[str], None]

NODE = NODE_BINARIES  # kube-scheduler, kubelet, kube-proxy, crictl, CoreDNS, pause, kube-router
# What each test tier needs built before its first test.
BINARIES = {
    "unit": ("helm",),
    "integration": (*CONTROL_PLANE, "helm"),
    "e2e": (*CONTROL_PLANE, "helm", *NODE),
}
TIERS = tuple(BINARIES)


def _say(msg: str) -> None:
    print(f"[prepare] {msg}", file=sys.stderr, flush=True)


def _chromium(say: Say) -> None:
    if shutil.which("chromium"):
        return
    say("installing Chromium (apt; the dashboard's browser tests)")
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        if subprocess.run(
            argv,
            check=False,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        ).returncode:
            raise ServerError(f"`{' '.join(argv)}` failed: Chromium is needed by the e2e tier")


@contextlib.contextmanager
def _one_at_a_time() -> Iterator[None]:
    """Prepares running at once (pytest-xdist's workers, `make dev` beside `make test`) take turns:
    the second finds the first's work cached instead of building it again beside it."""
    lock = cache_dir() / "prepare.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def prepare(tiers: Iterable[str], say: Say = _say) -> None:
    """Build (or find cached) everything the given tiers need; raises ServerError with the reason."""
    wanted = [t for t in TIERS if t in set(tiers)]
    if not wanted:
        return
    with _one_at_a_time():
        _prepare(wanted, say)


def _prepare(wanted: list[str], say: Say) -> None:
    components = tuple(dict.fromkeys(c for t in wanted for c in BINARIES[t]))
    t0 = time.monotonic()
    say(f"binaries for {', '.join(wanted)}: {' '.join(components)} (cold: 15-25 min on 2 cores)")
    provision(components)
    say(f"binaries ready ({time.monotonic() - t0:.0f} s)")
    if "integration" in wanted:
        say("the reference MCP server (npm ci of workspace_image/mcp-servers)")
        install_mcp_servers()
        t1 = time.monotonic()
        say("the OpenTelemetry Collector (Go module proxy; cold: ~1-2 min)")
        build_otelcol()
        say(f"collector ready ({time.monotonic() - t1:.0f} s)")
    if "e2e" in wanted:
        t1 = time.monotonic()
        say("images: workspace, operator, API, gateway, egress proxy (cold: ~10 min)")
        build_images(say)
        say(f"images ready ({time.monotonic() - t1:.0f} s)")
        t1 = time.monotonic()
        say("gVisor: runsc and its containerd shim (Go module proxy; cold: ~2.5 min)")
        build_shim()
        say(f"gVisor ready ({time.monotonic() - t1:.0f} s)")
        _chromium(say)
    say(f"everything built in {time.monotonic() - t0:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentry-prepare", description=__doc__)
    # No `choices`: Python 3.11's argparse checks an empty `*` list against them and refuses it.
    parser.add_argument("tiers", nargs="*", metavar="TIER", help=f"of {', '.join(TIERS)} (default: all)")
    args = parser.parse_args(argv)
    if unknown := set(args.tiers) - set(TIERS):
        parser.error(f"unknown tier(s) {', '.join(sorted(unknown))}; choose from {', '.join(TIERS)}")
    try:
        prepare(args.tiers or TIERS)
    except ServerError as exc:
        _say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
