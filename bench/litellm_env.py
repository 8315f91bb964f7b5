"""LiteLLM's proxy for the side-by-side benchmarks: its own venv under the cache dir, pinned, so the
product's lock never sees it; and its proxy started in front of the scripted provider.

The venv is `$AGENTRY_CACHE_DIR/bench/litellm-<version>` (default cache dir ~/.cache/agentry), made
with uv from PyPI on first use (`litellm[proxy]==LITELLM_VERSION`), progress printed.

Budgets: LiteLLM's per-key/user/team budgets live in its database through Prisma, whose Python client
downloads the Prisma engines (schema and query engine binaries) from Prisma's own host at run time;
that host does not answer here, so that path cannot run (`prisma --version` fails while fetching
`schema-engine`). What runs is LiteLLM's router budget (`max_budget` + `budget_duration` on a
deployment), which needs no database: spend counted in process after each call, shared between
instances through Redis when one is configured (synced every second).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import yaml

from agentry_localcluster import localhttp
from agentry_localcluster.procs import UVICORN_SERVING, Proc

LITELLM_VERSION = "1.106.2"
MASTER_KEY = "sk-litellm-bench-master"


def cache_dir() -> Path:
    root = os.environ.get("AGENTRY_CACHE_DIR") or os.environ.get("AGENTRY_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "agentry"


def venv() -> Path:
    """The pinned LiteLLM venv, created on first use."""
    path = cache_dir() / "bench" / f"litellm-{LITELLM_VERSION}"
    python = path / "bin" / "python"
    marker = path / ".installed"
    if marker.exists() and python.exists():
        return path
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is needed to install LiteLLM for the benchmark (pip install uv)")
    print(f"[bench] installing litellm[proxy]=={LITELLM_VERSION} into {path} (once, ~1 min)", flush=True)
    subprocess.run([uv, "venv", "--quiet", "--python", "python3.11", str(path)], check=True)
    subprocess.run(
        [uv, "pip", "install", f"litellm[proxy]=={LITELLM_VERSION}"],
        check=True,
        env={**os.environ, "VIRTUAL_ENV": str(path), "UV_SYSTEM_CERTS": "1"},
    )
    marker.touch()
    print("[bench] litellm installed", flush=True)
    return path


def config(
    upstream_v1: str,
    model: str,
    price_in: Decimal,
    price_out: Decimal,
    max_budget: Decimal | None,
    redis_port: int | None = None,
) -> dict[str, object]:
    """LiteLLM's proxy config: one deployment on the scripted provider, priced like Agentry's table."""
    params: dict[str, object] = {
        "model": f"openai/{model}",
        "api_base": upstream_v1,
        "api_key": "sk-bench-upstream",
        "input_cost_per_token": float(price_in / 1_000_000),
        "output_cost_per_token": float(price_out / 1_000_000),
    }
    if max_budget is not None:
        params |= {"max_budget": float(max_budget), "budget_duration": "1d"}
    conf: dict[str, object] = {
        "model_list": [{"model_name": model, "litellm_params": params}],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False},
    }
    if redis_port is not None:  # the router's spend counters shared through Redis (no response cache)
        conf["router_settings"] = {"redis_host": "127.0.0.1", "redis_port": redis_port}
    return conf


def start(work: Path, name: str, conf: dict[str, object]) -> tuple[Proc, str]:
    """Start the proxy (one uvicorn worker, its default) on port 0; return it and its base URL."""
    path = venv()
    config_file = work / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(conf))
    proc = Proc(
        name,
        [str(path / "bin" / "litellm"), "--config", str(config_file), "--host", "127.0.0.1", "--port", "0"],
        work / f"{name}.log",
        env={
            # The model price table ships in the package; never fetched at run time.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
            "PATH": f"{path / 'bin'}:{os.environ.get('PATH', '')}",
        },
    ).start()
    port = int(proc.wait_for_log(UVICORN_SERVING, 180, "serving").group(1))
    url = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: localhttp.get(f"{url}/health/liveliness").status_code == 200, 60, "ready")
    return proc, url
