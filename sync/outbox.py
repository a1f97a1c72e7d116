"""Store-and-forward delivery of the outbox: each due row (the head of its session) is
published QoS 1 over MQTT, or posted over HTTPS when the broker has been unreachable for
``fallback_after_s``; it is marked delivered only on the broker's successful PUBACK or an
HTTPS 2xx, and a failure schedules a retry with exponential backoff and jitter.
A PUBACK only means "the broker has it": results and events are also *receipted* when HR's
connector confirms storing them (signed ``down/receipt``, or the HTTPS 2xx itself), and once
the device has seen any receipt, a PUBACKed row left without one for ``receipt_timeout_s`` is
sent again (same id; the connector de-duplicates), so a broker crash cannot lose it.
It never deletes or skips an undelivered row (except `notify` rows on a device without WeCom
and `clip` rows on one without HTTPS, which nobody could send: those are settled with a
note) and never busy-loops.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sync.https import HttpsUplink, UplinkError
from sync.mqtt import MqttLink

if TYPE_CHECKING:
    from device.store import OutboxRow

log = logging.getLogger(__name__)

UPLINK_KINDS = ("result", "event", "status", "heartbeat")
# What HR's connector stores and forwards, and so receipts; status/heartbeat are only worth
# their latest value and never wait for a receipt.
RECEIPT_KINDS = ("result", "event")
# Literal in SQL (not bound parameters) so SQLite can use the partial index outbox_unreceipted,
# whose WHERE names exactly these kinds (device/store.py migration 3).
_RECEIPT_KINDS_SQL = "kind IN ('result', 'event')"
# Set at the first signed receipt from HR: from then on a PUBACK alone is not enough. A device
# talking to a connector that never sends receipts (older than receipts) keeps PUBACK as the
# end of delivery, as before, instead of re-sending forever.
RECEIPTS_SEEN_KV = "sync.receipts_seen"
# At the first receipt ever, results/events the broker took more than this long before are
# settled as sent to a connector without receipts (not re-sent). See apply_receipts.
RECEIPTS_LEGACY_S = 86400.0
RECEIPT_STATS_KV = "sync.receipts"
MAX_RECEIPT_IDS = 1000
RESEND_NOTE = "no receipt from HR within {:.0f}s of the broker's ack: sent again"
# A connector that stays away: each re-send of a row waits twice as long, up to 16x the timeout.
RESEND_BACKOFF_MAX = 16
CLIP_KIND = "clip"
NOTIFY_KIND = "notify"
LEASE_MARK = "in flight: waiting for PUBACK"
WECOM_OFF_NOTE = "wecom not configured: HR message not sent"
HTTPS_OFF_NOTE = "sync.https not configured: clip kept on the device only"
NO_CLIP_KEY = "waiting for the HR clip key (enrol the device again or publish the key)"
CLIP_KEY_WAIT_S = 300.0
# A clip the connector refuses because a different completed clip is stored under its id:
# never replaced, so retrying at the normal rate only makes noise. Kept (not settled: HR or
# IT decides), retried daily or on `retry_now`, counted as `clips_failed` in the heartbeat.
# Such a clip is *parked*: it no longer heads its session's clip queue, so the session's
# other clips upload normally (results and events have their own lane and never waited).
CLIP_PARKED = "clip parked: "
CLIP_PARK_RETRY_S = 86400.0
SEAL_TMP_SWEEP_S = 3600.0


def backoff_delay(attempts: int, *, base: float = 2.0, cap: float = 300.0,
                  rng: Callable[[], float] = random.random) -> float:
    """Seconds before retry number ``attempts + 1``: exponential, capped, with "equal
    jitter" (half fixed, half random) so a fleet that lost the same broker does not retry
    in lock-step."""
    d = min(cap, base * (2 ** min(attempts, 30)))
    return d / 2 + rng() * d / 2


@dataclass
class DeliveryStats:
    published: int = 0
    delivered: int = 0
    failed: int = 0
    via_https: int = 0
    last_error: str = ""
    by_transport: dict[str, int] = field(default_factory=dict)


@dataclass
class _InFlight:
    row_id: str
    sent_at: float
    attempts: int


class OutboxDelivery:
    """Moves outbox rows to the HR side. All store access happens in the caller's thread."""

    def __init__(
        self, store, link: MqttLink | None, https: HttpsUplink | None, *,
        clock: Callable[[], float] = time.time, fallback_after_s: float = 300.0,
        ack_timeout_s: float = 30.0, batch: int = 200, window: int = 500,
        rng: Callable[[], float] = random.random,
    ):
        self.store = store
        self.link = link
        self.https = https
        self.clock = clock
        self.fallback_after_s = fallback_after_s
        self.ack_timeout_s = ack_timeout_s
        self.batch = batch
        self.window = window
        self.rng = rng
        self.inflight: dict[int, _InFlight] = {}
        self._inflight_ids: set[str] = set()
        self._https_failures = 0
        self._https_pause_until = 0.0
        self.stats = DeliveryStats()

    # --- transport choice -------------------------------------------------------------------

    def transport(self) -> str | None:
        """"mqtt", "https" (fallback) or None (wait)."""
        if self.link is not None and self.link.connected.is_set():
            return "mqtt"
        if self.https is None:
            return None
        if self.clock() < self._https_pause_until:
            return None  # the HTTPS server failed just now: back off as a whole, not per row
        if self.link is None:
            return "https"
        down = self.link.down_since
        if down is not None and self.clock() - down >= self.fallback_after_s:
            return "https"
        return None

    # --- one step -------------------------------------------------------------------------

    def step(self) -> int:
        """Handle acks, expire lost ones, send what is due. Returns rows sent this step."""
        self._collect_acks()
        self._expire()
        mode = self.transport()
        if mode is None:
            return 0
        room = self.window - len(self.inflight)
        if room <= 0:
            return 0
        now = self.clock()
        # In-flight rows are leased (next_attempt in the future), so this returns only rows
        # not yet sent: no re-reading of what waits for a PUBACK.
        rows = [r for r in self.store.due_outbox(now, limit=min(self.batch, room), kinds=UPLINK_KINDS)
                if r.id not in self._inflight_ids]
        if not rows:
            return 0
        if mode == "mqtt":
            return self._send_mqtt(rows)
        return self._send_https(rows)

    def _body(self, row) -> bytes:
        return json.dumps(row.payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def _send_mqtt(self, rows) -> int:
        assert self.link is not None
        sent = 0
        now = self.clock()
        for row in rows:
            mid = self.link.publish(row.topic, self._body(row), msg_id=row.id, created=row.created)
            if mid is None:
                break  # disconnected meanwhile; the rows stay due
            self.inflight[mid] = _InFlight(row.id, now, row.attempts)
            self._inflight_ids.add(row.id)
            sent += 1
        self._lease([r.id for r in rows[:sent]], now + self.ack_timeout_s)
        self.stats.published += sent
        return sent

    def _lease(self, ids: list[str], until: float) -> None:
        """Mark rows as waiting for their PUBACK: not due again until ``until`` (when they
        are re-sent if no PUBACK came). ``last_error`` says so, for technicians."""
        if not ids:
            return
        with self.store.transaction():
            self.store.db.conn.executemany(
                "UPDATE outbox SET next_attempt = ?, last_error = ? WHERE id = ? AND delivered IS NULL",
                [(until, LEASE_MARK, i) for i in ids],
            )

    def release_leases(self) -> int:
        """At start-up: rows a previous run was waiting on (it crashed) are due again now."""
        with self.store.transaction():
            cur = self.store.db.execute(
                "UPDATE outbox SET next_attempt = 0, last_error = NULL"
                " WHERE delivered IS NULL AND last_error = ?", (LEASE_MARK,))
            return cur.rowcount

    def _send_https(self, rows) -> int:
        assert self.https is not None
        sent = 0
        delivered: list[str] = []
        for row in rows:
            try:
                self.https.post_record(row.kind, self._body(row), msg_id=row.id, created=row.created)
            except UplinkError as e:
                self._failed(row.id, row.attempts, str(e))
                if not e.permanent:
                    # The server is unreachable: pause the transport, do not try row after row.
                    self._https_failures += 1
                    self._https_pause_until = self.clock() + backoff_delay(
                        self._https_failures - 1, base=1.0, cap=120.0, rng=self.rng)
                    break
                continue
            self._https_failures = 0
            delivered.append(row.id)
            sent += 1
        # The connector answers 2xx only after storing (and forwarding) the record: that is
        # the receipt, no down/receipt follows for HTTPS deliveries.
        self._mark_delivered(delivered, receipted=True)
        self.stats.via_https += len(delivered)
        return sent

    # --- acknowledgements -------------------------------------------------------------------

    def _collect_acks(self) -> None:
        if self.link is None:
            return
        delivered: list[str] = []
        while True:
            try:
                ack = self.link.acks.get_nowait()
            except Exception:  # queue.Empty
                break
            entry = self.inflight.pop(ack.mid, None)
            if entry is None:
                continue  # a heartbeat, or an ack after we gave up on it (re-sent later)
            self._inflight_ids.discard(entry.row_id)
            if ack.ok:
                delivered.append(entry.row_id)
            else:
                # e.g. "Not authorized": the broker's ACL refused this topic.
                self._failed(entry.row_id, entry.attempts, f"broker refused: {ack.reason}")
        self._mark_delivered(delivered)

    def _mark_delivered(self, ids: list[str], *, receipted: bool = False) -> None:
        if not ids:
            return
        at = self.clock()
        # One transaction for the batch: one fsync instead of one per row.
        with self.store.transaction():
            for i in ids:
                self.store.mark_delivered(i, at)
            if receipted:
                self.store.db.conn.executemany(
                    "UPDATE outbox SET receipted = ? WHERE id = ? AND receipted IS NULL",
                    [(at, i) for i in ids])
        self.stats.delivered += len(ids)

    def _failed(self, row_id: str, attempts: int, error: str) -> None:
        delay = backoff_delay(attempts, rng=self.rng)
        self.store.mark_failed(row_id, self.clock() + delay, error)
        self.stats.failed += 1
        self.stats.last_error = error
        log.warning("outbox row %s not delivered (attempt %d): %s; retry in %.0fs",
                    row_id, attempts + 1, error, delay)

    def _expire(self) -> None:
        now = self.clock()
        for mid, entry in list(self.inflight.items()):
            if now - entry.sent_at > self.ack_timeout_s:
                del self.inflight[mid]
                self._inflight_ids.discard(entry.row_id)
                self._failed(entry.row_id, entry.attempts, f"no PUBACK within {self.ack_timeout_s:.0f}s")

    def forget_inflight(self) -> None:
        """After a reconnect without a session the broker will not ack old mids."""
        self.inflight.clear()
        self._inflight_ids.clear()

    def retry_now(self) -> int:
        """Make every backing-off row due now (the ``retry_now`` command)."""
        with self.store.transaction():
            cur = self.store.db.execute(
                "UPDATE outbox SET next_attempt = 0 WHERE delivered IS NULL AND next_attempt > 0"
            )
            return cur.rowcount


# --- receipts: HR's connector has the record ---------------------------------------------------

def receipts_required(store) -> bool:
    """Whether this device has ever had a signed receipt from HR (see ``RECEIPTS_SEEN_KV``)."""
    return store.kv_get(RECEIPTS_SEEN_KV) is not None


def apply_receipts(store, ids: list[str], now: float) -> tuple[int, int]:
    """Record HR's receipt for ``ids`` (already verified as signed for this device). A row
    that was queued again for want of a receipt counts as delivered too. Ids this device does
    not hold as a result/event are ignored. Returns (newly receipted, unknown ids)."""
    ids = list(dict.fromkeys(ids))
    marks = ",".join("?" * len(ids))
    kinds = ",".join("?" * len(RECEIPT_KINDS))
    with store.transaction():
        db = store.db
        known = {r[0] for r in db.execute(
            f"SELECT id FROM outbox WHERE id IN ({marks}) AND kind IN ({kinds})",
            (*ids, *RECEIPT_KINDS)).fetchall()}
        cur = db.execute(
            f"UPDATE outbox SET receipted = ?, delivered = coalesce(delivered, ?),"
            f" last_error = NULL WHERE id IN ({marks}) AND kind IN ({kinds}) AND receipted IS NULL",
            (now, now, *ids, *RECEIPT_KINDS))
        newly = cur.rowcount
        seen = store.kv_get(RECEIPTS_SEEN_KV)
        stats = store.kv_get(RECEIPT_STATS_KV, {}) or {}
        if seen is None:
            # The first receipt ever: HR's connector has just started sending them (an
            # upgrade). Rows the broker took long before that went to a connector without
            # receipts; re-sending the whole retention window would be a burst of old
            # results, so they are settled as they were. Recent ones keep the safety net.
            legacy = db.execute(
                f"UPDATE outbox SET receipted = delivered WHERE receipted IS NULL AND delivered IS NOT NULL"
                f" AND delivered < ? AND kind IN ({kinds})", (now - RECEIPTS_LEGACY_S, *RECEIPT_KINDS)).rowcount
            stats["settled_before_receipts"] = legacy
        store.kv_set(RECEIPTS_SEEN_KV, {"first": (seen or {}).get("first", now), "last": now})
        stats["receipted"] = stats.get("receipted", 0) + newly
        stats["unknown_ids"] = stats.get("unknown_ids", 0) + len(ids) - len(known)
        store.kv_set(RECEIPT_STATS_KV, stats)
    return newly, len(ids) - len(known)


def resend_unreceipted(store, now: float, timeout_s: float, limit: int = 500) -> int:
    """Queue again the results/events the broker acknowledged ``timeout_s`` ago (longer for
    rows already re-sent, see ``RESEND_BACKOFF_MAX``) without a receipt from HR: the broker
    may have lost them (crash before saving). Same id, same place in the session's order.
    Does nothing until the device has seen a receipt. Returns the rows queued again."""
    if not receipts_required(store):
        return 0
    # A read first (this runs every second): a write transaction only when something is due.
    with store.lock:
        rows = store.db.execute(
            "SELECT id FROM outbox INDEXED BY outbox_unreceipted"
            f" WHERE receipted IS NULL AND delivered IS NOT NULL AND {_RECEIPT_KINDS_SQL}"
            " AND delivered + ? * min(1 << min(resends, 30), ?) < ? ORDER BY seq LIMIT ?",
            (timeout_s, RESEND_BACKOFF_MAX, now, limit)).fetchall()
    if not rows:
        return 0
    with store.transaction():
        # Re-checked in the UPDATE: a receipt may have come in between.
        store.db.conn.executemany(
            "UPDATE outbox SET delivered = NULL, next_attempt = 0, resends = resends + 1,"
            " last_error = ? WHERE id = ? AND receipted IS NULL AND delivered IS NOT NULL",
            [(RESEND_NOTE.format(timeout_s), r[0]) for r in rows])
    log.warning("%d result/event record(s) acknowledged by the broker got no receipt from HR "
                "within %.0fs (broker restarted? connector down?); sending them again", len(rows), timeout_s)
    return len(rows)


def unreceipted_stats(store, now: float) -> dict:
    """Results/events the broker has but HR has not receipted: count and oldest age (since
    created). Zero while receipts are not required (a connector without receipts)."""
    if not receipts_required(store):
        return {"unreceipted": 0, "oldest_unreceipted_age_s": None}
    with store.lock:
        n, oldest = store.db.execute(
            "SELECT count(*), min(created) FROM outbox INDEXED BY outbox_unreceipted"
            f" WHERE receipted IS NULL AND delivered IS NOT NULL AND {_RECEIPT_KINDS_SQL}").fetchone()
    return {"unreceipted": n, "oldest_unreceipted_age_s": None if oldest is None else max(0.0, now - oldest)}


def hr_clip_public_key(store):
    """HR's X25519 clip key from the store cache (kind ``pubkey``, key ``clips``), or None."""
    from device.mediacrypt import load_clip_public_key

    got = store.cache_get("pubkey", "clips")
    if not got or not got[1].get("pem"):
        return None
    try:
        return load_clip_public_key(got[1]["pem"])
    except ValueError as e:
        log.error("cached HR clip key is unusable: %s", e)
        return None


def install_clip_key(store, pem, version: int) -> bool:
    """Cache HR's clip key (kind ``pubkey``, key ``clips``) and make the clips that waited
    for it due now. Raises ValueError (naming the problem) for anything but an X25519 public
    key PEM. Returns whether it was newer than the cached one."""
    import hashlib

    from device.mediacrypt import load_clip_public_key

    if not isinstance(pem, str) or not pem.strip():
        raise ValueError("clip_key: payload has no 'pem'")
    load_clip_public_key(pem)
    stored = store.cache_put("pubkey", "clips", version,
                             {"pem": pem, "sha256": hashlib.sha256(pem.strip().encode()).hexdigest()})
    if stored:
        with store.transaction():
            store.db.execute("UPDATE outbox SET next_attempt = 0 WHERE delivered IS NULL AND kind = ?"
                             " AND last_error = ?", (CLIP_KIND, NO_CLIP_KEY))
        log.info("HR clip key installed; waiting clips will be sealed for it and uploaded")
    return stored


def due_clips(store, now: float, limit: int = 10) -> list[OutboxRow]:
    """The ``clip`` rows to upload now, oldest first: per session the oldest clip that is not
    parked (HR refused it for good, see ``CLIP_PARKED``), plus parked clips whose daily retry is due.
    Unlike ``Store.due_outbox`` a parked clip never holds back the clips queued after it."""
    from device.store import OutboxRow

    n = len(CLIP_PARKED)
    parked = "substr(coalesce({col}, ''), 1, ?) = ?"
    sql = (
        "SELECT * FROM outbox AS o INDEXED BY outbox_pending"
        " WHERE delivered IS NULL AND kind = ? AND next_attempt <= ?"
        " AND (session_id IS NULL OR " + parked.format(col="o.last_error") +
        " OR seq = (SELECT min(seq) FROM outbox AS h WHERE h.session_id = o.session_id"
        " AND h.delivered IS NULL AND h.kind = ? AND NOT " + parked.format(col="h.last_error") + "))"
        " ORDER BY seq LIMIT ?"
    )
    with store.lock:
        cur = store.db.execute(sql, (CLIP_KIND, now, n, CLIP_PARKED, CLIP_KIND, n, CLIP_PARKED, limit))
        cols = [d[0] for d in cur.description]
        return [OutboxRow.from_row(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]


def parked_clips(store) -> list[dict]:
    """Clips parked by a conflict, oldest first, for the technician (``kiosk-provision
    status``): ids, kind, attempts, when retried next and the connector's answer. Ids only,
    never anything about the candidate."""
    with store.lock:
        rows = store.db.execute(
            "SELECT id, session_id, payload, attempts, next_attempt, last_error FROM outbox"
            " WHERE delivered IS NULL AND kind = ? AND substr(last_error, 1, ?) = ? ORDER BY seq",
            (CLIP_KIND, len(CLIP_PARKED), CLIP_PARKED)).fetchall()
    out = []
    for id_, session_id, payload, attempts, next_attempt, error in rows:
        p = json.loads(payload)
        out.append({"media_id": p.get("media_id") or id_, "session_id": session_id,
                    "answer_id": p.get("answer_id"), "kind": p.get("kind"), "attempts": attempts,
                    "next_attempt": next_attempt, "error": error})
    return out


def _seal_for_hr(store, media_id: str | None, path, media_key: bytes, hr_key) -> None:
    """Wrap the recording's content key for HR (header only, atomic) and keep the media row's
    size/sha256 in step with the file."""
    import hashlib

    from device.mediacrypt import seal_for_hr

    if not seal_for_hr(path, media_key, hr_key):
        return
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if media_id:
        with store.transaction():
            store.db.execute("UPDATE media SET size = ?, sha256 = ? WHERE id = ?",
                             (path.stat().st_size, h.hexdigest(), media_id))


def deliver_clips_once(store, https: HttpsUplink, *, clock: Callable[[], float] = time.time,
                       media_root=None, stop=None, rng: Callable[[], float] = random.random,
                       media_key: bytes | None = None) -> int:
    """Upload the due ``clip`` rows (one at a time, resumable). Returns how many finished.

    With ``media_key`` (the device's "media" key; the daemon always passes it) each recording
    is first sealed for HR's clip key (cache ``pubkey``/``clips``): its content key is wrapped
    for HR in the header. Without a known HR clip key the rows wait (``NO_CLIP_KEY``, checked
    every ``CLIP_KEY_WAIT_S``, attempts not counted): uploading a clip HR cannot open is useless.
    """
    from pathlib import Path

    from device.mediacrypt import MediaError

    done = 0
    hr_key = hr_clip_public_key(store) if media_key is not None else None
    for row in due_clips(store, clock(), limit=10):
        if stop is not None and stop.is_set():
            break
        p = row.payload
        media_id = p.get("media_id") or p.get("id")
        path = p.get("path")
        if path is None and media_id:
            with store.lock:
                m = store.db.execute("SELECT path FROM media WHERE id = ?", (media_id,)).fetchone()
            path = m[0] if m else None
        if path is None:
            _park(store, row, clock(), "the clip row names no media file")
            continue
        path = Path(path)
        if not path.is_absolute() and media_root is not None:
            path = Path(media_root) / path
        meta = {k: p[k] for k in ("session_id", "answer_id", "kind", "question_id") if k in p}
        if media_key is not None:
            if hr_key is None:
                with store.transaction():
                    store.db.execute(
                        "UPDATE outbox SET next_attempt = ?, last_error = ? WHERE id = ? AND delivered IS NULL",
                        (clock() + CLIP_KEY_WAIT_S, NO_CLIP_KEY, row.id))
                continue
            try:
                _seal_for_hr(store, media_id, path, media_key, hr_key)
            except FileNotFoundError:
                pass  # upload_clip reports the missing file (permanent)
            except (MediaError, OSError) as e:
                store.mark_failed(row.id, clock() + backoff_delay(row.attempts, rng=rng),
                                  f"clip {media_id}: cannot seal for HR: {e}")
                log.error("clip %s cannot be sealed for HR: %s", media_id, e)
                continue
        try:
            https.upload_clip(str(media_id or row.id), path, meta, stop=stop)
        except UplinkError as e:
            if e.conflict:
                _park(store, row, clock(), "HR already stores a different completed clip with this id "
                      f"and never replaces it; check the connector's log and clip list ({e})")
                continue
            if e.permanent and e.status not in (403, 404):
                # The file is gone or HR refuses this body (400/413/422): retrying every few
                # minutes cannot help, and must not hold back the session's other clips.
                # 403/404 say the device or URL is wrong (fixed by IT for every clip at
                # once), so those keep their short backoff.
                _park(store, row, clock(), str(e))
                continue
            delay = backoff_delay(row.attempts, rng=rng)
            store.mark_failed(row.id, clock() + delay, str(e))
            log.warning("clip %s not uploaded: %s; retry in %.0fs", media_id or row.id, e, delay)
            break
        store.mark_delivered(row.id, clock())
        done += 1
    return done


def _park(store, row, now: float, why: str) -> None:
    """A clip that can never go as it is: kept undelivered (the recording stays), retried
    daily, listed by ``parked_clips``, and out of its session's way (``due_clips``)."""
    store.mark_failed(row.id, now + CLIP_PARK_RETRY_S, f"{CLIP_PARKED}{why}; retried daily")
    log.error("clip %s (session %s) parked: %s; the session's other clips go on, retried daily",
              row.payload.get("media_id") or row.id, row.session_id, why)


def settle_unsendable_clips(store, now: float, note: str = HTTPS_OFF_NOTE) -> int:
    """On a device without ``[sync.https]`` no clip can ever be uploaded: settle the ``clip``
    rows like notify rows without WeCom (the recordings stay on the device, encrypted, until
    retention). With ``[sync.https]`` configured clip rows always wait for their upload."""
    return settle_unsendable_notify(store, now, note, kind=CLIP_KIND)


def settle_unsendable_notify(store, now: float, note: str = WECOM_OFF_NOTE, *,
                             kind: str = NOTIFY_KIND) -> int:
    """On a device without ``[wecom]`` nobody will ever send the ``notify`` rows the session
    machine queues: mark them delivered with ``note`` (kept in ``last_error``) so they neither
    look like a backlog (status, the heartbeat's oldest age, the HR side's undelivered alarm)
    nor keep their session from retention. Only for that case: with WeCom configured, notify
    rows wait for the notifier however long it is down. Returns the rows settled."""
    with store.lock:  # a read first: the daemon calls this every pass, and writes rarely
        pending = store.db.execute(
            "SELECT 1 FROM outbox WHERE delivered IS NULL AND kind = ? LIMIT 1", (kind,)
        ).fetchone()
    if pending is None:
        return 0
    with store.transaction():
        cur = store.db.execute(
            "UPDATE outbox SET delivered = ?, last_error = ? WHERE delivered IS NULL AND kind = ?",
            (now, note, kind))
        return cur.rowcount
