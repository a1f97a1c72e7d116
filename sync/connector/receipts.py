"""Delivery receipts from the connector to the devices: the ids of results and events this
connector has stored (and forwarded to the EHR when a webhook is set), batched per device,
signed like every downlink message and published QoS 1 on ``down/receipt``. A device re-sends
what the broker acknowledged but no receipt covered, so a broker crash cannot lose a record.
It never receipts an id before the record is committed in the connector's database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.connector.publish import down_topic, make_envelope

log = logging.getLogger(__name__)

FLUSH_S = 1.0          # a receipt waits at most this long for company
MAX_IDS = 500          # ids per receipt (the device accepts up to 1000); ~20 KB signed
VALIDITY_S = 86400.0   # a receipt stuck in the broker for a day is not worth applying


class ReceiptSender:
    """Collects (tenant, device, id) as records are stored and publishes them in batches
    through ``publish(topic, body)`` (the subscriber's own MQTT session)."""

    def __init__(self, key: Ed25519PrivateKey, publish: Callable[[str, str], None], *,
                 flush_s: float = FLUSH_S, max_ids: int = MAX_IDS,
                 clock: Callable[[], float] = time.time):
        self.key = key
        self.publish = publish
        self.flush_s = flush_s
        self.max_ids = max_ids
        self.clock = clock
        self.sent = 0
        self._pending: dict[tuple[str, str], list[str]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._version = 0
        self._thread = threading.Thread(target=self._run, name="hr-receipts", daemon=True)

    def start(self) -> ReceiptSender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()  # what was stored before the stop: the device would re-send it otherwise

    def add(self, tenant: str, device_id: str, msg_id: str) -> None:
        """Call only after the record with ``msg_id`` is committed (and forwarded)."""
        with self._lock:
            ids = self._pending.setdefault((tenant, device_id), [])
            ids.append(msg_id)
            full = len(ids) >= self.max_ids
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Publish everything collected. Returns the receipts (messages) published."""
        with self._lock:
            pending, self._pending = self._pending, {}
        n = 0
        for (tenant, device_id), ids in pending.items():
            for i in range(0, len(ids), self.max_ids):
                chunk = ids[i:i + self.max_ids]
                # Versions only have to be unique-ish: the device applies receipts in any order.
                self._version = max(self._version + 1, int(self.clock() * 1000))
                env = make_envelope(self.key, kind="receipt", tenant=tenant, version=self._version,
                                    payload={"ids": chunk}, device_id=device_id,
                                    validity_s=VALIDITY_S, now=self.clock())
                try:
                    self.publish(down_topic(tenant, device_id, "receipt"), env.model_dump_json())
                except Exception as e:
                    # Not fatal: the device re-sends after its receipt timeout and we receipt
                    # the duplicate then.
                    log.warning("receipt for %d record(s) of %s not published: %s",
                                len(chunk), device_id, e)
                    continue
                n += 1
                self.sent += len(chunk)
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("publishing receipts failed; the devices will re-send")
