"""The one door to Qt: every PySide6 name the kiosk uses is imported here.

It also undoes what the OpenCV wheel does to Qt's environment (it points Qt's plugin and
font paths at its own copies), so it must never be bypassed by importing PySide6 elsewhere.
"""

from __future__ import annotations

import ctypes
import logging
import os

# opencv-contrib-python sets these on import to its bundled (older) Qt plugins; Qt must use
# PySide6's own, or the platform plugin fails to load. Cleared before QApplication exists.
for _var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
    if "cv2" in os.environ.get(_var, ""):
        os.environ.pop(_var, None)

from PySide6 import __version__ as PYSIDE_VERSION  # noqa: E402
from PySide6.QtCore import (  # noqa: E402
    QBuffer,
    QByteArray,
    QElapsedTimer,
    QEvent,
    QIODevice,
    QObject,
    QPoint,
    QPointF,
    QRect,
    QRectF,
    QSize,
    Qt,
    QThread,
    QTimer,
    QtMsgType,
    Signal,
    Slot,
    qInstallMessageHandler,
)
from PySide6.QtGui import (  # noqa: E402
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QImage,
    QKeyEvent,
    QKeySequence,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QShortcut,
)
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QFrame,
    QGraphicsDropShadowEffect,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)


def _emit_loses_true() -> bool:
    """PySide6 6.12.0's SignalInstance.emit() returns True without owning a reference, so
    every Python-side emit drops one reference to True; a kiosk emitting frames and views
    all day aborts with "bool_dealloc"/"none_dealloc" after a few thousand. Measured, not
    assumed, so a fixed PySide6 needs nothing."""
    import sys

    class _Probe(QObject):
        sig = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(16):
        probe.sig.emit()
    return sys.getrefcount(True) < before


_EMIT_LEAK = _emit_loses_true()


def emit(signal, *args) -> None:
    """Emit a Qt signal from Python. Use this, never `signal.emit(...)` (see above)."""
    ok = signal.emit(*args)
    if _EMIT_LEAK:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(ok))


def void_calls_keep_none() -> bool:
    """False on a broken PySide6 build (6.12.0 wheels on Python 3.11): every void method
    call drops a reference to None, and the kiosk aborts with "none_dealloc" within minutes.
    pyproject pins PySide6-Essentials<6.12; this catches a wrong environment at start-up."""
    import sys

    obj = QObject()
    before = sys.getrefcount(None)
    for _ in range(16):
        obj.setObjectName("probe")
    return sys.getrefcount(None) >= before


def clear_cv2_qt_env() -> None:
    """Call again after importing cv2 and before creating the QApplication."""
    for var in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR"):
        if "cv2" in os.environ.get(var, ""):
            os.environ.pop(var, None)


# Harmless platform chatter (the offscreen plugin cannot resize windows to hints).
_QT_NOISE = ("propagateSizeHints",)


def _qt_messages(mode, context, message) -> None:
    if any(n in message for n in _QT_NOISE):
        return
    level = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
             QtMsgType.QtWarningMsg: logging.WARNING}.get(mode, logging.ERROR)
    logging.getLogger("qt").log(level, "%s", message)


def make_app(argv: list[str] | None = None, *, headless: bool = False) -> QApplication:
    """The QApplication (created once); headless runs on the offscreen platform. Qt's own
    messages go to the log."""
    clear_cv2_qt_env()
    qInstallMessageHandler(_qt_messages)
    if headless:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv or ["interview-kiosk"])
    if not void_calls_keep_none():
        logging.getLogger(__name__).error(
            "this PySide6 build (%s) corrupts Python's reference counts on this Python; the "
            "kiosk will crash. Install PySide6-Essentials<6.12 (pip install -e .)", PYSIDE_VERSION)
    return app


__all__ = [
    "QApplication", "QBrush", "QBuffer", "QByteArray", "QColor", "QElapsedTimer", "QEvent",
    "QFont", "QFontDatabase", "QFrame", "QGraphicsDropShadowEffect", "QGridLayout",
    "QGuiApplication", "QHBoxLayout", "QIODevice", "QImage", "QKeyEvent", "QKeySequence",
    "QLabel", "QLineEdit", "QLinearGradient", "QObject", "QPainter", "QPainterPath", "QPen",
    "QPixmap", "QPoint", "QPointF", "QPushButton", "QRect", "QRectF", "QShortcut", "QSize",
    "QSizePolicy", "QStackedWidget", "QThread", "QTimer", "QVBoxLayout", "QWidget", "Qt",
    "Signal", "Slot", "clear_cv2_qt_env", "emit", "make_app", "void_calls_keep_none",
]
