"""The HR connector: webhook forwarding (HMAC, retries, acknowledge only after), device
alarms, the `interview-hr` commands (publish-bank → device, devices, enrol-device)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from paho.mqtt.client import CallbackAPIVersion

from device.store import Store
from sync.connector.__main__ import main as hr_main
from sync.connector.alarms import check_devices
from sync.connector.db import ConnectorDB
from sync.connector.ingest import Ingest
from sync.connector.service import Connector
from sync.connector.settings import AlarmsSection
from sync.connector.webhook import verify_signature
from tests.sync.conftest import (
    DEVICE,
    TENANT,
    DaemonThread,
    assert_in_order_once,
    connector_config,
    queue_sessions,
    wait_for,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def webhook_settings(tmp_path, site_pki, broker_port, https_port, hr_key_path, ehr):
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(b"s3cret-shared-with-the-ehr")
    return connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                            webhook={"url": ehr.url, "secret_file": str(secret), "max_backoff_s": 0.5})


def test_results_and_events_forwarded_signed_once(sync_settings, broker_on_port, webhook_settings, ehr):
    broker = broker_on_port()
    broker.start()
    settings = sync_settings()
    store = Store.open_from_settings(settings)
    ids = queue_sessions(store, settings, 5)

    def records():
        return [r for r in ehr.records() if r["kind"] in ("result", "event")]

    with Connector(webhook_settings) as conn:
        assert conn.subscriber.subscribed.wait(10)
        with DaemonThread(settings):
            wait_for(lambda: len(records()) == 15, 30, what="15 records at the EHR")
        # a device re-sending what was delivered (e.g. after a crash) reaches the EHR once
        with store.transaction():
            store.db.execute("UPDATE outbox SET delivered = NULL, next_attempt = 0")
        with DaemonThread(settings):
            wait_for(lambda: store.outbox_stats(0)["depth"] == 0, 30, what="re-sent")
        time.sleep(0.5)
        assert_in_order_once(conn.db, ids)
    assert len(records()) == 15
    secret = b"s3cret-shared-with-the-ehr"
    for headers, body in ehr.posts:
        assert verify_signature(secret, headers, body)
        assert not verify_signature(b"wrong", headers, body)
    got = records()
    assert {r["id"] for r in got if r["kind"] == "result"} == set(ids)
    assert sorted({r["record"]["type"] for r in got if r["kind"] == "event"}) == ["finished", "started"]
    store.close()


def test_acknowledged_only_after_the_ehr_took_it(sync_settings, broker_on_port, webhook_settings, ehr):
    """EHR down: the connector holds back the PUBACK. The connector is stopped meanwhile;
    a new connector with the EHR back gets the records from the broker and forwards them."""
    broker = broker_on_port()
    broker.start()
    settings = sync_settings()
    store = Store.open_from_settings(settings)
    ehr.status = 503
    conn = Connector(webhook_settings).start()
    assert conn.subscriber.subscribed.wait(10)
    ids = queue_sessions(store, settings, 3)
    with DaemonThread(settings):
        wait_for(lambda: store.outbox_stats(0)["depth"] == 0, 30, what="broker took the rows")
        wait_for(lambda: conn.db.count_messages() >= 1, 10, what="first stored")
        time.sleep(1.0)
        first = conn.db.messages()[0]
        assert first.forwarded is None and first.forward_attempts >= 1
        assert conn.db.count_messages() == 1   # head-of-line: not acked, nothing after it
        conn.stop()
        ehr.status = 200
        conn = Connector(webhook_settings).start()
        wait_for(lambda: len([r for r in ehr.records() if r["kind"] != "alarm"]) == 9, 30, what="all forwarded after the EHR came back")
    assert_in_order_once(conn.db, ids)
    assert all(m.forwarded for m in conn.db.messages())
    conn.stop()
    store.close()


def test_record_the_ehr_refuses_for_good_does_not_block_the_rest(
        sync_settings, broker_on_port, webhook_settings, ehr):
    broker = broker_on_port()
    broker.start()
    settings = sync_settings()
    store = Store.open_from_settings(settings)
    ehr.status = 422
    with Connector(webhook_settings) as conn:
        assert conn.subscriber.subscribed.wait(10)
        queue_sessions(store, settings, 2)
        with DaemonThread(settings):
            wait_for(lambda: conn.db.count_messages() == 6, 30, what="all stored")
        wait_for(lambda: all(m.forwarded == -1 for m in conn.db.messages()), 10)
        assert all(m.forward_error == "HTTP 422" for m in conn.db.messages())
    store.close()


def test_alarms_for_silent_device_and_old_undelivered(tmp_path, ehr):
    db = ConnectorDB(f"sqlite:///{tmp_path / 'hr.db'}", b"k" * 32)
    from sync.connector.webhook import Webhook

    ingest = Ingest(db, Webhook(ehr.url, b"x"))
    cfg = AlarmsSection(heartbeat_stale_s=300, undelivered_max_age_s=1800)
    now = 1_800_000_000.0
    db.update_device(TENANT, "quiet", heartbeat={"outbox_depth": 0}, at=now - 301)
    db.update_device(TENANT, "stuck", heartbeat={"outbox_depth": 4, "oldest_undelivered_age_s": 1790}, at=now - 20)
    db.update_device(TENANT, "fine", heartbeat={"outbox_depth": 0, "oldest_undelivered_age_s": None}, at=now - 20)
    changes = dict(check_devices(ingest, cfg, now))
    assert changes == {"quiet": "heartbeat_stopped", "stuck": "undelivered_too_old"}
    assert check_devices(ingest, cfg, now) == []          # alarms are raised once
    db.update_device(TENANT, "quiet", heartbeat={"outbox_depth": 0}, at=now)
    assert check_devices(ingest, cfg, now) == [("quiet", None)]
    alarms = [r for r in ehr.records() if r["kind"] == "alarm"]
    assert [(a["device_id"], a["alarm"]) for a in alarms] == [
        ("quiet", "heartbeat_stopped"), ("stuck", "undelivered_too_old"), ("quiet", None)]


def test_publish_bank_reaches_device_and_forgery_shows_in_devices(
        sync_settings, broker_on_port, hr_settings, hr_config_file, site_pki, capsys):
    broker = broker_on_port()
    broker.start()
    cfg = hr_config_file(hr_settings)
    settings = sync_settings(heartbeat_s=0.5)
    with Connector(hr_settings) as conn, DaemonThread(settings) as d:
        assert conn.subscriber.subscribed.wait(10)
        wait_for(d.daemon.link.connected.is_set, 10)
        assert hr_main(["--config", str(cfg), "publish-bank", str(EXAMPLES / "question_bank.json"),
                        "--device", DEVICE]) == 0
        wait_for(lambda: d.store.cache_get("questionbank", "current"), 10, what="bank installed")
        # Someone with broker access but without the HR key publishes a bank: refused.
        forger = mqtt.Client(CallbackAPIVersion.VERSION2, "forger", protocol=mqtt.MQTTv5)
        forger.tls_set(ca_certs=str(site_pki.ca.cert), certfile=str(site_pki.connector.cert),
                       keyfile=str(site_pki.connector.key))
        forger.connect(broker.host, broker.port)
        forger.loop_start()
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from sync.connector.publish import bank_payload, make_envelope

        v, payload = bank_payload(EXAMPLES / "question_bank.json")
        env = make_envelope(Ed25519PrivateKey.generate(), kind="questionbank", tenant=TENANT,
                            version=v + 1, payload={**payload, "version": v + 1}, device_id=DEVICE)
        forger.publish(f"kiosk/v1/{TENANT}/{DEVICE}/down/questionbank", env.model_dump_json(),
                       qos=1).wait_for_publish(5)
        wait_for(lambda: d.daemon.cache.rejected_counts().get("forged") == 1, 10, what="forgery counted")
        assert d.store.cache_get("questionbank", "current")[0] == v
        assert d.store.kv_get("sync.downlink.questionbank")["version"] == v
        wait_for(lambda: (conn.db.devices() or [{}])[0].get("heartbeat", {}) and
                 conn.db.devices()[0]["heartbeat"].get("downlink_rejected") == {"forged": 1}, 10,
                 what="heartbeat carries the count")
        forger.disconnect()
        forger.loop_stop()
    capsys.readouterr()
    assert hr_main(["--config", str(cfg), "devices", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["device_id"] == DEVICE
    assert hr_main(["--config", str(cfg), "devices"]) == 0   # the table a person reads
    table = capsys.readouterr().out
    assert DEVICE in table and "offline" in table
    assert listed[0]["heartbeat"]["question_bank_version"] == v
    assert listed[0]["status"] == "offline"   # the daemon stopped: its last word was offline


def test_publish_bank_refuses_a_broken_spreadsheet_at_the_hr_desk(hr_settings, hr_config_file, tmp_path, capsys):
    bad = tmp_path / "bank.json"
    data = json.loads((EXAMPLES / "question_bank.json").read_text(encoding="utf-8"))
    data["questions"][0]["rubric"] = 5
    bad.write_text(json.dumps(data), encoding="utf-8")
    cfg = hr_config_file(hr_settings)
    assert hr_main(["--config", str(cfg), "publish-bank", str(bad), "--device", DEVICE]) == 2
    err = capsys.readouterr().err
    assert "questions[0].rubric" in err or "rubric" in err


def test_enrol_device_bundle_verifies(hr_settings, hr_config_file, site_pki, hr_key_path, tmp_path):
    from cryptography import x509

    from sync import pki
    from sync.enrolment import bundle_from_qr_text, bundle_qr_text
    from sync.signing import load_public_key, verify_document

    csr = tmp_path / "device.csr"
    csr.write_bytes(pki.make_csr(tmp_path / "client.key", "kiosk-new-07"))
    cfg = hr_config_file(hr_settings)
    out = tmp_path / "bundle.json"
    rc = hr_main(["--config", str(cfg), "enrol-device", str(csr), "--out", str(out),
                  "--ca-cert", str(site_pki.ca.cert), "--ca-key", str(site_pki.ca.key),
                  "--mqtt-host", "mqtt.example.internal", "--https-url", "https://hr.example/kiosk/v1",
                  "--site", "上海总部 前台", "--qr", str(tmp_path / "bundle.png")])
    assert rc == 0
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    bundle = json.loads(out.read_text(encoding="utf-8"))
    verify_document(load_public_key(hr_key_path.with_suffix(".pub")), bundle)
    assert bundle["device_id"] == "kiosk-new-07" and bundle["mqtt"]["host"] == "mqtt.example.internal"
    pki.verify_issued_by(bundle["cert_pem"].encode(), bundle["ca_pem"].encode())
    assert pki.public_key_matches(bundle["cert_pem"].encode(), tmp_path / "client.key")
    assert pki.common_name(x509.load_pem_x509_certificate(bundle["cert_pem"].encode())) == "kiosk-new-07"
    assert bundle_from_qr_text(bundle_qr_text(bundle)) == bundle
    assert (tmp_path / "bundle.png").stat().st_size > 0
    # A CSR whose CN is not the expected device id is refused.
    rc = hr_main(["--config", str(cfg), "enrol-device", str(csr), "--device-id", "kiosk-other",
                  "--out", str(tmp_path / "b2.json"), "--ca-cert", str(site_pki.ca.cert),
                  "--ca-key", str(site_pki.ca.key), "--mqtt-host", "m"])
    assert rc == 2 and not (tmp_path / "b2.json").exists()


def test_wecom_relay_reaches_the_device_as_a_signed_command(
        sync_settings, broker_on_port, tmp_path, site_pki, broker_port, https_port, hr_key_path):
    """Phones reach the connector, not the kiosk: the connector's relay turns WeCom's
    redirect into a signed down/command the kiosk's downlink accepts."""
    import httpx

    from device.signin import state_for

    broker = broker_on_port()
    broker.start()
    hr = connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                          relay={"redirect_uri": "https://hr.example/wecom/callback",
                                 "listen_host": "127.0.0.1", "port": 0})
    settings = sync_settings()
    with Connector(hr) as conn, DaemonThread(settings) as d:
        got: list[dict] = []
        d.daemon.cache.register_command("wecom_signin", got.append)
        assert conn.subscriber.subscribed.wait(10)
        wait_for(d.daemon.link.connected.is_set, 10)
        state = state_for(DEVICE)
        r = httpx.get(f"http://127.0.0.1:{conn.relay.port}/wecom/callback",
                      params={"code": "CODE123", "state": state})
        assert r.status_code == 200
        wait_for(lambda: got, 10, what="relayed command applied")
    assert got == [{"type": "wecom_signin", "device_id": DEVICE, "code": "CODE123", "state": state}]




@hsettings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(topic=st.one_of(st.text(max_size=60), st.sampled_from([
           "kiosk/v1/t/d/up/result", "kiosk/v1/t/d/up/event", "kiosk/v1/t/d/up/status",
           "kiosk/v1/t/d/up/heartbeat", "kiosk/v1/t/d/up/bogus", "kiosk/v1/t/+/up/result"])),
       body=st.one_of(st.binary(max_size=300), st.dictionaries(
           st.sampled_from(["id", "session_id", "online", "type", "x"]),
           st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12)),
           max_size=5).map(lambda d: json.dumps(d).encode())))
def test_any_uplink_message_is_stored_once_or_rejected_with_a_reason(tmp_path_factory, topic, body):
    from sync.connector.ingest import RejectedMessage, decode_body, parse_topic

    db = ConnectorDB(f"sqlite:///{tmp_path_factory.mktemp('hyp') / 'hr.db'}", b"k" * 32)
    ingest = Ingest(db)
    try:
        tenant, device, kind = parse_topic(topic)
        payload = decode_body(body, topic)
        res = ingest.accept(kind=kind, tenant=tenant, device_id=device, payload=payload, via="mqtt")
    except RejectedMessage as e:
        assert str(e)  # a reason a person can read
        assert db.count_messages() == 0
        return
    assert res.ok
    if kind in ("result", "event"):
        again = ingest.accept(kind=kind, tenant=tenant, device_id=device, payload=payload, via="mqtt")
        assert again.ok and not again.new and db.count_messages() == 1
    db.close()
