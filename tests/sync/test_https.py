"""The HTTPS uplink (mutual TLS) to the connector: fallback delivery of records while the
broker is down, resumable clip uploads, and a device kept to its own identity."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from device.store import Store
from sync.connector.endpoint import ClipFile, Endpoint
from sync.https import HttpsUplink, UplinkError, tls_context
from sync.outbox import deliver_clips_once
from tests.sync.conftest import DaemonThread, assert_in_order_once, queue_sessions, wait_for


def test_https_fallback_delivers_when_the_broker_is_down(sync_settings, connector):
    # No broker is running on the configured port; after fallback_after_s the daemon posts.
    settings = sync_settings(fallback_after_s=1, heartbeat_s=0.5)
    store = Store.open_from_settings(settings)
    ids = queue_sessions(store, settings, 20)
    with DaemonThread(settings) as d:
        wait_for(lambda: store.outbox_stats(0)["depth"] == 0, 30, 0.1, "delivered over HTTPS")
        wait_for(lambda: connector.db.devices() and connector.db.devices()[0]["heartbeat"], 10,
                 what="heartbeat over HTTPS")
        assert d.daemon.delivery.stats.via_https == 60
    msgs = connector.db.messages()
    assert {m.via for m in msgs} == {"https"}
    assert_in_order_once(connector.db, ids)
    assert connector.db.devices()[0]["heartbeat"]["outbox_depth"] >= 0
    store.close()


def test_https_duplicate_post_is_stored_once(sync_settings, connector):
    up = HttpsUplink(sync_settings())
    for _ in range(3):
        up.post_record("result", b'{"id": "r-1", "session_id": "s-1"}', msg_id="r-1", created=None)
    assert connector.db.count_messages() == 1
    up.close()


def test_device_cannot_post_as_another_device(sync_settings, connector, site_pki, https_port):
    client = httpx.Client(verify=tls_context(site_pki.ca.cert, site_pki.other.cert, site_pki.other.key))
    r = client.post(f"https://127.0.0.1:{https_port}/kiosk/v1/default/kiosk-test-01/up/result",
                    content=b'{"id":"forged-1"}')
    assert r.status_code == 403
    assert connector.db.count_messages() == 0
    client.close()


def test_https_refuses_a_client_without_certificate(connector, site_pki, https_port):
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"https://127.0.0.1:{https_port}/kiosk/v1/default/kiosk-test-01/up/result",
                   content=b'{"id":"x"}', verify=tls_context(site_pki.ca.cert))
    assert connector.db.count_messages() == 0


def test_malformed_fallback_record_is_refused_with_reason(sync_settings, connector):
    up = HttpsUplink(sync_settings())
    with pytest.raises(UplinkError) as e:
        up.post_record("result", b"{not json", msg_id="r-2", created=None)
    assert e.value.permanent and "not JSON" in str(e.value)
    assert connector.db.rejects()[0]["reason"].endswith("(JSONDecodeError at 1)")
    up.close()


def test_clip_upload_resumes_after_interruption(sync_settings, connector, hr_settings, tmp_path):
    settings = sync_settings()
    # The kiosk's recording as stored (already AES-GCM encrypted by the kiosk: opaque here).
    clip = tmp_path / "answer-1.ikm"
    data = os.urandom(3 * 1024 * 1024 + 12345)
    clip.write_bytes(data)
    store = Store.open_from_settings(settings)
    row = store.enqueue("clip", "kiosk/v1/default/kiosk-test-01/up/clip",
                        {"media_id": "m-1", "path": str(clip), "session_id": "s-1",
                         "answer_id": "a-1", "kind": "video"}, session_id="s-1")
    up = HttpsUplink(settings)
    progress: list[int] = []

    def cut_after_two_chunks(offset: int, total: int) -> None:
        progress.append(offset)
        if len(progress) == 2:
            connector.endpoint.stop()   # the server goes away mid-upload

    orig = up.upload_clip
    up.upload_clip = lambda *a, **kw: orig(*a, on_progress=cut_after_two_chunks, **kw)
    assert deliver_clips_once(store, up, clock=lambda: 0.0) == 0
    r = store.get_outbox(row)
    assert r.delivered is None and r.attempts == 1 and r.last_error
    have = connector.db.clip("m-1")["received_bytes"]
    assert have == 2 * 1024 * 1024

    # The endpoint comes back on the same port; the next attempt resumes where it stopped.
    connector.endpoint = Endpoint(hr_settings.https, connector.ingest, connector.endpoint.clip_dir,
                                  connector.endpoint.clip_key)
    connector.endpoint.start()
    starts: list[int] = []
    up.upload_clip = lambda *a, **kw: starts.append(orig(*a, **kw)) or starts[-1]
    assert deliver_clips_once(store, up, clock=lambda: 10_000.0) == 1
    assert starts == [have]
    assert store.get_outbox(row).delivered is not None
    c = connector.db.clip("m-1")
    assert c["completed"] and c["received_bytes"] == len(data)
    assert c["meta"]["answer_id"] == "a-1"
    stored = ClipFile(c["path"], connector.endpoint.clip_key, "m-1")
    assert hashlib.sha256(stored.read()).digest() == hashlib.sha256(data).digest()
    # Encrypted at rest on the HR side too: the plaintext bytes are not in the file.
    assert data[:4096] not in open(c["path"], "rb").read()
    up.close()
    store.close()


def test_unreachable_https_server_is_backed_off_as_a_whole(sync_settings):
    """No broker and no connector: the daemon tries HTTPS, then pauses the transport with
    growing delays instead of trying every row (it never spins)."""
    from sync.outbox import OutboxDelivery

    settings = sync_settings(fallback_after_s=1)
    store = Store.open_from_settings(settings)
    queue_sessions(store, settings, 50)
    now = [1_900_000_000.0]
    up = HttpsUplink(settings)
    delivery = OutboxDelivery(store, None, up, clock=lambda: now[0], rng=lambda: 0.5)
    tries = 0
    for _ in range(40):             # 40 polls within the same second
        delivery.step()
        tries = delivery.stats.failed
    assert tries == 1               # one attempt, then the transport is paused
    assert delivery.transport() is None
    now[0] += 1.0
    delivery.step()
    assert delivery.stats.failed == 2 and delivery.transport() is None   # pause grows
    assert store.outbox_stats(0)["depth"] == 150                          # nothing lost
    up.close()
    store.close()
