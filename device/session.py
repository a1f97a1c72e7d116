"""The interview session state machine: which screen the kiosk shows, when it moves on, and
what is committed to the store (answers as they end, one result per session, events, notes).

Plain Python driven by events and an injectable clock. It never imports Qt, never starts a
thread, never touches hardware or the network, and never logs candidate names or transcripts.
"""

from __future__ import annotations

import json
import logging
import math
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from device import questions as questions_mod
from device.records import AnswerRecord, CandidateRef, EventRecord, ResultRecord, topic

log = logging.getLogger(__name__)


class State(StrEnum):
    IDLE = "idle"
    VERIFYING = "verifying"
    WELCOME = "welcome"
    DEVICE_CHECK = "device_check"
    PREPARE = "prepare"
    ANSWER = "answer"
    REVIEW = "review"
    FINISHING = "finishing"
    DONE = "done"
    HELP = "help"
    PAUSED = "paused"
    DECLINED = "declined"
    ABANDONED = "abandoned"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


# A session (sessions row) is open in these states.
IN_SESSION = frozenset(
    {
        State.WELCOME,
        State.DEVICE_CHECK,
        State.PREPARE,
        State.ANSWER,
        State.REVIEW,
        State.HELP,
        State.PAUSED,
        State.FINISHING,
    }
)
# The screens shown after a session ended; they show no candidate data and time out to idle.
END_STATES = frozenset(
    {State.DONE, State.DECLINED, State.ABANDONED, State.INTERRUPTED, State.FAILED}
)
# Help can be asked for from these, and the machine returns to where it was.
HELP_FROM = frozenset(
    {State.WELCOME, State.DEVICE_CHECK, State.PREPARE, State.ANSWER, State.REVIEW}
)
# Face tracking only runs after consent and the device check.
PAUSE_FROM = frozenset({State.PREPARE, State.ANSWER, State.REVIEW})

END_REASON_STATE = {
    "completed": State.DONE,
    "declined": State.DECLINED,
    "abandoned": State.ABANDONED,
    "interrupted": State.INTERRUPTED,
    "failed": State.FAILED,
}

FINISH_RETRY_S = 1.0  # how often FINISHING retries a failed save
RECOVER_RETRY_S = 30.0  # how often IDLE retries closing sessions whose save failed


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInStarted:
    method: str = "wecom"


@dataclass(frozen=True)
class Verified:
    entry: Any  # device.roster.RosterEntry
    job_id: str
    method: str = "wecom"
    verification_id: str | None = None


@dataclass(frozen=True)
class VerificationFailed:
    reason: str


@dataclass(frozen=True)
class ConsentGiven:
    pass


@dataclass(frozen=True)
class ConsentDeclined:
    pass


@dataclass(frozen=True)
class DeviceCheckPassed:
    pass


@dataclass(frozen=True)
class DeviceCheckFailed:
    hint: str = ""


@dataclass(frozen=True)
class StartAnswer:
    pass


@dataclass(frozen=True)
class AnswerFinished:
    transcript: str = field(default="", repr=False)
    analysis: dict = field(default_factory=dict, repr=False)
    media: list = field(default_factory=list, repr=False)
    duration_s: float = 0.0


@dataclass(frozen=True)
class Retake:
    pass


@dataclass(frozen=True)
class NextQuestion:
    pass


@dataclass(frozen=True)
class HelpRequested:
    pass


@dataclass(frozen=True)
class HelpResolved:
    pass


@dataclass(frozen=True)
class FaceLost:
    pass


@dataclass(frozen=True)
class FaceReturned:
    pass


@dataclass(frozen=True)
class HardwareFailed:
    component: str
    detail: str = ""


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class Reset:
    pass


Event = (
    SignInStarted
    | Verified
    | VerificationFailed
    | ConsentGiven
    | ConsentDeclined
    | DeviceCheckPassed
    | DeviceCheckFailed
    | StartAnswer
    | AnswerFinished
    | Retake
    | NextQuestion
    | HelpRequested
    | HelpResolved
    | FaceLost
    | FaceReturned
    | HardwareFailed
    | Cancel
    | Reset
)


# --- what the UI renders ------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    """The screen model. Outside a session (idle, the end screens) it holds no candidate data.

    `candidate_name` is already masked (张*伟): the screen stands in a lobby.
    `index` is 0-based; `remaining_s` counts down the current state's deadline; in HELP and
    PAUSED `resume_state` / `resume_remaining_s` say where the session returns and with how
    much time left. `message_key` names a message for the UI (see docs/internals.md).
    """

    state: State = State.IDLE
    session_id: str | None = None
    job_id: str | None = None
    job_title: dict[str, str] | None = None
    candidate_name: str | None = None
    language: str | None = None
    question: Any = None  # device.questions.Question
    index: int = 0
    total: int = 0
    planned_s: float = 0.0
    attempt: int = 0
    retakes_left: int = 0
    answered: int = 0
    deadline: float | None = None
    remaining_s: float | None = None
    time_up: bool = False
    resume_state: State | None = None
    resume_remaining_s: float | None = None
    message_key: str | None = None
    hint: str | None = None
    job: Any = field(default=None, repr=False)  # device.questions.Job, for the report builder
    questions: tuple = field(default=(), repr=False)


@dataclass(frozen=True)
class AnswerRow:
    """One committed answer (a retake is a new row with attempt + 1)."""

    id: str
    session_id: str
    question_id: str
    idx: int
    attempt: int
    started: float | None
    ended: float | None
    transcript: str = field(repr=False)
    analysis: dict = field(repr=False)
    media: list = field(repr=False)

    @property
    def duration_s(self) -> float:
        if self.started is None or self.ended is None:
            return 0.0
        return max(0.0, self.ended - self.started)


ReportBuilder = Callable[[SessionView, list[AnswerRow]], dict]


def mask_name(name: str | None) -> str:
    """张三 -> 张*, 张三丰 -> 张*丰, 'Alice Smith' -> 'A**** S****' (same rule as the WeCom notifier)."""
    name = (name or "").strip()
    if not name:
        return ""
    if any("\u3400" <= ch <= "\u9fff" for ch in name):
        if len(name) <= 2:
            return name[0] + "*"
        return name[0] + "*" * (len(name) - 2) + name[-1]
    return " ".join(w[0] + "*" * max(len(w) - 1, 1) for w in name.split())


def latest_attempts(answers: list[AnswerRow]) -> list[AnswerRow]:
    """The answers that count: the last attempt of each question, in question order."""
    best: dict[int, AnswerRow] = {}
    for a in answers:
        if a.idx not in best or a.attempt >= best[a.idx].attempt:
            best[a.idx] = a
    return [best[i] for i in sorted(best)]


def minimal_report(view: SessionView, answers: list[AnswerRow]) -> dict:
    """The report when no analysis is wired in: what was answered, no scores."""
    return {
        "kind": "minimal",
        "total": 0,
        "recommendation": "review",
        "answered": len(answers),
        "planned": view.total,
        "answers": [
            {"question_id": a.question_id, "idx": a.idx, "attempt": a.attempt,
             "duration_s": round(a.duration_s, 2)}
            for a in answers
        ],
        "note": "No automatic scoring on this terminal; HR reviews the transcripts.",
    }


# --- the session being run ----------------------------------------------------------------------


@dataclass
class _Live:
    """An open session: what the machine knows beyond the sessions row."""

    id: str
    entry_id: str
    name: str = field(repr=False)  # never logged; only in the encrypted store and masked view
    job_id: str
    job: Any
    questions: list
    language: str
    started: float
    method: str = ""
    verification_id: str | None = None
    idx: int = 0
    attempt: int = 1
    phase_started: float = 0.0
    time_up: bool = False
    resume: State | None = None
    resume_remaining: float = 0.0
    face_lost_since: float | None = None
    flags: set[str] = field(default_factory=set)
    attempts: dict[int, int] = field(default_factory=dict)  # idx -> last committed attempt
    hint: str | None = None
    consent_at: float | None = None
    last_finish_try: float = -math.inf
    # Answer rows whose insert failed (store locked or full): kept and retried, never dropped.
    pending: list[tuple] = field(default_factory=list)
    last_flush_try: float = -math.inf

    @property
    def question(self) -> Any:
        return self.questions[self.idx] if 0 <= self.idx < len(self.questions) else None

    def data(self) -> dict:
        return {
            "candidate_name": self.name,
            "method": self.method,
            "verification_id": self.verification_id,
            "question_ids": [q.id for q in self.questions],
            "consent_at": self.consent_at,
            "flags": sorted(self.flags),
        }


def _job_title(job: Any, fallback: str) -> dict[str, str]:
    title = getattr(job, "title", None)
    if title is not None and hasattr(title, "zh"):
        return {"zh": title.zh, "en": title.en}
    return {"zh": fallback, "en": fallback}


def _title_text(title: dict[str, str] | None) -> str:
    if not title:
        return ""
    zh, en = title.get("zh", ""), title.get("en", "")
    return zh if not en or en == zh else f"{zh}（{en}）"


def _tb(exc: BaseException) -> str:
    """A traceback without the exception's message: messages can quote candidate data."""
    return "".join(traceback.format_tb(exc.__traceback__)).rstrip()


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class SessionMachine:
    """Drive it with handle(event) and tick() (>= 2 Hz); render `view`; call recover() once at
    start-up. Invalid events are logged and ignored; no method raises."""

    def __init__(
        self,
        store: Any,
        settings: Any,
        *,
        clock: Callable[[], float] = time.time,
        report_builder: ReportBuilder | None = None,
        bank: Any = None,
        questions: list | None = None,
    ) -> None:
        """`bank` (a QuestionBank) replaces the installed one; `questions` replaces the plan
        (every interview asks exactly these)."""
        self.store = store
        self.settings = settings
        self.clock = clock
        self.report_builder: ReportBuilder = report_builder or minimal_report
        self._bank = bank
        self._questions = list(questions) if questions is not None else None
        self._cfg = settings.session
        self._state = State.IDLE
        self._live: _Live | None = None
        self._deadline: float | None = None
        self._message: str | None = None
        self._subscribers: list[Callable[[SessionView], None]] = []
        self._view = SessionView()
        self._last_signature: tuple = ()
        self._needs_recover = False
        self._last_recover_try = -math.inf
        self._orphans: list[tuple] = []  # unsaved answer rows of sessions left for recovery

    # --- public API ------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def view(self) -> SessionView:
        return self._view

    def subscribe(self, callback: Callable[[SessionView], None]) -> None:
        """callback(view) after every change of the view (state, countdown second, message)."""
        self._subscribers.append(callback)

    def reconfigure(self, settings: Any) -> bool:
        """Use `settings` (e.g. with HR's pushed config applied) from the next interview on.
        Refused (False) unless idle with no interview open: a candidate keeps the timeouts
        and retakes their interview started with."""
        if self._state is not State.IDLE or self._live is not None:
            return False
        self.settings = settings
        self._cfg = settings.session
        return True

    def handle(self, event: Any) -> State:
        """Apply one event. Due timeouts are applied first: the clock decides, not arrival order."""
        now = self.clock()
        try:
            self._apply_timeouts(now)
            handler = getattr(self, f"_on_{type(event).__name__}", None)
            if handler is None or not isinstance(event, _EVENT_TYPES):
                log.warning("session: unknown event type %s ignored", type(event).__name__)
            elif handler(event, now) is False:
                log.info("session: %s ignored in state %s", type(event).__name__, self._state)
        except Exception as e:  # the kiosk must keep running whatever a bug does
            log.error("session: %s while handling %s in state %s\n%s",
                      type(e).__name__, type(event).__name__, self._state, _tb(e))
        self._publish(now)
        return self._state

    def tick(self) -> State:
        """Apply timeouts (countdowns, face-lost pause, screen timeouts); retry failed saves."""
        now = self.clock()
        try:
            self._apply_timeouts(now)
            if self._live is not None and self._live.pending:
                if now - self._live.last_flush_try >= FINISH_RETRY_S:
                    self._live.last_flush_try = now
                    self._flush_pending(self._live.pending)
            if self._state is State.FINISHING and self._live is not None:
                if now - self._live.last_finish_try >= FINISH_RETRY_S:
                    self._try_finish(now)
            if (self._state is State.IDLE and self._needs_recover
                    and now - self._last_recover_try >= RECOVER_RETRY_S):
                self._last_recover_try = now
                self._flush_pending(self._orphans)
                self._recover(now, show=False)
        except Exception as e:
            log.error("session: %s in tick (state %s)\n%s", type(e).__name__, self._state, _tb(e))
        self._publish(now)
        return self._state

    def recover(self) -> list[str]:
        """At start-up: close every session the store still has open as `interrupted`,
        keeping its committed answers, and queue its result. Idempotent; returns the ids."""
        now = self.clock()
        try:
            ids = self._recover(now, show=self._state is State.IDLE)
        except Exception as e:
            log.error("session: recover failed: %s\n%s", type(e).__name__, _tb(e))
            ids = []
        self._publish(now)
        return ids

    # --- timeouts ---------------------------------------------------------------------------

    def _t(self, name: str) -> float:
        return float(getattr(self._cfg.timeouts, name))

    def _apply_timeouts(self, now: float) -> None:
        # A clock jump can make several deadlines due at once; each step sets its next
        # deadline from `now`, so this settles within a few steps.
        for _ in range(10):
            if not self._timeout_step(now):
                return

    def _timeout_step(self, now: float) -> bool:
        live = self._live
        if (self._state in PAUSE_FROM and live is not None and live.face_lost_since is not None
                and now - live.face_lost_since >= float(self._cfg.face_lost_pause_s)):
            self._pause(now)
            return True
        if self._deadline is None or now < self._deadline:
            return False
        s = self._state
        if s is State.VERIFYING:
            self._message = "signin.timeout"
            self._go_idle(now)
        elif s in (State.WELCOME, State.DEVICE_CHECK, State.HELP, State.PAUSED):
            self._end("abandoned", now, detail={"timeout": str(s)})
        elif s is State.PREPARE:
            self._message = None
            self._start_answer(now)
        elif s is State.ANSWER:
            assert live is not None
            if not live.time_up:
                # The UI stops the recording and sends AnswerFinished; wait for it, not forever.
                live.time_up = True
                self._message = "answer_time_up"
                self._deadline = now + float(self._cfg.answer_grace_s)
            else:
                log.error("session %s: no recording %.0f s after the answer time was up",
                          live.id[:8], float(self._cfg.answer_grace_s))
                self._end("failed", now, detail={"component": "recorder",
                                                  "detail": "no answer recording arrived"})
        elif s is State.REVIEW:
            self._next_question(now, auto=True)
        elif s is State.FINISHING:
            log.error("session %s: could not save the result for %.0f s; left for recovery",
                      live.id[:8] if live else "-", self._t("finishing"))
            self._needs_recover = True
            if live is not None:
                self._orphans.extend(live.pending)
            self._live = None
            self._message = "save_failed"
            self._enter(State.FAILED, now, self._t("failed"))
        elif s in END_STATES:
            self._go_idle(now)
        else:
            self._deadline = None
        return True

    # --- event handlers (return False when the event does not apply) -----------------------

    def _on_SignInStarted(self, ev: SignInStarted, now: float) -> bool:
        if self._state not in (State.IDLE, State.VERIFYING):
            return False
        self._message = None
        self._enter(State.VERIFYING, now, self._t("verifying"))
        return True

    def _on_VerificationFailed(self, ev: VerificationFailed, now: float) -> bool:
        if self._state not in (State.IDLE, State.VERIFYING):
            return False
        reason = str(ev.reason or "unknown")[:64]
        self._message = f"signin.{reason}"
        self._enter(State.VERIFYING, now, self._t("verifying"))
        return True

    def _on_Verified(self, ev: Verified, now: float) -> bool:
        # Also on an end screen: a sign-in that lands while the last candidate's thank-you is
        # still up must not be lost (those screens hold no candidate data).
        if self._state not in (State.IDLE, State.VERIFYING) and self._state not in END_STATES:
            return False
        entry_id = getattr(ev.entry, "entry_id", None)
        name = getattr(ev.entry, "name", None)
        if not isinstance(entry_id, str) or not entry_id or not isinstance(ev.job_id, str):
            log.error("session: Verified event without a roster entry id or job id; refused")
            self._message = "signin.invalid"
            self._enter(State.VERIFYING, now, self._t("verifying"))
            return True
        sid = str(uuid.uuid4())
        job, qs = self._plan(ev.job_id, sid)
        if not qs:
            self._message = "signin.job_unavailable"
            self._enter(State.VERIFYING, now, self._t("verifying"))
            return True
        language = getattr(job, "language", None) or self.settings.device.default_language
        live = _Live(
            id=sid, entry_id=entry_id, name=str(name or ""), job_id=ev.job_id, job=job,
            questions=qs, language=language, started=now, method=str(ev.method or ""),
            verification_id=ev.verification_id,
        )
        with self.store.transaction():
            self.store.db.execute(
                "INSERT INTO sessions (id, job_id, candidate_ref, state, language, started, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, ev.job_id, entry_id, State.WELCOME.value, language, now,
                 json.dumps(live.data(), ensure_ascii=False)),
            )
        self._live = live
        self._message = None
        log.info("session %s: verified (%s), job %s, %d questions",
                 sid[:8], live.method or "-", ev.job_id, len(qs))
        self._enter(State.WELCOME, now, self._t("welcome"))
        return True

    def _on_ConsentGiven(self, ev: ConsentGiven, now: float) -> bool:
        if self._state is not State.WELCOME or self._live is None:
            return False
        live = self._live
        live.consent_at = now
        with self.store.transaction():
            self._save_data(live)
            self._queue_event(live, "started", now, {"method": live.method})
            self._queue_notify(live, "started", now)
        self._enter(State.DEVICE_CHECK, now, self._t("device_check"))
        return True

    def _on_ConsentDeclined(self, ev: ConsentDeclined, now: float) -> bool:
        if self._state is not State.WELCOME:
            return False
        self._end("declined", now)
        return True

    def _on_DeviceCheckPassed(self, ev: DeviceCheckPassed, now: float) -> bool:
        if self._state is not State.DEVICE_CHECK or self._live is None:
            return False
        self._live.hint = None
        self._message = None
        self._live.idx, self._live.attempt = 0, 1
        self._start_prepare(now)
        return True

    def _on_DeviceCheckFailed(self, ev: DeviceCheckFailed, now: float) -> bool:
        # The candidate can fix it (move closer, speak up); the screen shows the hint and the
        # UI re-runs the check. A dead device arrives as HardwareFailed instead.
        if self._state is not State.DEVICE_CHECK or self._live is None:
            return False
        self._live.hint = str(ev.hint or "")[:200]
        self._message = "device_check_failed"
        return True

    def _on_StartAnswer(self, ev: StartAnswer, now: float) -> bool:
        if self._state is not State.PREPARE:
            return False
        self._message = None
        self._start_answer(now)
        return True

    def _on_AnswerFinished(self, ev: AnswerFinished, now: float) -> bool:
        live = self._live
        answering = self._state is State.ANSWER or (
            self._state in (State.HELP, State.PAUSED) and live is not None
            and live.resume is State.ANSWER
        )
        if not answering or live is None or live.question is None:
            return False
        transcript, analysis, media, duration = self._clean_answer(ev, live, now)
        row = (str(uuid.uuid4()), live.id, live.question.id, live.idx, live.attempt,
               now - duration, now, transcript,
               json.dumps(analysis, ensure_ascii=False, default=str),
               json.dumps(media, ensure_ascii=False, default=str))
        live.pending.append(row)
        try:
            self._flush_pending(live.pending)
        except Exception as e:
            # The candidate goes on; tick() retries and closing the session writes it first.
            log.error("session %s: could not save answer %d yet (%s); will retry",
                      live.id[:8], live.idx + 1, type(e).__name__)
        live.attempts[live.idx] = live.attempt
        live.time_up = False
        log.info("session %s: answer %d attempt %d committed (%.1f s)",
                 live.id[:8], live.idx + 1, live.attempt, duration)
        if self._state is State.ANSWER:
            self._message = None
            self._enter(State.REVIEW, now, self._t("review"))
        else:
            # Finished while help/pause was up: come back to the review of this answer.
            live.resume = State.REVIEW
            live.resume_remaining = self._t("review")
        return True

    def _on_Retake(self, ev: Retake, now: float) -> bool:
        live = self._live
        if self._state is not State.REVIEW or live is None or self._retakes_left(live) <= 0:
            return False
        live.attempt += 1
        self._message = None
        self._start_prepare(now)
        return True

    def _on_NextQuestion(self, ev: NextQuestion, now: float) -> bool:
        if self._state is not State.REVIEW:
            return False
        self._next_question(now, auto=False)
        return True

    def _on_HelpRequested(self, ev: HelpRequested, now: float) -> bool:
        live = self._live
        if self._state not in HELP_FROM or live is None:
            return False
        activity = self._activity(live)
        live.flags.add("help_requested")
        with self.store.transaction():
            self._save_data(live)
            self._queue_event(live, "help", now, {"state": str(self._state), "index": live.idx})
            self._queue_notify(live, "help", now, activity=activity)
        self._freeze(live, now)  # only once HR is sure to be called
        self._enter(State.HELP, now, self._t("help"))
        return True

    def _on_HelpResolved(self, ev: HelpResolved, now: float) -> bool:
        live = self._live
        if self._state is not State.HELP or live is None:
            return False
        resume = str(live.resume)
        self._soft_write("help_resolved event",
                         lambda: self._queue_event(live, "help_resolved", now, {"state": resume}))
        if live.face_lost_since is not None:
            live.face_lost_since = now  # still out of frame: the grace starts again
        self._resume(live, now)
        return True

    def _on_FaceLost(self, ev: FaceLost, now: float) -> bool:
        live = self._live
        if live is None or self._state not in (PAUSE_FROM | {State.HELP}):
            return False
        if live.face_lost_since is None:
            live.face_lost_since = now
        return True

    def _on_FaceReturned(self, ev: FaceReturned, now: float) -> bool:
        live = self._live
        if live is None or self._state not in (PAUSE_FROM | {State.HELP, State.PAUSED}):
            return False
        live.face_lost_since = None
        if self._state is State.PAUSED:
            resume = str(live.resume)
            self._soft_write("resumed event",
                             lambda: self._queue_event(live, "resumed", now, {"state": resume}))
            self._resume(live, now)
        return True

    def _on_HardwareFailed(self, ev: HardwareFailed, now: float) -> bool:
        component = str(ev.component or "unknown")[:64]
        detail = str(ev.detail or "")[:200]
        if self._state in IN_SESSION and self._live is not None:
            log.error("session %s: hardware failed: %s", self._live.id[:8], component)
            self._end("failed", now, detail={"component": component, "detail": detail})
            return True
        if self._state in (State.IDLE, State.VERIFYING):
            log.error("session: hardware failed outside a session: %s", component)
            payload = self._notify_base(None, "hardware_failed", now)
            payload.update(component=component, detail=detail)
            with self.store.transaction():
                self._queue_event(None, "hardware_failed", now,
                                  {"component": component, "detail": detail})
                self.store.enqueue("notify", topic(self.settings, "notify"), payload)
            self._message = "hardware_failed"
            self._enter(State.FAILED, now, self._t("failed"))
            return True
        return False

    def _on_Cancel(self, ev: Cancel, now: float) -> bool:
        if self._state is State.VERIFYING or self._state in END_STATES:
            self._message = None
            self._go_idle(now)
            return True
        if self._state in IN_SESSION and self._state is not State.FINISHING:
            self._end("abandoned", now, detail={"cancelled_in": str(self._state)})
            return True
        return False

    def _on_Reset(self, ev: Reset, now: float) -> bool:
        if self._live is not None:
            self._end("abandoned", now, detail={"reset_in": str(self._state)})
        self._message = None
        self._go_idle(now)
        return True

    # --- transitions ------------------------------------------------------------------------

    def _plan(self, job_id: str, seed: str) -> tuple[Any, list]:
        """The job and its questions for one interview, or (None, []) if it cannot run."""
        bank = self._bank
        if bank is None and self._questions is None:
            bank = questions_mod.current_bank(self.store)
            if bank is None:
                log.error("session: no question bank installed; cannot interview for job %s", job_id)
                return None, []
        job = None
        if bank is not None:
            try:
                job = bank.job(job_id)
            except KeyError:
                if self._questions is None:
                    log.error("session: job %s is not in the installed question bank", job_id)
                    return None, []
        if self._questions is not None:
            return job, list(self._questions)
        try:
            return job, questions_mod.plan_questions(bank, job_id, seed)
        except Exception as e:
            log.error("session: cannot plan the questions of job %s (%s)", job_id, type(e).__name__)
            return None, []

    def _enter(self, state: State, now: float, timeout: float | None) -> None:
        old = self._state
        self._state = state
        self._deadline = None if timeout is None else now + timeout
        if old is not state:
            sid = self._live.id[:8] if self._live else "-"
            log.info("session %s: %s -> %s", sid, old, state)
            if self._live is not None:
                self._save_state(self._live, state)

    def _go_idle(self, now: float) -> None:
        self._live = None
        self._enter(State.IDLE, now, None)

    def _start_prepare(self, now: float) -> None:
        live = self._live
        assert live is not None
        live.time_up = False
        live.phase_started = now
        prep = float(getattr(live.question, "preparation_s", 0) or 0)
        if prep <= 0:
            self._start_answer(now)
            return
        self._enter(State.PREPARE, now, prep)

    def _start_answer(self, now: float) -> None:
        live = self._live
        assert live is not None
        live.time_up = False
        live.phase_started = now
        self._enter(State.ANSWER, now, float(getattr(live.question, "answer_s", 90)))

    def _next_question(self, now: float, *, auto: bool) -> None:
        live = self._live
        assert live is not None
        self._message = "auto_advanced" if auto else None
        if live.idx + 1 < len(live.questions):
            live.idx += 1
            live.attempt = 1
            self._start_prepare(now)
            return
        self._enter(State.FINISHING, now, self._t("finishing"))
        self._try_finish(now)

    def _try_finish(self, now: float) -> None:
        live = self._live
        assert live is not None
        live.last_finish_try = now
        try:
            self._close(live, "completed", now)
        except Exception as e:
            # Stay in FINISHING: tick() retries until the finishing timeout.
            log.error("session %s: saving the result failed (%s); will retry\n%s",
                      live.id[:8], type(e).__name__, _tb(e))
            self._message = "saving"
            return
        self._live = None
        self._message = "done"
        self._enter(State.DONE, now, self._t("done"))

    def _end(self, reason: str, now: float, *, detail: dict | None = None) -> None:
        """Close the open session with `reason` and show its end screen (wiped)."""
        live = self._live
        target = END_REASON_STATE[reason]
        if live is not None:
            try:
                self._close(live, reason, now, detail=detail or {})
            except Exception as e:
                # Nothing was written (one transaction); the row stays open for recovery.
                log.error("session %s: saving the %s result failed (%s); left for recovery\n%s",
                          live.id[:8], reason, type(e).__name__, _tb(e))
                self._needs_recover = True
                self._orphans.extend(live.pending)
        self._live = None
        self._message = {"completed": "done", "failed": "hardware_failed"}.get(reason, reason)
        self._enter(target, now, self._t(str(target)))

    def _freeze(self, live: _Live, now: float) -> None:
        live.resume = self._state
        live.resume_remaining = max(0.0, (self._deadline or now) - now)

    def _pause(self, now: float) -> None:
        live = self._live
        assert live is not None
        live.flags.add("left_frame")
        state = str(self._state)

        def write() -> None:
            self._save_data(live)
            self._queue_event(live, "paused", now, {"state": state, "index": live.idx})

        # Pausing must not depend on the store: the countdown has to stop either way.
        self._soft_write("paused event", write)
        self._freeze(live, now)
        self._enter(State.PAUSED, now, self._t("paused"))

    def _resume(self, live: _Live, now: float) -> None:
        target = live.resume or State.REVIEW
        remaining = live.resume_remaining
        live.resume = None
        live.resume_remaining = 0.0
        self._enter(target, now, remaining)

    # --- store writes -----------------------------------------------------------------------

    def _save_state(self, live: _Live, state: State) -> None:
        # Best effort, for diagnostics and recovery; a failure here must not stop the interview.
        try:
            with self.store.transaction():
                self.store.db.execute(
                    "UPDATE sessions SET state = ? WHERE id = ? AND ended IS NULL",
                    (state.value, live.id),
                )
        except Exception as e:
            log.warning("session %s: could not record state %s (%s)", live.id[:8], state,
                        type(e).__name__)

    def _flush_pending(self, pending: list[tuple]) -> None:
        """Insert the answer rows in `pending` (one transaction) and empty it; raises on failure."""
        if not pending:
            return
        with self.store.transaction():
            for row in pending:
                self.store.db.execute(
                    "INSERT OR IGNORE INTO answers (id, session_id, question_id, idx, attempt,"
                    " started, ended, transcript, analysis, media)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                self._queue_clips(row)
        pending.clear()

    def _queue_clips(self, row: tuple) -> None:
        """One `clip` outbox row per recording of the answer, in the answer's transaction
        (id = the media id, so a retried flush cannot queue it twice)."""
        for m in _loads(row[9], []):
            if not isinstance(m, dict) or not m.get("id") or not m.get("path"):
                continue
            payload = {"media_id": str(m["id"]), "session_id": row[1], "answer_id": row[0],
                       "question_id": row[2], "kind": str(m.get("kind", "")),
                       "path": str(m["path"]), "size": m.get("size"), "sha256": m.get("sha256")}
            self.store.enqueue("clip", topic(self.settings, "clip"), payload,
                               session_id=row[1], id=str(m["id"]))

    def _soft_write(self, what: str, write: Callable[[], Any]) -> None:
        """Rows that inform (pause, resume, help resolved) but must not block the screen."""
        try:
            with self.store.transaction():
                write()
        except Exception as e:
            log.warning("session: could not write the %s (%s)", what, type(e).__name__)

    def _save_data(self, live: _Live) -> None:
        self.store.db.execute(
            "UPDATE sessions SET data = ? WHERE id = ?",
            (json.dumps(live.data(), ensure_ascii=False), live.id),
        )

    def _event_payload(self, live: _Live | None, kind: str, now: float, detail: dict) -> dict:
        d = self.settings.device
        return EventRecord(
            id=str(uuid.uuid4()), device_id=d.id, tenant=d.tenant, site=d.site_name, ts=now,
            type=kind, session_id=live.id if live else None,
            detail={"job_id": live.job_id, "entry_id": live.entry_id, **detail} if live else detail,
        ).model_dump(mode="json")

    def _queue_event(self, live: _Live | None, kind: str, now: float, detail: dict) -> str:
        payload = self._event_payload(live, kind, now, detail)
        return self.store.enqueue("event", topic(self.settings, "event"), payload,
                                  session_id=live.id if live else None, id=payload["id"])

    def _notify_base(self, live: _Live | None, kind: str, now: float) -> dict:
        p: dict[str, Any] = {"type": kind, "ts": now}
        if live is not None:
            p.update(session_id=live.id, entry_id=live.entry_id, candidate_name=live.name,
                     job_id=live.job_id, job_title=_title_text(_job_title(live.job, live.job_id)))
        return p

    def _queue_notify(self, live: _Live, kind: str, now: float, **extra: Any) -> str:
        payload = self._notify_base(live, kind, now)
        payload.update(extra)
        return self.store.enqueue("notify", topic(self.settings, "notify"), payload,
                                  session_id=live.id)

    def _load_answers(self, session_id: str) -> list[AnswerRow]:
        with self.store.lock:
            cur = self.store.db.execute(
                "SELECT id, session_id, question_id, idx, attempt, started, ended, transcript,"
                " analysis, media FROM answers WHERE session_id = ? ORDER BY idx, attempt",
                (session_id,),
            )
            rows = cur.fetchall()
        out = []
        for r in rows:
            out.append(AnswerRow(
                id=r[0], session_id=r[1], question_id=r[2], idx=int(r[3]), attempt=int(r[4]),
                started=r[5], ended=r[6], transcript=r[7] or "",
                analysis=_loads(r[8], {}), media=_loads(r[9], []),
            ))
        return out

    def _close(self, live: _Live, reason: str, now: float, *, detail: dict | None = None) -> str:
        """Write the result row, its `result` outbox row, an `event` and a `notify` row and end
        the sessions row, all in ONE transaction. Returns the result id."""
        detail = detail or {}
        self._flush_pending(live.pending)
        answers = self._load_answers(live.id)
        scored = latest_attempts(answers)
        # The builder sees the session's data with the state it ends in (DONE, ABANDONED, ...).
        view = self._session_view(live, END_REASON_STATE[reason], now)
        flags = set(live.flags)
        try:
            report = self.report_builder(view, scored)
            if not isinstance(report, dict):
                raise TypeError(f"report builder returned {type(report).__name__}, not dict")
        except Exception as e:
            log.error("session %s: report builder failed (%s); minimal report used\n%s",
                      live.id[:8], type(e).__name__, _tb(e))
            report = {**minimal_report(view, scored), "error": "report_failed"}
            flags.add("report_failed")
        for f in report.get("integrity_flags") or []:
            flags.add(str(f))
        if reason != "declined" and len(scored) < len(live.questions):
            flags.add("incomplete")
        d = self.settings.device
        result_id = str(uuid.uuid4())
        record = ResultRecord(
            id=result_id, session_id=live.id, device_id=d.id, tenant=d.tenant, site=d.site_name,
            job_id=live.job_id,
            candidate=CandidateRef(ref=live.entry_id, masked_name=mask_name(live.name)),
            started=live.started, ended=now, end_reason=reason,
            language=live.language if live.language in ("zh", "en") else "zh",
            answers=[
                AnswerRecord(question_id=a.question_id, idx=a.idx, attempt=a.attempt,
                             transcript=a.transcript, started=a.started, ended=a.ended,
                             duration_s=a.duration_s, analysis=a.analysis,
                             clip_ids=[str(m["id"]) for m in a.media
                                       if isinstance(m, dict) and m.get("id") and m.get("path")])
                for a in answers
            ],
            report=report,
            integrity_flags=sorted(flags),
        )
        body = record.model_dump(mode="json")
        end_state = END_REASON_STATE[reason]
        event_kind = {"completed": "finished", "failed": "hardware_failed"}.get(reason, reason)
        notify_kind = {"declined": "declined", "failed": "hardware_failed"}.get(reason, "finished")
        notify_extra: dict[str, Any]
        if notify_kind == "finished":
            total = report.get("total")
            notify_extra = {
                "total": total if isinstance(total, int | float) else 0,
                "recommendation": report.get("recommendation") or "review",
                "integrity_flags": sorted(flags),
                "end_reason": reason,
            }
        elif notify_kind == "hardware_failed":
            notify_extra = {"component": detail.get("component", "unknown"),
                            "detail": detail.get("detail", "")}
        else:
            notify_extra = {}
        live.flags = flags
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE sessions SET state = ?, ended = ?, end_reason = ?, data = ? WHERE id = ?",
                (end_state.value, now, reason, json.dumps(live.data(), ensure_ascii=False),
                 live.id),
            )
            self.store.db.execute(
                "INSERT INTO results (session_id, record, created) VALUES (?, ?, ?)",
                (live.id, json.dumps(body, ensure_ascii=False), now),
            )
            self.store.enqueue("result", topic(self.settings, "result"), body,
                               session_id=live.id, id=result_id)
            self._queue_event(live, event_kind, now, {
                "end_reason": reason, "answered": len(scored), "total": len(live.questions),
                **{k: v for k, v in detail.items() if k != "detail"},
            })
            self._queue_notify(live, notify_kind, now, **notify_extra)
        log.info("session %s: closed as %s (%d of %d answered)",
                 live.id[:8], reason, len(scored), len(live.questions))
        return result_id

    def _recover(self, now: float, *, show: bool) -> list[str]:
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT id, job_id, candidate_ref, state, language, started, data FROM sessions"
                " WHERE ended IS NULL ORDER BY started"
            ).fetchall()
        own = self._live.id if self._live else None
        closed: list[str] = []
        failed = False
        for sid, job_id, ref, state, language, started, data_text in rows:
            if sid == own:
                continue
            live = self._live_from_row(sid, job_id, ref, state, language, started, data_text)
            try:
                with self.store.lock:
                    have = self.store.db.execute(
                        "SELECT count(*) FROM results WHERE session_id = ?", (sid,)
                    ).fetchone()[0]
                if have:  # a result exists: only the end mark is missing
                    with self.store.transaction():
                        self.store.db.execute(
                            "UPDATE sessions SET ended = ?, end_reason = coalesce(end_reason,"
                            " 'interrupted') WHERE id = ?", (now, sid))
                else:
                    # Not inside an outer transaction: the report builder may take a while
                    # and the sync daemon must not wait on our write lock meanwhile.
                    self._close(live, "interrupted", now,
                                detail={"state_at_interruption": state})
                closed.append(sid)
            except Exception as e:
                failed = True
                log.error("session %s: could not close as interrupted (%s)\n%s",
                          sid[:8], type(e).__name__, _tb(e))
        self._needs_recover = failed
        if closed:
            log.info("session: recovered %d interrupted session(s)", len(closed))
            if show and self._state is State.IDLE:
                self._message = "interrupted"
                self._enter(State.INTERRUPTED, now, self._t("interrupted"))
        return closed

    def _live_from_row(self, sid: str, job_id: str, ref: str, state: str, language: str,
                       started: float, data_text: str) -> _Live:
        data = _loads(data_text, {})
        bank = self._bank
        if bank is None:
            try:
                bank = questions_mod.current_bank(self.store)
            except Exception:
                bank = None
        job = None
        qs: list = []
        if bank is not None:
            try:
                job = bank.job(job_id)
            except KeyError:
                job = None
            for qid in data.get("question_ids") or []:
                try:
                    qs.append(bank.question(qid))
                except KeyError:
                    qs.append(_MissingQuestion(qid))
        else:
            qs = [_MissingQuestion(qid) for qid in data.get("question_ids") or []]
        live = _Live(
            id=sid, entry_id=ref or "", name=str(data.get("candidate_name") or ""),
            job_id=job_id or "", job=job, questions=qs, language=language or "zh",
            started=float(started or 0.0), method=str(data.get("method") or ""),
            verification_id=data.get("verification_id"),
        )
        live.flags = set(data.get("flags") or []) | {"interrupted"}
        live.consent_at = data.get("consent_at")
        return live

    # --- the view ---------------------------------------------------------------------------

    def _retakes_left(self, live: _Live) -> int:
        allowed = getattr(live.question, "retakes", None)
        if allowed is None:
            allowed = self._cfg.max_retakes
        return max(0, int(allowed) - (live.attempt - 1))

    def _activity(self, live: _Live) -> str:
        i, n = live.idx + 1, len(live.questions)
        s = self._state
        if s is State.WELCOME:
            return "阅读欢迎与同意页 · reading the welcome and consent"
        if s is State.DEVICE_CHECK:
            return "设备检查 · device check"
        doing = {State.PREPARE: ("准备中", "preparing"), State.ANSWER: ("作答中", "answering"),
                 State.REVIEW: ("回看中", "reviewing")}.get(s, ("", str(s)))
        return f"第{i}/{n}题 {doing[0]} · question {i}/{n}, {doing[1]}"

    def _session_view(self, live: _Live, state: State, now: float) -> SessionView:
        q = live.question
        remaining = None if self._deadline is None else max(0.0, self._deadline - now)
        planned = sum(float(getattr(x, "preparation_s", 0) or 0) + float(getattr(x, "answer_s", 0) or 0)
                      for x in live.questions)
        return SessionView(
            state=state, session_id=live.id, job_id=live.job_id,
            job_title=_job_title(live.job, live.job_id), candidate_name=mask_name(live.name),
            language=live.language, question=q, index=live.idx, total=len(live.questions),
            planned_s=planned, attempt=live.attempt,
            retakes_left=self._retakes_left(live) if q is not None else 0,
            answered=len(live.attempts), deadline=self._deadline, remaining_s=remaining,
            time_up=live.time_up, resume_state=live.resume,
            resume_remaining_s=live.resume_remaining if live.resume else None,
            message_key=self._message, hint=live.hint, job=live.job,
            questions=tuple(live.questions),
        )

    def _make_view(self, now: float) -> SessionView:
        if self._live is not None and self._state in IN_SESSION:
            return self._session_view(self._live, self._state, now)
        # Idle, sign-in and the end screens: nothing about any candidate.
        remaining = None if self._deadline is None else max(0.0, self._deadline - now)
        return SessionView(state=self._state, deadline=self._deadline, remaining_s=remaining,
                           message_key=self._message)

    def _publish(self, now: float) -> None:
        view = self._make_view(now)
        self._view = view
        signature = (
            view.state, view.session_id, view.index, view.attempt, view.answered,
            view.time_up, view.resume_state, view.message_key, view.hint, view.deadline,
            None if view.remaining_s is None else math.ceil(view.remaining_s),
        )
        if signature == self._last_signature:
            return
        self._last_signature = signature
        for cb in list(self._subscribers):
            try:
                cb(view)
            except Exception as e:
                log.error("session: a view subscriber failed: %s\n%s", type(e).__name__, _tb(e))

    def _clean_answer(self, ev: AnswerFinished, live: _Live, now: float) -> tuple[str, dict, list, float]:
        """Bad callback input is logged and repaired, never dropped: the answer is kept."""
        transcript = ev.transcript
        if not isinstance(transcript, str):
            log.warning("session %s: AnswerFinished.transcript is %s, not text; stored as text",
                        live.id[:8], type(transcript).__name__)
            transcript = "" if transcript is None else str(transcript)
        analysis = ev.analysis
        if not isinstance(analysis, dict):
            log.warning("session %s: AnswerFinished.analysis is %s, not a dict; stored empty",
                        live.id[:8], type(analysis).__name__)
            analysis = {"invalid": type(analysis).__name__}
        media = ev.media
        if not isinstance(media, list | tuple):
            log.warning("session %s: AnswerFinished.media is %s, not a list; stored empty",
                        live.id[:8], type(media).__name__)
            media = []
        duration = _finite(ev.duration_s)
        if duration is None or duration < 0:
            log.warning("session %s: AnswerFinished.duration_s is not a number >= 0; measured instead",
                        live.id[:8])
            duration = max(0.0, now - live.phase_started)
        return transcript, analysis, list(media), duration


_EVENT_TYPES = (
    SignInStarted, Verified, VerificationFailed, ConsentGiven, ConsentDeclined, DeviceCheckPassed,
    DeviceCheckFailed, StartAnswer, AnswerFinished, Retake, NextQuestion, HelpRequested,
    HelpResolved, FaceLost, FaceReturned, HardwareFailed, Cancel, Reset,
)


@dataclass(frozen=True)
class _MissingQuestion:
    """A planned question no longer in the installed bank (recovery after a bank update)."""

    id: str
    preparation_s: int = 0
    answer_s: int = 0
    retakes: int = 0


def _loads(text: Any, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default
