"""`kiosk-provision rotate-keys --master`: a new master key with the store, the audit chain
and the sealed secrets re-encrypted under it; the old key opens nothing afterwards."""

from __future__ import annotations

import time

import pytest

from device.keys import SecretBox, derive_key, load_master_key
from device.store import DB_FILE, Store, StoreKeyError
from tests.provisioning.conftest import Device, Runner, as_json
from tests.provisioning.test_cli import EXAMPLES, FAILED, OK, open_store


@pytest.fixture
def busy_device(kp: Runner, device: Device) -> Device:
    assert kp("bank", "import", str(EXAMPLES / "question_bank.json")).returncode == OK
    assert kp("wecom", "set-secret", input="app-secret-42\n").returncode == OK
    with open_store(device) as store, store.transaction():
        store.db["sessions"].insert({"id": "s-1", "job_id": "sales_rep", "candidate_ref": "e1",
                                     "state": "done", "language": "zh", "started": time.time(),
                                     "data": "{}"})
    return device


def test_master_rotation_re_encrypts_everything(kp: Runner, busy_device: Device) -> None:
    d = busy_device
    old = load_master_key(d.key_dir)
    out = as_json(kp("rotate-keys", "--master", "--json"))
    assert out["master"] is True and out["secrets_resealed"] == 1
    new = load_master_key(d.key_dir)
    assert new != old
    assert not (d.key_dir / "master.key.new").exists()
    with pytest.raises(StoreKeyError):
        Store.open(d.data_dir / DB_FILE, derive_key(old, "store"))
    with open_store(d) as store:
        assert store.db.execute("SELECT id FROM sessions").fetchone()[0] == "s-1"
        assert store.cache_get("questionbank", "current")[0] == 1
    assert SecretBox(d.key_dir, new).open("wecom_secret") == b"app-secret-42"
    proc = kp("audit", "verify")
    assert proc.returncode == OK, proc.stderr
    actions = [e["action"] for e in as_json(kp("audit", "show", "--json", "--last", "3"))]
    assert "keys.rotate" in actions
    assert kp("status").returncode == OK


def test_interrupted_rotation_is_finished_by_the_next_run(kp: Runner, busy_device: Device) -> None:
    d = busy_device
    old = load_master_key(d.key_dir)
    # A run that died right after re-encrypting the store: new key pending, store under it.
    pending = bytes(range(32))
    (d.key_dir / "master.key.new").write_bytes(pending)
    (d.key_dir / "master.key.new").chmod(0o600)
    with Store.open(d.data_dir / DB_FILE, derive_key(old, "store")) as store:
        store.rekey(derive_key(pending, "store"))
    assert kp("status").returncode == FAILED  # the kiosk would be locked out now
    out = as_json(kp("rotate-keys", "--master", "--json"))
    assert out["resumed"] is True
    assert load_master_key(d.key_dir) == pending
    assert kp("audit", "verify").returncode == OK
    assert SecretBox(d.key_dir, pending).open("wecom_secret") == b"app-secret-42"


def test_a_tampered_log_blocks_rotation(kp: Runner, busy_device: Device) -> None:
    # (Recordings no longer block it: tests/provisioning/test_rotate_master.py.)
    d = busy_device
    old = load_master_key(d.key_dir)
    with open_store(d) as store, store.transaction():
        store.db.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 1")
    proc = kp("rotate-keys", "--master")
    assert proc.returncode == FAILED and "does not verify" in proc.stderr
    assert load_master_key(d.key_dir) == old
    assert not (d.key_dir / "master.key.new").exists()
