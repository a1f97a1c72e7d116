"""The sync daemon (``interview-sync``): wires the store, the MQTT link, the HTTPS uplink,
the outbox delivery, clip uploads, the downlink cache, heartbeats and WeCom into one
process that runs until stopped. All store writes of the delivery loop happen in one
thread; a crash at any point loses nothing committed (the outbox is the only queue).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from device import sdnotify
from device.mediacrypt import remove_stale_seal_tmp
from device.records import HeartbeatRecord, StatusRecord
from device.version import software_version
from sync.cache import DownlinkCache, DownlinkRejected
from sync.https import HttpsUplink
from sync.mqtt import MqttLink
from sync.outbox import (
    CLIP_KIND,
    CLIP_PARKED,
    SEAL_TMP_SWEEP_S,
    WECOM_OFF_NOTE,
    OutboxDelivery,
    deliver_clips_once,
    install_clip_key,
    resend_unreceipted,
    settle_unsendable_clips,
    settle_unsendable_notify,
    unreceipted_stats,
)

if TYPE_CHECKING:
    from device.config import Settings

log = logging.getLogger(__name__)

POLL_S = 0.1          # how often the store is checked for rows the kiosk committed
RECEIPT_CHECK_S = 1.0  # how often PUBACKed rows are checked for a missing receipt from HR
IDLE_POLL_S = 0.5     # when nothing can be sent (no transport): still never a busy loop


class SyncDaemon:
    def __init__(self, settings, store, *, clock: Callable[[], float] = time.time,
                 stop: threading.Event | None = None, start_wecom: bool = True,
                 once: bool = False):
        if settings.sync is None:
            raise ValueError("config has no [sync] section: nothing to deliver to")
        self.settings = settings
        self.store = store
        self.clock = clock
        self.stop_event = stop or threading.Event()
        self.wake = threading.Event()
        self.started = clock()
        dev = settings.device
        self.link = None
        if settings.sync.mqtt is not None:
            if once:
                # `--once` beside the running service: its own client id and a throw-away
                # session, so it neither kicks the service off the broker nor leaves a
                # session behind; no status/last will (the service owns the device's status).
                self.link = MqttLink(settings, client_id=f"{dev.id}-once", wake=self.wake,
                                     session_expiry_s=0)
            else:
                self.link = MqttLink(settings, status_body=self._status(True),
                                     offline_body=self._status(False), wake=self.wake)
        self.https = HttpsUplink(settings) if settings.sync.https is not None else None
        self.delivery = OutboxDelivery(store, self.link, self.https, clock=clock,
                                       fallback_after_s=settings.sync.fallback_after_s)
        self.cache = DownlinkCache(store, settings, clock=clock)
        self.cache.register_command("heartbeat", lambda _p: self._heartbeat_now())
        self.cache.register_command("retry_now", lambda _p: self.delivery.retry_now())
        self.cache.register_command("clip_key", self._clip_key_command)
        self._hb_due = 0.0
        self._receipt_check_due = 0.0
        self._hb_requested = False
        self._threads: list[threading.Thread] = []
        self._start_wecom = start_wecom and not once
        # Without [wecom] the notify rows (HR's WeCom messages) can never be sent: they are
        # settled as they come. With [wecom] they wait, even while WeCom cannot start.
        self._settle_notify = settings.wecom is None
        # Without [sync.https] no clip can be uploaded: settled with a note, like notify rows.
        self._settle_clips = settings.sync.https is None
        self._media_key: bytes | None = None
        self.once = once
        self.topic_base = f"kiosk/v1/{dev.tenant}/{dev.id}"

    # --- records we make ourselves -------------------------------------------------------

    def _status(self, online: bool) -> dict:
        dev = self.settings.device
        return StatusRecord(device_id=dev.id, tenant=dev.tenant, site=dev.site_name or "",
                            ts=self.clock(), online=online,
                            software_version=software_version()).model_dump(mode="json")

    def backlog(self, now: float, stats: dict | None = None) -> dict:
        """Records and answer clips counted apart: a clip waiting for HR's clip key, or a long
        upload, must not look like a stuck result (the HR side alarms on the records' age)."""
        stats = stats or self.store.outbox_stats(now)
        with self.store.lock:
            n, oldest = self.store.db.execute(
                "SELECT count(*), min(created) FROM outbox WHERE delivered IS NULL AND kind = ?",
                (CLIP_KIND,)).fetchone()
            failed = self.store.db.execute(
                "SELECT count(*) FROM outbox WHERE delivered IS NULL AND kind = ? AND last_error LIKE ?",
                (CLIP_KIND, CLIP_PARKED + "%")).fetchone()[0]
            rec_oldest = self.store.db.execute(
                "SELECT min(created) FROM outbox WHERE delivered IS NULL AND kind != ?",
                (CLIP_KIND,)).fetchone()[0]
        return {
            "outbox_depth": max(0, stats["depth"] - n),
            "oldest_undelivered_age_s": None if rec_oldest is None else max(0.0, now - rec_oldest),
            "clips_pending": n,
            "clips_failed": failed,
            "oldest_clip_age_s": None if oldest is None else max(0.0, now - oldest),
            "clip_key": self.store.cache_get("pubkey", "clips") is not None,
            **unreceipted_stats(self.store, now),
        }

    def heartbeat(self) -> dict:
        dev = self.settings.device
        now = self.clock()
        stats = self.store.outbox_stats(now)
        try:
            disk = shutil.disk_usage(Path(self.settings.paths.data_dir)).free
        except OSError:
            disk = None
        bank = self.store.cache_get("questionbank", "current")
        roster = self.store.cache_get("roster", "current")
        config = self.store.cache_get("config", "current")
        rec = HeartbeatRecord(
            id=str(uuid.uuid4()), device_id=dev.id, tenant=dev.tenant, site=dev.site_name or "",
            ts=now, uptime_s=max(0.0, now - self.started), software_version=software_version(),
            disk_free_bytes=disk, **self.backlog(now, stats),
            question_bank_version=bank[0] if bank else None,
            roster_version=roster[0] if roster else None,
            config_version=config[0] if config else None,
            downlink_rejected=self.cache.rejected_counts(),
        )
        return rec.model_dump(mode="json")

    def _heartbeat_now(self) -> None:
        self._hb_requested = True
        self.wake.set()

    def _send_heartbeat(self) -> None:
        body = json.dumps(self.heartbeat(), separators=(",", ":")).encode()
        mode = self.delivery.transport()
        try:
            if mode == "mqtt" and self.link is not None:
                # Not through the outbox: a heartbeat is only worth sending now, never later.
                self.link.publish(f"{self.topic_base}/up/heartbeat", body)
            elif mode == "https" and self.https is not None:
                self.https.post_record("heartbeat", body, msg_id=str(uuid.uuid4()), created=self.clock())
        except Exception as e:
            log.warning("heartbeat not sent: %s", e)
        self.store.kv_set("sync.last_heartbeat", {"at": self.clock(), "via": mode})

    # --- loop ----------------------------------------------------------------------------

    def start(self) -> None:
        # A crashed run's leases; not in --once, where the service may be mid-flight.
        released = 0 if self.once else self.delivery.release_leases()
        if released:
            log.info("%d rows were in flight when the previous run ended; sending them again", released)
        if self.link is not None:
            self.link.start()
        if self.https is not None:
            t = threading.Thread(target=self._clip_loop, name="sync-clips", daemon=True)
            t.start()
            self._threads.append(t)
        if self._settle_notify:
            log.warning("[wecom] is not configured: WeCom messages to HR (help requests, interviews "
                        "started and finished) are not sent and are marked %r instead of waiting "
                        "in the outbox; enrol with WeCom details to send them", WECOM_OFF_NOTE)
        if self._start_wecom and self.settings.wecom is not None:
            try:
                from sync.wecom import start_wecom

                self._threads += start_wecom(self.settings, self.store, self.stop_event,
                                             register_command=self.cache.register_command)
            except Exception:
                log.exception("WeCom could not start; delivery continues without it")

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
        if self.link is not None:
            self.link.stop(offline_body=None if self.once else self._status(False))
        for t in self._threads:
            t.join(timeout=5)
        if self.https is not None:
            self.https.close()

    def step(self) -> int:
        """One pass: downlink, delivery, heartbeat. Returns rows sent."""
        self._handle_downlinks()
        if self._settle_notify:
            # Before the heartbeat, so its backlog is only what still has to be delivered.
            settled = settle_unsendable_notify(self.store, self.clock())
            if settled:
                log.debug("%d WeCom message(s) for HR not sent: [wecom] is not configured", settled)
        if self._settle_clips and settle_unsendable_clips(self.store, self.clock()):
            log.debug("answer clips not uploaded: [sync.https] is not configured")
        now = self.clock()
        if now >= self._receipt_check_due:
            self._receipt_check_due = now + RECEIPT_CHECK_S
            # Before delivery.step: what the broker may have lost goes out in this pass.
            resend_unreceipted(self.store, now, self.settings.sync.receipt_timeout_s)
        sent = self.delivery.step()
        now = self.clock()
        if self._hb_requested or now >= self._hb_due:
            self._hb_requested = False
            self._hb_due = now + self.settings.sync.heartbeat_s
            self._send_heartbeat()
        return sent

    def _handle_downlinks(self) -> None:
        if self.link is None:
            return
        while True:
            try:
                d = self.link.downlinks.get_nowait()
            except queue.Empty:
                return
            try:
                self.cache.handle(d.topic, d.payload)
            except DownlinkRejected:
                pass  # logged and counted; acked below so a bad retained message is not redelivered forever
            except Exception:
                log.exception("downlink on %s could not be applied; will be redelivered", d.topic)
                continue  # not acked: the broker redelivers it after a reconnect
            self.link.ack_downlink(d)

    def run(self) -> None:
        """Run until stop_event is set (SIGTERM)."""
        self.start()
        sdnotify.ready("delivering")
        wd = sdnotify.watchdog_interval()
        last_wd = 0.0
        try:
            while not self.stop_event.is_set():
                try:
                    sent = self.step()
                except Exception:
                    # A store hiccup (locked, disk full) must not end the daemon; systemd's
                    # watchdog catches a real hang.
                    log.exception("delivery step failed; retrying")
                    sent = 0
                if wd is not None and time.monotonic() - last_wd >= wd:
                    sdnotify.watchdog()
                    last_wd = time.monotonic()
                if sent:
                    continue  # more may be due right away (next head of each session)
                timeout = POLL_S if self.delivery.transport() else IDLE_POLL_S
                self.wake.wait(timeout)
                self.wake.clear()
        finally:
            self.stop()

    def run_once(self, timeout: float = 30.0) -> dict:
        """Connect, deliver what is due, send a heartbeat, apply downlinks, and return a summary."""
        self.start()
        deadline = time.monotonic() + timeout
        try:
            if self.link is not None:
                self.link.connected.wait(min(10.0, timeout))
                time.sleep(0.3)  # let retained downlink messages arrive
            self._hb_due = 0.0
            while time.monotonic() < deadline:
                sent = self.step()
                due = self.store.due_outbox(self.clock(), limit=1, kinds=("result", "event", "status", "heartbeat"))
                if not sent and not self.delivery.inflight and not due:
                    break
                if not sent:
                    self.wake.wait(POLL_S)
                    self.wake.clear()
            if self.https is not None:
                deliver_clips_once(self.store, self.https, clock=self.clock,
                                   media_root=self.settings.paths.data_dir, stop=self.stop_event,
                                   media_key=self.media_key())
            self._handle_downlinks()
        finally:
            self.stop()
        stats = self.store.outbox_stats(self.clock())
        return {"transport": self.delivery.transport() or "none",
                "delivered": self.delivery.stats.delivered, "failed": self.delivery.stats.failed,
                "outbox_depth": stats["depth"],
                "oldest_undelivered_age_s": stats["oldest_undelivered_age_s"],
                **{k: v for k, v in self.backlog(self.clock(), stats).items()
                   if k in ("clips_pending", "clips_failed", "clip_key", "unreceipted",
                            "oldest_unreceipted_age_s")},
                "downlink_rejected": self.cache.rejected_counts(),
                "last_error": self.delivery.stats.last_error or (self.link.last_error if self.link else "")}

    def _clip_key_command(self, payload: dict) -> None:
        """HR's clip key by signed command (`interview-hr clip publish-key`), for devices
        enrolled before HR had one: cached like the enrolment bundle's, waiting clips due now."""
        install_clip_key(self.store, payload.get("pem"), int(self.clock() * 1000))
        self.wake.set()

    def media_key(self) -> bytes:
        """The device's "media" key, to wrap each recording's content key for HR before upload."""
        if self._media_key is None:
            from device.keys import derive_key, load_master_key

            self._media_key = derive_key(load_master_key(self.settings.paths.key_dir), "media")
        return self._media_key

    def sweep_seal_tmp(self) -> int:
        """Remove what a crash while sealing a clip for HR left behind (encrypted litter)."""
        try:
            # File ages are wall-clock mtimes, whatever clock the daemon runs on.
            return remove_stale_seal_tmp(Path(self.settings.paths.media_dir))
        except OSError as e:
            log.warning("stale clip sealing files not removed: %s", e)
            return 0

    def _clip_loop(self) -> None:
        assert self.https is not None
        swept = float("-inf")
        while not self.stop_event.is_set():
            if self.clock() - swept >= SEAL_TMP_SWEEP_S:
                # Sealing happens only in this thread, so no tmp of ours is live here; the
                # age threshold protects one a concurrent `--once` may be writing.
                self.sweep_seal_tmp()
                swept = self.clock()
            try:
                n = deliver_clips_once(self.store, self.https, clock=self.clock,
                                       media_root=self.settings.paths.data_dir, stop=self.stop_event,
                                       media_key=self.media_key())
            except Exception:
                log.exception("clip upload pass failed")
                n = 0
            if not n:
                self.stop_event.wait(2.0)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def daemon_command_line(
    argv: list[str] | None, *, prog: str, description: str, section: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    missing_hint: str = "",
) -> tuple[argparse.Namespace, Settings | None]:
    """The command line the device-side sync programs share (``interview-sync`` and
    ``python -m sync.wecom``, the daemon's WeCom part alone): ``--config``, the program's own
    options from ``add_arguments``, ``-v/--verbose``; logging to stderr (journald keeps it
    under systemd) at INFO or DEBUG; then the device settings, which must have ``[section]``.
    Returns the parsed arguments and the settings, or None for the settings after printing
    "<program>: <what is wrong>" to stderr (the caller exits 2: unusable config, which the
    systemd unit does not restart on)."""
    from device.config import ConfigError, load_settings, resolve_config_path

    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", help="device config file (default $INTERVIEW_KIOSK_CONFIG or "
                   "/etc/interview-kiosk/config.toml)")
    if add_arguments is not None:
        add_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    name = prog.removeprefix("python -m ")   # errors say "sync.wecom: ...", as they always did
    try:
        settings = load_settings(resolve_config_path(args.config))
    except ConfigError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return args, None
    if getattr(settings, section) is None:
        print(f"{name}: the config has no [{section}] section{missing_hint}", file=sys.stderr)
        return args, None
    return args, settings
