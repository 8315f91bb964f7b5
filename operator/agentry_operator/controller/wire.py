"""The hot path's requests written straight to aiohttp: children created, statuses merge-patched, and
the informer's listings.

lightkube sends each request through httpx's client (URL parsing, an auth flow, redirect handling,
two Response objects) and decodes the answer into a resource; these requests skip all of that, and
their answers are not decoded unless read. Same connections (the transport's aiohttp session), the
same gate (gate.py: a request waits for its slot before anything of it is built), same timeouts,
same errors: an error answer raises lightkube's `ApiError` with the server's Status, a failed
connection httpx's errors. Authentication stays lightkube's: these requests carry the Authorization
header its auth flow last put on a request (transport.Credentials). Until lightkube has sent one, or
when the server answers 401 (a rotated token file, an expired exec token), `send` answers None and
the caller sends the request through lightkube, whose auth flow refreshes the header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final, cast
from urllib.parse import quote

import httpx2
import msgspec
from lightkube import ApiError
from lightkube.core.resource import Resource, api_info
from lightkube.models.meta_v1 import Status

from .transport import AiohttpTransport, Credentials

JSON: Final = "application/json"
MERGE_PATCH: Final = "application/merge-patch+json"


def collection(res: type[Resource], namespace: str | None) -> str:
    """The path of `res`'s objects in `namespace` (None: in every namespace), from lightkube's
    description of the kind."""
    info = api_info(res)
    group, version = info.resource.group, info.resource.version
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    where = f"/namespaces/{quote(namespace)}" if namespace is not None else ""
    return f"{prefix}{where}/{info.plural}"


class Wire:
    """Requests to one API server on `transport`'s connections, as `field_manager`."""

    def __init__(
        self,
        server: str,
        transport: AiohttpTransport,
        field_manager: str,
        timeout: httpx2.Timeout,
        slots: asyncio.Semaphore,
    ):
        self._server, self._transport, self._slots = server.rstrip("/"), transport, slots
        self._query = f"?fieldManager={quote(field_manager)}"
        self._timeouts = {"connect": timeout.connect, "read": timeout.read}

    async def send(
        self, method: str, path: str, body: Mapping[str, object], content_type: str
    ) -> bytes | None:
        """The answer's body for a 2xx; None when lightkube must send this one (see the module)."""
        return await self._request(method, path + self._query, body, content_type)

    async def get(self, path: str) -> bytes | None:
        """The answer's body of a GET of `path` (with its query); None as for `send`."""
        return await self._request("GET", path, None, JSON)

    async def _request(
        self, method: str, target: str, body: Mapping[str, object] | None, content_type: str
    ) -> bytes | None:
        credentials = self._transport.credentials
        if credentials is None:
            return None
        headers = self.headers(credentials, content_type)
        async with self._slots:
            data = None if body is None else msgspec.json.encode(body)
            answer = await self._transport.send(method, self._server + target, headers, data, self._timeouts)
        if answer.status == 401:
            return None
        if answer.status >= 400:
            raise ApiError(status=_status(answer.status, answer.body))
        return answer.body

    def headers(self, credentials: Credentials, content_type: str) -> dict[str, str]:
        headers = {"Content-Type": content_type, "Accept": JSON}
        if credentials.authorization is not None:
            headers["Authorization"] = credentials.authorization
        return headers

    @property
    def server(self) -> str:
        return self._server

    @property
    def transport(self) -> AiohttpTransport:
        return self._transport

    async def create(self, res: type[Resource], manifest: dict[str, Any]) -> bool:
        """POST `manifest`; False if lightkube must send it. The answer is not decoded: a new object
        has no status yet, and what the server added (its uid, resourceVersion) no caller reads."""
        path = collection(res, manifest["metadata"]["namespace"])
        return await self.send("POST", path, manifest, JSON) is not None

    async def patch_status(
        self, res: type[Resource], name: str, namespace: str, patch: Mapping[str, object]
    ) -> bool:
        """Merge-patch the status subresource; False if lightkube must send it. The answer (the whole
        object) is not decoded: the operator's writers keep their own copy (handlers/state.py)."""
        path = f"{collection(res, namespace)}/{quote(name)}/status"
        return await self.send("PATCH", path, patch, MERGE_PATCH) is not None


def _status(code: int, body: bytes) -> Status:
    """The server's Status from an error answer; one made up from the code and text otherwise (a proxy's
    page)."""
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        status = Status.from_dict(decoded)
        return cast(Status, status)
    text = body.decode(errors="replace").strip()[:200]
    return Status(code=code, message=text or f"HTTP {code}", status="Failure")
