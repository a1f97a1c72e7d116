"""The report builder inside the real session machine and encrypted store: a whole English
interview ends with a result whose report section carries scores, evidence and the HR note,
and whose record renders as the HTML report."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import device.session as S
from analysis.face import AttentionAggregator, FaceObservation
from analysis.report import build_report, render_html
from analysis.speech import Transcript, Word
from device.roster import RosterEntry

T0 = 1_790_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def _analysis(text: str) -> tuple[str, dict, float]:
    words = text.lower().replace(",", "").replace(".", "").split()
    tr = Transcript(
        " ".join(words),
        [Word(w, 0.5 + i * 0.38, 0.8 + i * 0.38, 0.9) for i, w in enumerate(words)],
        "pocketsphinx",
        "pocketsphinx en-us (bundled)",
        False,
        "en",
        1.0 + len(words) * 0.38,
    )
    agg = AttentionAggregator()
    for k in range(int(tr.duration_s * 15)):
        agg.add(
            FaceObservation(faces=1, facing=not (3 < k / 15 < 5), smiling=k % 4 == 0, looking=True),
            k / 15,
        )
    return (
        tr.text,
        {"transcript": tr.to_dict(), "face": agg.summary(), "duration_s": tr.duration_s},
        tr.duration_s,
    )


def test_a_whole_interview_ends_with_an_explained_report(store, settings, bank, sample_answers):
    clock = Clock()
    m = S.SessionMachine(store, settings, clock=clock, bank=bank, report_builder=build_report)
    start = datetime.fromtimestamp(T0, UTC) - timedelta(hours=1)
    entry = RosterEntry(
        entry_id="E-7",
        name="Jordan Lee",
        wecom_userid="u7",
        job_id="software_engineer",
        device_id=settings.device.id,
        slot_start=start,
        slot_end=start + timedelta(hours=3),
    )
    for ev in (
        S.SignInStarted("wecom"),
        S.Verified(entry, "software_engineer", "wecom", "v-7"),
        S.ConsentGiven(),
        S.DeviceCheckPassed(),
    ):
        m.handle(ev)
    session_id = m.view.session_id
    asked = []
    for _ in range(10):
        if m.state != S.State.PREPARE:
            break
        q = m.view.question
        asked.append(q.id)
        m.handle(S.StartAnswer())
        text, analysis, dur = _analysis(sample_answers[q.id]["text"])
        clock.t += dur
        m.handle(S.AnswerFinished(text, analysis, [], dur))
        m.handle(S.NextQuestion())
        clock.t += 1
    for _ in range(5):
        m.tick()
    assert m.state == S.State.DONE, m.state
    assert len(asked) == 5 and "swe-01" in asked
    with store.lock:
        rec = json.loads(
            store.db.execute(
                "SELECT record FROM results WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
        )
    rep = rec["report"]
    assert rep["kind"] == "analysis" and rep["answered"] == 5
    assert rep["recommendation"] == "yes" and rep["total"] >= 70
    assert set(rep["dimensions"]) >= {
        "problem_solving",
        "technical_depth",
        "teamwork",
        "learning_agility",
    }
    for a in rep["answers"]:
        assert a["evidence"]["content"]["keywords"]["matched"], a["question_id"]
        assert a["evidence"]["recognizer"]["engine"] == "pocketsphinx"
    html = render_html(rec, "en")
    assert S.mask_name("Jordan Lee") in html and "id='radar'" in html
    assert "Jordan" not in html  # the report carries the masked name only
