"""The reference MCP servers the integration tier runs as local processes (the image has its own copy):
`npm ci` of workspace_image/mcp-servers once per lock file into the cache, in the one-time builds."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from .kube import REPO
from .paths import cache_dir
from .procs import ServerError

SERVERS = REPO / "workspace_image" / "mcp-servers"


def mcp_servers_bin() -> Path:
    """node_modules/.bin of the pinned MCP servers (installed or not: `install_mcp_servers` makes it)."""
    lock = (SERVERS / "package-lock.json").read_bytes()
    return cache_dir() / "mcp-servers" / hashlib.sha256(lock).hexdigest()[:16] / "node_modules" / ".bin"


def install_mcp_servers() -> Path:
    """Install them unless they are there; the .bin directory. Raises ServerError without npm."""
    bin_dir = mcp_servers_bin()
    if (bin_dir / "mcp-server-everything").exists():
        return bin_dir
    npm = shutil.which("npm")
    if npm is None:
        raise ServerError("npm is needed to install the reference MCP server (Debian: apt-get install npm)")
    target = bin_dir.parent.parent
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(SERVERS / name, target / name)
    argv = [npm, "ci", "--prefix", str(target), "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]
    done = subprocess.run([*argv, "--cache", str(cache_dir() / "npm")], check=False, timeout=600)
    if done.returncode or not (bin_dir / "mcp-server-everything").exists():
        raise ServerError(f"npm ci of {SERVERS} failed (exit {done.returncode})")
    return bin_dir
