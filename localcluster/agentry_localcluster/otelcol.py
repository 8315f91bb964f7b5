"""A real OpenTelemetry Collector for tests and local use: built once, then run on a port of its own.

hack/build-otelcol.sh compiles the OTLP receiver and the file exporter into one binary from the Go
module proxy (no release binary can be downloaded here) and caches it under AGENTRY_CACHE_DIR. The
collector writes every batch it receives as one OTLP/JSON line; `Collector.spans()` reads them back.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import localhttp
from .kube import REPO
from .procs import Proc, ServerError, start_with_ports

BUILD_SCRIPT = REPO / "hack" / "build-otelcol.sh"
READY_SECONDS = 30


def build_otelcol() -> Path:
    """The collector binary: cached, or built now (cold: about a minute on 2 cores)."""
    # Progress goes to the terminal (stderr); the last stdout line is the binary's path.
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise ServerError(f"hack/build-otelcol.sh failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def collector_config(port: int, out: Path) -> dict[str, Any]:
    """OTLP/HTTP on loopback `port` → one JSON line per batch in `out`; no telemetry port of its own."""
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"file": {"path": str(out), "flush_interval": "100ms"}},
        "service": {
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
        },
    }


def flatten_spans(lines: list[str]) -> Iterator[dict[str, Any]]:
    """Every span of OTLP/JSON export lines, with its resource's `service.name` as `service`."""
    for line in lines:
        if not line.strip():
            continue
        for rs in json.loads(line).get("resourceSpans", []):
            attrs = {a["key"]: a["value"] for a in rs.get("resource", {}).get("attributes", [])}
            service = attrs.get("service.name", {}).get("stringValue", "")
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    yield {**span, "service": service, "attrs": attribute_values(span)}


def attribute_values(span: dict[str, Any]) -> dict[str, Any]:
    """A span's attributes as plain values (OTLP/JSON wraps each in its type)."""
    out: dict[str, Any] = {}
    for attr in span.get("attributes", []):
        value = attr["value"]
        if "arrayValue" in value:
            out[attr["key"]] = [next(iter(v.values())) for v in value["arrayValue"].get("values", [])]
        else:
            raw = next(iter(value.values()), None)
            out[attr["key"]] = int(str(raw)) if "intValue" in value else raw  # int64s are JSON strings
    return out


@dataclass
class Collector:
    """The collector as a process; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    workdir: Path
    port: int = 0
    proc: Proc = field(init=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def out(self) -> Path:
        return self.workdir / "traces.jsonl"

    def start(self) -> Collector:
        binary = build_otelcol()
        return start_with_ports(
            "the OpenTelemetry Collector", 1, lambda ports: self._launch(binary, ports[0])
        )

    def _launch(self, binary: Path, port: int) -> Collector:
        self.port = port
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "otelcol.yaml"
        config.write_text(json.dumps(collector_config(port, self.out)))  # JSON is YAML
        self.proc = Proc("otelcol", [str(binary), f"--config={config}"], self.workdir / "otelcol.log").start()
        # A GET on the OTLP path is answered (405) once the receiver listens.
        self.proc.wait_ready(
            lambda: localhttp.get(f"{self.endpoint}/v1/traces", timeout=1).status_code == 405,
            READY_SECONDS,
            "listening",
            ports=(port,),
        )
        return self

    def spans(self) -> list[dict[str, Any]]:
        try:
            lines = self.out.read_text().splitlines()
        except FileNotFoundError:
            return []
        return list(flatten_spans(lines))

    def stop(self) -> None:
        self.proc.stop()
