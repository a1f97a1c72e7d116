"""`kiosk-provision pin set`: the hash lands in config kiosk.technician_pin_hash (comments
kept), the kiosk's PIN gate accepts exactly that PIN, the PIN is never printed, the change
is audited, and bad or mismatched PINs change nothing."""

from __future__ import annotations

import tomllib

from device.config import load_settings
from device.pin import check_new_pin, hash_pin, verify_pin
from kiosk.pin import PinGate
from tests.provisioning.conftest import Device, Runner, as_json
from tests.provisioning.test_cli import FAILED, OK

PIN = "480613"


def _pin_hash(device: Device) -> str | None:
    return tomllib.loads(device.config.read_text())["kiosk"].get("technician_pin_hash")


def test_pin_set_writes_only_the_hash_keeps_comments_and_is_audited(kp: Runner, device: Device) -> None:
    before = device.config.read_text()
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert _pin_hash(device) is None
    proc = kp("pin", "set", "--stdin", input=PIN + "\n")
    assert proc.returncode == OK, proc.stdout + proc.stderr
    assert PIN not in proc.stdout + proc.stderr
    text = device.config.read_text()
    assert PIN not in text
    h = _pin_hash(device)
    assert h and h.startswith("scrypt$") and verify_pin(h, PIN) and not verify_pin(h, "480614")
    # Every comment but the one on the key now set is still there.
    kept = [c for c in comments if "technician_pin_hash" not in c]
    assert all(c in text for c in kept)
    # The kiosk reads it through its ordinary config loading and opens for that PIN.
    settings = load_settings(device.config)
    assert settings.kiosk.technician_pin_hash == h

    class Kv(dict):
        def kv_get(self, k, default=None):
            return self.get(k, default)

        def kv_set(self, k, v):
            self[k] = v

    gate = PinGate(settings.kiosk.technician_pin_hash, Kv())
    assert gate.check(PIN) == (True, "ok") and gate.check("000000")[1] == "wrong"
    audit = as_json(kp("audit", "show", "--json"))
    entries = audit["entries"] if isinstance(audit, dict) else audit
    mine = [e for e in entries if e["action"] == "technician.pin_set"]
    assert mine and mine[-1]["detail"] == {"replaced": False}
    assert PIN not in str(entries)
    # Replacing it says so and the old PIN stops working.
    assert kp("pin", "set", "--stdin", input="731902\n").returncode == OK
    assert not verify_pin(_pin_hash(device), PIN) and verify_pin(_pin_hash(device), "731902")


def test_bad_pins_are_refused_and_nothing_changes(kp: Runner, device: Device) -> None:
    for bad in ("12345", "abcdef", "123456", "111111", "9876543", "1234567890123", ""):
        proc = kp("pin", "set", "--stdin", input=bad + "\n")
        assert proc.returncode == FAILED, bad
        assert "6-12 digits" in proc.stderr
        assert _pin_hash(device) is None
    zh = kp("pin", "set", "--stdin", input="12\n", lang="zh")
    assert zh.returncode == FAILED and "6-12 位数字" in zh.stderr


def test_without_a_terminal_it_asks_for_stdin_and_needs_an_initialised_device(kp: Runner, device_paths: Device) -> None:
    proc = kp("pin", "set")
    assert proc.returncode == 3  # no config yet: run init first
    assert "kiosk-provision init" in proc.stderr


def test_without_a_terminal_and_without_stdin_flag_it_says_what_to_do(kp: Runner, device: Device) -> None:
    proc = kp("pin", "set", input=PIN + "\n")
    assert proc.returncode == 2 and "--stdin" in proc.stderr
    assert _pin_hash(device) is None


def test_new_pin_rules_and_the_demo_pin_still_hashes() -> None:
    assert check_new_pin("480613") == "480613"
    assert verify_pin(hash_pin("2468"), "2468")  # the demo's 4-digit PIN keeps working
