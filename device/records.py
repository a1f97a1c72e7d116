"""The records that cross to the HR side (result, event, status, heartbeat, downlink), schema v1.

These models are the wire contract: docs/schemas/*.json is generated from them and a test
keeps the two equal. Never add a field that carries a face image or raw audio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from device.config import Settings

SCHEMA_VERSION = 1
UP_KINDS = ("result", "event", "status", "heartbeat", "clip", "notify")
DOWN_KINDS = ("config", "questionbank", "roster", "command", "receipt")
EndReason = Literal["completed", "interrupted", "abandoned", "declined", "failed"]


class _Record(BaseModel):
    # extra="forbid": a typo in a producer fails in our tests, not at the customer's connector.
    model_config = ConfigDict(frozen=True, extra="forbid")


class CandidateRef(_Record):
    ref: str = Field(description="The HR system's candidate / roster entry id")
    masked_name: str = Field(
        "", description="Name with most characters masked (张*伟), for display only"
    )


class AnswerRecord(_Record):
    question_id: str
    idx: int = Field(ge=0, description="Position of the question in this interview (0-based)")
    attempt: int = Field(1, ge=1, description="Which take this is (1 = first answer)")
    transcript: str = Field("", description="Speech-to-text transcript of the answer")
    started: float | None = Field(None, description="Unix time the answer started")
    ended: float | None = Field(None, description="Unix time the answer ended")
    prepare_s: float | None = Field(None, ge=0, description="Seconds spent preparing")
    duration_s: float = Field(0, ge=0, description="Seconds spent answering")
    analysis: dict[str, Any] = Field(default_factory=dict, description="Scores with their evidence")
    clip_ids: list[str] = Field(
        default_factory=list,
        description="Ids of this answer's recordings (video, audio), uploaded as clips: "
        "`interview-hr clip export ID` decrypts one with the HR clip key",
    )


class ResultRecord(_Record):
    """One finished (or interrupted) interview with its scores and evidence."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str = Field(description="Message id (= outbox id), the idempotency key")
    session_id: str
    device_id: str
    tenant: str
    site: str = ""
    job_id: str
    candidate: CandidateRef
    started: float = Field(description="Unix time the session started")
    ended: float = Field(description="Unix time the session ended")
    end_reason: EndReason
    language: Literal["zh", "en"]
    answers: list[AnswerRecord] = Field(default_factory=list)
    report: dict[str, Any] = Field(
        default_factory=dict,
        description="The analysis report: dimension scores, total, recommendation, evidence",
    )
    integrity_flags: list[str] = Field(
        default_factory=list, description="e.g. second_face, left_frame, long_silence"
    )


class EventRecord(_Record):
    """Something that happened at the terminal (started, help, declined, finished ...)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    device_id: str
    tenant: str
    site: str = ""
    ts: float
    type: str = Field(
        description="started, finished, help, help_resolved, declined, paused, resumed, abandoned, interrupted, hardware_failed, ..."
    )
    session_id: str | None = None
    detail: dict[str, Any] = Field(
        default_factory=dict, description="Ids and codes only, never names or transcripts"
    )


class StatusRecord(_Record):
    """The device's online state (retained; the broker publishes the offline one as last will)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    device_id: str
    tenant: str
    site: str = ""
    ts: float
    online: bool
    software_version: str = ""
    state: str = Field("", description="Kiosk state (idle, in_session, failed, ...) when known")


class HeartbeatRecord(_Record):
    """Periodic health: what a technician or the customer's IT monitors."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    device_id: str
    tenant: str
    site: str = ""
    ts: float
    uptime_s: float = Field(ge=0)
    software_version: str = ""
    outbox_depth: int = Field(0, ge=0, description="Undelivered records (answer clips not counted)")
    oldest_undelivered_age_s: float | None = Field(
        None, description="Age of the oldest undelivered record (answer clips not counted)")
    clips_pending: int = Field(0, ge=0, description="Answer clips not uploaded yet")
    clips_failed: int = Field(
        0, ge=0, description="Of clips_pending: refused because HR stores a different completed clip "
        "with the same id (never replaced; retried daily)")
    oldest_clip_age_s: float | None = Field(None, description="Age of the oldest clip not uploaded yet")
    unreceipted: int = Field(
        0, ge=0, description="Results and events the broker acknowledged but HR's connector has "
        "not confirmed storing yet (no receipt)")
    oldest_unreceipted_age_s: float | None = Field(
        None, description="Age of the oldest of those (since it was created)")
    clip_key: bool | None = Field(
        None, description="Whether the device has HR's clip key (without it clips wait)")
    disk_free_bytes: int | None = None
    cpu_percent: float | None = None
    memory_percent: float | None = None
    camera_ok: bool | None = None
    microphone_ok: bool | None = None
    question_bank_version: int | None = None
    roster_version: int | None = None
    config_version: int | None = None
    downlink_rejected: dict[str, int] = Field(
        default_factory=dict,
        description="Downlink messages refused, by reason (forged, stale, malformed, oversized, ...)",
    )


class DownlinkEnvelope(_Record):
    """A signed message from the HR side: config, question bank, roster, command or receipt
    (payload ``{"ids": [...]}``: records HR's connector has stored; see docs/internals.md).

    signature = Ed25519 over signing_bytes() (everything but the signature, canonical JSON),
    base64; the device rejects unsigned, wrongly signed, foreign or expired envelopes.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str
    kind: Literal["config", "questionbank", "roster", "command", "receipt"]
    tenant: str
    device_id: str = Field("*", description='Target device, or "*" for every device of the tenant')
    version: int = Field(
        ge=0, description="Monotonic per kind; older or equal versions are ignored"
    )
    issued_at: float
    expires_at: float | None = None
    key_id: str = Field("", description="Which HR signing key signed this")
    payload: dict[str, Any]
    signature: str = Field("", description="base64 Ed25519 signature over signing_bytes()")

    def signing_bytes(self) -> bytes:
        data = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(
            "utf-8"
        )


SCHEMAS: dict[str, type[BaseModel]] = {
    "result": ResultRecord,
    "event": EventRecord,
    "status": StatusRecord,
    "heartbeat": HeartbeatRecord,
    "downlink": DownlinkEnvelope,
}


def topic(settings: Settings, kind: str, direction: Literal["up", "down"] = "up") -> str:
    """kiosk/v1/<tenant>/<device>/up/<kind> (or down/<kind>). `clip` rows go over HTTPS and
    `notify` rows to WeCom; their topic names the message kind the same way."""
    kinds = UP_KINDS if direction == "up" else DOWN_KINDS
    if kind not in kinds:
        raise ValueError(f"unknown {direction} kind {kind!r}; expected one of {', '.join(kinds)}")
    return f"kiosk/v1/{settings.device.tenant}/{settings.device.id}/{direction}/{kind}"


def schema_json(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://interview-kiosk.local/schemas/v{SCHEMA_VERSION}/{model.__name__}.json"
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def export_schemas(out_dir: Path) -> list[Path]:
    """Write <out_dir>/<name>.schema.json for every record; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(schema_json(model), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m device.records docs/schemas
    import sys

    for p in export_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(p)
