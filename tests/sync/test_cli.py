"""The two commands as a technician and the customer's IT run them: `interview-sync`
(--once, --version, config errors) and `interview-hr` (help, extension subcommands); and
the retry schedule they rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from device.store import Store
from sync.outbox import backoff_delay
from tests.sync.conftest import queue_sessions

BIN = Path(sys.executable).parent


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout)


@given(attempts=st.integers(min_value=0, max_value=10_000), r=st.floats(min_value=0, max_value=1))
def test_backoff_grows_is_capped_and_jittered(attempts, r):
    d = backoff_delay(attempts, base=2, cap=300, rng=lambda: r)
    full = min(300, 2 * 2 ** min(attempts, 30))
    assert full / 2 <= d <= full
    assert backoff_delay(attempts + 1, rng=lambda: 1.0) >= backoff_delay(attempts, rng=lambda: 1.0)


def test_version_and_help():
    r = _run("interview-sync", "--version")
    assert r.returncode == 0 and r.stdout.startswith("interview-sync ")
    r = _run("interview-hr", "--help")
    assert r.returncode == 0
    for cmd in ("serve", "publish-bank", "publish-roster", "publish-config", "devices", "enrol-device"):
        assert cmd in r.stdout


def test_bad_config_names_the_file(tmp_path):
    bad = tmp_path / "config.toml"
    bad.write_text("[sync\n", encoding="utf-8")
    r = _run("interview-sync", "--config", str(bad), "--once")
    assert r.returncode == 2 and str(bad) in r.stderr
    r = _run("interview-hr", "--config", str(tmp_path / "nope.toml"), "devices")
    assert r.returncode == 2 and "nope.toml" in r.stderr


def test_both_device_programs_refuse_an_unusable_config_with_exit_2(tmp_path, config_path):
    """interview-sync and python -m sync.wecom share their command line: the same --config,
    and exit 2 (systemd's RestartPreventExitStatus) naming the file or the missing section."""
    bad = tmp_path / "broken.toml"
    bad.write_text("[device\n", encoding="utf-8")
    wecom = [sys.executable, "-m", "sync.wecom"]
    for cmd, name in (([str(BIN / "interview-sync")], "interview-sync"), (wecom, "sync.wecom")):
        r = subprocess.run([*cmd, "--config", str(bad)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and r.stderr.startswith(f"{name}: ") and str(bad) in r.stderr
        # The default config has neither [sync] nor [wecom].
        r = subprocess.run([*cmd, "-v", "--config", str(config_path)], capture_output=True,
                           text=True, timeout=60)
        section = "sync" if name == "interview-sync" else "wecom"
        assert r.returncode == 2 and f"{name}: the config has no [{section}] section" in r.stderr


def test_once_delivers_and_reports(sync_config_file, sync_settings, broker_port,
                                   tmp_path, site_pki, hr_key_path, https_port):
    from sync.broker import LocalBroker
    from sync.connector.service import Connector
    from tests.sync.conftest import CONNECTOR, connector_config

    b = LocalBroker(tmp_path / "b2", site_pki.ca.cert, site_pki.server.cert, site_pki.server.key,
                    connectors=[CONNECTOR], port=broker_port)
    b.start()
    try:
        with Connector(connector_config(tmp_path, site_pki, broker_port, https_port, hr_key_path)) as c:
            assert c.subscriber.subscribed.wait(10)
            cfg = sync_config_file()
            store = Store.open_from_settings(sync_settings())
            queue_sessions(store, sync_settings(), 4)
            r = _run("interview-sync", "--config", str(cfg), "--once")
            summary = json.loads(r.stdout.strip().splitlines()[-1])
            assert r.returncode == 0, r.stderr
            assert summary["delivered"] == 12 and summary["outbox_depth"] == 0
            assert store.outbox_stats(0)["depth"] == 0
            store.close()
    finally:
        b.stop()


def test_once_without_a_broker_keeps_everything(sync_config_file, sync_settings):
    cfg = sync_config_file(https=None)
    store = Store.open_from_settings(sync_settings())
    queue_sessions(store, sync_settings(), 2)
    r = _run("interview-sync", "--config", str(cfg), "--once", "--timeout", "3")
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 1
    assert summary["outbox_depth"] == 6 and summary["delivered"] == 0
    assert store.outbox_stats(0)["depth"] == 6
    store.close()


def test_example_connector_config_is_valid(tmp_path):
    r = _run("interview-hr", "example-config")
    assert r.returncode == 0
    cfg = tmp_path / "hr.toml"
    cfg.write_text(r.stdout, encoding="utf-8")
    from sync.connector.settings import load_connector_settings

    s = load_connector_settings(cfg)
    assert s.mqtt.share_group == "hr" and s.webhook.url.startswith("https://")


def test_interview_hr_serve_runs_as_a_process(hr_settings, hr_config_file, sync_settings,
                                              broker_on_port, tmp_path):
    """`interview-hr serve` as IT runs it: receives over HTTPS, stops cleanly on SIGTERM."""
    import signal

    from sync.connector.service import open_db
    from sync.https import HttpsUplink
    from tests.sync.conftest import wait_for

    broker = broker_on_port()
    broker.start()
    cfg = hr_config_file(hr_settings)
    p = subprocess.Popen([str(BIN / "interview-hr"), "--config", str(cfg), "serve"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while "serving" not in (line := p.stdout.readline()):
            assert line, "interview-hr serve exited before serving"
        up = HttpsUplink(sync_settings())
        up.post_record("event", b'{"id": "e-1", "session_id": "s-1", "type": "started"}',
                       msg_id="e-1", created=None)
        up.close()
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
        p.stdout.close()
    db, _ = open_db(hr_settings)
    wait_for(lambda: db.count_messages("event") == 1, 5)
    db.close()


def test_once_beside_the_running_service_does_not_kick_it(sync_config_file, sync_settings,
                                                         broker_on_port, connector):
    from tests.sync.conftest import DaemonThread, wait_for

    broker = broker_on_port()
    broker.start()
    assert connector.subscriber.subscribed.wait(10)
    settings = sync_settings()
    cfg = sync_config_file()
    with DaemonThread(settings) as service:
        wait_for(service.daemon.link.connected.is_set, 10)
        r = _run("interview-sync", "--config", str(cfg), "--once", "--timeout", "5")
        assert r.returncode == 0, r.stderr
        assert service.daemon.link.connected.is_set()
        assert service.daemon.link._epoch == 1        # never reconnected: not kicked off
    wait_for(lambda: connector.db.devices()[0]["status"] == "offline", 10,
             what="the service's own goodbye")
