"""The kiosk window: header, the screen for the session's state, and the wiring between the
candidate's touches, the capture pipeline and device/session's state machine.

It translates (touch -> event, state -> screen, worker result -> event) and keeps the GUI
thread free: nothing here waits on a device, a model or the disk for more than a moment.
It never decides the interview's course; SessionMachine does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from device import session as ses
from device.qr import read_qr
from device.version import software_version
from kiosk import style
from kiosk.i18n import NO_MESSAGE, TEXT, Message, tr
from kiosk.pin import PinGate
from kiosk.qt import (
    QApplication,
    QElapsedTimer,
    QHBoxLayout,
    QKeySequence,
    QObject,
    QPixmap,
    QShortcut,
    QStackedWidget,
    Qt,
    QTimer,
    QVBoxLayout,
    QWidget,
    Signal,
    emit,
)
from kiosk.screens import (
    DeviceCheckScreen,
    IdleScreen,
    MessageScreen,
    QuestionScreen,
    Screen,
    TechnicianScreen,
    WelcomeScreen,
    settle_layouts,
)
from kiosk.widgets import Header, label, qr_matrix, to_qimage

log = logging.getLogger(__name__)

S = ses.State
QUESTION_STATES = {S.PREPARE, S.ANSWER, S.REVIEW}
HELP_STATES = {S.WELCOME, S.DEVICE_CHECK, S.PREPARE, S.ANSWER, S.REVIEW}  # = session.HELP_FROM
# States where the hidden technician gesture is honoured (never in a candidate's interview).
TECH_STATES = {S.IDLE, S.DONE, S.DECLINED, S.ABANDONED, S.INTERRUPTED, S.FAILED}
# Self-test results whose hint the candidate can act on (move into the light, speak up, step
# back, close the door); any other failure (cable, USB port, disk, clock) is the technician's.
CANDIDATE_FIXABLE = {"camera_face", "camera_light", "mic_noise_floor", "mic_level"}


def only_countdown_changed(old, new) -> bool:
    """True if two session views differ at most in the seconds left (the countdown)."""
    try:
        return dataclasses.replace(old, remaining_s=None, resume_remaining_s=None) == \
            dataclasses.replace(new, remaining_s=None, resume_remaining_s=None)
    except (TypeError, ValueError):   # not SessionViews (a test's stand-in): render
        return False


class Bridge(QObject):
    """Signals emitted from worker threads; Qt queues them onto the GUI thread."""

    preview = Signal(object)       # QImage
    faces = Signal(int)
    presence = Signal(str)         # "lost" | "returned"
    hardware = Signal(str, str)    # component, detail
    answer = Signal(object)        # capture.AnswerResult
    answer_error = Signal(str)
    selftest = Signal(object)      # (run number, list[CheckResult] or the exception it raised)
    verification = Signal(object)  # device.signin.VerificationRow
    qr = Signal(object, object, object)  # QrState | None, warning (zh, en) | None, QR matrix
    pin = Signal(bool, str, object)   # ok, reason, i18n.Message
    tech_info = Signal(object)     # list[Message]: the service panel's lines
    view = Signal(object)          # SessionView published by the machine (any thread)
    media_frame = Signal(object)   # QImage of a video prompt


class SessionThread:
    """Every call into the session machine and the store runs here, one at a time and in
    order, so the GUI thread never waits for SQLite (fsync, a busy WAL) or the report
    builder. Results come back through Bridge signals."""

    def __init__(self) -> None:
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="session", daemon=True)
        self._thread.start()

    def post(self, fn: Callable, *args) -> None:
        self._q.put((fn, args))

    def pending(self) -> int:
        return self._q.qsize()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything posted so far has run (shutdown, tests)."""
        done = threading.Event()
        self.post(done.set)
        return done.wait(timeout)

    def stop(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:  # one failing call must not stop the interview
                log.exception("session thread: %s failed", getattr(fn, "__name__", fn))


class StallMonitor(QObject):
    """Measures how long the GUI event loop was blocked: a 10 ms timer that notes late
    firings. Figures go to logs and the demo's report, never into a test assertion."""

    def __init__(self, parent=None, interval_ms: int = 10) -> None:
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.max_stall_ms = 0.0
        self.stalls_over_50ms = 0
        self.samples = 0
        self.excluded = 0              # beats skipped on the caller's word (screenshots)
        self.excluded_max_ms = 0.0     # the longest of those, reported, never hidden
        self._clock = QElapsedTimer()
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.PreciseTimer)
        self._timer.timeout.connect(self._beat)

    def start(self) -> None:
        self._clock.start()
        self._last = 0
        self._timer.start(self.interval_ms)
        if os.environ.get("KIOSK_STALL_TRACE"):
            # Diagnostics: print what the GUI thread is doing when it is late.
            self._gui_ident = threading.get_ident()
            threading.Thread(target=self._trace, name="stall-trace", daemon=True).start()

    def _trace(self) -> None:
        import sys
        import traceback

        reported = -1
        while True:
            time.sleep(0.01)
            late = self._clock.elapsed() - self._last
            if late > 45 and self._last != reported:
                reported = self._last
                frame = sys._current_frames().get(self._gui_ident)
                stack = "".join(traceback.format_stack(frame, limit=12)) if frame is not None else ""
                del frame   # holding a frame keeps its locals (a QPainter) alive
                log.warning("GUI thread late %d ms in %s:\n%s", late, self.label(), stack)

    def reset(self) -> None:
        self.max_stall_ms = 0.0
        self.stalls_over_50ms = 0
        self.samples = 0
        self.excluded = 0
        self.excluded_max_ms = 0.0
        self.worst = []

    def skip_next(self) -> None:
        """The caller blocks the loop on purpose (a test or demo screenshot): the next beat
        is not counted as a stall, but counted in `excluded` / `excluded_max_ms`."""
        self._skip = True

    WARMUP_MS = 3000   # first layout, style sheet and CJK font loading: once, at start-up

    def _beat(self) -> None:
        now = self._clock.elapsed()
        stall = now - self._last - self.interval_ms
        self._last = now
        if getattr(self, "_skip", False):
            self._skip = False
            if now >= self.WARMUP_MS:
                self.excluded += 1
                self.excluded_max_ms = max(self.excluded_max_ms, float(stall))
            return
        if now < self.WARMUP_MS:
            return
        self.samples += 1
        if stall > self.max_stall_ms:
            self.max_stall_ms = float(stall)
        if stall > 50:
            self.stalls_over_50ms += 1
            self.worst = sorted(getattr(self, "worst", []) + [(float(stall), self.label())],
                                reverse=True)[:5]
            log.debug("GUI thread stalled %.0f ms (%s)", stall, self.label())

    def label(self) -> str:
        return str(getattr(self.parent(), "state", ""))


class KioskWindow(QWidget):
    """The whole terminal UI. Parts are given, not looked up: settings, store, the session
    machine, the capture pipeline, the face counter, sign-in functions and a clock."""

    screen_changed = Signal(str)   # state name shown (tests and the demo's screenshots)
    # The self-test takes ~4 s (camera 1.5 s after its first frame, microphone 1.5 s); a
    # camera that gives no first frame costs it 3 s more.
    SELFTEST_TIMEOUT_S = 15.0

    def __init__(self, settings, store, machine, pipeline, *, clock: Callable[[], float] = time.time,
                 audit=None, media_root: Path | None = None, signin=None, selftest=None,
                 lang: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.store = store
        self.machine = machine
        self.pipeline = pipeline
        self.clock = clock
        self.audit = audit
        self.media_root = Path(media_root) if media_root else None
        self.signin = signin
        self.selftest_fn = selftest
        self.lang = lang or settings.device.default_language
        self.view = machine.view
        self.state = None
        self.technician = False
        self._in_tech_pin = False   # the PIN page is up (technician is set once it is right)
        self.allow_close = False
        self._answer_ending = False
        self._qr = None
        self._selftest_running = False
        self._selftest_gen = 0       # which run a result belongs to ("Check again" starts a new one)
        self.selftest_error = ""     # the last self-test exception, for the technician panel
        self._face_seen_at = 0.0
        self._last_faces = 0
        self._video_prompt = None
        self._ready_sent = False
        self._failed_component = ""
        self.answer_save_s: list[float] = []   # "I'm done" -> answer committed (for the benchmark)
        self._answer_end_t = 0.0
        self.shown_states: list[str] = []
        self.pin_gate = PinGate(settings.kiosk.technician_pin_hash, store, clock=clock)

        self.setObjectName("root")
        self.setWindowTitle(settings.device.company_name or "Interview kiosk")
        self.setWindowFlags(Qt.FramelessWindowHint | Qt.Window)
        root = QVBoxLayout(self)
        root.setContentsMargins(0, 0, 0, 0)
        root.setSpacing(0)
        dev = settings.device
        site = " · ".join(x for x in (dev.site_name, dev.site_location) if x)
        self.header = Header(dev.company_name or "", site)
        self.header.lang_clicked.connect(self.toggle_language)
        self.header.help_clicked.connect(lambda: self._send(ses.HelpRequested()))
        self.header.secret_gesture.connect(self.open_technician)
        root.addWidget(self.header)
        self.stack = QStackedWidget()
        body = QVBoxLayout()
        body.setContentsMargins(0, 16, 0, 0)
        body.addWidget(self.stack, 1)
        root.addLayout(body, 1)
        foot = QHBoxLayout()
        foot.setContentsMargins(32, 0, 32, 12)
        self.footnote = label("", "footnote", wrap=False)
        foot.addWidget(self.footnote)
        foot.addStretch(1)
        root.addLayout(foot)

        self.screens: dict[str, Screen] = {}
        self.idle = self._add(IdleScreen())
        self.idle.code_submitted.connect(self.submit_code)
        self.verifying = self._add(MessageScreen("verifying", "spinner", "verifying_title", "verifying_sub",
                                                 [("cancel", "back_home", "primary")]))
        self.welcome = self._add(WelcomeScreen())
        self.check = self._add(DeviceCheckScreen())
        self.question = self._add(QuestionScreen())
        self._add(MessageScreen("paused", "pause", "paused_title", "paused_sub"))
        self._add(MessageScreen("help", "help", "help_title", "help_sub",
                                [("help_resolved", "help_resume", "primary")]))
        self._add(MessageScreen("finishing", "spinner", "finishing_title", "finishing_sub"))
        self._add(MessageScreen("done", "ok", "done_title", "done_sub"))
        self._add(MessageScreen("declined", "info", "declined_title", "declined_sub"))
        self._add(MessageScreen("abandoned", "info", "abandoned_title", "abandoned_sub"))
        self._add(MessageScreen("interrupted", "warn", "interrupted_title", "interrupted_sub"))
        self.error = self._add(MessageScreen("failed", "error", "error_title", "error_sub"))
        self.tech = self._add(TechnicianScreen())
        self.tech.pin_entered.connect(self.try_pin)

        self.bridge = Bridge()
        self.bridge.preview.connect(self._on_preview)
        self.bridge.faces.connect(self._on_faces)
        self.bridge.presence.connect(self._on_presence)
        self.bridge.hardware.connect(self._on_hardware)
        self.bridge.answer.connect(self._on_answer)
        self.bridge.answer_error.connect(self._on_answer_error)
        self.bridge.selftest.connect(self._on_selftest)
        self.bridge.media_frame.connect(self.question.set_video_frame)
        if pipeline is not None:
            # Worker threads -> signals; the QImage conversion happens on the camera thread.
            pipeline.on_preview = lambda f: emit(self.bridge.preview, to_qimage(f.image, 480))
            b = self.bridge
            pipeline.on_faces = lambda n: emit(b.faces, n)
            pipeline.on_presence = lambda change: emit(b.presence, change)
            pipeline.on_hardware = lambda comp, detail: emit(b.hardware, comp, detail)
            pipeline.on_answer = lambda result: emit(b.answer, result)
            pipeline.on_answer_error = lambda detail: emit(b.answer_error, detail)

        self.stall = StallMonitor(self)
        self._tick = QTimer(self)
        self._tick.timeout.connect(self._on_tick)
        self._poll = QTimer(self)
        self._poll.timeout.connect(self._poll_verifications)
        self._meter = QTimer(self)
        self._meter.timeout.connect(self._update_meter)
        self._watchdog = QTimer(self)
        self._watchdog.timeout.connect(lambda: self._sd("WATCHDOG=1"))
        self.bridge.view.connect(self._on_view_changed)
        self.bridge.verification.connect(self._apply_verification)
        self.bridge.qr.connect(self._show_qr)
        self.bridge.pin.connect(self._pin_result)
        self.bridge.tech_info.connect(lambda lines: self.tech.show_panel(lines) if self.technician else None)
        # The machine publishes on the session thread; the signal brings the view here.
        machine.subscribe(lambda view: emit(self.bridge.view, view))
        self.session = SessionThread()
        self._qr_pending = False
        self._poll_pending = False
        self._scan_at = 0.0
        self._scanned, self._scanned_at = "", 0.0
        self.setStyleSheet(style.stylesheet(self._scale()))
        self._swallow_closing_keys()

    # -- set-up -----------------------------------------------------------------------------
    def _add(self, screen: Screen) -> Screen:
        self.screens[screen.state_name] = screen
        self.stack.addWidget(screen)
        screen.intent.connect(self.on_intent)
        return screen

    def _scale(self) -> float:
        screen = QApplication.primaryScreen()
        if screen is None:
            return 1.0
        g = screen.geometry()
        return max(1.0, min(g.width() / 1280, g.height() / 800, 2.0))

    def start(self) -> None:
        """Start timers and capture, show the first screen."""
        self._rehearse_screens()
        if self.pipeline is not None:
            self.pipeline.start()
        self.stall.start()
        self._tick.start(250)
        self._poll.start(200)
        self._meter.start(100)
        interval = self._sd_interval()
        self._watchdog.start(int((interval or 10.0) * 1000))
        self._on_view_changed(self.machine.view)

    def _rehearse_screens(self) -> None:
        """Show every screen once, before the interview and the stall monitor start.

        The first time a screen is shown Qt polishes its widgets against the style sheet,
        loads fonts and lays it out at the window's size, and PySide creates Python enum
        types on first use (the first QWidget.style() call alone builds QStyle's ~18 enums,
        15 ms). Done here it costs start-up ~0.3 s once instead of 20-50 ms of frozen
        screen at each first welcome / device check / question in front of a candidate."""
        current = self.stack.currentWidget()
        self.style().polish(self.footnote)   # the lazily created QStyle enums
        for screen in self.screens.values():
            self.stack.setCurrentWidget(screen)
            screen.refresh(self.view, self.lang)
            self.relayout(screen)
        self.stack.setCurrentWidget(current)

    def stop(self) -> None:
        for t in (self._tick, self._poll, self._meter, self._watchdog):
            t.stop()
        self._stop_video_prompt()
        if self.pipeline is not None:
            self.pipeline.stop()
        self.session.drain()
        self.session.stop()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._ready_sent:
            self._ready_sent = True
            QTimer.singleShot(0, lambda: self._sd("READY=1"))

    @staticmethod
    def _sd(state: str) -> bool:
        try:
            from device import sdnotify
        except ImportError:
            return False
        try:
            return bool(sdnotify.notify(state))
        except Exception:
            log.exception("sd_notify failed")
            return False

    @staticmethod
    def _sd_interval() -> float | None:
        try:
            from device import sdnotify

            return sdnotify.watchdog_interval()
        except Exception:
            return None

    # -- keyboard: the candidate must not be able to leave the app --------------------------
    # The keys that close or leave a desktop application. They are taken by application-wide
    # shortcuts that do nothing: an application event filter did the same, but ran Python
    # (and took the GIL) for every event of every widget, ~20,000 times per interview.
    CLOSING_KEYS = ("Esc", "Alt+F4", "Ctrl+Q", "Ctrl+W")

    def _swallow_closing_keys(self) -> None:
        for seq in self.CLOSING_KEYS:
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.ApplicationShortcut)
            sc.activated.connect(self._closing_key_ignored)

    def _closing_key_ignored(self) -> None:
        if not self.technician:
            log.info("closing shortcut ignored outside technician mode")

    @staticmethod
    def _is_closing_key(event) -> bool:
        key, mods = event.key(), event.modifiers()
        return key == Qt.Key_Escape or (key == Qt.Key_F4 and bool(mods & Qt.AltModifier)) or \
            (key in (Qt.Key_Q, Qt.Key_W) and bool(mods & Qt.ControlModifier))

    def keyPressEvent(self, event) -> None:
        if not self.technician and self._is_closing_key(event):
            log.info("closing shortcut ignored outside technician mode")
            return
        super().keyPressEvent(event)

    def closeEvent(self, event) -> None:
        if self.allow_close or self.technician:
            event.accept()
        else:
            event.ignore()

    # -- language ----------------------------------------------------------------------------
    def toggle_language(self) -> None:
        langs = list(self.settings.device.languages) or ["zh", "en"]
        if len(langs) < 2:
            return
        self.lang = langs[(langs.index(self.lang) + 1) % len(langs)] if self.lang in langs else langs[0]
        self._render()

    # -- the state machine -> screens ---------------------------------------------------------
    def _send(self, event) -> None:
        """Hand an event to the machine (on the session thread); the new view comes back
        through bridge.view."""
        self.session.post(self.machine.handle, event)

    def _screen_for(self, state) -> str:
        if state in QUESTION_STATES:
            return "question"
        return str(state.value if hasattr(state, "value") else state)

    def _on_view_changed(self, view) -> None:
        previous, old = self.state, self.view
        self.view = view
        self.state = view.state
        if previous != self.state:
            self._enter(self.state, previous)
        if self._in_tech_pin and self.state not in TECH_STATES:
            self._in_tech_pin = False   # a session started: the PIN page gives way
        if self.technician:
            return
        if previous == self.state and only_countdown_changed(old, view):
            # The machine publishes once a second while a countdown runs; only the ring
            # moves. Re-rendering every text and laying the window out again each second
            # was most of the GUI thread's work during a question.
            self.current_screen().tick(view)
            return
        self._render()

    def _enter(self, state, previous) -> None:
        log.info("screen %s -> %s", previous, state)
        p = self.pipeline
        if state != S.ANSWER and previous == S.ANSWER and p is not None and p.recording \
                and state not in (S.PAUSED, S.HELP) and not self._answer_ending:
            # Left ANSWER without AnswerFinished (hardware failed, reset): the partial
            # recording is not an answer; delete it.
            p.abort_answer()
        if state in (S.IDLE, S.DONE, S.DECLINED, S.ABANDONED, S.INTERRUPTED, S.FAILED):
            if p is not None:
                p.watch_presence = False
                p.abort_answer()
            self._answer_ending = False
            self._stop_video_prompt()
            self.check.preview.clear()
            self.question.self_view.clear()
            self.question.set_captions("")
        if state == S.IDLE:
            self.idle.show_qr_page()
            self._refresh_qr(force=True)
            if p is not None and previous is not None and not (p.camera.alive and p.mic.alive):
                p.restart_dead_sources()   # after a failure screen: try the devices again
        elif state == S.DEVICE_CHECK:
            self._run_selftest()
        elif state == S.PREPARE:
            self._answer_ending = False
            self.question.set_mode("prepare")
            self.question.set_captions("")
            self._show_prompt_media(self.view.question)
            if p is not None:
                p.watch_presence = True
                p.presence.reset(time.monotonic())
                job = self._job()
                p.prepare_analyzer(self._analyzer_key(), self.view.question, job, self.settings)
        elif state == S.ANSWER:
            self.question.set_mode("answer")
            if p is not None and not p.recording and not self._answer_ending:
                p.watch_presence = True
                p.begin_answer(self._session_id(), self._analyzer_key(), self.view.question,
                               self._job(), self.settings)
        elif state == S.REVIEW:
            self._answer_ending = False
            self.question.set_mode("review")
        elif state == S.FINISHING:
            if p is not None:
                p.watch_presence = False
        if state == S.IDLE:
            self._failed_component = ""
            self.question.next.setEnabled(True)
        if state in (S.PREPARE, S.REVIEW):
            self.question.next.setEnabled(True)
        emit(self.screen_changed, self._screen_for(state))
        self.shown_states.append(self._screen_for(state))

    def _render(self) -> None:
        view = self.view
        if self.technician or self._in_tech_pin:
            name = "technician"
        else:
            name = self._screen_for(self.state)
        screen = self.screens.get(name)
        if screen is None:
            log.error("no screen for state %s", name)
            return
        if name == "verifying":
            self._render_verifying(screen, view)
        if name == "failed":
            comp = self._failed_component if self._failed_component in ("camera", "microphone") else "device"
            screen.fmt = {"component": Message.of(f"component_{comp}")}
        screen.refresh(view, self.lang)
        if self.stack.currentWidget() is not screen:
            self.stack.setCurrentWidget(screen)
        self.render_chrome()
        self.relayout(screen)

    def render_chrome(self) -> None:
        """The header's buttons and the footer, in the current language."""
        self.header.lang.setText(tr("switch_lang", self.lang))
        self.header.help.setText(tr("help", self.lang))
        self.header.help.setVisible(self.state in HELP_STATES and not (self.technician or self._in_tech_pin))
        self.footnote.setText(tr("device_footer", self.lang, device=self.settings.device.id))

    def relayout(self, screen: Screen) -> None:
        """Lay the window out for its new texts now, not on a later pass of the event loop.

        New texts (a language switch, a new screen) only post layout requests; until they
        run, buttons and labels keep the widths of the old texts, and whatever is drawn or
        grabbed in between shows "ign i" for "Sign in". Wrapped labels are then given the
        height their text needs at the new widths, which may move things once more."""
        for _ in range(3):
            # Only what is on screen: the header, the shown screen, the stack and the window
            # (the thirteen hidden screens are laid out when they are shown).
            settle_layouts(self.header)
            settle_layouts(screen)
            for w in (self.stack, self):
                w.layout().activate()
            if not screen.fit_text():
                break

    def _render_verifying(self, screen: MessageScreen, view) -> None:
        """A refused sign-in (the machine's message "signin.<reason>") shows why, in the
        words the phone also shows, and a way back; otherwise the spinner."""
        key = getattr(view, "message_key", None) or ""
        refused = key.startswith("signin.")
        msgs = getattr(self.signin, "MESSAGES", {}) if self.signin is not None else {}
        pair = msgs.get(key.removeprefix("signin."), msgs.get("unknown_user")) if refused else None
        screen.title_key = "verify_failed" if refused else "verifying_title"
        screen.sub_key = "verifying_sub"
        screen.icon.set_kind("warn" if refused else "spinner")
        screen.buttons["cancel"].setVisible(refused)
        screen.sub.setVisible(not refused)
        screen.refresh(view, self.lang)
        screen.set_detail((pair[0] if self.lang == "zh" else pair[1]) if pair else "")
        screen.detail.setObjectName("subtitle" if refused else "muted")
        screen.detail.style().unpolish(screen.detail)
        screen.detail.style().polish(screen.detail)

    def current_screen(self) -> Screen:
        return self.stack.currentWidget()

    # -- timers --------------------------------------------------------------------------------
    def _on_tick(self) -> None:
        if self.session.pending() < 4:   # never pile up ticks behind a slow commit
            self.session.post(self.machine.tick)
        self.header.clock.setText(time.strftime("%H:%M", time.localtime(self.clock())))
        view = self.machine.view
        screen = self.current_screen()
        screen.tick(view)
        screen.fit_text()   # converges on the final widths a moment after a screen change
        if self.state == S.ANSWER and self.pipeline is not None:
            self.question.set_captions(self.pipeline.partial_text)
            remaining = getattr(view, "remaining_s", None)
            time_up = getattr(view, "time_up", False) or (remaining is not None and remaining <= 0)
            if time_up and not self._answer_ending:
                self.finish_answer()  # time is up: save what was said
        if self.state == S.IDLE:
            self._refresh_qr()

    def _update_meter(self) -> None:
        if self.state == S.DEVICE_CHECK and self.pipeline is not None:
            mic = self.pipeline.mic
            self.check.meter.set_level(mic.level_dbfs, getattr(mic, "clipping", False))

    def _wecom_warning(self, now: float) -> tuple[str, str] | None:
        """The sync daemon's recent WeCom probe (kv wecom.health) said WeCom is down: tell
        the candidate to use the interview code before they try to scan."""
        try:
            health = self.store.kv_get("wecom.health", None)
        except Exception:
            return None
        if isinstance(health, dict) and health.get("ok") is False and now - float(health.get("at") or 0) < 900:
            msgs = getattr(self.signin, "MESSAGES", {})
            return msgs.get("wecom_unreachable")
        return None

    def _refresh_qr(self, force: bool = False) -> None:
        if self.signin is None or getattr(self.settings, "wecom", None) is None:
            if force:
                self.idle.set_qr(None, 0)
            return
        now = self.clock()
        if self._qr_pending or (not force and self._qr is not None and now < self._qr.rotate_at):
            return
        self._qr_pending = True

        def make() -> None:   # on the session thread: inserts the signin_states row
            matrix = None
            try:
                qr = self.signin.new_qr_state(self.store, self.settings, now)
                matrix = qr_matrix(qr.url)
            except Exception:
                log.exception("could not create a sign-in QR state")
                qr = None
            emit(self.bridge.qr, qr, self._wecom_warning(now), matrix)

        self.session.post(make)

    def _show_qr(self, qr, warning, matrix) -> None:
        self._qr_pending = False
        self._qr = qr
        ttl = self.settings.wecom.state_ttl_s if self.settings.wecom else 0
        self.idle.set_qr(qr.url if qr else None, ttl, warning, matrix)

    def _poll_verifications(self) -> None:
        if self.signin is None or self.state not in (S.IDLE, S.VERIFYING) or self.technician \
                or self._poll_pending:
            return
        self._poll_pending = True

        def poll() -> None:
            try:
                row = self.signin.take_verification(self.store, self.settings.device.id, now=self.clock())
                if row is None and self.state == S.IDLE:
                    row = self._scan_invitation()
            except Exception:
                log.exception("polling verifications failed")
                row = None
            finally:
                self._poll_pending = False
            if row is not None:
                emit(self.bridge.verification, row)

        self.session.post(poll)

    def _scan_invitation(self):
        """An invitation QR held up to the camera at the idle screen signs in with no network.

        Runs on the session thread (a decode takes 5-20 ms, still not the GUI thread's to
        spend), at most twice a second, and answers the same card held up once, not once per
        frame."""
        now = self.clock()
        if now - self._scan_at < 0.5:
            return None
        self._scan_at = now
        p = self.pipeline
        frame = p.camera.latest() if p is not None and p.camera.alive else None
        if frame is None:
            return None
        text = read_qr(frame.image, self.signin.INVITATION_PREFIX)
        if text is None:
            return None
        if text == self._scanned and now - self._scanned_at < 10.0:
            return None
        self._scanned, self._scanned_at = text, now
        return self.signin.local_signin(self.store, self.settings, now, qr_text=text, audit=self.audit)

    def _apply_verification(self, row) -> None:
        if row is None:
            self.idle.show_refusal(Message.of("verify_failed"))
            return
        if not row.ok and row.method == "code":
            # A mistyped code: say so on the keypad and let them correct it.
            refusal = row.refusal
            self.idle.show_refusal(Message.both(refusal.message_zh, refusal.message_en)
                                   if refusal else Message.of("verify_failed"))
            return
        if self.state == S.IDLE:
            self._send(ses.SignInStarted(row.method))
        if row.ok and row.roster_entry is not None:
            self._send(ses.Verified(row.roster_entry, row.roster_entry.job_id, row.method, row.id))
        else:
            refusal = row.refusal
            self._send(ses.VerificationFailed(refusal.reason if refusal else "unknown_user"))
            if refusal is not None:
                self.idle.show_refusal(Message.both(refusal.message_zh, refusal.message_en))

    # -- candidate's touches ----------------------------------------------------------------------
    def submit_code(self, code: str) -> None:
        if self.signin is None:
            return
        now = self.clock()

        def check() -> None:
            try:
                row = self.signin.local_signin(self.store, self.settings, now, code=code, audit=self.audit)
            except Exception:
                log.exception("interview code sign-in failed")
                row = None
            emit(self.bridge.verification, row)

        self.session.post(check)

    def on_intent(self, intent: str) -> None:
        log.debug("intent %s", intent)
        if intent == "consent_yes":
            self._send(ses.ConsentGiven())
        elif intent == "consent_no":
            self._send(ses.ConsentDeclined())
        elif intent == "check_continue":
            self._send(ses.DeviceCheckPassed())
        elif intent == "check_retry":
            self._run_selftest()
        elif intent == "start_answer":
            self._send(ses.StartAnswer())
        elif intent == "answer_done":
            self.finish_answer()
        elif intent == "retake":
            self._send(ses.Retake())
        elif intent == "next":
            self.question.next.setEnabled(False)   # one touch, one event
            self._send(ses.NextQuestion())
        elif intent == "cancel":
            self._send(ses.Cancel())
        elif intent == "help_resolved":
            self._send(ses.HelpResolved())
        elif intent == "tech_cancel" or intent == "tech_leave":
            self.close_technician()
        elif intent == "tech_selftest":
            self._run_selftest()
        elif intent == "tech_quit":
            self.allow_close = True
            QApplication.instance().quit()

    def finish_answer(self) -> None:
        if self.state != S.ANSWER or self._answer_ending:
            return
        self._answer_ending = True
        self._answer_end_t = time.monotonic()
        self.question.set_mode("saving")
        self._render()
        if self.pipeline is None or not self.pipeline.recording:
            self._send(ses.AnswerFinished("", {}, [], 0.0))
            return
        self.pipeline.end_answer()   # result arrives through bridge.answer

    # -- worker results (queued onto the GUI thread) ---------------------------------------------
    def _on_answer(self, result) -> None:
        if self._answer_end_t:
            self.answer_save_s.append(time.monotonic() - self._answer_end_t)
        self._record_media(result.media)
        if result.transcript:
            self.question.set_captions(result.transcript)   # what was understood, for review
        self._send(ses.AnswerFinished(result.transcript, result.analysis, result.media, result.duration_s))
        self._answer_ending = False

    def _record_media(self, media: list[dict]) -> None:
        """Reference the encrypted recordings from the store's `media` table (retention
        deletes rows and files together)."""
        sid = getattr(self.view, "session_id", None)

        def insert() -> None:
            with self.store.transaction():
                for m in media:
                    self.store.db["media"].insert({
                        "id": m["id"], "session_id": sid, "answer_id": m.get("answer_id"),
                        "kind": m["kind"], "path": m["path"], "size": m["size"], "sha256": m["sha256"],
                    }, replace=True)

        self.session.post(insert)

    def _on_answer_error(self, detail: str) -> None:
        self._answer_ending = False
        self._send(ses.HardwareFailed("recorder", detail))

    def _on_preview(self, image) -> None:
        if self.state == S.DEVICE_CHECK:
            self.check.preview.set_image(image)
        elif self.state in QUESTION_STATES:
            self.question.self_view.set_image(image)

    def _on_faces(self, n: int) -> None:
        self._last_faces = n
        now = time.monotonic()
        if n >= 1:
            self._face_seen_at = now
        if self.state == S.DEVICE_CHECK and not self._selftest_running:
            face_ok = n >= 1 or now - self._face_seen_at < 1.0
            hint = NO_MESSAGE if face_ok else Message.of("check_face_missing")
            if self.check.results.get("face") != (face_ok, hint):
                # Five detections a second mostly say what the row already says; re-styling
                # and laying out the card for each was needless GUI-thread work.
                self.check.set_results({**self.check.results, "face": (face_ok, hint)})
        if self.state in QUESTION_STATES:
            self.question.self_view.set_face_ok(n >= 1)

    def _on_presence(self, change: str) -> None:
        if change == "lost":
            self._send(ses.FaceLost())
        elif change == "returned":
            self._send(ses.FaceReturned())

    def _on_hardware(self, component: str, detail: str) -> None:
        log.error("hardware failure: %s: %s", component, detail)
        self._failed_component = component
        if self.pipeline is not None:
            self.pipeline.abort_answer()
        self._answer_ending = False
        self._send(ses.HardwareFailed(component, detail))

    # -- device check ---------------------------------------------------------------------------
    def _run_selftest(self) -> None:
        if self._selftest_running or self.pipeline is None or self.selftest_fn is None:
            return
        self._selftest_running = True
        self._selftest_gen += 1
        gen = self._selftest_gen
        self.check.set_results({"camera": (None, NO_MESSAGE), "face": (None, NO_MESSAGE),
                                "mic": (None, NO_MESSAGE)})
        screen = QApplication.primaryScreen()
        size = (screen.geometry().width(), screen.geometry().height()) if screen else None
        p = self.pipeline

        def work() -> None:
            try:
                results = self.selftest_fn(self.settings, p.camera, p.mic,
                                           face_detector=p.face_counter, display_size=size,
                                           duration_s=1.5)
            except Exception as exc:
                log.exception("self-test failed")
                results = exc
            emit(self.bridge.selftest, (gen, results))

        threading.Thread(target=work, name="selftest", daemon=True).start()
        # A self-test that never reports (a driver call that blocks) must not leave the
        # candidate looking at "Checking…" for ever: after this long the rows show the calm
        # staff sentence; a late result still replaces it.
        QTimer.singleShot(int(self.SELFTEST_TIMEOUT_S * 1000), lambda: self._selftest_overdue(gen))

    def _selftest_overdue(self, gen: int) -> None:
        if gen != self._selftest_gen or not self._selftest_running:
            return
        log.error("self-test did not finish within %.0f s", self.SELFTEST_TIMEOUT_S)
        self._show_selftest_error(TimeoutError(f"self-test did not finish within {self.SELFTEST_TIMEOUT_S:.0f} s"))

    def _show_selftest_error(self, exc: BaseException) -> None:
        """Every row ends in a final state: the candidate reads the calm staff sentence (an
        OpenCV or PortAudio message means nothing to them), the technician the detail in the
        service panel (and the log has the traceback). The face row still follows the live
        detector afterwards (_on_faces) if the camera delivers."""
        self._selftest_running = False
        self.selftest_error = f"{type(exc).__name__}: {exc}"
        staff = (False, Message.of("check_staff"))
        face = (True, NO_MESSAGE) if time.monotonic() - self._face_seen_at < 1.0 else staff
        self.check.set_results({"camera": staff, "face": face, "mic": staff})
        if self.technician:
            self.session.post(lambda: emit(self.bridge.tech_info, self._technician_lines()))

    def _on_selftest(self, outcome) -> None:
        gen, results = outcome
        if gen != self._selftest_gen:
            return   # an older run's result, overtaken by "Check again"
        if isinstance(results, Exception):
            self._show_selftest_error(results)
            return
        try:
            self._apply_selftest(results)
        except Exception as exc:   # a result we cannot read must not leave rows "checking"
            log.exception("self-test result could not be shown")
            self._show_selftest_error(exc)

    def _apply_selftest(self, results) -> None:
        self._selftest_running = False
        self.selftest_error = ""
        self.last_selftest = results
        by = {r.name: r for r in results}

        def row(names: list[str]) -> tuple[bool, Message]:
            found = [by[n] for n in names if n in by]
            bad = [r for r in found if not r.ok]
            if not found:   # the check could not run (no camera frames): staff's job
                return (False, Message.of("check_staff"))
            if not bad:
                return (True, NO_MESSAGE)
            if bad[0].name not in CANDIDATE_FIXABLE:
                # "check the cable", "use a USB 3 port": work for the technician (their panel
                # lists the hint); the candidate is asked to wait for staff.
                return (False, Message.of("check_staff"))
            return (False, Message.both(bad[0].hint_zh, bad[0].hint_en))

        cam = row(["camera", "camera_rate"])
        face = row(["camera_face", "camera_light"])
        if not face[0] and time.monotonic() - self._face_seen_at < 1.0:
            face = (True, NO_MESSAGE)  # the live detector sees a face now: trust the live view
        mic = row(["microphone", "mic_noise_floor", "mic_level"])
        self.check.set_results({"camera": cam, "face": face, "mic": mic})
        if self.technician:
            self.session.post(lambda: emit(self.bridge.tech_info, self._technician_lines()))
        dead = [n for n in ("camera", "microphone") if n in by and not by[n].ok]
        if dead and self.state == S.DEVICE_CHECK:
            self._send(ses.DeviceCheckFailed(by[dead[0]].hint_en))

    # -- prompt media ---------------------------------------------------------------------------
    def _show_prompt_media(self, question) -> None:
        self._stop_video_prompt()
        media = getattr(question, "media", None)
        kind = getattr(media, "kind", "none") if media is not None else "none"
        path = self._media_path(getattr(media, "path", None))
        if kind == "image" and path is not None:
            pix = QPixmap(str(path))
            self.question.set_media("image", pix if not pix.isNull() else None)
        elif kind == "video" and path is not None:
            self.question.set_media("video")
            self._play_video_prompt(path)
        else:
            self.question.set_media("none")

    def _media_path(self, rel: str | None) -> Path | None:
        if not rel or self.media_root is None:
            return None
        p = (self.media_root / rel).resolve()
        if not str(p).startswith(str(self.media_root.resolve())) or not p.is_file():
            log.error("question media %s not found under %s", rel, self.media_root)
            return None
        return p

    def _play_video_prompt(self, path: Path) -> None:
        from hardware.camera import FileCamera

        try:
            cam = FileCamera(path, pace="real", loop=True)
        except Exception:
            log.exception("video prompt cannot be played")
            return
        cam.on_frame(lambda f: emit(self.bridge.media_frame, to_qimage(f.image, 640, mirror=False)))
        cam.start()
        self._video_prompt = cam

    def _stop_video_prompt(self) -> None:
        if self._video_prompt is not None:
            self._video_prompt.stop()
            self._video_prompt = None

    # -- helpers -------------------------------------------------------------------------------
    def _session_id(self) -> str:
        return str(getattr(self.view, "session_id", None) or "no-session")

    def _analyzer_key(self) -> str:
        v = self.view
        return f"{self._session_id()}:{getattr(v, 'index', 0)}:{getattr(v, 'attempt', 0)}"

    def _job(self):
        return getattr(self.view, "job", None)

    # -- technician ------------------------------------------------------------------------------
    def open_technician(self) -> None:
        if self.state not in TECH_STATES:
            return
        self.technician = False
        self._in_tech_pin = True
        self.stack.setCurrentWidget(self.tech)
        self.tech.refresh(self.view, self.lang)
        self.tech.show_pin(NO_MESSAGE)
        self.header.help.hide()
        self.session.post(lambda: emit(self.bridge.pin, False, "opened", self._pin_message()))

    def _pin_message(self, reason: str = "") -> Message:
        """Runs on the session thread (reads the lockout state from the store)."""
        gate = self.pin_gate
        if not gate.configured:
            return Message.of("tech_no_pin")
        left = gate.locked_for()
        if left > 0:
            return Message.of("tech_locked", s=int(left) + 1)
        if reason == "wrong":
            return Message.of("tech_wrong", n=gate.tries_left())
        return NO_MESSAGE

    def try_pin(self, pin: str) -> None:
        """scrypt and the lockout's store row take a while: the session thread does it."""
        self.tech.entry.ok.setEnabled(False)

        def check() -> None:
            ok, reason = self.pin_gate.check(pin)
            if self.audit is not None:
                try:
                    self.audit.append("technician", "technician.pin", {"ok": ok, "reason": reason})
                except Exception:
                    log.exception("audit of a PIN attempt failed")
            emit(self.bridge.pin, ok, reason, NO_MESSAGE if ok else self._pin_message(reason))

        self.session.post(check)

    def _pin_result(self, ok: bool, reason: str, message: Message) -> None:
        if self.stack.currentWidget() is not self.tech:
            self.tech.entry.ok.setEnabled(True)
            return
        if reason == "opened":   # the lockout state, shown when the PIN pad opens
            self.tech.show_error(message)
            return
        self.tech.entry.ok.setEnabled(True)
        if ok:
            self.technician = True
            self.tech.show_panel([Message.of("tech_loading")])
            self.session.post(lambda: emit(self.bridge.tech_info, self._technician_lines()))
        else:
            self.tech.show_pin(message)

    def close_technician(self) -> None:
        self.technician = False
        self._in_tech_pin = False
        self._render()

    def _technician_info(self, lang: str = "en") -> str:
        """The service panel's body as text in `lang` (what the panel shows in it)."""
        return "\n".join(m.text(lang) for m in self._technician_lines())

    def _technician_lines(self) -> list[Message]:
        """The service panel's lines, kept untranslated (`Message`) so the panel follows the
        language switch. Runs on the session thread (reads the store). Device state only,
        never candidate data; a store error's text is shown (it is the technician's)."""
        s = self.settings
        state = str(getattr(self.state, "value", self.state))
        lines = [Message.of("tech_device", device=s.device.id, tenant=s.device.tenant),
                 Message.of("tech_site", site=f"{s.device.site_name} {s.device.site_location}".strip()),
                 Message.of("tech_version", version=software_version()),
                 Message.of("tech_state", state=Message.of(f"state_{state}") if f"state_{state}" in TEXT
                            else Message.both(state, state))]
        try:
            stats = self.store.outbox_stats(time.time())
            lines.append(Message.of("tech_outbox", n=stats.get("depth", "?"),
                                    s=f"{stats.get('oldest_undelivered_age_s') or 0:.0f}",
                                    delivered=stats.get("delivered", "?")))
        except Exception as exc:
            log.exception("outbox statistics for the service panel failed")
            lines.append(Message.of("tech_outbox_error", error=f"{type(exc).__name__}: {exc}"))
        p = self.pipeline
        if p is not None:
            def status(alive: bool) -> Message:
                return Message.of("tech_running" if alive else "tech_not_running")
            size = getattr(p.camera, "size", None)
            size = f"{size[0]}x{size[1]}" if isinstance(size, tuple) and len(size) == 2 else str(size or "")
            lines.append(Message.of("tech_camera", status=status(p.camera.alive), size=size))
            lines.append(Message.of("tech_mic", status=status(p.mic.alive), level=f"{p.mic.level_dbfs:.0f}"))
        lines.append(Message.of("tech_stall", ms=f"{self.stall.max_stall_ms:.0f}"))
        if getattr(self, "selftest_error", ""):
            lines.append(Message.of("tech_selftest_error", error=self.selftest_error))
        results = getattr(self, "last_selftest", []) or []
        if not results and not getattr(self, "selftest_error", ""):
            lines.append(Message.of("tech_no_selftest"))
        for r in results:
            row = {"result": Message.of("tech_pass" if r.ok else "tech_fail"), "name": r.name, "value": r.value}
            if r.ok or not (r.hint_zh or r.hint_en):
                lines.append(Message.of("tech_check", **row))
            else:
                lines.append(Message.of("tech_check_hint", **row,
                                        hint=Message.both(r.hint_zh or r.hint_en, r.hint_en or r.hint_zh)))
        return lines
