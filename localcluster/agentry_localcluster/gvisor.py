"""gVisor on the local node: the `gvisor` RuntimeClass, run by runsc through gVisor's shim.

Both are built once from the Go module proxy, from one pinned gvisor.dev/gvisor version
(hack/build-runsc-shim.sh, in `make prepare`: which version, why not Debian's `runsc` package nor
containerd's runc shim, and the one change made to the shim), and the shim is put on containerd's
PATH. containerd gets a runtime handler `runsc` whose shim reads `runsc.toml` (written here): the built
runsc, its state under the node's run directory, and runsc's flags.

Network: runsc's own network stack (netstack, `--network=sandbox`) inside the pod's network namespace:
the pod's traffic leaves through the pod's veth, so NetworkPolicies and the egress proxy hold as for runc
pods, and the run's socket calls are served by gVisor, not the node's kernel. System calls, files and
/proc are gVisor's (docs/security.md, "A stronger sandbox").
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from .kube import REPO
from .layout import NODE_RUN
from .procs import ServerError

RUNTIME_CLASS = "gvisor"
HANDLER = "runsc"  # containerd's runtime name, the RuntimeClass's handler
RUNSC = "runsc"  # built beside the shim (build_shim's directory)
SHIM = "containerd-shim-runsc-v1"
BUILD_SCRIPT = REPO / "hack" / "build-runsc-shim.sh"
# runsc's flags (the shim passes each as --key=value).
RUNSC_FLAGS = {"network": "sandbox", "platform": "ptrace"}


def build_shim() -> Path:
    """The directory holding runsc and gVisor's shim: cached, or built now (cold: minutes on 2 cores)."""
    # Progress goes to the terminal (stderr); the last stdout line is the directory.
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ServerError(f"hack/build-runsc-shim.sh failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def shim_config(built: Path, debug_dir: Path | None = None) -> str:
    """The shim's runsc.toml: the runsc in `built` (build_shim's directory), where its state lives, and
    runsc's flags."""
    flags = dict(RUNSC_FLAGS)
    if debug_dir is not None:  # runsc's own logs, one file per command (troubleshooting)
        flags |= {"debug": "true", "debug-log": f"{debug_dir}/"}
    lines = [f'binary_name = "{built / RUNSC}"', f'root = "{NODE_RUN / "runsc"}"', "", "[runsc_config]"]
    lines += [f'  {key} = "{value}"' for key, value in flags.items()]
    return "\n".join(lines) + "\n"


def containerd_runtime(cri: str, config_path: Path) -> str:
    """containerd's stanza for the `runsc` handler (its shim found on containerd's PATH)."""
    runtime = f"{cri}.containerd.runtimes.{HANDLER}"
    return f"""    [{runtime}]
      runtime_type = "io.containerd.runsc.v1"
      [{runtime}.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "{config_path}"
"""


def runtime_class() -> dict[str, Any]:
    """The RuntimeClass pods name (spec.runtimeClassName: gvisor), as GKE Sandbox names its own."""
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": RUNTIME_CLASS},
        "handler": HANDLER,
    }
