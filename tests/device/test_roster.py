"""Rosters: matching each WeCom identity kind and interview codes against device, day and slot
(with the grace window), validation errors by path, install/newer-only, and masked names."""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from device.questions import load_bank_json
from device.roster import (
    Roster,
    RosterError,
    current_roster,
    entries_for,
    find_by_code,
    find_by_identity,
    install_roster,
    load_roster,
    mask_name,
    match_code,
    roster_from_dict,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEVICE = "demo-kiosk-01"


def at(hhmm: str, day: str = "2026-11-23") -> float:
    """Epoch seconds for a Beijing time on the example roster's day."""
    return datetime.fromisoformat(f"{day}T{hhmm}:00+08:00").timestamp()


@pytest.fixture(scope="module")
def roster() -> Roster:
    return load_roster(EXAMPLES / "roster.json")


@pytest.fixture
def roster_data() -> dict[str, Any]:
    return json.loads((EXAMPLES / "roster.json").read_text(encoding="utf-8"))


def _errors(data: Any) -> list[str]:
    with pytest.raises(RosterError) as exc:
        roster_from_dict(data)
    return [str(e) for e in exc.value.errors]


# --- the example roster -----------------------------------------------------------------------


def test_example_roster_fits_the_example_bank_and_the_demo(roster: Roster) -> None:
    bank = load_bank_json(EXAMPLES / "question_bank.json")
    job_ids = {j.id for j in bank.jobs}
    assert all(e.job_id in job_ids for e in roster.entries)
    demo = find_by_code(roster, "246810", DEVICE, at("09:00"))
    assert demo is not None and bank.job(demo.job_id).language == "en"
    assert any(e.wecom_userid for e in roster.entries)
    assert any(e.openid and e.external_userid for e in roster.entries)
    assert [e.entry_id for e in entries_for(roster, DEVICE, at("12:00"))] == [
        "R-20261123-001", "R-20261123-002", "R-20261123-003"]


def test_roster_moved_to_another_day_keeps_times(roster: Roster) -> None:
    moved = roster.moved_to(date(2027, 3, 1))
    assert moved.date == date(2027, 3, 1)
    assert find_by_code(moved, "246810", DEVICE, at("09:00", "2027-03-01")) is not None
    assert find_by_code(moved, "246810", DEVICE, at("09:00")) is None


# --- matching ---------------------------------------------------------------------------------


def test_member_matches_by_wecom_userid(roster: Roster) -> None:
    m = find_by_identity(roster, userid="WangFang", device_id=DEVICE, now=at("10:05"))
    assert m.ok and m.entry.entry_id == "R-20261123-002" and m.reason is None


def test_outsider_matches_by_external_userid_or_openid(roster: Roster) -> None:
    ext = find_by_identity(roster, external_userid="wmq0ZCBgAAxEXAMPLEx0Kd1xYbX7rLq3tg",
                           device_id=DEVICE, now=at("14:10"))
    oid = find_by_identity(roster, openid="oExAmPle-Lq7Ck2yV0hU4gRm9sTzP", device_id=DEVICE,
                           now=at("14:10"))
    both = find_by_identity(roster, openid="o-unknown", external_userid="wmq0ZCBgAAxEXAMPLEx0Kd1xYbX7rLq3tg",
                            device_id=DEVICE, now=at("14:10"))
    assert ext.entry.entry_id == oid.entry.entry_id == both.entry.entry_id == "R-20261123-003"


def test_identities_of_one_kind_do_not_match_another(roster: Roster) -> None:
    # a user id that happens to equal someone's open id must not sign them in
    m = find_by_identity(roster, userid="oExAmPle-Lq7Ck2yV0hU4gRm9sTzP", device_id=DEVICE, now=at("14:10"))
    assert m.reason == "off_roster"


def test_unknown_and_off_roster(roster: Roster) -> None:
    assert find_by_identity(roster, device_id=DEVICE, now=at("10:00")).reason == "unknown_user"
    assert find_by_identity(roster, userid="Nobody", device_id=DEVICE, now=at("10:00")).reason == "off_roster"
    tomorrow = find_by_identity(roster, userid="WangFang", device_id=DEVICE, now=at("10:05", "2026-11-24"))
    assert tomorrow.reason == "off_roster"


def test_wrong_device(roster: Roster) -> None:
    m = find_by_identity(roster, userid="SunLei", device_id=DEVICE, now=at("11:05"))
    assert not m.ok and m.reason == "wrong_device"
    assert find_by_identity(roster, userid="SunLei", device_id="demo-kiosk-02", now=at("11:05")).ok


def test_outside_slot_with_the_default_grace_window(roster: Roster) -> None:
    def reason(hhmm: str) -> str | None:
        return find_by_identity(roster, userid="WangFang", device_id=DEVICE, now=at(hhmm)).reason

    # slot 10:00-10:30; 30 min early and 60 min late are allowed by default
    assert reason("09:29") == "outside_slot"
    assert reason("09:31") is None
    assert reason("11:29") is None
    assert reason("11:31") == "outside_slot"
    assert reason("17:00") == "outside_slot"


def test_grace_window_is_configurable(roster: Roster, roster_data: dict[str, Any]) -> None:
    strict = roster_from_dict({**roster_data, "grace_early_min": 0, "grace_late_min": 5})
    assert find_by_identity(strict, userid="WangFang", device_id=DEVICE, now=at("09:55")).reason == "outside_slot"
    assert find_by_identity(strict, userid="WangFang", device_id=DEVICE, now=at("10:34")).ok
    assert find_by_identity(roster, userid="WangFang", device_id=DEVICE, now=at("09:55"),
                            early_min=0).reason == "outside_slot"


def test_site_booking_matches_any_device_of_the_site(roster: Roster) -> None:
    oid = "oExAmPle-Zm3Qw8rT5yU1iO6pA2sD"
    assert find_by_identity(roster, openid=oid, device_id="any-kiosk", site="上海总部", now=at("15:10")).ok
    assert find_by_identity(roster, openid=oid, device_id="any-kiosk", site="北京分部",
                            now=at("15:10")).reason == "wrong_device"


def test_interview_codes(roster: Roster) -> None:
    assert find_by_code(roster, " 246-810 ", DEVICE, at("09:00")).entry_id == "R-20261123-001"
    assert match_code(roster, "000000", DEVICE, at("09:00")).reason == "unknown_code"
    assert match_code(roster, "975310", DEVICE, at("11:00")).reason == "wrong_device"
    assert match_code(roster, "135790", DEVICE, at("09:00")).reason == "outside_slot"
    assert find_by_code(roster, "135790", DEVICE, at("09:00")) is None
    assert match_code(roster, "", DEVICE, at("09:00")).reason == "unknown_code"


def test_overlapping_bookings_pick_the_nearest_slot(roster_data: dict[str, Any]) -> None:
    data = copy.deepcopy(roster_data)
    second = {**data["entries"][1], "entry_id": "R-2", "job_id": "line_operator",
              "slot_start": "2026-11-23T11:00:00+08:00", "slot_end": "2026-11-23T11:30:00+08:00"}
    data["entries"].append(second)
    r = roster_from_dict(data)
    assert find_by_identity(r, userid="WangFang", device_id=DEVICE, now=at("10:50")).entry.entry_id == "R-2"
    assert find_by_identity(r, userid="WangFang", device_id=DEVICE, now=at("10:10")).entry.entry_id == "R-20261123-002"


# --- validation -------------------------------------------------------------------------------


def test_validation_errors_name_their_paths(roster_data: dict[str, Any]) -> None:
    data = copy.deepcopy(roster_data)
    data["entries"][0]["slot_start"] = "2026-11-23T08:00:00"  # no time zone
    data["entries"][1]["slot_end"] = "2026-11-23T09:00:00+08:00"  # before its start
    data["entries"][2]["interview_code"] = "246 810"  # same code as entry 0
    data["entries"][3].pop("openid")  # no way to sign in left
    data["entries"][4].pop("device_id")  # nowhere
    errors = _errors(data)
    assert ("entries[0].slot_start: needs a time zone, e.g. 2026-11-23T09:00:00+08:00, "
            "got '2026-11-23T08:00:00'") in errors
    assert "entries[1]: slot_end must be after slot_start" in errors
    assert any(e.startswith("entries[3]: give at least one of wecom_userid") for e in errors)
    assert "entries[4]: give device_id or site: where is this interview?" in errors
    del data["entries"][:2], data["entries"][1:]
    data["entries"].append(dict(data["entries"][0]))  # the same booking pasted twice
    errors = _errors(data)
    assert "entries[1].entry_id: duplicate entry id 'R-20261123-003'" in errors
    assert ("entries[1].interview_code: code already used by another entry; codes must be unique"
            in errors)


def test_load_roster_reports_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "roster.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RosterError, match=r"roster roster.json rejected.*\n  - \(whole file\): not valid JSON"):
        load_roster(path)


# --- store ------------------------------------------------------------------------------------


def test_install_only_newer_and_last_good_stays(store, roster: Roster) -> None:
    assert current_roster(store) is None
    install_roster(store, roster)
    assert current_roster(store) == roster
    with pytest.raises(RosterError, match="version 1 is not newer than the installed version 1"):
        install_roster(store, roster.model_copy(update={"date": date(2026, 11, 24)}))
    broken = roster.model_copy(update={"version": 2, "entries": roster.entries + roster.entries[:1]})
    with pytest.raises(RosterError, match="duplicate entry id"):
        install_roster(store, broken)
    assert current_roster(store) == roster
    newer = roster.moved_to(date(2026, 11, 24)).model_copy(update={"version": 2})
    install_roster(store, newer)
    assert current_roster(store).date == date(2026, 11, 24)


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "masked"), [
    ("张三丰", "张*丰"),
    ("张三", "张*"),
    ("欧阳小明", "欧**明"),
    ("John Doe", "J*** D."),
    ("jordan van der lee", "J*** L."),
    ("Madonna", "M***"),
    ("  ", ""),
])
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_name_styles_and_names_stay_out_of_reprs(roster: Roster) -> None:
    assert mask_name("Jordan Lee", "zh") == "J*******e"
    assert mask_name("王芳", "en") == "王***"
    entry = roster.entries[1]
    assert "王芳" not in repr(entry) and "王芳" not in str(entry)
    assert entry.slot_start + timedelta(minutes=30) == entry.slot_end


# --- Excel ------------------------------------------------------------------------------------


def test_xlsx_roster_loads_to_the_same_roster(roster: Roster) -> None:
    assert load_roster(EXAMPLES / "roster.xlsx") == roster


def test_xlsx_roster_times_are_local_to_its_timezone(tmp_path: Path, roster: Roster) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(EXAMPLES / "roster.xlsx")
    wb["info"]["B4"] = "Asia/Tokyo"  # one hour ahead of Beijing: the same wall times are earlier
    wb.save(tmp_path / "tokyo.xlsx")
    tokyo = load_roster(tmp_path / "tokyo.xlsx")
    assert tokyo.entries[1].slot_start == roster.entries[1].slot_start - timedelta(hours=1)


def test_xlsx_roster_errors_name_sheet_row_and_column(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    wb = load_workbook(EXAMPLES / "roster.xlsx")
    wb["info"]["B4"] = "Mars/Olympus"
    wb["roster"]["J3"] = "tomorrow 10am"
    wb["roster"]["A4"] = "R-20261123-002"  # same as row 3, which has its own mistake
    wb["roster"]["F5"] = "12"
    wb["roster"]["H6"] = None  # site-less booking without device either
    wb["roster"]["I6"] = None
    wb.save(tmp_path / "bad.xlsx")
    with pytest.raises(RosterError) as exc:
        load_roster(tmp_path / "bad.xlsx")
    assert [str(i) for i in exc.value.errors] == [
        "sheet 'info', row 4, column B (value 值): time zone 'Mars/Olympus' is not known; write e.g. +08:00 or Asia/Shanghai",
        "sheet 'roster', row 3, column J (slot_start 开始时间): expected a valid datetime or date, invalid character in year, got 'tomorrow 10am'",
        "sheet 'roster', row 4, column A (entry_id 预约编号): 'R-20261123-002' is already used on row 3; it must be unique",
        "sheet 'roster', row 5, column F (interview_code 面试码): interview code must be 4-12 letters or digits, got '12'",
        "sheet 'roster', row 6: give device_id or site: where is this interview?",
    ]
