"""The hard cases, with the daemon as a real `interview-sync` process: the broker restarts
in the middle of a drain, and the daemon is killed with SIGKILL in the middle of a drain.
Afterwards every result is in the connector's database exactly once, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from device.store import Store
from sync.connector.service import Connector
from tests.sync.conftest import assert_in_order_once, queue_sessions, wait_for

SYNC_BIN = Path(sys.executable).with_name("interview-sync")


def _start_daemon(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([str(SYNC_BIN), "--config", str(cfg)], stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_broker_restart_and_daemon_sigkill_mid_drain_lose_nothing_duplicate_nothing(
        sync_config_file, sync_settings, broker_on_port, hr_settings_plain, tmp_path):
    # Plain subscription: after a restart mosquitto 2.0 has no shared subscription until a
    # connector re-subscribes, and the device may publish first (docs/broker.md).
    connector = Connector(hr_settings_plain).start()
    cfg = sync_config_file()
    settings = sync_settings()
    broker = broker_on_port()
    broker.start()
    assert connector.subscriber.subscribed.wait(10)
    store = Store.open_from_settings(settings)
    ids = queue_sessions(store, settings, 1000)
    log = tmp_path / "daemon.log"
    db = connector.db
    daemon = _start_daemon(cfg, log)
    try:
        # Paced on the device's own outbox, not on the connector's count: the connector stores
        # more slowly than the device drains, so under load its count lags far behind and the
        # device could be empty before the "mid-drain" kill.
        def depth() -> int:
            return store.outbox_stats(0)["depth"]

        total = depth()
        wait_for(lambda: depth() <= total - 600, 60, 0.05, "first part of the drain")
        broker.stop()                      # broker goes away mid-drain ...
        broker.start()                     # ... and comes back
        resumed_from = depth()
        wait_for(lambda: depth() <= resumed_from - 300, 60, 0.05, "drain resumed")
        daemon.send_signal(signal.SIGKILL)  # the daemon dies mid-drain
        daemon.wait(10)
        # The broker published the device's last will (retained status: offline).
        wait_for(lambda: (db.devices() or [{}])[0].get("status") == "offline", 20,
                 what="last will")
        assert store.outbox_stats(0)["depth"] > 0, "drain finished before the kill; test proves nothing"
        daemon = _start_daemon(cfg, log)
        wait_for(lambda: store.outbox_stats(0)["depth"] == 0, 120, 0.2, "outbox drained")
        wait_for(lambda: db.count_messages() == 3000, 30, 0.2, "connector has all 3000")
        assert_in_order_once(db, ids)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(15)
        # SIGTERM: the daemon said goodbye with a retained offline status.
        wait_for(lambda: (db.devices() or [{}])[0].get("status") == "offline", 10,
                 what="offline status")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        store.close()
        connector.stop()
