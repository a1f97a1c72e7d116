"""The connector's own database: received records de-duplicated by id, device status and
heartbeats, clip uploads, rejected messages. SQLite encrypted with SQLCipher by default
(the file holds candidate results), PostgreSQL by URL. It never stores a record twice.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS messages (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        tenant TEXT NOT NULL,
        device_id TEXT NOT NULL,
        session_id TEXT,
        via TEXT NOT NULL,
        created REAL,
        received REAL NOT NULL,
        payload TEXT NOT NULL,
        forwarded REAL,
        forward_attempts INTEGER NOT NULL DEFAULT 0,
        forward_error TEXT)""",
    "CREATE INDEX IF NOT EXISTS messages_session ON messages(session_id)",
    """CREATE TABLE IF NOT EXISTS devices (
        device_id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        status TEXT,
        status_at REAL,
        heartbeat TEXT,
        heartbeat_at REAL,
        last_seen REAL,
        alarm TEXT,
        alarm_since REAL)""",
    """CREATE TABLE IF NOT EXISTS clips (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        device_id TEXT NOT NULL,
        meta TEXT NOT NULL,
        length INTEGER NOT NULL,
        received_bytes INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT NOT NULL,
        path TEXT NOT NULL,
        created REAL NOT NULL,
        completed REAL)""",
    """CREATE TABLE IF NOT EXISTS rejects (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        received REAL NOT NULL,
        via TEXT NOT NULL,
        topic TEXT NOT NULL,
        reason TEXT NOT NULL,
        size INTEGER NOT NULL)""",
]


class ConnectorDbError(Exception):
    """The database cannot be opened (wrong key, bad URL, missing driver)."""


@dataclass
class StoredMessage:
    n: int
    id: str
    kind: str
    tenant: str
    device_id: str
    session_id: str | None
    via: str
    created: float | None
    received: float
    payload: dict
    forwarded: float | None
    forward_attempts: int
    forward_error: str | None


def load_or_create_db_key(path: Path) -> bytes:
    """32 random bytes in ``path`` (0600), created on first use."""
    path = Path(path)
    if path.exists():
        key = path.read_bytes()
        if len(key) != 32:
            raise ConnectorDbError(f"{path}: expected a 32-byte key, found {len(key)} bytes")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


class ConnectorDB:
    """Thread-safe: one connection per thread (SQLite WAL) or per thread (PostgreSQL)."""

    def __init__(self, url: str, key: bytes | None = None):
        self.url = url
        self._key = key
        self._local = threading.local()
        if url.startswith("sqlite:///"):
            self.kind = "sqlite"
            # sqlite:////abs/path and sqlite:///relative/path, as SQLAlchemy spells them.
            self.path = Path(url[len("sqlite:///") :])
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif url.startswith(("postgresql://", "postgres://")):
            self.kind = "postgres"
            self.path = None
        else:
            raise ConnectorDbError(f"db_url {url!r}: expected sqlite:///PATH or postgresql://…")
        with self.tx() as c:
            for stmt in SCHEMA:
                c.execute(self._sql(stmt))

    # --- connections --------------------------------------------------------------------

    def _connect(self):
        if self.kind == "sqlite":
            if self._key is not None:
                import sqlcipher3 as sqlite
            else:
                import sqlite3 as sqlite
            conn = sqlite.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            if self._key is not None:
                conn.execute(f"PRAGMA key = \"x'{self._key.hex()}'\"")
            try:
                conn.execute("PRAGMA journal_mode=WAL")
            except Exception as e:
                raise ConnectorDbError(f"{self.path}: cannot open (wrong key or not a database): {e}") from e
            # WAL + NORMAL survives a crash of the connector; a power loss may lose the last
            # commits, which the broker then redelivers (we only ack after commit).
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            return conn
        try:
            import psycopg  # type: ignore[import-not-found]
        except ImportError as e:
            raise ConnectorDbError(
                "db_url is PostgreSQL but the psycopg package is not installed (pip install psycopg)"
            ) from e
        return psycopg.connect(self.url, autocommit=True)

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _sql(self, sql: str) -> str:
        if self.kind == "postgres":
            sql = (
                sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
                .replace(" REAL", " DOUBLE PRECISION")
                .replace("?", "%s")
            )
        return sql

    @contextmanager
    def tx(self) -> Iterator[Any]:
        conn = self._conn()
        cur = conn.cursor()
        if self.kind == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        else:
            cur.execute("BEGIN")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        cur = self._conn().cursor()
        cur.execute(self._sql(sql), args)
        return cur.fetchall()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- messages -----------------------------------------------------------------------

    def insert_message(
        self, *, id: str, kind: str, tenant: str, device_id: str, session_id: str | None,
        via: str, created: float | None, payload: dict, received: float | None = None,
    ) -> tuple[bool, float | None]:
        """Store a record once. Returns (new, forwarded_at of the stored row)."""
        received = time.time() if received is None else received
        with self.tx() as c:
            c.execute(
                self._sql(
                    "INSERT INTO messages (id, kind, tenant, device_id, session_id, via, created,"
                    " received, payload) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING"
                ),
                (id, kind, tenant, device_id, session_id, via, created, received,
                 json.dumps(payload, ensure_ascii=False, separators=(",", ":"))),
            )
            new = c.rowcount == 1
            c.execute(self._sql("SELECT forwarded FROM messages WHERE id = ?"), (id,))
            row = c.fetchone()
        return new, (row[0] if row else None)

    def mark_forwarded(self, id: str, at: float) -> None:
        with self.tx() as c:
            c.execute(self._sql("UPDATE messages SET forwarded = ?, forward_error = NULL WHERE id = ?"), (at, id))

    def mark_forward_failed(self, id: str, error: str, *, permanent: bool = False) -> None:
        with self.tx() as c:
            c.execute(
                self._sql(
                    "UPDATE messages SET forward_attempts = forward_attempts + 1, forward_error = ?"
                    + (", forwarded = -1" if permanent else "")
                    + " WHERE id = ?"
                ),
                (error[:500], id),
            )

    def messages(self, kind: str | None = None, device_id: str | None = None) -> list[StoredMessage]:
        sql = "SELECT n, id, kind, tenant, device_id, session_id, via, created, received, payload, forwarded, forward_attempts, forward_error FROM messages"
        cond, args = [], []
        if kind:
            cond.append("kind = ?")
            args.append(kind)
        if device_id:
            cond.append("device_id = ?")
            args.append(device_id)
        if cond:
            sql += " WHERE " + " AND ".join(cond)
        sql += " ORDER BY n"
        return [
            StoredMessage(*r[:9], json.loads(r[9]), *r[10:]) for r in self._q(sql, tuple(args))
        ]

    def count_messages(self, kind: str | None = None) -> int:
        if kind:
            return self._q("SELECT count(*) FROM messages WHERE kind = ?", (kind,))[0][0]
        return self._q("SELECT count(*) FROM messages")[0][0]

    def count_unforwarded(self) -> int:
        """Stored results/events the EHR has not taken yet (all of them without a webhook)."""
        return self._q("SELECT count(*) FROM messages WHERE forwarded IS NULL")[0][0]

    def unforwarded(self, limit: int = 100) -> list[str]:
        return [r[0] for r in self._q("SELECT id FROM messages WHERE forwarded IS NULL ORDER BY n LIMIT ?", (limit,))]

    # --- devices ------------------------------------------------------------------------

    def update_device(
        self, tenant: str, device_id: str, *, status: str | None = None,
        heartbeat: dict | None = None, at: float | None = None,
    ) -> None:
        at = time.time() if at is None else at
        with self.tx() as c:
            c.execute(
                self._sql(
                    "INSERT INTO devices (device_id, tenant, last_seen) VALUES (?,?,?) "
                    "ON CONFLICT(device_id) DO UPDATE SET tenant = excluded.tenant, last_seen = excluded.last_seen"
                ),
                (device_id, tenant, at),
            )
            if status is not None:
                c.execute(self._sql("UPDATE devices SET status = ?, status_at = ? WHERE device_id = ?"), (status, at, device_id))
            if heartbeat is not None:
                c.execute(
                    self._sql("UPDATE devices SET heartbeat = ?, heartbeat_at = ? WHERE device_id = ?"),
                    (json.dumps(heartbeat, separators=(",", ":")), at, device_id),
                )

    def set_alarm(self, device_id: str, alarm: str | None, at: float) -> None:
        with self.tx() as c:
            c.execute(
                self._sql("UPDATE devices SET alarm = ?, alarm_since = ? WHERE device_id = ?"),
                (alarm, at if alarm else None, device_id),
            )

    def devices(self) -> list[dict]:
        rows = self._q(
            "SELECT device_id, tenant, status, status_at, heartbeat, heartbeat_at, last_seen, alarm, alarm_since FROM devices ORDER BY tenant, device_id"
        )
        out = []
        for r in rows:
            out.append({
                "device_id": r[0], "tenant": r[1], "status": r[2], "status_at": r[3],
                "heartbeat": json.loads(r[4]) if r[4] else None, "heartbeat_at": r[5],
                "last_seen": r[6], "alarm": r[7], "alarm_since": r[8],
            })
        return out

    # --- clips --------------------------------------------------------------------------

    def clip(self, id: str) -> dict | None:
        rows = self._q(
            "SELECT id, tenant, device_id, meta, length, received_bytes, sha256, path, created, completed FROM clips WHERE id = ?",
            (id,),
        )
        if not rows:
            return None
        r = rows[0]
        return {"id": r[0], "tenant": r[1], "device_id": r[2], "meta": json.loads(r[3]),
                "length": r[4], "received_bytes": r[5], "sha256": r[6], "path": r[7],
                "created": r[8], "completed": r[9]}

    def create_clip(self, *, id: str, tenant: str, device_id: str, meta: dict, length: int,
                    sha256: str, path: str) -> bool:
        with self.tx() as c:
            c.execute(
                self._sql(
                    "INSERT INTO clips (id, tenant, device_id, meta, length, sha256, path, created)"
                    " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO NOTHING"
                ),
                (id, tenant, device_id, json.dumps(meta, separators=(",", ":")), length, sha256, path, time.time()),
            )
            return c.rowcount == 1

    def set_clip_progress(self, id: str, received_bytes: int, completed: float | None = None) -> None:
        with self.tx() as c:
            c.execute(
                self._sql("UPDATE clips SET received_bytes = ?, completed = ? WHERE id = ?"),
                (received_bytes, completed, id),
            )

    def restart_clip(self, *, id: str, meta: dict, length: int, sha256: str) -> None:
        """Forget an upload that never completed and take a new declaration for the same id
        (the device resealed the recording for a new HR clip key mid-upload). A completed
        clip is never touched."""
        with self.tx() as c:
            c.execute(
                self._sql("UPDATE clips SET meta = ?, length = ?, sha256 = ?, received_bytes = 0"
                          " WHERE id = ? AND completed IS NULL"),
                (json.dumps(meta, separators=(",", ":")), length, sha256, id),
            )

    def clips(self) -> list[dict]:
        return [self.clip(r[0]) for r in self._q("SELECT id FROM clips ORDER BY created")]  # type: ignore[misc]

    # --- rejects ------------------------------------------------------------------------

    def add_reject(self, via: str, topic: str, reason: str, size: int) -> None:
        with self.tx() as c:
            c.execute(
                self._sql("INSERT INTO rejects (received, via, topic, reason, size) VALUES (?,?,?,?,?)"),
                (time.time(), via, topic, reason[:300], size),
            )

    def rejects(self) -> list[dict]:
        return [
            {"received": r[0], "via": r[1], "topic": r[2], "reason": r[3], "size": r[4]}
            for r in self._q("SELECT received, via, topic, reason, size FROM rejects ORDER BY n")
        ]
