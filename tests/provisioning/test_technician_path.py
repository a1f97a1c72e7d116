"""The README's technician path, end to end: a fresh terminal is initialised, its CSR is
signed by the HR side into a bundle, it is enrolled, a bank and a model are installed, the
self-test passes against the real broker, an interview runs through the real state machine,
and the sync daemon delivers it to the HR connector, exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from device.config import load_settings
from device.script_demo import run as scripted_interview
from provisioning.configfile import update_config
from sync import pki
from sync.broker import LocalBroker
from sync.connector.service import Connector
from sync.connector.settings import ConnectorSettings
from tests.provisioning.conftest import DEVICE_ID, TEST_FPS, Device, Runner, Site, as_json
from tests.provisioning.test_cli import EXAMPLES, OK
from tests.provisioning.test_selftest import VOSK_KO, media  # noqa: F401 - fixture

INTERVIEW_SYNC = Path(sys.executable).parent / "interview-sync"


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_fresh_terminal_to_an_interview_at_the_hr_connector(
        kp: Runner, device_paths: Device, site: Site, bundle_for, media, tmp_path: Path) -> None:  # noqa: F811
    d = device_paths
    connector_cert = pki.make_client_cert(site.ca, tmp_path / "hr-pki", "hr-connector")
    broker = LocalBroker(tmp_path / "broker", site.ca.cert, site.server.cert, site.server.key,
                         connectors=["hr-connector"])
    broker.start()
    hr = Connector(ConnectorSettings.model_validate({
        "connector": {"name": "hr-connector", "data_dir": str(tmp_path / "hr")},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "ca_file": str(site.ca.cert),
                 "cert_file": str(connector_cert.cert), "key_file": str(connector_cert.key)},
        "signing": {"private_key_file": str(site.hr_key_path), "tenant": "acme"},
    })).start()
    try:
        # 2. init (the real console script, as the technician types it)
        proc = kp("init", "--config", str(d.config), "--data-dir", str(d.data_dir),
                  "--device-id", DEVICE_ID, real=True)
        assert proc.returncode == OK, proc.stderr
        # 3-4. the HR side signs the CSR into a bundle; the technician enrols it
        bundle = tmp_path / "bundle.json"
        bundle.write_text(json.dumps(bundle_for(d.csr, mqtt_port=broker.port, wecom=None)))
        assert kp("enrol", str(bundle)).returncode == OK
        # 5-6. speech model and question bank
        assert kp("models", "install", str(VOSK_KO), "--model-lang", "zh").returncode == OK
        assert kp("bank", "import", str(EXAMPLES / "question_bank.xlsx")).returncode == OK
        # 6b. the service PIN (typed twice on the terminal; scripts use --stdin)
        assert kp("pin", "set", "--stdin", input="480613\n").returncode == OK
        # 7. selftest passes, broker included
        video, wav = media
        update_config(d.config, {"kiosk.camera": {"source": str(video), "fps": TEST_FPS},
                                 "kiosk.microphone": {"device": str(wav)}})
        report = as_json(kp("selftest", "--headless", "--seconds", "1.5", "--json"))
        assert report["ok"], [c for c in report["checks"] if not c["ok"]]
        # 8. an interview on the terminal ...
        with open(os.devnull, "w") as quiet:
            record = scripted_interview(load_settings(d.config), EXAMPLES / "question_bank.json",
                                        "software_engineer", out=quiet)
        status = as_json(kp("status", "--json"))
        assert status["outbox"]["by_kind"].get("result") == 1
        # ... delivered by the sync daemon to the HR connector
        proc = subprocess.run([str(INTERVIEW_SYNC), "--once", "--timeout", "60"], capture_output=True,
                              text=True, timeout=120, env={"INTERVIEW_KIOSK_CONFIG": str(d.config),
                                                           "PATH": "/usr/bin:/bin"})
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["delivered"] >= 1, proc.stdout + proc.stderr
        results = _wait(lambda: hr.db.messages(kind="result"), 30, "the result at the connector")
        assert [m.id for m in results] == [record["id"]]
        status = as_json(kp("status", "--json"))
        # Only WeCom messages may wait (this terminal has no WeCom configured).
        assert set(status["outbox"]["by_kind"]) <= {"notify"}, status["outbox"]
        assert status["last_delivered"] is not None
    finally:
        hr.stop()
        broker.stop()
    assert kp("audit", "verify").returncode == OK
