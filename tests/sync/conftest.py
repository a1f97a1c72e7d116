"""Fixtures for the uplink tests: a site PKI made with sync.pki, a real mosquitto on
127.0.0.1 (TLS, client certificates as identities, per-device ACLs), the HR signing key,
device settings pointing at them, and a real connector (MQTT + mutual-TLS HTTPS)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from device.config import Settings
from sync import pki
from sync.broker import LocalBroker, free_port
from sync.connector.service import Connector
from sync.connector.settings import ConnectorSettings
from sync.signing import generate_signing_key, load_private_key

DEVICE = "kiosk-test-01"
OTHER_DEVICE = "kiosk-test-02"
CONNECTOR = "hr-connector"
TENANT = "default"


@dataclass
class Pki:
    dir: Path
    ca: pki.CertPair
    server: pki.CertPair
    device: pki.CertPair
    other: pki.CertPair
    connector: pki.CertPair
    rogue_device: pki.CertPair  # CN = DEVICE, but issued by a CA the broker does not trust


@pytest.fixture(scope="session")
def site_pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca(d / "ca")
    rogue_ca = pki.make_ca(d / "rogue")
    return Pki(
        dir=d, ca=ca,
        server=pki.make_server_cert(ca, d, ["127.0.0.1", "localhost"]),
        device=pki.make_client_cert(ca, d, DEVICE),
        other=pki.make_client_cert(ca, d, OTHER_DEVICE),
        connector=pki.make_client_cert(ca, d, CONNECTOR),
        rogue_device=pki.make_client_cert(rogue_ca, d / "rogue", DEVICE),
    )


@pytest.fixture(scope="session")
def hr_key_path(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hrkey")
    generate_signing_key(d / "hr-signing.key", d / "hr-signing.pub")
    return d / "hr-signing.key"


@pytest.fixture
def hr_key(hr_key_path):
    return load_private_key(hr_key_path)


@pytest.fixture
def broker(tmp_path, site_pki) -> Iterator[LocalBroker]:
    b = LocalBroker(tmp_path / "broker", site_pki.ca.cert, site_pki.server.cert,
                    site_pki.server.key, connectors=[CONNECTOR])
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def broker_port() -> int:
    return free_port()


@pytest.fixture
def https_port() -> int:
    return free_port()


@pytest.fixture
def sync_settings(make_settings, site_pki, hr_key_path, broker_port, https_port) -> Callable[..., Settings]:
    """make(**sync_overrides) -> Settings for DEVICE with MQTT on broker_port and HTTPS on
    https_port (the broker/connector may or may not be running)."""

    def make(**sync: Any) -> Settings:
        base = {
            "heartbeat_s": 60,
            "fallback_after_s": 300,
            "downlink_public_key_file": str(hr_key_path.with_suffix(".pub")),
            "mqtt": {"host": "127.0.0.1", "port": broker_port, "tls": True,
                     "ca_file": str(site_pki.ca.cert), "cert_file": str(site_pki.device.cert),
                     "key_file": str(site_pki.device.key), "keepalive_s": 10},
            "https": {"base_url": f"https://127.0.0.1:{https_port}/kiosk/v1",
                      "ca_file": str(site_pki.ca.cert), "cert_file": str(site_pki.device.cert),
                      "key_file": str(site_pki.device.key), "timeout_s": 5},
        }
        for k, v in sync.items():
            if isinstance(v, dict) and isinstance(base.get(k), dict):
                base[k] = {**base[k], **v}
            else:
                base[k] = v
        return make_settings({"sync": base})

    return make


def connector_config(tmp_path: Path, site_pki: Pki, broker_port: int, https_port: int,
                     hr_key_path: Path, **over: Any) -> ConnectorSettings:
    data: dict[str, Any] = {
        "connector": {"name": CONNECTOR, "data_dir": str(tmp_path / "hr")},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "ca_file": str(site_pki.ca.cert),
                 "cert_file": str(site_pki.connector.cert), "key_file": str(site_pki.connector.key),
                 "keepalive_s": 10},
        "https": {"listen_host": "127.0.0.1", "port": https_port, "ca_file": str(site_pki.ca.cert),
                  "cert_file": str(site_pki.server.cert), "key_file": str(site_pki.server.key)},
        "signing": {"private_key_file": str(hr_key_path), "tenant": TENANT},
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v}
    return ConnectorSettings.model_validate(data)


@pytest.fixture
def hr_settings(tmp_path, site_pki, broker_port, https_port, hr_key_path) -> ConnectorSettings:
    return connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path)


@pytest.fixture
def hr_settings_plain(tmp_path, site_pki, broker_port, https_port, hr_key_path) -> ConnectorSettings:
    """A connector on a plain (non-shared) persistent subscription: the configuration that
    survives a mosquitto restart while no connector is connected (docs/broker.md)."""
    return connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                            mqtt={"share_group": ""})


@pytest.fixture
def connector(hr_settings) -> Iterator[Connector]:
    c = Connector(hr_settings).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def broker_on_port(tmp_path, site_pki, broker_port) -> Callable[[], LocalBroker]:
    """A broker bound to the port the settings name, started when the test says so."""
    made: list[LocalBroker] = []

    def make() -> LocalBroker:
        b = LocalBroker(tmp_path / "broker", site_pki.ca.cert, site_pki.server.cert,
                        site_pki.server.key, connectors=[CONNECTOR], port=broker_port)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")


class FakeEhr:
    """A real HTTP server standing in for the customer's EHR webhook: records each POST
    (headers, body) and answers with the status the test sets."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict, bytes]] = []
        self.status = 200
        self.lock = threading.Lock()
        ehr = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with ehr.lock:
                    status = ehr.status
                    if 200 <= status < 300:
                        ehr.posts.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ehr/interviews"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def records(self) -> list[dict]:
        with self.lock:
            return [json.loads(b) for _, b in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ehr() -> Iterator[FakeEhr]:
    e = FakeEhr()
    yield e
    e.close()


def queue_sessions(store, settings: Settings, n: int, *, start: int = 0) -> list[str]:
    """Commit n interviews the way the session machine does: per session a `started` event,
    the result, a `finished` event. Returns the result ids. Synthetic data only."""
    import uuid

    from device.records import CandidateRef, EventRecord, ResultRecord, topic

    dev = settings.device
    ids = []
    for i in range(start, start + n):
        sid = f"s-{i:05d}-{uuid.uuid4().hex[:6]}"
        now = time.time()
        with store.transaction():
            eid = str(uuid.uuid4())
            store.enqueue("event", topic(settings, "event"), EventRecord(
                id=eid, device_id=dev.id, tenant=dev.tenant, ts=now, type="started",
                session_id=sid).model_dump(mode="json"), session_id=sid, id=eid)
            rid = str(uuid.uuid4())
            store.enqueue("result", topic(settings, "result"), ResultRecord(
                id=rid, session_id=sid, device_id=dev.id, tenant=dev.tenant, job_id="job-1",
                candidate=CandidateRef(ref=f"cand-{i}", masked_name="张*"), started=now - 60,
                ended=now, end_reason="completed", language="zh",
                report={"total": i % 100}).model_dump(mode="json"), session_id=sid, id=rid)
            fid = str(uuid.uuid4())
            store.enqueue("event", topic(settings, "event"), EventRecord(
                id=fid, device_id=dev.id, tenant=dev.tenant, ts=now, type="finished",
                session_id=sid).model_dump(mode="json"), session_id=sid, id=fid)
        ids.append(rid)
    return ids


def assert_in_order_once(db, result_ids: list[str]) -> None:
    """Every result exactly once, and per session: started, result, finished."""
    msgs = db.messages()
    ids = [m.id for m in msgs]
    assert len(ids) == len(set(ids))  # UNIQUE in the schema; checked anyway
    got_results = {m.id for m in msgs if m.kind == "result"}
    assert got_results == set(result_ids)
    order: dict[str, list[str]] = {}
    for m in msgs:
        order.setdefault(m.session_id, []).append(
            "result" if m.kind == "result" else m.payload["type"])
    bad = {s: o for s, o in order.items() if o != ["started", "result", "finished"]}
    assert not bad, f"{len(bad)} sessions out of order, e.g. {next(iter(bad.items()))}"


class DaemonThread:
    """The real SyncDaemon in a thread of the test process (its own Store connection)."""

    def __init__(self, settings: Settings):
        from device.store import Store
        from sync.daemon import SyncDaemon

        self.store = Store.open_from_settings(settings)
        self.daemon = SyncDaemon(settings, self.store, start_wecom=False)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)

    def __enter__(self) -> DaemonThread:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.daemon.stop_event.set()
        self.daemon.wake.set()
        self.thread.join(timeout=15)
        self.store.close()


@pytest.fixture
def sync_config_file(config_path, sync_settings, tmp_path) -> Callable[..., Path]:
    """Write a config file for `interview-sync --config` with the sync section of
    sync_settings(**over) (validated through the same path first)."""
    import tomllib

    import tomli_w

    def make(**over: Any) -> Path:
        s = sync_settings(**over)
        data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        data["sync"] = s.sync.model_dump(mode="json", exclude_none=True)
        out = tmp_path / "sync-config.toml"
        out.write_text(tomli_w.dumps(data), encoding="utf-8")
        return out

    return make


@pytest.fixture
def hr_config_file(tmp_path) -> Callable[[ConnectorSettings], Path]:
    """Write ConnectorSettings as the TOML file `interview-hr --config` reads."""
    import tomli_w

    def write(s: ConnectorSettings) -> Path:
        out = tmp_path / "hr-config.toml"
        out.write_text(tomli_w.dumps(s.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
        return out

    return write
