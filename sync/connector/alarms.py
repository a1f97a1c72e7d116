"""Device staleness alarms on the HR side: a device whose heartbeat stopped, or whose oldest
undelivered record is older than the limit (30 minutes by default), is flagged in the
connector DB, logged, and forwarded to the EHR once per change. It never clears an alarm
without a fresh heartbeat."""

from __future__ import annotations

import logging
import threading
import time

from sync.connector.ingest import Ingest
from sync.connector.settings import AlarmsSection

log = logging.getLogger(__name__)


def device_alarm(device: dict, cfg: AlarmsSection, now: float) -> str | None:
    """The alarm a device should be in now, or None."""
    hb_at = device.get("heartbeat_at")
    # A device seen (a record, a status) but not yet heard as a heartbeat gets the same grace.
    ref = hb_at if hb_at is not None else device.get("last_seen")
    if ref is None or now - ref > cfg.heartbeat_stale_s:
        return "heartbeat_stopped"
    if hb_at is None:
        return None
    hb = device.get("heartbeat") or {}
    outbox = hb.get("outbox") if isinstance(hb.get("outbox"), dict) else hb
    # A record the broker acknowledged but we never receipted is just as missing for HR (the
    # device re-sends it after its receipt timeout, which then counts as undelivered again).
    ages = [a for a in (outbox.get("oldest_undelivered_age_s"), outbox.get("oldest_unreceipted_age_s"))
            if isinstance(a, int | float)]
    age = max(ages) if ages else None
    if age is not None:
        # The heartbeat's age was measured when it was sent; add the time since.
        if age + (now - hb_at) > cfg.undelivered_max_age_s:
            return "undelivered_too_old"
    return None


def check_devices(ingest: Ingest, cfg: AlarmsSection, now: float) -> list[tuple[str, str | None]]:
    """Update alarms for every known device; returns the changes (device_id, alarm)."""
    changes = []
    for d in ingest.db.devices():
        alarm = device_alarm(d, cfg, now)
        if alarm == d.get("alarm"):
            continue
        ingest.db.set_alarm(d["device_id"], alarm, now)
        changes.append((d["device_id"], alarm))
        if alarm:
            log.warning("device %s/%s: alarm %s", d["tenant"], d["device_id"], alarm)
        else:
            log.info("device %s/%s: alarm %s cleared", d["tenant"], d["device_id"], d.get("alarm"))
        ingest.alarm(d["device_id"], d["tenant"], alarm,
                     {"previous": d.get("alarm"), "heartbeat_at": d.get("heartbeat_at")})
    return changes


class AlarmWatch:
    def __init__(self, ingest: Ingest, cfg: AlarmsSection, clock):
        self.ingest = ingest
        self.cfg = cfg
        self.clock = clock
        self._thread = threading.Thread(target=self._run, name="hr-alarms", daemon=True)
        # When the loop last came round (time.monotonic()): the service's watchdog pings
        # only while this keeps moving, so a check stuck for good gets the service restarted.
        self.beat = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self.ingest.stop.wait(self.cfg.check_interval_s):
            try:
                check_devices(self.ingest, self.cfg, self.clock())
            except Exception:
                log.exception("device alarm check failed")
            self.beat = time.monotonic()
