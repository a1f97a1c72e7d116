"""The interview report: the result record's report section (built by the session machine's
report_builder when the interview ends) and a standalone HTML report for HR in Chinese or
English. Scores support HR's decision and never replace it; the report says so, every time.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import Any

from analysis.scoring import AnswerScore, score_answer, score_session

log = logging.getLogger(__name__)

REPORT_VERSION = 1
CJK_FONT_FILES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
LONG_ABSENCE_FLAG_S = 10.0

NOTE = {
    "zh": "本报告中的分数由终端根据语音转写、关键词、回答结构和视频中的注意力信号自动计算，"
    "仅供参考，用于辅助而不是代替人力资源部门的判断。语音识别可能出错，请结合录音和原文本阅读，"
    "并由面试官做出最终决定。",
    "en": "The scores in this report were calculated automatically by the terminal from the "
    "speech transcript, rubric keywords, answer structure and attention signals in the video. "
    "They support HR's decision and do not replace it. Speech recognition makes mistakes: read "
    "the transcripts (and listen to the recordings) before deciding.",
}
FLAG_TEXT = {
    "multiple_faces": ("画面中出现过不止一张脸", "More than one face was in view"),
    "long_absence": ("候选人曾长时间离开画面", "The candidate was out of view for a long time"),
    "no_speech": ("有回答未识别到语音", "No speech was recognised in an answer"),
    "incomplete": ("面试未答完全部问题", "Not all questions were answered"),
    "left_frame": ("面试中曾暂停（离开画面）", "The interview paused (candidate left the frame)"),
    "report_failed": ("自动评分失败", "Automatic scoring failed"),
}
REC_TEXT = {
    "yes": ("建议进入下一轮", "Recommend next round"),
    "maybe": ("接近通过线，建议复核", "Close to the pass mark: review"),
    "no": ("未达到通过线", "Below the pass mark"),
    "review": ("请人工评估", "Review manually"),
}
KIND_TEXT = {
    "exact": ("原词", "exact"),
    "stem": ("词形变化", "word form"),
    "grammar": ("关键词识别", "keyword pass"),
    "pinyin": ("同音字", "same sound"),
    "fuzzy": ("近似", "close spelling"),
}
STAR_TEXT = {
    "situation": ("情境", "Situation"),
    "task": ("任务", "Task"),
    "action": ("行动", "Action"),
    "result": ("结果", "Result"),
}
TIMELINE_COLOURS = {
    "facing": "#2e7d32",
    "away": "#f9a825",
    "absent": "#c62828",
    "multiple": "#6a1b9a",
}


def _t(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def _title(obj: Any) -> dict[str, str]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return {k: str(v) for k, v in obj.items()}
    return {"zh": getattr(obj, "zh", ""), "en": getattr(obj, "en", "")}


# --------------------------------------------------------------------------- the section


def build_report(view: Any, answers: list[Any]) -> dict[str, Any]:
    """The report section of a result record: per-answer scores with evidence (recomputed
    from the stored transcript and face summary, so the same answers always give the same
    report), dimension scores, total, recommendation, integrity flags and HR's note."""
    job = view.job
    if job is None:
        raise ValueError("build_report: the session view carries no job")
    names = getattr(view, "dimension_names", None) or {}
    questions = {q.id: q for q in (view.questions or ())}
    scores: list[AnswerScore] = []
    rows: list[dict[str, Any]] = []
    flags: set[str] = set()
    for a in answers:
        q = questions.get(a.question_id)
        if q is None:
            log.warning(
                "build_report: answer %s is for question %s, not in this session's plan",
                a.id,
                a.question_id,
            )
            continue
        analysis = a.analysis or {}
        transcript = analysis.get("transcript") or a.transcript or ""
        face = analysis.get("face")
        duration = a.duration_s or float(analysis.get("duration_s") or 0.0)
        s = score_answer(q, job, transcript, face, duration)
        scores.append(s)
        if face and face.get("multi_face_frames"):
            flags.add("multiple_faces")
        if face and float(face.get("longest_absence_s") or 0) >= LONG_ABSENCE_FLAG_S:
            flags.add("long_absence")
        text = transcript.get("text", "") if isinstance(transcript, dict) else str(transcript)
        if not text.strip():
            flags.add("no_speech")
        rows.append(
            {
                "question_id": q.id,
                "idx": a.idx,
                "attempt": a.attempt,
                "prompt": _title(q.prompt),
                "duration_s": round(duration, 1),
                "score": s.score,
                "content": s.content,
                "delivery": s.delivery,
                "nonverbal": s.nonverbal,
                "weights": s.weights,
                "dimensions": s.dimensions,
                "evidence": s.evidence,
                "attention": {
                    k: face.get(k)
                    for k in (
                        "face_present_ratio",
                        "facing_ratio",
                        "looking_ratio",
                        "smile_ratio",
                        "look_away_count",
                        "look_away_events",
                        "multi_face_frames",
                        "longest_absence_s",
                        "timeline",
                        "quality",
                    )
                }
                if face
                else None,
            }
        )
    session = score_session(job, scores)
    return {
        "kind": "analysis",
        "version": REPORT_VERSION,
        "language": view.language,
        "job": {
            "id": job.id,
            "title": _title(job.title),
            "pass_threshold": float(job.pass_threshold),
            "nonverbal_weight": float(job.nonverbal_weight),
        },
        "total": session.total,
        "recommendation": session.recommendation,
        "pass_threshold": session.pass_threshold,
        "dimensions": {
            d: {"score": v, "weight": session.weights.get(d, 0.0)}
            for d, v in session.dimensions.items()
        },
        "answered": len(rows),
        "planned": view.total,
        "answers": rows,
        "integrity_flags": sorted(flags),
        **({"dimension_names": {d: _title(n) for d, n in names.items()}} if names else {}),
        "evidence": session.evidence,
        "note": NOTE,
    }


# ------------------------------------------------------------------------------ charts


def _font() -> Any:
    from matplotlib import font_manager

    for f in CJK_FONT_FILES:
        if Path(f).exists():
            return font_manager.FontProperties(fname=f)
    log.warning(
        "no CJK font found (install fonts-wqy-microhei); Chinese chart labels will not show"
    )
    return font_manager.FontProperties()


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def radar_png(labels: list[str], values: list[float], threshold: float | None = None) -> str:
    """Dimension scores on a radar chart, as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    font = _font()
    n = max(len(labels), 1)
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False).tolist()
    vals = list(values) + values[:1]
    ang = angles + angles[:1]
    fig = plt.figure(figsize=(4.2, 4.2))
    ax = fig.add_subplot(111, polar=True)
    ax.set_ylim(0, 100)
    ax.set_yticks([20, 40, 60, 80, 100])
    ax.set_yticklabels(["20", "40", "60", "80", "100"], fontsize=7, color="#777")
    if threshold is not None:
        ax.plot(ang, [threshold] * len(ang), color="#999", linestyle="--", linewidth=1)
    ax.plot(ang, vals, color="#1565c0", linewidth=2)
    ax.fill(ang, vals, color="#1565c0", alpha=0.2)
    ax.set_xticks(angles)
    ax.set_xticklabels(labels, fontproperties=font, fontsize=9)
    return _png(fig)


def timeline_png(answers: list[dict[str, Any]], lang: str, bin_s: float = 0.5) -> str | None:
    """One row per answer: when the candidate faced the camera, looked away, was absent, or
    was not alone in the picture."""
    rows = [
        (i, a)
        for i, a in enumerate(answers)
        if a.get("attention") and a["attention"].get("timeline")
    ]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    font = _font()
    fig, ax = plt.subplots(figsize=(7.5, 0.5 + 0.45 * len(rows)))
    for y, (_i, a) in enumerate(rows):
        # Runs of one state become one bar, and each state one collection: drawing a bar
        # per half-second bin made a five-answer chart take a second.
        spans: dict[str, list[tuple[float, float]]] = {}
        for t, state in a["attention"]["timeline"]:
            runs = spans.setdefault(state, [])
            if runs and abs(runs[-1][0] + runs[-1][1] - t) < 1e-6:
                runs[-1] = (runs[-1][0], runs[-1][1] + bin_s)
            else:
                runs.append((t, bin_s))
        for state, runs in spans.items():
            ax.broken_barh(runs, (y - 0.35, 0.7), facecolors=TIMELINE_COLOURS.get(state, "#999"))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [f"第{i + 1}题" if lang == "zh" else f"Q{i + 1}" for i, _ in rows],
        fontproperties=font,
    )
    ax.invert_yaxis()
    ax.set_xlabel("秒" if lang == "zh" else "seconds", fontproperties=font)
    names = {
        "facing": ("面向镜头", "facing"),
        "away": ("转头/看别处", "looking away"),
        "absent": ("不在画面", "out of view"),
        "multiple": ("多人", "more than one face"),
    }
    ax.legend(
        handles=[Patch(color=c, label=_t(names[s], lang)) for s, c in TIMELINE_COLOURS.items()],
        prop=font,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.35 if len(rows) < 3 else -0.15),
        ncol=4,
        frameon=False,
        fontsize=8,
    )
    return _png(fig)


# -------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:"WenQuanYi Micro Hei","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em auto;max-width:960px;color:#222;line-height:1.5}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:2px solid #1565c0;padding-bottom:.2em;margin-top:1.6em}
h3{margin-bottom:.3em} table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
.note{background:#fff8e1;border-left:5px solid #f9a825;padding:.8em 1em} .flags{background:#fce4ec;border-left:5px solid #c62828;padding:.6em 1em}
.total{font-size:2.2em;font-weight:bold;color:#1565c0} .muted{color:#666;font-size:.9em} .kw{display:inline-block;margin:.1em .3em .1em 0;padding:0 .4em;border-radius:3px;background:#e3f2fd}
.kw.miss{background:#eee;color:#888;text-decoration:line-through} .transcript{background:#f5f5f5;padding:.6em;white-space:pre-wrap}
.summary{display:flex;gap:2em;align-items:center;flex-wrap:wrap}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def render_html(
    result_record: dict[str, Any],
    lang: str = "zh",
    *,
    dimension_names: dict[str, Any] | None = None,
) -> str:
    """A standalone HTML report (charts embedded) for HR, in "zh" or "en".
    `dimension_names` (the bank's dimension id -> Bilingual / {"zh","en"}) labels the
    competencies; the report section's own `dimension_names` are used otherwise."""
    lang = "zh" if lang.startswith("zh") else "en"
    zh = lang == "zh"
    rec = result_record
    if dimension_names:
        rec = {
            **rec,
            "report": {
                **(rec.get("report") or {}),
                "dimension_names": {d: _title(n) for d, n in dimension_names.items()},
            },
        }
    rep = rec.get("report") or {}
    job = rep.get("job") or {}
    title = (job.get("title") or {}).get(lang) or rec.get("job_id", "")
    cand = rec.get("candidate") or {}
    L = {  # labels
        "title": "面试报告" if zh else "Interview report",
        "candidate": "候选人" if zh else "Candidate",
        "job": "岗位" if zh else "Job",
        "when": "时间" if zh else "When",
        "site": "地点/终端" if zh else "Site / terminal",
        "summary": "总评" if zh else "Summary",
        "total": "总分" if zh else "Total",
        "threshold": "通过线" if zh else "Pass mark",
        "dimension": "能力维度" if zh else "Competency",
        "weight": "权重" if zh else "Weight",
        "score": "得分" if zh else "Score",
        "flags": "诚信与过程提示" if zh else "Integrity flags",
        "answers": "逐题记录" if zh else "Answers",
        "attention": "注意力时间线" if zh else "Attention timeline",
        "transcript": "转写文本" if zh else "Transcript",
        "keywords": "关键词" if zh else "Keywords",
        "star": "STAR 结构" if zh else "STAR structure",
        "delivery": "表达" if zh else "Delivery",
        "nonverbal": "非语言" if zh else "Non-verbal",
        "content": "内容" if zh else "Content",
        "length": "时长" if zh else "Length",
        "method": "计算方法" if zh else "How the scores are made",
        "note": "请注意" if zh else "Please note",
    }
    parts: list[str] = [
        "<!DOCTYPE html>",
        f'<html lang="{"zh-CN" if zh else "en"}"><head><meta charset="utf-8">',
        f"<title>{_e(L['title'])} — {_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(L['title'])}: {_e(title)}</h1>",
        "<table>",
        f"<tr><th>{L['candidate']}</th><td>{_e(cand.get('masked_name') or '')} <span class='muted'>({_e(cand.get('ref') or '')})</span></td></tr>",
        f"<tr><th>{L['job']}</th><td>{_e(title)} <span class='muted'>({_e(rec.get('job_id', ''))})</span></td></tr>",
        f"<tr><th>{L['when']}</th><td>{_e(_when(rec.get('started')))} – {_e(_when(rec.get('ended')))} <span class='muted'>({_e(rec.get('end_reason', ''))})</span></td></tr>",
        f"<tr><th>{L['site']}</th><td>{_e(rec.get('site', ''))} / {_e(rec.get('device_id', ''))}</td></tr>",
        "</table>",
        f"<div class='note' id='note'><b>{L['note']}:</b> {_e((rep.get('note') or NOTE)[lang])}</div>",
    ]
    # summary
    dims = rep.get("dimensions") or {}
    rec_key = rep.get("recommendation") or "review"
    parts.append(f"<h2 id='summary'>{L['summary']}</h2><div class='summary'><div>")
    parts.append(f"<div class='total'>{_fmt(rep.get('total'))}</div>")
    parts.append(
        f"<div>{_e(_t(REC_TEXT.get(rec_key, REC_TEXT['review']), lang))} <span class='muted'>({L['threshold']} {_fmt(rep.get('pass_threshold'), 0)})</span></div>"
    )
    parts.append(
        f"<table><tr><th>{L['dimension']}</th><th>{L['weight']}</th><th>{L['score']}</th></tr>"
    )
    for d, v in dims.items():
        parts.append(
            f"<tr><td>{_e(_dim_name(d, rec, lang))}</td><td>{_fmt(v.get('weight'), 2)}</td><td>{_fmt(v.get('score'))}</td></tr>"
        )
    parts.append("</table></div>")
    scored = [(d, v) for d, v in dims.items() if v.get("score") is not None and v.get("weight")]
    if len(scored) >= 3:
        png = radar_png(
            [_dim_name(d, rec, lang) for d, _ in scored],
            [float(v["score"]) for _, v in scored],
            rep.get("pass_threshold"),
        )
        parts.append(f"<img id='radar' alt='radar' src='data:image/png;base64,{png}' width='380'>")
    parts.append("</div>")
    # integrity flags
    flags = sorted(set(rec.get("integrity_flags") or []) | set(rep.get("integrity_flags") or []))
    parts.append(f"<h2 id='flags'>{L['flags']}</h2>")
    if flags:
        parts.append(
            "<div class='flags'><ul>"
            + "".join(f"<li>{_e(_t(FLAG_TEXT.get(f, (f, f)), lang))}</li>" for f in flags)
            + "</ul></div>"
        )
    else:
        parts.append(f"<p class='muted'>{'无' if zh else 'None'}</p>")
    # attention timeline
    answers = rep.get("answers") or []
    tl = timeline_png(answers, lang)
    parts.append(f"<h2 id='attention'>{L['attention']}</h2>")
    if tl:
        parts.append(
            f"<img id='timeline' alt='timeline' src='data:image/png;base64,{tl}' style='max-width:100%'>"
        )
    else:
        parts.append(f"<p class='muted'>{'无视频数据' if zh else 'No camera data'}</p>")
    # answers
    transcripts = {
        (a.get("question_id"), a.get("attempt")): a.get("transcript", "")
        for a in rec.get("answers") or []
    }
    parts.append(f"<h2 id='answers'>{L['answers']}</h2>")
    for i, a in enumerate(answers):
        parts.append(
            _answer_html(i, a, transcripts.get((a["question_id"], a.get("attempt")), ""), lang, L)
        )
    parts.append(f"<h2 id='method'>{L['method']}</h2><p class='muted'>{_e(_method(rep, lang))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _when(ts: Any) -> str:
    if ts is None:
        return ""
    try:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError, OverflowError):
        return str(ts)


def _dim_name(d: str, rec: dict, lang: str) -> str:
    names = ((rec.get("report") or {}).get("dimension_names") or {}).get(d)
    if names:
        return names.get(lang) or d
    return d.replace("_", " ").capitalize()


def _answer_html(i: int, a: dict, transcript: str, lang: str, L: dict) -> str:
    zh = lang == "zh"
    ev = a.get("evidence") or {}
    out = [
        f"<div class='answer' id='answer-{i + 1}'>",
        f"<h3>{f'第{i + 1}题' if zh else f'Question {i + 1}'}: {_e((a.get('prompt') or {}).get(lang, a['question_id']))}</h3>",
    ]
    out.append(
        f"<p><b>{L['score']} {_fmt(a.get('score'))}</b> — {L['content']} {_fmt(a.get('content'))} · {L['delivery']} {_fmt(a.get('delivery'))} · {L['nonverbal']} {_fmt(a.get('nonverbal'))}"
        f" <span class='muted'>({L['weight']}: {', '.join(f'{k} {v:g}' for k, v in (a.get('weights') or {}).items())})</span></p>"
    )
    rz = ev.get("recognizer") or {}
    out.append(
        f"<p class='muted'>{L['transcript']} — {_e(rz.get('engine', ''))} / {_e(rz.get('model', ''))}"
        + (
            (" · 已按关键词偏置识别" if zh else " · recognition biased to the rubric's keywords")
            if rz.get("biased")
            else ""
        )
        + (f" · {_e(rz.get('bias_note'))}" if rz.get("bias_note") else "")
        + "</p>"
    )
    out.append(
        f"<div class='transcript'>{_e(transcript) or ('（无）' if zh else '(nothing recognised)')}</div>"
    )
    c = ev.get("content") or {}
    kw = c.get("keywords")
    if kw:
        chips = []
        for m in kw.get("matched", []):
            kind = _t(KIND_TEXT.get(m["kind"], (m["kind"], m["kind"])), lang)
            heard = (
                f" ← “{_e(m['heard'])}”"
                if m.get("heard") and m["heard"] != m.get("matched")
                else ""
            )
            chips.append(
                f"<span class='kw' title='{_e(kind)}'>{_e(m['term'])} ({_e(kind)}, ×{m['credit']:g}){heard}</span>"
            )
        chips += [f"<span class='kw miss'>{_e(t)}</span>" for t in kw.get("missed", [])]
        out.append(f"<p><b>{L['keywords']} {_fmt(kw.get('score'))}</b>: {' '.join(chips)}</p>")
    st = c.get("star")
    if st:
        out.append(f"<p><b>{L['star']} {_fmt(st.get('score'))}</b></p><ul>")
        for p in st.get("expected", []):
            f = (st.get("found") or {}).get(p)
            name = _t(STAR_TEXT[p], lang)
            if f:
                out.append(
                    f"<li>{name}: “{_e(f['sentence'])}” <span class='muted'>({'提示语' if zh else 'cue'}: {_e(f['cue'])})</span></li>"
                )
            else:
                out.append(f"<li class='muted'>{name}: {'未发现' if zh else 'not found'}</li>")
        out.append("</ul>")
    ln = c.get("length")
    if ln:
        out.append(
            f"<p><b>{L['length']} {_fmt(ln.get('score'))}</b>: {_fmt(ln.get('duration_s'))} / {_fmt(ln.get('allowed_s'), 0)} s"
            f" ({_fmt(ln.get('units'))} {'字' if zh else 'words'})</p>"
        )
    d = ev.get("delivery") or {}
    if d.get("rate"):
        r, f, p = d["rate"], d["fillers"], d["long_pauses"]
        out.append(
            f"<p><b>{L['delivery']} {_fmt(d.get('score'))}</b>: "
            f"{'语速' if zh else 'rate'} {_fmt(r['value'])} {_e(r['unit'])} ({'合适范围' if zh else 'good'} {r['good_range'][0]:g}–{r['good_range'][1]:g}); "
            f"{'口头禅' if zh else 'fillers'} {f['count']} {_e(', '.join(f['words']) if f['words'] else '')}; "
            f"{'长停顿' if zh else 'long pauses'} {p['count']} (≥{p['min_pause_s']:g} s)</p>"
        )
    elif d.get("note"):
        out.append(f"<p><b>{L['delivery']}</b>: {_e(d['note'])}</p>")
    nv = ev.get("nonverbal") or {}
    if nv.get("score") is not None:
        out.append(
            f"<p><b>{L['nonverbal']} {_fmt(nv.get('score'))}</b>: "
            f"{'在画面中' if zh else 'in view'} {nv['face_present_ratio']:.0%}, {'面向镜头' if zh else 'facing the camera'} {nv['facing_ratio']:.0%}, "
            f"{'微笑' if zh else 'smiling'} {nv['smile_ratio']:.0%}, {'转头次数' if zh else 'look-aways'} {nv.get('look_away_count', 0)}</p>"
        )
    out.append("</div>")
    return "\n".join(out)


def _method(rep: dict, lang: str) -> str:
    job = rep.get("job") or {}
    nv = job.get("nonverbal_weight", 0)
    if lang == "zh":
        return (
            f"每题得分 = 内容 {0.7 * (1 - nv):.2f} + 表达 {0.3 * (1 - nv):.2f} + 非语言 {nv:.2f}（非语言权重由岗位设定）。"
            "内容 = 关键词覆盖（原词、同义词、词形、同音字与近似匹配，后两者按较低分计）、STAR 结构提示语和作答时长；"
            "表达 = 语速、口头禅比例和长停顿；非语言 = 在画面中与面向镜头的时间比例。"
            "各能力维度按题目的维度权重汇总，总分按岗位的能力模型加权，与通过线比较。相同输入总是得到相同分数。"
        )
    return (
        f"Each answer's score = content {0.7 * (1 - nv):.2f} + delivery {0.3 * (1 - nv):.2f} + non-verbal {nv:.2f} "
        "(the non-verbal share is set by the job). Content = rubric keyword coverage (exact words, synonyms, word forms, "
        "same-sound and close-spelling matches, the last two for less credit), STAR cue phrases and time used; delivery = "
        "speaking rate, filler words and long pauses; non-verbal = share of time in view and facing the camera. Competency "
        "scores combine the answers by each question's dimension weights; the total weights them by the job's competency "
        "model and is compared with the pass mark. The same inputs always give the same scores."
    )
