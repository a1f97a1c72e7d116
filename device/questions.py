"""Question banks and jobs: the models HR provides, their JSON / Excel importers, and the plan
of questions for one interview. A bad bank is rejected whole with every problem named (sheet,
row, column or JSON path); it must never half-install or replace the last good bank.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

log = logging.getLogger(__name__)

Lang = Literal["zh", "en"]
StarPart = Literal["situation", "task", "action", "result"]
STAR_ORDER: tuple[StarPart, ...] = ("situation", "task", "action", "result")
WEIGHT_TOLERANCE = 1e-6
MAX_ROWS = 5000  # per sheet; a bank is a few hundred rows at most
BANK_CACHE_KIND = "questionbank"
BANK_CACHE_KEY = "current"

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_DIM_ID = r"^[a-z][a-z0-9_]{0,63}$"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")


# ---------------------------------------------------------------------------------------------
# Issues and the error a technician reads


@dataclass(frozen=True)
class BankIssue:
    """One problem in an imported bank. Excel: sheet, row, column ("D (dimensions 考察维度)");
    JSON: path ("jobs[1].competencies"). `message` says what was wrong and what was expected."""

    sheet: str | None
    row: int | None
    column: str | None
    message: str
    path: str | None = None

    def where(self) -> str:
        if self.sheet is not None:
            parts = [f"sheet '{self.sheet}'"]
            if self.row is not None:
                parts.append(f"row {self.row}")
            if self.column is not None:
                parts.append(f"column {self.column}")
            return ", ".join(parts)
        return self.path or "(whole file)"

    def __str__(self) -> str:
        # one line per issue, whatever odd keys or values a broken file holds
        return f"{self.where()}: {self.message}".replace("\r", "\\r").replace("\n", "\\n")


def format_issues(title: str, issues: list[BankIssue]) -> str:
    n = len(issues)
    lines = [f"{title}: {n} problem{'s' if n != 1 else ''}"]
    lines += [f"  - {issue}" for issue in issues]
    return "\n".join(lines)


class BankError(Exception):
    """A question bank that cannot be used. `errors` holds every problem found, not only the
    first; str() is a multi-line listing a technician can act on."""

    def __init__(self, errors: list[BankIssue], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        name = f"question bank {self.source}" if self.source else "question bank"
        return format_issues(f"{name} rejected, nothing was changed", self.errors)


# ---------------------------------------------------------------------------------------------
# Models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bilingual(_Model):
    """A text HR gives in both languages; the kiosk is Chinese first, English second."""

    zh: str = Field(min_length=1, description="Chinese text")
    en: str = Field(min_length=1, description="English text")

    @field_validator("zh", "en", mode="before")
    @classmethod
    def _strip(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


def _check_weights(weights: Mapping[str, float], what: str) -> Mapping[str, float]:
    if not weights:
        raise ValueError(f"no {what} given; at least one is required")
    for key, w in weights.items():
        if not re.match(_DIM_ID, key):
            raise ValueError(
                f"dimension id {key!r} must be lower-case letters, digits and _ (e.g. problem_solving)"
            )
        if not math.isfinite(w) or w <= 0:
            raise ValueError(f"weight of {key!r} must be greater than 0, got {w:g}")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"weights sum to {round(total, 6):g}, expected 1.0")
    return weights


class Keyword(_Model):
    """A rubric keyword: what a good answer mentions, in the language it will be spoken in."""

    term: str = Field(min_length=1, max_length=80)
    weight: float = Field(1.0, gt=0, le=10, allow_inf_nan=False)
    synonyms: tuple[str, ...] = ()
    language: Lang

    @field_validator("term", mode="before")
    @classmethod
    def _strip_term(cls, v: Any) -> Any:
        return v.strip() if isinstance(v, str) else v

    @field_validator("synonyms")
    @classmethod
    def _clean_synonyms(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(s.strip() for s in v)
        if any(not s for s in out):
            raise ValueError("empty synonym")
        return out


class Rubric(_Model):
    """How an answer's content is judged: weighted keywords with synonyms (zh/en) and the STAR
    parts (situation, task, action, result) a behavioural answer is expected to show."""

    keywords: tuple[Keyword, ...] = ()
    star: tuple[StarPart, ...] = ()

    @field_validator("star")
    @classmethod
    def _star_canonical(cls, v: tuple[StarPart, ...]) -> tuple[StarPart, ...]:
        if len(set(v)) != len(v):
            raise ValueError("a STAR part is listed twice")
        return tuple(p for p in STAR_ORDER if p in v)

    def keywords_for(self, lang: str) -> list[Keyword]:
        return [k for k in self.keywords if k.language == lang]


class PromptMedia(_Model):
    """What is shown with a question: nothing, an image or a video (path relative to the bank)."""

    kind: Literal["none", "image", "video"] = "none"
    path: str | None = None

    @model_validator(mode="after")
    def _path_fits_kind(self) -> PromptMedia:
        if self.kind == "none":
            if self.path:
                raise ValueError("a media file is given but the media kind is 'none'")
            return self
        if not self.path:
            raise ValueError(f"media kind is '{self.kind}' but no file is given")
        parts = self.path.replace("\\", "/").split("/")
        if self.path.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
            raise ValueError(f"{self.path!r} must be a path relative to the bank file, "
                             "without '..' (e.g. media/sign.png)")
        allowed = IMAGE_SUFFIXES if self.kind == "image" else VIDEO_SUFFIXES
        if not self.path.lower().endswith(allowed):
            raise ValueError(
                f"{self.path!r} is not an {self.kind} file; expected one of {', '.join(allowed)}"
            )
        return self


class Question(_Model):
    id: str = Field(pattern=_ID)
    prompt: Bilingual
    media: PromptMedia = PromptMedia()
    preparation_s: int = Field(20, ge=0, le=300, description="seconds to think before answering")
    answer_s: int = Field(90, ge=10, le=600, description="seconds allowed for the answer")
    retakes: int | None = Field(
        None, ge=0, le=5,
        description="how many times the candidate may re-record; None = the device's session.max_retakes",
    )
    dimensions: dict[str, float] = Field(description="competency dimension -> weight, sum 1")
    rubric: Rubric = Rubric()
    language: Lang | None = Field(
        None, description="language the answer must be given in; None = the job's language"
    )

    @field_validator("dimensions")
    @classmethod
    def _dims(cls, v: dict[str, float]) -> dict[str, float]:
        return dict(_check_weights(v, "dimensions"))


class QuestionPlan(_Model):
    """Which questions one interview for a job asks: `count` of them, the `required` ones
    always, the rest drawn from `questions`; `fixed` asks them in the listed order."""

    questions: tuple[str, ...] = Field(min_length=1)
    required: tuple[str, ...] = ()
    count: int = Field(ge=1, le=30)
    order: Literal["fixed", "shuffled"] = "fixed"


class Job(_Model):
    id: str = Field(pattern=_ID)
    title: Bilingual
    language: Lang = Field(description="the language the candidate answers in")
    competencies: dict[str, float] = Field(description="dimension -> weight, summing to 1")
    pass_threshold: float = Field(ge=0, le=100, allow_inf_nan=False)
    plan: QuestionPlan
    nonverbal_weight: float = Field(
        0.1, ge=0, le=1, allow_inf_nan=False,
        description="share of each answer's score from face/attention signals; 0 = not used",
    )

    @field_validator("competencies")
    @classmethod
    def _competencies(cls, v: dict[str, float]) -> dict[str, float]:
        return dict(_check_weights(v, "competencies"))


class QuestionBank(_Model):
    version: int = Field(ge=1)
    created: datetime
    name: str = ""
    dimensions: dict[str, Bilingual] = Field(description="dimension id -> display name zh/en")
    jobs: tuple[Job, ...] = Field(min_length=1)
    questions: tuple[Question, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self) -> QuestionBank:
        problems = _cross_check(
            self.dimensions, list(enumerate(self.jobs)), list(enumerate(self.questions)),
            [j.id for j in self.jobs], [q.id for q in self.questions],
        )
        if problems:
            raise ValueError("; ".join(f"{_json_path(ref)}: {msg}" for ref, msg in problems))
        return self

    def job(self, job_id: str) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise KeyError(f"no job {job_id!r} in question bank version {self.version}")

    def question(self, question_id: str) -> Question:
        for q in self.questions:
            if q.id == question_id:
                return q
        raise KeyError(f"no question {question_id!r} in question bank version {self.version}")

    def dimension_name(self, dim: str, lang: str) -> str:
        names = self.dimensions.get(dim)
        return names.text(lang) if names else dim


# ---------------------------------------------------------------------------------------------
# Cross-checks. A Ref names an entity and a field independently of the file format, so the same
# check gives a JSON path or an Excel sheet/row/column.


@dataclass(frozen=True)
class _Ref:
    kind: Literal["bank", "job", "question", "dimension"]
    index: int | str | None
    field: str


def _json_path(ref: _Ref) -> str:
    if ref.kind == "job":
        base = f"jobs[{ref.index}]"
    elif ref.kind == "question":
        base = f"questions[{ref.index}]"
    elif ref.kind == "dimension":
        base = f"dimensions.{ref.index}"
    else:
        return ref.field
    return f"{base}.{ref.field}" if ref.field else base


def _duplicates(ids: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    dup: set[str] = set()
    for i in ids:
        (dup if i in seen else seen).add(i)
    return dup


def _cross_check(
    dimensions: Mapping[str, Bilingual] | None,
    jobs: list[tuple[int, Job]],
    questions: list[tuple[int, Question]],
    all_job_ids: list[str | None],
    all_question_ids: list[str | None] | None,
    media_root: Path | None = None,
) -> list[tuple[_Ref, str]]:
    """Checks across entities. `all_*_ids` include items that failed to parse, so a question
    with a typo in one cell does not also make every plan naming it 'unknown'; None when the
    questions could not be read at all (a missing sheet), which skips the checks needing them."""
    questions_known = all_question_ids is not None
    all_question_ids = all_question_ids or []
    out: list[tuple[_Ref, str]] = []
    dup_jobs = _duplicates(i for i in all_job_ids if i)
    dup_questions = _duplicates(i for i in all_question_ids if i)
    known_questions = {i for i in all_question_ids if i}
    # an id given twice is ambiguous: checks that follow a plan to its questions skip it
    by_id = {q.id: (idx, q) for idx, q in questions if q.id not in dup_questions}
    for idx, q in questions:
        if q.id in dup_questions:
            out.append((_Ref("question", idx, "id"), f"duplicate question id {q.id!r}; ids must be unique"))
        if dimensions is not None:
            for dim in q.dimensions:
                if dim not in dimensions:
                    out.append((_Ref("question", idx, "dimensions"),
                                f"dimension {dim!r} is not declared in the bank's dimensions"))
        if media_root is not None and q.media.path:
            if not (media_root / q.media.path).is_file():
                out.append((_Ref("question", idx, "media.path"),
                            f"file not found: {q.media.path} (looked in {media_root})"))
    for idx, job in jobs:
        if job.id in dup_jobs:
            out.append((_Ref("job", idx, "id"), f"duplicate job id {job.id!r}; ids must be unique"))
        if dimensions is not None:
            for dim in job.competencies:
                if dim not in dimensions:
                    out.append((_Ref("job", idx, "competencies"),
                                f"dimension {dim!r} is not declared in the bank's dimensions"))
        plan = job.plan
        for qid in sorted(_duplicates(plan.questions)):
            out.append((_Ref("job", idx, "plan.questions"), f"question {qid!r} is listed twice"))
        for qid in plan.questions:
            if questions_known and qid not in known_questions:
                out.append((_Ref("job", idx, "plan.questions"), f"unknown question {qid!r}"))
        for qid in plan.required:
            if qid not in plan.questions:
                out.append((_Ref("job", idx, "plan.required"),
                             f"required question {qid!r} is not in the job's question list"))
        for qid in sorted(_duplicates(plan.required)):
            out.append((_Ref("job", idx, "plan.required"), f"question {qid!r} is listed twice"))
        n_listed = len(set(plan.questions))
        if plan.count > n_listed:
            out.append((_Ref("job", idx, "plan.count"),
                        f"asks {plan.count} questions but only {n_listed} are listed"))
        if len(set(plan.required)) > plan.count:
            out.append((_Ref("job", idx, "plan.count"),
                        f"asks {plan.count} questions but {len(set(plan.required))} are required"))
        measured: set[str] = set()
        for qid in dict.fromkeys(plan.questions):
            if qid not in by_id:
                continue
            qidx, q = by_id[qid]
            measured.update(q.dimensions)
            for dim in q.dimensions:
                if dim not in job.competencies:
                    out.append((_Ref("question", qidx, "dimensions"),
                                f"dimension {dim!r} is not in the competency model of job {job.id!r}, "
                                f"which asks this question"))
            if q.language is not None and q.language != job.language:
                out.append((_Ref("question", qidx, "language"),
                            f"answers must be in {q.language!r} but job {job.id!r}, which asks "
                            f"this question, is answered in {job.language!r}"))
            lang = q.language or job.language
            if q.rubric.keywords and not q.rubric.keywords_for(lang):
                out.append((_Ref("question", qidx, "rubric.keywords"),
                            f"question {q.id!r} has keywords, but none in {lang!r}, the language "
                            f"job {job.id!r} is answered in"))
        for dim in job.competencies:
            if questions_known and dim not in measured and all(qid in by_id for qid in plan.questions):
                out.append((_Ref("job", idx, "competencies"),
                            f"dimension {dim!r} has weight {job.competencies[dim]:g} but no listed "
                            f"question measures it"))
    return out


# ---------------------------------------------------------------------------------------------
# pydantic errors -> plain messages


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", ""))
    inp = err.get("input")
    if kind == "missing":
        return "missing; a value is required"
    if kind == "extra_forbidden":
        return "unknown field (check the spelling)"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if kind == "timezone_aware":
        return f"needs a time zone, e.g. 2026-11-23T09:00:00+08:00, got {_shown(inp)}"
    if kind.startswith("int_"):
        return f"expected a whole number, got {_shown(inp)}"
    if kind.startswith("float_") or kind == "finite_number":
        return f"expected a number, got {_shown(inp)}"
    if kind == "string_pattern_mismatch":
        return f"{_shown(inp)} is not a valid id: use letters, digits, '_', '-' or '.', at most 64"
    if kind in ("string_too_short",) and inp == "":
        return "empty; a value is required"
    msg = msg.replace("Input should be", "expected").replace("Value should have", "expected")
    return f"{msg}, got {_shown(inp)}"


def issues_from_validation(error: ValidationError, prefix: str = "") -> list[BankIssue]:
    """A pydantic ValidationError as issues with JSON paths and plain messages."""
    return [BankIssue(None, None, None, _message(err), path=_join(prefix, _loc_text(err["loc"])))
            for err in error.errors()]


def _loc_text(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _join(prefix: str, rest: str) -> str:
    if not rest:
        return prefix
    if not prefix:
        return rest
    return prefix + rest if rest.startswith("[") else f"{prefix}.{rest}"


def _validate(model: type[_Model], data: Any) -> tuple[_Model | None, list[tuple[tuple, str]]]:
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        return None, [(tuple(err["loc"]), _message(err)) for err in e.errors()]
    except (TypeError, ValueError, OverflowError, RecursionError) as e:  # absurd inputs
        return None, [((), f"cannot be read: {e}")]


# ---------------------------------------------------------------------------------------------
# JSON


_TOP_KEYS = {"version", "created", "name", "dimensions", "jobs", "questions"}


class _Header(_Model):
    version: int = Field(ge=1)
    created: datetime
    name: str = ""


def bank_from_dict(data: Any, source: str | None = None,
                   media_root: Path | None = None) -> QuestionBank:
    """Validate a bank given as plain data (a parsed JSON file or a downlink payload). Raises
    BankError with every problem, each named by its JSON path."""
    issues: list[BankIssue] = []

    def add(path: str, message: str) -> None:
        issues.append(BankIssue(None, None, None, message, path=path))

    if not isinstance(data, dict):
        add("", f"expected a JSON object with {', '.join(sorted(_TOP_KEYS))}, got {type(data).__name__}")
        raise BankError(issues, source)
    for key in data:
        if key not in _TOP_KEYS:
            add(str(key), "unknown field (check the spelling)")
    header = {k: data[k] for k in ("version", "created", "name") if k in data}
    _, errs = _validate(_Header, header)
    for loc, msg in errs:
        add(_loc_text(loc), msg)

    dims: dict[str, Bilingual] | None = {}
    raw_dims = data.get("dimensions")
    if not isinstance(raw_dims, dict):
        add("dimensions", "missing; expected an object of dimension id -> {zh, en}"
            if raw_dims is None else f"expected an object of dimension id -> {{zh, en}}, got {type(raw_dims).__name__}")
        dims = None
    else:
        for key, value in raw_dims.items():
            if not isinstance(key, str) or not re.match(_DIM_ID, key):
                add(f"dimensions.{key}", "dimension id must be lower-case letters, digits and _")
                continue
            names, errs = _validate(Bilingual, value)
            for loc, msg in errs:
                add(_join(f"dimensions.{key}", _loc_text(loc)), msg)
            if names is not None and dims is not None:
                dims[key] = names  # type: ignore[assignment]

    def entities(field: str, model: type[_Model]) -> tuple[list[tuple[int, Any]], list[str | None]]:
        raw = data.get(field)
        if not isinstance(raw, list) or not raw:
            add(field, "missing; expected a non-empty list" if raw is None
                else f"expected a non-empty list, got {_shown(raw)}")
            return [], []
        parsed: list[tuple[int, Any]] = []
        ids: list[str | None] = []
        for i, item in enumerate(raw):
            ids.append(item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None)
            obj, errs = _validate(model, item)
            for loc, msg in errs:
                add(_join(f"{field}[{i}]", _loc_text(loc)), msg)
            if obj is not None:
                parsed.append((i, obj))
        return parsed, ids

    jobs, job_ids = entities("jobs", Job)
    questions, question_ids = entities("questions", Question)
    for ref, msg in _cross_check(dims, jobs, questions, job_ids, question_ids, media_root):
        add(_json_path(ref), msg)
    if issues:
        raise BankError(issues, source)
    try:
        return QuestionBank.model_validate(data)
    except ValidationError as e:  # a check above missed something: still report, never crash
        raise BankError(issues_from_validation(e), source) from None


def load_bank_json(path: str | Path) -> QuestionBank:
    """Read a bank from a JSON file; media paths are checked relative to the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise BankError([BankIssue(None, None, None, f"cannot read the file: {e}", path="")],
                        path.name) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BankError([BankIssue(None, None, None,
                                   f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                                   path="")], path.name) from None
    except RecursionError:
        raise BankError([BankIssue(None, None, None, "not valid JSON: nested too deeply", path="")],
                        path.name) from None
    bank = bank_from_dict(data, path.name, media_root=path.parent)
    log.info("question bank %s: version %d, %d jobs, %d questions", path.name, bank.version,
             len(bank.jobs), len(bank.questions))
    return bank


def bank_to_json(bank: QuestionBank) -> str:
    return json.dumps(bank.model_dump(mode="json"), ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# Excel. One sheet per kind of thing, one row per thing, a bilingual header row; columns are
# found by header, so HR may reorder them or add a `notes` column.


@dataclass(frozen=True)
class Column:
    key: str
    zh: str
    required: bool = True
    hint: str = ""

    @property
    def header(self) -> str:
        return f"{self.key} {self.zh}"


BANK_COLUMNS = (
    Column("field", "项目"),
    Column("value", "值"),
)
DIMENSION_COLUMNS = (
    Column("id", "维度编号", hint="lower-case id, e.g. problem_solving"),
    Column("name_zh", "维度名称（中文）"),
    Column("name_en", "维度名称（英文）"),
    Column("notes", "备注", required=False),
)
JOB_COLUMNS = (
    Column("id", "岗位编号", hint="e.g. sales_rep"),
    Column("title_zh", "岗位名称（中文）"),
    Column("title_en", "岗位名称（英文）"),
    Column("language", "答题语言", hint="zh or en: the language candidates answer in"),
    Column("competencies", "能力模型", hint="dimension: weight, ...; weights sum to 1"),
    Column("pass_threshold", "通过分数线", hint="0-100"),
    Column("questions", "题目编号", hint="question ids, comma separated"),
    Column("required", "必答题", required=False, hint="question ids always asked"),
    Column("count", "题目数量", hint="how many questions one interview asks"),
    Column("order", "出题顺序", required=False, hint="fixed or shuffled"),
    Column("nonverbal_weight", "非语言权重", required=False, hint="0-1; 0 = face signals not scored"),
    Column("notes", "备注", required=False),
)
QUESTION_COLUMNS = (
    Column("id", "题目编号"),
    Column("prompt_zh", "题目（中文）"),
    Column("prompt_en", "题目（英文）"),
    Column("language", "答题语言", required=False, hint="zh, en, or empty = the job's language"),
    Column("dimensions", "考察维度", hint="dimension: weight, ...; weights sum to 1"),
    Column("preparation_s", "准备时间（秒）"),
    Column("answer_s", "作答时间（秒）"),
    Column("retakes", "可重答次数", hint="0-5; empty = the terminal's setting (session.max_retakes)"),
    Column("star", "STAR要素", required=False, hint="situation, task, action, result"),
    Column("media_kind", "提示媒体", required=False, hint="none, image or video"),
    Column("media_path", "媒体文件", required=False, hint="file next to the workbook"),
    Column("notes", "备注", required=False),
)
KEYWORD_COLUMNS = (
    Column("question_id", "题目编号"),
    Column("language", "语言", hint="zh or en"),
    Column("keyword", "关键词"),
    Column("weight", "权重", required=False, hint="default 1"),
    Column("synonyms", "同义词", required=False, hint="separated by 、 , or ;"),
    Column("notes", "备注", required=False),
)
SHEETS: dict[str, tuple[Column, ...]] = {
    "bank": BANK_COLUMNS,
    "dimensions": DIMENSION_COLUMNS,
    "jobs": JOB_COLUMNS,
    "questions": QUESTION_COLUMNS,
    "keywords": KEYWORD_COLUMNS,
}

# Where a model field lives in the workbook: (sheet, column key); longest prefix wins.
_JOB_FIELDS = {
    "id": "id", "title.zh": "title_zh", "title.en": "title_en", "title": "title_zh",
    "language": "language", "competencies": "competencies", "pass_threshold": "pass_threshold",
    "plan.questions": "questions", "plan.required": "required", "plan.count": "count",
    "plan.order": "order", "plan": "questions", "nonverbal_weight": "nonverbal_weight",
}
_QUESTION_FIELDS = {
    "id": "id", "prompt.zh": "prompt_zh", "prompt.en": "prompt_en", "prompt": "prompt_zh",
    "language": "language", "dimensions": "dimensions", "preparation_s": "preparation_s",
    "answer_s": "answer_s", "retakes": "retakes", "rubric.star": "star",
    "media.kind": "media_kind", "media.path": "media_path", "media": "media_kind",
}
_KEYWORD_FIELDS = {"term": "keyword", "language": "language", "weight": "weight",
                   "synonyms": "synonyms"}

_LIST_SPLIT = re.compile(r"[,，;；、|\n]+")
_LANG_WORDS = {"zh": "zh", "中文": "zh", "汉语": "zh", "普通话": "zh", "chinese": "zh",
               "en": "en", "英文": "en", "英语": "en", "english": "en"}
_ORDER_WORDS = {"fixed": "fixed", "固定": "fixed", "shuffled": "shuffled", "shuffle": "shuffled",
                "random": "shuffled", "随机": "shuffled"}
_MEDIA_WORDS = {"none": "none", "无": "none", "image": "image", "图片": "image",
                "video": "video", "视频": "video"}
_STAR_WORDS = {"s": "situation", "situation": "situation", "情境": "situation", "情景": "situation",
               "t": "task", "task": "task", "任务": "task",
               "a": "action", "action": "action", "行动": "action",
               "r": "result", "result": "result", "结果": "result"}


class _CellError(Exception):
    pass


def _split_list(text: str) -> list[str]:
    return [p.strip() for p in _LIST_SPLIT.split(text) if p.strip()]


def _parse_weights(value: Any) -> dict[str, float]:
    """'communication: 0.3, teamwork: 0.7' (also = or ：, and 30%) -> dict."""
    out: dict[str, float] = {}
    for part in _split_list(str(value)):
        m = re.fullmatch(r"([^:=：]+?)\s*[:=：]\s*([0-9.]+)\s*(%?)", part)
        if not m:
            if re.fullmatch(r"[a-z][a-z0-9_]*", part):
                out[part] = 1.0  # a single dimension without weight means all of it
                continue
            raise _CellError(f"cannot read {part!r}; write dimension: weight, e.g. teamwork: 0.4")
        name, num, pct = m.group(1).strip(), m.group(2), m.group(3)
        try:
            w = float(num) / (100 if pct else 1)
        except ValueError:
            raise _CellError(f"{num!r} in {part!r} is not a number") from None
        if name in out:
            raise _CellError(f"dimension {name!r} is listed twice")
        out[name] = w
    if not out:
        raise _CellError("empty; write dimension: weight, e.g. teamwork: 0.4")
    return out


def _dim_ids(weights: dict[str, float], alias: Mapping[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, w in weights.items():
        did = name if name in alias.values() else alias.get(name, alias.get(name.lower(), name))
        if did in out:
            raise _CellError(f"dimension {did!r} is listed twice")
        out[did] = w
    return out


def _seconds(value: Any) -> Any:
    """'20', 20, '20秒', '20 s', '2分钟' -> seconds; anything else is left for the model to refuse."""
    if not isinstance(value, str):
        return value
    m = re.fullmatch(r"(\d+)\s*(秒|秒钟|s|sec|secs|seconds?|分钟|分|min|minutes?)?", value.strip().lower())
    if not m:
        return value
    n = int(m.group(1))
    return n * 60 if m.group(2) in ("分钟", "分", "min", "minute", "minutes") else n


def _word(value: Any, words: Mapping[str, str], what: str) -> str:
    key = str(value).strip().lower()
    if key not in words:
        choices = sorted({v for v in words.values()})
        raise _CellError(f"{what} {str(value)!r} is not one of {', '.join(choices)}")
    return words[key]


def cell_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _fmt_weight(w: float) -> str:
    text = repr(float(w))
    return text[:-2] if text.endswith(".0") else text


def format_weights(weights: Mapping[str, float]) -> str:
    return ", ".join(f"{k}: {_fmt_weight(v)}" for k, v in weights.items())


@dataclass
class SheetRows:
    name: str
    columns: dict[str, tuple[int, str]]  # key -> (column index 1-based, header text)
    rows: list[tuple[int, dict[str, Any]]]  # (row number, key -> raw cell value)

    def issue(self, row: int | None, key: str | None, message: str) -> BankIssue:
        return BankIssue(self.name, row, self.column_label(key) if key else None, message)

    def column_label(self, key: str) -> str | None:
        from openpyxl.utils import get_column_letter

        if key not in self.columns:
            return None
        idx, header = self.columns[key]
        return f"{get_column_letter(idx)} ({header})"


def read_sheet(wb: Any, name: str, columns: tuple[Column, ...], issues: list[BankIssue],
               needed: Iterable[str] = SHEETS) -> SheetRows | None:
    """One sheet's data rows as {column key: cell value}, found by header. Problems (missing
    sheet or column, unknown header) go to `issues`; None when the sheet cannot be read."""
    from openpyxl.utils import get_column_letter

    ws = next((wb[s] for s in wb.sheetnames if s.strip().lower() == name), None)
    if ws is None:
        issues.append(BankIssue(name, None, None,
                                f"sheet '{name}' is missing; the workbook needs sheets "
                                f"{', '.join(needed)} (found: {', '.join(wb.sheetnames)})"))
        return None
    rows = ws.iter_rows(values_only=True)
    header = next(rows, None) or ()
    found: dict[str, tuple[int, str]] = {}
    for ci, cell in enumerate(header, start=1):
        if cell is None or not str(cell).strip():
            continue
        text = " ".join(str(cell).split())
        first = text.split(" ")[0].lower()
        col = next((c for c in columns if c.key == first or c.zh in text), None)
        if col is None:
            issues.append(BankIssue(name, 1, f"{get_column_letter(ci)} ({text})",
                                    "unknown column; expected one of "
                                    + ", ".join(c.key for c in columns)))
            continue
        if col.key in found:
            issues.append(BankIssue(name, 1, f"{get_column_letter(ci)} ({text})",
                                    f"column '{col.key}' appears twice"))
            continue
        found[col.key] = (ci, text)
    missing = [c for c in columns if c.required and c.key not in found]
    for c in missing:
        issues.append(BankIssue(name, 1, None, f"column '{c.header}' is missing"))
    data_rows: list[tuple[int, dict[str, Any]]] = []
    empty_run = 0
    for ri, values in enumerate(rows, start=2):
        if ri > MAX_ROWS + 1:
            issues.append(BankIssue(ws.title, ri, None, f"more than {MAX_ROWS} rows; split the bank"))
            break
        cells: dict[str, Any] = {}
        for key, (ci, _) in found.items():
            v = values[ci - 1] if ci - 1 < len(values) else None
            if isinstance(v, str):
                v = v.strip()
                if not v:
                    v = None
            if v is not None:
                cells[key] = v
        if cells and set(cells) != {"notes"}:
            data_rows.append((ri, cells))
            empty_run = 0
        else:
            # a sheet formatted down to row 1,048,576 must not take minutes to read
            empty_run += 1
            if empty_run > 500:
                break
    if missing:
        return None
    return SheetRows(ws.title, found, data_rows)


def xlsx_issue(sheet: SheetRows, row: int | None, key: str | None, message: str) -> BankIssue:
    return BankIssue(sheet.name, row, sheet.column_label(key) if key else None, message)


def field_column(loc: tuple, table: Mapping[str, str]) -> str | None:
    dotted = ".".join(str(p) for p in loc if not isinstance(p, int))
    parts = dotted.split(".") if dotted else []
    while parts:
        key = ".".join(parts)
        if key in table:
            return table[key]
        parts.pop()
    return None


def load_bank_xlsx(path: str | Path) -> QuestionBank:
    """Read a bank from an Excel workbook (sheets bank, dimensions, jobs, questions, keywords).
    Every problem is collected and named by sheet, row and column before BankError is raised."""
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    path = Path(path)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (OSError, InvalidFileException, KeyError, ValueError) as e:
        raise BankError([BankIssue(None, None, None, f"cannot open the workbook: {e}", path="")],
                        path.name) from None
    except Exception as e:  # zipfile.BadZipFile and friends from a truncated USB copy
        raise BankError([BankIssue(None, None, None,
                                   f"not an Excel .xlsx workbook ({type(e).__name__}: {e})", path="")],
                        path.name) from None
    issues: list[BankIssue] = []
    try:
        sheets = {name: read_sheet(wb, name, cols, issues) for name, cols in SHEETS.items()}
    finally:
        wb.close()

    # bank sheet: field/value rows
    header: dict[str, Any] = {}
    if (s := sheets["bank"]) is not None:
        rows_of: dict[str, int] = {}
        for ri, cells in s.rows:
            field = str(cells.get("field", "")).split(" ")[0].strip().lower()
            if field not in ("version", "created", "name"):
                issues.append(xlsx_issue(s, ri, "field", f"unknown field {cells.get('field')!r}; "
                                          "expected version, created or name"))
                continue
            if "value" in cells:
                v = cells["value"]
                header[field] = v.isoformat() if isinstance(v, (datetime, date)) else (
                    cell_text(v) if field == "name" else v)
                rows_of[field] = ri
        _, errs = _validate(_Header, header)
        for loc, msg in errs:
            field = str(loc[0]) if loc else ""
            issues.append(xlsx_issue(s, rows_of.get(field), "value" if field in rows_of else None,
                                      f"{field}: {msg}"))

    # dimensions
    dims: dict[str, Bilingual] | None = None
    dim_rows: dict[str, int] = {}
    if (s := sheets["dimensions"]) is not None:
        dims = {}
        for ri, cells in s.rows:
            did = cell_text(cells.get("id", ""))
            if not re.match(_DIM_ID, did):
                issues.append(xlsx_issue(s, ri, "id", f"{did!r} is not a valid dimension id; use "
                                          "lower-case letters, digits and _ (e.g. problem_solving)"))
                continue
            if did in dims or did in dim_rows:
                issues.append(xlsx_issue(s, ri, "id", f"duplicate dimension id {did!r}"))
                continue
            dim_rows[did] = ri
            names, errs = _validate(Bilingual, {"zh": cell_text(cells.get("name_zh", "")),
                                                "en": cell_text(cells.get("name_en", ""))})
            for loc, msg in errs:
                issues.append(xlsx_issue(s, ri, f"name_{loc[0]}" if loc else "id", msg))
            if names is not None:
                dims[did] = names  # type: ignore[assignment]

    # keywords, grouped by question id (validated per row)
    keywords: dict[str, list[Keyword]] = {}
    keyword_rows: list[tuple[int, str]] = []
    if (s := sheets["keywords"]) is not None:
        for ri, cells in s.rows:
            qid = cell_text(cells.get("question_id", ""))
            if not qid:
                issues.append(xlsx_issue(s, ri, "question_id", "missing; which question is this keyword for?"))
                continue
            item: dict[str, Any] = {}
            bad = False
            try:
                item["language"] = _word(cells.get("language", ""), _LANG_WORDS, "language")
            except _CellError as e:
                issues.append(xlsx_issue(s, ri, "language", str(e)))
                bad = True
            if "keyword" in cells:
                item["term"] = cell_text(cells["keyword"])
            if "weight" in cells:
                item["weight"] = cells["weight"]
            if "synonyms" in cells:
                item["synonyms"] = _split_list(cell_text(cells["synonyms"]))
            kw, errs = _validate(Keyword, item)
            for loc, msg in errs:
                col = field_column(loc, _KEYWORD_FIELDS)
                if not (bad and col == "language"):
                    issues.append(xlsx_issue(s, ri, col, msg))
            keyword_rows.append((ri, qid))
            if kw is not None:
                keywords.setdefault(qid, []).append(kw)  # type: ignore[arg-type]

    # HR may write a dimension by its display name (沟通表达: 0.3) instead of its id
    dim_alias: dict[str, str] = {}
    for did, names in (dims or {}).items():
        dim_alias[names.zh] = did
        dim_alias[names.en.lower()] = did

    # questions
    questions: list[tuple[int, Question]] = []
    question_ids: list[str | None] = []
    question_rows: list[int] = []
    if (s := sheets["questions"]) is not None:
        for n, (ri, cells) in enumerate(s.rows):
            question_rows.append(ri)
            qid = cell_text(cells["id"]) if "id" in cells else None
            question_ids.append(qid)
            bad_cols: set[str] = set()
            item = {"prompt": {"zh": cell_text(cells.get("prompt_zh", "")),
                               "en": cell_text(cells.get("prompt_en", ""))}}
            if qid is not None:
                item["id"] = qid
            for key in ("preparation_s", "answer_s", "retakes"):
                if key in cells:
                    item[key] = _seconds(cells[key])
            rubric: dict[str, Any] = {"keywords": keywords.get(qid or "", [])}
            media: dict[str, Any] = {}
            try:
                if "language" in cells:
                    item["language"] = _word(cells["language"], _LANG_WORDS, "language")
            except _CellError as e:
                issues.append(xlsx_issue(s, ri, "language", str(e)))
                bad_cols.add("language")
            try:
                item["dimensions"] = (_dim_ids(_parse_weights(cells["dimensions"]), dim_alias)
                                      if "dimensions" in cells else {})
            except _CellError as e:
                issues.append(xlsx_issue(s, ri, "dimensions", str(e)))
                bad_cols.add("dimensions")
            try:
                if "star" in cells:
                    rubric["star"] = [_word(p, _STAR_WORDS, "STAR part")
                                      for p in _split_list(cell_text(cells["star"]))]
            except _CellError as e:
                issues.append(xlsx_issue(s, ri, "star", str(e)))
                bad_cols.add("star")
            try:
                if "media_kind" in cells:
                    media["kind"] = _word(cells["media_kind"], _MEDIA_WORDS, "media kind")
            except _CellError as e:
                issues.append(xlsx_issue(s, ri, "media_kind", str(e)))
                bad_cols.add("media_kind")
            if "media_path" in cells:
                media["path"] = cell_text(cells["media_path"])
            item["rubric"] = rubric
            if media:
                item["media"] = media
            q, errs = _validate(Question, item)
            for loc, msg in errs:
                if loc[:2] == ("rubric", "keywords"):
                    continue  # keyword rows were validated, and reported, one by one
                col = field_column(loc, _QUESTION_FIELDS)
                if col not in bad_cols:
                    issues.append(xlsx_issue(s, ri, col, msg))
            if q is not None:
                questions.append((n, q))  # type: ignore[arg-type]
        known = {i for i in question_ids if i}
        if (ks := sheets["keywords"]) is not None:
            for ri, qid in keyword_rows:
                if qid not in known:
                    issues.append(xlsx_issue(ks, ri, "question_id",
                                              f"unknown question {qid!r} (not on sheet 'questions')"))

    # jobs
    jobs: list[tuple[int, Job]] = []
    job_ids: list[str | None] = []
    job_rows: list[int] = []
    if (s := sheets["jobs"]) is not None:
        for n, (ri, cells) in enumerate(s.rows):
            job_rows.append(ri)
            jid = cell_text(cells["id"]) if "id" in cells else None
            job_ids.append(jid)
            bad_cols = set()
            item = {"title": {"zh": cell_text(cells.get("title_zh", "")),
                              "en": cell_text(cells.get("title_en", ""))}}
            if jid is not None:
                item["id"] = jid
            for key in ("pass_threshold", "nonverbal_weight"):
                if key in cells:
                    item[key] = cells[key]
            plan: dict[str, Any] = {
                "questions": _split_list(cell_text(cells.get("questions", ""))),
                "required": _split_list(cell_text(cells.get("required", ""))),
            }
            if "count" in cells:
                plan["count"] = cells["count"]
            for key, words, what in (("language", _LANG_WORDS, "language"),
                                     ("order", _ORDER_WORDS, "order")):
                if key in cells:
                    try:
                        (item if key == "language" else plan)[key] = _word(cells[key], words, what)
                    except _CellError as e:
                        issues.append(xlsx_issue(s, ri, key, str(e)))
                        bad_cols.add(key)
            try:
                item["competencies"] = (_dim_ids(_parse_weights(cells["competencies"]), dim_alias)
                                        if "competencies" in cells else {})
            except _CellError as e:
                issues.append(xlsx_issue(s, ri, "competencies", str(e)))
                bad_cols.add("competencies")
            item["plan"] = plan
            job, errs = _validate(Job, item)
            for loc, msg in errs:
                col = field_column(loc, _JOB_FIELDS)
                if col not in bad_cols:
                    issues.append(xlsx_issue(s, ri, col, msg))
            if job is not None:
                jobs.append((n, job))  # type: ignore[arg-type]
        if not s.rows:
            issues.append(xlsx_issue(s, None, None, "no jobs; add at least one row"))
    if sheets["questions"] is not None and not sheets["questions"].rows:
        issues.append(xlsx_issue(sheets["questions"], None, None, "no questions; add at least one row"))

    if sheets["questions"] is None:
        question_ids = None  # type: ignore[assignment]
    for ref, msg in _cross_check(dims, jobs, questions, job_ids, question_ids, path.parent):
        if ref.kind == "job" and (s := sheets["jobs"]) is not None:
            issues.append(xlsx_issue(s, job_rows[ref.index], _JOB_FIELDS.get(ref.field), msg))  # type: ignore[index]
        elif ref.kind == "question" and ref.field == "rubric.keywords" and sheets["questions"]:
            issues.append(xlsx_issue(sheets["questions"], question_rows[ref.index], "id",  # type: ignore[index]
                                      msg + "; add them on sheet 'keywords'"))
        elif ref.kind == "question" and (s := sheets["questions"]) is not None:
            issues.append(xlsx_issue(s, question_rows[ref.index],  # type: ignore[index]
                                      _QUESTION_FIELDS.get(ref.field), msg))
        elif ref.kind == "dimension" and (s := sheets["dimensions"]) is not None:
            issues.append(xlsx_issue(s, dim_rows.get(str(ref.index)), "id", msg))
        else:
            issues.append(BankIssue(None, None, None, msg, path=_json_path(ref)))
    if issues:
        order = {name: i for i, name in enumerate(SHEETS)}
        issues.sort(key=lambda x: (order.get((x.sheet or "").lower(), 99), x.row or 0))
        raise BankError(issues, path.name)
    try:
        bank = QuestionBank(
            version=header.get("version"), created=header.get("created"), name=header.get("name", ""),
            dimensions=dims or {}, jobs=tuple(j for _, j in jobs),
            questions=tuple(q for _, q in questions),
        )
    except ValidationError as e:  # a check above missed something: still report, never crash
        raise BankError(issues_from_validation(e), path.name) from None
    log.info("question bank %s: version %d, %d jobs, %d questions", path.name, bank.version,
             len(bank.jobs), len(bank.questions))
    return bank


def load_bank(path: str | Path) -> QuestionBank:
    """Load a bank from .json or .xlsx, by the file's suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return load_bank_json(path)
    if suffix in (".xlsx", ".xlsm"):
        return load_bank_xlsx(path)
    raise BankError([BankIssue(None, None, None,
                               f"unsupported file type {suffix or '(none)'}; use .xlsx or .json",
                               path="")], path.name)


# ---------------------------------------------------------------------------------------------
# The store: the installed bank lives in the cache table, so the kiosk works through any outage.


BANK_MEDIA_DIRNAME = "bank-media"  # under the data directory; prompts are not candidate data


def bank_media_root(data_dir: Path) -> Path:
    """Where installed prompt images/videos live: `<data_dir>/bank-media/<question.media.path>`."""
    return Path(data_dir) / BANK_MEDIA_DIRNAME


def prompt_media_path(media_root: Path, question: Question) -> Path | None:
    """Where the kiosk finds a question's image or video once its bank is installed."""
    if question.media.kind == "none" or not question.media.path:
        return None
    return Path(media_root) / question.media.path


def copy_bank_media(bank: QuestionBank, source_dir: Path, media_root: Path) -> list[Path]:
    """Copy the bank's prompt images/videos from beside the bank file (a USB stick) into
    `media_root`, so they outlive the stick. All are checked before any is copied."""
    wanted = [(q, Path(source_dir) / q.media.path) for q in bank.questions
              if q.media.kind != "none" and q.media.path]
    issues = [BankIssue(None, None, None, f"file not found: {q.media.path} (looked in {source_dir})",
                        path=f"questions[{bank.questions.index(q)}].media.path")
              for q, src in wanted if not src.is_file()]
    if issues:
        raise BankError(issues, bank.name or None)
    copied: list[Path] = []
    for q, src in wanted:
        dest = prompt_media_path(media_root, q)
        assert dest is not None
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)  # a half-copied image is never shown
        copied.append(dest)
    return copied


def install_bank(store: Any, bank: QuestionBank, *, media_from: Path | None = None,
                 media_root: Path | None = None) -> None:
    """Install `bank` as the current one if it is valid and newer than what is installed.
    Raises BankError (and changes nothing) otherwise; the last good bank stays. With
    `media_from` (the bank file's folder) and `media_root` (bank_media_root(data_dir)) the
    prompt images/videos are copied in first (see copy_bank_media)."""
    try:  # re-check: a bank made with model_construct() or model_copy() skipped validation
        bank = QuestionBank.model_validate(bank.model_dump(mode="json"))
    except ValidationError as e:
        raise BankError(issues_from_validation(e), bank.name or None) from None
    installed = store.cache_get(BANK_CACHE_KIND, BANK_CACHE_KEY)
    if installed is not None and installed[0] >= bank.version:
        raise BankError([BankIssue(None, None, None,
                                   f"version {bank.version} is not newer than the installed "
                                   f"version {installed[0]}; raise the version to replace it",
                                   path="version")], bank.name or None)
    if media_from is not None and media_root is not None:
        copy_bank_media(bank, media_from, media_root)
    if not store.cache_put(BANK_CACHE_KIND, BANK_CACHE_KEY, bank.version,
                           bank.model_dump(mode="json")):
        installed = store.cache_get(BANK_CACHE_KIND, BANK_CACHE_KEY)
        raise BankError([BankIssue(None, None, None,
                                   f"version {bank.version} is not newer than the installed "
                                   f"version {installed[0] if installed else '?'}; raise the "
                                   "version to replace it", path="version")], bank.name or None)
    log.info("question bank version %d installed (%d jobs, %d questions)", bank.version,
             len(bank.jobs), len(bank.questions))


def current_bank(store: Any) -> QuestionBank | None:
    """The installed bank, or None. A cached payload that no longer validates is logged and
    treated as absent rather than crashing the kiosk."""
    row = store.cache_get(BANK_CACHE_KIND, BANK_CACHE_KEY)
    if row is None:
        return None
    try:
        return QuestionBank.model_validate(row[1])
    except ValidationError as e:
        log.error("installed question bank version %s does not validate: %d problems", row[0],
                  e.error_count())
        return None


# ---------------------------------------------------------------------------------------------
# One interview's questions


def plan_questions(bank: QuestionBank, job_id: str, seed: int | str) -> list[Question]:
    """The questions one interview for `job_id` asks, in order. Required questions always come
    first (in the listed order); the rest fill up to `count`: the next listed ones when the
    order is fixed, a draw by `seed` when shuffled. Same seed, same interview."""
    job = bank.job(job_id)
    plan = job.plan
    listed = list(dict.fromkeys(plan.questions))
    required = [q for q in dict.fromkeys(plan.required) if q in listed]
    rest = [q for q in listed if q not in required]
    n_rest = max(0, plan.count - len(required))
    if plan.order == "shuffled":
        rng = random.Random(f"{job_id}:{seed}")
        chosen = rng.sample(rest, min(n_rest, len(rest)))
    else:
        chosen = rest[:n_rest]
    return [bank.question(qid) for qid in required + chosen]


# ---------------------------------------------------------------------------------------------
# Writing a workbook: the template HR fills in, and the examples' xlsx (generated from JSON so
# the two cannot drift).

HELP_ROWS = (
    ("题库填写说明 How to fill in this question bank", ""),
    ("", ""),
    ("bank", "版本号 version (整数，每次更新必须加大 / a whole number, raise it for every update), "
             "创建时间 created, 名称 name"),
    ("dimensions", "能力维度：编号（小写英文）与中英文名称 / competency dimensions: id and names"),
    ("jobs", "每行一个岗位。能力模型写成 维度: 权重, ...，权重之和为 1；题目编号用逗号分隔 / one job "
             "per row; competencies as dimension: weight, ... summing to 1; question ids comma separated"),
    ("questions", "每行一道题。考察维度写法同上；STAR要素填 situation, task, action, result 中的若干项；"
                  "可重答次数留空 = 按终端设置 (session.max_retakes) / one question per row; dimensions "
                  "as above; STAR parts expected in the answer; retakes left empty = the terminal's "
                  "setting (session.max_retakes)"),
    ("keywords", "每行一个关键词，语言须与岗位的答题语言一致；同义词用 、 或 , 分隔 / one keyword per "
                 "row, in the language the job is answered in; synonyms separated by 、 or ,"),
    ("", ""),
    ("导入 import", "kiosk-provision bank import 文件.xlsx —— 有错误时会列出每个错误的表、行、列，"
                    "题库不会被部分导入 / every error is listed by sheet, row and column; a bank "
                    "with errors is not installed at all"),
)


def bank_workbook_rows(bank: QuestionBank) -> dict[str, list[list[Any]]]:
    """The rows (header first) of every sheet for `bank`."""
    sheets: dict[str, list[list[Any]]] = {n: [[c.header for c in cols if c.key != "notes"]]
                                          for n, cols in SHEETS.items()}
    sheets["bank"] += [["version 版本号", bank.version],
                       ["created 创建时间", bank.created.isoformat()],
                       ["name 名称", bank.name]]
    for did, names in bank.dimensions.items():
        sheets["dimensions"].append([did, names.zh, names.en])
    for j in bank.jobs:
        sheets["jobs"].append([
            j.id, j.title.zh, j.title.en, j.language, format_weights(j.competencies),
            j.pass_threshold, ", ".join(j.plan.questions), ", ".join(j.plan.required),
            j.plan.count, j.plan.order, j.nonverbal_weight,
        ])
    for q in bank.questions:
        sheets["questions"].append([
            q.id, q.prompt.zh, q.prompt.en, q.language or "", format_weights(q.dimensions),
            q.preparation_s, q.answer_s, "" if q.retakes is None else q.retakes,
            ", ".join(q.rubric.star),
            q.media.kind, q.media.path or "",
        ])
        for k in q.rubric.keywords:
            sep = "、" if k.language == "zh" else "; "
            sheets["keywords"].append([q.id, k.language, k.term, k.weight, sep.join(k.synonyms)])
    return sheets


def write_bank_xlsx(bank: QuestionBank, path: str | Path) -> Path:
    """Write `bank` as a workbook `load_bank_xlsx` reads back to the same bank, with a help sheet,
    frozen headers and drop-down lists where a cell takes one of a few words."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    path = Path(path)
    wb = Workbook()
    help_ws = wb.active
    help_ws.title = "说明 help"
    for row in HELP_ROWS:
        help_ws.append(list(row))
    help_ws["A1"].font = Font(bold=True, size=14)
    help_ws.column_dimensions["A"].width = 16
    help_ws.column_dimensions["B"].width = 120
    choices = {"language": '"zh,en"', "order": '"fixed,shuffled"', "media_kind": '"none,image,video"'}
    for name, rows in bank_workbook_rows(bank).items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
        ws.freeze_panes = "A2"
        header_fill = PatternFill("solid", fgColor="DDEBF7")
        for ci, cell in enumerate(ws[1], start=1):
            cell.font = Font(bold=True)
            cell.fill = header_fill
            longest = max(len(str(r[ci - 1])) if ci - 1 < len(r) else 0 for r in rows)
            ws.column_dimensions[get_column_letter(ci)].width = min(60, max(12, longest + 2))
            key = str(cell.value).split(" ")[0]
            if key in choices and len(rows) > 1:
                dv = DataValidation(type="list", formula1=choices[key], allow_blank=True)
                ws.add_data_validation(dv)
                letter = get_column_letter(ci)
                dv.add(f"{letter}2:{letter}500")
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                cell.alignment = Alignment(wrap_text=isinstance(cell.value, str)
                                           and len(cell.value) > 40, vertical="top")
    # fixed document times so regenerating an unchanged bank gives the same content
    wb.properties.created = bank.created.replace(tzinfo=None)
    wb.properties.creator = "interview-kiosk"
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path
