"""The technician's service panel (five taps on the logo, then the PIN) speaks the kiosk's
current language: Chinese first, English after the language button, re-translated while
it is open, a failing self-test row with its hint in that language."""

from __future__ import annotations

import pytest

from hardware.synthetic import face_video
from kiosk.i18n import tr

from .conftest import PIN

pytestmark = pytest.mark.timeout(120)

# Label words of the old English-only panel: none may be left on the Chinese panel.
ENGLISH_LABELS = ("Device:", "Site:", "State:", "Outbox", "Camera:", "Microphone:", "GUI max stall",
                  "PASS", "FAIL", "Software")


def open_panel(k) -> None:
    w = k.window
    for _ in range(5):
        w.header.logo.click()
    assert w.current_screen() is w.tech
    for ch in PIN:
        w.tech.entry.keypad.buttons[ch].click()
    w.tech.entry.ok.click()
    k.qtbot.waitUntil(lambda: w.technician and tr("tech_stall", "zh", ms="")[:6] in w.tech.info.text(),
                      timeout=10000)


def test_the_service_panel_follows_the_language_switch(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    assert w.lang == "zh"
    open_panel(k)
    body = w.tech.info.text()
    for word in ENGLISH_LABELS:
        assert word not in body, f"{word!r} on the Chinese service panel:\n{body}"
    for word in ("终端：", "软件版本：", "状态：待机", "待发送：", "摄像头：", "麦克风：", "尚未运行自检"):
        assert word in body, f"{word!r} missing from the Chinese service panel:\n{body}"
    assert k.settings.device.id in body

    w.toggle_language()   # while the panel is open
    body = w.tech.info.text()
    for word in ("Device:", "Software:", "State: idle", "Outbox:", "Camera:", "Microphone:", "No self-test run yet"):
        assert word in body, f"{word!r} missing from the English service panel:\n{body}"
    for word in ("终端：", "待发送", "状态："):
        assert word not in body, f"{word!r} on the English service panel:\n{body}"
    assert w.tech.panel_title.text() == tr("tech_panel", "en")

    w.toggle_language()
    assert "待发送：" in w.tech.info.text()
    w.tech.leave.click()
    k.wait_state("idle")


def test_a_failing_self_test_row_shows_its_hint_in_the_current_language(make_kiosk, tmp_path):
    # Nobody in front of the camera: the self-test's face check fails, for a real reason.
    empty = face_video(tmp_path / "empty.avi", 3.0, fps=15, size=(320, 240), script=[("absent", 3.0)])
    k = make_kiosk(str(empty))
    w = k.window
    k.wait_state("idle")
    open_panel(k)
    w.tech.selftest.click()   # the real self-test, on the file camera and the file mic
    k.qtbot.waitUntil(lambda: bool(getattr(w, "last_selftest", None)) and "通过" in w.tech.info.text(),
                      timeout=60000)
    failed = [r for r in w.last_selftest if not r.ok and r.hint_zh and r.hint_en]
    assert "camera_face" in [r.name for r in failed], f"the face check did not fail: {w.last_selftest}"
    zh = w.tech.info.text()
    for r in failed:
        assert f"未通过 {r.name}：" in zh and r.hint_zh in zh, f"{r.name} row not in Chinese:\n{zh}"
        assert r.hint_en not in zh
    passed = [r for r in w.last_selftest if r.ok]
    for r in passed:
        assert f"通过 {r.name}：" in zh
    assert "PASS" not in zh and "FAIL" not in zh

    w.toggle_language()
    en = w.tech.info.text()
    for r in failed:
        assert f"FAIL {r.name}:" in en and r.hint_en in en, f"{r.name} row not in English:\n{en}"
        assert r.hint_zh not in en
    assert "未通过" not in en and "通过" not in en
    w.toggle_language()
    w.tech.leave.click()
    k.wait_state("idle")
