"""End-to-end delivery receipts: a PUBACK only means the broker has a record; results and
events end *receipted* when HR's connector says it stored them, and what a broker crash lost
after its PUBACK is sent again and arrives exactly once."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.store import Store
from sync.broker import LocalBroker
from sync.cache import DownlinkCache, DownlinkRejected
from sync.connector.publish import down_topic, make_envelope
from sync.connector.service import Connector
from sync.outbox import RECEIPTS_SEEN_KV, apply_receipts, receipts_required, resend_unreceipted
from tests.sync.conftest import (
    CONNECTOR,
    DEVICE,
    OTHER_DEVICE,
    TENANT,
    DaemonThread,
    assert_in_order_once,
    connector_config,
    queue_sessions,
    wait_for,
)

RECEIPT_TOPIC = down_topic(TENANT, DEVICE, "receipt")


def _records(store) -> list[tuple]:
    with store.lock:
        return store.db.execute(
            "SELECT id, kind, delivered, receipted, resends FROM outbox"
            " WHERE kind IN ('result', 'event') ORDER BY seq").fetchall()


def _all_receipted(store) -> bool:
    rows = _records(store)
    return bool(rows) and all(r[3] is not None for r in rows)


@pytest.fixture
def hr_with_webhook(tmp_path, site_pki, broker_port, https_port, hr_key_path, ehr):
    """A connector on a plain persistent subscription (survives a broker restart) that
    forwards to the fake EHR and signs receipts with the HR downlink key."""
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(b"s3cret-shared-with-the-ehr")
    return connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                            mqtt={"share_group": ""},
                            webhook={"url": ehr.url, "secret_file": str(secret), "max_backoff_s": 0.5})


def test_results_a_broker_crash_lost_after_puback_are_resent_and_arrive_once(
        tmp_path, site_pki, broker_port, sync_settings, hr_with_webhook, ehr):
    settings = sync_settings(receipt_timeout_s=2)
    # Never saved on its own during the test: whatever it accepts is lost by a SIGKILL.
    broker = LocalBroker(tmp_path / "broker", site_pki.ca.cert, site_pki.server.cert,
                         site_pki.server.key, connectors=[CONNECTOR], port=broker_port,
                         autosave_interval_s=3600)
    broker.start()
    conn = Connector(hr_with_webhook).start()
    store = Store.open_from_settings(settings)
    try:
        assert conn.subscriber.subscribed.wait(10)
        warm = queue_sessions(store, settings, 1)
        with DaemonThread(settings):
            # Normal flow first: the device learns that this connector sends receipts.
            wait_for(lambda: _all_receipted(store), 20, what="first session receipted")
            assert receipts_required(store)
            # HR's connector goes away for a moment (its session stays at the broker).
            conn.stop()
            ids = queue_sessions(store, settings, 5)
            wait_for(lambda: store.outbox_stats(0)["depth"] == 0, 20, what="all PUBACKed")
            crashed = _records(store)[3:]
            assert len(crashed) == 15 and all(r[2] is not None and r[3] is None for r in crashed), \
                "the rows must be PUBACKed and not receipted when the broker dies"
            broker.stop(signal.SIGKILL)  # before any autosave: the queued records are gone
            broker.start()
            conn = Connector(hr_with_webhook).start()
            wait_for(lambda: _all_receipted(store), 30, 0.1, "re-sent records receipted")
            wait_for(lambda: conn.db.count_messages() == 18, 10, what="connector has all")
        results = Counter(r["id"] for r in ehr.records() if r["kind"] == "result")
        assert set(results) == set(warm + ids)
        assert max(results.values()) == 1, "a result reached the EHR twice"
        assert_in_order_once(conn.db, warm + ids)
        rows = _records(store)
        assert all(r[4] == 0 for r in rows[:3]), "receipted rows were re-sent"
        assert all(r[4] >= 1 for r in rows[3:])
    finally:
        conn.stop()
        store.close()
        broker.stop()


def test_normal_flow_ends_receipted_without_resends(
        sync_settings, broker_on_port, hr_with_webhook, ehr):
    settings = sync_settings(receipt_timeout_s=2)
    broker = broker_on_port()
    broker.start()
    conn = Connector(hr_with_webhook).start()
    store = Store.open_from_settings(settings)
    try:
        assert conn.subscriber.subscribed.wait(10)
        ids = queue_sessions(store, settings, 20)
        with DaemonThread(settings) as d:
            wait_for(lambda: len(_records(store)) == 60 and _all_receipted(store), 30, 0.1,
                     "all receipted")
            # Past the receipt timeout: nothing may go out again.
            time.sleep(2.5)
            hb = d.daemon.heartbeat()
        assert all(r[4] == 0 for r in _records(store))
        assert hb["unreceipted"] == 0 and hb["oldest_unreceipted_age_s"] is None
        assert_in_order_once(conn.db, ids)
        assert Counter(r["kind"] for r in ehr.records())["result"] == 20
        assert conn.receipts.sent == 60
    finally:
        conn.stop()
        store.close()


def test_https_delivery_is_receipted_by_the_2xx(sync_settings, hr_settings):
    """No broker at all: the HTTPS fallback's 2xx comes after the connector stored the record."""
    settings = sync_settings(mqtt=None, fallback_after_s=1)
    conn = Connector(hr_settings.model_copy(update={"mqtt": None})).start()
    store = Store.open_from_settings(settings)
    try:
        queue_sessions(store, settings, 2)
        with DaemonThread(settings):
            wait_for(lambda: _all_receipted(store), 20, what="receipted over HTTPS")
        assert conn.db.count_messages() == 6
    finally:
        conn.stop()
        store.close()


def test_without_any_receipt_seen_a_puback_is_enough(sync_settings):
    """An older connector never sends receipts: the device must not re-send forever."""
    settings = sync_settings()
    store = Store.open_from_settings(settings)
    queue_sessions(store, settings, 1)
    rows = _records(store)
    for r in rows:
        store.mark_delivered(r[0], 1000.0)
    assert resend_unreceipted(store, 1e10, 60) == 0
    assert store.outbox_stats(0)["depth"] == 0
    # Once HR has receipted anything, the rest is re-sent after the timeout, backing off.
    apply_receipts(store, [rows[0][0]], 2000.0)
    assert resend_unreceipted(store, 2000.0, 60) == 2
    assert store.outbox_stats(0)["depth"] == 2
    store.close()


def test_the_first_receipt_ever_does_not_resend_the_history(sync_settings):
    """A connector upgraded to send receipts: results the broker took more than a day before
    its first receipt are settled as they were, not re-sent; recent ones keep the safety net."""
    from sync.outbox import RECEIPTS_LEGACY_S

    settings = sync_settings()
    store = Store.open_from_settings(settings)
    queue_sessions(store, settings, 2)
    rows = _records(store)
    old, recent = rows[: len(rows) // 2], rows[len(rows) // 2:]
    now = 10 * 86400.0
    for r in old:
        store.mark_delivered(r[0], now - RECEIPTS_LEGACY_S - 3600)
    for r in recent:
        store.mark_delivered(r[0], now - 600)
    apply_receipts(store, [recent[0][0]], now)
    assert resend_unreceipted(store, now + 3600, 60) == len(recent) - 1
    with store.lock:
        receipted = dict(store.db.execute("SELECT id, receipted FROM outbox").fetchall())
    assert all(receipted[r[0]] is not None for r in old)
    assert store.outbox_stats(0)["depth"] == len(recent) - 1
    store.close()


# --- bad receipts ------------------------------------------------------------------------


@pytest.fixture
def dev(sync_settings):
    s = sync_settings()
    store = Store.open_from_settings(s)
    queue_sessions(store, s, 1)
    for r in _records(store):
        store.mark_delivered(r[0], time.time())
    yield s, store, DownlinkCache(store, s, clock=time.time)
    store.close()


def _receipt(key, ids, device_id=DEVICE, **kw) -> bytes:
    return make_envelope(key, kind="receipt", tenant=TENANT, version=1, payload={"ids": ids},
                         device_id=device_id, **kw).model_dump_json().encode()


@pytest.mark.parametrize("case", ["forged", "other_device", "everyone", "other_topic", "no_ids",
                                  "ids_not_strings", "unsigned", "expired"])
def test_bad_receipt_is_rejected_counted_and_changes_nothing(dev, hr_key, case):
    settings, store, cache = dev
    ids = [r[0] for r in _records(store)]
    topic = RECEIPT_TOPIC
    if case == "forged":
        body, reason = _receipt(Ed25519PrivateKey.generate(), ids), "forged"
    elif case == "other_device":
        body, reason = _receipt(hr_key, ids, device_id=OTHER_DEVICE), "foreign"
    elif case == "everyone":
        body, reason = _receipt(hr_key, ids, device_id="*"), "foreign"
    elif case == "other_topic":
        body, reason = _receipt(hr_key, ids), "foreign"
        topic = down_topic(TENANT, OTHER_DEVICE, "receipt")
    elif case == "no_ids":
        body, reason = _receipt(hr_key, []), "invalid"
    elif case == "ids_not_strings":
        body, reason = _receipt(hr_key, [1, 2]), "invalid"
    elif case == "unsigned":
        doc = json.loads(_receipt(hr_key, ids))
        doc["signature"] = ""
        body, reason = json.dumps(doc).encode(), "unsigned"
    else:
        body, reason = _receipt(hr_key, ids, now=time.time() - 7200, validity_s=3600), "expired"
    with pytest.raises(DownlinkRejected) as e:
        cache.handle(topic, body)
    assert e.value.reason == reason
    assert cache.rejected_counts() == {reason: 1}
    assert all(r[3] is None for r in _records(store))
    assert store.kv_get(RECEIPTS_SEEN_KV) is None  # still not "this connector sends receipts"


def test_receipt_naming_unknown_ids_changes_only_known_rows(dev, hr_key, caplog):
    settings, store, cache = dev
    rows = _records(store)
    cache.handle(RECEIPT_TOPIC, _receipt(hr_key, ["not-ours-1", "not-ours-2", rows[1][0]]))
    after = _records(store)
    assert [r[3] is not None for r in after] == [False, True, False]
    assert store.kv_get("sync.receipts")["unknown_ids"] == 2
    assert "2 record id(s) this device does not hold" in caplog.text
    assert "not-ours" not in caplog.text  # counts only


def test_retention_keeps_sessions_hr_has_not_receipted(dev, hr_key):
    settings, store, cache = dev
    old = time.time() - 40 * 86400
    sid = _session_ended(store, old)
    rows = _records(store)
    with store.transaction():
        store.db.execute("UPDATE outbox SET delivered = ?", (old,))
    # Receipts seen from HR (for some other record): a PUBACK alone no longer counts.
    store.kv_set(RECEIPTS_SEEN_KV, {"first": old, "last": old})
    counts = store.purge_delivered(time.time() - 30 * 86400, require_receipts=receipts_required(store))
    assert counts["sessions"] == 0 and counts["outbox"] == 0
    cache.handle(RECEIPT_TOPIC, _receipt(hr_key, [r[0] for r in rows]))
    counts = store.purge_delivered(time.time() - 30 * 86400, require_receipts=receipts_required(store))
    assert counts["sessions"] == 1 and counts["outbox"] == 3
    with store.lock:
        assert store.db.execute("SELECT count(*) FROM sessions WHERE id = ?", (sid,)).fetchone()[0] == 0


def _session_ended(store, ended: float) -> str:
    sid = _records(store) and store.get_outbox(_records(store)[0][0]).session_id
    with store.transaction():
        store.db["sessions"].insert({"id": sid, "job_id": "j", "candidate_ref": "r", "state": "done",
                                     "language": "zh", "started": ended - 600, "ended": ended,
                                     "end_reason": "completed", "data": "{}"})
    return sid
