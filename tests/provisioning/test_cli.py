"""The technician's path through `kiosk-provision`, run as the real console script against
a temp device: init -> status -> bank import (good and bad xlsx) -> audit verify (and
tampering caught) -> wipe (store unreadable afterwards), with the documented exit codes."""

from __future__ import annotations

import shutil
import stat
import time
from pathlib import Path

import openpyxl
import pytest
from cryptography import x509

from device.config import load_settings
from device.keys import create_master_key, derive_key, load_master_key
from device.store import DB_FILE, Store, StoreKeyError
from tests.provisioning.conftest import DEVICE_ID, Device, Runner, as_json

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

OK, FAILED, USAGE, NOT_INITIALISED, ABORTED, ALREADY_DONE = 0, 1, 2, 3, 4, 5


def open_store(device: Device) -> Store:
    key = derive_key(load_master_key(device.key_dir), "store")
    return Store.open(device.data_dir / DB_FILE, key)


# --- init ------------------------------------------------------------------------------------


def test_init_creates_config_keys_store_and_csr(device: Device) -> None:
    settings = load_settings(device.config)
    assert settings.device.id == DEVICE_ID
    assert Path(settings.paths.data_dir) == device.data_dir
    assert "# " in device.config.read_text()  # the commented default, not a bare dump
    assert stat.S_IMODE(device.key_dir.stat().st_mode) == 0o700
    for key in ("master.key", "client.key"):
        assert stat.S_IMODE((device.key_dir / key).stat().st_mode) == 0o600
    csr = x509.load_pem_x509_csr(device.csr.read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == DEVICE_ID
    # The private key is never in the CSR, the config or anywhere outside the key directory.
    key_pem = (device.key_dir / "client.key").read_bytes()
    assert b"PRIVATE KEY" in key_pem
    for p in device.root.rglob("*"):
        if p.is_file() and device.key_dir not in p.parents:
            assert key_pem not in p.read_bytes()
    with open_store(device) as store:
        actions = [r[0] for r in store.db.execute("SELECT action FROM audit ORDER BY seq")]
    assert actions == ["device.init"]


def test_init_twice_is_refused_and_changes_nothing(kp: Runner, device: Device) -> None:
    before = (device.key_dir / "master.key").read_bytes()
    proc = kp("init", "--data-dir", str(device.data_dir), real=True)
    assert proc.returncode == ALREADY_DONE
    assert "already initialised" in proc.stderr
    assert (device.key_dir / "master.key").read_bytes() == before


def test_init_with_a_different_data_dir_than_the_config_is_a_usage_error(kp: Runner, device: Device) -> None:
    proc = kp("init", "--data-dir", str(device.root / "elsewhere"))
    assert proc.returncode == USAGE
    assert "elsewhere" in proc.stderr


def test_invalid_device_id_is_a_usage_error(kp: Runner, device_paths: Device) -> None:
    proc = kp("init", "--data-dir", str(device_paths.data_dir), "--device-id", "bad id/with slash")
    assert proc.returncode == USAGE
    assert not device_paths.config.exists()


def test_commands_before_init_say_so(kp: Runner) -> None:
    for args in (["status"], ["bank", "list"], ["audit", "verify"], ["selftest", "--headless"]):
        proc = kp(*args)
        assert proc.returncode == NOT_INITIALISED, (args, proc.stderr)
        assert "kiosk-provision init" in proc.stderr


def test_config_without_keys_is_not_initialised(kp: Runner, device: Device) -> None:
    (device.key_dir / "master.key").unlink()
    proc = kp("status")
    assert proc.returncode == NOT_INITIALISED
    assert "no master key" in proc.stderr


def test_broken_config_names_file_key_and_expectation(kp: Runner, device: Device) -> None:
    text = device.config.read_text().replace("max_retakes = 1", 'max_retakes = "many"')
    device.config.write_text(text)
    proc = kp("status", real=True)
    assert proc.returncode == USAGE
    assert "config.toml" in proc.stderr and "session.max_retakes" in proc.stderr
    assert "expected an integer" in proc.stderr


def test_bad_arguments_are_usage_errors(kp: Runner) -> None:
    assert kp("frobnicate").returncode == USAGE
    assert kp("bank").returncode == USAGE


def test_version_names_package_version(kp: Runner) -> None:
    proc = kp("--version", real=True)
    assert proc.returncode == OK
    assert proc.stdout.startswith("kiosk-provision 0.")


# --- status -----------------------------------------------------------------------------------


def test_status_reports_outbox_backlog_last_sync_and_last_interview(kp: Runner, device: Device) -> None:
    now = time.time()
    with open_store(device) as store:
        with store.transaction():
            store.db["sessions"].insert({"id": "s-1", "job_id": "sales_rep", "candidate_ref": "r-1",
                                         "state": "done", "language": "zh", "started": now - 900,
                                         "ended": now - 600, "end_reason": "completed", "data": "{}"})
        old = store.enqueue("result", "kiosk/v1/default/x/up/result", {"n": 1}, session_id="s-1")
        store.enqueue("event", "kiosk/v1/default/x/up/event", {"n": 2}, session_id="s-1")
        done = store.enqueue("heartbeat", "kiosk/v1/default/x/up/heartbeat", {"n": 3})
        store.mark_delivered(done, now - 120)
        with store.transaction():
            store.db.execute("UPDATE outbox SET created = ? WHERE id = ?", (now - 3600, old))
    info = as_json(kp("status", "--json"))
    assert info["device"]["id"] == DEVICE_ID
    assert info["outbox"]["depth"] == 2
    assert info["outbox"]["by_kind"] == {"result": 1, "event": 1}
    assert 3500 < info["outbox"]["oldest_undelivered_age_s"] < 3700
    assert info["last_delivered"] == pytest.approx(now - 120, abs=5)
    assert info["last_interview"] == pytest.approx(now - 900, abs=5)
    assert info["sessions"] == 1 and info["unfinished_sessions"] == 0
    assert info["enrolled"] is False
    assert info["disk"]["free_bytes"] > 0
    text = kp("status").stdout
    assert "2 undelivered" in text and "not enrolled" in text


def test_status_speaks_chinese_by_default_and_english_on_request(kp: Runner, device: Device) -> None:
    zh = kp("status", lang="", env={"LANG": "C.UTF-8", "LC_ALL": "", "LANGUAGE": ""}, real=True)
    assert zh.returncode == OK and "终端状态" in zh.stdout
    en = kp("status", lang="", env={"LANG": "en_US.UTF-8", "LC_ALL": "", "LANGUAGE": ""})
    assert "Terminal status" in en.stdout
    assert "Terminal status" in kp("status", "--lang", "en", lang="").stdout


# --- question banks ---------------------------------------------------------------------------


def _bank_copy(tmp: Path) -> Path:
    """The example workbook and the media it refers to, in a folder the test may change."""
    shutil.copy2(EXAMPLES / "question_bank.xlsx", tmp / "question_bank.xlsx")
    if (EXAMPLES / "media").is_dir():
        shutil.copytree(EXAMPLES / "media", tmp / "media")
    return tmp / "question_bank.xlsx"


def test_bank_import_good_then_bad_xlsx_keeps_the_good_one(kp: Runner, device: Device, tmp_path: Path) -> None:
    proc = kp("bank", "import", str(EXAMPLES / "question_bank.xlsx"))
    assert proc.returncode == OK, proc.stderr
    listed = as_json(kp("bank", "list", "--json"))
    assert listed["installed"] and listed["version"] == 1
    assert {j["id"] for j in listed["jobs"]} >= {"sales_rep", "software_engineer", "line_operator"}

    bad_dir = tmp_path / "usb"
    bad_dir.mkdir()
    bad = _bank_copy(bad_dir)
    wb = openpyxl.load_workbook(bad)
    wb["bank"]["B2"].value = 2 if str(wb["bank"]["A2"].value).startswith("version") else wb["bank"]["B2"].value
    wb["jobs"]["F3"].value = "abc"  # pass_threshold of the second job
    wb.save(bad)
    proc = kp("bank", "import", str(bad))
    assert proc.returncode == FAILED
    out = proc.stderr
    assert "jobs" in out and " 3 " in out and "F" in out  # sheet, row, column named
    assert "nothing was changed" in out
    assert as_json(kp("bank", "list", "--json"))["version"] == 1
    # The rejection is on record too.
    with open_store(device) as store:
        actions = [r[0] for r in store.db.execute("SELECT action FROM audit ORDER BY seq")]
    assert actions[-2:] == ["bank.import", "bank.import_rejected"]


def test_bank_import_copies_prompt_media_off_the_stick(kp: Runner, device: Device, tmp_path: Path) -> None:
    """The example bank's operator job shows an image (examples/media/safety_sign.png, drawn
    by examples/make_media.py and committed); after import it is in the data directory where
    the kiosk looks, and stays there once the USB stick is pulled."""
    from device.questions import bank_media_root, current_bank, prompt_media_path

    usb = tmp_path / "usb"
    usb.mkdir()
    bank_file = _bank_copy(usb)
    proc = kp("bank", "import", str(bank_file))
    assert proc.returncode == OK, proc.stderr
    shutil.rmtree(usb)  # the stick is gone
    with open_store(device) as store:
        bank = current_bank(store)
    assert bank is not None
    with_media = [q for q in bank.questions if q.media.kind != "none"]
    assert [q.id for q in with_media] == ["op-02"]
    path = prompt_media_path(bank_media_root(device.data_dir), with_media[0])
    assert path is not None and path.is_relative_to(device.data_dir)
    assert path.read_bytes() == (EXAMPLES / "media" / "safety_sign.png").read_bytes()


def test_bank_import_without_its_media_is_refused_whole(kp: Runner, device: Device, tmp_path: Path) -> None:
    shutil.copy2(EXAMPLES / "question_bank.xlsx", tmp_path / "question_bank.xlsx")  # no media/ beside it
    proc = kp("bank", "import", str(tmp_path / "question_bank.xlsx"))
    assert proc.returncode == FAILED
    assert "media/safety_sign.png" in proc.stderr
    assert kp("bank", "list").returncode == FAILED  # nothing installed
    assert not list((device.data_dir / "bank-media").rglob("*"))


def test_bank_import_errors_as_json_locate_each_problem(kp: Runner, device: Device, tmp_path: Path) -> None:
    bad = _bank_copy(tmp_path)
    wb = openpyxl.load_workbook(bad)
    wb["jobs"]["F3"].value = "abc"
    wb.save(bad)
    out = as_json(kp("bank", "import", str(bad), "--json"))
    assert out["ok"] is False
    assert any(e["sheet"] == "jobs" and e["row"] == 3 and "F" in (e["column"] or "") for e in out["errors"])


def test_bank_list_without_a_bank_fails_for_scripts(kp: Runner, device: Device) -> None:
    proc = kp("bank", "list")
    assert proc.returncode == FAILED
    assert "no question bank" in proc.stderr


def test_bank_import_of_a_missing_file_is_a_usage_error(kp: Runner, device: Device) -> None:
    assert kp("bank", "import", "/nonexistent/bank.xlsx").returncode == USAGE


# --- audit ----------------------------------------------------------------------------------


def test_audit_verify_passes_then_catches_an_edited_entry(kp: Runner, device: Device) -> None:
    assert kp("bank", "import", str(EXAMPLES / "question_bank.json")).returncode == OK
    proc = kp("audit", "verify")
    assert proc.returncode == OK and "intact" in proc.stdout
    with open_store(device) as store, store.transaction():
        store.db.execute("UPDATE audit SET detail = ? WHERE seq = 2", ('{"file":"other.json"}',))
    proc = kp("audit", "verify")
    assert proc.returncode == FAILED
    assert "entry 2" in proc.stderr
    report = as_json(kp("audit", "verify", "--json"))
    assert report["ok"] is False and report["first_bad_seq"] == 2


def test_audit_verify_catches_a_removed_entry(kp: Runner, device: Device) -> None:
    assert kp("status").returncode == OK
    assert kp("audit", "verify").returncode == OK  # entries 1 (init) and 2 (this verify)
    assert kp("audit", "verify").returncode == OK
    with open_store(device) as store, store.transaction():
        store.db.execute("DELETE FROM audit WHERE seq = 2")
    assert kp("audit", "verify").returncode == FAILED


def test_audit_show_lists_technician_actions(kp: Runner, device: Device) -> None:
    kp("bank", "import", str(EXAMPLES / "question_bank.json"))
    entries = as_json(kp("audit", "show", "--json"))
    assert [e["action"] for e in entries] == ["device.init", "bank.import"]
    assert all(e["actor"].startswith("technician:") for e in entries)


# --- wipe -------------------------------------------------------------------------------------


def _interview_with_transcript(device: Device, transcript: str) -> None:
    with open_store(device) as store, store.transaction():
        store.db["sessions"].insert({"id": "s-w", "job_id": "sales_rep", "candidate_ref": "r-w",
                                     "state": "done", "language": "zh", "started": time.time(),
                                     "data": "{}"})
        store.db["answers"].insert({"id": "a-w", "session_id": "s-w", "question_id": "q1", "idx": 0,
                                    "attempt": 1, "transcript": transcript})


def test_wipe_needs_two_confirmations(kp: Runner, device: Device) -> None:
    proc = kp("wipe")  # no terminal, no --yes
    assert proc.returncode == ABORTED
    assert kp("wipe", "--yes").returncode == ABORTED
    assert (device.key_dir / "master.key").exists()
    assert kp("status").returncode == OK


def test_wipe_destroys_the_keys_and_the_store_becomes_unreadable(kp: Runner, device: Device) -> None:
    secret_text = "我在上一家公司把客户满意度提高到九十八分"
    _interview_with_transcript(device, secret_text)
    proc = kp("wipe", "--yes", "--yes", "--keep-data", "--json")
    assert proc.returncode == OK, proc.stderr
    receipt = as_json(proc)
    assert receipt["sessions_destroyed"] == 1 and receipt["key_files_destroyed"] >= 2
    assert not (device.key_dir / "master.key").exists()
    assert not (device.key_dir / "client.key").exists()
    db = device.data_dir / DB_FILE
    assert db.exists()  # --keep-data: the ciphertext stays, but nothing can read it
    with pytest.raises(StoreKeyError):
        Store.open(db, derive_key(create_master_key(device.root / "new-keys"), "store"))
    for p in device.data_dir.rglob("*"):
        if p.is_file():
            assert secret_text.encode() not in p.read_bytes()
    assert kp("status").returncode == NOT_INITIALISED
    # The wipe was audited before the keys went, and a receipt without personal data stays.
    receipt_file = device.data_dir / "wipe-receipt.json"
    assert DEVICE_ID in receipt_file.read_text()
    assert receipt["audit_last_seq"] >= 2
    # A fresh init works again and moves the orphaned store aside.
    assert kp("init").returncode == OK
    assert list(device.data_dir.glob(f"{DB_FILE}.orphaned-*"))
    assert kp("status").returncode == OK


def test_wipe_removes_the_encrypted_files_by_default(kp: Runner, device: Device) -> None:
    _interview_with_transcript(device, "anything")
    assert kp("wipe", "--yes", "--yes").returncode == OK
    assert not (device.data_dir / DB_FILE).exists()
    assert not (device.data_dir / "tls").exists()
    assert kp("wipe", "--yes", "--yes").returncode == NOT_INITIALISED


# --- retention ----------------------------------------------------------------------------------


def test_retention_run_deletes_delivered_sessions_past_retention_only(kp: Runner, device: Device) -> None:
    now = time.time()
    with open_store(device) as store:
        with store.transaction():
            for sid, ended in (("old", now - 40 * 86400), ("new", now - 3600)):
                store.db["sessions"].insert({"id": sid, "job_id": "j", "candidate_ref": "r", "state": "done",
                                             "language": "zh", "started": ended - 600, "ended": ended,
                                             "end_reason": "completed", "data": "{}"})
        for sid, delivered in (("old", now - 35 * 86400), ("new", now - 1800)):
            row = store.enqueue("result", "t", {"s": sid}, session_id=sid)
            store.mark_delivered(row, delivered)
    out = as_json(kp("retention", "run", "--json"))
    assert out["sessions"] == 1
    with open_store(device) as store:
        left = [r[0] for r in store.db.execute("SELECT id FROM sessions")]
        actions = [r[0] for r in store.db.execute("SELECT action FROM audit ORDER BY seq")]
    assert left == ["new"]
    assert actions[-1] == "retention.purge"


def test_retention_keeps_sessions_hr_has_not_receipted(kp: Runner, device: Device) -> None:
    """Once HR's connector sends receipts, a broker's PUBACK alone no longer lets retention
    delete an interview: the broker may have lost it in a crash (sync/outbox.py receipts)."""
    from sync.outbox import apply_receipts

    now = time.time()
    with open_store(device) as store:
        with store.transaction():
            for sid in ("receipted", "only-acked"):
                store.db["sessions"].insert({"id": sid, "job_id": "j", "candidate_ref": "r", "state": "done",
                                             "language": "zh", "started": now - 40 * 86400, "ended": now - 40 * 86400,
                                             "end_reason": "completed", "data": "{}"})
        rows = {sid: store.enqueue("result", "t", {"s": sid}, session_id=sid) for sid in ("receipted", "only-acked")}
        for row in rows.values():
            store.mark_delivered(row, now - 35 * 86400)
        apply_receipts(store, [rows["receipted"]], now - 35 * 86400)
    out = as_json(kp("retention", "run", "--json"))
    assert out["sessions"] == 1
    with open_store(device) as store:
        left = [r[0] for r in store.db.execute("SELECT id FROM sessions")]
    assert left == ["only-acked"]
    status = as_json(kp("status", "--json"))
    assert status["receipts"]["unreceipted"] == 1 and status["receipts"]["required"]


def test_files_root_creates_are_handed_to_the_service_user(kp: Runner, device_paths: Device) -> None:
    """The package makes the data directory the kiosk user's; the technician runs the CLI
    with sudo. Whatever root creates there must end up the kiosk user's, or the services
    would be locked out of their own keys and store."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to create files owned by another user")
    service_uid = 4242
    device_paths.data_dir.mkdir(parents=True)
    os.chown(device_paths.data_dir, service_uid, service_uid)
    assert kp("init", "--data-dir", str(device_paths.data_dir)).returncode == OK
    assert kp("bank", "import", str(EXAMPLES / "question_bank.json")).returncode == OK
    owners = {p.relative_to(device_paths.data_dir): p.lstat().st_uid for p in device_paths.data_dir.rglob("*")}
    assert owners and all(uid == service_uid for uid in owners.values()), owners
    assert stat.S_IMODE((device_paths.key_dir / "master.key").stat().st_mode) == 0o600


def test_a_systemd_unit_is_audited_as_the_system(kp: Runner, device: Device) -> None:
    # What interview-retention.service does: systemd sets INVOCATION_ID, no terminal.
    assert kp("retention", "run", env={"INVOCATION_ID": "0123456789abcdef", "SUDO_USER": ""}).returncode == OK
    with open_store(device) as store:
        actor, action = store.db.execute("SELECT actor, action FROM audit ORDER BY seq DESC").fetchone()
    assert (actor, action) == ("system", "retention.purge")
