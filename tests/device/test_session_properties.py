"""Random event sequences with clock jumps and crashes, on a real encrypted store: the machine
never raises, is always in a defined state, never loses a committed answer, and every session
that got past sign-in ends with exactly one result queued."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from device import session as S
from device.config import settings_from_dict
from device.session import END_STATES, IN_SESSION, SessionMachine, State
from device.store import Store
from tests.device.test_session import Clock, make_bank, make_entry

SETTINGS = settings_from_dict({"device": {"id": "kiosk-prop-01"}})
BANK = make_bank()

EVENTS = [
    S.SignInStarted("wecom"),
    S.Verified(make_entry("E-1"), "sales", "wecom", "v1"),
    S.Verified(make_entry("E-2", "Alice Smith"), "sales", "code", "v2"),
    S.Verified(make_entry("E-3"), "no-such-job", "wecom", "v3"),
    S.VerificationFailed("off_roster"),
    S.ConsentGiven(),
    S.ConsentDeclined(),
    S.DeviceCheckPassed(),
    S.DeviceCheckFailed("closer"),
    S.StartAnswer(),
    "answer",  # an AnswerFinished with a unique transcript, made at run time
    S.Retake(),
    S.NextQuestion(),
    S.HelpRequested(),
    S.HelpResolved(),
    S.FaceLost(),
    S.FaceReturned(),
    S.HardwareFailed("camera", "unplugged"),
    S.Cancel(),
    S.Reset(),
]
# Random events mostly derail a session at the first step, so seven steps in eight pick an
# event that applies to the current state (the happy path, help, pause, retakes) and the
# eighth picks any event at all.
FITTING = {
    State.IDLE: [1, 1, 1, 2, 0, 3, 4],
    State.VERIFYING: [1, 1, 2, 4, 19],
    State.WELCOME: [5] * 8 + [6, 13, 18],
    State.DEVICE_CHECK: [7] * 6 + [8, 13],
    State.PREPARE: [9] * 4 + [15, 16, 13],
    State.ANSWER: [10] * 6 + [15, 16, 13],
    State.REVIEW: [12] * 6 + [11, 11, 15, 13],
    State.HELP: [14, 14, 14, 10, 15, 16],
    State.PAUSED: [16, 16, 10],
}


WAITS = [0.5, 1.0, 1.0, 2.0, 3.0, 3.0, 5.0, 8.0, 10.0, 20.0, 30.0, 60.0, 90.0, 120.0, 600.0, 700.0]


def decode(r: int) -> tuple[str, float | int]:
    """One step from one integer: mostly events, some waits (short ones likelier), rare crashes
    and rare store failures."""
    kind = r % 40
    if kind == 0:
        return "crash", 0
    if kind == 1:
        return "flaky", 1 + (r // 40) % 4
    if kind <= 5:
        return "wait", WAITS[(r // 40) % len(WAITS)] + (r % 7) / 10
    return "event", r // 40


steps_strategy = st.lists(st.integers(0, 1_000_000).map(decode), min_size=5, max_size=100)


def count(store: Store, sql: str, params: tuple = ()) -> int:
    with store.lock:
        return store.db.execute(sql, params).fetchone()[0]


class Run:
    """One random run against a fresh store; checks the invariants after every step."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = Clock()
        self.machine = self._new_machine()
        self.accepted: set[str] = set()  # transcripts of answers the machine accepted
        self.n = 0
        self.failing = 0  # how many more outbox writes fail
        self.ever_failed = False
        real_enqueue = store.enqueue

        def enqueue(*args, **kwargs):
            if self.failing:
                self.failing -= 1
                raise OSError("simulated: disk full")
            return real_enqueue(*args, **kwargs)

        store.enqueue = enqueue  # type: ignore[method-assign]

    def _new_machine(self) -> SessionMachine:
        return SessionMachine(self.store, SETTINGS, clock=self.clock, bank=BANK)

    def event(self, pick: int) -> None:
        fitting = FITTING.get(self.machine.state)
        if pick % 8 and fitting:
            ev = EVENTS[fitting[(pick // 8) % len(fitting)]]
        else:
            ev = EVENTS[(pick // 8) % len(EVENTS)]
        expect_accept = False
        if ev == "answer":
            self.n += 1
            ev = S.AnswerFinished(f"answer-{self.n}", {"n": self.n}, [], 3.0)
            v = self.machine.view
            expect_accept = v.state is State.ANSWER or (
                v.state in (State.HELP, State.PAUSED) and v.resume_state is State.ANSWER)
        state = self.machine.handle(ev)
        self.check(state)
        if isinstance(ev, S.AnswerFinished):
            stored = count(self.store, "SELECT count(*) FROM answers WHERE transcript = ?",
                           (ev.transcript,))
            assert stored == (1 if expect_accept else 0)
            if expect_accept:
                self.accepted.add(ev.transcript)

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.check(self.machine.tick())

    def flaky(self, n: int) -> None:
        # The next n outbox writes fail: whatever transaction they are in must leave nothing.
        self.failing = n
        self.ever_failed = True

    def crash(self) -> None:
        # Power cut: the machine's memory is gone, the store is what survived.
        healthy = self.failing == 0
        self.machine = self._new_machine()
        self.machine.recover()
        self.check(self.machine.state)
        if healthy:
            assert count(self.store, "SELECT count(*) FROM sessions WHERE ended IS NULL") == 0

    def check(self, state: State) -> None:
        assert isinstance(state, State) and state is self.machine.state
        event(f"reached {state}")  # --hypothesis-show-statistics shows what the runs covered
        v = self.machine.view
        assert v.state is state
        if state in IN_SESSION:
            assert v.session_id is not None and v.question is not None
        else:
            assert (v.session_id, v.candidate_name, v.question, v.job_title) == (
                None, None, None, None)
        if state in END_STATES or state in (State.IDLE, State.VERIFYING):
            if not self.ever_failed:  # a failed save is left open for recovery
                assert count(self.store, "SELECT count(*) FROM sessions WHERE ended IS NULL") == 0

    def finish(self) -> None:
        self.failing = 0
        self.machine.handle(S.Reset())
        assert self.machine.state is State.IDLE
        self.crash()  # closes whatever a failed save left open
        store = self.store
        with store.lock:
            sessions = store.db.execute("SELECT id, ended FROM sessions").fetchall()
        for sid, ended in sessions:
            assert ended is not None
            assert count(store, "SELECT count(*) FROM results WHERE session_id = ?", (sid,)) == 1
            assert count(store, "SELECT count(*) FROM outbox WHERE kind = 'result'"
                                " AND session_id = ?", (sid,)) == 1
            with store.lock:
                (record,) = store.db.execute(
                    "SELECT record FROM results WHERE session_id = ?", (sid,)).fetchone()
                stored = {r[0] for r in store.db.execute(
                    "SELECT transcript FROM answers WHERE session_id = ?", (sid,))}
            in_result = {a["transcript"] for a in json.loads(record)["answers"]}
            assert stored == in_result
        # Nothing accepted was lost, nothing unaccepted was stored.
        with store.lock:
            all_answers = {r[0] for r in store.db.execute("SELECT transcript FROM answers")}
        assert all_answers == self.accepted


@settings(max_examples=int(os.environ.get("SESSION_PROPERTY_EXAMPLES", "120")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(steps_strategy)
def test_random_event_sequences_keep_every_invariant(steps):
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(Path(tmp) / "kiosk.db", os.urandom(32))
        # Power-loss durability is not what this test checks; skipping fsync keeps it fast.
        store.db.execute("PRAGMA synchronous = OFF")
        try:
            run = Run(store)
            for kind, arg in steps:
                if kind == "event":
                    run.event(arg)
                elif kind == "wait":
                    run.wait(arg)
                elif kind == "flaky":
                    run.flaky(arg)
                else:
                    run.crash()
            run.finish()
        finally:
            store.close()
