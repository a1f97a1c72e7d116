"""The kiosk's half of sign-in: QR states, verifications, interview codes, invitation QR codes
(signed, read from a real camera frame through the file-backed camera)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
import pytest
import qrcode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device import signin
from device.audit import AuditLog
from device.keys import derive_key, load_master_key
from device.qr import read_qr
from device.roster import install_roster, load_roster
from device.signin import SignInRefusal
from sync.signing import public_key_pem
from sync.wecom.invite import make_invitation, qr_image
from tests.sync import wecom_env
from tests.sync.wecom_env import NOW, OTHER_DEVICE, roster_for

fake_wecom = wecom_env.fake_wecom
tls_files = wecom_env.tls_files
wecom_settings = wecom_env.wecom_settings


@pytest.fixture
def hr_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def kiosk(wecom_settings, store, hr_key):
    """A device with today's roster and HR's public key cached (as enrolment leaves it)."""
    install_roster(store, roster_for(NOW, wecom_settings.device.id))
    store.cache_put("pubkey", "downlink", 1, {"pem": public_key_pem(hr_key.public_key()).decode()})
    return wecom_settings, store


@pytest.fixture
def audit(wecom_settings, store) -> AuditLog:
    return AuditLog(store, derive_key(load_master_key(wecom_settings.paths.key_dir), "audit"))


# ---- QR state ----------------------------------------------------------------------------


def test_qr_state_is_the_wecom_web_login_url_for_this_device(kiosk):
    settings, store = kiosk
    qs = signin.new_qr_state(store, settings, NOW)
    u = urlparse(qs.url)
    assert (u.scheme, u.netloc, u.path) == ("https", "login.work.weixin.qq.com", "/wwlogin/sso/login")
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    assert q["login_type"] == "CorpApp"
    assert q["appid"] == settings.wecom.corp_id and q["agentid"] == str(settings.wecom.agent_id)
    assert q["redirect_uri"] == settings.wecom.redirect_uri
    assert q["state"] == qs.nonce and qs.nonce.isalnum() and len(qs.nonce) <= 128
    assert signin.device_of_state(qs.nonce) == settings.device.id
    assert qs.expires == NOW + 120 and NOW < qs.rotate_at < qs.expires
    assert signin.new_qr_state(store, settings, NOW).nonce != qs.nonce  # rotation: fresh each time


def test_state_is_single_use(kiosk):
    settings, store = kiosk
    qs = signin.new_qr_state(store, settings, NOW)
    assert signin.consume_state(store, qs.nonce, settings.device.id, NOW + 5) is None
    assert signin.consume_state(store, qs.nonce, settings.device.id, NOW + 6).reason == "reused_state"


def test_state_expires(kiosk):
    settings, store = kiosk
    qs = signin.new_qr_state(store, settings, NOW)
    assert signin.consume_state(store, qs.nonce, settings.device.id, NOW + 121).reason == "expired_state"


def test_old_state_still_works_after_rotation_until_it_expires(kiosk):
    settings, store = kiosk
    old = signin.new_qr_state(store, settings, NOW)
    signin.new_qr_state(store, settings, old.rotate_at)  # the screen shows a new code
    assert signin.consume_state(store, old.nonce, settings.device.id, old.rotate_at + 1) is None


def test_state_of_another_device_is_wrong_device(kiosk):
    settings, store = kiosk
    other = signin.state_for(OTHER_DEVICE)
    assert signin.consume_state(store, other, settings.device.id, NOW).reason == "wrong_device"


def test_unknown_or_garbage_state_is_refused(kiosk):
    settings, store = kiosk
    for state in (signin.state_for(settings.device.id), "abc", "x" * 300, "'; DROP TABLE x;--"):
        assert signin.consume_state(store, state, settings.device.id, NOW).reason in ("expired_state", "wrong_device")


# ---- verifications -------------------------------------------------------------------------


def test_take_verification_oldest_first_once(kiosk):
    settings, store = kiosk
    dev = settings.device.id
    entry = roster_for(NOW, dev).entries[0]
    with store.transaction():
        a = signin.record_verification(store, dev, "wecom", SignInRefusal.of("off_roster"), NOW)
        b = signin.record_verification(store, dev, "wecom", entry, NOW + 1)
        signin.record_verification(store, OTHER_DEVICE, "wecom", entry, NOW)
    first = signin.take_verification(store, dev, now=NOW + 2)
    assert first.id == a and not first.ok and first.refusal.reason == "off_roster"
    assert "名单" in first.refusal.message_zh and "list" in first.refusal.message_en
    second = signin.take_verification(store, dev, now=NOW + 2)
    assert second.id == b and second.ok and second.roster_entry == entry
    assert signin.take_verification(store, dev, now=NOW + 2) is None


def test_stale_verification_is_dropped(kiosk):
    settings, store = kiosk
    entry = roster_for(NOW, settings.device.id).entries[0]
    with store.transaction():
        signin.record_verification(store, settings.device.id, "wecom", entry, NOW)
    assert signin.take_verification(store, settings.device.id, now=NOW + 600) is None


# ---- interview codes -----------------------------------------------------------------------


def test_interview_code(kiosk):
    settings, store = kiosk
    assert signin.check_interview_code(store, settings, "246 810", NOW).entry_id == "E-member"
    assert signin.check_interview_code(store, settings, "135-790", NOW).entry_id == "E-external"  # site entry
    assert signin.check_interview_code(store, settings, "000000", NOW).reason == "unknown_code"
    assert signin.check_interview_code(store, settings, "", NOW).reason == "unknown_code"
    assert signin.check_interview_code(store, settings, "112233", NOW).reason == "wrong_device"
    assert signin.check_interview_code(store, settings, "778899", NOW).reason == "outside_slot"


# ---- the shipped example roster (examples/roster.json) at its own terminals -------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CST = dt.timezone(dt.timedelta(hours=8))
ZHAO_MIN_OPENID = "oExAmPle-Zm3Qw8rT5yU1iO6pA2sD"  # booked for the site 上海总部, any terminal there


def at(hh: int, mm: int = 0) -> float:
    return dt.datetime(2026, 11, 23, hh, mm, tzinfo=CST).timestamp()


@pytest.fixture
def example_site(make_settings, store):
    """The example roster installed; make(device_id, site_name) -> that terminal's settings."""
    install_roster(store, load_roster(EXAMPLES / "roster.json"))

    def make(device_id: str = "demo-kiosk-01", site_name: str = "上海总部"):
        return make_settings({"device": {"id": device_id, "site_name": site_name}})

    return make, store


def test_site_booking_signs_in_with_wecom_at_any_terminal_of_that_site(example_site):
    make, store = example_site
    for device_id in ("demo-kiosk-01", "demo-kiosk-07"):
        got = signin.match_identity(store, make(device_id), at(15, 10), openid=ZHAO_MIN_OPENID)
        assert not isinstance(got, SignInRefusal), got
        assert got.entry_id == "R-20261123-004"
    elsewhere = signin.match_identity(store, make(site_name="北京 工厂"), at(15, 10), openid=ZHAO_MIN_OPENID)
    assert elsewhere.reason == "wrong_device"
    late = signin.match_identity(store, make(), at(18, 0), openid=ZHAO_MIN_OPENID)
    assert late.reason == "outside_slot"
    assert signin.match_identity(store, make(), at(15, 10), openid="o-not-booked").reason == "unknown_user"


def test_typed_code_from_the_example_roster_says_why_it_is_refused(example_site):
    make, store = example_site
    here = make()
    assert signin.check_interview_code(store, here, "246810", at(9, 0)).entry_id == "R-20261123-001"
    # 孙磊 is booked at demo-kiosk-02: the candidate is told to go there, not that the code is wrong
    refusal = signin.check_interview_code(store, here, "975310", at(11, 5))
    assert refusal.reason == "wrong_device"
    assert refusal.message_zh != SignInRefusal.of("unknown_code").message_zh
    # 刘强's slot is 14:00-14:30 (30 min early allowed): at 10:00 it is too early, not unknown
    assert signin.check_interview_code(store, here, "135790", at(10, 0)).reason == "outside_slot"
    assert signin.check_interview_code(store, here, "135790", at(13, 45)).entry_id == "R-20261123-003"
    assert signin.check_interview_code(store, here, "000000", at(10, 0)).reason == "unknown_code"


def test_every_reason_has_both_languages():
    for reason in signin.REASONS:
        r = SignInRefusal.of(reason)
        assert r.message_zh and r.message_en and r.message_zh != r.message_en


# ---- invitation QR codes ---------------------------------------------------------------------


def invitation(hr_key, entry="E-member", *, device="kiosk-test-01", site=None, start=NOW - 600, end=NOW + 3600):
    return make_invitation(hr_key, entry, not_before=start, not_after=end, device=device, site=site)


def test_invitation_signs_in(kiosk, hr_key):
    settings, store = kiosk
    assert signin.verify_invitation(store, settings, invitation(hr_key), NOW).entry_id == "E-member"
    site_inv = invitation(hr_key, "E-external", device=None, site="上海总部 前台")
    assert signin.verify_invitation(store, settings, site_inv, NOW).entry_id == "E-external"


def test_tampered_invitation_is_forged(kiosk, hr_key):
    settings, store = kiosk
    good = invitation(hr_key, "E-member")
    body, sig = good[len(signin.INVITATION_PREFIX):].split(".")
    claims = signin.unb64url(body).replace(b"E-member", b"E-later!")
    tampered = signin.INVITATION_PREFIX + signin.b64url(claims) + "." + sig
    assert signin.verify_invitation(store, settings, tampered, NOW).reason == "forged_invitation"
    other_key = invitation(Ed25519PrivateKey.generate())
    assert signin.verify_invitation(store, settings, other_key, NOW).reason == "forged_invitation"
    for junk in ("", "hello", signin.INVITATION_PREFIX + "a.b", signin.INVITATION_PREFIX + "!!!.???", "IKINV1." + "A" * 5000):
        assert signin.verify_invitation(store, settings, junk, NOW).reason == "forged_invitation"


def test_expired_or_early_invitation_is_refused(kiosk, hr_key):
    settings, store = kiosk
    inv = invitation(hr_key, start=NOW - 7200, end=NOW - 60)
    assert signin.verify_invitation(store, settings, inv, NOW).reason == "expired_invitation"
    inv = invitation(hr_key, start=NOW + 3600, end=NOW + 7200)
    assert signin.verify_invitation(store, settings, inv, NOW).reason == "expired_invitation"


def test_invitation_for_another_device_or_site_is_wrong_device(kiosk, hr_key):
    settings, store = kiosk
    assert signin.verify_invitation(store, settings, invitation(hr_key, device=OTHER_DEVICE), NOW).reason == "wrong_device"
    inv = invitation(hr_key, device=None, site="北京 工厂大门")
    assert signin.verify_invitation(store, settings, inv, NOW).reason == "wrong_device"


def test_invitation_for_entry_not_on_roster_is_off_roster(kiosk, hr_key):
    settings, store = kiosk
    assert signin.verify_invitation(store, settings, invitation(hr_key, "E-nobody"), NOW).reason == "off_roster"


def test_no_cached_key_refuses_invitations(wecom_settings, store, hr_key):
    install_roster(store, roster_for(NOW, wecom_settings.device.id))
    assert signin.verify_invitation(store, wecom_settings, invitation(hr_key), NOW).reason == "forged_invitation"


def test_key_from_configured_file_when_not_cached(make_settings, wecom_settings, store, hr_key, tmp_path):
    pub = tmp_path / "hr.pub"
    pub.write_bytes(public_key_pem(hr_key.public_key()))
    settings = make_settings({"wecom": wecom_settings.wecom.model_dump(mode="json"),
                              "device": {"site_name": "上海总部 前台"},
                              "sync": {"downlink_public_key_file": str(pub)}})
    install_roster(store, roster_for(NOW, settings.device.id))
    assert signin.verify_invitation(store, settings, invitation(hr_key), NOW).entry_id == "E-member"


# ---- an invitation held up to the camera -----------------------------------------------------


def phone_frame(qr_text: str, size=(1280, 720), shift=(0, 0), angle=0.0) -> np.ndarray:
    """The astronaut photo with a phone-sized white card showing the QR code."""
    from skimage import data

    w, h = size
    frame = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (w, h))
    try:
        img = qr_image(qr_text, box_size=6)  # what `interview-hr invite` hands out
    except ValueError:  # a forged text may have no readable mask; draw it plainly
        qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=6, border=4)
        qr.add_data(qr_text)
        qr.make(fit=True)
        img = np.array(qr.make_image().convert("L"))
    code = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    q = 300
    card = np.full((560, 340, 3), 255, np.uint8)  # a phone screen, portrait
    card[130:130 + q, 20:20 + q] = cv2.resize(code, (q, q), interpolation=cv2.INTER_AREA)
    if angle:
        m = cv2.getRotationMatrix2D((170, 280), angle, 1.0)
        card = cv2.warpAffine(card, m, (340, 560), borderValue=(40, 40, 40))
    x0, y0 = 500 + shift[0], 80 + shift[1]
    frame[y0:y0 + 560, x0:x0 + 340] = card
    return frame


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def read_qr_from_camera(video: Path, timeout_s: float = 20.0) -> str | None:
    """What the kiosk does: take the camera's frames, decode them with device.qr."""
    from hardware.camera import FileCamera

    frames = []
    cam = FileCamera(video, pace="fast")
    cam.on_frame(frames.append)  # every frame, as the kiosk's scanner thread gets them
    cam.start()
    try:
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            for frame in frames[seen:]:
                seen += 1
                text = read_qr(frame.image)
                if text:
                    return text
            if not cam.alive and seen >= len(frames):
                return None  # the video ended without a readable code
            time.sleep(0.02)
    finally:
        cam.stop()
    return None


def test_invitation_held_to_the_camera_signs_in(kiosk, hr_key, audit, tmp_path):
    settings, store = kiosk
    from skimage import data

    text = invitation(hr_key)
    empty = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (1280, 720))  # no card yet
    frames = [empty] * 3 + [phone_frame(text, shift=(i * 6, i * 3), angle=i * 1.5) for i in range(6)]
    video = write_video(tmp_path / "invite.avi", frames)
    seen = read_qr_from_camera(video)
    assert seen == text
    row = signin.local_signin(store, settings, NOW, qr_text=seen, audit=audit)
    assert row.ok and row.method == "invitation" and row.roster_entry.entry_id == "E-member"
    assert signin.take_verification(store, settings.device.id, now=NOW) is None  # already consumed
    [entry] = [e for e in audit.entries() if e.action.startswith("signin")]
    assert entry.action == "signin.ok" and entry.detail["entry_id"] == "E-member"
    assert "张三" not in str(entry.detail)
    assert audit.verify().ok


def test_tampered_invitation_from_the_camera_is_refused_and_audited(kiosk, hr_key, audit, tmp_path):
    settings, store = kiosk
    text = invitation(hr_key, start=time.time() - 7200, end=time.time() - 3600)  # expired
    body, sig = text[len(signin.INVITATION_PREFIX):].split(".")
    forged = signin.INVITATION_PREFIX + signin.b64url(signin.unb64url(body).replace(b"E-member", b"E-extern")) + "." + sig
    video = write_video(tmp_path / "forged.avi", [phone_frame(forged)] * 3)
    seen = read_qr_from_camera(video)
    assert seen == forged
    row = signin.local_signin(store, settings, NOW, qr_text=seen, audit=audit)
    assert not row.ok and row.reason == "forged_invitation"
    expired_video = write_video(tmp_path / "expired.avi", [phone_frame(text)] * 3)
    row = signin.local_signin(store, settings, time.time(), qr_text=read_qr_from_camera(expired_video), audit=audit)
    assert row.reason == "expired_invitation"
    reasons = [e.detail.get("reason") for e in audit.entries() if e.action == "signin.refused"]
    assert reasons == ["forged_invitation", "expired_invitation"]


def test_local_signin_by_code_is_recorded(kiosk, audit):
    settings, store = kiosk
    row = signin.local_signin(store, settings, NOW, code="246810", audit=audit)
    assert row.ok and row.method == "code" and row.candidate_ref == "E-member"
    bad = signin.local_signin(store, settings, NOW, code="999999", audit=audit)
    assert bad.reason == "unknown_code" and "面试码" in bad.refusal.message_zh
    with pytest.raises(ValueError):
        signin.local_signin(store, settings, NOW)


def test_unreadable_verification_is_dropped_not_retried(kiosk, caplog):
    settings, store = kiosk
    with store.transaction():
        store.db["verifications"].insert({"id": "bad", "device_id": settings.device.id, "method": "wecom",
                                          "candidate_ref": "E-member", "roster_entry": "{not json",
                                          "status": "ok", "reason": None, "created": NOW, "consumed": None})
    assert signin.take_verification(store, settings.device.id, now=NOW) is None
    assert "unreadable" in caplog.text
    assert signin.take_verification(store, settings.device.id, now=NOW) is None
