"""A scripted answer end to end: espeak-ng audio and a face video made from a real photo go
through LiveAnswerAnalyzer from two threads; the report builder and the HTML report turn
the result into explained scores. Also the report's sections and its HR note."""

from __future__ import annotations

import json
import re
import threading
from html import escape as html_escape

import cv2
import pytest

from analysis.live import LiveAnswerAnalyzer, grammar_for
from analysis.report import NOTE, build_report, render_html
from analysis.speech import PocketsphinxRecognizer
from device.session import AnswerRow, SessionView, State
from hardware.synthetic import read_wav

SCRIPT = [("present", 7.0), ("away", 3.0), ("present", 5.0), ("absent", 2.5), ("present", 60.0)]


class _Frame:
    def __init__(self, image, ts):
        self.image, self.ts = image, ts


class _Chunk:
    def __init__(self, pcm):
        self.pcm = pcm


@pytest.fixture(scope="module")
def scripted_answer(bank, sample_answers, media):
    """swe-02 answered by the synthetic candidate: transcript and analysis via the live path."""
    job, q = bank.job("software_engineer"), bank.question("swe-02")
    pcm = read_wav(media.speech(sample_answers["swe-02"]["text"], "en"))
    seconds = len(pcm) / 16000
    video = media.video(round(seconds, 1), SCRIPT)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    la = LiveAnswerAnalyzer(q, job, recognizer=PocketsphinxRecognizer())
    captions: list[str] = []

    def camera():
        for i, img in enumerate(frames):
            la.feed_frame(_Frame(img, 1000.0 + i / 30))

    def mic():
        for i in range(0, len(pcm), 1600):
            captions.append(la.feed_audio(_Chunk(pcm[i : i + 1600])))

    threads = [threading.Thread(target=camera), threading.Thread(target=mic)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text, analysis = la.finish()
    return {
        "job": job,
        "q": q,
        "text": text,
        "analysis": analysis,
        "captions": captions,
        "frames": len(frames),
        "seconds": seconds,
    }


def test_live_answer_gives_transcript_and_explained_scores(scripted_answer):
    r = scripted_answer
    a = r["analysis"]
    assert any(r["captions"][: len(r["captions"]) // 2]), "no live caption during the first half"
    assert r["text"] and a["transcript"]["engine"] == "pocketsphinx"
    assert json.loads(json.dumps(a)) == a, "the analysis must be plain JSON for the store"
    kw = a["score"]["evidence"]["content"]["keywords"]
    assert len(kw["matched"]) >= 4, kw
    for m in kw["matched"]:
        assert m["kind"] in ("exact", "stem", "pinyin", "fuzzy", "grammar") and m["heard"]
    star = a["score"]["evidence"]["content"]["star"]
    assert len(star["found"]) >= 3
    assert 60 <= a["score"]["score"] <= 100
    face = a["face"]
    # Half the frames are analysed (15 of 30 per second), durations still come out right.
    assert a["frames_seen"] == r["frames"] and a["frames_analysed"] == pytest.approx(
        r["frames"] / 2, abs=2
    )
    assert face["look_away_count"] == 1
    assert face["look_away_events"][0][0] == pytest.approx(7.0, abs=0.5)
    assert face["longest_absence_s"] == pytest.approx(2.5, abs=0.4)
    absent_share = 2.5 / r["seconds"]
    assert face["face_present_ratio"] == pytest.approx(1 - absent_share, abs=0.03)
    assert a["score"]["nonverbal"] < 100


def test_report_section_and_html_from_the_scripted_answer(scripted_answer):
    r = scripted_answer
    job, q = r["job"], r["q"]
    view = SessionView(
        state=State.DONE,
        session_id="s-1",
        job_id=job.id,
        language="en",
        total=1,
        job=job,
        questions=(q,),
    )
    row = AnswerRow(
        id="a-1",
        session_id="s-1",
        question_id=q.id,
        idx=0,
        attempt=1,
        started=10.0,
        ended=10.0 + r["seconds"],
        transcript=r["text"],
        analysis=r["analysis"],
        media=[],
    )
    rep = build_report(view, [row])
    assert rep == build_report(view, [row]), "the report must be deterministic"
    assert rep["answers"][0]["score"] == r["analysis"]["score"]["score"]
    assert rep["total"] == pytest.approx(
        rep["dimensions"]["problem_solving"]["score"] * 0.35 / 0.6
        + rep["dimensions"]["technical_depth"]["score"] * 0.25 / 0.6,
        abs=0.1,
    )
    assert rep["recommendation"] in ("yes", "maybe", "no")
    assert rep["evidence"]["not_assessed"] == ["teamwork", "learning_agility"]
    record = {
        "job_id": job.id,
        "candidate": {"ref": "r-1", "masked_name": "J*****"},
        "started": 0,
        "ended": 60,
        "end_reason": "completed",
        "answers": [{"question_id": q.id, "attempt": 1, "transcript": r["text"]}],
        "report": rep,
        "integrity_flags": ["left_frame"],
    }
    for lang in ("zh", "en"):
        html = render_html(record, lang)
        for section in ("note", "summary", "flags", "attention", "answers", "answer-1", "method"):
            assert f"id='{section}'" in html, section
        assert html_escape(NOTE[lang], quote=True) in html
        assert "data:image/png;base64," in html and "id='timeline'" in html
        assert r["text"].split()[3] in html
        assert ("面试中曾暂停" if lang == "zh" else "The interview paused") in html


def _fake_answer(q, idx, text, face=None, seconds=40.0):
    return AnswerRow(
        id=f"a{idx}",
        session_id="s",
        question_id=q.id,
        idx=idx,
        attempt=1,
        started=0.0,
        ended=seconds,
        transcript=text,
        analysis={
            "transcript": {
                "text": text,
                "words": [],
                "engine": "vosk",
                "model": "m",
                "biased": False,
            },
            "face": face,
        },
        media=[],
    )


def test_report_flags_integrity_and_draws_the_radar(bank, sample_answers):
    job = bank.job("sales_rep")
    qids = ["sales-01", "sales-02", "sales-03", "sales-04"]
    qs = [bank.question(x) for x in qids]
    two = {
        "frames": 100,
        "face_present_ratio": 1.0,
        "facing_ratio": 1.0,
        "smile_ratio": 0.1,
        "multi_face_frames": 12,
        "longest_absence_s": 0.0,
        "timeline": [[0.0, "facing"], [0.5, "multiple"]],
    }
    gone = {
        "frames": 100,
        "face_present_ratio": 0.5,
        "facing_ratio": 1.0,
        "smile_ratio": 0.0,
        "multi_face_frames": 0,
        "longest_absence_s": 15.0,
        "timeline": [[0.0, "absent"]],
    }
    rows = [
        _fake_answer(qs[0], 0, sample_answers["sales-01"]["text"], two),
        _fake_answer(
            qs[1], 1, "我先了解客户的需求，耐心倾听他的顾虑，然后推荐合适的方案，最后成交了。", gone
        ),
        _fake_answer(qs[2], 2, ""),
        _fake_answer(qs[3], 3, "我的目标是每个月完成业绩，我每天做计划。"),
    ]
    view = SessionView(
        state=State.DONE,
        session_id="s",
        job_id=job.id,
        language="zh",
        total=5,
        job=job,
        questions=tuple(qs),
    )
    rep = build_report(view, rows)
    assert rep["integrity_flags"] == ["long_absence", "multiple_faces", "no_speech"]
    assert rep["planned"] == 5 and rep["answered"] == 4
    record = {
        "job_id": job.id,
        "candidate": {"ref": "r", "masked_name": "王*"},
        "answers": [
            {"question_id": a.question_id, "attempt": 1, "transcript": a.transcript} for a in rows
        ],
        "report": rep,
        "integrity_flags": [],
    }
    html = render_html(record, "zh")
    assert "id='radar'" in html
    assert "画面中出现过不止一张脸" in html and "候选人曾长时间离开画面" in html
    assert "销售代表" in html and "王*" in html
    # candidate text is escaped, never injected
    rows[3] = _fake_answer(qs[3], 3, "<script>alert(1)</script>")
    html = render_html(
        {
            **record,
            "report": build_report(view, rows),
            "answers": [
                {"question_id": qs[3].id, "attempt": 1, "transcript": "<script>alert(1)</script>"}
            ],
        },
        "en",
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r"<img[^>]+src='(?!data:)", html), "the HTML must stand alone"


def test_grammar_is_the_rubric_terms_and_synonyms(bank):
    q = bank.question("swe-05")
    g = grammar_for(q, "en")
    assert g[:2] == ["measure", "profile"] and "JavaScript bundle" in g
    assert grammar_for(bank.question("swe-01"), "zh") == []


def test_report_builder_without_a_job_fails_loudly():
    with pytest.raises(ValueError, match="no job"):
        build_report(SessionView(), [])


def test_skipped_frames_return_the_latest_observation(bank):
    from analysis.face import FaceAnalyzer
    from hardware.synthetic import face_frame

    job, q = bank.job("software_engineer"), bank.question("swe-05")
    with FaceAnalyzer() as fa:
        la = LiveAnswerAnalyzer(
            q, job, recognizer=PocketsphinxRecognizer(), face_analyzer=fa, face_fps=10
        )
        cache: dict = {}
        first = la.feed_frame(_Frame(face_frame("present", 0.0, _cache=cache), 5.0))
        second = la.feed_frame(_Frame(face_frame("absent", 0.033, _cache=cache), 5.033))
        third = la.feed_frame(_Frame(face_frame("absent", 0.1, _cache=cache), 5.1))
        assert first.faces == 1 and second is first, (
            "a skipped frame reports the latest observation"
        )
        assert third.faces == 0
        text, analysis = la.finish(duration_s=1.0)
        assert analysis["frames_seen"] == 3 and analysis["frames_analysed"] == 2
        assert (
            text == ""
            and analysis["score"]["evidence"]["delivery"]["note"] == "no speech was recognised"
        )


def test_competencies_are_labelled_with_the_bank_names(bank):
    job = bank.job("sales_rep")
    qs = [bank.question(x) for x in ("sales-01", "sales-02", "sales-03")]
    view = SessionView(
        state=State.DONE,
        session_id="s",
        job_id=job.id,
        language="zh",
        total=3,
        job=job,
        questions=tuple(qs),
    )
    rows = [_fake_answer(q, i, "我很重视客户的需求，也会坚持跟进。") for i, q in enumerate(qs)]
    record = {
        "job_id": job.id,
        "candidate": {"ref": "r"},
        "answers": [],
        "report": build_report(view, rows),
    }
    html = render_html(record, "zh", dimension_names=bank.dimensions)
    assert "客户导向" in html and "抗压与韧性" in html
    assert "Customer focus" in render_html(record, "en", dimension_names=bank.dimensions)
