"""The encrypted SQLite store: the only bus between the kiosk and the sync daemon.

One SQLCipher file (WAL) under the data directory, schema migrations with a version table,
a durable outbox. Never write candidate data anywhere but here, never log row contents.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlcipher3
import sqlite_utils

if TYPE_CHECKING:
    from device.config import Settings

log = logging.getLogger(__name__)

DB_FILE = "kiosk.db"
BUSY_TIMEOUT_MS = 5000


class StoreError(Exception):
    """The store cannot be used."""


class StoreKeyError(StoreError):
    """The file does not decrypt with this key: a wrong key, or not a store at all."""


class StoreVersionError(StoreError):
    """The file was written by newer software (a schema version this code does not know)."""


# --- migrations ---------------------------------------------------------------------------
# A migration is SQL text or a callable taking the sqlite_utils.Database; each runs once, in
# order, inside one transaction with the version bump. APPEND ONLY: never edit or reorder an
# existing entry, the version number of a migration is its position in this list.
Migration = str | Callable[[sqlite_utils.Database], None]

_M1_CORE = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, job_id TEXT, candidate_ref TEXT, state TEXT NOT NULL,
    language TEXT, started REAL NOT NULL, ended REAL, end_reason TEXT, data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX sessions_ended ON sessions (ended);
CREATE TABLE answers (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, question_id TEXT NOT NULL, idx INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1, started REAL, ended REAL, transcript TEXT,
    analysis TEXT NOT NULL DEFAULT '{}', media TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX answers_session ON answers (session_id, idx, attempt);
CREATE TABLE results (session_id TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, topic TEXT NOT NULL, payload TEXT NOT NULL,
    session_id TEXT, seq INTEGER NOT NULL UNIQUE, created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0,
    last_error TEXT, delivered REAL
);
CREATE INDEX outbox_due ON outbox (delivered, next_attempt);
CREATE INDEX outbox_session ON outbox (session_id, delivered, seq);
CREATE TABLE cache (
    kind TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, payload TEXT NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (kind, key)
);
CREATE TABLE verifications (
    id TEXT PRIMARY KEY, device_id TEXT NOT NULL, method TEXT NOT NULL, candidate_ref TEXT,
    roster_entry TEXT, status TEXT NOT NULL, reason TEXT, created REAL NOT NULL, consumed REAL
);
CREATE INDEX verifications_pending ON verifications (device_id, consumed, created);
CREATE TABLE signin_states (
    nonce TEXT PRIMARY KEY, device_id TEXT NOT NULL, created REAL NOT NULL,
    expires REAL NOT NULL, used REAL
);
CREATE TABLE media (
    id TEXT PRIMARY KEY, session_id TEXT, answer_id TEXT, kind TEXT NOT NULL, path TEXT NOT NULL,
    size INTEGER, sha256 TEXT
);
CREATE INDEX media_session ON media (session_id);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}', prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# 2: the delivery loop asks for the oldest due rows many times a second; a partial index in
# seq order lets it stop after `limit` rows instead of sorting the whole backlog.
_M2_OUTBOX_PENDING = "CREATE INDEX outbox_pending ON outbox (seq) WHERE delivered IS NULL;"

# 3: end-to-end delivery receipts. `delivered` stays "the broker acknowledged it" (PUBACK);
# `receipted` is when HR's connector said it stored the record (signed down/receipt, or the
# HTTPS 2xx); `resends` counts re-sends for want of a receipt (they back off). The partial
# index keeps the "PUBACKed, still waiting for HR" lookup (run every second by the sync
# daemon) off the delivered history.
_M3_OUTBOX_RECEIPTED = """
ALTER TABLE outbox ADD COLUMN receipted REAL;
ALTER TABLE outbox ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_unreceipted ON outbox (delivered)
    WHERE receipted IS NULL AND delivered IS NOT NULL AND kind IN ('result', 'event');
"""

MIGRATIONS: list[Migration] = [
    _M1_CORE,
    _M2_OUTBOX_PENDING,
    _M3_OUTBOX_RECEIPTED,
]


@dataclass(frozen=True)
class OutboxRow:
    id: str
    kind: str
    topic: str
    payload: dict[str, Any]
    session_id: str | None
    seq: int
    created: float
    attempts: int
    next_attempt: float
    last_error: str | None
    delivered: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> OutboxRow:
        # Only the known columns: a later migration may add columns to the outbox.
        known = {k: row[k] for k in cls.__dataclass_fields__}
        return cls(**{**known, "payload": json.loads(row["payload"])})


def _dumps(value: Any) -> str:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class _LockedConnection:
    """The connection as `store.db` sees it: every statement runs under the store's lock, and
    a transaction opened through it (sqlite_utils' BEGIN ... COMMIT) keeps the lock until it
    ends, so no other thread's statement can land inside it or start one in the middle."""

    def __init__(self, conn: Any, lock: threading.RLock):
        self._conn = conn
        self._lock = lock
        self._held = 0  # extra lock levels kept by the thread whose open transaction this is

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._lock.acquire()
        before = self._conn.in_transaction
        try:
            return fn(*args)
        finally:
            after = self._conn.in_transaction
            if not before and after:
                self._held += 1
                self._lock.acquire()  # keep it until the transaction ends
            elif before and not after and self._held:
                self._held -= 1
                self._lock.release()
            self._lock.release()

    def execute(self, *args: Any) -> Any:
        return self._run(self._conn.execute, *args)

    def executemany(self, *args: Any) -> Any:
        return self._run(self._conn.executemany, *args)

    def executescript(self, *args: Any) -> Any:
        return self._run(self._conn.executescript, *args)

    def cursor(self) -> _LockedCursor:
        return _LockedCursor(self, self._conn.cursor())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_conn", "_lock", "_held"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._conn, name, value)


class _LockedCursor:
    def __init__(self, owner: _LockedConnection, cursor: Any):
        self._owner = owner
        self._cursor = cursor

    def execute(self, *args: Any) -> Any:
        return self._owner._run(self._cursor.execute, *args)

    def executemany(self, *args: Any) -> Any:
        return self._owner._run(self._cursor.executemany, *args)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cursor)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class Store:
    """One connection to the encrypted file, shared by the threads of one process.

    Every method and every statement run through `store.db` takes the store's lock; a
    transaction holds it from BEGIN to COMMIT, so threads never see each other's half-done
    work. Several writes that belong together go in `with store.transaction():`.
    Another process (the kiosk and the sync daemon) opens its own Store on the same file;
    WAL and the busy timeout let them run side by side.
    """

    def __init__(self, conn: Any, path: Path, *, clock: Callable[[], float] = time.time):
        self._conn = conn
        self.path = path
        self.lock = threading.RLock()
        self.db = sqlite_utils.Database(_LockedConnection(conn, self.lock))
        self.clock = clock
        self._depth = 0

    # --- opening ----------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, key: bytes, *, clock: Callable[[], float] = time.time) -> Store:
        """Open (or create) the store at path with a 32-byte key; migrate it to the latest schema."""
        path = Path(path)
        if len(key) != 32:
            raise ValueError("store key must be 32 bytes")
        if not path.parent.is_dir():
            raise StoreError(
                f"{path}: the data directory does not exist (run kiosk-provision init)"
            )
        new = not path.exists()
        try:
            conn = sqlcipher3.connect(
                str(path),
                check_same_thread=False,
                isolation_level=None,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
        except sqlcipher3.DatabaseError as e:
            raise StoreError(f"{path}: cannot open the store: {e}") from None
        try:
            # Our StoreKeyError says what went wrong; SQLCipher's own stderr lines only confuse.
            conn.execute("PRAGMA cipher_log_level = NONE")
            # A raw 256-bit key (x'...') skips SQLCipher's PBKDF2: the key is already HKDF output.
            conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlcipher3.DatabaseError as e:
                if "not a database" not in str(e):
                    # Permissions, a directory in the way, a full disk: not a key problem.
                    raise StoreError(f"{path}: cannot open the store: {e}") from None
                raise StoreKeyError(
                    f"{path}: cannot decrypt the store ({e}): wrong key, or not this device's "
                    "store (was the key directory replaced or the device wiped?)"
                ) from None
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed answer must survive a power cut, not only a process crash.
            conn.execute("PRAGMA synchronous = FULL")
            # Never spill temp tables/indices to (unencrypted) temp files; zero deleted content.
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA secure_delete = ON")
        except BaseException:
            conn.close()
            raise
        if new:
            path.chmod(0o600)
        store = cls(conn, path, clock=clock)
        try:
            store._migrate()
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def open_from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.time
    ) -> Store:
        """<data_dir>/kiosk.db with the key derived ("store") from the device's master key."""
        from device.keys import derive_key, load_master_key

        data_dir = Path(settings.paths.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = derive_key(load_master_key(settings.paths.key_dir), "store")
        return cls.open(data_dir / DB_FILE, key, clock=clock)

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self.lock:
            row = self._conn.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        with self.transaction():
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied REAL NOT NULL)"
            )
            # Read inside BEGIN IMMEDIATE: two processes starting together migrate once.
            current = int(
                self._conn.execute(
                    "SELECT coalesce(max(version), 0) FROM schema_version"
                ).fetchone()[0]
            )
            if current > len(MIGRATIONS):
                raise StoreVersionError(
                    f"{self.path}: schema version {current} is newer than this software "
                    f"(knows {len(MIGRATIONS)}); install the newer version"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                step = MIGRATIONS[version - 1]
                if callable(step):
                    step(self.db)
                else:
                    self.db.executescript(step)
                self._conn.execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                    (version, time.time()),
                )
                log.info("store %s migrated to schema version %d", self.path.name, version)

    # --- transactions -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (rollback on error). Nested calls join the outer
        transaction through a savepoint, so an inner failure undoes only the inner part."""
        with self.lock:
            if self._depth:
                name = f"sp{self._depth}"
                self._conn.execute(f"SAVEPOINT {name}")
                self._depth += 1
                try:
                    yield
                except BaseException:
                    self._conn.execute(f"ROLLBACK TO {name}")
                    self._conn.execute(f"RELEASE {name}")
                    raise
                else:
                    self._conn.execute(f"RELEASE {name}")
                finally:
                    self._depth -= 1
                return
            # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), so a
            # transaction never fails half-way when it upgrades from read to write.
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def _query(self, sql: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            cur = self._conn.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]

    def checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL into the database file and truncate it (busy, log pages, checkpointed)."""
        with self.lock:
            row = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return tuple(row)  # type: ignore[return-value]

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the whole file under new_key (master key rotation). Stop the other
        process first: its connection keeps the old key and would fail on the next read."""
        if len(new_key) != 32:
            raise ValueError("store key must be 32 bytes")
        with self.lock:
            if self._depth:
                raise StoreError("rekey inside a transaction")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- outbox ---------------------------------------------------------------------------

    def enqueue(
        self,
        kind: str,
        topic: str,
        payload: dict[str, Any],
        *,
        session_id: str | None = None,
        id: str | None = None,
    ) -> str:
        """Queue a message; its id is the idempotency key the HR side de-duplicates on.
        Re-enqueueing an existing id is a no-op (so a retried transaction cannot duplicate)."""
        row_id = id or str(uuid.uuid4())
        body = _dumps(payload)
        with self.transaction():
            seq = self._conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM outbox").fetchone()[0]
            self._conn.execute(
                "INSERT INTO outbox (id, kind, topic, payload, session_id, seq, created, attempts, next_attempt)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0) ON CONFLICT (id) DO NOTHING",
                (row_id, kind, topic, body, session_id, seq, self.clock()),
            )
        return row_id

    def due_outbox(
        self, now: float, limit: int = 100, kinds: Iterable[str] | None = None
    ) -> list[OutboxRow]:
        """Undelivered rows with next_attempt <= now, oldest first. Per session only the
        head (oldest undelivered row among `kinds`) is returned, so a session's messages
        go out in order even when an earlier one is backing off."""
        params: list[Any] = []
        kind_filter = ""
        kind_list = list(kinds) if kinds is not None else None
        if kind_list is not None:
            if not kind_list:
                return []
            marks = ",".join("?" * len(kind_list))
            kind_filter = f" AND kind IN ({marks})"
        sql = (
            "SELECT * FROM outbox AS o INDEXED BY outbox_pending"
            " WHERE delivered IS NULL AND next_attempt <= ?"
            + kind_filter
            + " AND (session_id IS NULL OR seq = (SELECT min(seq) FROM outbox AS h"
            " WHERE h.session_id = o.session_id AND h.delivered IS NULL"
            + kind_filter.replace("kind", "h.kind")
            + ")) ORDER BY seq LIMIT ?"
        )
        params = [now, *(kind_list or []), *(kind_list or []), limit]
        return [OutboxRow.from_row(r) for r in self._query(sql, params)]

    def get_outbox(self, id: str) -> OutboxRow | None:
        rows = self._query("SELECT * FROM outbox WHERE id = ?", (id,))
        return OutboxRow.from_row(rows[0]) if rows else None

    def mark_delivered(self, id: str, at: float) -> bool:
        """The broker/server acknowledged the row. Returns False if it was already delivered."""
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE outbox SET delivered = ?, last_error = NULL WHERE id = ? AND delivered IS NULL",
                (at, id),
            )
            return cur.rowcount == 1

    def mark_failed(self, id: str, next_attempt: float, error: str) -> None:
        """A delivery attempt failed; try again at next_attempt (the caller computes backoff)."""
        with self.transaction():
            self._conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
                " WHERE id = ? AND delivered IS NULL",
                (next_attempt, error[:500], id),
            )

    def outbox_stats(self, now: float) -> dict[str, Any]:
        """depth (undelivered rows), oldest_undelivered_age_s (None if empty), by_kind, delivered."""
        with self.lock:
            depth, oldest = self._conn.execute(
                "SELECT count(*), min(created) FROM outbox WHERE delivered IS NULL"
            ).fetchone()
            by_kind = dict(
                self._conn.execute(
                    "SELECT kind, count(*) FROM outbox WHERE delivered IS NULL GROUP BY kind"
                ).fetchall()
            )
            delivered = self._conn.execute(
                "SELECT count(*) FROM outbox WHERE delivered IS NOT NULL"
            ).fetchone()[0]
        return {
            "depth": depth,
            "oldest_undelivered_age_s": None if oldest is None else max(0.0, now - oldest),
            "by_kind": by_kind,
            "delivered": delivered,
        }

    # --- cache ----------------------------------------------------------------------------

    def cache_put(self, kind: str, key: str, version: int, payload: dict[str, Any]) -> bool:
        """Store payload if version is newer than the stored one; returns whether it was stored."""
        with self.transaction():
            row = self._conn.execute(
                "SELECT version FROM cache WHERE kind = ? AND key = ?", (kind, key)
            ).fetchone()
            if row is not None and int(row[0]) >= version:
                return False
            self._conn.execute(
                "INSERT INTO cache (kind, key, version, payload, updated) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET version = excluded.version,"
                " payload = excluded.payload, updated = excluded.updated",
                (kind, key, version, _dumps(payload), self.clock()),
            )
            return True

    def cache_get(self, kind: str, key: str) -> tuple[int, dict[str, Any]] | None:
        rows = self._query(
            "SELECT version, payload FROM cache WHERE kind = ? AND key = ?", (kind, key)
        )
        if not rows:
            return None
        return int(rows[0]["version"]), json.loads(rows[0]["payload"])

    def cache_list(self, kind: str) -> list[tuple[str, int]]:
        rows = self._query("SELECT key, version FROM cache WHERE kind = ? ORDER BY key", (kind,))
        return [(r["key"], int(r["version"])) for r in rows]

    # --- key/value --------------------------------------------------------------------------

    def kv_get(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def kv_set(self, key: str, value: Any) -> None:
        with self.transaction():
            self._conn.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, _dumps(value)),
            )

    # --- retention ------------------------------------------------------------------------

    def purge_delivered(
        self, older_than: float, *, interrupted_older_than: float | None = None,
        require_receipts: bool = False,
    ) -> dict[str, int]:
        """Delete what has been delivered and is past retention: delivered outbox rows, and
        the sessions (answers, results, media rows and files) whose every outbox row was
        delivered before the cutoff (or, with no outbox rows, that ended before it); also
        consumed verifications and expired sign-in states. Undelivered data is never deleted.
        `interrupted_older_than` is the cutoff for interrupted sessions (default: older_than).
        With `require_receipts` (HR's connector sends receipts, sync.outbox.receipts_required)
        a result or event counts as delivered only once HR receipted it, not on the broker's
        PUBACK alone. Returns counts per table."""
        need = 1 if require_receipts else 0
        icut = older_than if interrupted_older_than is None else interrupted_older_than
        counts: dict[str, int] = {}
        media_files: list[str] = []
        with self.transaction():
            c = self._conn
            sessions = [
                r[0]
                for r in c.execute(
                    "SELECT s.id FROM sessions AS s WHERE s.ended IS NOT NULL"
                    " AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.session_id = s.id AND o.delivered IS NULL)"
                    " AND NOT (? AND EXISTS (SELECT 1 FROM outbox AS o WHERE o.session_id = s.id"
                    "     AND o.kind IN ('result', 'event') AND o.receipted IS NULL))"
                    " AND coalesce((SELECT max(o.delivered) FROM outbox AS o WHERE o.session_id = s.id), s.ended)"
                    "     < (CASE WHEN s.end_reason = 'interrupted' THEN ? ELSE ? END)",
                    (need, icut, older_than),
                ).fetchall()
            ]
            counts["sessions"] = len(sessions)
            for table in ("answers", "results", "media"):
                counts[table] = 0
            for i in range(0, len(sessions), 500):
                chunk = sessions[i : i + 500]
                marks = ",".join("?" * len(chunk))
                media_files += [
                    r[0]
                    for r in c.execute(
                        f"SELECT path FROM media WHERE session_id IN ({marks})", chunk
                    )
                ]
                for table in ("answers", "results", "media"):
                    counts[table] += c.execute(
                        f"DELETE FROM {table} WHERE session_id IN ({marks})", chunk
                    ).rowcount
                c.execute(f"DELETE FROM sessions WHERE id IN ({marks})", chunk)
            counts["outbox"] = c.execute(
                "DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ?"
                " AND NOT (? AND kind IN ('result', 'event') AND receipted IS NULL)"
                " AND (session_id IS NULL OR session_id NOT IN (SELECT id FROM sessions))",
                (older_than, need),
            ).rowcount
            counts["verifications"] = c.execute(
                "DELETE FROM verifications WHERE consumed IS NOT NULL AND consumed < ?",
                (older_than,),
            ).rowcount
            counts["signin_states"] = c.execute(
                "DELETE FROM signin_states WHERE expires < ?", (older_than,)
            ).rowcount
        # Files after the commit: a crash in between leaves an orphan encrypted file, never a
        # row pointing at a missing file.
        for p in media_files:
            fp = Path(p) if Path(p).is_absolute() else self.path.parent / p
            with contextlib.suppress(FileNotFoundError):
                fp.unlink()
        counts["media_files"] = len(media_files)
        if any(counts.values()):
            # Push deleted pages out of the WAL too (best effort: readers may hold it).
            with contextlib.suppress(sqlcipher3.OperationalError):
                self.checkpoint()
        return counts
