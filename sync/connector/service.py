"""The running connector (``interview-hr serve``): the MQTT subscriber, the HTTPS endpoint
and the alarm watch around one database. It never starts half-configured: a missing
certificate or key file fails at start with the file named."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sync.connector.alarms import AlarmWatch
from sync.connector.db import ConnectorDB, load_or_create_db_key
from sync.connector.endpoint import Endpoint, clip_key
from sync.connector.ingest import Ingest
from sync.connector.settings import ConnectorSettings
from sync.connector.subscriber import Subscriber
from sync.connector.webhook import Webhook

log = logging.getLogger(__name__)


def open_db(settings: ConnectorSettings) -> tuple[ConnectorDB, bytes]:
    key = load_or_create_db_key(Path(settings.connector.data_dir) / "keys" / "db.key")
    url = settings.db_url
    return ConnectorDB(url, key if url.startswith("sqlite") else None), key


class Connector:
    def __init__(self, settings: ConnectorSettings, *, client_id: str | None = None):
        self.settings = settings
        for section in (settings.mqtt, settings.https):
            if section is None:
                continue
            for name in ("ca_file", "cert_file", "key_file"):
                p = getattr(section, name)
                if not Path(p).exists():
                    raise FileNotFoundError(f"{name} {p}: not found")
        self.stop_event = threading.Event()
        self.db, key = open_db(settings)
        wh = settings.webhook
        webhook = None
        if wh.url:
            webhook = Webhook.from_files(wh.url, wh.secret_file, timeout_s=wh.timeout_s,
                                         max_backoff_s=wh.max_backoff_s, ca_file=wh.ca_file)
        self.ingest = Ingest(self.db, webhook, self.stop_event)
        self.subscriber = None
        if settings.mqtt is not None:
            self.subscriber = Subscriber(settings.mqtt, client_id or settings.connector.name,
                                         self.ingest)
        self.endpoint = None
        if settings.https is not None:
            self.endpoint = Endpoint(settings.https, self.ingest,
                                     Path(settings.connector.data_dir) / "clips", clip_key(key))
        self.alarms = AlarmWatch(self.ingest, settings.alarms, time.time)
        self.relay = None
        self._command_version = 0
        self.receipts = None
        if self.subscriber is not None:
            if settings.signing.private_key_file is None:
                log.warning("[signing] private_key_file is not set: no delivery receipts are sent, "
                            "so devices count a record as delivered on the broker's ack alone "
                            "(a broker crash can lose it)")
            else:
                from sync.connector.receipts import ReceiptSender
                from sync.signing import load_private_key

                client = self.subscriber.client
                self.receipts = ReceiptSender(
                    load_private_key(settings.signing.private_key_file),
                    lambda topic, body: client.publish(topic, body, qos=1))
                self.subscriber.receipts = self.receipts

    def start(self) -> Connector:
        if self.endpoint is not None:
            self.endpoint.start()
            log.info("HTTPS endpoint on %s:%d", self.settings.https.listen_host, self.endpoint.port)
        if self.subscriber is not None:
            self.subscriber.start()
        if self.receipts is not None:
            self.receipts.start()
        self.alarms.start()
        if self.settings.relay is not None:
            from sync.wecom.callback import relay_server

            r = self.settings.relay
            self.relay = relay_server(self.publish_command, redirect_uri=r.redirect_uri,
                                      host=r.listen_host, port=r.port, certfile=r.cert_file,
                                      keyfile=r.key_file).start()
            log.info("WeCom sign-in relay on %s", self.relay.url)
        return self

    def publish_command(self, device_id: str, command: dict) -> None:
        """Sign ``command`` and publish it on the device's ``down/command`` (QoS 1, not
        retained) over the connector's own MQTT session."""
        from sync.connector.publish import down_topic, make_envelope
        from sync.signing import load_private_key

        if self.subscriber is None or self.settings.signing.private_key_file is None:
            raise RuntimeError("publishing a command needs [mqtt] and [signing] private_key_file")
        key = load_private_key(self.settings.signing.private_key_file)
        # Versions must grow per device; milliseconds, bumped if two land in the same one.
        self._command_version = max(self._command_version + 1, int(time.time() * 1000))
        tenant = self.settings.signing.tenant
        env = make_envelope(key, kind="command", tenant=tenant, version=self._command_version,
                            payload=command, device_id=device_id, validity_s=600)
        self.subscriber.client.publish(down_topic(tenant, device_id, "command"),
                                       env.model_dump_json(), qos=1)

    def stop(self) -> None:
        self.stop_event.set()
        if self.relay is not None:
            self.relay.stop()
        if self.receipts is not None:
            # Before the subscriber's client goes: what it stored gets its receipt queued.
            self.receipts.stop()
        if self.subscriber is not None:
            self.subscriber.stop()
        if self.endpoint is not None:
            self.endpoint.stop()
        if self.ingest.webhook is not None:
            self.ingest.webhook.close()
        self.db.close()

    def __enter__(self) -> Connector:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
