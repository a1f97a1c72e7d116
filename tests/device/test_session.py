"""The interview state machine on a real encrypted store with a fake clock: every transition,
every timeout, help and pause keep the remaining time, answers are committed as they end,
one result per session written atomically, recovery after a crash, nothing leaks to logs."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from device import session as S
from device.questions import Bilingual, Job, Question, QuestionBank, QuestionPlan
from device.roster import RosterEntry
from device.session import SessionMachine, State
from device.store import Store

T0 = 1_800_000_000.0
NAME = "欧阳翠花"  # synthetic
TRANSCRIPT = "我在琉璃厂带领团队完成了蓝鲸计划"  # synthetic, distinctive


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def make_question(qid: str, *, prep: int = 10, answer: int = 60, retakes: int | None = 1) -> Question:
    return Question(
        id=qid,
        prompt=Bilingual(zh=f"问题 {qid}", en=f"Question {qid}"),
        preparation_s=prep,
        answer_s=answer,
        retakes=retakes,
        dimensions={"communication": 1.0},
    )


def make_bank() -> QuestionBank:
    qs = (
        make_question("q1", prep=10, answer=60, retakes=1),
        make_question("q2", prep=0, answer=30, retakes=0),
        make_question("q3", prep=5, answer=20, retakes=2),
    )
    job = Job(
        id="sales",
        title=Bilingual(zh="销售代表", en="Sales representative"),
        language="zh",
        competencies={"communication": 1.0},
        pass_threshold=60,
        plan=QuestionPlan(questions=("q1", "q2", "q3"), count=3),
    )
    return QuestionBank(
        version=1,
        created=datetime(2026, 1, 1, tzinfo=UTC),
        dimensions={"communication": Bilingual(zh="沟通", en="Communication")},
        jobs=(job,),
        questions=qs,
    )


def make_entry(entry_id: str = "E-1001", name: str = NAME) -> RosterEntry:
    start = datetime.fromtimestamp(T0, UTC) - timedelta(hours=1)
    return RosterEntry(
        entry_id=entry_id,
        name=name,
        wecom_userid="u1001",
        job_id="sales",
        device_id="kiosk-test-01",
        slot_start=start,
        slot_end=start + timedelta(hours=3),
    )


def verified(entry_id: str = "E-1001") -> S.Verified:
    return S.Verified(make_entry(entry_id), "sales", "wecom", "ver-1")


def answer(text: str = TRANSCRIPT, duration: float = 12.5) -> S.AnswerFinished:
    return S.AnswerFinished(text, {"words": len(text)}, [], duration)


def rows(store: Store, sql: str, params: tuple = ()) -> list[tuple]:
    with store.lock:
        return store.db.execute(sql, params).fetchall()


def outbox(store: Store, kind: str | None = None, session_id: str | None = None) -> list[dict]:
    sql = "SELECT kind, payload, session_id FROM outbox WHERE 1=1"
    params: list[Any] = []
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    if session_id:
        sql += " AND session_id = ?"
        params.append(session_id)
    sql += " ORDER BY seq"
    return [{"kind": k, "payload": json.loads(p), "session_id": s}
            for k, p, s in rows(store, sql, tuple(params))]


def results(store: Store, session_id: str) -> list[dict]:
    return [json.loads(r[0]) for r in rows(store, "SELECT record FROM results WHERE session_id = ?",
                                           (session_id,))]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def machine(store: Store, settings, clock: Clock) -> SessionMachine:
    return SessionMachine(store, settings, clock=clock, bank=make_bank())


def to_state(m: SessionMachine, clock: Clock, target: State) -> str | None:
    """Drive a fresh machine to `target` by the ordinary path; returns the session id."""
    path = {
        State.VERIFYING: [S.SignInStarted("wecom")],
        State.WELCOME: [verified()],
        State.DEVICE_CHECK: [verified(), S.ConsentGiven()],
        State.PREPARE: [verified(), S.ConsentGiven(), S.DeviceCheckPassed()],
        State.ANSWER: [verified(), S.ConsentGiven(), S.DeviceCheckPassed(), S.StartAnswer()],
        State.REVIEW: [verified(), S.ConsentGiven(), S.DeviceCheckPassed(), S.StartAnswer(),
                       answer()],
        State.HELP: [verified(), S.ConsentGiven(), S.DeviceCheckPassed(), S.HelpRequested()],
        State.PAUSED: [verified(), S.ConsentGiven(), S.DeviceCheckPassed(), S.StartAnswer(),
                       S.FaceLost(), "wait"],
    }[target]
    for ev in path:
        if ev == "wait":
            clock.advance(m.settings.session.face_lost_pause_s)
            m.tick()
        else:
            m.handle(ev)
    assert m.state is target
    return m.view.session_id


# --- sign-in ---------------------------------------------------------------------------------


def test_sign_in_started_shows_verifying_and_times_out_to_idle(machine, clock, settings):
    assert machine.state is State.IDLE
    assert machine.handle(S.SignInStarted("code")) is State.VERIFYING
    clock.advance(settings.session.timeouts.verifying - 1)
    assert machine.tick() is State.VERIFYING
    clock.advance(1)
    assert machine.tick() is State.IDLE
    assert machine.view.message_key == "signin.timeout"


def test_verification_failed_shows_the_reason_then_idle(machine, clock, settings):
    assert machine.handle(S.VerificationFailed("off_roster")) is State.VERIFYING
    assert machine.view.message_key == "signin.off_roster"
    assert machine.view.candidate_name is None
    clock.advance(settings.session.timeouts.verifying)
    assert machine.tick() is State.IDLE


def test_cancel_while_verifying_returns_to_idle_without_a_session(machine, store):
    machine.handle(S.SignInStarted())
    assert machine.handle(S.Cancel()) is State.IDLE
    assert rows(store, "SELECT count(*) FROM sessions")[0][0] == 0


def test_verified_opens_a_session_and_shows_a_masked_name(machine, store, clock):
    assert machine.handle(verified()) is State.WELCOME
    v = machine.view
    assert v.candidate_name == "欧**花"
    assert v.job_title == {"zh": "销售代表", "en": "Sales representative"}
    assert v.total == 3 and v.language == "zh"
    assert v.planned_s == 10 + 60 + 0 + 30 + 5 + 20
    (sid, ref, state, started, ended), = rows(
        store, "SELECT id, candidate_ref, state, started, ended FROM sessions")
    assert (sid, ref, state, started, ended) == (v.session_id, "E-1001", "welcome", T0, None)


def test_a_sign_in_during_the_last_thank_you_screen_is_not_lost(machine, store, clock):
    to_state(machine, clock, State.WELCOME)
    machine.handle(S.ConsentDeclined())
    assert machine.handle(verified("E-2002")) is State.WELCOME
    assert machine.view.session_id is not None
    assert rows(store, "SELECT count(*) FROM sessions WHERE ended IS NULL")[0][0] == 1


def test_verified_after_a_refusal_starts_the_interview(machine, clock):
    machine.handle(S.SignInStarted("code"))
    machine.handle(S.VerificationFailed("unknown_code"))
    assert machine.handle(verified()) is State.WELCOME
    assert machine.view.message_key is None


def test_verified_for_an_unknown_job_stays_in_sign_in(machine, store):
    ev = S.Verified(make_entry(), "no-such-job", "wecom", "v")
    assert machine.handle(ev) is State.VERIFYING
    assert machine.view.message_key == "signin.job_unavailable"
    assert rows(store, "SELECT count(*) FROM sessions")[0][0] == 0


def test_without_an_installed_bank_no_interview_starts(store, settings, clock):
    m = SessionMachine(store, settings, clock=clock)  # nothing installed
    assert m.handle(verified()) is State.VERIFYING
    assert m.view.message_key == "signin.job_unavailable"


def test_installed_bank_is_used_when_none_is_injected(store, settings, clock):
    from device.questions import install_bank

    install_bank(store, make_bank())
    m = SessionMachine(store, settings, clock=clock)
    assert m.handle(verified()) is State.WELCOME
    assert [q.id for q in m.view.questions] == ["q1", "q2", "q3"]


def test_injected_questions_replace_the_plan(store, settings, clock):
    qs = [make_question("only", prep=3, answer=10, retakes=0)]
    m = SessionMachine(store, settings, clock=clock, bank=make_bank(), questions=qs)
    m.handle(verified())
    assert m.view.total == 1 and m.view.questions[0].id == "only"


# --- consent and device check ----------------------------------------------------------------


def test_welcome_times_out_to_abandoned_with_a_result(machine, store, clock, settings):
    sid = to_state(machine, clock, State.WELCOME)
    clock.advance(settings.session.timeouts.welcome)
    assert machine.tick() is State.ABANDONED
    (rec,) = results(store, sid)
    assert rec["end_reason"] == "abandoned" and rec["answers"] == []
    assert machine.view.candidate_name is None and machine.view.session_id is None
    clock.advance(settings.session.timeouts.abandoned)
    assert machine.tick() is State.IDLE


def test_consent_declined_ends_politely_and_tells_hr(machine, store, clock, settings):
    sid = to_state(machine, clock, State.WELCOME)
    assert machine.handle(S.ConsentDeclined()) is State.DECLINED
    (rec,) = results(store, sid)
    assert rec["end_reason"] == "declined"
    notes = outbox(store, "notify", sid)
    assert [n["payload"]["type"] for n in notes] == ["declined"]
    assert [e["payload"]["type"] for e in outbox(store, "event", sid)] == ["declined"]
    assert machine.view.candidate_name is None
    clock.advance(settings.session.timeouts.declined)
    assert machine.tick() is State.IDLE


def test_consent_given_starts_the_device_check_and_tells_hr(machine, store, clock):
    sid = to_state(machine, clock, State.DEVICE_CHECK)
    (note,) = outbox(store, "notify", sid)
    p = note["payload"]
    assert p["type"] == "started" and p["entry_id"] == "E-1001"
    assert p["job_title"] == "销售代表（Sales representative）"
    assert "transcript" not in json.dumps(p)
    (ev,) = outbox(store, "event", sid)
    assert ev["payload"]["type"] == "started" and NAME not in json.dumps(ev["payload"],
                                                                        ensure_ascii=False)
    data = json.loads(rows(store, "SELECT data FROM sessions WHERE id = ?", (sid,))[0][0])
    assert data["consent_at"] == T0


def test_device_check_failure_shows_a_hint_and_pass_moves_on(machine, clock):
    to_state(machine, clock, State.DEVICE_CHECK)
    assert machine.handle(S.DeviceCheckFailed("请靠近一点")) is State.DEVICE_CHECK
    assert machine.view.hint == "请靠近一点"
    assert machine.view.message_key == "device_check_failed"
    assert machine.handle(S.DeviceCheckPassed()) is State.PREPARE
    assert machine.view.hint is None and machine.view.message_key is None
    assert machine.view.question.id == "q1" and machine.view.index == 0


def test_device_check_times_out_to_abandoned(machine, store, clock, settings):
    sid = to_state(machine, clock, State.DEVICE_CHECK)
    clock.advance(settings.session.timeouts.device_check)
    assert machine.tick() is State.ABANDONED
    assert results(store, sid)[0]["end_reason"] == "abandoned"


# --- questions ---------------------------------------------------------------------------------


def test_preparation_countdown_starts_the_answer_by_itself(machine, clock):
    to_state(machine, clock, State.PREPARE)
    assert machine.view.remaining_s == 10
    clock.advance(9.5)
    assert machine.tick() is State.PREPARE
    assert machine.view.remaining_s == pytest.approx(0.5)
    clock.advance(0.5)
    assert machine.tick() is State.ANSWER
    assert machine.view.remaining_s == 60


def test_start_answer_skips_the_rest_of_the_preparation(machine, clock):
    to_state(machine, clock, State.PREPARE)
    clock.advance(3)
    assert machine.handle(S.StartAnswer()) is State.ANSWER
    assert machine.view.deadline == T0 + 3 + 60


def test_answer_finished_commits_the_answer_at_once(machine, store, clock):
    sid = to_state(machine, clock, State.ANSWER)
    clock.advance(20)
    assert machine.handle(answer(duration=19.0)) is State.REVIEW
    ((qid, idx, attempt, started, ended, text),) = rows(
        store, "SELECT question_id, idx, attempt, started, ended, transcript FROM answers"
        " WHERE session_id = ?", (sid,))
    assert (qid, idx, attempt, text) == ("q1", 0, 1, TRANSCRIPT)
    assert ended == T0 + 20 and ended - started == pytest.approx(19.0)
    assert machine.view.answered == 1 and machine.view.retakes_left == 1


def test_answer_time_up_waits_for_the_recording(machine, store, clock, settings):
    sid = to_state(machine, clock, State.ANSWER)
    clock.advance(60)
    assert machine.tick() is State.ANSWER
    assert machine.view.time_up and machine.view.message_key == "answer_time_up"
    clock.advance(settings.session.answer_grace_s - 1)
    assert machine.tick() is State.ANSWER
    assert machine.handle(answer()) is State.REVIEW
    assert not machine.view.time_up
    assert rows(store, "SELECT count(*) FROM answers WHERE session_id = ?", (sid,))[0][0] == 1


def test_no_recording_after_time_up_fails_the_session_keeping_answers(
        machine, store, clock, settings):
    sid = to_state(machine, clock, State.REVIEW)
    machine.handle(S.NextQuestion())  # q2 has no preparation: straight to the answer
    assert machine.state is State.ANSWER and machine.view.index == 1
    clock.advance(30)
    machine.tick()
    clock.advance(settings.session.answer_grace_s)
    assert machine.tick() is State.FAILED
    (rec,) = results(store, sid)
    assert rec["end_reason"] == "failed" and len(rec["answers"]) == 1
    (note,) = [n for n in outbox(store, "notify", sid) if n["payload"]["type"] != "started"]
    assert note["payload"]["type"] == "hardware_failed"
    assert note["payload"]["component"] == "recorder"
    clock.advance(settings.session.timeouts.failed)
    assert machine.tick() is State.IDLE


def test_retake_replaces_the_answer_in_scoring_but_both_are_stored(store, settings, clock):
    seen: list[list[S.AnswerRow]] = []

    def builder(view, answers):
        assert view.state is State.DONE and view.job.id == "sales" and view.total == 3
        seen.append(answers)
        return {"total": 77, "recommendation": "yes"}

    m = SessionMachine(store, settings, clock=clock, bank=make_bank(), report_builder=builder)
    sid = to_state(m, clock, State.REVIEW)
    assert m.view.retakes_left == 1
    assert m.handle(S.Retake()) is State.PREPARE
    assert m.view.attempt == 2 and m.view.retakes_left == 0
    m.handle(S.StartAnswer())
    m.handle(answer("第二次回答"))
    assert m.handle(S.Retake()) is State.REVIEW  # none left: ignored
    m.handle(S.NextQuestion())
    m.handle(answer("q2"))
    assert m.view.retakes_left == 0
    m.handle(S.NextQuestion())
    m.handle(S.StartAnswer())
    m.handle(answer("q3"))
    assert m.handle(S.NextQuestion()) is State.DONE
    (scored,) = seen
    assert [(a.question_id, a.attempt, a.transcript) for a in scored] == [
        ("q1", 2, "第二次回答"), ("q2", 1, "q2"), ("q3", 1, "q3")]
    (rec,) = results(store, sid)
    assert [(a["question_id"], a["attempt"]) for a in rec["answers"]] == [
        ("q1", 1), ("q1", 2), ("q2", 1), ("q3", 1)]
    assert rec["report"] == {"total": 77, "recommendation": "yes"}


@pytest.mark.parametrize("max_retakes", [0, 2])
def test_question_without_its_own_retakes_follows_the_device_setting(store, make_settings, clock, max_retakes):
    settings = make_settings({"session": {"max_retakes": max_retakes}})
    bank = make_bank()
    bank = bank.model_copy(update={"questions": (make_question("q1", retakes=None), *bank.questions[1:])})
    m = SessionMachine(store, settings, clock=clock, bank=bank)
    to_state(m, clock, State.REVIEW)
    assert m.view.question.id == "q1" and m.view.retakes_left == max_retakes
    for attempt in range(2, max_retakes + 2):
        assert m.handle(S.Retake()) is State.PREPARE
        m.handle(S.StartAnswer())
        m.handle(answer(f"第{attempt}次"))
        assert m.view.attempt == attempt
    assert m.view.retakes_left == 0
    assert m.handle(S.Retake()) is State.REVIEW  # the device's limit is reached: ignored
    m.handle(S.NextQuestion())
    m.handle(answer("q2"))
    assert m.view.question.id == "q2" and m.view.retakes_left == 0  # the question's own 0 wins


def test_review_times_out_to_the_next_question(machine, clock, settings):
    to_state(machine, clock, State.REVIEW)
    clock.advance(settings.session.timeouts.review)
    assert machine.tick() is State.ANSWER  # q2: no preparation
    assert machine.view.index == 1 and machine.view.message_key == "auto_advanced"


def test_a_whole_interview_writes_one_result_with_its_outbox_rows(machine, store, clock, settings):
    sid = to_state(machine, clock, State.REVIEW)
    machine.handle(S.NextQuestion())
    machine.handle(answer("二"))
    machine.handle(S.NextQuestion())
    clock.advance(5)
    machine.tick()
    machine.handle(answer("三"))
    assert machine.handle(S.NextQuestion()) is State.DONE
    (rec,) = results(store, sid)
    assert rec["schema_version"] == 1 and rec["end_reason"] == "completed"
    assert rec["candidate"] == {"ref": "E-1001", "masked_name": "欧**花"}
    assert rec["device_id"] == settings.device.id and rec["job_id"] == "sales"
    assert [a["transcript"] for a in rec["answers"]] == [TRANSCRIPT, "二", "三"]
    assert rec["report"]["kind"] == "minimal"
    (res,) = outbox(store, "result", sid)
    assert res["payload"] == rec
    assert [e["payload"]["type"] for e in outbox(store, "event", sid)] == ["started", "finished"]
    notes = [n["payload"] for n in outbox(store, "notify", sid)]
    assert [n["type"] for n in notes] == ["started", "finished"]
    assert notes[1]["end_reason"] == "completed" and "total" in notes[1]
    assert all(TRANSCRIPT not in json.dumps(n, ensure_ascii=False) for n in notes)
    ended, reason = rows(store, "SELECT ended, end_reason FROM sessions WHERE id = ?", (sid,))[0]
    assert reason == "completed" and ended == clock.t
    v = machine.view
    assert v.candidate_name is None and v.question is None and v.job_title is None
    clock.advance(settings.session.timeouts.done)
    assert machine.tick() is State.IDLE


def test_cancel_on_the_end_screen_goes_straight_to_idle(machine, clock):
    to_state(machine, clock, State.WELCOME)
    machine.handle(S.ConsentDeclined())
    assert machine.handle(S.Cancel()) is State.IDLE


# --- help and pause ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [State.WELCOME, State.DEVICE_CHECK, State.PREPARE,
                                   State.ANSWER, State.REVIEW])
def test_help_returns_where_it_was_with_the_time_left(machine, store, clock, where):
    sid = to_state(machine, clock, where)
    clock.advance(4)
    before = machine.view.deadline - clock.t
    assert machine.handle(S.HelpRequested()) is State.HELP
    assert machine.view.resume_state is where
    assert machine.view.resume_remaining_s == pytest.approx(before)
    clock.advance(300)  # HR takes five minutes
    assert machine.tick() is State.HELP
    assert machine.handle(S.HelpResolved()) is State.HELP.__class__(where)
    assert machine.view.remaining_s == pytest.approx(before)
    (note,) = [n["payload"] for n in outbox(store, "notify", sid) if n["payload"]["type"] == "help"]
    assert note["activity"] and note["candidate_name"] == NAME
    types = [e["payload"]["type"] for e in outbox(store, "event", sid)]
    assert "help" in types and "help_resolved" in types


def test_help_timeout_abandons_the_session(machine, store, clock, settings):
    sid = to_state(machine, clock, State.PREPARE)
    machine.handle(S.HelpRequested())
    clock.advance(settings.session.timeouts.help)
    assert machine.tick() is State.ABANDONED
    assert "help_requested" in results(store, sid)[0]["integrity_flags"]


def test_answer_finished_during_help_is_kept_and_resumes_into_review(machine, store, clock):
    sid = to_state(machine, clock, State.ANSWER)
    machine.handle(S.HelpRequested())
    assert machine.handle(answer()) is State.HELP
    assert rows(store, "SELECT count(*) FROM answers WHERE session_id = ?", (sid,))[0][0] == 1
    assert machine.handle(S.HelpResolved()) is State.REVIEW


def test_answer_finished_while_paused_is_kept_and_resumes_into_review(machine, store, clock):
    sid = to_state(machine, clock, State.PAUSED)
    assert machine.handle(answer()) is State.PAUSED
    assert rows(store, "SELECT count(*) FROM answers WHERE session_id = ?", (sid,))[0][0] == 1
    assert machine.handle(S.FaceReturned()) is State.REVIEW


def test_help_during_the_grace_keeps_the_grace(machine, clock, settings):
    to_state(machine, clock, State.ANSWER)
    clock.advance(60)
    machine.tick()
    clock.advance(5)
    machine.handle(S.HelpRequested())
    clock.advance(100)
    machine.handle(S.HelpResolved())
    assert machine.state is State.ANSWER and machine.view.time_up
    assert machine.view.remaining_s == pytest.approx(settings.session.answer_grace_s - 5)


def test_face_lost_briefly_does_not_pause(machine, clock, settings):
    to_state(machine, clock, State.ANSWER)
    machine.handle(S.FaceLost())
    clock.advance(settings.session.face_lost_pause_s - 0.5)
    assert machine.tick() is State.ANSWER
    machine.handle(S.FaceReturned())
    clock.advance(10)
    assert machine.tick() is State.ANSWER


def test_face_lost_pauses_and_return_resumes_with_the_time_left(machine, store, clock, settings):
    sid = to_state(machine, clock, State.ANSWER)
    clock.advance(10)
    machine.handle(S.FaceLost())
    pause_s = settings.session.face_lost_pause_s
    clock.advance(pause_s)
    assert machine.tick() is State.PAUSED
    assert machine.view.resume_state is State.ANSWER
    assert machine.view.resume_remaining_s == pytest.approx(60 - 10 - pause_s)
    clock.advance(settings.session.timeouts.paused - 1)
    assert machine.handle(S.FaceReturned()) is State.ANSWER
    assert machine.view.remaining_s == pytest.approx(60 - 10 - pause_s)
    types = [e["payload"]["type"] for e in outbox(store, "event", sid)]
    assert types[-2:] == ["paused", "resumed"]


def test_pause_and_resume_do_not_depend_on_the_store(machine, store, clock, settings,
                                                     monkeypatch):
    to_state(machine, clock, State.ANSWER)

    def failing(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(store, "enqueue", failing)
    machine.handle(S.FaceLost())
    clock.advance(settings.session.face_lost_pause_s)
    assert machine.tick() is State.PAUSED
    assert machine.handle(S.FaceReturned()) is State.ANSWER
    assert machine.view.remaining_s == pytest.approx(60 - settings.session.face_lost_pause_s)


def test_paused_too_long_abandons_the_session(machine, store, clock, settings):
    sid = to_state(machine, clock, State.REVIEW)
    machine.handle(S.FaceLost())
    clock.advance(settings.session.face_lost_pause_s)
    machine.tick()
    assert machine.state is State.PAUSED
    clock.advance(settings.session.timeouts.paused)
    assert machine.tick() is State.ABANDONED
    (rec,) = results(store, sid)
    assert "left_frame" in rec["integrity_flags"] and len(rec["answers"]) == 1


def test_face_still_lost_after_help_pauses_after_a_new_grace(machine, clock, settings):
    to_state(machine, clock, State.PREPARE)
    machine.handle(S.FaceLost())
    machine.handle(S.HelpRequested())
    clock.advance(60)
    machine.handle(S.HelpResolved())
    assert machine.tick() is State.PREPARE
    clock.advance(settings.session.face_lost_pause_s)
    assert machine.tick() is State.PAUSED


# --- failures and leaving ----------------------------------------------------------------------


IN_SESSION_STATES = [State.WELCOME, State.DEVICE_CHECK, State.PREPARE, State.ANSWER,
                     State.REVIEW, State.HELP, State.PAUSED]


@pytest.mark.parametrize("where", IN_SESSION_STATES)
def test_hardware_failure_keeps_the_answers_and_tells_hr(machine, store, clock, settings, where):
    sid = to_state(machine, clock, where)
    assert machine.handle(S.HardwareFailed("camera", "unplugged")) is State.FAILED
    (rec,) = results(store, sid)
    answered = rows(store, "SELECT count(*) FROM answers WHERE session_id = ?", (sid,))[0][0]
    assert rec["end_reason"] == "failed" and len(rec["answers"]) == answered
    note = outbox(store, "notify", sid)[-1]["payload"]
    assert (note["type"], note["component"], note["detail"]) == (
        "hardware_failed", "camera", "unplugged")
    assert outbox(store, "event", sid)[-1]["payload"]["type"] == "hardware_failed"
    assert machine.view.candidate_name is None
    clock.advance(settings.session.timeouts.failed)
    assert machine.tick() is State.IDLE


def test_hardware_failure_while_idle_shows_the_failure_screen_and_tells_hr(machine, store, clock):
    assert machine.handle(S.HardwareFailed("microphone", "no device")) is State.FAILED
    assert [n["payload"]["type"] for n in outbox(store, "notify")] == ["hardware_failed"]
    assert [e["payload"]["type"] for e in outbox(store, "event")] == ["hardware_failed"]
    assert rows(store, "SELECT count(*) FROM results")[0][0] == 0


@pytest.mark.parametrize("where", IN_SESSION_STATES)
def test_cancel_abandons_the_session_and_wipes_the_screen(machine, store, clock, where):
    sid = to_state(machine, clock, where)
    assert machine.handle(S.Cancel()) is State.ABANDONED
    assert results(store, sid)[0]["end_reason"] == "abandoned"
    v = machine.view
    assert (v.session_id, v.candidate_name, v.question, v.job_title) == (None, None, None, None)


def test_reset_closes_an_open_session_and_goes_idle(machine, store, clock):
    sid = to_state(machine, clock, State.ANSWER)
    machine.handle(S.HelpRequested())
    assert machine.handle(S.Reset()) is State.IDLE
    assert results(store, sid)[0]["end_reason"] == "abandoned"
    assert machine.view == S.SessionView()


# --- invalid input -------------------------------------------------------------------------------

ALL_EVENTS = [
    S.SignInStarted(), verified(), S.VerificationFailed("x"), S.ConsentGiven(),
    S.ConsentDeclined(), S.DeviceCheckPassed(), S.DeviceCheckFailed("h"), S.StartAnswer(),
    answer(), S.Retake(), S.NextQuestion(), S.HelpRequested(), S.HelpResolved(), S.FaceLost(),
    S.FaceReturned(), S.HardwareFailed("camera"), S.Cancel(), S.Reset(),
]
ACCEPTED = {
    State.IDLE: {"SignInStarted", "Verified", "VerificationFailed", "HardwareFailed", "Reset"},
    State.WELCOME: {"ConsentGiven", "ConsentDeclined", "HelpRequested", "HardwareFailed",
                    "Cancel", "Reset"},
    State.DEVICE_CHECK: {"DeviceCheckPassed", "DeviceCheckFailed", "HelpRequested",
                         "HardwareFailed", "Cancel", "Reset"},
    State.PREPARE: {"StartAnswer", "HelpRequested", "FaceLost", "FaceReturned", "HardwareFailed",
                    "Cancel", "Reset"},
    State.ANSWER: {"AnswerFinished", "HelpRequested", "FaceLost", "FaceReturned",
                   "HardwareFailed", "Cancel", "Reset"},
    State.REVIEW: {"Retake", "NextQuestion", "HelpRequested", "FaceLost", "FaceReturned",
                   "HardwareFailed", "Cancel", "Reset"},
    State.HELP: {"HelpResolved", "FaceLost", "FaceReturned", "HardwareFailed", "Cancel",
                 "Reset"},  # help from PREPARE: no answer is being recorded
    State.PAUSED: {"FaceReturned", "AnswerFinished", "HardwareFailed", "Cancel", "Reset"},
}


@pytest.mark.parametrize("where", list(ACCEPTED))
def test_events_that_do_not_apply_are_ignored(machine, store, clock, where):
    if where is not State.IDLE:
        to_state(machine, clock, where)
    for ev in ALL_EVENTS:
        if type(ev).__name__ in ACCEPTED[where]:
            continue
        before = machine.view
        n_out = rows(store, "SELECT count(*) FROM outbox")[0][0]
        assert machine.handle(ev) is where, type(ev).__name__
        assert machine.view == before
        assert rows(store, "SELECT count(*) FROM outbox")[0][0] == n_out


def test_unknown_objects_are_ignored(machine):
    assert machine.handle("ConsentGiven") is State.IDLE
    assert machine.handle(None) is State.IDLE
    assert machine.handle(object()) is State.IDLE


def test_bad_answer_fields_are_repaired_and_kept(machine, store, clock, caplog):
    sid = to_state(machine, clock, State.ANSWER)
    clock.advance(7)
    bad = S.AnswerFinished(None, "not a dict", "nope", float("nan"))  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="device.session"):
        assert machine.handle(bad) is State.REVIEW
    ((text, analysis, media, started, ended),) = rows(
        store, "SELECT transcript, analysis, media, started, ended FROM answers"
        " WHERE session_id = ?", (sid,))
    assert text == "" and json.loads(analysis) == {"invalid": "str"} and json.loads(media) == []
    assert ended - started == pytest.approx(7)
    assert "duration_s" in caplog.text and "analysis" in caplog.text


def test_verified_without_an_entry_id_is_refused(machine, store):
    assert machine.handle(S.Verified(object(), "sales")) is State.VERIFYING
    assert machine.view.message_key == "signin.invalid"
    assert rows(store, "SELECT count(*) FROM sessions")[0][0] == 0


def test_a_failing_subscriber_does_not_stop_the_machine(machine):
    views: list[S.SessionView] = []
    machine.subscribe(lambda v: 1 / 0)
    machine.subscribe(views.append)
    assert machine.handle(verified()) is State.WELCOME
    assert views[-1].state is State.WELCOME


def test_subscribers_see_the_countdown_once_a_second(machine, clock):
    to_state(machine, clock, State.PREPARE)
    views: list[S.SessionView] = []
    machine.subscribe(views.append)
    for _ in range(8):  # 4 s at 2 Hz
        clock.advance(0.5)
        machine.tick()
    assert [round(v.remaining_s) for v in views] == [10, 9, 8, 7, 6][-len(views):]
    assert len(views) == 4


def test_report_builder_failure_still_writes_the_result(store, settings, clock):
    def broken(view, answers):
        raise RuntimeError("model missing")

    m = SessionMachine(store, settings, clock=clock, bank=make_bank(), report_builder=broken)
    sid = to_state(m, clock, State.REVIEW)
    m.handle(S.Cancel())
    (rec,) = results(store, sid)
    assert rec["report"]["error"] == "report_failed"
    assert "report_failed" in rec["integrity_flags"]
    assert len(rec["answers"]) == 1


# --- atomicity and recovery ----------------------------------------------------------------------


def test_result_and_outbox_rows_are_written_together_or_not_at_all(
        machine, store, clock, settings, monkeypatch):
    sid = to_state(machine, clock, State.REVIEW)
    machine.handle(S.NextQuestion())
    machine.handle(answer("二"))
    machine.handle(S.NextQuestion())
    machine.handle(S.StartAnswer())
    machine.handle(answer("三"))
    real_enqueue = store.enqueue
    n_before = rows(store, "SELECT count(*) FROM outbox WHERE session_id = ?", (sid,))[0][0]

    def failing(kind, *a, **kw):
        if kind == "notify":  # the last write of the finishing transaction
            raise OSError("disk full")
        return real_enqueue(kind, *a, **kw)

    monkeypatch.setattr(store, "enqueue", failing)
    assert machine.handle(S.NextQuestion()) is State.FINISHING
    assert results(store, sid) == []
    assert rows(store, "SELECT count(*) FROM outbox WHERE session_id = ?", (sid,))[0][0] == n_before
    assert rows(store, "SELECT ended FROM sessions WHERE id = ?", (sid,))[0][0] is None
    assert rows(store, "SELECT count(*) FROM answers WHERE session_id = ?", (sid,))[0][0] == 3
    # The disk recovers: the next tick saves it, once.
    monkeypatch.setattr(store, "enqueue", real_enqueue)
    clock.advance(S.FINISH_RETRY_S)
    assert machine.tick() is State.DONE
    assert len(results(store, sid)) == 1
    assert len(outbox(store, "result", sid)) == 1
    assert outbox(store, "notify", sid)[-1]["payload"]["type"] == "finished"


def test_finishing_gives_up_after_its_timeout_and_recovers_later(
        store, settings, clock, monkeypatch):
    m = SessionMachine(store, settings, clock=clock, bank=make_bank(),
                       questions=[make_question("only", prep=0, answer=10, retakes=0)])
    m.handle(verified())
    m.handle(S.ConsentGiven())
    m.handle(S.DeviceCheckPassed())
    sid = m.view.session_id
    m.handle(answer())
    real_enqueue = store.enqueue

    def failing(kind, *a, **kw):
        if kind == "result":
            raise OSError("disk full")
        return real_enqueue(kind, *a, **kw)

    monkeypatch.setattr(store, "enqueue", failing)
    assert m.handle(S.NextQuestion()) is State.FINISHING
    assert m.view.message_key == "saving"
    clock.advance(settings.session.timeouts.finishing - 1)
    assert m.tick() is State.FINISHING
    clock.advance(1)
    assert m.tick() is State.FAILED
    assert m.view.message_key == "save_failed" and m.view.session_id is None
    assert results(store, sid) == []
    monkeypatch.setattr(store, "enqueue", real_enqueue)
    clock.advance(settings.session.timeouts.failed)
    m.tick()  # back to idle, and the open session is closed there
    assert m.tick() is State.IDLE
    (rec,) = results(store, sid)
    assert rec["end_reason"] == "interrupted" and len(rec["answers"]) == 1


def test_a_save_that_keeps_failing_is_recovered_later(machine, store, clock, settings, monkeypatch):
    sid = to_state(machine, clock, State.REVIEW)
    real_enqueue = store.enqueue

    def failing(kind, *a, **kw):
        if kind == "result":
            raise OSError("disk full")
        return real_enqueue(kind, *a, **kw)

    monkeypatch.setattr(store, "enqueue", failing)
    assert machine.handle(S.Cancel()) is State.ABANDONED
    assert results(store, sid) == []
    clock.advance(settings.session.timeouts.abandoned)
    assert machine.tick() is State.IDLE
    monkeypatch.setattr(store, "enqueue", real_enqueue)
    clock.advance(S.RECOVER_RETRY_S)
    machine.tick()
    (rec,) = results(store, sid)
    assert rec["end_reason"] == "interrupted" and len(rec["answers"]) == 1
    assert machine.state is State.IDLE  # nobody is there to see an "interrupted" screen


def fail_answer_inserts(store: Store, monkeypatch) -> None:
    real = store.db.execute

    def execute(sql, *args, **kwargs):
        if "INTO answers" in sql:
            raise OSError("database is locked")
        return real(sql, *args, **kwargs)

    monkeypatch.setattr(store.db, "execute", execute)


def answer_count(store: Store, sid: str) -> int:
    return rows(store, "SELECT count(*) FROM answers WHERE session_id = ?", (sid,))[0][0]


def test_an_answer_the_store_refuses_is_kept_and_saved_later(machine, store, clock, monkeypatch):
    sid = to_state(machine, clock, State.ANSWER)
    fail_answer_inserts(store, monkeypatch)
    assert machine.handle(answer()) is State.REVIEW  # the candidate is not held up
    clock.advance(S.FINISH_RETRY_S)
    machine.tick()
    assert answer_count(store, sid) == 0
    monkeypatch.undo()
    clock.advance(S.FINISH_RETRY_S)
    machine.tick()
    assert answer_count(store, sid) == 1
    machine.tick()
    assert answer_count(store, sid) == 1  # once


def test_an_unsaved_answer_reaches_the_result_when_the_session_ends(
        machine, store, clock, monkeypatch):
    sid = to_state(machine, clock, State.ANSWER)
    fail_answer_inserts(store, monkeypatch)
    machine.handle(answer())
    monkeypatch.undo()
    machine.handle(S.Cancel())  # before any tick could retry
    (rec,) = results(store, sid)
    assert [a["transcript"] for a in rec["answers"]] == [TRANSCRIPT]


def test_an_unsaved_answer_of_a_session_left_for_recovery_is_not_dropped(
        machine, store, clock, settings, monkeypatch):
    sid = to_state(machine, clock, State.ANSWER)
    fail_answer_inserts(store, monkeypatch)
    machine.handle(answer())
    assert machine.handle(S.Cancel()) is State.ABANDONED  # the result cannot be saved either
    assert results(store, sid) == []
    monkeypatch.undo()
    clock.advance(settings.session.timeouts.abandoned)
    machine.tick()
    assert machine.tick() is State.IDLE
    (rec,) = results(store, sid)
    assert rec["end_reason"] == "interrupted"
    assert [a["transcript"] for a in rec["answers"]] == [TRANSCRIPT]


def test_recover_closes_unfinished_sessions_as_interrupted(store, settings, clock):
    first = SessionMachine(store, settings, clock=clock, bank=make_bank())
    sid = to_state(first, clock, State.REVIEW)
    first.handle(S.NextQuestion())
    first.handle(S.HelpRequested())  # power cut while HR is on the way
    del first
    clock.advance(120)
    restarted = SessionMachine(store, settings, clock=clock, bank=make_bank())
    assert restarted.recover() == [sid]
    assert restarted.state is State.INTERRUPTED
    (rec,) = results(store, sid)
    assert rec["end_reason"] == "interrupted"
    assert [a["transcript"] for a in rec["answers"]] == [TRANSCRIPT]
    assert rec["candidate"]["masked_name"] == "欧**花"
    assert {"interrupted", "help_requested", "incomplete"} <= set(rec["integrity_flags"])
    (res,) = outbox(store, "result", sid)
    assert res["payload"]["id"] == rec["id"]
    assert outbox(store, "event", sid)[-1]["payload"]["type"] == "interrupted"
    assert outbox(store, "notify", sid)[-1]["payload"]["end_reason"] == "interrupted"
    ended, reason = rows(store, "SELECT ended, end_reason FROM sessions WHERE id = ?", (sid,))[0]
    assert (ended, reason) == (clock.t, "interrupted")
    # Idempotent: a second start-up finds nothing to do.
    again = SessionMachine(store, settings, clock=clock, bank=make_bank())
    assert again.recover() == []
    assert again.state is State.IDLE
    assert len(results(store, sid)) == 1
    clock.advance(settings.session.timeouts.interrupted)
    assert restarted.tick() is State.IDLE


def test_recover_without_the_bank_still_delivers_the_answers(store, settings, clock):
    first = SessionMachine(store, settings, clock=clock, bank=make_bank())
    sid = to_state(first, clock, State.REVIEW)
    restarted = SessionMachine(store, settings, clock=clock)  # no bank installed now
    assert restarted.recover() == [sid]
    (rec,) = results(store, sid)
    assert len(rec["answers"]) == 1


def test_recover_with_nothing_open_does_nothing(machine):
    assert machine.recover() == []
    assert machine.state is State.IDLE


# --- privacy ------------------------------------------------------------------------------------


def test_names_and_transcripts_never_reach_the_log(store, settings, clock, caplog):
    m = SessionMachine(store, settings, clock=clock, bank=make_bank())
    with caplog.at_level(logging.DEBUG):
        to_state(m, clock, State.REVIEW)
        m.handle(S.HelpRequested())
        m.handle(S.HelpResolved())
        m.handle(S.Retake())
        m.handle(S.StartAnswer())
        m.handle(answer())
        m.handle(S.ConsentGiven())  # ignored event: logged by type only
        m.handle(S.HardwareFailed("camera", "gone"))
        SessionMachine(store, settings, clock=clock, bank=make_bank()).recover()
    text = caplog.text
    assert "session" in text  # it did log
    for secret in (NAME, NAME[:2], "琉璃厂", "蓝鲸计划", "欧**花"):
        assert secret not in text


def test_event_reprs_hide_transcripts_and_names():
    assert TRANSCRIPT not in repr(answer())
    assert NAME not in repr(verified())


# --- the console demo ---------------------------------------------------------------------------


def test_script_demo_prints_the_result_it_stored(tmp_path, config_path, settings, capsys):
    from device import script_demo

    scratch = tmp_path / "scratch"
    assert script_demo.main(["--config", str(config_path), "--data-dir", str(scratch),
                             "--job", "software_engineer"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out)
    assert rec["end_reason"] == "completed" and rec["device_id"] == settings.device.id
    assert rec["language"] == "en"
    assert len({a["idx"] for a in rec["answers"]}) == 5
    assert any(a["attempt"] == 2 for a in rec["answers"])  # the script retakes once
    # It read back the encrypted scratch store, and left the device's own data alone.
    store = Store.open_from_settings(script_demo.scratch_settings(config_path, scratch))
    try:
        assert results(store, rec["session_id"]) == [rec]
    finally:
        store.close()
    assert not (settings.paths.data_dir / "kiosk.db").exists()


def test_script_demo_names_a_bad_bank(tmp_path, capsys):
    from device import script_demo

    bad = tmp_path / "bank.json"
    bad.write_text('{"version": 0}', encoding="utf-8")
    assert script_demo.main(["--data-dir", str(tmp_path / "d"), "--bank", str(bad)]) == 2
    assert "bank.json" in capsys.readouterr().err
