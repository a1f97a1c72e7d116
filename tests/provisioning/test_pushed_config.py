"""Config pushed by HR on the technician's side: the nightly `retention run` purges with the
pushed retention.days, and `status` shows which pushed version is in force and what it sets.
The config arrives as a real signed downlink through the sync daemon's handler."""

from __future__ import annotations

import time

from device.config import load_settings
from sync.cache import DownlinkCache
from sync.connector.publish import down_topic, make_envelope
from tests.provisioning.conftest import Device, Runner, Site, as_json
from tests.provisioning.test_cli import open_store

DAY = 86400


def _push(device: Device, site: Site, version: int, payload: dict) -> None:
    settings = load_settings(device.config)
    with open_store(device) as store:
        # Where enrolment puts HR's public key.
        pem = (site.dir / "hr-signing.pub").read_text(encoding="ascii")
        store.cache_put("pubkey", "downlink", 1, {"pem": pem})
        env = make_envelope(site.hr_key, kind="config", tenant=settings.device.tenant,
                            version=version, payload=payload, device_id=settings.device.id)
        DownlinkCache(store, settings, clock=time.time).handle(
            down_topic(settings.device.tenant, settings.device.id, "config"),
            env.model_dump_json().encode())


def _delivered_session(store, sid: str, delivered: float) -> None:
    with store.transaction():
        store.db["sessions"].insert({"id": sid, "job_id": "j", "candidate_ref": "r", "state": "done",
                                     "language": "zh", "started": delivered - 900,
                                     "ended": delivered - 300, "end_reason": "completed", "data": "{}"})
    row = store.enqueue("result", "t", {"s": sid}, session_id=sid)
    store.mark_delivered(row, delivered)


def test_retention_run_uses_the_pushed_days(kp: Runner, device: Device, site: Site) -> None:
    now = time.time()
    with open_store(device) as store:
        _delivered_session(store, "five-days", now - 5 * DAY)
        _delivered_session(store, "one-day", now - 1 * DAY)
    # The file's 30 days keep both.
    assert as_json(kp("retention", "run", "--json"))["sessions"] == 0
    _push(device, site, 4, {"retention": {"days": 3}})
    out = kp("retention", "run")
    assert "retention 3 days" in out.stdout
    with open_store(device) as store:
        left = [r[0] for r in store.db.execute("SELECT id FROM sessions")]
    assert left == ["one-day"]
    # The TOML file is the technician's: untouched by the push.
    assert load_settings(device.config).retention.days == 30


def test_status_shows_the_pushed_version_and_keys(kp: Runner, device: Device, site: Site) -> None:
    assert as_json(kp("status", "--json"))["pushed_config"] is None
    assert "none (config file only)" in kp("status").stdout
    _push(device, site, 7, {"session": {"timeouts": {"help": 900}}, "retention": {"days": 10}})
    info = as_json(kp("status", "--json"))
    assert info["pushed_config"] == {"version": 7, "keys": ["session.timeouts.help", "retention.days"],
                                     "applied": True}
    text = kp("status").stdout
    assert "version 7, overrides session.timeouts.help, retention.days" in text
