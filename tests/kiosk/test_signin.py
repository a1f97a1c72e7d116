"""Sign-in on the idle screen: the QR for the WeCom state, a verification written by the
sync daemon (here: through device.signin, as the daemon does), and refusals."""

from __future__ import annotations

import time

import pytest

from device import signin
from device.roster import current_roster

pytestmark = pytest.mark.timeout(120)

WECOM = {"corp_id": "ww0123456789abcdef", "agent_id": 1000002,
         "redirect_uri": "https://kiosk.example.internal:8443/wecom/callback"}


def test_idle_shows_a_qr_for_a_fresh_state_and_a_scan_signs_in(make_kiosk):
    k = make_kiosk(wecom=WECOM)
    w = k.window
    k.wait_state("idle")
    k.qtbot.waitUntil(lambda: bool(w.idle.qr.text), timeout=5000)
    url = w.idle.qr.text
    assert url.startswith(signin.WECOM_QR_LOGIN) and "appid=ww0123456789abcdef" in url
    state = w._qr.nonce
    assert state in url
    rows = list(k.store.db.query("SELECT device_id, used FROM signin_states WHERE nonce = ?", [state]))
    assert rows == [{"device_id": k.settings.device.id, "used": None}]
    k.shot("idle-qr", ["请用企业微信扫描二维码签到", "二维码每 120 秒自动更新"])
    # The sync daemon's callback accepted the scan and wrote a verification for this device.
    entry = next(e for e in current_roster(k.store).entries if e.interview_code == k.code)
    with k.store.transaction():
        signin.record_verification(k.store, k.settings.device.id, "wecom", entry, time.time())
    k.wait_state("welcome", timeout=10)
    assert k.machine.view.candidate_name in w.welcome.who.text()
    assert entry.name not in " ".join(w.welcome.texts())  # masked on a lobby screen


def test_a_refused_scan_says_why_and_goes_back(make_kiosk):
    k = make_kiosk(wecom=WECOM)
    w = k.window
    k.wait_state("idle")
    with k.store.transaction():
        signin.record_verification(k.store, k.settings.device.id, "wecom",
                                   signin.SignInRefusal.of("off_roster"), time.time())
    k.qtbot.waitUntil(lambda: w.verifying.buttons["cancel"].isVisible(), timeout=10000)
    k.shot("signin-refused", ["签到未成功", signin.MESSAGES["off_roster"][0], "返回首页"])
    w.verifying.buttons["cancel"].click()
    k.wait_state("idle")


def test_a_wrong_code_is_explained_on_the_keypad(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    w.idle.code_btn.click()
    w.idle.type_code("999999")
    w.idle.code_page.ok.click()
    k.qtbot.waitUntil(lambda: w.idle.code_page.error.text() == signin.MESSAGES["unknown_code"][0], timeout=5000)
    assert k.state == "idle"
    w.toggle_language()
    k.shot("code-refused-en", ["Enter your interview code", "Sign in"])


def test_wecom_outage_points_to_the_interview_code(make_kiosk):
    k = make_kiosk(wecom=WECOM)
    k.store.kv_set("wecom.health", {"ok": False, "at": time.time(), "error": "timeout"})
    k.qtbot.waitUntil(lambda: not k.window._qr_pending, timeout=5000)
    k.window._refresh_qr(force=True)
    k.qtbot.waitUntil(lambda: k.window.idle.qr_note.text() == signin.MESSAGES["wecom_unreachable"][0],
                      timeout=5000)
