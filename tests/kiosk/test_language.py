"""The language switch (Chinese first, English on a button): every screen re-translates and
re-lays-out at once, both ways, and no text is clipped at 1280x800 or on the smallest
display the kiosk supports."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from device import session as ses
from device import signin
from hardware.selftest import MIN_DISPLAY
from kiosk.i18n import Message, tr
from kiosk.qt import QLabel, QPoint, QPushButton, QWidget

from .conftest import PIN

pytestmark = pytest.mark.timeout(120)

WECOM = {"corp_id": "ww0123456789abcdef", "agent_id": 1000002,
         "redirect_uri": "https://kiosk.example.internal:8443/wecom/callback"}
# 1280x800, and what a 1024x600 panel (hardware.selftest.MIN_DISPLAY, the smallest supported)
# shows in logical pixels once interview-kiosk scales it by 0.75 (kiosk.__main__.display_scale).
SIZES = ((1280, 800), (round(MIN_DISPLAY[0] / 0.75), round(MIN_DISPLAY[1] / 0.75)))


def clipped(window) -> list[str]:
    """Every visible label or button whose text does not fit the box it was given, or whose
    box is cut off by a parent or the window edge: what a candidate would see as "ign i"."""
    problems = []
    for w in [window] + window.findChildren(QWidget):
        lay = w.layout()
        if w.isVisible() and lay is not None:
            need = lay.minimumSize()
            if w.width() < need.width() or w.height() < need.height():
                problems.append(f"{w.objectName() or type(w).__name__}: {w.width()}x{w.height()}, "
                                f"its layout needs at least {need.width()}x{need.height()}")
    for w in window.findChildren(QLabel) + window.findChildren(QPushButton):
        if not w.isVisible() or not w.text():
            continue
        name = f"{w.objectName() or type(w).__name__} {w.text()!r}"
        if isinstance(w, QPushButton):
            if w.width() < w.sizeHint().width():
                problems.append(f"{name}: {w.width()} px wide, needs {w.sizeHint().width()}")
        elif w.wordWrap():
            need = w.heightForWidth(w.width())
            if need > w.height() + 1:
                problems.append(f"{name}: {w.height()} px high at {w.width()} px, needs {need}")
        else:
            hint = w.sizeHint()
            if w.width() < hint.width() or w.height() < hint.height():
                problems.append(f"{name}: {w.width()}x{w.height()}, needs {hint.width()}x{hint.height()}")
        # Inside every ancestor (a page or card cut off by the window edge hides text too).
        child, parent = w, w.parentWidget()
        while parent is not None:
            top_left = child.mapTo(parent, QPoint(0, 0))
            if top_left.x() < 0 or top_left.y() < 0 or top_left.x() + child.width() > parent.width() + 1 \
                    or top_left.y() + child.height() > parent.height() + 1:
                problems.append(f"{name}: cut off by {parent.objectName() or type(parent).__name__}")
                break
            if parent is window:
                break
            child, parent = parent, parent.parentWidget()
    return problems


class Walk:
    """Shows the current screen in Chinese, English and Chinese again (the window's own
    switch), checks the fit right after each switch, saves each as a screenshot."""

    def __init__(self, k) -> None:
        self.k = k
        self.seen: list[str] = []

    def both(self, name: str, zh: list[str] = (), en: list[str] = (), customer=None) -> None:
        """`customer`: a label showing the customer's own words (site names), not translated."""
        w = self.k.window
        assert w.lang == "zh"
        for lang, expect in (("zh", zh), ("en", en), ("zh", zh)):
            if w.lang != lang:
                w.toggle_language()   # checked at once: no event-loop pass in between
            size = f"{w.width()}x{w.height()}"
            problems = clipped(w)
            if os.environ.get("KIOSK_LAYOUT_REPORT"):   # list them all instead of stopping
                print("LAYOUT", name, lang, size, problems)
                problems = []
            assert not problems, f"{name} [{lang} {size}]: {problems}"
            texts = " | ".join(w.current_screen().texts())
            for e in expect:
                assert e in texts, f"{name} [{lang} {size}]: {e!r} not on screen; shown: {texts}"
            if lang == "en":
                # Nothing Chinese is left on an English screen (the company and site are
                # the customer's own words, in the header, and not translated).
                ours = " | ".join(t for t in w.current_screen().texts()
                                  if customer is None or t != customer.text())
                assert not any("\u4e00" <= ch <= "\u9fff" for ch in ours), f"{name} [en]: {ours}"
            self.k.shot(f"{name}-{lang}-{size}", [])
        self.seen.append(name)


def resize(k, size: tuple[int, int]) -> None:
    k.window.setFixedSize(*size)
    k.qtbot.waitUntil(lambda: (k.window.width(), k.window.height()) == size, timeout=5000)
    k.qtbot.wait(50)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_refusal_and_the_code_page_follow_the_language_switch(make_kiosk, size):
    k = make_kiosk()
    w = k.window
    resize(k, size)
    k.wait_state("idle")
    w.idle.code_btn.click()
    w.idle.type_code("999999")
    w.idle.code_page.ok.click()
    zh, en = signin.MESSAGES["unknown_code"]
    k.qtbot.waitUntil(lambda: w.idle.code_page.error.text() == zh, timeout=5000)
    walk = Walk(k)
    walk.both("code-refused", [zh, "签到", "返回"], [en, "Sign in", "Back"])
    w.toggle_language()
    assert w.idle.code_page.error.text() == en
    assert w.idle.code_page.ok.width() >= w.idle.code_page.ok.sizeHint().width()
    # A new refusal while in English is English, and goes back to Chinese on the switch.
    w.idle.code_page.ok.click()
    k.qtbot.waitUntil(lambda: w.idle.code_page.error.text() == en, timeout=5000)
    w.toggle_language()
    assert w.idle.code_page.error.text() == zh


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_screen_switches_language_and_nothing_is_clipped(make_kiosk, size):
    k = make_kiosk(wecom=WECOM)
    w = k.window
    resize(k, size)
    walk = Walk(k)
    k.wait_state("idle")
    k.qtbot.waitUntil(lambda: bool(w.idle.qr.text), timeout=5000)
    walk.both("idle", ["欢迎参加面试"], ["Welcome to your interview"])
    w.idle.code_btn.click()
    walk.both("code", ["输入面试码"], ["Enter your interview code"])
    w.idle.code_page.back.click()
    # A refused WeCom scan, explained on the verifying screen.
    with k.store.transaction():
        signin.record_verification(k.store, k.settings.device.id, "wecom",
                                   signin.SignInRefusal.of("off_roster"), time.time())
    k.qtbot.waitUntil(lambda: w.verifying.buttons["cancel"].isVisible(), timeout=10000)
    zh, en = signin.MESSAGES["off_roster"]
    walk.both("signin-refused", [zh, "返回首页"], [en, "Back to start"])
    w.verifying.buttons["cancel"].click()
    k.wait_state("idle")
    # The technician's PIN page, a wrong PIN, the service panel (English for the
    # technician, the buttons follow the switch).
    for _ in range(5):
        w.header.logo.click()
    assert w.current_screen() is w.tech
    for ch in "1111":
        w.tech.entry.keypad.buttons[ch].click()
    w.tech.entry.ok.click()
    k.qtbot.waitUntil(lambda: "还可尝试" in w.tech.entry.error.text(), timeout=10000)
    walk.both("tech-pin", ["还可尝试"], ["tries left"])
    w.tech.entry.back.click()
    k.wait_state("idle")
    k.sign_in()
    walk.both("welcome", ["我同意，开始"], ["I agree, start"])
    w.welcome.yes.click()
    k.wait_state("device_check")
    k.qtbot.waitUntil(lambda: w.check.go.isEnabled(), timeout=20000)
    walk.both("device-check", ["设备检查", "继续"], ["Device check", "Continue"])
    w.check.go.click()
    k.wait_state("prepare")
    walk.both("prepare", ["开始回答"], ["Start answering"])
    w.question.start.click()
    k.wait_state("answer")
    walk.both("answer", ["回答完毕"], ["I'm done"])
    w.header.help.click()
    k.wait_state("help")
    walk.both("help", ["已通知工作人员"], ["A member of staff is on the way"])
    assert len(walk.seen) == 9


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_end_and_service_screens_fit_in_both_languages(make_kiosk, size):
    k = make_kiosk()
    w = k.window
    resize(k, size)
    walk = Walk(k)
    k.wait_state("idle")
    for _ in range(5):
        w.header.logo.click()
    for ch in PIN:
        w.tech.entry.keypad.buttons[ch].click()
    w.tech.entry.ok.click()
    k.qtbot.waitUntil(lambda: w.technician and w.tech.info.text().startswith("终端："), timeout=10000)
    walk.both("tech-panel", ["维护模式", "返回面试模式"], ["Service mode", "Back to kiosk mode"],
              customer=w.tech.info)
    w.tech.leave.click()
    k.sign_in()
    view = w.view
    w.welcome.no.click()
    k.wait_state("declined")
    walk.both("declined", ["好的，我们尊重您的选择"], ["Of course, we respect your choice"])
    # The rest are drawn straight from a view (reaching each through a whole interview
    # would take minutes): the answer saved, and every end / interruption screen.
    w._tick.stop()   # no tick may switch the screen back while they are looked at
    question = dataclasses.replace(view, state=ses.State.REVIEW, question=view.questions[0],
                                   index=0, total=len(view.questions), retakes_left=1)
    w.question.set_mode("review")
    screens = [("review", w.question, question, ["下一题", "重新回答"], ["Next question", "Retake"])]
    for name in ("paused", "finishing", "done", "abandoned", "interrupted", "failed"):
        screen = w.screens[name]
        screens.append((name, screen, view, [tr(screen.title_key, "zh")], [tr(screen.title_key, "en")]))
    w.screens["failed"].fmt = {"component": Message.of("component_camera")}
    for name, screen, v, zh, en in screens:
        for lang, expect in (("zh", zh), ("en", en)):
            w.lang = lang
            w.stack.setCurrentWidget(screen)
            screen.refresh(v, lang)
            w.render_chrome()
            w.relayout(screen)
            problems = clipped(w)
            assert not problems, f"{name} [{lang} {size}]: {problems}"
            texts = " | ".join(screen.texts())
            for e in expect:
                assert e in texts, f"{name} [{lang}]: {e!r} not on screen; shown: {texts}"
            k.shot(f"{name}-{lang}-{w.width()}x{w.height()}", [])
    assert "camera" in w.screens["failed"].sub.text()
