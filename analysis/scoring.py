"""Answer and interview scores with their evidence: rubric keywords (exact, stemmed, grammar,
pinyin and fuzzy matches), STAR structure, length, delivery and non-verbal signals. Scores
support HR's decision and never replace it; the same inputs always give the same numbers.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from analysis.speech import KEYWORD_MIN_CONF, Transcript, Word

# How much each kind of keyword match counts, and the order they are tried in. A match by
# sound (pinyin) or spelling distance is likelier to be wrong, so it counts for less.
MATCH_CREDIT = {"exact": 1.0, "stem": 1.0, "grammar": 0.9, "pinyin": 0.9, "fuzzy": 0.7}
# Parts of an answer's score. Content and delivery split the verbal part; the job decides
# the non-verbal share (Job.nonverbal_weight, zero allowed).
VERBAL_WEIGHTS = {"content": 0.7, "delivery": 0.3}
CONTENT_WEIGHTS = {"keywords": 0.6, "star": 0.25, "length": 0.15}
SENTENCE_GAP_S = 0.45  # a pause this long ends a "sentence" in an unpunctuated transcript
LONG_PAUSE_S = 2.0
RATE_BANDS = {
    "zh": (150.0, 300.0, "characters per minute"),
    "en": (100.0, 170.0, "words per minute"),
}
MAYBE_MARGIN = 10.0  # points below the pass threshold still called "maybe"

FILLERS = {
    "zh": ("嗯", "呃", "额", "那个", "就是", "然后", "这个", "啊"),
    "en": ("um", "uh", "er", "erm", "hmm", "like", "you know", "i mean"),
}
STAR_CUES: dict[str, dict[str, tuple[str, ...]]] = {
    "situation": {
        "zh": (
            "当时",
            "那时",
            "有一次",
            "有一回",
            "之前",
            "去年",
            "以前",
            "上一份工作",
            "情况是",
            "背景",
        ),
        "en": (
            "last year",
            "once",
            "one day",
            "one time",
            "at the time",
            "in my last job",
            "there was",
            "we had",
            "when",
            "our team had",
            "a teammate",
            "a customer",
            "a colleague",
            "situation",
        ),
    },
    "task": {
        "zh": ("我的任务", "任务是", "目标是", "我负责", "负责", "我需要", "需要我", "要求我"),
        "en": (
            "my task",
            "my job was",
            "my goal",
            "the goal was",
            "i was responsible",
            "i needed to",
            "i had to",
            "we had to",
            "to deliver",
            "my role",
        ),
    },
    "action": {
        "zh": (
            "我首先",
            "首先",
            "我先",
            "然后我",
            "接着",
            "我决定",
            "我就",
            "我主动",
            "我马上",
            "我们一起",
        ),
        "en": (
            "first i",
            "then i",
            "i decided",
            "so i",
            "i talked",
            "i listened",
            "i asked",
            "i built",
            "i wrote",
            "i added",
            "i fixed",
            "i called",
            "i learned",
            "i rolled",
            "we built",
        ),
    },
    "result": {
        "zh": ("结果", "最后", "最终", "后来", "因此", "成功", "提高了", "完成了", "提前"),
        "en": (
            "as a result",
            "in the end",
            "finally",
            "result",
            "so we",
            "so it",
            "we delivered",
            "it worked",
            "which led to",
            "became",
            "dropped",
            "after that",
            "since then",
            "now",
        ),
    },
}


# ----------------------------------------------------------------------------- text


def _is_zh(language: str) -> bool:
    return language.startswith("zh")


def normalise(text: str, language: str) -> str:
    """Lower-case, punctuation to spaces; Chinese loses its spaces (ASR puts them between words)."""
    text = text.lower()
    if _is_zh(language):
        text = re.sub(r"\s+", "", text)
        return re.sub(r"[，。！？；：、,.!?;:\"'“”‘’（）()\[\]<>《》…—-]", "", text)
    return " ".join(re.findall(r"[a-z0-9']+", text))


def tokens(text: str, language: str) -> list[str]:
    """jieba words for Chinese; words for English."""
    norm = normalise(text, language)
    if _is_zh(language):
        return [t for t in _jieba().lcut(norm) if t.strip()]
    return norm.split()


@functools.lru_cache(maxsize=1)
def _jieba() -> Any:
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary banner is not our log
    jieba.initialize()
    return jieba


def warm_up() -> None:
    """Load jieba's dictionary and pypinyin's tables now (about 2 s) rather than when the
    first Chinese answer ends."""
    _jieba()
    pinyin_of("预热")


def stem(word: str) -> str:
    """A tiny English stemmer: enough for listened/listen, tests/test, caching/cache."""
    w = word.lower()
    for suf, repl in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: len(w) - len(suf)] + repl
            break
    return w.rstrip("e")


def levenshtein(a: Any, b: Any) -> int:
    """Edit distance between two sequences (strings or lists of syllables)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


@functools.lru_cache(maxsize=4096)
def pinyin_of(text: str) -> tuple[str, ...]:
    """Toneless pinyin, one syllable per character (non-Chinese characters kept as they are)."""
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: list(s)))


# ----------------------------------------------------------------------- keyword matching

_INITIALS = (
    "zh",
    "ch",
    "sh",
    "b",
    "p",
    "m",
    "f",
    "d",
    "t",
    "n",
    "l",
    "g",
    "k",
    "h",
    "j",
    "q",
    "x",
    "r",
    "z",
    "c",
    "s",
    "y",
    "w",
)
# Sounds that speakers of many dialects, and recognizers, mix up.
_CLOSE_INITIALS = {
    frozenset(p)
    for p in (("z", "zh"), ("c", "ch"), ("s", "sh"), ("n", "l"), ("f", "h"), ("r", "l"))
}
_CLOSE_FINALS = {
    frozenset(p)
    for p in (
        ("in", "ing"),
        ("en", "eng"),
        ("an", "ang"),
        ("ian", "iang"),
        ("uan", "uang"),
        ("un", "ong"),
    )
}


def _split_syllable(s: str) -> tuple[str, str]:
    for ini in _INITIALS:
        if s.startswith(ini) and len(s) > len(ini):
            return ini, s[len(ini) :]
    return "", s


def syllables_close(a: str, b: str) -> bool:
    """Two toneless pinyin syllables that are commonly confused (zhi/zi, qing/qin, nan/lan)."""
    ia, fa = _split_syllable(a)
    ib, fb = _split_syllable(b)
    if fa == fb:
        return frozenset((ia, ib)) in _CLOSE_INITIALS
    if ia == ib:
        return frozenset((fa, fb)) in _CLOSE_FINALS
    return False


@dataclass(frozen=True)
class KeywordMatch:
    term: str
    weight: float
    matched: str | None  # the term or synonym that matched
    kind: str | None  # exact | stem | grammar | pinyin | fuzzy | None (missed)
    heard: str | None  # what the transcript actually says there
    credit: float


def _match_zh(variant: str, text: str, text_py: tuple[str, ...]) -> tuple[str, str] | None:
    v = normalise(variant, "zh")
    if not v:
        return None
    if v in text:
        return "exact", v
    vp = pinyin_of(v)
    n = len(vp)
    if n == 0 or len(text_py) < n:
        return None
    # Same sound, other characters: the usual recognition error in Chinese.
    for i in range(len(text_py) - n + 1):
        if text_py[i : i + n] == vp:
            return "pinyin", text[i : i + n]
    # Near-homophones: every syllable sounds close (zh/z, in/ing, n/l ...) and
    # most are exact; for three syllables or more one may be plain wrong. Two-syllable words
    # get no plain-wrong syllable: half a word is not evidence.
    if n >= 2:
        best: tuple[int, int] | None = None
        for i in range(len(text_py) - n + 1):
            window = text_py[i : i + n]
            same = sum(a == b for a, b in zip(window, vp, strict=True))
            close = sum(a != b and syllables_close(a, b) for a, b in zip(window, vp, strict=True))
            wrong = n - same - close
            if same * 2 >= n and same < n and wrong <= (0 if n == 2 else 1):
                cost = close + 2 * wrong
                if best is None or cost < best[0]:
                    best = (cost, i)
        if best is not None:
            return "fuzzy", text[best[1] : best[1] + n]
    return None


def _match_en(variant: str, toks: list[str]) -> tuple[str, str] | None:
    v = normalise(variant, "en").split()
    n = len(v)
    if not n or len(toks) < 1:
        return None
    joined_v = "".join(v)
    for i in range(len(toks) - n + 1):
        if toks[i : i + n] == v:
            return "exact", " ".join(toks[i : i + n])
    # Compounds split or joined by the recognizer: "post mortem" / "postmortem".
    for m in (n - 1, n + 1):
        if m < 1:
            continue
        for i in range(len(toks) - m + 1):
            if "".join(toks[i : i + m]) == joined_v:
                return "exact", " ".join(toks[i : i + m])
    sv = [stem(t) for t in v]
    st = [stem(t) for t in toks]
    for i in range(len(st) - n + 1):
        if st[i : i + n] == sv:
            return "stem", " ".join(toks[i : i + n])
    if len(joined_v) >= 5:
        limit = 1 if len(joined_v) < 9 else 2
        best: tuple[int, int, int] | None = None
        for m in {n, max(1, n - 1), n + 1}:
            for i in range(len(toks) - m + 1):
                d = levenshtein("".join(toks[i : i + m]), joined_v)
                if d <= limit and (best is None or d < best[0]):
                    best = (d, i, m)
        if best is not None:
            return "fuzzy", " ".join(toks[best[1] : best[1] + best[2]])
    return None


def match_keywords(
    keywords: list[Any], transcript: Transcript | str, language: str
) -> list[KeywordMatch]:
    """Each rubric keyword with the best way it was found (or not) in the transcript."""
    if isinstance(transcript, str):
        transcript = Transcript(
            text=transcript, words=[], engine="", model="", biased=False, language=language
        )
    zh = _is_zh(language)
    text = normalise(transcript.text, language)
    text_py = pinyin_of(text) if zh else ()
    toks = [] if zh else text.split()
    hits = [
        normalise(w.word, language) for w in transcript.keyword_hits if w.conf >= KEYWORD_MIN_CONF
    ]
    out = []
    order = list(MATCH_CREDIT)
    for kw in keywords:
        best: tuple[str, str, str] | None = None  # kind, variant, heard
        for variant in (kw.term, *kw.synonyms):
            found = _match_zh(variant, text, text_py) if zh else _match_en(variant, toks)
            if found is None and normalise(variant, language) in hits:
                found = ("grammar", normalise(variant, language))
            if found and (best is None or order.index(found[0]) < order.index(best[0])):
                best = (found[0], variant, found[1])
            if best and best[0] == "exact":
                break
        if best is None:
            out.append(KeywordMatch(kw.term, float(kw.weight), None, None, None, 0.0))
        else:
            out.append(
                KeywordMatch(
                    kw.term, float(kw.weight), best[1], best[0], best[2], MATCH_CREDIT[best[0]]
                )
            )
    return out


# --------------------------------------------------------------------------- structure


def sentences(transcript: Transcript, language: str) -> list[str]:
    """The answer cut into sentences: at punctuation when there is any, else at pauses in
    the word timings (recognizers give no punctuation), else in runs of 15 words."""
    text = transcript.text.strip()
    if re.search(r"[。！？!?.;；]", text):
        parts = re.split(r"(?<=[。！？!?.;；])\s*", text)
        return [p.strip() for p in parts if p.strip()]
    words = transcript.words
    if words:
        out, cur, last_end = [], [], None
        for w in words:
            if last_end is not None and w.start - last_end >= SENTENCE_GAP_S and cur:
                out.append(cur)
                cur = []
            cur.append(w.word)
            last_end = w.end
        if cur:
            out.append(cur)
        return [("" if _is_zh(language) else " ").join(s) for s in out]
    toks = text.split() if not _is_zh(language) else list(normalise(text, language))
    step = 15 if not _is_zh(language) else 30
    sep = "" if _is_zh(language) else " "
    return [sep.join(toks[i : i + step]) for i in range(0, len(toks), step)]


def star_parts(transcript: Transcript, language: str) -> dict[str, dict[str, str] | None]:
    """For each STAR part, the first sentence with one of its cue phrases (and the cue)."""
    lang = "zh" if _is_zh(language) else "en"
    sents = sentences(transcript, language)
    found: dict[str, dict[str, str] | None] = {}
    for part, cues in STAR_CUES.items():
        found[part] = None
        for s in sents:
            norm = normalise(s, lang)
            padded = f" {norm} "
            for cue in cues[lang]:
                if (cue in norm) if lang == "zh" else (f" {cue} " in padded):
                    found[part] = {"cue": cue, "sentence": _around(norm, cue, lang)}
                    break
            if found[part]:
                break
    return found


def _around(sentence: str, cue: str, lang: str) -> str:
    """The part of a long unpunctuated sentence around a cue: what HR needs to see."""
    if lang == "zh":
        i = sentence.find(cue)
        lo, hi = max(0, i - 8), min(len(sentence), i + len(cue) + 30)
        return ("…" if lo else "") + sentence[lo:hi] + ("…" if hi < len(sentence) else "")
    words = sentence.split()
    cw = cue.split()
    for i in range(len(words) - len(cw) + 1):
        if words[i : i + len(cw)] == cw:
            lo, hi = max(0, i - 4), min(len(words), i + len(cw) + 16)
            return ("… " if lo else "") + " ".join(words[lo:hi]) + (" …" if hi < len(words) else "")
    return sentence


# ----------------------------------------------------------------------------- scores


def _band(value: float, lo: float, hi: float) -> float:
    """100 inside [lo, hi], falling linearly to 0 at lo/2 and 2*hi."""
    if lo <= value <= hi:
        return 100.0
    if value < lo:
        return max(0.0, 100.0 * (value - lo / 2) / (lo / 2))
    return max(0.0, 100.0 * (2 * hi - value) / hi)


def _r(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


def _weighted(parts: dict[str, float | None], weights: dict[str, float]) -> float | None:
    have = {k: v for k, v in parts.items() if v is not None and weights.get(k, 0) > 0}
    total_w = sum(weights[k] for k in have)
    if not total_w:
        return None
    return sum(weights[k] * v for k, v in have.items()) / total_w


@dataclass
class AnswerScore:
    question_id: str
    language: str
    score: float  # 0-100
    content: float | None
    delivery: float | None
    nonverbal: float | None
    weights: dict[str, float]
    evidence: dict[str, Any] = field(default_factory=dict)
    dimensions: dict[str, float] = field(default_factory=dict)  # the question's dimension weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _content(
    question: Any, language: str, transcript: Transcript, duration_s: float
) -> tuple[float | None, dict]:
    kws = (
        list(question.rubric.keywords_for("zh" if _is_zh(language) else "en"))
        if question.rubric
        else []
    )
    ev: dict[str, Any] = {}
    kw_score = None
    if kws:
        matches = match_keywords(kws, transcript, language)
        total_w = sum(m.weight for m in matches)
        kw_score = 100.0 * sum(m.weight * m.credit for m in matches) / total_w
        ev["keywords"] = {
            "score": _r(kw_score),
            "matched": [asdict(m) for m in matches if m.kind],
            "missed": [m.term for m in matches if not m.kind],
            "credit_by_kind": MATCH_CREDIT,
            "biased_recognition": transcript.biased,
        }
    star_score = None
    wanted = list(question.rubric.star) if question.rubric else []
    if wanted:
        parts = star_parts(transcript, language)
        got = [p for p in wanted if parts.get(p)]
        star_score = 100.0 * len(got) / len(wanted)
        ev["star"] = {
            "score": _r(star_score),
            "expected": wanted,
            "found": {p: parts[p] for p in wanted if parts.get(p)},
            "missing": [p for p in wanted if not parts.get(p)],
        }
    allowed = float(question.answer_s)
    ratio = duration_s / allowed if allowed else 0.0
    if ratio < 0.4:
        length_score = max(0.0, 100.0 * (ratio - 0.05) / 0.35)
    elif ratio <= 0.95:
        length_score = 100.0
    else:
        length_score = 85.0  # ran into the limit: possibly cut off
    units = (
        len(normalise(transcript.text, language))
        if _is_zh(language)
        else len(transcript.text.split())
    )
    if units == 0:
        length_score = 0.0
    ev["length"] = {
        "score": _r(length_score),
        "duration_s": _r(duration_s, 1),
        "allowed_s": allowed,
        "used_ratio": _r(ratio, 2),
        "good_range": [0.4, 0.95],
        "units": units,
        "unit": "characters" if _is_zh(language) else "words",
    }
    content = _weighted(
        {"keywords": kw_score, "star": star_score, "length": length_score}, CONTENT_WEIGHTS
    )
    ev["weights"] = {
        k: v
        for k, v in CONTENT_WEIGHTS.items()
        if {"keywords": kw_score, "star": star_score, "length": length_score}[k] is not None
    }
    return content, ev


def _delivery(transcript: Transcript, language: str) -> tuple[float | None, dict]:
    lang = "zh" if _is_zh(language) else "en"
    words: list[Word] = transcript.words
    text = normalise(transcript.text, lang)
    if not text:
        return 0.0, {"note": "no speech was recognised", "score": 0.0}
    units = len(text) if lang == "zh" else len(text.split())
    if words:
        speaking_s = max(1e-3, words[-1].end - words[0].start)
        gaps = [b.start - a.end for a, b in zip(words, words[1:], strict=False)]
    else:
        speaking_s = max(1e-3, transcript.duration_s)
        gaps = []
    rate = units / (speaking_s / 60.0)
    lo, hi, unit = RATE_BANDS[lang]
    rate_score = _band(rate, lo, hi)
    toks = tokens(transcript.text, lang)
    padded = f" {' '.join(toks)} "
    filler_hits: dict[str, int] = {}
    for f in FILLERS[lang]:
        n = toks.count(f) if lang == "zh" else padded.count(f" {f} ")
        if n:
            filler_hits[f] = n
    n_fill = sum(filler_hits.values())
    fill_ratio = n_fill / max(1, len(toks))
    filler_score = 100.0 if fill_ratio <= 0.02 else max(0.0, 100.0 * (0.15 - fill_ratio) / 0.13)
    long_pauses = [
        [_r(a.end, 2), _r(g, 2)] for a, g in zip(words, gaps, strict=False) if g >= LONG_PAUSE_S
    ]
    per_min = len(long_pauses) / max(speaking_s / 60.0, 0.5)
    pause_score = max(0.0, 100.0 - 25.0 * per_min)
    score = (rate_score + filler_score + pause_score) / 3
    return score, {
        "score": _r(score),
        "rate": {
            "value": _r(rate),
            "unit": unit,
            "good_range": [lo, hi],
            "score": _r(rate_score),
            "speaking_s": _r(speaking_s, 1),
        },
        "fillers": {
            "count": n_fill,
            "ratio": _r(fill_ratio, 3),
            "words": filler_hits,
            "ok_up_to": 0.02,
            "score": _r(filler_score),
        },
        "long_pauses": {
            "count": len(long_pauses),
            "at_s_and_length_s": long_pauses,
            "min_pause_s": LONG_PAUSE_S,
            "per_minute": _r(per_min, 2),
            "score": _r(pause_score),
        },
    }


def _nonverbal(face: dict | None) -> tuple[float | None, dict]:
    if not face or not face.get("frames"):
        return None, {"note": "no camera data for this answer"}
    present = float(face.get("face_present_ratio") or 0.0)
    facing = float(face.get("facing_ratio") or 0.0)
    smile = float(face.get("smile_ratio") or 0.0)
    parts = {
        "face_present": 100.0 * present,
        "facing_camera": 100.0 * present * facing,
        "smiling": 100.0 * min(1.0, smile / 0.2),
    }
    w = {"face_present": 0.45, "facing_camera": 0.45, "smiling": 0.10}
    score = sum(w[k] * v for k, v in parts.items())
    return score, {
        "score": _r(score),
        "face_present_ratio": present,
        "facing_ratio": facing,
        "smile_ratio": smile,
        "look_away_count": face.get("look_away_count", 0),
        "longest_absence_s": face.get("longest_absence_s", 0.0),
        "parts": {k: _r(v) for k, v in parts.items()},
        "weights": w,
        "note": "more than one face in view is an integrity flag, not part of the score",
    }


def score_answer(
    question: Any,
    job: Any,
    transcript: Transcript | dict | str,
    face_summary: dict | None,
    duration_s: float,
) -> AnswerScore:
    """Score one answer against its question's rubric and the job's non-verbal weight."""
    language = question.language or job.language
    if isinstance(transcript, dict):
        transcript = Transcript.from_dict(transcript)
    elif isinstance(transcript, str):
        transcript = Transcript(
            text=transcript,
            words=[],
            engine="",
            model="",
            biased=False,
            language=language,
            duration_s=duration_s,
        )
    content, cev = _content(question, language, transcript, duration_s)
    delivery, dev = _delivery(transcript, language)
    nonverbal, nev = _nonverbal(face_summary)
    nv_w = float(job.nonverbal_weight) if nonverbal is not None else 0.0
    weights = {
        "content": round((1 - nv_w) * VERBAL_WEIGHTS["content"], 4),
        "delivery": round((1 - nv_w) * VERBAL_WEIGHTS["delivery"], 4),
        "nonverbal": round(nv_w, 4),
    }
    score = (
        _weighted({"content": content, "delivery": delivery, "nonverbal": nonverbal}, weights)
        or 0.0
    )
    evidence = {
        "content": cev,
        "delivery": dev,
        "nonverbal": nev,
        "recognizer": {
            "engine": transcript.engine,
            "model": transcript.model,
            "biased": transcript.biased,
            "bias_note": transcript.bias_note,
        },
    }
    if face_summary and face_summary.get("multi_face_frames"):
        evidence["integrity"] = {"multiple_faces_frames": face_summary["multi_face_frames"]}
    return AnswerScore(
        question_id=question.id,
        language=language,
        score=round(score, 1),
        content=_r(content),
        delivery=_r(delivery),
        nonverbal=_r(nonverbal),
        weights=weights,
        evidence=evidence,
        dimensions=dict(question.dimensions),
    )


@dataclass
class SessionScore:
    dimensions: dict[str, float | None]  # 0-100 per competency of the job (None = not assessed)
    total: float
    pass_threshold: float
    recommendation: str  # yes | maybe | no
    weights: dict[str, float]
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_session(job: Any, answer_scores: list[AnswerScore | dict]) -> SessionScore:
    """Dimension scores from the answers (each answer counts towards its question's
    dimensions by their weights), the total by the job's competency weights, and the
    recommendation against the job's pass threshold."""
    rows = [a if isinstance(a, dict) else a.to_dict() for a in answer_scores]
    dims: dict[str, float | None] = {}
    ev_dims: dict[str, Any] = {}
    all_dims = list(job.competencies) + sorted(
        {d for r in rows for d in r["dimensions"] if d not in job.competencies}
    )
    for d in all_dims:
        contrib = [
            (r["question_id"], float(r["dimensions"][d]), float(r["score"]))
            for r in rows
            if d in r["dimensions"]
        ]
        wsum = sum(w for _, w, _ in contrib)
        dims[d] = round(sum(w * s for _, w, s in contrib) / wsum, 1) if wsum else None
        ev_dims[d] = {
            "from": [{"question_id": q, "weight": w, "answer_score": s} for q, w, s in contrib]
        }
    assessed = {d: w for d, w in job.competencies.items() if dims.get(d) is not None}
    wsum = sum(assessed.values())
    total = round(sum(w * dims[d] for d, w in assessed.items()) / wsum, 1) if wsum else 0.0
    threshold = float(job.pass_threshold)
    if total >= threshold:
        rec = "yes"
    elif total >= threshold - MAYBE_MARGIN:
        rec = "maybe"
    else:
        rec = "no"
    return SessionScore(
        dimensions={d: dims[d] for d in all_dims},
        total=total,
        pass_threshold=threshold,
        recommendation=rec,
        weights=dict(job.competencies),
        evidence={
            "dimensions": ev_dims,
            "not_assessed": [d for d in job.competencies if dims.get(d) is None],
            "rule": f"yes if total >= {threshold:g}; maybe if within {MAYBE_MARGIN:g} points below; otherwise no",
            "answers": len(rows),
        },
    )
