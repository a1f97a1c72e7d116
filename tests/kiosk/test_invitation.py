"""An invitation QR code held up to the terminal's camera at the idle screen signs the
candidate in with no network at all, through the real kiosk, camera and store."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.signing import public_key_pem
from sync.wecom.invite import make_invitation
from tests.device.test_signin import phone_frame, write_video

DEVICE = "kiosk-test-01"          # make_settings' device id
ENTRY = "R-20261123-001"          # the example roster's English candidate, booked here


def test_invitation_held_up_to_the_camera_signs_in(make_kiosk, store, tmp_path):
    key = Ed25519PrivateKey.generate()
    now = time.time()
    text = make_invitation(key, ENTRY, not_before=now - 600, not_after=now + 3600, device=DEVICE)
    video = write_video(tmp_path / "invitation.avi", [phone_frame(text)] * 20)
    k = make_kiosk(video=str(video))
    assert k.settings.device.id == DEVICE
    # The HR signing key the terminal trusts (normally cached from the enrolment bundle).
    store.cache_put("pubkey", "downlink", 1, {"pem": public_key_pem(key.public_key()).decode()})
    k.wait_state("welcome", timeout=30)
    row = store.db.execute(
        "SELECT method, status FROM verifications ORDER BY created DESC LIMIT 1").fetchone()
    assert tuple(row) == ("invitation", "ok")


def test_forged_invitation_at_the_camera_is_refused_once(make_kiosk, store, tmp_path):
    trusted, forger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    now = time.time()
    text = make_invitation(forger, ENTRY, not_before=now - 600, not_after=now + 3600, device=DEVICE)
    video = write_video(tmp_path / "forged.avi", [phone_frame(text)] * 20)
    k = make_kiosk(video=str(video))
    store.cache_put("pubkey", "downlink", 1, {"pem": public_key_pem(trusted.public_key()).decode()})

    def refusals() -> list:
        return store.db.execute("SELECT method, status, reason FROM verifications").fetchall()

    k.qtbot.waitUntil(lambda: len(refusals()) >= 1, timeout=30000)
    time.sleep(3)  # the card stays in view: it is answered once, not once per frame
    assert [tuple(r) for r in refusals()] == [("invitation", "refused", "forged_invitation")]
    assert k.state != "welcome"
