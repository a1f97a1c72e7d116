"""HR's WeCom messages (`notify` outbox rows) on a device without `[wecom]`: the real daemon
settles them (nobody could ever send them), so the heartbeat, `kiosk-provision status` and the
HR connector's undelivered alarm see only what still has to go; with `[wecom]` configured but
unable to start, they wait. Real mosquitto, real connector."""

from __future__ import annotations

import logging
import threading
import time

from device.records import topic
from device.store import Store
from sync.connector.alarms import device_alarm
from sync.connector.settings import AlarmsSection
from sync.daemon import SyncDaemon
from sync.outbox import WECOM_OFF_NOTE
from tests.sync.conftest import DEVICE, assert_in_order_once, queue_sessions, wait_for

HOUR = 3600.0


def queue_notify(store: Store, settings, session_ids: list[str], *, age_s: float) -> list[str]:
    """One `finished` WeCom message per session, committed `age_s` ago (synthetic data)."""
    real_clock = store.clock
    then = time.time() - age_s
    store.clock = lambda: then
    try:
        ids = []
        for sid in session_ids:
            with store.transaction():
                ids.append(store.enqueue("notify", topic(settings, "notify"), {
                    "type": "finished", "ts": then, "session_id": sid, "entry_id": "E-1",
                    "candidate_name": "欧阳翠花", "job_id": "job-1", "job_title": {"zh": "销售", "en": "Sales"},
                    "total": 70, "recommendation": "maybe", "integrity_flags": [], "end_reason": "completed",
                }, session_id=sid))
        return ids
    finally:
        store.clock = real_clock


def session_ids(store: Store) -> list[str]:
    with store.lock:
        return [r[0] for r in store.db.execute(
            "SELECT DISTINCT session_id FROM outbox WHERE kind = 'result' ORDER BY session_id")]


class Running:
    """The real SyncDaemon, as `interview-sync` runs it (WeCom part included), in a thread."""

    def __init__(self, settings) -> None:
        self.store = Store.open_from_settings(settings)
        self.daemon = SyncDaemon(settings, self.store, start_wecom=True)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.daemon.stop_event.set()
        self.daemon.wake.set()
        self.thread.join(timeout=15)
        self.store.close()


def device_heard(connector, pred) -> dict | None:
    for d in connector.db.devices():
        if d["device_id"] == DEVICE and d["heartbeat"] and pred(d["heartbeat"]):
            return d
    return None


def test_without_wecom_hr_messages_are_settled_and_raise_no_alarm(
        sync_settings, broker_on_port, connector, caplog):
    settings = sync_settings(heartbeat_s=0.5)
    assert settings.wecom is None
    broker_on_port().start()
    assert connector.subscriber.subscribed.wait(10)
    store = Store.open_from_settings(settings)
    results = queue_sessions(store, settings, 3)
    notes = queue_notify(store, settings, session_ids(store), age_s=HOUR)  # an hour of "backlog"
    assert store.outbox_stats(time.time())["oldest_undelivered_age_s"] >= HOUR

    caplog.set_level(logging.INFO, logger="sync")
    with Running(settings):
        wait_for(lambda: connector.db.count_messages("result") == 3, 30, what="results delivered")
        hb = wait_for(lambda: device_heard(connector, lambda h: h["outbox_depth"] == 0), 30,
                      what="a heartbeat with an empty outbox")
        # More kiosk activity while it runs: settled as it comes, not piling up.
        later = queue_notify(store, settings, session_ids(store)[:1], age_s=0)
        wait_for(lambda: store.get_outbox(later[0]).delivered is not None, 10, what="new row settled")
    assert_in_order_once(connector.db, results)
    assert hb["heartbeat"]["oldest_undelivered_age_s"] is None
    assert device_alarm(hb, AlarmsSection(), time.time()) is None
    for row in (store.get_outbox(i) for i in notes + later):
        assert row.delivered is not None and row.last_error == WECOM_OFF_NOTE
    stats = store.outbox_stats(time.time())
    assert stats["depth"] == 0 and stats["oldest_undelivered_age_s"] is None
    assert connector.db.count_messages("notify") == 0  # not sent anywhere, only settled
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "[wecom] is not configured" in r.getMessage()]
    assert len(warnings) == 1  # once at start-up, not per row or per pass
    assert "欧阳" not in caplog.text
    store.close()


def test_with_wecom_configured_but_not_started_hr_messages_wait(
        sync_settings, make_settings, broker_on_port, connector, caplog):
    base = sync_settings(heartbeat_s=0.5)
    # WeCom is configured, but its secret was never sealed: the WeCom part cannot start.
    settings = make_settings({
        "sync": base.sync.model_dump(mode="json", exclude_none=True),
        "wecom": {"corp_id": "wwtestcorp42", "agent_id": 1000007, "hr_oncall": ["hr.li"],
                  "redirect_uri": "https://127.0.0.1:9/wecom/callback"},
    })
    broker_on_port().start()
    assert connector.subscriber.subscribed.wait(10)
    store = Store.open_from_settings(settings)
    results = queue_sessions(store, settings, 2)
    notes = queue_notify(store, settings, session_ids(store), age_s=HOUR)

    with Running(settings):
        wait_for(lambda: connector.db.count_messages("result") == 2, 30, what="results delivered")
        hb = wait_for(lambda: device_heard(connector, lambda h: h["outbox_depth"] == len(notes)), 30,
                      what="a heartbeat counting the waiting messages")
    assert_in_order_once(connector.db, results)  # a waiting notify row blocks no result
    for row in (store.get_outbox(i) for i in notes):
        assert row.delivered is None
    assert hb["heartbeat"]["oldest_undelivered_age_s"] >= HOUR
    # HR is right to hear about it: these messages still have to be sent.
    assert device_alarm(hb, AlarmsSection(), time.time()) == "undelivered_too_old"
    assert "wecom set-secret" in caplog.text
    store.close()
