"""Today's candidates per device (the roster HR sends): who may sign in where and when, matched
by WeCom identity (user id, external user id or open id) or a typed interview code.
Candidate names are for display only, masked on screen; never log them.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from device.questions import (
    BankIssue,
    Column,
    cell_text,
    format_issues,
    issues_from_validation,
    read_sheet,
)

log = logging.getLogger(__name__)

ROSTER_CACHE_KIND = "roster"
ROSTER_CACHE_KEY = "current"
DEFAULT_EARLY_MIN = 30
DEFAULT_LATE_MIN = 60
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"

Reason = Literal["unknown_user", "off_roster", "wrong_device", "outside_slot", "unknown_code"]


class RosterError(Exception):
    """A roster that cannot be used; `errors` lists every problem (JSON path + message)."""

    def __init__(self, errors: list[BankIssue], source: str | None = None) -> None:
        self.errors = list(errors)
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        name = f"roster {self.source}" if self.source else "roster"
        return format_issues(f"{name} rejected, nothing was changed", self.errors)


def normalize_code(code: str) -> str:
    """Interview codes are compared without spaces, dashes or case ('246 810' == '246810')."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", str(code)) if ch.isalnum()).upper()


class RosterEntry(BaseModel):
    """One booked interview: who, for which job, at which device or site, in which slot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    entry_id: str = Field(pattern=_ID)
    name: str = Field(min_length=1, max_length=64, repr=False,
                      description="display only; masked on screen; never logged")
    wecom_userid: str | None = Field(None, min_length=1, max_length=64)
    external_userid: str | None = Field(None, min_length=1, max_length=128)
    openid: str | None = Field(None, min_length=1, max_length=128)
    interview_code: str | None = Field(None, description="4-12 letters or digits, typed on screen")
    job_id: str = Field(min_length=1, max_length=64)
    device_id: str | None = Field(None, min_length=1, max_length=64)
    site: str | None = Field(None, min_length=1, max_length=128)
    slot_start: AwareDatetime
    slot_end: AwareDatetime

    @field_validator("interview_code")
    @classmethod
    def _code(cls, v: str | None) -> str | None:
        if v is None:
            return None
        code = normalize_code(v)
        if not 4 <= len(code) <= 12:
            raise ValueError(f"interview code must be 4-12 letters or digits, got {v!r}")
        return code

    @model_validator(mode="after")
    def _consistent(self) -> RosterEntry:
        if not (self.wecom_userid or self.external_userid or self.openid or self.interview_code):
            raise ValueError("give at least one of wecom_userid, external_userid, openid or "
                             "interview_code, or the candidate cannot sign in")
        if not (self.device_id or self.site):
            raise ValueError("give device_id or site: where is this interview?")
        if self.slot_end <= self.slot_start:
            raise ValueError("slot_end must be after slot_start")
        if self.slot_end - self.slot_start > timedelta(hours=12):
            raise ValueError("slot is longer than 12 hours; check slot_start and slot_end")
        return self


def _duplicates(entries: Iterable[RosterEntry]) -> list[tuple[int, str, str]]:
    """(index, field, message) for every entry id or interview code used twice."""
    seen_ids: set[str] = set()
    seen_codes: set[str] = set()
    out: list[tuple[int, str, str]] = []
    for i, e in enumerate(entries):
        if e.entry_id in seen_ids:
            out.append((i, "entry_id", f"duplicate entry id {e.entry_id!r}"))
        seen_ids.add(e.entry_id)
        if e.interview_code:
            if e.interview_code in seen_codes:
                out.append((i, "interview_code",
                            "code already used by another entry; codes must be unique"))
            seen_codes.add(e.interview_code)
    return out


class Roster(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(ge=1)
    date: date
    entries: tuple[RosterEntry, ...] = ()
    grace_early_min: int = Field(DEFAULT_EARLY_MIN, ge=0, le=240,
                                 description="minutes before a slot a candidate may sign in")
    grace_late_min: int = Field(DEFAULT_LATE_MIN, ge=0, le=480,
                                description="minutes after a slot ends a candidate may still sign in")

    @model_validator(mode="after")
    def _unique(self) -> Roster:
        problems = _duplicates(self.entries)
        if problems:
            raise ValueError("; ".join(f"entries[{i}].{field}: {msg}" for i, field, msg in problems))
        return self

    def moved_to(self, day: date) -> Roster:
        """The same roster on another day, every slot keeping its time of day (for the demo,
        and for re-running a day's schedule in tests)."""
        shift = day - self.date
        entries = tuple(e.model_copy(update={"slot_start": e.slot_start + shift,
                                             "slot_end": e.slot_end + shift})
                        for e in self.entries)
        return self.model_copy(update={"date": day, "entries": entries})


def roster_from_dict(data: Any, source: str | None = None) -> Roster:
    """Validate a roster given as plain data; RosterError lists every problem by JSON path."""
    try:
        return Roster.model_validate(data)
    except ValidationError as e:
        issues: list[BankIssue] = []
        for issue in issues_from_validation(e):
            if issue.path == "" and issue.message.startswith("entries["):
                # the uniqueness check lists "path: message" parts; give each its own line
                for part in re.split(r"; (?=entries\[)", issue.message):
                    path, _, msg = part.partition(": ")
                    issues.append(BankIssue(None, None, None, msg, path=path))
            else:
                issues.append(issue)
        raise RosterError(issues, source) from None


def load_roster(path: str | Path) -> Roster:
    """Load a roster from .json or .xlsx (by suffix); RosterError lists every problem."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return load_roster_xlsx(path)
    if path.suffix.lower() != ".json":
        raise RosterError([BankIssue(None, None, None, f"unsupported file type "
                                     f"{path.suffix or '(none)'}; use .xlsx or .json", path="")],
                          path.name)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise RosterError([BankIssue(None, None, None, f"cannot read the file: {e}", path="")],
                          path.name) from None
    except json.JSONDecodeError as e:
        raise RosterError([BankIssue(None, None, None,
                                     f"not valid JSON: {e.msg} at line {e.lineno} column {e.colno}",
                                     path="")], path.name) from None
    roster = roster_from_dict(data, path.name)
    log.info("roster %s: version %d for %s, %d entries", path.name, roster.version, roster.date,
             len(roster.entries))
    return roster


# ---------------------------------------------------------------------------------------------
# Excel: sheet `info` (version, date, timezone, grace minutes) and sheet `roster`, one booking
# per row. Times in the sheet are local to `timezone` unless they carry their own offset.

INFO_COLUMNS = (Column("field", "项目"), Column("value", "值"))
ROSTER_COLUMNS = (
    Column("entry_id", "预约编号"),
    Column("name", "姓名"),
    Column("wecom_userid", "企业微信账号", required=False),
    Column("external_userid", "外部联系人ID", required=False),
    Column("openid", "OpenID", required=False),
    Column("interview_code", "面试码", required=False),
    Column("job_id", "岗位编号"),
    Column("device_id", "终端编号", required=False),
    Column("site", "地点", required=False),
    Column("slot_start", "开始时间"),
    Column("slot_end", "结束时间"),
    Column("notes", "备注", required=False),
)
ROSTER_SHEETS = {"info": INFO_COLUMNS, "roster": ROSTER_COLUMNS}
_INFO_FIELDS = ("version", "date", "timezone", "grace_early_min", "grace_late_min")
DEFAULT_TIMEZONE = "+08:00"


def _parse_tz(text: str) -> tzinfo:
    text = str(text).strip()
    m = re.fullmatch(r"(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?", text, re.IGNORECASE)
    if m:
        delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0))
        return timezone(-delta if m.group(1) == "-" else delta)
    if text.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time zone {text!r} is not known; write e.g. +08:00 or Asia/Shanghai") from None


def _local_time(value: Any, tz: tzinfo) -> Any:
    """An Excel date-time (naive) or text, in the roster's time zone unless it has its own."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return value  # the model names what is wrong with it
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=tz)
    return value


def load_roster_xlsx(path: str | Path) -> Roster:
    from openpyxl import load_workbook

    path = Path(path)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # a truncated or non-Excel file: BadZipFile, KeyError, OSError...
        raise RosterError([BankIssue(None, None, None,
                                     f"not an Excel .xlsx workbook ({type(e).__name__}: {e})",
                                     path="")], path.name) from None
    issues: list[BankIssue] = []
    try:
        sheets = {n: read_sheet(wb, n, cols, issues, ROSTER_SHEETS) for n, cols in ROSTER_SHEETS.items()}
    finally:
        wb.close()
    info: dict[str, Any] = {}
    info_rows: dict[str, int] = {}
    tz: tzinfo = _parse_tz(DEFAULT_TIMEZONE)
    if (s := sheets["info"]) is not None:
        for ri, cells in s.rows:
            field = str(cells.get("field", "")).split(" ")[0].strip().lower()
            if field not in _INFO_FIELDS:
                issues.append(s.issue(ri, "field", f"unknown field {cells.get('field')!r}; expected "
                                      + ", ".join(_INFO_FIELDS)))
            elif "value" in cells:
                v = cells["value"]
                info[field] = v.date().isoformat() if field == "date" and isinstance(v, datetime) else v
                info_rows[field] = ri
        if "timezone" in info:
            try:
                tz = _parse_tz(info.pop("timezone"))
            except ValueError as e:
                issues.append(s.issue(info_rows["timezone"], "value", str(e)))
    entries: list[RosterEntry] = []
    if (s := sheets["roster"]) is not None:
        for ri, cells in s.rows:
            item = {k: (_local_time(v, tz) if k in ("slot_start", "slot_end") else
                        (v if isinstance(v, datetime) else cell_text(v)))
                    for k, v in cells.items() if k != "notes"}
            try:
                entries.append(RosterEntry.model_validate(item))
            except ValidationError as e:
                for issue in issues_from_validation(e):
                    key = (issue.path or "").split(".")[0].split("[")[0] or None
                    issues.append(s.issue(ri, key, issue.message))
        # duplicates by the raw cells, so a booking with another mistake is still compared
        seen: dict[tuple[str, str], int] = {}
        for ri, cells in s.rows:
            for field in ("entry_id", "interview_code"):
                if field not in cells:
                    continue
                raw = cell_text(cells[field])
                value = normalize_code(raw) if field == "interview_code" else raw
                if (field, value) in seen:
                    issues.append(s.issue(ri, field, f"{raw!r} is already used on row "
                                          f"{seen[field, value]}; it must be unique"))
                else:
                    seen[field, value] = ri
    if (s := sheets["info"]) is not None:
        try:
            Roster.model_validate({**info, "entries": []})
        except ValidationError as e:
            for issue in issues_from_validation(e):
                field = (issue.path or "").split(".")[0]
                issues.append(s.issue(info_rows.get(field), "value" if field in info_rows else None,
                                      f"{field}: {issue.message}"))
    if issues:
        issues.sort(key=lambda i: (i.sheet != "info", i.row or 0))
        raise RosterError(issues, path.name)
    return roster_from_dict({**info, "entries": [e.model_dump(mode="json") for e in entries]},
                            path.name)


def write_roster_xlsx(roster: Roster, path: str | Path) -> Path:
    """The workbook load_roster_xlsx reads back to the same roster, times shown in the time
    zone of the first booking (China: +08:00)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    tz = roster.entries[0].slot_start.tzinfo if roster.entries else _parse_tz(DEFAULT_TIMEZONE)
    offset = datetime(2000, 1, 1, tzinfo=tz).strftime("%z")
    wb = Workbook()
    ws = wb.active
    ws.title = "info"
    ws.append([c.header for c in INFO_COLUMNS])
    for row in (["version 版本号", roster.version], ["date 日期", roster.date.isoformat()],
                ["timezone 时区", f"{offset[:3]}:{offset[3:]}"],
                ["grace_early_min 提前签到（分钟）", roster.grace_early_min],
                ["grace_late_min 迟到宽限（分钟）", roster.grace_late_min]):
        ws.append(row)
    ws.column_dimensions["A"].width = 34
    ws.column_dimensions["B"].width = 14
    rs = wb.create_sheet("roster")
    rs.append([c.header for c in ROSTER_COLUMNS if c.key != "notes"])
    for e in roster.entries:
        rs.append([e.entry_id, e.name, e.wecom_userid, e.external_userid, e.openid,
                   e.interview_code, e.job_id, e.device_id, e.site,
                   e.slot_start.astimezone(tz).replace(tzinfo=None),
                   e.slot_end.astimezone(tz).replace(tzinfo=None)])
    for sheet in (ws, rs):
        sheet.freeze_panes = "A2"
        for cell in sheet[1]:
            cell.font = Font(bold=True)
    for col in "ABCDEFGHIJK":
        rs.column_dimensions[col].width = 20
    for row in rs.iter_rows(min_row=2):
        row[5].number_format = "@"  # codes are text: a leading 0 must survive
        for cell in row[9:11]:
            cell.number_format = "yyyy-mm-dd hh:mm"
    path = Path(path)
    wb.save(path)
    return path


# ---------------------------------------------------------------------------------------------
# The store


def install_roster(store: Any, roster: Roster) -> None:
    """Install `roster` if it is newer than the installed one; RosterError (nothing changed)
    otherwise."""
    roster = roster_from_dict(roster.model_dump(mode="json"))
    if not store.cache_put(ROSTER_CACHE_KIND, ROSTER_CACHE_KEY, roster.version,
                           roster.model_dump(mode="json")):
        installed = store.cache_get(ROSTER_CACHE_KIND, ROSTER_CACHE_KEY)
        raise RosterError([BankIssue(None, None, None,
                                     f"version {roster.version} is not newer than the installed "
                                     f"version {installed[0] if installed else '?'}",
                                     path="version")])
    log.info("roster version %d for %s installed (%d entries)", roster.version, roster.date,
             len(roster.entries))


def current_roster(store: Any) -> Roster | None:
    row = store.cache_get(ROSTER_CACHE_KIND, ROSTER_CACHE_KEY)
    if row is None:
        return None
    try:
        return Roster.model_validate(row[1])
    except ValidationError as e:
        log.error("installed roster version %s does not validate: %d problems", row[0],
                  e.error_count())
        return None


# ---------------------------------------------------------------------------------------------
# Matching


@dataclass(frozen=True)
class MatchResult:
    """The entry that may sign in now, or why not (a reason device.signin has words for)."""

    entry: RosterEntry | None
    reason: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.entry is not None


def _aware(now: float | datetime) -> datetime:
    if isinstance(now, datetime):
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(now), tz=UTC)


def _grace(roster: Roster, early_min: int | None, late_min: int | None) -> tuple[timedelta, timedelta]:
    early = roster.grace_early_min if early_min is None else early_min
    late = roster.grace_late_min if late_min is None else late_min
    return timedelta(minutes=early), timedelta(minutes=late)


def _here(e: RosterEntry, device_id: str, site: str | None) -> bool:
    if e.device_id:
        return e.device_id == device_id
    return site is not None and e.site == site


def _classify(candidates: list[RosterEntry], roster: Roster, device_id: str, site: str | None,
              now: float | datetime, early_min: int | None, late_min: int | None) -> MatchResult:
    """Best reason first: a match here and now; else here today but not now (outside_slot);
    else today somewhere else (wrong_device); else not today (off_roster)."""
    t = _aware(now)
    early, late = _grace(roster, early_min, late_min)

    def in_window(e: RosterEntry) -> bool:
        return e.slot_start - early <= t <= e.slot_end + late

    def today(e: RosterEntry) -> bool:
        local = t.astimezone(e.slot_start.tzinfo)
        return local.date() in (e.slot_start.date(), e.slot_end.date()) or in_window(e)

    here_now = [e for e in candidates if _here(e, device_id, site) and in_window(e)]
    if here_now:
        # two bookings overlapping: the one whose slot start is nearest
        return MatchResult(min(here_now, key=lambda e: abs((e.slot_start - t).total_seconds())))
    if any(_here(e, device_id, site) and today(e) for e in candidates):
        return MatchResult(None, "outside_slot")
    if any(today(e) for e in candidates):
        return MatchResult(None, "wrong_device")
    return MatchResult(None, "off_roster")


def find_by_identity(
    roster: Roster,
    *,
    userid: str | None = None,
    external_userid: str | None = None,
    openid: str | None = None,
    device_id: str,
    now: float | datetime,
    site: str | None = None,
    early_min: int | None = None,
    late_min: int | None = None,
) -> MatchResult:
    """Match a WeCom identity: the member's user id, or an outsider's external user id / open
    id (any one that matches counts). `site` lets entries booked for a whole site match."""
    if not (userid or external_userid or openid):
        return MatchResult(None, "unknown_user")
    candidates = [
        e for e in roster.entries
        if (userid and e.wecom_userid == userid)
        or (external_userid and e.external_userid == external_userid)
        or (openid and e.openid == openid)
    ]
    if not candidates:
        return MatchResult(None, "off_roster")
    return _classify(candidates, roster, device_id, site, now, early_min, late_min)


def match_code(roster: Roster, code: str, device_id: str, now: float | datetime, *,
               site: str | None = None, early_min: int | None = None,
               late_min: int | None = None) -> MatchResult:
    """Match a typed interview code; reason unknown_code when no entry has it."""
    wanted = normalize_code(code)
    candidates = [e for e in roster.entries if wanted and e.interview_code == wanted]
    if not candidates:
        return MatchResult(None, "unknown_code")
    return _classify(candidates, roster, device_id, site, now, early_min, late_min)


def find_by_code(roster: Roster, code: str, device_id: str, now: float | datetime, *,
                 site: str | None = None) -> RosterEntry | None:
    """The entry for an interview code typed here and now, or None (see match_code for why)."""
    return match_code(roster, code, device_id, now, site=site).entry


def entries_for(roster: Roster, device_id: str, now: float | datetime, *,
                site: str | None = None) -> list[RosterEntry]:
    """Today's bookings at this device (or its site), in slot order: for status screens."""
    t = _aware(now)
    return sorted((e for e in roster.entries if _here(e, device_id, site)
                   and t.astimezone(e.slot_start.tzinfo).date() == e.slot_start.date()),
                  key=lambda e: e.slot_start)


# ---------------------------------------------------------------------------------------------
# Names on screen


def _is_cjk(ch: str) -> bool:
    return unicodedata.category(ch) == "Lo" and not ch.isascii()


def mask_name(name: str, style: Literal["auto", "zh", "en"] = "auto") -> str:
    """Mask a name for the screen and messages: '张三丰' -> '张*丰', '张三' -> '张*',
    'John Doe' -> 'J*** D.'. 'auto' picks by the characters the name is written in."""
    name = " ".join(str(name).split())
    if not name:
        return ""
    if style == "auto":
        style = "zh" if any(_is_cjk(ch) for ch in name) else "en"
    if style == "zh":
        chars = [ch for ch in name if not ch.isspace() and ch not in "·•."]
        if len(chars) <= 1:
            return chars[0] + "*" if chars else ""
        if len(chars) == 2:
            return chars[0] + "*"
        return chars[0] + "*" * (len(chars) - 2) + chars[-1]
    parts = [p for p in re.split(r"[\s]+", name) if p]
    first = parts[0][0].upper() + "***"
    if len(parts) == 1:
        return first
    return f"{first} {parts[-1][0].upper()}."
