"""Keys: the master key is private and never overwritten, sub-keys differ, secrets are sealed."""

from __future__ import annotations

import os
import stat

import pytest

from device.keys import (
    KeyFileUnsafe,
    MasterKeyMissing,
    SecretBox,
    SecretMissing,
    SecretTampered,
    create_master_key,
    derive_key,
    load_master_key,
    shred_keys,
)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_master_key_is_private_and_loads(tmp_path):
    kd = tmp_path / "keys"
    key = create_master_key(kd)
    assert len(key) == 32
    assert mode(kd) == 0o700 and mode(kd / "master.key") == 0o600
    assert load_master_key(kd) == key


def test_master_key_is_never_overwritten(tmp_path):
    kd = tmp_path / "keys"
    key = create_master_key(kd)
    with pytest.raises(FileExistsError):
        create_master_key(kd)
    assert load_master_key(kd) == key


def test_missing_key_says_run_init(tmp_path):
    with pytest.raises(MasterKeyMissing, match="kiosk-provision init"):
        load_master_key(tmp_path / "keys")


def test_readable_key_is_refused(tmp_path):
    kd = tmp_path / "keys"
    create_master_key(kd)
    os.chmod(kd / "master.key", 0o644)
    with pytest.raises(KeyFileUnsafe, match="chmod 600"):
        load_master_key(kd)


def test_derived_keys_differ_per_purpose_and_are_stable():
    m = bytes(range(32))
    keys = {p: derive_key(m, p) for p in ("store", "media", "secrets", "audit")}
    assert len(set(keys.values())) == 4
    assert all(len(k) == 32 for k in keys.values())
    assert derive_key(m, "store") == keys["store"]
    assert derive_key(bytes(32), "store") != keys["store"]


def test_secret_box_round_trip_and_tamper(tmp_path):
    kd = tmp_path / "keys"
    m = create_master_key(kd)
    box = SecretBox(kd, m)
    box.seal("wecom_secret", b"s3cr3t-value")
    assert box.open("wecom_secret") == b"s3cr3t-value"
    raw = (kd / "secrets" / "wecom_secret").read_bytes()
    assert b"s3cr3t" not in raw
    assert mode(kd / "secrets" / "wecom_secret") == 0o600
    # Another device's key, a renamed file, an edited byte: all refused.
    with pytest.raises(SecretTampered):
        SecretBox(kd, bytes(32)).open("wecom_secret")
    (kd / "secrets" / "mqtt_password").write_bytes(raw)
    with pytest.raises(SecretTampered):
        box.open("mqtt_password")
    (kd / "secrets" / "wecom_secret").write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(SecretTampered):
        box.open("wecom_secret")
    with pytest.raises(SecretMissing):
        box.open("never_stored")
    with pytest.raises(ValueError):
        box.seal("../escape", b"x")


def test_shred_destroys_master_key_and_secrets(tmp_path):
    kd = tmp_path / "keys"
    m = create_master_key(kd)
    SecretBox(kd, m).seal("wecom_secret", b"x")
    destroyed = shred_keys(kd)
    assert {p.name for p in destroyed} == {"master.key", "wecom_secret"}
    with pytest.raises(MasterKeyMissing):
        load_master_key(kd)
    assert not (kd / "secrets" / "wecom_secret").exists()
