"""What keeps the GUI thread free, checked by what it does (calls counted), never by how
long it takes: a countdown second does not re-render or re-lay-out the screen, nor does a
face detection that changes nothing on the device check, every screen
is polished and laid out before the first candidate arrives, closing keys are taken by
application shortcuts (not a Python event filter that ran for every event), the sign-in QR
code is drawn once per code, and preview frames arrive in the format the window draws
from. Real kiosk offscreen (conftest.make_kiosk)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from device.qr import read_qr
from kiosk.qt import QApplication, QColor, QImage, Qt
from kiosk.widgets import QrView, to_qimage

pytestmark = pytest.mark.timeout(120)


class Calls:
    """Counts calls of one bound method of one object (it still runs)."""

    def __init__(self, obj, name: str) -> None:
        self.n = 0
        real = getattr(obj, name)

        def counted(*a, **kw):
            self.n += 1
            return real(*a, **kw)

        setattr(obj, name, counted)


def test_countdown_seconds_and_unchanged_face_detections_do_not_re_render(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    k.sign_in()
    w.welcome.yes.click()
    k.wait_state("device_check")
    k.qtbot.waitUntil(w.check.go.isEnabled, timeout=20000)
    # The live detector keeps saying "a face" (five times a second): the passed check is
    # not re-styled and laid out again each time.
    restyled = Calls(w.check, "set_results")
    k.qtbot.wait(1200)
    assert restyled.n == 0 and w.check.go.isEnabled()
    w.check.go.click()
    k.wait_state("prepare")
    w.question.start.click()
    k.wait_state("answer")
    k.qtbot.wait(300)
    relayout, refresh = Calls(w, "relayout"), Calls(w.question, "refresh")
    ring = w.question.ring
    before = ring.remaining
    k.qtbot.wait(2600)   # two or three published views (one per second of the countdown)
    assert w.state.value == "answer"
    assert ring.remaining <= before - 2, (before, ring.remaining)   # the ring did move
    assert relayout.n == 0 and refresh.n == 0, (relayout.n, refresh.n)
    # A real change (the language) still renders and lays out at once.
    w.toggle_language()
    assert relayout.n == 1 and refresh.n == 1


def test_every_screen_is_polished_and_laid_out_before_the_first_candidate(make_kiosk):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    size = w.stack.size()
    for name, screen in w.screens.items():
        assert screen.testAttribute(Qt.WA_WState_Polished), name
        assert screen.size() == size, (name, screen.size(), size)
    assert w.stack.currentWidget() is w.idle


def test_closing_keys_are_ignored_by_application_shortcuts(make_kiosk, caplog):
    k = make_kiosk()
    w = k.window
    k.wait_state("idle")
    w.activateWindow()
    with caplog.at_level(logging.INFO, logger="kiosk.window"):
        for key, mods in ((Qt.Key_Escape, Qt.NoModifier), (Qt.Key_Q, Qt.ControlModifier)):
            k.qtbot.keyClick(w, key, mods)
    assert sum("closing shortcut ignored" in r.getMessage() for r in caplog.records) == 2
    assert w.isVisible() and w.state.value == "idle"


def test_preview_frames_arrive_in_the_format_the_window_draws_from():
    QApplication.instance() or QApplication([])
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:, :40] = (255, 0, 0)      # BGR: the left half blue
    frame[:, 40:] = (0, 0, 255)      # the right half red
    img = to_qimage(frame, 480)
    assert img.format() in (QImage.Format_RGB32, QImage.Format_RGBX8888)
    assert (img.width(), img.height()) == (80, 60)
    # Mirrored like a mirror: the blue half is now on the right.
    assert img.pixelColor(70, 30) == QColor(0, 0, 255)
    assert img.pixelColor(10, 30) == QColor(255, 0, 0)
    plain = to_qimage(frame, 40, mirror=False)
    assert (plain.width(), plain.height()) == (40, 30)
    assert plain.pixelColor(5, 15) == QColor(0, 0, 255)


def test_the_sign_in_qr_code_is_drawn_once_per_code_and_size(qtbot, tmp_path):
    import cv2

    view = QrView()
    qtbot.addWidget(view)
    view.resize(360, 360)
    drawn = Calls(view, "_render")
    url = "https://open.weixin.qq.com/connect/oauth2/authorize?appid=ww0123&state=abc"
    view.set_text(url)
    for _ in range(3):   # the idle screen repainted (a note, the clock, a screenshot)
        view.grab()
    assert drawn.n == 1
    path = tmp_path / "qr.png"
    assert view.grab().save(str(path))
    assert read_qr(cv2.imread(str(path))) == url   # what is drawn still reads
    view.set_text(url + "2")   # a new sign-in state: drawn again, once
    view.grab()
    view.grab()
    assert drawn.n == 2
    view.resize(300, 300)
    view.grab()
    assert drawn.n == 3


def test_a_screenshot_the_caller_announces_is_reported_apart_not_counted_as_a_stall(qtbot):
    import time

    from kiosk.window import StallMonitor

    mon = StallMonitor()
    mon.WARMUP_MS = 0
    mon.start()
    qtbot.wait(50)
    mon.skip_next()
    time.sleep(0.08)          # the loop blocked on purpose (a screenshot)
    qtbot.wait(50)
    assert (mon.excluded, mon.stalls_over_50ms) == (1, 0)
    assert mon.excluded_max_ms >= 60
    time.sleep(0.08)          # the same block unannounced is a stall
    qtbot.wait(50)
    assert (mon.excluded, mon.stalls_over_50ms) == (1, 1)
    assert mon.max_stall_ms >= 60
    mon._timer.stop()
