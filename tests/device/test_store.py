"""The encrypted store: nothing readable on disk, a wrong key fails loudly, migrations,
two processes' worth of connections side by side, outbox order, retention."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest

import device.store as store_mod
from device.keys import derive_key, load_master_key
from device.store import Store, StoreKeyError, StoreVersionError

# Synthetic candidate: distinctive enough that a chance match in ciphertext is impossible.
NAME_ZH = "司马翠琳琅"
NAME_LATIN = "Qorvandel Xumbrishka"
TRANSCRIPT = (
    "我在琉璃厂带领十二人团队完成了蓝鲸计划，客户满意度提升了百分之三十。"
    " Then I rebuilt the Quetzalcoatl pipeline with Zyxwvut metrics."
)
SCORE_NOTE = "Vexillographic-Temperance 87.5"


def needles() -> list[bytes]:
    """Every form in which the candidate's data could leak: UTF-8, UTF-16 (both byte
    orders), JSON \\u escapes, and substrings (a page may split a string)."""
    texts = [NAME_ZH, NAME_LATIN, TRANSCRIPT, SCORE_NOTE]
    subs = [
        NAME_ZH[:2],
        NAME_ZH[2:],
        "Qorvandel",
        "Xumbrishka",
        "琉璃厂",
        "蓝鲸计划",
        "Quetzalcoatl",
        "Zyxwvut",
        "Vexillographic",
    ]
    out: list[bytes] = []
    for t in texts + subs:
        out += [t.encode("utf-8"), t.encode("utf-16-le"), t.encode("utf-16-be")]
        escaped = json.dumps(t)[1:-1].encode()
        if escaped != t.encode():
            out.append(escaped)
    return out


def leaks(root: Path) -> list[tuple[str, bytes]]:
    found = []
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, "nothing to scan"
    for p in files:
        data = p.read_bytes()
        for n in needles():
            if n in data:
                found.append((str(p.relative_to(root)), n))
    return found


def write_interview(store: Store) -> str:
    sid = str(uuid.uuid4())
    now = time.time()
    with store.transaction():
        store.db["sessions"].insert(
            {
                "id": sid,
                "job_id": "sales",
                "candidate_ref": "R-1001",
                "state": "done",
                "language": "zh",
                "started": now - 600,
                "ended": now,
                "end_reason": "completed",
                "data": json.dumps(
                    {"candidate_name": NAME_ZH, "alias": NAME_LATIN}, ensure_ascii=False
                ),
            }
        )
        for i in range(3):
            store.db["answers"].insert(
                {
                    "id": f"{sid}-{i}",
                    "session_id": sid,
                    "question_id": f"q{i}",
                    "idx": i,
                    "attempt": 1,
                    "started": now - 500 + i * 100,
                    "ended": now - 450 + i * 100,
                    "transcript": TRANSCRIPT,
                    "analysis": json.dumps({"note": SCORE_NOTE}),
                    "media": "[]",
                }
            )
        record = {
            "candidate": {"ref": "R-1001", "masked_name": NAME_ZH, "full": NAME_LATIN},
            "answers": [{"transcript": TRANSCRIPT}],
            "report": {"note": SCORE_NOTE},
        }
        store.db["results"].insert(
            {"session_id": sid, "record": json.dumps(record, ensure_ascii=False), "created": now}
        )
        store.enqueue("result", "kiosk/v1/default/k/up/result", record, session_id=sid)
        store.enqueue(
            "notify",
            "kiosk/v1/default/k/up/notify",
            {"type": "finished", "name": NAME_ZH},
            session_id=sid,
        )
    store.cache_put("roster", "current", 1, {"entries": [{"name": NAME_ZH, "alt": NAME_LATIN}]})
    store.kv_set("last_candidate_display", NAME_LATIN)
    with store.transaction():
        store.db["verifications"].insert(
            {
                "id": "v1",
                "device_id": "k",
                "method": "wecom",
                "candidate_ref": "R-1001",
                "roster_entry": json.dumps({"name": NAME_ZH}, ensure_ascii=False),
                "status": "ok",
                "created": now,
            }
        )
    return sid


def test_scanner_finds_plaintext_in_an_unencrypted_database(tmp_path):
    """Positive control: the same rows in plain SQLite are found, so the scan can fail."""
    plain = tmp_path / "plain"
    plain.mkdir()
    conn = sqlite3.connect(plain / "kiosk.db")
    conn.execute("CREATE TABLE t (name TEXT, transcript TEXT, u16 BLOB)")
    conn.execute(
        "INSERT INTO t VALUES (?, ?, ?)", (NAME_ZH, TRANSCRIPT, NAME_LATIN.encode("utf-16-le"))
    )
    conn.commit()
    conn.close()
    found = {n for _, n in leaks(plain)}
    assert NAME_ZH.encode() in found and TRANSCRIPT.encode() in found
    assert NAME_LATIN.encode("utf-16-le") in found


def test_candidate_data_is_not_readable_anywhere_under_the_data_dir(settings, data_dir):
    store = Store.open_from_settings(settings)
    # A second connection (the sync daemon) keeps readers on the WAL so it is not
    # checkpointed away before we look at it.
    reader = Store.open_from_settings(settings)
    try:
        sid = write_interview(store)
        assert reader.due_outbox(time.time())[0].payload["candidate"]["masked_name"] == NAME_ZH
        wal = data_dir / "kiosk.db-wal"
        assert wal.exists() and wal.stat().st_size > 0, "the test must see a non-empty WAL"
        assert (data_dir / "kiosk.db-shm").exists()
        assert leaks(data_dir) == []
        store.checkpoint()
        assert leaks(data_dir) == []
        # The data really is in there: it reads back through the key.
        row = store.db["answers"].get(f"{sid}-0")
        assert row["transcript"] == TRANSCRIPT
    finally:
        reader.close()
        store.close()
    assert leaks(data_dir) == []


def test_wrong_key_fails_loudly(settings, data_dir):
    with Store.open_from_settings(settings) as s:
        write_interview(s)
    wrong = derive_key(load_master_key(settings.paths.key_dir), "media")
    with pytest.raises(StoreKeyError) as ei:
        Store.open(data_dir / "kiosk.db", wrong)
    assert "kiosk.db" in str(ei.value) and "wrong key" in str(ei.value)
    # Plain SQLite sees random bytes, not a database with garbage in it.
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        sqlite3.connect(data_dir / "kiosk.db").execute("SELECT * FROM sqlite_master").fetchall()
    assert not (data_dir / "kiosk.db").read_bytes().startswith(b"SQLite format 3")


def test_a_plaintext_sqlite_file_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "kiosk.db")
    conn.execute("CREATE TABLE x (a)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreKeyError):
        Store.open(tmp_path / "kiosk.db", bytes(32))


def test_new_store_has_every_contract_table(store):
    tables = set(store.db.table_names())
    assert {
        "schema_version",
        "sessions",
        "answers",
        "results",
        "outbox",
        "cache",
        "verifications",
        "signin_states",
        "media",
        "audit",
        "kv",
    } <= tables
    assert store.schema_version == len(store_mod.MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000


def test_opening_an_older_store_upgrades_it(tmp_path, monkeypatch):
    key = bytes(range(32))
    path = tmp_path / "kiosk.db"
    v1 = list(store_mod.MIGRATIONS)
    monkeypatch.setattr(store_mod, "MIGRATIONS", v1[:1])
    with Store.open(path, key) as s:
        assert s.schema_version == 1
        s.kv_set("kept", {"a": 1})
        s.enqueue("event", "t", {"n": 1}, id="e1")

    def add_column(db):
        db["outbox"].add_column("priority", int)

    monkeypatch.setattr(
        store_mod,
        "MIGRATIONS",
        [*v1, "CREATE TABLE clips_uploaded (id TEXT PRIMARY KEY, at REAL);", add_column],
    )
    with Store.open(path, key) as s:
        assert s.schema_version == len(v1) + 2
        assert "clips_uploaded" in s.db.table_names()
        assert "priority" in s.db["outbox"].columns_dict
        assert s.kv_get("kept") == {"a": 1}
        assert s.get_outbox("e1").payload == {"n": 1}
    # Reopening runs nothing again.
    with Store.open(path, key) as s:
        assert s.db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == len(v1) + 2


def test_a_failed_migration_leaves_the_old_version(tmp_path, monkeypatch):
    key = bytes(range(32))
    path = tmp_path / "kiosk.db"
    v1 = list(store_mod.MIGRATIONS)
    Store.open(path, key).close()

    def broken(db):
        db.execute("CREATE TABLE half_done (a)")
        raise RuntimeError("boom")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*v1, broken])
    with pytest.raises(RuntimeError):
        Store.open(path, key)
    monkeypatch.setattr(store_mod, "MIGRATIONS", v1)
    with Store.open(path, key) as s:
        assert s.schema_version == len(v1)
        assert "half_done" not in s.db.table_names()


def test_a_store_from_newer_software_is_refused(tmp_path, monkeypatch):
    key = bytes(range(32))
    path = tmp_path / "kiosk.db"
    v1 = list(store_mod.MIGRATIONS)
    monkeypatch.setattr(store_mod, "MIGRATIONS", [*v1, "CREATE TABLE future (a);"])
    Store.open(path, key).close()
    monkeypatch.setattr(store_mod, "MIGRATIONS", v1)
    with pytest.raises(StoreVersionError, match="newer"):
        Store.open(path, key)


def test_transaction_rolls_back_and_nested_failure_undoes_only_inner(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.enqueue("event", "t", {}, id="gone")
            raise RuntimeError("power cut")
    assert store.get_outbox("gone") is None
    with store.transaction():
        store.enqueue("event", "t", {}, id="outer")
        with pytest.raises(ValueError):
            with store.transaction():
                store.enqueue("event", "t", {}, id="inner")
                raise ValueError
    assert store.get_outbox("outer") is not None
    assert store.get_outbox("inner") is None


def test_outbox_keeps_order_within_a_session(store):
    a1 = store.enqueue("result", "t", {"n": 1}, session_id="A")
    b1 = store.enqueue("event", "t", {"n": 1}, session_id="B")
    a2 = store.enqueue("event", "t", {"n": 2}, session_id="A")
    free = store.enqueue("heartbeat", "t", {})
    now = 1000.0
    assert [r.id for r in store.due_outbox(now)] == [a1, b1, free]
    # A's head backs off: A's second message waits behind it, B and the heartbeat do not.
    store.mark_failed(a1, next_attempt=now + 60, error="broker down")
    assert [r.id for r in store.due_outbox(now)] == [b1, free]
    row = store.get_outbox(a1)
    assert row.attempts == 1 and row.last_error == "broker down"
    assert [r.id for r in store.due_outbox(now + 61)] == [a1, b1, free]
    assert store.mark_delivered(a1, now + 61)
    assert not store.mark_delivered(a1, now + 62)
    assert [r.id for r in store.due_outbox(now + 61)] == [b1, a2, free]
    assert [r.id for r in store.due_outbox(now + 61, limit=1)] == [b1]


def test_a_failing_notify_does_not_block_the_sessions_result(store):
    n = store.enqueue("notify", "t", {"type": "started"}, session_id="S")
    r = store.enqueue("result", "t", {}, session_id="S")
    store.mark_failed(n, next_attempt=10_000, error="wecom down")
    assert [x.id for x in store.due_outbox(100, kinds=["result", "event"])] == [r]
    assert store.due_outbox(100, kinds=["notify"]) == []
    assert store.due_outbox(100, kinds=[]) == []


def test_enqueue_is_idempotent_on_id(store):
    store.enqueue("result", "t", {"v": 1}, id="same")
    store.enqueue("result", "t", {"v": 2}, id="same")
    assert store.outbox_stats(time.time())["depth"] == 1
    assert store.get_outbox("same").payload == {"v": 1}


def test_outbox_stats(store):
    store.clock = lambda: 100.0
    store.enqueue("result", "t", {})
    store.enqueue("event", "t", {})
    d = store.enqueue("event", "t", {})
    store.mark_delivered(d, 101)
    st = store.outbox_stats(130.0)
    assert st == {
        "depth": 2,
        "oldest_undelivered_age_s": 30.0,
        "by_kind": {"result": 1, "event": 1},
        "delivered": 1,
    }


def test_cache_keeps_only_newer_versions(store):
    assert store.cache_put("questionbank", "current", 3, {"v": 3})
    assert not store.cache_put("questionbank", "current", 2, {"v": 2})
    assert not store.cache_put("questionbank", "current", 3, {"v": "again"})
    assert store.cache_get("questionbank", "current") == (3, {"v": 3})
    store.cache_put("roster", "2026-11-23", 1, {})
    assert store.cache_list("roster") == [("2026-11-23", 1)]
    assert store.cache_get("roster", "nope") is None


def test_kv_round_trip(store):
    assert store.kv_get("missing", 7) == 7
    store.kv_set("last_sync", {"at": 1.5, "ok": True})
    assert store.kv_get("last_sync") == {"at": 1.5, "ok": True}


def test_kiosk_writer_and_sync_reader_share_the_file(settings):
    """Two Store objects (as the kiosk and the sync daemon hold), each used from its own
    threads, all at once: no 'database is locked', nothing lost, order kept per session."""
    kiosk = Store.open_from_settings(settings)
    sync = Store.open_from_settings(settings)
    errors: list[BaseException] = []
    n_sessions, per_session = 20, 10
    done_writing = threading.Event()
    delivered: list[tuple[str, int]] = []

    def writer():
        try:
            for s in range(n_sessions):
                sid = f"s{s}"
                with kiosk.transaction():
                    kiosk.db["sessions"].insert(
                        {"id": sid, "state": "answer", "started": time.time()}
                    )
                for i in range(per_session):
                    with kiosk.transaction():
                        kiosk.db["answers"].insert(
                            {"id": f"{sid}-{i}", "session_id": sid, "question_id": "q", "idx": i}
                        )
                        kiosk.enqueue("event", "t", {"i": i}, session_id=sid)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            done_writing.set()

    def heartbeat():
        try:
            while not done_writing.is_set():
                kiosk.kv_set("heartbeat", time.time())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def deliverer():
        try:
            while True:
                rows = sync.due_outbox(time.time(), limit=50)
                for r in rows:
                    sync.mark_delivered(r.id, time.time())
                    delivered.append((r.session_id, r.payload["i"]))
                if (
                    not rows
                    and done_writing.is_set()
                    and sync.outbox_stats(time.time())["depth"] == 0
                ):
                    return
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (writer, heartbeat, deliverer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    kiosk.close()
    sync.close()
    assert errors == []
    assert len(delivered) == n_sessions * per_session
    for s in range(n_sessions):
        assert [i for sid, i in delivered if sid == f"s{s}"] == list(range(per_session))


def _session(store, sid, *, ended, reason="completed"):
    with store.transaction():
        store.db["sessions"].insert(
            {
                "id": sid,
                "state": "done",
                "started": ended - 100,
                "ended": ended,
                "end_reason": reason,
            }
        )
        store.db["answers"].insert(
            {"id": f"{sid}-a", "session_id": sid, "question_id": "q", "idx": 0}
        )
        store.db["results"].insert({"session_id": sid, "record": "{}", "created": ended})
    return store.enqueue("result", "t", {}, session_id=sid)


def test_purge_deletes_only_delivered_data_past_retention(store, settings):
    day = 86400.0
    now = 100 * day
    clip = settings.paths.media_dir / "old.enc"
    clip.parent.mkdir(parents=True, exist_ok=True)
    clip.write_bytes(b"ciphertext")
    old = _session(store, "old", ended=now - 40 * day)
    store.mark_delivered(old, now - 39 * day)
    with store.transaction():
        store.db["media"].insert(
            {
                "id": "m1",
                "session_id": "old",
                "answer_id": "old-a",
                "kind": "video",
                "path": str(clip),
            }
        )
    recent = _session(store, "recent", ended=now - 40 * day)
    store.mark_delivered(recent, now - 1 * day)  # delivered late: retention counts from delivery
    _session(store, "undelivered", ended=now - 400 * day)
    intr = _session(store, "intr", ended=now - 40 * day, reason="interrupted")
    store.mark_delivered(intr, now - 39 * day)
    loose = store.enqueue("heartbeat", "t", {})
    store.mark_delivered(loose, now - 35 * day)
    with store.transaction():
        store.db["verifications"].insert(
            {
                "id": "v-old",
                "device_id": "k",
                "method": "code",
                "status": "ok",
                "created": now - 35 * day,
                "consumed": now - 35 * day,
            }
        )
        store.db["verifications"].insert(
            {
                "id": "v-new",
                "device_id": "k",
                "method": "code",
                "status": "ok",
                "created": now,
                "consumed": None,
            }
        )

    counts = store.purge_delivered(now - 30 * day, interrupted_older_than=now - 60 * day)

    remaining = {r["id"] for r in store.db["sessions"].rows}
    assert remaining == {"recent", "undelivered", "intr"}
    assert counts["sessions"] == 1 and counts["media_files"] == 1
    assert not clip.exists()
    assert store.db["answers"].count == 3 and store.db["results"].count == 3
    assert store.get_outbox(old) is None and store.get_outbox(loose) is None
    assert store.get_outbox(recent) is not None
    assert {r["id"] for r in store.db["verifications"].rows} == {"v-new"}
    # Later, past the interrupted cutoff too.
    store.purge_delivered(now - 30 * day, interrupted_older_than=now - 30 * day)
    assert {r["id"] for r in store.db["sessions"].rows} == {"recent", "undelivered"}


def test_rekey_re_encrypts_under_the_new_key(tmp_path):
    old, new = bytes(range(32)), bytes(range(1, 33))
    path = tmp_path / "kiosk.db"
    with Store.open(path, old) as s:
        s.kv_set("answer", TRANSCRIPT)
        s.rekey(new)
        s.kv_set("after", 1)
    with pytest.raises(StoreKeyError):
        Store.open(path, old)
    with Store.open(path, new) as s:
        assert s.kv_get("answer") == TRANSCRIPT and s.kv_get("after") == 1
    assert leaks(tmp_path) == []


def test_threads_sharing_one_store_never_land_in_each_others_transaction(store):
    """The kiosk's UI thread writes through store.db (sqlite_utils) while a worker runs
    transactions that fail and roll back: the UI thread's rows all survive, nothing raises."""
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        try:
            while not stop.is_set():
                with pytest.raises(RuntimeError), store.transaction():
                    store.db["media"].insert(
                        {"id": str(uuid.uuid4()), "kind": "video", "path": "x"}
                    )
                    time.sleep(0.001)
                    raise RuntimeError("analysis failed")
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    try:
        for i in range(100):
            store.db["kv"].insert({"key": f"ui-{i}", "value": "1"})
            store.db["kv"].upsert({"key": "counter", "value": str(i)}, pk="key")
    finally:
        stop.set()
        t.join(timeout=30)
    assert errors == []
    assert store.db["kv"].count == 101
    assert store.db["media"].count == 0


def test_missing_data_dir_is_named(tmp_path):
    with pytest.raises(store_mod.StoreError, match="does not exist"):
        Store.open(tmp_path / "nowhere" / "kiosk.db", bytes(32))


def test_an_unopenable_file_is_not_blamed_on_the_key(tmp_path):
    (tmp_path / "kiosk.db").mkdir()  # something in the way of the file
    with pytest.raises(store_mod.StoreError) as ei:
        Store.open(tmp_path / "kiosk.db", bytes(32))
    assert not isinstance(ei.value, StoreKeyError)
    assert "cannot open" in str(ei.value)
