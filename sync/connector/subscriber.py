"""The connector's MQTT side: a persistent MQTT 5 session on a shared subscription, one
worker that stores and forwards each message in arrival order, and a manual PUBACK sent
only after that; stored results and events are then receipted to their device
(sync.connector.receipts). It never acknowledges or receipts before the record is stored."""

from __future__ import annotations

import logging
import queue
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from sync.connector.ingest import Ingest, RejectedMessage, decode_body, parse_topic
from sync.connector.settings import MqttClientSection

log = logging.getLogger(__name__)


def user_properties(msg: mqtt.MQTTMessage) -> dict[str, str]:
    props = getattr(msg, "properties", None)
    return dict(getattr(props, "UserProperty", []) or []) if props else {}


class Subscriber:
    def __init__(self, cfg: MqttClientSection, client_id: str, ingest: Ingest, *,
                 max_record_bytes: int = 4 * 1024 * 1024):
        self.cfg = cfg
        self.ingest = ingest
        self.max_record_bytes = max_record_bytes
        # Shared: connectors in one group split the load. Plain (share_group ""): one
        # connector, but the subscription survives a broker restart while it is offline
        # (mosquitto 2.0 does not persist shared subscriptions; see docs/broker.md).
        self.topic = (f"$share/{cfg.share_group}/kiosk/v1/+/+/up/#" if cfg.share_group
                      else "kiosk/v1/+/+/up/#")
        self._queue: queue.Queue[mqtt.MQTTMessage | None] = queue.Queue()
        self._stop = ingest.stop
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.processed = 0
        # Set by the Connector when it can sign (a [signing] private key): stored results and
        # events are receipted to their device, which otherwise re-sends what a broker crash lost.
        self.receipts = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        c.tls_set(ca_certs=str(cfg.ca_file), certfile=str(cfg.cert_file), keyfile=str(cfg.key_file))
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self.subscribed.set()
        self.client = c
        self._worker = threading.Thread(target=self._work, name="hr-ingest", daemon=True)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        # connect_async + loop_start: paho keeps retrying with backoff while the broker is down.
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                  clean_start=False, properties=props)
        self._worker.start()
        self.client.loop_start()

    def worker_alive(self) -> bool:
        return self._worker.is_alive()

    def network_alive(self) -> bool:
        """paho's network thread (loop_start) is running: without it, no reconnects."""
        thread = getattr(self.client, "_thread", None)
        return thread is not None and thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self.client.disconnect()
        self.client.loop_stop()
        self._worker.join(timeout=10)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connector: %s", reason_code)
            return
        log.info("connected to broker %s:%s (session present: %s)", self.cfg.host, self.cfg.port,
                 flags.session_present)
        # Subscribe on every connect: cheap, and repairs a session the broker lost.
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("disconnected from broker: %s; reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # The network thread only queues; storing and the webhook run in the worker so
        # keepalives continue while the EHR is slow.
        self._queue.put(msg)

    def _work(self) -> None:
        while not self._stop.is_set():
            msg = self._queue.get()
            if msg is None:
                return
            delay = 0.5
            while True:
                try:
                    ok, receipt = self._handle(msg)
                except Exception:
                    # The database failed (disk full, locked for too long): keep the message
                    # unacknowledged and try it again; nothing behind it overtakes it.
                    log.exception("storing message on %s failed; retrying", msg.topic)
                    ok, receipt = False, None
                if ok or self._stop.wait(delay):
                    break
                delay = min(delay * 2, 30.0)
            if ok:
                self.processed += 1
                if msg.qos > 0:
                    self.client.ack(msg.mid, msg.qos)
                if receipt is not None and self.receipts is not None:
                    # A duplicate (new=False) is receipted again: the device re-sent it
                    # because the first receipt, or the first copy, never reached it.
                    self.receipts.add(*receipt)
            # Not ok only when stopping: unacknowledged, the broker redelivers it next time.

    def _handle(self, msg: mqtt.MQTTMessage) -> tuple[bool, tuple[str, str, str] | None]:
        """Store (and forward) one message. Returns (acknowledge it, (tenant, device, id) to
        receipt or None)."""
        size = len(msg.payload)
        try:
            tenant, device, kind = parse_topic(msg.topic)
            props = user_properties(msg)
            payload = decode_body(msg.payload, msg.topic, self.max_record_bytes)
            created = None
            if "created" in props:
                try:
                    created = float(props["created"])
                except ValueError:
                    created = None
            res = self.ingest.accept(kind=kind, tenant=tenant, device_id=device, payload=payload,
                                     via="mqtt", msg_id=props.get("id"), created=created)
        except RejectedMessage as e:
            self.ingest.reject("mqtt", msg.topic, str(e), size)
            return True, None  # acknowledged: a malformed message will never become valid
        return res.ok, ((tenant, device, res.id) if res.ok and res.id else None)
