"""Store-and-forward through a real broker to a real connector: nothing lost, nothing
twice, order kept per session."""

from __future__ import annotations

from device.store import Store
from sync.connector.service import Connector
from tests.sync.conftest import (
    DaemonThread,
    assert_in_order_once,
    queue_sessions,
    wait_for,
)


def test_thousand_results_queued_offline_arrive_once_in_order(
        sync_settings, broker_on_port, hr_settings_plain):
    settings = sync_settings()
    broker = broker_on_port()
    # The connector's persistent session (and its subscription) exists at the broker before
    # the outage, as it would in production. Plain subscription: mosquitto 2.0 forgets shared
    # ones on restart, and the device may reconnect before the connector does.
    broker.start()
    conn = Connector(hr_settings_plain).start()
    assert conn.subscriber.subscribed.wait(10)
    broker.stop()

    store = Store.open_from_settings(settings)
    ids = queue_sessions(store, settings, 1000)
    with DaemonThread(settings) as d:
        # Offline: the daemon keeps everything and marks nothing delivered.
        wait_for(lambda: d.daemon.link.last_error, 5, what="a failed connect")
        assert store.outbox_stats(0)["depth"] == 3000
        broker.start()
        wait_for(lambda: store.outbox_stats(0)["depth"] == 0, 120, 0.2, "outbox drained")
        wait_for(lambda: conn.db.count_messages() == 3000, 60, 0.2, "connector has all")
    assert_in_order_once(conn.db, ids)
    assert conn.db.rejects() == []
    conn.stop()
    store.close()


def test_broker_refusal_is_not_delivery(sync_settings, broker_on_port, connector, site_pki):
    """A row the broker refuses (ACL: another device's topic) stays undelivered and backs off."""
    settings = sync_settings()
    broker = broker_on_port()
    broker.start()
    assert connector.subscriber.subscribed.wait(10)
    store = Store.open_from_settings(settings)
    bad = store.enqueue("result", "kiosk/v1/default/kiosk-test-02/up/result",
                        {"id": "x-1", "session_id": "s"}, session_id="s-bad", id="x-1")
    ids = queue_sessions(store, settings, 3)
    with DaemonThread(settings):
        wait_for(lambda: connector.db.count_messages() == 9, 30, what="good rows delivered")
        wait_for(lambda: store.get_outbox(bad).attempts >= 1, 10, what="refusal recorded")
    row = store.get_outbox(bad)
    assert row.delivered is None
    assert "Not authorized" in row.last_error
    assert row.next_attempt > row.created
    assert_in_order_once(connector.db, ids)
    store.close()


def test_heartbeat_reports_backlog_versions_and_rejections(sync_settings, hr_key):
    """What the HR side and a technician watch: depth, oldest age, disk, versions, refusals."""
    import json
    from pathlib import Path

    from device.records import HeartbeatRecord
    from sync.cache import DownlinkRejected
    from sync.connector.publish import bank_payload, down_topic, make_envelope
    from sync.daemon import SyncDaemon

    settings = sync_settings()
    store = Store.open_from_settings(settings)
    clock = [1_800_000_000.0]
    store.clock = lambda: clock[0]
    queue_sessions(store, settings, 2)
    d = SyncDaemon(settings, store, clock=lambda: clock[0], start_wecom=False)
    v, bank = bank_payload(Path(__file__).resolve().parents[2] / "examples" / "question_bank.json")
    env = make_envelope(hr_key, kind="questionbank", tenant="default", version=v, payload=bank,
                        device_id="kiosk-test-01", now=clock[0])
    d.cache.handle(down_topic("default", "kiosk-test-01", "questionbank"), env.model_dump_json().encode())
    try:
        d.cache.handle(down_topic("default", "kiosk-test-01", "roster"), b"not json")
    except DownlinkRejected:
        pass
    clock[0] += 1900
    hb = d.heartbeat()
    HeartbeatRecord.model_validate(hb)   # the published schema
    assert hb["outbox_depth"] == 6
    assert 1899 <= hb["oldest_undelivered_age_s"] <= 1901
    assert hb["disk_free_bytes"] > 0
    assert hb["question_bank_version"] == v and hb["roster_version"] is None
    assert hb["downlink_rejected"] == {"malformed": 1}
    assert json.dumps(hb)  # plain JSON
    store.close()
