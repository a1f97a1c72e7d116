"""What a nervous, non-technical candidate reads and touches: no technical error text on the
device check (the technician panel and the log get it), no gaps in the consent list, every
timer explained, every touch target big enough. Real kiosk offscreen (conftest.make_kiosk)."""

from __future__ import annotations

import logging

import cv2
import pytest
from PySide6.QtGui import QFontMetrics

from kiosk import style
from kiosk.i18n import tr
from kiosk.qt import QLabel, QPoint, QPushButton, QRect, Qt

pytestmark = pytest.mark.timeout(120)

CV_MESSAGE = "OpenCV(4.9.0) /io/opencv/modules/videoio/src/cap_v4l.cpp:1000: error: (-215:Assertion failed) VIDIOC_DQBUF"


def test_device_faults_show_a_calm_text_and_give_the_detail_to_the_technician(
        make_kiosk, caplog):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    k.sign_in()
    w.welcome.yes.click()
    k.wait_state("device_check")
    k.qtbot.waitUntil(lambda: w.check.go.isEnabled(), timeout=20000)

    # The camera driver now fails the way OpenCV does (cv2.error out of read()), which the
    # self-test does not catch: the window's self-test thread gets the exception itself.
    def broken_read(*_a, **_kw):
        raise cv2.error(CV_MESSAGE)

    k.camera.read = broken_read
    with caplog.at_level(logging.ERROR, logger="kiosk.window"):
        w.check.retry.click()
        k.qtbot.waitUntil(lambda: not w._selftest_running and w.check.results.get("camera", (None,))[0] is False,
                          timeout=20000)
    for lang in ("zh", "en"):
        if w.lang != lang:
            w.toggle_language()
        shown = " | ".join(w.current_screen().texts())
        assert tr("check_staff", lang) in shown, shown
        assert "OpenCV" not in shown and "error" not in shown.lower(), shown
        assert not w.check.go.isEnabled()
        _assert_readable(w)
        k.shot(f"device_check_error-{lang}", [tr("check_staff", lang)])
    w.toggle_language()
    assert w.lang == "zh"
    # The technician reads what broke; the log has it too (a traceback, no candidate data).
    assert f"error: {CV_MESSAGE}" in w._technician_info()
    assert any("self-test failed" in r.getMessage() and r.exc_info for r in caplog.records)
    # The candidate can still call for help from this screen.
    assert w.header.help.isVisible()

    # A camera that stops delivering: the self-test's own hint ("check the cable") is work
    # for the technician's panel; the candidate reads the same calm sentence.
    k.camera.read = lambda *_a, **_kw: None
    w.check.retry.click()
    k.qtbot.waitUntil(lambda: not w._selftest_running and w.selftest_error == "", timeout=20000)
    shown = " | ".join(w.current_screen().texts())
    assert tr("check_staff", "zh") in shown and "连接线" not in shown, shown
    assert "FAIL camera: no frames — The camera delivers no picture: check the cable." in w._technician_info()


def test_consent_items_have_no_gap_below_them_in_either_language(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    k.sign_in()
    for lang in ("zh", "en"):
        if w.lang != lang:
            w.toggle_language()
        k.qtbot.wait(300)   # a few ticks: the labels' heights converge on their widths
        for i, lab in enumerate([*w.welcome.items, w.welcome.plan]):
            # The lines the label draws, measured apart from the label (QLabel's own
            # heightForWidth never goes below the minimum height a layout pass gave it).
            lines = QFontMetrics(lab.font()).boundingRect(
                QRect(0, 0, lab.contentsRect().width(), 10000),
                int(Qt.TextWordWrap | Qt.AlignLeft), lab.text()).height()
            m = lab.contentsMargins()
            need = lines + m.top() + m.bottom()
            assert need - 1 <= lab.height() <= need + 1, (
                f"{lang}: welcome label {i + 1} is {lab.height()} px high for {need} px of text "
                f"(a gap under it): {lab.text()!r}")
        _assert_readable(w)
        k.shot(f"welcome-{lang}", [tr("consent_2", lang)])
    w.toggle_language()


def _assert_readable(window) -> None:
    """Every text on the current screen (the header and footer aside) is at least
    style.MIN_TEXT_PX: a candidate reads it standing at arm's length."""
    screen = window.current_screen()
    small = [f"{lab.objectName()} {lab.text()!r}: {lab.font().pixelSize()} px"
             for lab in screen.findChildren(QLabel)
             if lab.isVisibleTo(screen) and lab.text() and lab.font().pixelSize() < style.MIN_TEXT_PX]
    assert not small, small


def _window_rect(window, widget) -> QRect:
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def test_the_answer_timer_says_what_happens_when_it_runs_out(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    k.sign_in()
    w.welcome.yes.click()
    k.pass_device_check()
    k.wait_state("prepare")
    assert tr("q_prepare_hint", "zh") in w.current_screen().texts()
    assert not _window_rect(w, w.question.self_view).intersects(_window_rect(w, w.question.start))
    _assert_readable(w)
    w.question.start.click()
    k.wait_state("answer")
    for lang in ("zh", "en"):
        if w.lang != lang:
            w.toggle_language()
        k.shot(f"answer-{lang}", [tr("q_answer_hint", lang)])
        _assert_readable(w)
        # The longer hint does not push the self-view onto the button under it.
        assert not _window_rect(w, w.question.self_view).intersects(_window_rect(w, w.question.done))
        # Every button the candidate can touch here is at least a finger wide and high.
        for b in w.findChildren(QPushButton):
            if b.isVisible():
                assert b.height() >= style.MIN_TARGET_PX and b.width() >= style.MIN_TARGET_PX, (
                    f"{b.text()!r}: {b.width()}x{b.height()}")
    w.toggle_language()


def test_every_button_shows_it_was_touched(make_kiosk):
    """A nervous candidate taps again if nothing changes under the finger: every kind of
    button on the candidate's screens looks different while it is held down."""
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    k.sign_in()
    buttons = {"ghost": w.welcome.no, "primary": w.welcome.yes, "help": w.header.help,
               "lang": w.header.lang}
    for kind, b in buttons.items():
        assert b.objectName() == kind
        up = b.grab().toImage()
        b.setDown(True)
        down = b.grab().toImage()
        b.setDown(False)
        assert up != down, f"the {kind} button {b.text()!r} looks the same while pressed"
