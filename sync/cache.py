"""The downlink cache: a signed message from the HR side (question bank, roster, config,
command, receipt) is checked — size, shape, Ed25519 signature, target, expiry, newer version,
content schema — and only then swapped into the store's cache in one transaction (a receipt
marks the outbox rows HR's connector has stored, sync.outbox.apply_receipts).
A rejected message changes nothing; it is logged (never its content) and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from device.config import PUSHABLE_SECTIONS, ConfigError, apply_overrides, check_overrides
from device.records import DOWN_KINDS, DownlinkEnvelope
from sync.signing import KeyFileError, SignatureError, load_public_key, verify_bytes

log = logging.getLogger(__name__)

MAX_DOWNLINK_BYTES = 4 * 1024 * 1024
REJECT_COUNTS_KV = "sync.downlink_rejected"
COMMAND_VERSION_KV = "sync.command_version"
CACHE_KEY = "current"
PUBKEY_KIND, PUBKEY_KEY = "pubkey", "downlink"
# What HR may change remotely: declared once, with the schema (device/config.py).
CONFIG_SECTIONS = set(PUSHABLE_SECTIONS)
# Built-in commands; others (e.g. "wecom_signin") are registered by the daemon's parts.
BUILTIN_COMMANDS = ("heartbeat", "retry_now")

REASONS = ("oversized", "malformed", "unsigned", "forged", "foreign", "expired", "stale",
           "invalid", "no_key")


class DownlinkRejected(Exception):
    def __init__(self, reason: str, detail: str):
        assert reason in REASONS
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class Applied:
    kind: str
    version: int
    envelope_id: str
    command: str | None = None


def check_config_overlay(data: Any, base: Any = None, *, version: int | None = None) -> None:
    """Raise ValueError unless ``data`` only touches CONFIG_SECTIONS with valid values and,
    merged over ``base`` (the device's Settings), still validates. The same rule the
    device applies the config with (device.config.apply_overrides)."""
    try:
        if base is None:
            check_overrides(data, version=version)
        else:
            apply_overrides(base, data, version=version)
    except ConfigError as e:
        raise ValueError(str(e)) from None


class DownlinkCache:
    """Applies downlink messages for one device. Commands (payload ``{"type": name, ...}``)
    go to the handler registered for their type."""

    def __init__(self, store, settings, *, clock: Callable[[], float],
                 max_bytes: int = MAX_DOWNLINK_BYTES):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.max_bytes = max_bytes
        self.commands: dict[str, Callable[[dict], Any]] = {}

    def register_command(self, name: str, handler: Callable[[dict], Any]) -> None:
        self.commands[name] = handler

    # --- the public key -----------------------------------------------------------------

    def public_key(self) -> Ed25519PublicKey:
        """The HR key from the store (put there at enrolment), else the configured file."""
        row = self.store.cache_get(PUBKEY_KIND, PUBKEY_KEY)
        if row and isinstance(row[1].get("pem"), str):
            return load_public_key(row[1]["pem"].encode())
        path = self.settings.sync.downlink_public_key_file if self.settings.sync else None
        if path is None:
            raise KeyFileError("no HR public key: enrol the device or set sync.downlink_public_key_file")
        return load_public_key(Path(path))

    # --- counting -------------------------------------------------------------------------

    def rejected_counts(self) -> dict[str, int]:
        return dict(self.store.kv_get(REJECT_COUNTS_KV, {}) or {})

    def _count(self, reason: str) -> None:
        with self.store.transaction():
            counts = self.rejected_counts()
            counts[reason] = counts.get(reason, 0) + 1
            self.store.kv_set(REJECT_COUNTS_KV, counts)

    # --- applying ---------------------------------------------------------------------------

    def handle(self, topic: str, body: bytes) -> Applied:
        """Verify and apply one message. Raises DownlinkRejected (already logged and counted)."""
        try:
            applied = self._apply(topic, body)
        except DownlinkRejected as e:
            log.warning("downlink on %s rejected (%d bytes): %s", topic, len(body), e)
            self._count(e.reason)
            raise
        # Receipts come every second while records flow: not worth an INFO line each.
        (log.debug if applied.kind == "receipt" else log.info)(
            "downlink %s version %d applied (envelope %s)", applied.kind, applied.version,
            applied.envelope_id)
        return applied

    def _apply(self, topic: str, body: bytes) -> Applied:
        dev = self.settings.device
        if len(body) > self.max_bytes:
            raise DownlinkRejected("oversized", f"{len(body)} bytes, limit {self.max_bytes}")
        parts = topic.split("/")
        if len(parts) != 6 or parts[4] != "down" or parts[5] not in DOWN_KINDS:
            raise DownlinkRejected("malformed", f"unexpected topic {topic!r}")
        topic_kind = parts[5]
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DownlinkRejected("malformed", f"not JSON ({type(e).__name__})") from None
        if not isinstance(doc, dict):
            raise DownlinkRejected("malformed", "not a JSON object")
        if not doc.get("signature"):
            raise DownlinkRejected("unsigned", "no signature")
        try:
            env = DownlinkEnvelope.model_validate(doc)
        except ValidationError as e:
            where = ", ".join(".".join(str(p) for p in err["loc"]) or "(top)" for err in e.errors()[:5])
            raise DownlinkRejected("malformed", f"envelope fields wrong: {where}") from None
        try:
            key = self.public_key()
        except KeyFileError as e:
            raise DownlinkRejected("no_key", str(e)) from None
        try:
            verify_bytes(key, env.signing_bytes(), env.signature)
        except SignatureError as e:
            raise DownlinkRejected("forged", str(e)) from None
        if env.kind != topic_kind:
            raise DownlinkRejected("foreign", f"envelope kind {env.kind!r} on topic {topic_kind!r}")
        if env.tenant != dev.tenant or env.device_id not in ("*", dev.id) or \
                parts[2] != dev.tenant or parts[3] != dev.id:
            raise DownlinkRejected("foreign", f"addressed to {env.tenant}/{env.device_id}")
        now = self.clock()
        if env.expires_at is not None and env.expires_at < now:
            raise DownlinkRejected("expired", f"expired at {env.expires_at:.0f}")
        if env.kind == "command":
            return self._command(env)
        if env.kind == "receipt":
            return self._receipt(env)
        current = self.store.cache_get(env.kind, CACHE_KEY)
        if current is not None and current[0] >= env.version:
            raise DownlinkRejected("stale", f"version {env.version} <= installed {current[0]}")
        payload = self._validated(env)
        with self.store.transaction():
            if not self.store.cache_put(env.kind, CACHE_KEY, env.version, payload):
                raise DownlinkRejected("stale", f"version {env.version} lost a race")
            self.store.kv_set(f"sync.downlink.{env.kind}", {
                "version": env.version, "envelope": env.id, "applied_at": now,
                "sha256": hashlib.sha256(body).hexdigest(),
            })
        return Applied(env.kind, env.version, env.id)

    def _validated(self, env: DownlinkEnvelope) -> dict:
        if env.kind == "questionbank":
            from device.questions import BankError, bank_from_dict

            try:
                bank = bank_from_dict(env.payload, source="downlink")
            except BankError as e:
                raise DownlinkRejected("invalid", f"question bank: {e}") from None
            if bank.version != env.version:
                raise DownlinkRejected("invalid", f"bank version {bank.version} != envelope {env.version}")
            return bank.model_dump(mode="json")
        if env.kind == "roster":
            from device.roster import RosterError, roster_from_dict

            try:
                roster = roster_from_dict(env.payload, source="downlink")
            except RosterError as e:
                raise DownlinkRejected("invalid", f"roster: {e}") from None
            if roster.version != env.version:
                raise DownlinkRejected("invalid", f"roster version {roster.version} != envelope {env.version}")
            return roster.model_dump(mode="json")
        if env.kind == "config":
            try:
                check_config_overlay(env.payload, self.settings, version=env.version)
            except ValueError as e:
                raise DownlinkRejected("invalid", f"config: {e}") from None
            return env.payload
        raise DownlinkRejected("malformed", f"unknown kind {env.kind!r}")

    def _receipt(self, env: DownlinkEnvelope) -> Applied:
        """HR's connector has stored these records. Only for this very device (never "*"),
        no version order (receipts are idempotent: a replayed one says what is still true).
        Ids this device does not hold change nothing; they are logged by count only."""
        from sync.outbox import MAX_RECEIPT_IDS, apply_receipts

        if env.device_id != self.settings.device.id:
            raise DownlinkRejected("foreign", f"receipt addressed to {env.device_id!r}, not this device")
        ids = env.payload.get("ids")
        if not isinstance(ids, list) or not ids or len(ids) > MAX_RECEIPT_IDS or not all(
                isinstance(i, str) and 0 < len(i) <= 128 for i in ids):
            raise DownlinkRejected("invalid", f"receipt payload needs 'ids': 1 to {MAX_RECEIPT_IDS} "
                                   "record ids (strings of 1 to 128 characters)")
        newly, unknown = apply_receipts(self.store, ids, self.clock())
        if unknown:
            log.warning("receipt %s names %d record id(s) this device does not hold (already "
                        "purged, or not ours); ignored", env.id, unknown)
        log.debug("receipt %s: %d of %d record(s) newly receipted", env.id, newly, len(ids))
        return Applied("receipt", env.version, env.id)

    def _command(self, env: DownlinkEnvelope) -> Applied:
        last = int(self.store.kv_get(COMMAND_VERSION_KV, -1))
        if env.version <= last:
            raise DownlinkRejected("stale", f"command version {env.version} <= last {last}")
        name = env.payload.get("type")
        handler = self.commands.get(name) if isinstance(name, str) else None
        if handler is None:
            raise DownlinkRejected("invalid", f"unknown command type {name!r}; known: {sorted(self.commands)}")
        self.store.kv_set(COMMAND_VERSION_KV, env.version)
        try:
            handler(env.payload)
        except Exception:
            # The command was authentic; a failing handler is our bug, not a rejection.
            log.exception("command %s (envelope %s) failed", name, env.id)
        return Applied("command", env.version, env.id, command=name)
