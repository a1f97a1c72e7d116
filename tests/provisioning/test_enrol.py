"""`kiosk-provision enrol`: bundles made by the HR side's own code (sync.enrolment) for the
device's real CSR; forged, foreign and mismatched bundles refused; secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

from device.config import load_settings
from device.keys import SecretBox, derive_key, load_master_key
from device.store import DB_FILE, Store
from hardware.synthetic import held_up_code
from sync import pki
from sync.enrolment import bundle_qr_text, write_bundle
from tests.provisioning.conftest import DEVICE_ID, TENANT, WECOM, Device, Runner, as_json
from tests.provisioning.test_cli import FAILED, OK, USAGE, open_store


def _write(tmp: Path, bundle: dict, name: str = "bundle.json") -> Path:
    p = tmp / name
    p.write_text(json.dumps(bundle, ensure_ascii=False))
    return p


def test_enrol_from_file_configures_sync_and_wecom_and_seals_the_secret(
        kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    bundle = bundle_for(device.csr, https_base_url="https://127.0.0.1:9443/kiosk/v1")
    proc = kp("enrol", str(_write(tmp_path, bundle)))
    assert proc.returncode == OK, proc.stderr
    settings = load_settings(device.config)
    assert settings.device.tenant == TENANT and settings.device.site_name == "上海总部 前台"
    mq = settings.sync.mqtt
    assert (mq.host, mq.port, mq.tls) == ("127.0.0.1", 8883, True)
    assert mq.key_file == device.key_dir / "client.key"
    assert pki.public_key_matches(Path(mq.cert_file).read_bytes(), Path(mq.key_file))
    pki.verify_issued_by(Path(mq.cert_file).read_bytes(), Path(mq.ca_file).read_bytes())
    assert settings.sync.https.base_url == "https://127.0.0.1:9443/kiosk/v1"
    assert settings.wecom.corp_id == WECOM["corp_id"] and settings.wecom.agent_id == WECOM["agent_id"]
    assert settings.wecom.hr_oncall == ["zhangwei"]
    # The secret is sealed in the key directory and nowhere else in the clear.
    box = SecretBox(device.key_dir, load_master_key(device.key_dir))
    assert box.open("wecom_secret").decode() == WECOM["secret"]
    secret = WECOM["secret"].encode()
    for p in device.data_dir.rglob("*"):
        if p.is_file():
            assert secret not in p.read_bytes(), p
    assert secret not in device.config.read_bytes()
    assert WECOM["secret"] not in proc.stdout + proc.stderr
    assert "delete it" in proc.stderr  # the bundle file itself holds the secret
    # The HR downlink key is where the kiosk and the sync daemon look for it.
    with open_store(device) as store:
        version, payload = store.cache_get("pubkey", "downlink")
        actions = [r[0] for r in store.db.execute("SELECT action FROM audit ORDER BY seq")]
        details = [r[0] for r in store.db.execute("SELECT detail FROM audit")]
    assert version == bundle["issued"]
    assert payload["pem"] == bundle["downlink_public_key_pem"]
    assert actions[-1] == "device.enrol"
    assert all(WECOM["secret"] not in d for d in details)
    status = as_json(kp("status", "--json"))
    assert status["enrolled"] and status["wecom"]["secret_stored"] is True
    assert status["certificate"]["subject"] == DEVICE_ID and status["certificate"]["days_left"] > 800


def test_enrol_keeps_the_config_comments(kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    before = [line for line in device.config.read_text().splitlines() if line.startswith("# ")]
    assert kp("enrol", str(_write(tmp_path, bundle_for(device.csr)))).returncode == OK
    after = device.config.read_text().splitlines()
    assert all(line in after for line in before)


def test_enrol_from_qr_text(kp: Runner, device: Device, bundle_for) -> None:
    text = bundle_qr_text(bundle_for(device.csr, wecom=None))
    assert text.startswith("IKENROL1:")
    proc = kp("enrol", text)
    assert proc.returncode == OK, proc.stderr
    settings = load_settings(device.config)
    assert settings.sync.mqtt.host == "127.0.0.1" and settings.wecom is None


def test_enrol_from_stdin(kp: Runner, device: Device, bundle_for) -> None:
    proc = kp("enrol", "-", input=json.dumps(bundle_for(device.csr)))
    assert proc.returncode == OK, proc.stderr


def test_altered_bundle_is_refused_and_nothing_changes(kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    config_before = device.config.read_text()
    bundle = bundle_for(device.csr)
    bundle["mqtt"]["host"] = "evil.example.com"  # signature no longer matches
    proc = kp("enrol", str(_write(tmp_path, bundle)))
    assert proc.returncode == FAILED
    assert "signature" in proc.stderr
    assert device.config.read_text() == config_before
    assert not SecretBox(device.key_dir, load_master_key(device.key_dir)).exists("wecom_secret")


def test_bundle_for_another_device_is_refused(kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    other_key = tmp_path / "other.key"
    csr = tmp_path / "other.csr"
    csr.write_bytes(pki.make_csr(other_key, "kiosk-other-02"))
    proc = kp("enrol", str(_write(tmp_path, bundle_for(csr, device_id="kiosk-other-02"))))
    assert proc.returncode == FAILED
    assert "kiosk-other-02" in proc.stderr and DEVICE_ID in proc.stderr


def test_certificate_for_another_key_is_refused(kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    # Same device id, but the CSR came from a different key (e.g. an old CSR after re-init).
    csr = tmp_path / "stale.csr"
    csr.write_bytes(pki.make_csr(tmp_path / "stale.key", DEVICE_ID))
    proc = kp("enrol", str(_write(tmp_path, bundle_for(csr))))
    assert proc.returncode == FAILED
    assert "not for this terminal's key" in proc.stderr


def test_garbage_is_refused_with_a_clear_reason(kp: Runner, device: Device, tmp_path: Path) -> None:
    bad = tmp_path / "bundle.json"
    bad.write_text('{"type": "interview-kiosk-enrolment", "version": 1, "issued": "yesterday"}')
    proc = kp("enrol", str(bad))
    assert proc.returncode == FAILED and "issued" in proc.stderr
    proc = kp("enrol", "IKENROL1:not-base64-zlib!!")
    assert proc.returncode == FAILED and "damaged" in proc.stderr
    assert kp("enrol", str(tmp_path / "missing.json")).returncode == USAGE
    with open_store(device) as store:
        rejected = store.db.execute("SELECT count(*) FROM audit WHERE action = 'device.enrol_rejected'").fetchone()[0]
    assert rejected == 2


def test_rotate_keys_then_enrol_the_new_certificate(kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    assert kp("enrol", str(_write(tmp_path, bundle_for(device.csr), "first.json"))).returncode == OK
    old_key = (device.key_dir / "client.key").read_bytes()
    old_csr = device.csr.read_bytes()
    assert kp("rotate-keys").returncode == OK
    assert (device.key_dir / "client.key.new").exists()
    assert device.csr.read_bytes() != old_csr
    assert (device.key_dir / "client.key").read_bytes() == old_key  # still in service
    proc = kp("enrol", str(_write(tmp_path, bundle_for(device.csr), "second.json")))
    assert proc.returncode == OK, proc.stderr
    assert not (device.key_dir / "client.key.new").exists()
    new_key = (device.key_dir / "client.key").read_bytes()
    assert new_key != old_key
    settings = load_settings(device.config)
    assert pki.public_key_matches(Path(settings.sync.mqtt.cert_file).read_bytes(), settings.sync.mqtt.key_file)


def test_wecom_set_secret_reads_stdin_and_never_echoes(kp: Runner, device: Device) -> None:
    proc = kp("wecom", "set-secret", input="s3cr3t-value-xyz\n")
    assert proc.returncode == OK
    assert "s3cr3t-value-xyz" not in proc.stdout + proc.stderr
    key = load_master_key(device.key_dir)
    assert SecretBox(device.key_dir, key).open("wecom_secret") == b"s3cr3t-value-xyz"
    with Store.open(device.data_dir / DB_FILE, derive_key(key, "store")) as store:
        assert store.db.execute("SELECT action FROM audit ORDER BY seq DESC").fetchone()[0] == "wecom.set_secret"


def test_enrol_by_showing_the_qr_code_to_the_camera(kp: Runner, device: Device, bundle_for, tmp_path: Path) -> None:
    """`--scan`: the bundle's QR code (as `interview-hr enrol-device --qr` draws it) held up
    to the terminal's camera, here a video file configured as the camera."""
    import cv2

    from provisioning.configfile import update_config

    png = tmp_path / "bundle.png"
    write_bundle(bundle_for(device.csr), tmp_path / "bundle.json", qr_png=png)
    video = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    for i in range(20):  # the technician's hand moves: every frame is a little different
        writer.write(held_up_code(png, frame_h=720, px_per_module=4.0, seed=i))
    writer.release()
    update_config(device.config, {"kiosk.camera": {"source": str(video)}})
    proc = kp("enrol", "--scan", "--scan-seconds", "60")
    assert proc.returncode == OK, proc.stderr
    assert load_settings(device.config).sync.mqtt.host == "127.0.0.1"


def test_scan_says_what_is_wrong_instead_of_only_timing_out(kp: Runner, device: Device, tmp_path: Path) -> None:
    """The technician on the ladder learns why: a candidate's invitation held up by mistake is
    named, a reminder comes while nothing reads, and a camera that cannot open is reported."""
    import cv2
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provisioning.configfile import update_config
    from provisioning.enrol import SCAN_REMIND_S
    from sync.wecom.invite import make_invitation, render_png

    png = render_png(make_invitation(Ed25519PrivateKey.generate(), "E-1", not_before=0, not_after=1,
                                     site="lobby"), tmp_path / "invite.png")
    video = tmp_path / "invite.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1280, 720))
    for i in range(10):
        writer.write(held_up_code(png, frame_h=720, px_per_module=6.0, seed=i))
    writer.release()
    update_config(device.config, {"kiosk.camera": {"source": str(video)}})
    proc = kp("enrol", "--scan", "--scan-seconds", str(SCAN_REMIND_S + 2))
    out = proc.stdout + proc.stderr
    assert proc.returncode == FAILED
    assert out.count("invitation QR code, not the enrolment code") == 1  # said once, not per frame
    assert "no code read yet" in out and "no enrolment QR code seen" in out

    update_config(device.config, {"kiosk.camera": {"source": str(tmp_path / "no-such-camera.avi")}})
    proc = kp("enrol", "--scan", "--scan-seconds", "5")
    assert proc.returncode == FAILED
    assert "camera could not be opened" in proc.stdout + proc.stderr and "no-such-camera.avi" in proc.stdout + proc.stderr


def test_a_real_bundle_qr_reads_in_every_camera_frame(device: Device, bundle_for, tmp_path: Path) -> None:
    """The reader, not luck: a full bundle (site CA, signed certificate, WeCom secret) is a
    version-30-odd QR code. Shown at 3.5-6 pixels per module to a 720p or 1080p camera, tilted,
    blurred and noisy, every single frame must decode (OpenCV's detector read 0 of 8 of these)."""
    from device.qr import read_qr
    from provisioning.enrol import QR_PREFIX

    png = tmp_path / "bundle.png"
    bundle = bundle_for(device.csr, https_base_url="https://127.0.0.1:9443/kiosk/v1")
    write_bundle(bundle, tmp_path / "bundle.json", qr_png=png)
    want = bundle_qr_text(bundle)
    misses = []
    for frame_h, scales in ((720, (3.5, 4.0, 4.8)), (1080, (3.5, 4.8, 6.0, 7.0))):
        for ppm in scales:
            for seed in range(3):
                if read_qr(held_up_code(png, frame_h=frame_h, px_per_module=ppm, seed=seed), QR_PREFIX) != want:
                    misses.append((frame_h, ppm, seed))
    assert not misses, f"unreadable camera frames (height, px/module, seed): {misses}"


def test_every_enrolment_qr_png_is_readable_by_the_terminal_camera_reader(tmp_path: Path) -> None:
    """`enrol-device --qr` must draw codes the terminal's own reader (device.qr) decodes,
    whatever bytes the certificates happen to be."""
    import base64
    import random

    import cv2

    from device.qr import read_qr

    rng = random.Random(20261123)
    for i in range(12):
        # Bundle-sized payloads that zlib cannot shrink, like the certificates in a real one.
        blob = base64.b64encode(rng.randbytes(900)).decode()
        bundle = {"format": "interview-kiosk-enrolment/1", "n": i, "blob": blob}
        png = tmp_path / f"bundle-{i}.png"
        write_bundle(bundle, tmp_path / f"bundle-{i}.json", qr_png=png)
        assert read_qr(cv2.imread(str(png))) == bundle_qr_text(bundle), f"bundle {i} unreadable"
