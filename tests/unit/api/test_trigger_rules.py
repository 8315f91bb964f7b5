"""The trigger's pure rules: both signature schemes (GitHub's and the Standard Webhooks headers),
the payload mapping over JSON paths and its bounds, the token bucket, the run's deterministic name,
the Trigger model against its CRD, and the runtime's framing of a delivery's input."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentry_api.services.hooks import Bucket
from agentry_api.services.trigger_mapping import check_mapping, parameters, run_input
from agentry_common.triggers import (
    MAX_INPUT_CHARS,
    MappingSpec,
    Refusal,
    TriggerSpec,
    run_name,
    sign_generic,
    sign_github,
    verify_generic,
    verify_github,
)

pytestmark = pytest.mark.unit

KEY = b"k" * 32
BODY = b'{"action": "opened"}'
CRD = Path(__file__).parents[3] / "manifests" / "crds" / "agentry.dev_triggers.yaml"


def test_github_signatures_verify_and_forgeries_do_not() -> None:
    headers = sign_github(KEY, BODY)
    assert headers["x-hub-signature-256"].startswith("sha256=")
    refusal, key = verify_github(KEY, BODY, headers)
    assert refusal is None and key.startswith("sha256:")
    assert verify_github(KEY, BODY + b" ", headers)[0] is Refusal.SIGNATURE_INVALID
    assert verify_github(b"other", BODY, headers)[0] is Refusal.SIGNATURE_INVALID
    assert verify_github(KEY, BODY, {})[0] is Refusal.SIGNATURE_MISSING
    assert verify_github(KEY, BODY, {"x-hub-signature-256": "sha1=00"})[0] is Refusal.SIGNATURE_INVALID
    # The delivery is its body: the same body under another delivery id is the same delivery.
    assert verify_github(KEY, BODY, {**headers, "x-github-delivery": "a"})[1] == key


def test_generic_signatures_cover_the_id_and_time() -> None:
    now = time.time()
    headers = sign_generic(KEY, "msg-1", int(now), BODY)
    assert verify_generic(KEY, BODY, headers, now, 300) == (None, "id:msg-1")
    assert (
        verify_generic(KEY, BODY, {**headers, "webhook-id": "msg-2"}, now, 300)[0]
        is Refusal.SIGNATURE_INVALID
    )
    assert verify_generic(KEY, BODY, headers, now + 301, 300)[0] is Refusal.TIMESTAMP_STALE
    assert verify_generic(KEY, BODY, headers, now - 301, 300)[0] is Refusal.TIMESTAMP_STALE
    assert (
        verify_generic(KEY, BODY, {**headers, "webhook-timestamp": "x"}, now, 300)[0]
        is Refusal.TIMESTAMP_STALE
    )
    assert (
        verify_generic(KEY, BODY, {**headers, "webhook-id": ""}, now, 300)[0] is Refusal.DELIVERY_ID_MISSING
    )
    # Several signatures (a key being rotated): one that verifies is enough.
    several = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}
    assert verify_generic(KEY, BODY, several, now, 300)[0] is None
    assert verify_generic(KEY, b"{}", headers, now, 300)[0] is Refusal.SIGNATURE_INVALID


def test_the_mapping_selects_paths_and_bounds_its_output() -> None:
    payload: dict[str, Any] = {"pr": {"title": "Fix", "labels": [{"n": "a"}, {"n": "b"}]}, "count": 3}
    mapping = MappingSpec(input="{{ $.pr.title }} ({{$.count}}) {{ $.pr.labels[*].n }} {{ $.nope }}")
    assert run_input(mapping, payload) == "Fix (3) a\nb "
    assert run_input(MappingSpec(), {"a": 1}) == '{"a": 1}'
    assert len(run_input(MappingSpec(), {"a": "x" * (2 * MAX_INPUT_CHARS)})) == MAX_INPUT_CHARS
    assert parameters(MappingSpec(parameters={"t": "{{ $.pr.title }}"}), payload) == {"t": "Fix"}
    problems = check_mapping(MappingSpec(input="{{ $[ }}", parameters={"p": "{{ $.a }}", "q": "{{ ][ }}"}))
    assert [field for field, _ in problems] == ["input", "parameters.q"]


def test_the_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = Bucket(rate=1.0, burst=2, tokens=2, at=100.0)
    assert bucket.take(100.0) == 0 and bucket.take(100.0) == 0
    assert bucket.take(100.0) == pytest.approx(1.0)
    assert bucket.take(100.5) == pytest.approx(0.5)
    assert bucket.take(101.1) == 0


def test_run_names_are_deterministic_and_fit() -> None:
    one = run_name("x" * 63, "uid-1", "id:d")
    assert one == run_name("x" * 63, "uid-1", "id:d") and len(one) <= 63
    assert one != run_name("x" * 63, "uid-2", "id:d") != run_name("x" * 63, "uid-1", "id:e")


def _properties(schema: dict[str, Any]) -> set[str]:
    return set(schema.get("properties", {}))


def test_the_trigger_model_matches_its_crd() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    aliases = {f.alias for f in TriggerSpec.model_fields.values()}
    assert _properties(spec) == aliases
    assert TriggerSpec.model_validate({"agentRef": {"name": "a"}, "secretRef": {"name": "s"}}).target == (
        "Agent",
        "a",
    )
    with pytest.raises(ValueError, match="exactly one"):
        TriggerSpec.model_validate({"secretRef": {"name": "s"}})
