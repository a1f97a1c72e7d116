"""`interview-hr serve` as systemd runs it (Type=notify): the real console script in a
subprocess, a real mosquitto, sd_notify messages read from a unix datagram socket the test
binds. READY=1 only once it serves, STATUS= lines with counts (no candidate data),
WATCHDOG=1 pings, exit 0 on SIGTERM without losing a record the EHR has not taken, exit 2
on an unusable config; and the wheel IT installs carries the `interview-hr` entry point."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import uuid
import zipfile
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import CallbackAPIVersion

from sync.connector.service import open_db
from tests.sync.conftest import DEVICE, TENANT, connector_config, wait_for

REPO = Path(__file__).resolve().parents[2]
HR_BIN = REPO / ".venv/bin/interview-hr"
# Synthetic candidate data: none of it may show up in what systemd is told.
CANDIDATE_REF = "cand-7731"
MASKED_NAME = "王*明"


class NotifySocket:
    """What systemd's end of $NOTIFY_SOCKET sees: every datagram, in order."""

    def __init__(self) -> None:
        # Abstract namespace: no path-length limit, nothing left on disk.
        self.name = f"@interview-hr-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode())

    def lines(self) -> list[str]:
        with self._lock:
            return [line for m in self.messages for line in m.splitlines()]

    def index(self, line: str) -> int | None:
        got = self.lines()
        return got.index(line) if line in got else None

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket():
    s = NotifySocket()
    yield s
    s.close()


def _serve(cfg: Path, notify: NotifySocket, log: Path, watchdog_usec: int | None = None,
           hr_bin: Path = HR_BIN):
    env = {**os.environ, "NOTIFY_SOCKET": notify.name, "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_USEC", None)
    env.pop("WATCHDOG_PID", None)
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen([str(hr_bin), "--config", str(cfg), "serve"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _publish_result(broker_port: int, site_pki, record_id: str) -> None:
    """A terminal sends one result (QoS 1) and waits for the broker's PUBACK."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, DEVICE, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(site_pki.ca.cert), certfile=str(site_pki.device.cert),
              keyfile=str(site_pki.device.key))
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("id", record_id)]
    body = {"id": record_id, "session_id": f"s-{record_id}", "job_id": "job-1",
            "candidate": {"ref": CANDIDATE_REF, "masked_name": MASKED_NAME},
            "report": {"total": 71}}
    c.connect("127.0.0.1", broker_port, keepalive=10)
    c.loop_start()
    try:
        info = c.publish(f"kiosk/v1/{TENANT}/{DEVICE}/up/result", json.dumps(body), qos=1,
                         properties=props)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        c.disconnect()
        c.loop_stop()


def _stop(p: subprocess.Popen) -> int:
    p.send_signal(signal.SIGTERM)
    try:
        return p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise


def test_ready_only_once_subscribed_then_status_watchdog_and_clean_sigterm(
        hr_settings, hr_config_file, broker_on_port, broker_port, site_pki, notify_socket,
        tmp_path):
    cfg = hr_config_file(hr_settings)
    log = tmp_path / "serve.log"
    p = _serve(cfg, notify_socket, log, watchdog_usec=1_000_000)
    try:
        # The broker is not up yet: the connector says what it waits for, and not READY.
        wait_for(lambda: any(line.startswith("STATUS=waiting for broker")
                             for line in notify_socket.lines()), 30, what="waiting status")
        assert p.poll() is None, log.read_text()
        assert "READY=1" not in notify_socket.lines()
        assert "WATCHDOG=1" not in notify_socket.lines()

        broker = broker_on_port()
        broker.start()
        wait_for(lambda: "READY=1" in notify_socket.lines(), 40, what="READY=1")
        # Subscribed when it said READY: a result sent right now is not dropped by the broker
        # (a shared subscription that does not exist yet would drop it).
        _publish_result(broker_port, site_pki, "r-ready-1")
        db, _ = open_db(hr_settings)
        try:
            wait_for(lambda: db.count_messages("result") == 1, 15, what="result stored")
        finally:
            db.close()

        ready_at = notify_socket.index("READY=1")
        wait_for(lambda: "WATCHDOG=1" in notify_socket.lines()[ready_at:], 15, what="WATCHDOG=1")
        wait_for(lambda: any(line.startswith("STATUS=connected to broker") and "1 terminal" in line
                             for line in notify_socket.lines()), 20,
                 what="a status naming the terminal count")
    finally:
        rc = _stop(p)
    assert rc == 0, log.read_text()
    lines = notify_socket.lines()
    assert "STOPPING=1" in lines
    statuses = [line for line in lines if line.startswith("STATUS=")]
    assert statuses
    for line in statuses:
        assert CANDIDATE_REF not in line and MASKED_NAME not in line and "r-ready-1" not in line


def test_watchdog_pings_stop_when_a_part_of_the_connector_died(
        hr_settings, broker_on_port, notify_socket, monkeypatch):
    """The ping proves the parts live: with paho's network thread gone (no reconnects ever
    again) the loop says why in STATUS= and stops pinging, so systemd restarts it."""
    from sync.connector.service import Connector

    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.name)
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    broker_on_port().start()
    stop = threading.Event()
    with Connector(hr_settings) as conn:
        t = threading.Thread(target=conn.run, args=(stop,), daemon=True)
        t.start()
        try:
            wait_for(lambda: "WATCHDOG=1" in notify_socket.lines(), 20, what="first ping")
            conn.subscriber.client.loop_stop()
            wait_for(lambda: "STATUS=unhealthy: MQTT network thread ended" in notify_socket.lines(),
                     10, what="unhealthy status")
            at = notify_socket.index("STATUS=unhealthy: MQTT network thread ended")
            stop.wait(1.0)  # five ticks
            assert "WATCHDOG=1" not in notify_socket.lines()[at:]
        finally:
            stop.set()
            t.join(10)
    assert not t.is_alive()


def test_record_held_for_a_down_ehr_survives_sigterm_and_restart(
        tmp_path, site_pki, broker_port, https_port, hr_key_path, hr_config_file,
        broker_on_port, notify_socket, ehr):
    """The EHR answers 503: the connector keeps retrying and does not acknowledge the MQTT
    message. SIGTERM in the middle ends it with 0; the next start gets the message again
    from the broker and hands it to the EHR, which now answers 200."""
    secret = tmp_path / "webhook.secret"
    secret.write_bytes(b"shared-with-the-ehr")
    settings = connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path,
                                webhook={"url": ehr.url, "secret_file": str(secret),
                                         "max_backoff_s": 0.5})
    cfg = hr_config_file(settings)
    broker_on_port().start()
    ehr.status = 503
    log = tmp_path / "serve.log"
    p = _serve(cfg, notify_socket, log, watchdog_usec=1_000_000)  # also: status every 0.5 s
    try:
        wait_for(lambda: "READY=1" in notify_socket.lines(), 40, what="READY=1")
        _publish_result(broker_port, site_pki, "r-held-1")
        db, _ = open_db(settings)
        try:
            wait_for(lambda: [m.forward_attempts for m in db.messages()] and
                     db.messages()[0].forward_attempts >= 2, 20, what="EHR retries")
            assert db.messages()[0].forwarded is None
        finally:
            db.close()
        wait_for(lambda: any("1 record waiting for the EHR" in line
                             for line in notify_socket.lines()), 20, what="waiting count")
    finally:
        rc = _stop(p)
    assert rc == 0, log.read_text()
    assert [r for r in ehr.records() if r["kind"] == "result"] == []

    ehr.status = 200
    p = _serve(cfg, notify_socket, log)
    try:
        wait_for(lambda: [r["id"] for r in ehr.records() if r["kind"] == "result"] == ["r-held-1"],
                 30, what="the held record at the EHR after the restart")
        db, _ = open_db(settings)
        try:
            wait_for(lambda: db.count_unforwarded() == 0, 10, what="marked forwarded")
        finally:
            db.close()
    finally:
        rc = _stop(p)
    assert rc == 0, log.read_text()
    assert [r["id"] for r in ehr.records() if r["kind"] == "result"] == ["r-held-1"]


@pytest.mark.parametrize("breakage, named", [
    ("missing_key", "[https] key_file"),
    ("garbage_cert", "[mqtt] cert_file"),
    ("missing_secret", "[webhook] secret_file"),
    ("unreadable_key", "[https] key_file"),  # as root, a directory is what open() refuses
])
def test_unusable_config_exits_2_with_one_line_naming_the_key(
        hr_settings, hr_config_file, tmp_path, notify_socket, breakage, named):
    data = hr_settings.model_dump(mode="json", exclude_none=True)
    if breakage == "missing_key":
        data["https"]["key_file"] = str(tmp_path / "gone.key")
    elif breakage == "garbage_cert":
        junk = tmp_path / "junk.crt"
        junk.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        data["mqtt"]["cert_file"] = str(junk)
    elif breakage == "missing_secret":
        data["webhook"] = {"url": "http://127.0.0.1:9/ehr", "secret_file": str(tmp_path / "nope")}
    else:
        (tmp_path / "key.d").mkdir()
        data["https"]["key_file"] = str(tmp_path / "key.d")
    from sync.connector.settings import ConnectorSettings

    cfg = hr_config_file(ConnectorSettings.model_validate(data))
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.name}
    r = subprocess.run([str(HR_BIN), "--config", str(cfg), "serve"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and named in err[0], r.stderr
    assert "Traceback" not in r.stderr
    assert "READY=1" not in notify_socket.lines()


def test_wheel_carries_the_interview_hr_entry_point(tmp_path):
    """What `make wheel` builds for IT's server (no build isolation: offline, seconds)."""
    r = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "pip", "wheel", "--no-deps",
                        "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheels = list(tmp_path.glob("interview_kiosk-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = z.read(entry).decode()
    assert "interview-hr = sync.connector.__main__:main" in scripts
    assert "sync/connector/example-config.toml" in names
    assert "sync/connector/service.py" in names
