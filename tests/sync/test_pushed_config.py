"""Config pushed by HR (`down/config`): the signed message goes through the daemon's real
downlink handler, and the device then runs with it (device.config.effective_settings);
the downlink and the device check it with the same rule, so what one refuses the other does."""

from __future__ import annotations

import logging
import time

import pytest
from pydantic import ValidationError

from device.config import ConfigError, apply_overrides, effective_settings
from device.store import Store
from sync.cache import DownlinkCache, DownlinkRejected
from sync.connector.publish import config_payload, down_topic, make_envelope
from tests.sync.conftest import DEVICE, TENANT

TOPIC = down_topic(TENANT, DEVICE, "config")


@pytest.fixture
def dev(sync_settings):
    s = sync_settings()
    store = Store.open_from_settings(s)
    yield s, store, DownlinkCache(store, s, clock=time.time)
    store.close()


def _signed(key, version: int, payload: dict) -> bytes:
    return make_envelope(key, kind="config", tenant=TENANT, version=version, payload=payload,
                         device_id=DEVICE).model_dump_json().encode()


def test_pushed_config_overrides_the_file_for_the_keys_it_sets(dev, hr_key):
    s, store, cache = dev
    assert effective_settings(store, s) == (s, None)
    pushed = {"session": {"answer_grace_s": 45, "timeouts": {"help": 900}}, "retention": {"days": 7}}
    cache.handle(TOPIC, _signed(hr_key, 11, pushed))
    eff, version = effective_settings(store, s)
    assert version == 11
    assert (eff.session.answer_grace_s, eff.session.timeouts.help, eff.retention.days) == (45, 900, 7)
    # Keys HR did not set stay the file's.
    assert eff.session.timeouts.review == s.session.timeouts.review
    assert eff.retention.interrupted_days == s.retention.interrupted_days
    assert eff.session.max_retakes == s.session.max_retakes
    assert eff.device == s.device and eff.sync == s.sync
    with pytest.raises(ValidationError):  # still frozen
        eff.retention.days = 1  # type: ignore[misc]


@pytest.mark.parametrize("payload, named", [
    ({"session": {"timeouts": {"help": -1}}}, "pushed config v12: session.timeouts.help: expected a number > 0, got -1"),
    ({"session": {"answer_grace": 30}}, "pushed config v12: session.answer_grace: unknown key"),
    ({"retention": {"days": 99999}}, "pushed config v12: retention.days: expected an integer 0-3650, got 99999"),
    ({"sync": {"mqtt": {"host": "evil"}}}, "pushed config v12: sync: cannot be set by pushed config"),
    ({"device": {"id": "other"}}, "pushed config v12: device: cannot be set by pushed config"),
])
def test_an_invalid_pushed_config_is_rejected_at_the_downlink_and_counted(dev, hr_key, payload, named):
    s, store, cache = dev
    cache.handle(TOPIC, _signed(hr_key, 3, {"retention": {"days": 9}}))
    with pytest.raises(DownlinkRejected) as e:
        cache.handle(TOPIC, _signed(hr_key, 12, payload))
    assert e.value.reason == "invalid"
    assert named in str(e.value)
    assert cache.rejected_counts() == {"invalid": 1}
    # The earlier good config stays in force.
    assert store.cache_get("config", "current")[0] == 3
    assert effective_settings(store, s)[0].retention.days == 9
    # The device's own check says the same thing, in the same words.
    with pytest.raises(ConfigError) as ce:
        apply_overrides(s, payload, version=12)
    assert named in str(ce.value)


def test_the_hr_desk_refuses_what_the_device_would(tmp_path):
    bad = tmp_path / "push.toml"
    bad.write_text("[session.timeouts]\nhelpp = 900\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"session\.timeouts\.helpp: unknown key"):
        config_payload(bad)
    good = tmp_path / "ok.toml"
    good.write_text("[retention]\ndays = 14\n", encoding="utf-8")
    assert config_payload(good) == {"retention": {"days": 14}}


def test_a_cached_config_the_schema_no_longer_accepts_is_ignored_not_fatal(dev, caplog):
    s, store, _ = dev
    # As if a software update removed a key HR had pushed: the cache holds what was valid then.
    store.cache_put("config", "current", 20, {"session": {"retired_setting": 3}, "retention": {"days": 2}})
    with caplog.at_level(logging.WARNING, logger="device.config"):
        eff, version = effective_settings(store, s)
    assert (eff, version) == (s, None)
    assert "pushed config v20 ignored" in caplog.text
    assert "session.retired_setting: unknown key" in caplog.text
