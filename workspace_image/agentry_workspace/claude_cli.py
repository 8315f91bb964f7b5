"""How the Claude Code CLI is started for `runtime: claude-code`: its binary, command line, tool
permissions and environment (claude_code.py maps what it prints)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from agentry_common.models import Provider as ProviderKind
from agentry_common.models import Tool as ToolName
from agentry_llm.factory import BASE_URL_ENV, KEY_ENV, base_url_for

from .cli_relay import PLACEHOLDER_KEY
from .config import ConfigError, RunConfig
from .events import tool_env
from .policy import red_tools
from .tools.netpolicy import Refused, parse_entry

ENV_CLAUDE_BIN = "AGENTRY_CLAUDE_BIN"
KNOWN_TOOLS = (
    "Bash",
    "Read",
    "Write",
    "Edit",
    "MultiEdit",
    "Glob",
    "Grep",
    "LS",
    "WebFetch",
    "WebSearch",
    "NotebookEdit",
)
_FILE_TOOLS = ("Read", "Write", "Edit", "MultiEdit", "Glob", "Grep", "LS")
ANTHROPIC_API_URL = "https://api.anthropic.com"  # the SDK's and the CLI's default
# Endpoints the CLI would prefer to ANTHROPIC_BASE_URL (or use with a token): never from the pod.
_ENDPOINT_ENV = ("CLAUDE_CODE_API_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_CUSTOM_HEADERS")
_LOOPBACK = "127.0.0.1,localhost"
# The models the CLI picks itself (background work, subagents, the sonnet/opus/haiku aliases): all
# the run's model, which the relay (and the run token's model chain) lets through.
_MODEL_CHOICE_ENV = (
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "CLAUDE_CODE_SUBAGENT_MODEL",
)


def find_binary(env: Mapping[str, str]) -> str:
    wanted = env.get(ENV_CLAUDE_BIN) or "claude"
    found = shutil.which(wanted, path=env.get("PATH"))
    if found is None:
        raise ConfigError(
            f"runtime claude-code needs the Claude Code CLI ({wanted!r}, npm package "
            "@anthropic-ai/claude-code) on PATH, and it is not installed"
        )
    return found


def cli_argv(binary: str, cfg: RunConfig) -> list[str]:
    """The command line: print mode, stream-json out, the spec's model, turns, budget and tools."""
    spec = cfg.spec
    # Shell and python with secrets or network access are RED too (policy.red_tools): disallowed here.
    allowed, disallowed = tool_permissions(spec.tools, red_tools(spec), spec.http.allowed_hosts)
    system = (
        f"{spec.instructions.strip()}\n\nYou run unattended as the Agentry agent "
        f'"{cfg.agent}". End with a final message that states the result.'
    )
    argv = [
        binary,
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--model",
        cfg.model.name,
        "--max-turns",
        str(spec.budget.max_turns),
        "--append-system-prompt",
        system,
    ]
    if allowed:
        argv += ["--allowedTools", *allowed]
    if disallowed:
        argv += ["--disallowedTools", *disallowed]
    if spec.budget.max_cost_per_run_usd is not None:
        argv += ["--max-budget-usd", spec.budget.max_cost_per_run_usd]
    fallback = next((f for f in cfg.model.fallbacks if f.provider is ProviderKind.ANTHROPIC), None)
    if fallback is not None:
        argv += ["--fallback-model", fallback.name]
    return argv


def cli_env(cfg: RunConfig, relay_url: str) -> dict[str, str]:
    """The CLI's environment: the tools' (no provider key, no run token) plus the relay's address and
    a placeholder key. The relay (cli_relay.py) adds the credential; Bash, as the CLI's child, finds
    none here or in `/proc/<cli>/environ`."""
    env = {k: v for k, v in tool_env(cfg.env).items() if k not in _ENDPOINT_ENV}
    env[KEY_ENV[ProviderKind.ANTHROPIC]] = PLACEHOLDER_KEY
    env[BASE_URL_ENV[ProviderKind.ANTHROPIC]] = relay_url
    env.update(dict.fromkeys(_MODEL_CHOICE_ENV, cfg.model.name))
    for name in ("NO_PROXY", "no_proxy"):
        # The pod's egress proxy (HTTP_PROXY...) must not carry the CLI's calls to the loopback relay.
        env[name] = ",".join(filter(None, (env.get(name, ""), _LOOPBACK)))
    home = Path(env.get("HOME") or "/nonexistent")
    if not (home.is_dir() and os.access(home, os.W_OK)):
        # Read-only root filesystem: the CLI keeps its settings under $HOME.
        home = cfg.state_dir / "home"
        home.mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
    env.setdefault("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    env.setdefault("DISABLE_AUTOUPDATER", "1")
    return env


def relay_settings(cfg: RunConfig) -> tuple[str, str, list[str]]:
    """Where the relay forwards (spec baseURL, else ANTHROPIC_BASE_URL, else Anthropic's API), the
    credential it adds (the run token with the gateway on, else the provider key), and the models it
    lets through (the run's model and its Anthropic fallbacks)."""
    kind = ProviderKind.ANTHROPIC
    upstream = base_url_for(cfg.model, cfg.env) or ANTHROPIC_API_URL
    models = [cfg.model.name, *(f.name for f in cfg.model.fallbacks if f.provider is kind)]
    return upstream, cfg.env[KEY_ENV[kind]].strip(), models


def tool_permissions(
    spec_tools: list[ToolName], red: list[ToolName], hosts: list[str]
) -> tuple[list[str], list[str]]:
    enabled = [t for t in spec_tools if t not in red]
    allowed: list[str] = []
    if ToolName.SHELL in enabled or ToolName.PYTHON in enabled:
        allowed.append("Bash")
    if ToolName.FILES in enabled:
        allowed.extend(_FILE_TOOLS)
    if ToolName.HTTP in enabled:
        allowed.extend(f"WebFetch(domain:{d})" for d in dict.fromkeys(map(_webfetch_domain, hosts)) if d)
    granted = {a.split("(")[0] for a in allowed}
    disallowed = [t for t in KNOWN_TOOLS if t not in granted]
    if "WebFetch" in granted:
        disallowed.append("WebSearch")  # search results are hosts outside the allow-list
    return allowed, sorted(set(disallowed))


def _webfetch_domain(entry: str) -> str:
    """Claude Code's WebFetch rules name a domain: an allow-list entry without its scheme and port."""
    try:
        parsed = parse_entry(entry)
    except (Refused, ValueError):  # the CRD's pattern admits no such entry; the http tool refuses it too
        return ""
    return f"*.{parsed.host}" if parsed.wildcard else str(parsed.host)
