"""A thin client of the Agentry API: one place that turns answers into data or an `ApiError`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from . import __version__
from .config import Target
from .exits import ExitCode, for_status

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# A read is retried on a transport error (a keep-alive connection the server or a proxy just closed, a
# blip); a write only when the connection was never made, since it may have been applied otherwise.
ATTEMPTS = 3  # about 1.5 s: a stale connection or a restarting proxy, not an outage
PATIENT_ATTEMPTS = 12  # about 70 s, as the event stream's reconnects: reads while following a run


class ApiError(Exception):
    """An error answer (`{reason, detail, correlationId}`), or no answer at all (status 0)."""

    def __init__(self, status: int, reason: str, detail: str, correlation_id: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail, self.correlation_id = status, reason, detail, correlation_id

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.UNAVAILABLE if self.status == 0 else for_status(self.status)

    def one_line(self) -> str:
        status = f" {self.status}" if self.status else ""
        cid = f" [correlation {self.correlation_id}]" if self.correlation_id else ""
        return f"error: {self.reason}{status}: {self.detail}{cid}"


def detail_text(detail: Any) -> str:
    """FastAPI's 422 list ([{loc, msg}]) as `field: message; ...`; anything else as text."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    return str(detail)


def error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, Mapping):
        text = (
            response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
        )
        return ApiError(response.status_code, response.reason_phrase or "Error", text)
    correlation = body.get("correlationId") or response.headers.get("x-request-id")
    reason = str(body.get("reason") or response.reason_phrase or "Error")
    return ApiError(response.status_code, reason, detail_text(body.get("detail", "")), correlation)


def unreachable(url: str, exc: httpx.HTTPError) -> ApiError:
    return ApiError(0, "Unavailable", f"cannot reach the API at {url}: {type(exc).__name__}: {exc}")


class Api:
    """Synchronous calls with the bearer token; every failure is an `ApiError`."""

    def __init__(self, target: Target, transport: httpx.BaseTransport | None = None) -> None:
        self.target = target
        self.http = httpx.Client(
            base_url=target.url,
            headers={
                "Authorization": f"Bearer {target.token}",
                "User-Agent": f"agentry-cli/{__version__}",
            },
            timeout=TIMEOUT,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, attempts: int, **kwargs: Any) -> httpx.Response:
        def retryable(exc: BaseException) -> bool:
            if method == "GET":
                return isinstance(exc, httpx.TransportError)
            return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.5, max=8),
            reraise=True,
        )
        try:
            return retrying(self.http.request, method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.target.url, exc) from None

    def call(self, method: str, path: str, attempts: int = ATTEMPTS, **kwargs: Any) -> Any:
        response = self._send(method, path, attempts, **kwargs)
        if response.status_code >= 400:
            raise error_of(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, "BadAnswer", f"{path} did not answer JSON") from None

    def get(self, path: str, params: Mapping[str, Any] | None = None, patient: bool = False) -> Any:
        """`patient`: keep trying as long as a followed event stream would (`logs -f`, `--wait`)."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        return self.call("GET", path, PATIENT_ATTEMPTS if patient else ATTEMPTS, params=clean)

    def post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.call("PUT", path, json=body)

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> list[Any]:
        """Every item of a paginated list (`{items, nextCursor}`), up to `limit` items."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            page = self.get(path, {**(params or {}), "cursor": cursor})
            items.extend(page.get("items", []))
            cursor = page.get("nextCursor")
            if not cursor or (limit is not None and len(items) >= limit):
                return items[:limit] if limit is not None else items
