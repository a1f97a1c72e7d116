"""The device's MQTT 5 link: TLS with the site CA and the device certificate, a persistent
session (clean_start False, session expiry), QoS 1, the retained ``status`` topic with an
offline last will, and the ``down/#`` subscription. It reports PUBACKs and downlink
messages to the daemon through queues; it never decides that a record was delivered.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.client import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86400


@dataclass(frozen=True)
class Ack:
    mid: int
    ok: bool
    reason: str


@dataclass(frozen=True)
class Downlink:
    topic: str
    payload: bytes
    mid: int
    qos: int


class MqttLink:
    """One paho client run by its own network thread (loop_start)."""

    def __init__(self, settings, *, client_id: str | None = None, status_body: dict | None = None,
                 offline_body: dict | None = None, wake: threading.Event | None = None,
                 session_expiry_s: int = SESSION_EXPIRY_S):
        mq = settings.sync.mqtt
        dev = settings.device
        self.host, self.port = mq.host, mq.port
        self.base = f"kiosk/v1/{dev.tenant}/{dev.id}"
        self.acks: queue.Queue[Ack] = queue.Queue()
        self.downlinks: queue.Queue[Downlink] = queue.Queue()
        self.wake = wake or threading.Event()
        self.connected = threading.Event()
        self.down_since: float | None = time.time()  # unreachable until the first CONNACK
        self.last_error = "not connected yet"
        self._status_body = status_body or {}
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id or dev.id, protocol=mqtt.MQTTv5,
                        manual_ack=True)
        if mq.tls:
            c.tls_set(
                ca_certs=str(mq.ca_file) if mq.ca_file else None,
                certfile=str(mq.cert_file) if mq.cert_file else None,
                keyfile=str(mq.key_file) if mq.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if offline_body is not None:
            c.will_set(f"{self.base}/up/status", json.dumps(offline_body), qos=1, retain=True)
        # Reconnect backoff is paho's, capped so a returning broker is found within a minute.
        c.reconnect_delay_set(min_delay=1, max_delay=60)
        # Many QoS 1 messages in flight keep the pipe full; order per session is kept by the
        # outbox (one head row per session in flight), not by this window.
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c
        self._keepalive = mq.keepalive_s
        self._epoch = 0  # bumps on every (re)connect: acks of older connections are unknown
        self._session_expiry_s = session_expiry_s

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive,
                                  clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self, offline_body: dict | None = None) -> None:
        """Graceful stop: publish the offline status (retained) ourselves, then disconnect."""
        if offline_body is not None and self.connected.is_set():
            info = self.client.publish(f"{self.base}/up/status", json.dumps(offline_body), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # --- publishing -----------------------------------------------------------------------

    def publish(self, topic: str, body: bytes, *, msg_id: str | None = None,
                created: float | None = None, retain: bool = False) -> int | None:
        """Queue a QoS 1 publish; returns the mid whose PUBACK will arrive on ``acks``,
        or None if the client is not connected (nothing was sent)."""
        if not self.connected.is_set():
            return None
        props = Properties(PacketTypes.PUBLISH)
        user = []
        if msg_id:
            user.append(("id", msg_id))
        if created is not None:
            user.append(("created", f"{created:.6f}"))
        if user:
            props.UserProperty = user
        info = self.client.publish(topic, body, qos=1, retain=retain, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        return info.mid

    def publish_status(self, body: dict) -> None:
        if self.connected.is_set():
            self.client.publish(f"{self.base}/up/status", json.dumps(body), qos=1, retain=True)

    def ack_downlink(self, d: Downlink) -> None:
        if d.qos > 0:
            self.client.ack(d.mid, d.qos)

    # --- callbacks (network thread) ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused: {reason_code}"
            log.error("MQTT %s:%s refused the connection: %s", self.host, self.port, reason_code)
            return
        self._epoch += 1
        log.info("MQTT connected to %s:%s (session present: %s)", self.host, self.port,
                 flags.session_present)
        client.subscribe(f"{self.base}/down/#", qos=1)
        if self._status_body:
            client.publish(f"{self.base}/up/status", json.dumps(self._status_body), qos=1, retain=True)
        self.down_since = None
        self.last_error = ""
        self.connected.set()
        self.wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            log.warning("MQTT disconnected from %s:%s: %s", self.host, self.port, reason_code)
            self.down_since = time.time()
        self.last_error = str(reason_code)
        self.connected.clear()
        self.wake.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acks.put(Ack(mid, not reason_code.is_failure, str(reason_code)))
        self.wake.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.downlinks.put(Downlink(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
        self.wake.set()
