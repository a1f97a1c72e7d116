"""The append-only audit log: who did what and when, hash-chained so tampering shows.

Each entry's HMAC covers its content and the previous entry's hash; the head (last seq and
hash) is kept beside the chain so a cut-off tail shows too. Never put candidate names,
transcripts or scores in an entry: use ids.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from device.store import Store

GENESIS = "0" * 64
_HEAD_KEY = "audit.head"


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: float
    actor: str
    action: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""


def _canonical(seq: int, ts: float, actor: str, action: str, detail_json: str, prev: str) -> bytes:
    return json.dumps(
        [seq, repr(float(ts)), actor, action, detail_json, prev],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")


class AuditLog:
    """Technician actions, exports, wipes, data access; one chain per store."""

    def __init__(self, store: Store, key: bytes, *, clock: Callable[[], float] = time.time):
        if len(key) < 16:
            raise ValueError("audit key too short")
        self.store = store
        self._key = key
        self._clock = clock

    def _mac(
        self, seq: int, ts: float, actor: str, action: str, detail_json: str, prev: str
    ) -> str:
        msg = _canonical(seq, ts, actor, action, detail_json, prev)
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def append(self, actor: str, action: str, detail: dict[str, Any] | None = None) -> int:
        """Add an entry; returns its seq. Atomic with the head update (BEGIN IMMEDIATE)."""
        if not actor or not action:
            raise ValueError("audit entries need an actor and an action")
        detail_json = json.dumps(
            detail or {}, ensure_ascii=False, sort_keys=True, separators=(",", ":")
        )
        ts = float(self._clock())
        with self.store.transaction():
            with self.store.lock:
                last = self.store.db.execute(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                ).fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
            digest = self._mac(seq, ts, actor, action, detail_json, prev)
            self.store.db.execute(
                "INSERT INTO audit (seq, ts, actor, action, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, ts, actor, action, detail_json, prev, digest),
            )
            self.store.kv_set(_HEAD_KEY, {"seq": seq, "hash": digest})
        return seq

    def entries(self, since_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
        """Entries with seq > since_seq, oldest first (for `kiosk-provision audit show`)."""
        sql = "SELECT * FROM audit WHERE seq > ? ORDER BY seq"
        params: list[Any] = [since_seq]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self.store.lock:
            rows = list(self.store.db.query(sql, params))
        return [AuditEntry(**{**r, "detail": json.loads(r["detail"])}) for r in rows]

    def verify(self) -> AuditReport:
        """Walk the chain: a removed, edited, inserted or reordered entry, or a cut-off tail,
        makes it fail at the first bad seq."""
        with self.store.transaction():  # one consistent snapshot of chain and head
            with self.store.lock:
                rows = list(
                    self.store.db.execute(
                        "SELECT seq, ts, actor, action, detail, prev_hash, hash FROM audit ORDER BY seq"
                    ).fetchall()
                )
            head = self.store.kv_get(_HEAD_KEY)
        prev = GENESIS
        expected_seq = 1
        for seq, ts, actor, action, detail_json, prev_hash, digest in rows:
            if seq != expected_seq:
                return AuditReport(
                    False, len(rows), expected_seq, f"entry {expected_seq} is missing"
                )
            if prev_hash != prev:
                return AuditReport(
                    False, len(rows), seq, f"entry {seq} does not follow entry {seq - 1}"
                )
            if not hmac.compare_digest(
                self._mac(seq, ts, actor, action, detail_json, prev_hash), digest
            ):
                return AuditReport(False, len(rows), seq, f"entry {seq} was altered")
            prev = digest
            expected_seq += 1
        last_seq = rows[-1][0] if rows else 0
        if head is None and rows:
            return AuditReport(False, len(rows), 1, "the chain head record is missing")
        if head is not None and (head.get("seq") != last_seq or head.get("hash") != prev):
            first_bad = last_seq + 1 if head.get("seq", 0) > last_seq else head.get("seq")
            return AuditReport(
                False,
                len(rows),
                first_bad,
                f"the log ends at entry {last_seq} but entry {head.get('seq')} was written",
            )
        return AuditReport(True, len(rows))

    def rekey(self, new_key: bytes) -> AuditLog:
        """Re-seal the chain under new_key (master key rotation): verify it with the current
        key first, so a tampered log is never laundered, then recompute every hash in one
        transaction. Returns the log under the new key."""
        new = AuditLog(self.store, new_key, clock=self._clock)
        with self.store.transaction():
            report = self.verify()
            if not report.ok:
                raise ValueError(f"audit log does not verify ({report.reason}); refusing to re-seal it")
            with self.store.lock:
                rows = self.store.db.execute(
                    "SELECT seq, ts, actor, action, detail FROM audit ORDER BY seq"
                ).fetchall()
            prev = GENESIS
            for seq, ts, actor, action, detail_json in rows:
                digest = new._mac(seq, ts, actor, action, detail_json, prev)
                self.store.db.execute(
                    "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq)
                )
                prev = digest
            if rows:
                self.store.kv_set(_HEAD_KEY, {"seq": rows[-1][0], "hash": prev})
        return new
