"""Where the CLI finds the API and its token: flags, then the environment, then the config file.

--api-url / --token           this command only
AGENTRY_API_URL / AGENTRY_TOKEN  (settings.Settings)
~/.config/agentry/config.yaml  ($XDG_CONFIG_HOME, or the file AGENTRY_CONFIG names), written by
                               `agentry login` with mode 0600: {url: ..., token: ...}
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .settings import Settings, get_settings

ENV_URL = "AGENTRY_API_URL"
ENV_TOKEN = "AGENTRY_TOKEN"
ENV_CONFIG = "AGENTRY_CONFIG"
FILE_MODE = 0o600


class ConfigError(Exception):
    """The configuration is missing or unusable; the message says what to do (exit code USAGE)."""


@dataclass(frozen=True)
class Target:
    """The API to talk to and the token to present."""

    url: str
    token: str


def config_path(settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    if settings.config:
        return Path(settings.config).expanduser()
    base = Path(settings.xdg_config_home) if settings.xdg_config_home else Path.home() / ".config"
    return base / "agentry" / "config.yaml"


def read_file(path: Path) -> dict[str, Any]:
    """The config file's mapping ({} when absent); a file others may read is refused (it holds a token)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} is readable by others and holds a token: chmod 600 {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping with `url` and `token`")
    return data


def check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"the API URL must be http(s)://host[:port], not {url!r}")
    return url.strip().rstrip("/")


def resolve(url: str | None, token: str | None, env: Settings, file: Mapping[str, Any]) -> Target:
    """The first of flag, environment and file for each of the two settings (pure)."""
    chosen_url = url or env.api_url or file.get("url")
    chosen_token = token or env.token or file.get("token")
    if not chosen_url:
        raise ConfigError(f"no API URL: pass --api-url, set {ENV_URL}, or run `agentry login --url URL`")
    if not chosen_token:
        raise ConfigError(
            f"no API token: pass --token, set {ENV_TOKEN}, or run `agentry login --url URL --token TOKEN`"
        )
    return Target(check_url(str(chosen_url)), str(chosen_token).strip())


def load(url: str | None, token: str | None, path: Path | None = None) -> Target:
    env = get_settings()
    path = path or config_path(env)
    # The file is read only when a flag or variable is missing: a broken file never blocks them.
    needs_file = not ((url or env.api_url) and (token or env.token))
    return resolve(url, token, env, read_file(path) if needs_file else {})


def write(path: Path, url: str, token: str) -> None:
    """Write the file with mode 0600 from its first byte (never readable by others, even briefly)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = yaml.safe_dump({"url": check_url(url), "token": token.strip()}, sort_keys=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), FILE_MODE)  # an existing file keeps its mode through O_CREAT
        out.write(body)
