"""`interview-hr invite`: a signed invitation PNG and message text that the kiosk accepts."""

from __future__ import annotations

import json

import cv2
import pytest

from device import signin
from device.qr import read_qr
from device.roster import install_roster
from sync.connector.__main__ import main as interview_hr
from sync.signing import generate_signing_key, public_key_pem
from sync.wecom.invite import make_invitation
from tests.sync import wecom_env
from tests.sync.wecom_env import NOW, roster_for

fake_wecom = wecom_env.fake_wecom
tls_files = wecom_env.tls_files
wecom_settings = wecom_env.wecom_settings


@pytest.fixture
def hr_side(tmp_path, wecom_settings):
    key_path = tmp_path / "hr-signing.key"
    pub = generate_signing_key(key_path)
    roster = roster_for(NOW, wecom_settings.device.id)
    roster_path = tmp_path / "roster.json"
    roster_path.write_text(json.dumps(roster.model_dump(mode="json"), ensure_ascii=False), encoding="utf-8")
    return key_path, pub, roster, roster_path


def test_invite_writes_a_png_the_kiosk_accepts_and_the_message(hr_side, wecom_settings, store, tmp_path, capsys):
    key_path, pub, roster, roster_path = hr_side
    out = tmp_path / "invite.png"
    rc = interview_hr(["invite", "--key", str(key_path), "--roster", str(roster_path), "--entry", "E-member",
                       "--where", "上海总部 前台", "--out", str(out)])
    assert rc == 0
    message = capsys.readouterr().out
    assert "面试码：246810" in message and "interview code on the screen: 246810" in message
    assert "上海总部 前台" in message
    assert "张三" not in message  # the recruiter adds the greeting; the text carries no name
    text = read_qr(cv2.imread(str(out)))
    assert text.startswith(signin.INVITATION_PREFIX)
    claims, _, _ = signin.decode_invitation(text)
    assert claims["entry"] == "E-member" and claims["device"] == wecom_settings.device.id
    assert "张三" not in text and "246810" not in text  # ids and times only
    install_roster(store, roster)
    store.cache_put("pubkey", "downlink", 1, {"pem": public_key_pem(pub).decode()})
    assert signin.verify_invitation(store, wecom_settings, text, NOW).entry_id == "E-member"
    # Default window: half an hour around the slot.
    entry = roster.entries[0]
    assert claims["nbf"] == int(entry.slot_start.timestamp() - 1800)
    assert claims["exp"] == int(entry.slot_end.timestamp() + 1800)


def test_invite_for_a_site_entry_is_bound_to_the_site(hr_side, tmp_path, capsys):
    key_path, pub, roster, roster_path = hr_side
    out = tmp_path / "site.png"
    assert interview_hr(["invite", "--key", str(key_path), "--roster", str(roster_path),
                         "--entry", "E-external", "--out", str(out)]) == 0
    text = read_qr(cv2.imread(str(out)))
    claims, _, _ = signin.decode_invitation(text)
    assert claims["site"] == "上海总部 前台" and "device" not in claims


def test_invite_errors_name_what_is_wrong(hr_side, tmp_path, capsys):
    key_path, pub, roster, roster_path = hr_side
    with pytest.raises(SystemExit) as e:
        interview_hr(["invite", "--key", str(key_path), "--roster", str(roster_path), "--entry", "E-nope",
                      "--out", str(tmp_path / "x.png")])
    assert "E-nope" in str(e.value)
    rc = interview_hr(["invite", "--key", str(tmp_path / "missing.key"), "--roster", str(roster_path),
                       "--entry", "E-member", "--out", str(tmp_path / "x.png")])
    assert rc == 2 and "missing.key" in capsys.readouterr().err
    rc = interview_hr(["invite", "--key", str(key_path), "--roster", str(roster_path), "--entry", "E-member",
                       "--valid-from", "2026-11-23T12:00:00+00:00", "--valid-until", "2026-11-23T11:00:00+00:00",
                       "--out", str(tmp_path / "x.png")])
    assert rc == 2 and "empty" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_make_invitation_requires_a_binding(hr_side):
    from sync.signing import load_private_key

    key = load_private_key(hr_side[0])
    with pytest.raises(ValueError, match="device or a site"):
        make_invitation(key, "E-member", not_before=NOW, not_after=NOW + 60)


def test_every_invitation_png_is_readable_by_the_kiosk_detector(hr_side, tmp_path):
    """The PNG we hand out is read by the kiosk's reader, whatever its signature bytes."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from sync.wecom.invite import render_png

    for i in range(30):  # fresh keys: different signatures, different codes
        text = make_invitation(Ed25519PrivateKey.generate(), f"E-{i}", not_before=NOW, not_after=NOW + 3600,
                               site="上海总部 前台")
        png = render_png(text, tmp_path / f"{i}.png")
        found = read_qr(cv2.imread(str(png)))
        assert found == text
