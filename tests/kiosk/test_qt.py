"""The one door to Qt keeps a long-running kiosk alive: emitting signals all day must not
eat references to True (PySide6 6.12.0's SignalInstance.emit does, and then aborts)."""

import sys

from kiosk.qt import QImage, QObject, QPainter, QRectF, Signal, emit, void_calls_keep_none


class _Source(QObject):
    sig = Signal(object)


def test_a_day_of_emits_leaves_true_and_none_alone(qapp):
    src = _Source()
    got = [0]

    def count(_value) -> None:
        got[0] += 1

    src.sig.connect(count)
    before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(20000):   # ~20 minutes of preview frames
        emit(src.sig, None)
    assert (sys.getrefcount(True), sys.getrefcount(None)) == before
    assert got[0] == 20000


def test_the_installed_pyside_keeps_reference_counts(qapp):
    """PySide6-Essentials 6.12.0 on Python 3.11 loses a reference to None per void call:
    a screen of QR modules drained it and the demo aborted. The pin in pyproject keeps it out."""
    assert void_calls_keep_none()
    img = QImage(64, 64, QImage.Format_RGB32)
    p = QPainter(img)
    before = sys.getrefcount(None)
    for _ in range(5000):
        p.drawRect(QRectF(1, 1, 4, 4))
    p.end()
    assert sys.getrefcount(None) >= before - 5
