"""Signing and publishing downlink messages (question bank, roster, config, command) to
the kiosks: an Ed25519-signed DownlinkEnvelope, retained, QoS 1, on each device's
``down/<kind>`` topic. It never publishes content that does not pass the device's own
validation, so a bad spreadsheet fails here, at the HR desk, not on the terminals."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.client import CallbackAPIVersion

from device.records import DownlinkEnvelope
from sync.connector.settings import MqttClientSection
from sync.signing import public_key_pem, sign_bytes


def key_id(key: Ed25519PrivateKey) -> str:
    """First 16 hex digits of the SHA-256 of the public key's DER (shown to technicians)."""
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def make_envelope(
    key: Ed25519PrivateKey, *, kind: str, tenant: str, version: int, payload: dict,
    device_id: str = "*", validity_s: float | None = 30 * 86400, now: float | None = None,
) -> DownlinkEnvelope:
    now = time.time() if now is None else now
    env = DownlinkEnvelope(
        id=str(uuid.uuid4()), kind=kind, tenant=tenant, device_id=device_id, version=version,
        issued_at=now, expires_at=(now + validity_s) if validity_s else None,
        key_id=key_id(key), payload=payload,
    )
    return env.model_copy(update={"signature": sign_bytes(key, env.signing_bytes())})


def down_topic(tenant: str, device_id: str, kind: str) -> str:
    return f"kiosk/v1/{tenant}/{device_id}/down/{kind}"


def bank_payload(path: Path) -> tuple[int, dict]:
    """Validate a bank file with the device's own importer; returns (version, payload)."""
    from device.questions import load_bank

    bank = load_bank(path)  # raises BankError naming sheet/row/column or JSON path
    return bank.version, bank.model_dump(mode="json")


def roster_payload(path: Path) -> tuple[int, dict]:
    """Validate a roster file with the device's own schema; returns (version, payload)."""
    from device.roster import load_roster

    r = load_roster(path)  # raises RosterError naming the JSON path
    return r.version, r.model_dump(mode="json")


def config_payload(path: Path) -> dict:
    """A partial config (TOML or JSON) the device merges over its own; checked here for
    sections and keys the device knows, so a typo fails at the HR desk."""
    import json
    import tomllib

    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if Path(path).suffix.lower() == ".json" else tomllib.loads(text)
    from sync.cache import check_config_overlay

    check_config_overlay(data)
    return data


def publish(cfg: MqttClientSection, client_id: str, messages: list[tuple[str, bytes]],
            *, retain: bool = True, timeout: float = 30.0) -> None:
    """Publish (topic, body) pairs QoS 1 and wait for every PUBACK; raises on refusal."""
    done = threading.Event()
    pending: dict[int, str] = {}
    errors: list[str] = []
    connected = threading.Event()
    lock = threading.Lock()

    def on_connect(c, u, flags, rc, props):
        if rc.is_failure:
            errors.append(f"broker refused the connection: {rc}")
            done.set()
        connected.set()

    def on_publish(c, u, mid, rc, props):
        with lock:
            topic = pending.pop(mid, None)
            if rc.is_failure:
                errors.append(f"{topic}: broker refused: {rc}")
            if not pending:
                done.set()

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
    c.tls_set(ca_certs=str(cfg.ca_file), certfile=str(cfg.cert_file), keyfile=str(cfg.key_file))
    c.on_connect = on_connect
    c.on_publish = on_publish
    c.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
    c.loop_start()
    try:
        if not connected.wait(timeout) or errors:
            raise RuntimeError(errors[0] if errors else f"no connection to {cfg.host}:{cfg.port}")
        with lock:
            for topic, body in messages:
                info = c.publish(topic, body, qos=1, retain=retain)
                pending[info.mid] = topic
            if not pending:
                done.set()
        if not done.wait(timeout):
            raise RuntimeError(f"no PUBACK for {len(pending)} message(s) within {timeout}s")
        if errors:
            raise RuntimeError("; ".join(errors))
    finally:
        c.disconnect()
        c.loop_stop()


__all__ = ["make_envelope", "down_topic", "publish", "bank_payload", "roster_payload",
           "config_payload", "key_id", "public_key_pem"]
