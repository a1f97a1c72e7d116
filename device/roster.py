"""Today's candidates per device (the roster HR sends): who may sign in where and when, matched
by WeCom identity (user id, external user id or open id) or a typed interview code.
Candidate names are for display only, masked on screen; never log them.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from device.questions import BankIssue, format_issues, issues_from_validation

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
        seen_ids: set[str] = set()
        seen_codes: set[str] = set()
        problems: list[str] = []
        for i, e in enumerate(self.entries):
            if e.entry_id in seen_ids:
                problems.append(f"entries[{i}].entry_id: duplicate entry id {e.entry_id!r}")
            seen_ids.add(e.entry_id)
            if e.interview_code:
                if e.interview_code in seen_codes:
                    problems.append(f"entries[{i}].interview_code: code already used by another "
                                    "entry; codes must be unique")
                seen_codes.add(e.interview_code)
        if problems:
            raise ValueError("; ".join(problems))
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
    path = Path(path)
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
