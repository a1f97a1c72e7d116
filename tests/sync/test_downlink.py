"""Signed downlink: what the HR side publishes is verified, version-checked and validated
with the importer's own schemas before the cache is swapped; anything forged, stale,
malformed, oversized, foreign or expired is rejected, counted, and changes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from device.store import Store
from sync.cache import DownlinkCache, DownlinkRejected
from sync.connector.publish import bank_payload, down_topic, make_envelope, roster_payload
from tests.sync.conftest import DEVICE, OTHER_DEVICE, TENANT

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TOPIC = down_topic(TENANT, DEVICE, "questionbank")


@pytest.fixture
def dev(sync_settings):
    s = sync_settings()
    store = Store.open_from_settings(s)
    yield s, store, DownlinkCache(store, s, clock=time.time)
    store.close()


def _bank(version: int = 1) -> dict:
    _, payload = bank_payload(EXAMPLES / "question_bank.json")
    return {**payload, "version": version}


def _env(key, kind="questionbank", version=1, payload=None, **kw) -> bytes:
    payload = _bank(version) if payload is None and kind == "questionbank" else payload
    return make_envelope(key, kind=kind, tenant=TENANT, version=version, payload=payload,
                         device_id=kw.pop("device_id", DEVICE), **kw).model_dump_json().encode()


def _reject(cache, topic, body) -> str:
    with pytest.raises(DownlinkRejected) as e:
        cache.handle(topic, body)
    return e.value.reason


def test_signed_newer_bank_is_installed(dev, hr_key):
    s, store, cache = dev
    applied = cache.handle(TOPIC, _env(hr_key, version=3))
    assert (applied.kind, applied.version) == ("questionbank", 3)
    from device.questions import current_bank

    assert current_bank(store).version == 3
    assert cache.rejected_counts() == {}


def test_roster_and_config_are_validated_and_installed(dev, hr_key):
    s, store, cache = dev
    version, roster = roster_payload(EXAMPLES / "roster.json")
    cache.handle(down_topic(TENANT, DEVICE, "roster"), _env(hr_key, "roster", version, roster))
    from device.roster import current_roster

    assert current_roster(store).version == version
    cfg = {"session": {"max_retakes": 2}}
    cache.handle(down_topic(TENANT, DEVICE, "config"), _env(hr_key, "config", 5, cfg))
    assert store.cache_get("config", "current") == (5, cfg)


@pytest.mark.parametrize("case", [
    "forged_key", "tampered", "unsigned", "stale", "malformed_json", "not_object",
    "missing_fields", "oversized", "other_device", "wrong_kind_topic", "expired",
    "invalid_bank", "bank_version_mismatch", "config_touches_broker", "unknown_command",
])
def test_bad_downlink_is_rejected_counted_and_changes_nothing(dev, hr_key, case):
    s, store, cache = dev
    cache.handle(TOPIC, _env(hr_key, version=2))  # the last good bank
    before = store.cache_get("questionbank", "current")
    topic = TOPIC
    if case == "forged_key":
        body, reason = _env(Ed25519PrivateKey.generate(), version=9), "forged"
    elif case == "tampered":
        doc = json.loads(_env(hr_key, version=9))
        doc["payload"]["questions"][0]["text"] = {"zh": "篡改", "en": "tampered"}
        body, reason = json.dumps(doc).encode(), "forged"
    elif case == "unsigned":
        doc = json.loads(_env(hr_key, version=9))
        doc["signature"] = ""
        body, reason = json.dumps(doc).encode(), "unsigned"
    elif case == "stale":
        body, reason = _env(hr_key, version=2), "stale"
    elif case == "malformed_json":
        body, reason = b'{"kind": "questionbank", ', "malformed"
    elif case == "not_object":
        body, reason = b"[1, 2, 3]", "malformed"
    elif case == "missing_fields":
        body, reason = json.dumps({"signature": "AAAA", "kind": "questionbank"}).encode(), "malformed"
    elif case == "oversized":
        cache.max_bytes = 10_000
        body, reason = _env(hr_key, version=9), "oversized"
    elif case == "other_device":
        body, reason = _env(hr_key, version=9, device_id=OTHER_DEVICE), "foreign"
    elif case == "wrong_kind_topic":
        body, reason = _env(hr_key, version=9), "foreign"
        topic = down_topic(TENANT, DEVICE, "roster")
    elif case == "expired":
        body, reason = _env(hr_key, version=9, now=time.time() - 7200, validity_s=3600), "expired"
    elif case == "invalid_bank":
        bad = _bank(9)
        bad["questions"][0]["rubric"] = "not a rubric"
        body, reason = _env(hr_key, version=9, payload=bad), "invalid"
    elif case == "bank_version_mismatch":
        body, reason = _env(hr_key, version=9, payload=_bank(8)), "invalid"
    elif case == "config_touches_broker":
        topic = down_topic(TENANT, DEVICE, "config")
        body, reason = _env(hr_key, "config", 9, {"sync": {"mqtt": {"host": "evil"}}}), "invalid"
    elif case == "unknown_command":
        topic = down_topic(TENANT, DEVICE, "command")
        body, reason = _env(hr_key, "command", 9, {"type": "format_disk"}), "invalid"
    assert _reject(cache, topic, body) == reason
    assert store.cache_get("questionbank", "current") == before
    assert store.cache_get("config", "current") is None
    assert cache.rejected_counts() == {reason: 1}


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.binary(max_size=512),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=6),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),
))
def test_arbitrary_bytes_never_crash_and_never_change_the_cache(dev, body):
    s, store, cache = dev
    with pytest.raises(DownlinkRejected):
        cache.handle(TOPIC, body)
    assert store.cache_list("questionbank") == []


def test_commands_run_once_per_version(dev, hr_key):
    s, store, cache = dev
    seen = []
    cache.register_command("retry_now", seen.append)
    topic = down_topic(TENANT, DEVICE, "command")
    body = _env(hr_key, "command", 100, {"type": "retry_now"})
    cache.handle(topic, body)
    assert _reject(cache, topic, body) == "stale"   # a replayed command does nothing
    assert seen == [{"type": "retry_now"}]
