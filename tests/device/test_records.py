"""Records: the committed JSON Schemas match the models, records validate, topics are right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from device.records import (
    SCHEMAS,
    DownlinkEnvelope,
    EventRecord,
    ResultRecord,
    export_schemas,
    schema_json,
    topic,
)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_the_model(name):
    committed = SCHEMA_DIR / f"{name}.schema.json"
    assert committed.exists(), f"run: python -m device.records docs/schemas ({committed} missing)"
    assert committed.read_text(encoding="utf-8") == schema_json(SCHEMAS[name]), (
        f"{committed} is out of date: run python -m device.records docs/schemas"
    )


def test_export_writes_every_schema(tmp_path):
    written = export_schemas(tmp_path)
    assert {p.name for p in written} == {f"{n}.schema.json" for n in SCHEMAS}
    result = json.loads((tmp_path / "result.schema.json").read_text())
    assert result["properties"]["schema_version"]["const"] == 1
    assert "end_reason" in result["required"]


def sample_result(**over) -> dict:
    base = {
        "id": "0b6f7c1e-0000-4000-8000-000000000001",
        "session_id": "s1",
        "device_id": "kiosk-1",
        "tenant": "acme",
        "site": "lobby",
        "job_id": "sales",
        "candidate": {"ref": "R-1", "masked_name": "张*"},
        "started": 1.0,
        "ended": 2.0,
        "end_reason": "completed",
        "language": "zh",
        "answers": [
            {
                "question_id": "q1",
                "idx": 0,
                "transcript": "测试",
                "duration_s": 42.0,
                "analysis": {"content": 80},
            }
        ],
        "report": {"total": 78},
        "integrity_flags": [],
    }
    return {**base, **over}


def test_result_round_trips_through_json():
    r = ResultRecord.model_validate(sample_result())
    again = ResultRecord.model_validate_json(r.model_dump_json())
    assert again == r and again.schema_version == 1


@pytest.mark.parametrize(
    "over",
    [
        {"end_reason": "bored"},
        {"language": "fr"},
        {"schema_version": 2},
        {"unexpected": 1},
        {"answers": [{"question_id": "q", "idx": -1}]},
    ],
)
def test_bad_results_are_rejected(over):
    with pytest.raises(ValidationError):
        ResultRecord.model_validate(sample_result(**over))


def test_event_requires_type_and_time():
    with pytest.raises(ValidationError):
        EventRecord.model_validate({"id": "e", "device_id": "k", "tenant": "t"})


def test_downlink_signing_bytes_cover_everything_but_the_signature():
    env = DownlinkEnvelope(
        id="d1", kind="roster", tenant="acme", version=3, issued_at=10.0, payload={"a": "张"}
    )
    signed = env.model_copy(update={"signature": "c2ln"})
    assert env.signing_bytes() == signed.signing_bytes()
    assert env.signing_bytes() != env.model_copy(update={"version": 4}).signing_bytes()
    assert b"signature" not in env.signing_bytes()


def test_topics(settings):
    assert topic(settings, "result") == "kiosk/v1/default/kiosk-test-01/up/result"
    assert topic(settings, "roster", "down") == "kiosk/v1/default/kiosk-test-01/down/roster"
    with pytest.raises(ValueError):
        topic(settings, "roster")
    with pytest.raises(ValueError):
        topic(settings, "result", "down")
