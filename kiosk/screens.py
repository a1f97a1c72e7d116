"""One widget per screen of the interview. A screen renders the session view it is given
in the current language and emits an intent ("consent_yes", "start_answer", ...) when the
candidate touches something; it never decides what comes next (device/session does).
"""

from __future__ import annotations

from collections.abc import Callable

from kiosk import style
from kiosk.i18n import NO_MESSAGE, Message, tr
from kiosk.qt import (
    QColor,
    QGraphicsDropShadowEffect,
    QHBoxLayout,
    QImage,
    QLabel,
    QPixmap,
    QStackedWidget,
    Qt,
    QVBoxLayout,
    QWidget,
    Signal,
    emit,
)
from kiosk.widgets import (
    CameraPreview,
    CountdownRing,
    Icon,
    Keypad,
    LevelMeter,
    QrView,
    button,
    card,
    label,
)

QWIDGETSIZE_MAX = 16777215   # Qt's "no maximum" for a widget's size


def _shadow(w: QWidget) -> None:
    eff = QGraphicsDropShadowEffect(w)
    eff.setBlurRadius(40)
    eff.setOffset(0, 8)
    eff.setColor(QColor(15, 40, 70, 28))
    w.setGraphicsEffect(eff)


def settle_layouts(root: QWidget) -> None:
    """Lay `root` out now for its new texts and styles, not on later passes of the event
    loop (one per level of nesting), in between which a button or label would be drawn at
    the size of its old text. Innermost layouts first: each one that changes size
    invalidates its parent's, which comes later in the walk."""
    for w in reversed([root, *root.findChildren(QWidget)]):
        lay = w.layout()
        if lay is not None:
            lay.activate()


def _column() -> tuple[QWidget, QVBoxLayout]:
    """A column of text and buttons that keeps its natural height (no gaps between lines)."""
    col = QWidget()
    lay = QVBoxLayout(col)
    lay.setContentsMargins(0, 0, 0, 0)
    return col, lay


def _centred(col: QWidget) -> QVBoxLayout:
    outer = QVBoxLayout()
    outer.addStretch(1)
    outer.addWidget(col)
    outer.addStretch(1)
    return outer


class KeypadPage(QWidget):
    """Digits typed on a touch keypad: title, subtitle, the entry, an error line, back and OK.

    The interview-code page and the technician's PIN page; `display` turns the value into
    what the entry shows (spaced digits, or dots for a PIN)."""

    def __init__(self, display: Callable[[str], str], *, min_len: int = 0, max_len: int = 12) -> None:
        super().__init__()
        self.value = ""
        self.lang = "zh"
        self._error: Message = NO_MESSAGE   # drawn again in the new language on a switch
        self._display = display
        self._min_len = min_len
        self._max_len = max_len
        lay = QHBoxLayout(self)
        lay.setContentsMargins(40, 10, 40, 28)
        lay.setSpacing(56)
        col, left = _column()
        left.addStretch(1)
        self.title = label("", "title")
        self.sub = label("", "subtitle")
        self.field = label("", "code", wrap=False)
        self.field.setMinimumHeight(96)
        self.error = label("", "error")
        left.addWidget(self.title)
        left.addWidget(self.sub)
        left.addSpacing(24)
        left.addWidget(self.field)
        left.addWidget(self.error)
        left.addSpacing(16)
        brow = QHBoxLayout()
        brow.setSpacing(18)
        self.back = button("", "ghost")
        self.ok = button("", "primary")
        brow.addWidget(self.back)
        brow.addWidget(self.ok)
        brow.addStretch(1)
        left.addLayout(brow)
        left.addStretch(1)
        lay.addLayout(_centred(col), 5)
        pad_card = card()
        _shadow(pad_card)
        pl = QVBoxLayout(pad_card)
        pl.setContentsMargins(28, 28, 28, 28)
        self.keypad = Keypad("123456789C0<")
        self.keypad.key.connect(self._key)
        pl.addWidget(self.keypad)
        right = QVBoxLayout()
        right.addStretch(1)
        right.addWidget(pad_card)
        right.addStretch(1)
        lay.addLayout(right, 4)
        self.clear()

    def clear(self, error: Message = NO_MESSAGE) -> None:
        self.value = ""
        self._render()
        self.set_error(error)

    def set_error(self, error: Message) -> None:
        self._error = error
        self.error.setText(error.text(self.lang))

    def set_lang(self, lang: str) -> None:
        self.lang = lang
        self.set_error(self._error)

    def complete(self) -> bool:
        return len(self.value) >= self._min_len

    def _key(self, k: str) -> None:
        if k == "C":
            self.value = ""
        elif k == "<":
            self.value = self.value[:-1]
        elif len(self.value) < self._max_len:
            self.value += k
        self._render()
        self.set_error(NO_MESSAGE)

    def _render(self) -> None:
        self.field.setText(self._display(self.value) if self.value else "—")
        if self._min_len:
            self.ok.setEnabled(self.complete())


def _bilingual(value, lang: str) -> str:
    """Text from a Bilingual model, a {"zh","en"} dict or a plain string."""
    if value is None:
        return ""
    if hasattr(value, "text"):
        return value.text(lang)
    if isinstance(value, dict):
        return value.get(lang) or value.get("zh") or value.get("en") or ""
    return str(value)


class Screen(QWidget):
    """Base: `intent` carries what the candidate asked for; `refresh` renders a view."""

    intent = Signal(str)
    state_name = "screen"

    def __init__(self) -> None:
        super().__init__()
        self.lang = "zh"
        # fit_text's bookkeeping per wrapped label: the minimum height the screen gave it
        # (a caption box keeps its size when empty), and the (width, text, font) measured last.
        self._floor: dict[QLabel, int] = {}
        self._measured: dict[QLabel, tuple] = {}

    def refresh(self, view, lang: str) -> None:  # pragma: no cover - overridden
        self.lang = lang

    def tick(self, view) -> None:
        """Called a few times a second for countdowns; cheap."""

    def fit_text(self) -> bool:
        """Give every wrapped label the height its text needs at its current width (Qt's
        layouts do not carry height-for-width through nested columns, so long English lines
        would be clipped). True if a height changed (the layout must run again)."""
        changed = False
        for lab in self.findChildren(QLabel):
            if not (lab.wordWrap() and lab.isVisibleTo(self) and lab.width() > 50):
                continue
            floor = self._floor.setdefault(lab, lab.minimumHeight())
            key = (lab.width(), lab.text(), lab.font().key())
            if self._measured.get(lab) == key:
                continue   # nothing changed: no layout churn on every tick
            self._measured[lab] = key
            # QLabel's heightForWidth is never below its minimum height, so a height once
            # measured at a narrow width (a first layout pass) would stick for good: a gap
            # under a line of text. Measure with the minimum cleared; widths settle after a
            # pass, so this shrinks as well as grows.
            old = lab.minimumHeight()
            lab.setMinimumHeight(0)
            need = max(floor, lab.heightForWidth(lab.width()))
            lab.setMinimumHeight(need)
            changed = changed or need != old
        return changed

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.fit_text()

    def settle(self) -> None:
        """Lay out now after a text or style changed outside `refresh` (a worker's result,
        a refusal): what is drawn next must not be the old text's box."""
        settle_layouts(self)
        if self.fit_text():
            settle_layouts(self)

    def texts(self) -> list[str]:
        """Every visible label/button text (tests check these, not pixels)."""
        out = []
        for w in self.findChildren(QLabel) + self.findChildren(type(button(""))):
            if w.isVisibleTo(self) and w.text():
                out.append(w.text())
        return out

    def _emit(self, name: str):
        return lambda *_: emit(self.intent, name)


class MessageScreen(Screen):
    """A centred card with a big symbol, a title, a sentence and optional buttons: used for
    verifying, paused, help, finishing, done, declined, abandoned, interrupted and error."""

    def __init__(self, state_name: str, icon: str, title_key: str, sub_key: str,
                 buttons: list[tuple[str, str, str]] | None = None) -> None:
        super().__init__()
        self.state_name = state_name
        self.title_key, self.sub_key = title_key, sub_key
        self.fmt: dict = {}   # params of the title and sentence (values: text or Message)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        box = card()
        _shadow(box)
        box.setMinimumWidth(760)
        box.setMaximumWidth(980)
        lay = QVBoxLayout(box)
        lay.setContentsMargins(64, 56, 64, 56)
        lay.setSpacing(22)
        self.icon = Icon(icon, 128)
        lay.addWidget(self.icon, 0, Qt.AlignHCenter)
        self.title = label("", "title", align=Qt.AlignCenter)
        self.sub = label("", "subtitle", align=Qt.AlignCenter)
        self.detail = label("", "muted", align=Qt.AlignCenter)
        self.detail.hide()
        lay.addWidget(self.title)
        lay.addWidget(self.sub)
        lay.addWidget(self.detail)
        self.buttons: dict[str, object] = {}
        if buttons:
            brow = QHBoxLayout()
            brow.setSpacing(20)
            brow.addStretch(1)
            for intent, key, kind in buttons:
                b = button("", kind)
                b.clicked.connect(self._emit(intent))
                b.setProperty("text_key", key)
                self.buttons[intent] = b
                brow.addWidget(b)
            brow.addStretch(1)
            lay.addSpacing(12)
            lay.addLayout(brow)
        row.addWidget(box, 3)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(1)

    def refresh(self, view, lang: str) -> None:
        self.lang = lang
        # fmt params may be Messages themselves (the failed component), drawn in `lang`.
        self.title.setText(Message(self.title_key, self.fmt).text(lang))
        self.sub.setText(Message(self.sub_key, self.fmt).text(lang))
        for b in self.buttons.values():
            b.setText(tr(b.property("text_key"), lang))

    def set_detail(self, text: str) -> None:
        self.detail.setText(text)
        self.detail.setVisible(bool(text))

    def tick(self, view) -> None:
        self.icon.advance()


class IdleScreen(Screen):
    """The sign-in QR code, and the typed interview-code fallback on a keypad."""

    state_name = "idle"
    code_submitted = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.qr_seconds = 120
        self.pages = QStackedWidget(self)
        QVBoxLayout(self).addWidget(self.pages)
        self.pages.layout()
        self._build_qr_page()
        self._build_code_page()

    def _build_qr_page(self) -> None:
        page = QWidget()
        lay = QHBoxLayout(page)
        lay.setContentsMargins(40, 20, 40, 28)
        lay.setSpacing(64)
        col, left = _column()
        left.addStretch(2)
        self.hero = label("", "hero")
        self.sub = label("", "subtitle")
        band = card("band")
        bl = QVBoxLayout(band)
        bl.setContentsMargins(28, 20, 28, 20)
        self.steps = label("", "body")
        bl.addWidget(self.steps)
        left.addWidget(self.hero)
        left.addSpacing(8)
        left.addWidget(self.sub)
        left.addSpacing(28)
        left.addWidget(band)
        left.addSpacing(36)
        self.code_btn = button("", "secondary")
        self.code_btn.clicked.connect(self.show_code_page)
        left.addWidget(self.code_btn, 0, Qt.AlignLeft)
        left.addStretch(3)
        lay.addLayout(_centred(col), 5)
        qr_card = card()
        _shadow(qr_card)
        ql = QVBoxLayout(qr_card)
        ql.setContentsMargins(36, 36, 36, 28)
        ql.setSpacing(16)
        self.qr = QrView()
        self.qr.setMinimumSize(360, 360)
        ql.addWidget(self.qr, 1)
        # Without WeCom (not configured, or unreachable) the card points to the code instead.
        self.qr_off = Icon("info", 150)
        self.qr_off.hide()
        ql.addWidget(self.qr_off, 0, Qt.AlignHCenter)
        self.qr_note = label("", "muted", align=Qt.AlignCenter)
        ql.addWidget(self.qr_note)
        right = QVBoxLayout()
        right.addStretch(1)
        right.addWidget(qr_card)
        right.addStretch(1)
        lay.addLayout(right, 4)
        self.pages.addWidget(page)

    def _build_code_page(self) -> None:
        self.code_page = KeypadPage(" ".join, min_len=4)
        self.code_page.back.clicked.connect(self.show_qr_page)
        self.code_page.ok.clicked.connect(self._submit)
        self.pages.addWidget(self.code_page)

    def show_code_page(self) -> None:
        self.code_page.clear()
        self.pages.setCurrentIndex(1)

    def show_qr_page(self) -> None:
        self.pages.setCurrentIndex(0)

    def type_code(self, code: str) -> None:
        """Enter a code key by key (the demo's candidate uses the keypad like a person)."""
        for ch in code:
            if ch in self.code_page.keypad.buttons:
                self.code_page.keypad.buttons[ch].click()

    def _submit(self) -> None:
        if self.code_page.complete():
            emit(self.code_submitted, self.code_page.value)

    def show_refusal(self, message: Message) -> None:
        self.code_page.set_error(message)
        self.settle()

    def set_qr(self, url: str | None, seconds: float, warning: tuple[str, str] | None = None,
               matrix: list[list[bool]] | None = None) -> None:
        """Show the sign-in QR for `url` (None: no QR sign-in); `warning` (zh, en) replaces
        the note, e.g. when WeCom is known to be unreachable."""
        self.qr_seconds = int(seconds)
        if url:
            self.qr.set_text(url, matrix)
        self.qr.setVisible(bool(url))
        self.qr_off.setVisible(not url)
        self._qr_ok = bool(url)
        self._warning = warning
        self.code_btn.setObjectName("secondary" if url and not warning else "primary")
        self.refresh(None, self.lang)
        self.code_btn.style().unpolish(self.code_btn)
        self.code_btn.style().polish(self.code_btn)
        self._note()
        self.settle()   # the note's style (and font size) may have changed

    def _note(self) -> None:
        warning = getattr(self, "_warning", None)
        if warning:
            self.qr_note.setText(warning[0] if self.lang == "zh" else warning[1])
            self.qr_note.setObjectName("error")
        else:
            self.qr_note.setText(tr("idle_qr_expires" if getattr(self, "_qr_ok", True) else "idle_no_qr",
                                    self.lang, s=self.qr_seconds))
            self.qr_note.setObjectName("muted")
        self.qr_note.style().unpolish(self.qr_note)
        self.qr_note.style().polish(self.qr_note)

    def refresh(self, view, lang: str) -> None:
        self.lang = lang
        self.hero.setText(tr("idle_title", lang))
        qr_ok = getattr(self, "_qr_ok", True)
        self.sub.setText(tr("idle_sub" if qr_ok else "idle_sub_code", lang))
        self.steps.setText(tr("idle_steps", lang))
        self.steps.parentWidget().setVisible(qr_ok)
        self.code_btn.setText(tr("idle_code_btn", lang))
        self._note()
        self.code_page.title.setText(tr("code_title", lang))
        self.code_page.sub.setText(tr("code_sub", lang))
        self.code_page.back.setText(tr("code_back", lang))
        self.code_page.ok.setText(tr("code_ok", lang))
        self.code_page.set_lang(lang)


class WelcomeScreen(Screen):
    """Greeting, the interview plan, and explicit consent (agree / decline)."""

    state_name = "welcome"

    def __init__(self) -> None:
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(40, 10, 40, 28)
        lay.setSpacing(56)
        col, left = _column()
        left.addStretch(1)
        self.hello = label("", "hero")
        self.who = label("", "subtitle", wrap=False)
        self.job = label("", "chip", wrap=False)
        self.plan = label("", "subtitle")
        left.addWidget(self.hello)
        left.addSpacing(6)
        left.addWidget(self.who)
        left.addSpacing(6)
        left.addWidget(self.job, 0, Qt.AlignLeft)
        left.addSpacing(18)
        left.addWidget(self.plan)
        left.addStretch(2)
        lay.addLayout(_centred(col), 4)
        box = card()
        _shadow(box)
        bl = QVBoxLayout(box)
        bl.setContentsMargins(44, 40, 44, 40)
        bl.setSpacing(18)
        self.consent_title = label("", "title", wrap=False)
        bl.addWidget(self.consent_title)
        self.items = []
        for _ in range(4):
            row = QHBoxLayout()
            row.setSpacing(16)
            ic = Icon("ok", 34)
            lab = label("", "body")
            row.addWidget(ic, 0, Qt.AlignTop)
            row.addWidget(lab, 1)
            bl.addLayout(row)
            self.items.append(lab)
        bl.addSpacing(14)
        brow = QHBoxLayout()
        brow.setSpacing(18)
        self.no = button("", "ghost")
        self.no.clicked.connect(self._emit("consent_no"))
        self.yes = button("", "primary")
        self.yes.clicked.connect(self._emit("consent_yes"))
        brow.addWidget(self.no)
        brow.addStretch(1)
        brow.addWidget(self.yes)
        bl.addLayout(brow)
        right = QVBoxLayout()
        right.addStretch(1)
        right.addWidget(box)
        right.addStretch(1)
        lay.addLayout(right, 6)

    def refresh(self, view, lang: str) -> None:
        self.lang = lang
        # The session gives a masked name (J***** L**): enough to confirm it is them, not
        # enough for someone passing the lobby.
        name = getattr(view, "candidate_name", None) or ""
        self.hello.setText(tr("welcome_title", lang))
        self.who.setText(tr("welcome_who", lang, name=name))
        self.who.setVisible(bool(name))
        job = _bilingual(getattr(view, "job_title", None), lang)
        self.job.setText(tr("welcome_job", lang, job=job))
        self.job.setVisible(bool(job))
        total = getattr(view, "total", 0) or 0
        minutes = max(1, round(getattr(view, "planned_s", 0) / 60)) if getattr(view, "planned_s", 0) else max(1, total * 2)
        self.plan.setText(tr("welcome_plan", lang, n=total, min=minutes))
        self.consent_title.setText(tr("consent_title", lang))
        for i, lab in enumerate(self.items):
            lab.setText(tr(f"consent_{i + 1}", lang))
        self.no.setText(tr("consent_no", lang))
        self.yes.setText(tr("consent_yes", lang))

    def fit_text(self) -> bool:
        """Each consent item is exactly as high as its lines: Qt guesses a wrapped label's
        size hint at a narrower width (three lines for item 2 where two are drawn), the card
        is made that tall, and the surplus showed as a gap under item 2 in both languages."""
        changed = super().fit_text()
        for lab in self.items:
            want = lab.minimumHeight() or QWIDGETSIZE_MAX   # not yet measured: no cap
            if lab.maximumHeight() != want:
                lab.setMaximumHeight(want)
                changed = True
        return changed


class DeviceCheckScreen(Screen):
    """Live preview with the face oval, the microphone meter and the self-test's results."""

    state_name = "device_check"

    def __init__(self) -> None:
        super().__init__()
        self.results: dict[str, tuple[bool | None, Message]] = {}
        lay = QHBoxLayout(self)
        lay.setContentsMargins(40, 10, 40, 28)
        lay.setSpacing(40)
        self.preview = CameraPreview()
        self.preview.setMinimumSize(560, 420)
        lay.addWidget(self.preview, 6)
        box = card()
        _shadow(box)
        bl = QVBoxLayout(box)
        bl.setContentsMargins(40, 36, 40, 36)
        bl.setSpacing(14)
        self.title = label("", "title")
        self.sub = label("", "muted")
        bl.addWidget(self.title)
        bl.addWidget(self.sub)
        bl.addSpacing(10)
        self.rows: dict[str, tuple[QLabel, QLabel]] = {}
        for key in ("camera", "face", "mic"):
            row = QHBoxLayout()
            name = label("", "body", wrap=False)
            status = label("", "muted", wrap=False)
            row.addWidget(name)
            row.addStretch(1)
            row.addWidget(status)
            bl.addLayout(row)
            self.rows[key] = (name, status)
            if key == "mic":
                self.meter = LevelMeter()
                bl.addWidget(self.meter)
        self.hint = label("", "body")
        self.hint.setMinimumHeight(60)
        bl.addWidget(self.hint)
        bl.addStretch(1)
        brow = QHBoxLayout()
        brow.setSpacing(16)
        self.retry = button("", "ghost")
        self.retry.clicked.connect(self._emit("check_retry"))
        self.go = button("", "primary")
        self.go.clicked.connect(self._emit("check_continue"))
        brow.addWidget(self.retry)
        brow.addStretch(1)
        brow.addWidget(self.go)
        bl.addLayout(brow)
        lay.addWidget(box, 4)

    def set_results(self, results: dict[str, tuple[bool | None, Message]]) -> None:
        """name -> (ok / None while running, hint: drawn in the language of the moment)."""
        self.results = results
        self._render_results()

    def _render_results(self) -> None:
        lang = self.lang
        hints = []
        all_ok = True
        for key, (_, status) in self.rows.items():
            ok, hint = self.results.get(key, (None, NO_MESSAGE))
            if ok is None:
                status.setText(tr("check_running", lang))
                status.setObjectName("muted")
                all_ok = False
            elif ok:
                status.setText("✓ " + tr("check_ok", lang))
                status.setObjectName("ok")
            else:
                status.setText("✗ " + tr("check_fix", lang))
                status.setObjectName("bad")
                all_ok = False
                if hint:
                    hints.append(hint)
            status.style().unpolish(status)
            status.style().polish(status)
        face = self.results.get("face", (None, NO_MESSAGE))[0]
        self.preview.set_face_ok(face)
        if hints:
            self.hint.setText(hints[0].text(lang))
        elif all_ok:
            self.hint.setText(tr("check_face_ok", lang))
        else:
            self.hint.setText(tr("check_speak", lang))
        self.go.setEnabled(all_ok)
        self.settle()   # a status in another style has another font size

    def refresh(self, view, lang: str) -> None:
        self.lang = lang
        self.title.setText(tr("check_title", lang))
        self.sub.setText(tr("check_sub", lang))
        for key, tkey in (("camera", "check_camera"), ("face", "check_face"), ("mic", "check_mic")):
            self.rows[key][0].setText(tr(tkey, lang))
        self.retry.setText(tr("check_retry", lang))
        self.go.setText(tr("check_continue", lang))
        self._render_results()


class QuestionScreen(Screen):
    """The question, its prompt media, the preparation / answer countdown, the recording
    indicator, live captions, and start / done / retake / next."""

    state_name = "question"

    def __init__(self) -> None:
        super().__init__()
        self.mode = "prepare"   # prepare | answer | saving | review
        self.total_s = 1.0
        lay = QVBoxLayout(self)
        lay.setContentsMargins(40, 4, 40, 28)
        lay.setSpacing(18)
        top = QHBoxLayout()
        self.progress = label("", "chip", wrap=False)
        self.dots = QHBoxLayout()
        self.dots.setSpacing(8)
        top.addWidget(self.progress)
        top.addSpacing(16)
        top.addLayout(self.dots)
        top.addStretch(1)
        self.rec = label("", "recording", wrap=False)
        self.rec.setMinimumHeight(44)
        top.addWidget(self.rec)
        lay.addLayout(top)
        body = QHBoxLayout()
        body.setSpacing(32)
        qcard = card()
        _shadow(qcard)
        ql = QVBoxLayout(qcard)
        ql.setContentsMargins(44, 32, 44, 28)
        ql.setSpacing(14)
        self.question = label("", "question", align=Qt.AlignLeft | Qt.AlignTop)
        self.question.setTextInteractionFlags(Qt.NoTextInteraction)
        ql.addWidget(self.question)
        self.media = QLabel()
        self.media.setAlignment(Qt.AlignCenter)
        self.media.hide()
        ql.addWidget(self.media, 1)
        self.media_video = CameraPreview()
        self.media_video.show_guide = False
        self.media_video.hide()
        ql.addWidget(self.media_video, 1)
        ql.addStretch(1)
        self.cap_title = label("", "muted", wrap=False)
        self.captions = label("", "caption")
        self.captions.setMinimumHeight(72)
        self.captions.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        ql.addWidget(self.cap_title)
        ql.addWidget(self.captions)
        body.addWidget(qcard, 7)
        side = QVBoxLayout()
        side.setSpacing(14)   # room for a two-line countdown hint above the self-view
        self.phase = label("", "subtitle", align=Qt.AlignCenter)
        self.ring = CountdownRing(diameter=170)
        self.self_view = CameraPreview()
        self.self_view.setFixedSize(256, 192)
        self.hint = label("", "muted", align=Qt.AlignCenter)
        self.status_icon = Icon("ok", 104)
        side.addWidget(self.status_icon, 0, Qt.AlignHCenter)
        side.addWidget(self.phase)
        side.addWidget(self.ring, 0, Qt.AlignHCenter)
        side.addWidget(self.hint)
        side.addStretch(1)
        side.addWidget(self.self_view, 0, Qt.AlignHCenter)
        body.addLayout(side, 3)
        lay.addLayout(body, 1)
        brow = QHBoxLayout()
        brow.setSpacing(18)
        brow.addStretch(1)
        self.retake = button("", "ghost")
        self.retake.clicked.connect(self._emit("retake"))
        self.start = button("", "primary")
        self.start.clicked.connect(self._emit("start_answer"))
        self.done = button("", "primary")
        self.done.clicked.connect(self._emit("answer_done"))
        self.next = button("", "primary")
        self.next.clicked.connect(self._emit("next"))
        for b in (self.retake, self.start, self.done, self.next):
            b.setMinimumWidth(240)
            brow.addWidget(b)
        lay.addLayout(brow)
        # Start as the preparation view: widgets of other phases must not count towards
        # the screen's minimum size (the stack takes the largest of all screens).
        for w in (self.retake, self.done, self.next, self.status_icon, self.rec):
            w.hide()

    def set_mode(self, mode: str) -> None:
        self.mode = mode

    def set_media(self, kind: str, pixmap: QPixmap | None = None) -> None:
        self.media.setVisible(kind == "image" and pixmap is not None)
        self.media_video.setVisible(kind == "video")
        if kind == "image" and pixmap is not None:
            self.media.setPixmap(pixmap.scaled(640, 300, Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def set_video_frame(self, image: QImage) -> None:
        self.media_video.set_image(image)

    def set_captions(self, text: str) -> None:
        if text:
            # Show the tail: the newest words matter, and the box has a fixed height.
            self.captions.setText(("…" + text[-160:]) if len(text) > 160 else text)
        else:
            self.captions.setText(tr("q_captions_wait", self.lang))

    def refresh(self, view, lang: str) -> None:
        self.lang = lang
        q = getattr(view, "question", None)
        i = (getattr(view, "index", 0) or 0) + 1
        n = getattr(view, "total", 0) or 0
        self.progress.setText(tr("q_progress", lang, i=i, n=n))
        self._render_dots(i, n)
        self.question.setText(_bilingual(getattr(q, "prompt", None), lang))
        self.cap_title.setText(tr("q_captions", lang))
        if not self.captions.text() or self.captions.text() in (tr("q_captions_wait", "zh"), tr("q_captions_wait", "en")):
            self.set_captions("")   # the placeholder, in the current language
        mode = self.mode
        self.phase.setText({"prepare": tr("q_prepare", lang), "answer": tr("q_answer", lang),
                            "saving": tr("q_saving", lang), "review": tr("q_review_title", lang)}.get(mode, ""))
        self.status_icon.set_kind("spinner" if mode == "saving" else "ok")
        self.rec.setText(tr("q_recording", lang))
        # A countdown a nervous candidate cannot read the end of is a threat: both rings say
        # what happens at zero (recording starts / the answer is saved).
        hint_key = {"prepare": "q_prepare_hint", "answer": "q_answer_hint"}.get(mode)
        self.hint.setText(tr(hint_key, lang) if hint_key else "")
        left = getattr(view, "retakes_left", 0) or 0
        self.retake.setText(tr("q_retake", lang, n=left))
        self.start.setText(tr("q_start", lang))
        self.done.setText(tr("q_done", lang))
        last = i >= n
        self.next.setText(tr("q_finish" if last else "q_next", lang))
        visible = {
            self.status_icon: mode in ("saving", "review"), self.rec: mode == "answer",
            self.hint: mode in ("prepare", "answer"), self.start: mode == "prepare",
            self.done: mode == "answer", self.retake: mode == "review" and left > 0,
            self.next: mode == "review", self.ring: mode in ("prepare", "answer"),
        }
        # Hide before showing: a moment with both phases' widgets visible would grow the
        # window (top-level windows grow to fit their content and never shrink back).
        for w, on in visible.items():
            if not on:
                w.hide()
        for w, on in visible.items():
            if on:
                w.show()
        if q is not None:
            self.total_s = float(q.preparation_s if mode == "prepare" else q.answer_s) or 1.0
        self.tick(view)

    def _render_dots(self, i: int, n: int) -> None:
        while self.dots.count() < n:
            d = QLabel()
            d.setFixedSize(14, 14)
            self.dots.addWidget(d)
        for k in range(self.dots.count()):
            w = self.dots.itemAt(k).widget()
            w.setVisible(k < n)
            color = style.BRAND if k < i else style.LINE
            w.setStyleSheet(f"background: {color}; border-radius: 7px;")

    def tick(self, view) -> None:
        self.status_icon.advance()
        remaining = getattr(view, "remaining_s", None)
        if remaining is not None and self.mode in ("prepare", "answer"):
            self.ring.set_time(remaining, self.total_s, tr("q_seconds", self.lang),
                               urgent_below=10 if self.mode == "answer" else 3)


class TechnicianScreen(Screen):
    """PIN entry (with lockout) and the service panel: device, self-test, outbox, quit."""

    state_name = "technician"
    pin_entered = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.pages = QStackedWidget(self)
        QVBoxLayout(self).addWidget(self.pages)
        self.lines: list[Message] = []   # the panel's body, untranslated
        self.entry = KeypadPage(lambda pin: "●" * len(pin))
        self.entry.back.clicked.connect(self._emit("tech_cancel"))
        self.entry.ok.setText("OK")
        self.entry.ok.clicked.connect(lambda: emit(self.pin_entered, self.entry.value))
        self.pages.addWidget(self.entry)
        # panel page
        panel = QWidget()
        pl2 = QVBoxLayout(panel)
        pl2.setContentsMargins(40, 10, 40, 10)
        pl2.setSpacing(16)
        self.panel_title = label("", "title")
        pl2.addWidget(self.panel_title)
        info = card()
        il = QVBoxLayout(info)
        il.setContentsMargins(36, 28, 36, 28)
        self.info = label("", "body")
        self.info.setTextFormat(Qt.PlainText)
        self.info.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        il.addWidget(self.info)
        il.addStretch(1)
        pl2.addWidget(info, 1)
        prow = QHBoxLayout()
        prow.setSpacing(18)
        self.selftest = button("", "secondary")
        self.selftest.clicked.connect(self._emit("tech_selftest"))
        self.quit = button("", "ghost")
        self.quit.clicked.connect(self._emit("tech_quit"))
        self.leave = button("", "primary")
        self.leave.clicked.connect(self._emit("tech_leave"))
        prow.addWidget(self.selftest)
        prow.addWidget(self.quit)
        prow.addStretch(1)
        prow.addWidget(self.leave)
        pl2.addLayout(prow)
        self.pages.addWidget(panel)

    def show_pin(self, error: Message = NO_MESSAGE) -> None:
        self.entry.clear(error)
        self.pages.setCurrentIndex(0)
        self.settle()

    def show_error(self, error: Message) -> None:
        """A message on the PIN page (lockout, no PIN set) without clearing what is typed."""
        self.entry.set_error(error)
        self.settle()

    def show_panel(self, lines: list[Message]) -> None:
        """The panel's body: kept as Messages, drawn in the current language and again on
        every switch (refresh)."""
        self.lines = list(lines)
        self.info.setText(self._body())
        self.pages.setCurrentIndex(1)
        self.settle()

    def _body(self) -> str:
        return "\n".join(m.text(self.lang) for m in self.lines)

    def refresh(self, view, lang: str) -> None:
        self.lang = lang
        self.entry.title.setText(tr("tech_title", lang))
        self.entry.sub.setText(tr("tech_sub", lang))
        self.entry.back.setText(tr("code_back", lang))
        self.entry.set_lang(lang)
        self.panel_title.setText(tr("tech_panel", lang))
        self.selftest.setText(tr("tech_selftest", lang))
        self.quit.setText(tr("tech_exit_app", lang))
        self.leave.setText(tr("tech_leave", lang))
        self.info.setText(self._body())
