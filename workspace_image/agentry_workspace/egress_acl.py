"""squid's external ACL helper: may this run pod reach this host and port?

squid (the egress proxy, charts/agentry/templates/egress/) asks once per request, one line each:
`<client ip> <host> <port> <method> -` (URL-quoted; squid appends the acl's arguments, none here),
and caches the answer for a few seconds. The
client is identified by its pod address, never by anything it sends: the helper looks up the run
pod at that address in the workload namespace and reads the Agent snapshot the operator wrote into
the pod's `agentry.dev/agent.json` annotation (a pod cannot change its own annotations: run pods
mount no service-account token). So no credential exists that a tool could read or pass on, and a
run reaches exactly its own Agent's `spec.http.allowedHosts`, with the http tool's semantics
(agentry_workspace.tools.netpolicy): CONNECT is https, anything else http. An address that is no
running run pod is refused.

The squid image (images/squid) runs this module as a script with Debian's python3, beside a copy of
netpolicy.py: so it imports only the standard library and netpolicy, by its absolute name.

Answers: `OK`, or `ERR message=<reason>` (squid shows the reason in its error page and access log).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from agentry_workspace.tools.netpolicy import Refused, check_url

ANNOTATION_AGENT = "agentry.dev/agent.json"
LABEL_EXECUTION = "agentry.dev/execution"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CACHE_SECONDS = 5.0

Lookup = Callable[[str], list[dict[str, Any]]]


def decide(allowed: Iterable[str] | None, host: str, port: int, method: str) -> str | None:
    """None if the allow-list admits the request, else the reason (written for the agent)."""
    if allowed is None:
        return "no running Agentry run pod has this address"
    scheme = "https" if method.upper() == "CONNECT" else "http"
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    try:
        check_url(f"{scheme}://{shown}:{port}/", list(allowed))
    except Refused as exc:
        return str(exc)
    return None


def allowed_hosts(pods: list[dict[str, Any]]) -> list[str] | None:
    """The allow-list of the one running run pod among `pods` (those at one address), else None."""
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if len(running) != 1:
        return None  # none, or an address two pods claim: refuse rather than guess
    raw = ((running[0].get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_AGENT)
    try:
        agent = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(agent, dict):
        return None
    hosts = ((agent.get("spec") or {}).get("http") or {}).get("allowedHosts") or []
    return [str(h) for h in hosts] if isinstance(hosts, list) else None


def parse_line(line: str) -> tuple[str, str, int, str]:
    """`ip host port method [data]` (URL-quoted by squid, which appends the acl's arguments, `-` for
    none); ValueError if malformed."""
    parts = line.split()
    if not 4 <= len(parts) <= 5:
        raise ValueError(line)
    ip, host, port, method = (urllib.parse.unquote(part) for part in parts[:4])
    return ip, host, int(port), method


def answer(line: str, lookup: Lookup) -> str:
    try:
        ip, host, port, method = parse_line(line)
    except ValueError:
        return "ERR message=" + urllib.parse.quote("malformed request from squid")
    reason = decide(allowed_hosts(lookup(ip)), host, port, method)
    return "OK" if reason is None else "ERR message=" + urllib.parse.quote(reason)


@dataclass
class PodLookup:
    """Run pods by address in one namespace, from the API server, each answer kept CACHE_SECONDS."""

    namespace: str
    server: str
    token_file: str = f"{SA_DIR}/token"
    ca_file: str = f"{SA_DIR}/ca.crt"
    _cache: dict[str, tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)

    def __call__(self, ip: str) -> list[dict[str, Any]]:
        hit = self._cache.get(ip)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        pods = self._fetch(ip)
        self._cache[ip] = (time.monotonic(), pods)
        return pods

    def _fetch(self, ip: str) -> list[dict[str, Any]]:
        selectors = {"fieldSelector": f"status.podIP={ip}", "labelSelector": LABEL_EXECUTION}
        query = urllib.parse.urlencode(selectors)
        url = f"{self.server}/api/v1/namespaces/{urllib.parse.quote(self.namespace)}/pods?{query}"
        try:
            with open(self.token_file, encoding="utf-8") as f:
                token = f.read().strip()  # read each time: the kubelet rotates it
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            context = ssl.create_default_context(cafile=self.ca_file)
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return list(json.load(response).get("items") or [])
        except (OSError, ValueError) as exc:
            print(f"agentry-egress-acl: pod lookup for {ip} failed: {exc}", file=sys.stderr, flush=True)
            return []  # refused: an unknown address reaches nothing


def serve(lookup: Lookup, stdin: IO[str], stdout: IO[str]) -> None:
    for line in stdin:
        if line.strip():
            stdout.write(answer(line, lookup) + "\n")
            stdout.flush()


def main() -> None:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    serve(PodLookup(os.environ["AGENTRY_WORKLOAD_NAMESPACE"], server), sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
