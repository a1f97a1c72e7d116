"""`kiosk-provision enrol` and HR's clip key: the bundle made by `interview-hr enrol-device`
carries the X25519 public key the sync daemon seals answer clips for; the device caches it,
and refuses a bundle whose clip key is not an X25519 key without changing anything."""

from __future__ import annotations

import json
from pathlib import Path

from device.mediacrypt import generate_clip_key, key_id, load_clip_public_key
from sync.outbox import hr_clip_public_key
from tests.provisioning.conftest import Device, Runner
from tests.provisioning.test_cli import FAILED, OK, open_store


def test_enrolment_caches_the_hr_clip_key(kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    pub = generate_clip_key(tmp_path / "clips.key", tmp_path / "clips.pub")
    bundle = bundle_for(device.csr, https_base_url="https://127.0.0.1:9443/kiosk/v1",
                        clip_public_key_pem=pub)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False))
    proc = kp("enrol", str(path))
    assert proc.returncode == OK, proc.stderr
    with open_store(device) as store:
        version, payload = store.cache_get("pubkey", "clips")
        cached = hr_clip_public_key(store)
    assert version == bundle["issued"] and payload["pem"] == pub
    assert key_id(cached) == key_id(load_clip_public_key(pub))


def test_a_bundle_with_an_unusable_clip_key_changes_nothing(kp: Runner, device: Device, bundle_for,
                                                             tmp_path: Path) -> None:
    before = device.config.read_text(encoding="utf-8")
    # An Ed25519 key where the X25519 clip key belongs (validly signed by HR's own code).
    bundle = bundle_for(device.csr)
    bundle = bundle_for(device.csr, clip_public_key_pem=bundle["downlink_public_key_pem"])
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle, ensure_ascii=False))
    proc = kp("enrol", str(path))
    assert proc.returncode == FAILED
    assert "clip key" in proc.stderr
    assert device.config.read_text(encoding="utf-8") == before
    with open_store(device) as store:
        assert store.cache_get("pubkey", "clips") is None
