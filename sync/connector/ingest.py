"""What the connector does with one uplink message, whichever way it came (MQTT or HTTPS):
check it, store it once by id, forward results and events to the EHR. A message is
reported accepted only when it is stored and, if a webhook is set, forwarded."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass

from sync.connector.db import ConnectorDB
from sync.connector.webhook import Webhook

log = logging.getLogger(__name__)

FORWARDED_KINDS = {"result", "event"}
DEVICE_KINDS = {"heartbeat", "status"}
UP_KINDS = FORWARDED_KINDS | DEVICE_KINDS
_TOPIC = re.compile(r"^kiosk/v1/(?P<tenant>[^/+#]+)/(?P<device>[^/+#]+)/up/(?P<kind>[a-z]+)$")
_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
MAX_RECORD_BYTES = 4 * 1024 * 1024


class RejectedMessage(Exception):
    """An uplink message that can never be stored (malformed); it is logged and dropped."""


@dataclass(frozen=True)
class Accepted:
    ok: bool               # stored (and forwarded if a webhook is set): acknowledge
    new: bool = False      # first time this id was seen
    error: str = ""
    id: str | None = None  # the record id of a stored result/event: what a receipt names


def parse_topic(topic: str) -> tuple[str, str, str]:
    m = _TOPIC.match(topic)
    if not m:
        raise RejectedMessage(f"topic {topic!r} is not kiosk/v1/<tenant>/<device>/up/<kind>")
    if m["kind"] not in UP_KINDS:
        raise RejectedMessage(f"topic {topic!r}: unknown kind {m['kind']!r}")
    return m["tenant"], m["device"], m["kind"]


def decode_body(body: bytes, where: str, limit: int = MAX_RECORD_BYTES) -> dict:
    if len(body) > limit:
        raise RejectedMessage(f"{where}: body of {len(body)} bytes is over the {limit}-byte limit")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RejectedMessage(f"{where}: not JSON ({e.__class__.__name__} at {getattr(e, 'pos', '?')})") from e
    if not isinstance(doc, dict):
        raise RejectedMessage(f"{where}: expected a JSON object, got {type(doc).__name__}")
    return doc


class Ingest:
    def __init__(self, db: ConnectorDB, webhook: Webhook | None = None,
                 stop: threading.Event | None = None):
        self.db = db
        self.webhook = webhook
        self.stop = stop or threading.Event()

    def accept(
        self, *, kind: str, tenant: str, device_id: str, payload: dict, via: str,
        msg_id: str | None = None, created: float | None = None, retry: bool = True,
    ) -> Accepted:
        now = time.time()
        where = f"{via} {tenant}/{device_id}/{kind}"
        if kind in DEVICE_KINDS:
            if kind == "heartbeat":
                self.db.update_device(tenant, device_id, heartbeat=payload, at=now)
            else:
                online = payload.get("online")
                if not isinstance(online, bool):
                    raise RejectedMessage(f"{where}: status without an 'online' true/false")
                state = ("online" if online else "offline") + (
                    f" ({payload['state']})" if online and payload.get("state") else "")
                self.db.update_device(tenant, device_id, status=state, at=now)
            return Accepted(True)
        if kind not in FORWARDED_KINDS:
            raise RejectedMessage(f"{where}: unknown kind {kind!r}")
        msg_id = msg_id or payload.get("id")
        if not isinstance(msg_id, str) or not _ID.match(msg_id):
            raise RejectedMessage(f"{where}: missing or malformed record id")
        session_id = payload.get("session_id")
        if session_id is not None and not isinstance(session_id, str):
            raise RejectedMessage(f"{where}: session_id is not a string")
        new, forwarded = self.db.insert_message(
            id=msg_id, kind=kind, tenant=tenant, device_id=device_id, session_id=session_id,
            via=via, created=created, payload=payload, received=now,
        )
        self.db.update_device(tenant, device_id, at=now)
        if self.webhook is None or forwarded is not None:
            return Accepted(True, new=new, id=msg_id)
        body = {"kind": kind, "id": msg_id, "tenant": tenant, "device_id": device_id,
                "session_id": session_id, "received": now, "record": payload}
        attempt = 0
        while True:
            out = self.webhook.post(body, msg_id)
            if out.ok or out.permanent or not retry:
                break
            # Recorded per attempt so `interview-hr devices`/the DB show a stuck EHR at once.
            self.db.mark_forward_failed(msg_id, out.error)
            attempt += 1
            delay = self.webhook.backoff(attempt)
            log.warning("webhook: record %s not accepted (%s); retry %d in %.1fs",
                        msg_id, out.error, attempt, delay)
            if self.stop.wait(delay):
                return Accepted(False, new=new, error=out.error)
        if out.ok:
            self.db.mark_forwarded(msg_id, time.time())
            return Accepted(True, new=new, id=msg_id)
        if out.permanent:
            # The EHR refuses this body for good: keep it in our DB for HR to look at and
            # acknowledge, so one bad record does not block everything behind it.
            log.error("webhook refused record %s for good (%s); kept in the connector DB",
                      msg_id, out.error)
            self.db.mark_forward_failed(msg_id, out.error, permanent=True)
            return Accepted(True, new=new, error=out.error, id=msg_id)
        self.db.mark_forward_failed(msg_id, out.error)
        return Accepted(False, new=new, error=out.error)

    def reject(self, via: str, topic: str, reason: str, size: int) -> None:
        log.warning("rejected %s message on %s: %s", via, topic, reason)
        self.db.add_reject(via, topic, reason, size)

    def alarm(self, device_id: str, tenant: str, alarm: str | None, detail: dict) -> None:
        """Forward a device alarm (or its clearing) to the EHR, best effort."""
        if self.webhook is None:
            return
        ident = f"alarm-{device_id}-{int(time.time())}"
        body = {"kind": "alarm", "id": ident, "tenant": tenant, "device_id": device_id,
                "alarm": alarm, "detail": detail, "received": time.time()}
        out = self.webhook.post(body, ident)
        if not out.ok:
            log.warning("alarm for %s not forwarded: %s", device_id, out.error)
