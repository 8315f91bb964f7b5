"""The plumbing of the gRPC stand-ins (gcp_fakes.py): a service of unary methods whose requests
are recorded and whose next calls can be made to fail."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf import timestamp_pb2


class Abort(Exception):
    """Raised by a method implementation: becomes the gRPC status of the call."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Recorded:
    method: str
    request: Any  # the request message, as the client library's own class
    metadata: dict[str, str]


@dataclass
class _Fault:
    code: grpc.StatusCode
    message: str
    times: int


Handler = Callable[[Any], Any]


class FakeService:
    """A gRPC service whose methods are (request class, response serializer, implementation)."""

    name = ""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self._faults: dict[str, list[_Fault]] = {}

    def methods(self) -> dict[str, tuple[type[Any], Callable[[Any], bytes], Handler]]:
        raise NotImplementedError

    def fail_next(
        self, method: str, code: grpc.StatusCode, message: str = "injected", times: int = 1
    ) -> None:
        """Answer the next `times` calls of `method` (e.g. "CreateJob") with this status."""
        if method not in self.methods():
            raise ValueError(f"{self.name} has no method {method}")
        with self.lock:
            self._faults.setdefault(method, []).append(_Fault(code, message, times))

    def calls(self, method: str) -> list[Any]:
        """The recorded requests of one method, oldest first."""
        with self.lock:
            return [r.request for r in self.requests if r.method == method]

    def _fault(self, method: str) -> _Fault | None:
        queue = self._faults.get(method) or []
        if not queue:
            return None
        fault = queue[0]
        fault.times -= 1
        if fault.times <= 0:
            queue.pop(0)
        return fault

    def generic_handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                self._wrap(method, impl),
                request_deserializer=request_cls.deserialize,
                response_serializer=serialize,
            )
            for method, (request_cls, serialize, impl) in self.methods().items()
        }
        return grpc.method_handlers_generic_handler(self.name, handlers)

    def _wrap(self, method: str, impl: Handler) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            metadata = {k: str(v) for k, v in context.invocation_metadata()}
            with self.lock:
                self.requests.append(Recorded(method, request, metadata))
                fault = self._fault(method)
                if fault is None:
                    try:
                        return impl(request)
                    except Abort as exc:
                        fault = _Fault(exc.code, exc.message, 0)
            context.abort(fault.code, fault.message)

        return call


def now() -> timestamp_pb2.Timestamp:
    """The current time as a protobuf Timestamp (for output-only time fields)."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    return ts
