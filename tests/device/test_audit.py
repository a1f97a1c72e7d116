"""The audit log: a removed, edited, reordered or cut-off entry is detected."""

from __future__ import annotations

import pytest

from device.audit import AuditLog
from device.keys import derive_key, load_master_key


@pytest.fixture
def audit(store, settings) -> AuditLog:
    log = AuditLog(store, derive_key(load_master_key(settings.paths.key_dir), "audit"))
    for i in range(6):
        log.append("technician:t-07", "bank.import", {"bank_version": i})
    return log


def test_untouched_log_verifies(audit):
    report = audit.verify()
    assert report.ok and report.count == 6 and report.first_bad_seq is None
    assert [e.detail["bank_version"] for e in audit.entries()] == list(range(6))
    assert [e.seq for e in audit.entries(since_seq=4)] == [5, 6]


def test_empty_log_verifies(store):
    assert AuditLog(store, bytes(32)).verify().ok


def test_edited_entry_is_detected(audit, store):
    store.db.execute("UPDATE audit SET detail = '{\"bank_version\":99}' WHERE seq = 3")
    r = audit.verify()
    assert not r.ok and r.first_bad_seq == 3 and "altered" in r.reason


def test_edited_actor_or_time_is_detected(audit, store):
    store.db.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 2")
    assert audit.verify().first_bad_seq == 2
    store.db.execute("UPDATE audit SET actor = 'technician:t-07', ts = ts + 1 WHERE seq = 2")
    assert audit.verify().first_bad_seq == 2


def test_removed_entry_is_detected(audit, store):
    store.db.execute("DELETE FROM audit WHERE seq = 4")
    r = audit.verify()
    assert not r.ok and r.first_bad_seq == 4 and "missing" in r.reason


def test_removed_and_renumbered_entries_are_detected(audit, store):
    store.db.execute("DELETE FROM audit WHERE seq = 4")
    store.db.execute("UPDATE audit SET seq = seq - 1 WHERE seq > 4")
    r = audit.verify()
    assert not r.ok and r.first_bad_seq == 4


def test_reordered_entries_are_detected(audit, store):
    with store.transaction():
        store.db.execute("UPDATE audit SET seq = 100 WHERE seq = 2")
        store.db.execute("UPDATE audit SET seq = 2 WHERE seq = 3")
        store.db.execute("UPDATE audit SET seq = 3 WHERE seq = 100")
    r = audit.verify()
    assert not r.ok and r.first_bad_seq == 2


def test_cut_off_tail_is_detected(audit, store):
    store.db.execute("DELETE FROM audit WHERE seq >= 5")
    r = audit.verify()
    assert not r.ok and r.first_bad_seq == 5


def test_forged_entry_without_the_key_is_detected(audit, store):
    """Someone who can write the table but lacks the HMAC key cannot extend the chain."""
    forger = AuditLog(store, b"f" * 32)
    forger.append("intruder", "export", {"sessions": "all"})
    r = audit.verify()
    assert not r.ok and r.first_bad_seq == 7


def test_append_after_reopen_continues_the_chain(store, settings, audit):
    again = AuditLog(store, derive_key(load_master_key(settings.paths.key_dir), "audit"))
    assert again.append("technician:t-07", "wipe.requested") == 7
    assert audit.verify().ok
