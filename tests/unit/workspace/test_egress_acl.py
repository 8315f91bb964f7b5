"""The egress proxy's allow-list helper (agentry_workspace/egress_acl.py), on squid's line protocol:
a run pod reaches its own Agent's allow-list with the http tool's semantics, and nothing else."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from agentry_common import netaddr
from agentry_workspace import egress_acl as acl
from agentry_workspace.tools import netpolicy

pytestmark = pytest.mark.unit


def run_pod(ip: str, allowed: list[str], phase: str = "Running") -> dict[str, Any]:
    agent = {"metadata": {"name": "a"}, "spec": {"instructions": "x", "http": {"allowedHosts": allowed}}}
    return {
        "metadata": {"annotations": {acl.ANNOTATION_AGENT: json.dumps(agent)}},
        "status": {"podIP": ip, "phase": phase},
    }


PODS = {"10.244.0.7": [run_pod("10.244.0.7", ["api.example.com", "http://plain.example.org"])]}


def lookup(ip: str) -> list[dict[str, Any]]:
    return PODS.get(ip, [])


def ask(line: str) -> str:
    out = io.StringIO()
    acl.serve(lookup, io.StringIO(line + "\n"), out)
    return out.getvalue().strip()


def test_https_to_an_allowed_host_is_ok() -> None:
    assert ask("10.244.0.7 api.example.com 443 CONNECT") == "OK"
    # What squid really sends: the acl's (absent) arguments as a trailing `-`.
    assert ask("10.244.0.7 api.example.com 443 CONNECT -") == "OK"
    assert ask("10.244.0.7 api.example.com 443 CONNECT - extra").startswith("ERR message=malformed")


def test_plain_http_needs_an_http_entry() -> None:
    assert ask("10.244.0.7 plain.example.org 80 GET") == "OK"
    # `api.example.com` allows https on 443 only: plain http to it is refused, with the reason.
    answer = ask("10.244.0.7 api.example.com 80 GET")
    assert answer.startswith("ERR message=")
    assert "https on port 443 only" in urllib.parse.unquote(answer.removeprefix("ERR message="))


def test_hosts_and_ports_off_the_list_are_refused() -> None:
    for line in ("10.244.0.7 evil.example.net 443 CONNECT", "10.244.0.7 api.example.com 8443 CONNECT"):
        answer = ask(line)
        assert answer.startswith("ERR"), (line, answer)
    reason = urllib.parse.unquote(ask("10.244.0.7 evil.example.net 443 CONNECT").split("=", 1)[1])
    assert "not in the agent's http.allowedHosts" in reason


def test_an_address_that_is_no_running_run_pod_reaches_nothing() -> None:
    assert ask("10.244.0.99 api.example.com 443 CONNECT").startswith("ERR")
    done = {"10.244.0.8": [run_pod("10.244.0.8", ["api.example.com"], phase="Succeeded")]}
    assert acl.answer("10.244.0.8 api.example.com 443 CONNECT", lambda ip: done.get(ip, [])).startswith("ERR")


def test_two_pods_claiming_one_address_are_refused_rather_than_guessed() -> None:
    both = [run_pod("10.244.0.9", ["api.example.com"]), run_pod("10.244.0.9", ["other.example.com"])]
    assert acl.allowed_hosts(both) is None


def test_a_pod_without_a_readable_snapshot_reaches_nothing() -> None:
    running = {"phase": "Running"}
    broken = {"metadata": {"annotations": {acl.ANNOTATION_AGENT: "{not json"}}, "status": running}
    assert acl.allowed_hosts([broken]) is None
    assert acl.allowed_hosts([{"metadata": {}, "status": running}]) is None


def test_malformed_lines_and_quoted_values() -> None:
    assert ask("10.244.0.7 api.example.com").startswith("ERR message=malformed")
    assert ask("10.244.0.7 api.example.com notaport CONNECT").startswith("ERR")
    # squid URL-quotes each value; an IPv6 literal arrives bracketed or bare.
    v6 = {"fd00::7": [run_pod("fd00::7", ["[2001:db8::1]:443"])]}
    assert acl.answer("fd00%3A%3A7 2001%3Adb8%3A%3A1 443 CONNECT", lambda ip: v6.get(ip, [])) == "OK"


def test_pod_lookup_failures_refuse(tmp_path: Any) -> None:
    lookup = acl.PodLookup("agentry-workloads", "https://127.0.0.1:1", token_file=str(tmp_path / "none"))
    assert lookup("10.244.0.7") == []


def test_it_runs_as_the_squid_image_runs_it(tmp_path: Path) -> None:
    """The image's layout (images/squid/Dockerfile): the module as a script, netpolicy.py and the address
    rule it uses (agentry_common/netaddr.py) the only parts beside it; a line on stdin gets its answer
    on stdout."""
    tools = tmp_path / "agentry_workspace" / "tools"
    common = tmp_path / "agentry_common"
    tools.mkdir(parents=True)
    common.mkdir()
    for init in (tools.parent / "__init__.py", tools / "__init__.py", common / "__init__.py"):
        init.touch()
    shutil.copy(Path(netpolicy.__file__), tools / "netpolicy.py")
    shutil.copy(Path(netaddr.__file__), common / "netaddr.py")
    script = tmp_path / "agentry_egress_acl.py"
    shutil.copy(Path(acl.__file__), script)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path)}
    env |= {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "AGENTRY_WORKLOAD_NAMESPACE": "agentry-workloads"}
    done = subprocess.run(
        [sys.executable, str(script)], input="garbage\n", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ERR message=" + urllib.parse.quote("malformed request from squid") + "\n"
