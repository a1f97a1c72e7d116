"""The one door to Qt keeps a long-running kiosk alive: emitting signals all day must not
eat references to True (PySide6 6.12.0's SignalInstance.emit does, and then aborts)."""

import sys

from kiosk.qt import QObject, Signal, emit


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
