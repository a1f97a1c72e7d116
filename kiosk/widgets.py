"""Reusable drawn widgets: QR code, countdown ring, level meter, camera preview with the
face-framing oval, numeric keypad, and the header with the hidden technician corner.

They only draw what they are given and emit what was touched; none of them decides what
the interview does next, and none keeps a picture of the candidate after it is drawn.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from kiosk import style
from kiosk.qt import (
    QColor,
    QFont,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QImage,
    QLabel,
    QPainter,
    QPen,
    QPixmap,
    QPushButton,
    QRectF,
    QSize,
    QSizePolicy,
    Qt,
    QVBoxLayout,
    QWidget,
    Signal,
    emit,
)


def _painting(draw):
    """paintEvent with a painter that is always ended, even if drawing raises or something
    still references the frame (a QPainter left active crashes the next paint)."""

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        try:
            draw(self, p)
        finally:
            p.end()

    return paintEvent


def label(text: str = "", name: str = "body", *, wrap: bool = True, align=None) -> QLabel:
    lab = QLabel(text)
    lab.setObjectName(name)
    lab.setWordWrap(wrap)
    if not wrap:
        # One-line labels take the height their text needs; stretches take the rest.
        # (Wrapped labels keep Qt's default policy so height-for-width is honoured.)
        lab.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Maximum)
    if align is not None:
        lab.setAlignment(align)
    elif wrap:
        lab.setAlignment(Qt.AlignLeft | Qt.AlignTop)   # lines start at the top of their box
    return lab


def button(text: str, name: str = "primary") -> QPushButton:
    b = QPushButton(text)
    b.setObjectName(name)
    b.setCursor(Qt.PointingHandCursor)
    b.setFocusPolicy(Qt.NoFocus)
    b.setMinimumHeight(style.MIN_TARGET_PX)
    return b


def card(name: str = "card") -> QFrame:
    f = QFrame()
    f.setObjectName(name)
    return f


def qr_matrix(text: str) -> list[list[bool]]:
    """The QR code modules for `text` (qrcode, error correction M, no border)."""
    import qrcode

    qr = qrcode.QRCode(border=0, error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(text)
    qr.make(fit=True)
    return qr.get_matrix()


class QrView(QWidget):
    """Draws a QR code of `text` (qrcode's matrix) with a quiet zone, crisp at any size."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._matrix: list[list[bool]] = []
        self.text = ""
        self.setMinimumSize(260, 260)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_text(self, text: str, matrix: list[list[bool]] | None = None) -> None:
        """Show `text`; pass its `matrix` (qr_matrix, computed off the GUI thread: encoding
        a long URL in pure Python takes a few hundred ms on a small CPU)."""
        if text == self.text:
            return
        self._matrix = matrix if matrix is not None else qr_matrix(text)
        self.text = text
        self._cache_key = None   # drawn again for the new code at the next paint
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(340, 340)

    @_painting
    def paintEvent(self, p: QPainter) -> None:
        side = min(self.width(), self.height())
        x0 = (self.width() - side) // 2
        y0 = (self.height() - side) // 2
        key = (id(self._matrix), side, self.devicePixelRatioF())
        if getattr(self, "_cache_key", None) != key:
            # Drawn once per code and size: a paint of the idle screen was ~900 Python
            # drawRect calls (5-10 ms of the GUI thread, holding the GIL) every time anything
            # over the card was repainted.
            self._cache = self._render(side)
            self._cache_key = key
        p.drawPixmap(x0, y0, self._cache)

    def _render(self, side: int) -> QPixmap:
        dpr = self.devicePixelRatioF()
        pix = QPixmap(int(side * dpr), int(side * dpr))
        pix.setDevicePixelRatio(dpr)
        pix.fill(Qt.transparent)
        p = QPainter(pix)
        try:
            p.setRenderHint(QPainter.Antialiasing, True)
            p.setPen(Qt.NoPen)
            p.setBrush(QColor("white"))
            p.drawRoundedRect(QRectF(0, 0, side, side), 18, 18)
            n = len(self._matrix)
            if not n:
                return pix
            quiet = 2
            cell = side / (n + 2 * quiet)
            p.setRenderHint(QPainter.Antialiasing, False)
            p.setBrush(QColor(style.TEXT))
            for r, row in enumerate(self._matrix):
                for c, on in enumerate(row):
                    if on:
                        p.drawRect(QRectF((c + quiet) * cell, (r + quiet) * cell, cell + 0.5, cell + 0.5))
        finally:
            p.end()
        return pix


class CountdownRing(QWidget):
    """A ring that empties as time runs out, with the seconds left in the middle."""

    def __init__(self, parent=None, diameter: int = 170) -> None:
        super().__init__(parent)
        self.total = 1.0
        self.remaining = 0.0
        self.caption = ""
        self.color = QColor(style.BRAND)
        self.setFixedSize(diameter, diameter)

    def set_time(self, remaining: float, total: float, caption: str = "", urgent_below: float = 10) -> None:
        self.remaining = max(0.0, remaining)
        self.total = max(total, 0.001)
        self.caption = caption
        self.color = QColor(style.DANGER if remaining <= urgent_below else style.BRAND)
        self.update()

    @_painting
    def paintEvent(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.Antialiasing, True)
        w = min(self.width(), self.height())
        pen_w = max(8.0, w * 0.075)
        rect = QRectF(pen_w / 2 + 1, pen_w / 2 + 1, w - pen_w - 2, w - pen_w - 2)
        p.setPen(QPen(QColor(style.LINE), pen_w, Qt.SolidLine, Qt.RoundCap))
        p.drawEllipse(rect)
        frac = min(1.0, self.remaining / self.total)
        if frac > 0:
            p.setPen(QPen(self.color, pen_w, Qt.SolidLine, Qt.RoundCap))
            p.drawArc(rect, 90 * 16, int(-frac * 360 * 16))
        p.setPen(QColor(style.TEXT))
        f = QFont(style.FONT_FAMILY)
        f.setPixelSize(int(w * 0.3))
        f.setBold(True)
        p.setFont(f)
        secs = int(np.ceil(self.remaining))
        text = f"{secs // 60}:{secs % 60:02d}" if secs >= 60 else str(secs)
        p.drawText(QRectF(0, 0, w, w * 0.92), Qt.AlignCenter, text)
        if self.caption and secs < 60:
            f.setPixelSize(int(w * 0.1))
            f.setBold(False)
            p.setFont(f)
            p.setPen(QColor(style.MUTED))
            p.drawText(QRectF(0, w * 0.6, w, w * 0.2), Qt.AlignCenter, self.caption)


class LevelMeter(QWidget):
    """A segmented microphone level bar (-60..0 dBFS), red when clipping."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.dbfs = -96.0
        self.clipping = False
        self.setMinimumHeight(28)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def set_level(self, dbfs: float, clipping: bool = False) -> None:
        # A little decay makes speech readable instead of flickering.
        self.dbfs = dbfs if dbfs > self.dbfs else max(dbfs, self.dbfs - 4.0)
        self.clipping = clipping
        self.update()

    @_painting
    def paintEvent(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.Antialiasing, True)
        n = 24
        gap = 4
        seg_w = (self.width() - gap * (n - 1)) / n
        lit = int(round(n * min(1.0, max(0.0, (self.dbfs + 60.0) / 60.0))))
        p.setPen(Qt.NoPen)
        for i in range(n):
            if i < lit:
                color = style.DANGER if self.clipping or i >= n - 2 else (style.WARN if i >= n - 6 else style.ACCENT)
            else:
                color = style.LINE
            p.setBrush(QColor(color))
            p.drawRoundedRect(QRectF(i * (seg_w + gap), 0, seg_w, self.height()), 4, 4)


class CameraPreview(QWidget):
    """The live picture, mirrored like a mirror, with an oval the face should fill.

    Images arrive already scaled and converted on the capture thread (`set_image` only
    keeps a reference), so drawing costs the GUI thread one blit.
    """

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self.face_ok: bool | None = None
        self.show_guide = True
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def set_image(self, image: QImage) -> None:
        self._image = image
        self.update()

    def clear(self) -> None:
        self._image = None
        self.face_ok = None
        self.update()

    def set_face_ok(self, ok: bool | None) -> None:
        self.face_ok = ok
        self.update()

    @_painting
    def paintEvent(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.Antialiasing, True)
        r = QRectF(self.rect())
        p.setPen(Qt.NoPen)
        p.setBrush(QColor("#2A3440"))
        p.drawRoundedRect(r, 20, 20)
        if self._image is not None and not self._image.isNull():
            img = self._image
            # cover: fill the rect, crop the overflow, keep the aspect
            sw, sh = img.width(), img.height()
            s = max(r.width() / sw, r.height() / sh)
            tw, th = sw * s, sh * s
            target = QRectF(r.x() + (r.width() - tw) / 2, r.y() + (r.height() - th) / 2, tw, th)
            from kiosk.qt import QPainterPath

            clip = QPainterPath()
            clip.addRoundedRect(r, 20, 20)
            p.setClipPath(clip)
            p.drawImage(target, img)
            p.setClipping(False)
        if self.show_guide:
            ow, oh = r.height() * 0.50, r.height() * 0.70
            oval = QRectF(r.center().x() - ow / 2, r.center().y() - oh / 2 - r.height() * 0.03, ow, oh)
            color = {True: style.ACCENT, False: style.WARN, None: "#FFFFFF"}[self.face_ok]
            p.setBrush(Qt.NoBrush)
            p.setPen(QPen(QColor(color), 5, Qt.DashLine if self.face_ok is not True else Qt.SolidLine))
            p.drawEllipse(oval)


class Keypad(QWidget):
    """A large on-screen keypad for codes and PINs (touch screens have no keyboard)."""

    key = Signal(str)

    def __init__(self, keys: str = "123456789C0<", parent=None) -> None:
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setSpacing(14)
        grid.setContentsMargins(0, 0, 0, 0)
        self.buttons: dict[str, QPushButton] = {}
        for i, k in enumerate(keys):
            text = {"<": "⌫", "C": "C"}.get(k, k)
            b = button(text, "key")
            b.clicked.connect(lambda _=False, k=k: emit(self.key, k))
            grid.addWidget(b, i // 3, i % 3)
            self.buttons[k] = b


class Header(QFrame):
    """Company, site, clock and the language switch. Five quick taps on the logo corner
    open the technician sign-in (hidden: nothing on screen invites it)."""

    lang_clicked = Signal()
    help_clicked = Signal()
    secret_gesture = Signal()
    TAPS = 5
    TAP_WINDOW_S = 3.0

    def __init__(self, company: str, site: str, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("header")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(24, 10, 24, 10)
        lay.setSpacing(16)
        self.logo = QPushButton("")
        self.logo.setObjectName("logo")
        self.logo.setFocusPolicy(Qt.NoFocus)
        self.logo.setFixedSize(64, 64)
        self.logo.paintEvent = self._paint_logo  # a drawn mark, no image file needed
        self.logo.clicked.connect(self._tap)
        self._taps: list[float] = []
        lay.addWidget(self.logo)
        names = QVBoxLayout()
        names.setSpacing(0)
        self.company = label(company, "company", wrap=False)
        self.site = label(site, "site", wrap=False)
        names.addWidget(self.company)
        names.addWidget(self.site)
        lay.addLayout(names)
        lay.addStretch(1)
        self.clock = label("", "clock", wrap=False)
        lay.addWidget(self.clock)
        self.help = button("", "help")
        self.help.clicked.connect(self.help_clicked)
        self.help.hide()
        lay.addWidget(self.help)
        self.lang = button("English", "lang")
        self.lang.clicked.connect(self.lang_clicked)
        lay.addWidget(self.lang)
        self._initial = (company.strip() or "·")[0]

    def _paint_logo(self, _event) -> None:
        p = QPainter(self.logo)
        try:
            self._draw_logo(p)
        finally:
            p.end()

    def _draw_logo(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.Antialiasing, True)
        p.setPen(Qt.NoPen)
        p.setBrush(QColor(style.BRAND))
        p.drawRoundedRect(QRectF(6, 6, 52, 52), 14, 14)
        p.setPen(QColor("white"))
        f = QFont(style.FONT_FAMILY)
        f.setPixelSize(28)
        f.setBold(True)
        p.setFont(f)
        p.drawText(QRectF(6, 6, 52, 52), Qt.AlignCenter, self._initial)

    def _tap(self) -> None:
        now = time.monotonic()
        self._taps = [t for t in self._taps if now - t < self.TAP_WINDOW_S] + [now]
        if len(self._taps) >= self.TAPS:
            self._taps = []
            emit(self.secret_gesture)


class Icon(QWidget):
    """A large round status symbol drawn with paths (no icon font needed):
    ok (tick), warn (!), pause (bars), help (?), info (i), spinner (animated arc)."""

    COLORS = {"ok": style.ACCENT, "warn": style.WARN, "error": style.DANGER, "pause": style.BRAND,
              "help": style.BRAND, "info": style.BRAND, "spinner": style.BRAND}

    def __init__(self, kind: str = "info", diameter: int = 120, parent=None) -> None:
        super().__init__(parent)
        self.kind = kind
        self.phase = 0
        self.setFixedSize(diameter, diameter)

    def set_kind(self, kind: str) -> None:
        self.kind = kind
        self.update()

    def advance(self) -> None:
        self.phase = (self.phase + 1) % 36
        if self.kind == "spinner":
            self.update()

    @_painting
    def paintEvent(self, p: QPainter) -> None:
        p.setRenderHint(QPainter.Antialiasing, True)
        d = min(self.width(), self.height())
        color = QColor(self.COLORS.get(self.kind, style.BRAND))
        if self.kind == "spinner":
            pen_w = d * 0.09
            rect = QRectF(pen_w, pen_w, d - 2 * pen_w, d - 2 * pen_w)
            p.setPen(QPen(QColor(style.LINE), pen_w, Qt.SolidLine, Qt.RoundCap))
            p.drawEllipse(rect)
            p.setPen(QPen(color, pen_w, Qt.SolidLine, Qt.RoundCap))
            p.drawArc(rect, int(-self.phase * 10 * 16), 100 * 16)
            return
        soft = QColor(color)
        soft.setAlpha(40)
        p.setPen(Qt.NoPen)
        p.setBrush(soft)
        p.drawEllipse(QRectF(0, 0, d, d))
        p.setBrush(color)
        inner = d * 0.72
        o = (d - inner) / 2
        p.drawEllipse(QRectF(o, o, inner, inner))
        pen = QPen(QColor("white"), d * 0.075, Qt.SolidLine, Qt.RoundCap, Qt.RoundJoin)
        p.setPen(pen)
        p.setBrush(Qt.NoBrush)
        c = d / 2
        if self.kind == "ok":
            from kiosk.qt import QPainterPath, QPointF

            path = QPainterPath(QPointF(c - d * 0.16, c + d * 0.01))
            path.lineTo(QPointF(c - d * 0.04, c + d * 0.13))
            path.lineTo(QPointF(c + d * 0.18, c - d * 0.11))
            p.drawPath(path)
        elif self.kind in ("warn", "error"):
            p.drawLine(int(c), int(c - d * 0.17), int(c), int(c + d * 0.05))
            p.drawPoint(int(c), int(c + d * 0.16))
        elif self.kind == "pause":
            p.drawLine(int(c - d * 0.07), int(c - d * 0.13), int(c - d * 0.07), int(c + d * 0.13))
            p.drawLine(int(c + d * 0.07), int(c - d * 0.13), int(c + d * 0.07), int(c + d * 0.13))
        elif self.kind == "info":
            p.drawPoint(int(c), int(c - d * 0.15))
            p.drawLine(int(c), int(c - d * 0.03), int(c), int(c + d * 0.17))
        else:  # help: a question mark
            f = QFont(style.FONT_FAMILY)
            f.setPixelSize(int(d * 0.42))
            f.setBold(True)
            p.setFont(f)
            p.drawText(QRectF(0, 0, d, d), Qt.AlignCenter, "?")


def to_qimage(image_bgr: np.ndarray, max_width: int = 640, mirror: bool = True) -> QImage:
    """Convert (and shrink) a BGR frame for display; safe to call on a worker thread."""
    import cv2

    h, w = image_bgr.shape[:2]
    if w > max_width:
        image_bgr = cv2.resize(image_bgr, (max_width, int(h * max_width / w)), interpolation=cv2.INTER_AREA)
    # 32-bit BGRA bytes are Qt's RGB32 on little-endian machines: the format the window's
    # backing store draws from directly. An RGB888 image was converted again on the GUI
    # thread at every paint (a 560x420 preview blit took 0.8 ms instead of 0.35 ms).
    little = sys.byteorder == "little"
    px = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2BGRA if little else cv2.COLOR_BGR2RGBA)
    if mirror:
        px = cv2.flip(px, 1)
    px = np.ascontiguousarray(px)
    h, w = px.shape[:2]
    return QImage(px.data, w, h, 4 * w, QImage.Format_RGB32 if little else QImage.Format_RGBX8888).copy()
