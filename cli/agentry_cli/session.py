"""What every API command shares: the global options, the client, the `--output` option."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from . import config
from .client import Api, ApiError
from .output import Format

if TYPE_CHECKING:  # lightkube loads only in cluster mode
    from .cluster import Cluster

OutputOption = Annotated[
    Format,
    typer.Option("--output", "-o", help="table for people; json or yaml (the API's objects) for scripts"),
]


@dataclass
class Session:
    """The global options of one invocation; the client is made on first use."""

    url: str | None = None
    token: str | None = None
    config_file: Path | None = None
    kubeconfig: str | None = None
    namespace: str | None = None
    _api: Api | None = field(default=None, repr=False)

    def target(self) -> config.Target:
        return config.load(self.url, self.token, self.config_file)

    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.target())
        return self._api

    @property
    def cluster_mode(self) -> bool:
        return self.kubeconfig is not None

    def cluster(self) -> Cluster:
        from .cluster import Cluster, connect

        assert self.kubeconfig is not None
        return Cluster(connect(self.kubeconfig, self.namespace))

    def needs_api(self, command: str) -> None:
        if self.cluster_mode:
            raise InputError(f"`{command}` needs the Agentry API: drop --kubeconfig (see `agentry login`)")

    def close(self) -> None:
        if self._api is not None:
            self._api.close()


def session_of(ctx: typer.Context) -> Session:
    obj = ctx.find_root().obj
    if not isinstance(obj, Session):  # a sub-app invoked on its own (tests): defaults
        obj = ctx.find_root().obj = Session()
    return obj


def segment(value: str) -> str:
    """An id as one URL path segment (a `/` or `..` in it never changes the route)."""
    return quote(value, safe="")


def resolve_agent(api: Api, ref: str) -> str:
    """The agent id for `ref`: an id, else the one agent whose name is `ref` (NotFound / Conflict)."""
    try:
        return str(api.get(f"/api/agents/{segment(ref)}")["id"])
    except ApiError as exc:
        if exc.status != 404:
            raise
    matches = [a for a in api.pages("/api/agents", {"limit": 100}) if a.get("name") == ref]
    if len(matches) == 1:
        return str(matches[0]["id"])
    if not matches:
        raise ApiError(404, "NotFound", f"no agent with the id or name {ref!r}")
    ids = ", ".join(str(a["id"]) for a in matches)
    raise ApiError(409, "Ambiguous", f"{len(matches)} agents are named {ref!r} ({ids}): give the id")


class InputError(Exception):
    """A file or argument the command cannot use; the message names what (exit code USAGE)."""
