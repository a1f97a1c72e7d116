"""The running connector (``interview-hr serve``): the MQTT subscriber, the HTTPS endpoint
and the alarm watch around one database, and what systemd is told about them (ready,
status, watchdog). It never starts half-configured: a missing or unreadable certificate or
key file fails at start with the file and key named. Its status lines never carry
candidate data, only counts."""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

from device import sdnotify
from sync.connector.alarms import AlarmWatch
from sync.connector.db import ConnectorDB, ConnectorDbError, load_or_create_db_key
from sync.connector.endpoint import Endpoint, clip_key
from sync.connector.ingest import Ingest
from sync.connector.settings import ConnectorConfigError, ConnectorSettings
from sync.connector.subscriber import Subscriber
from sync.connector.webhook import Webhook

log = logging.getLogger(__name__)

# How long `serve` waits for the broker before telling systemd it is ready anyway: the
# HTTPS endpoint (the devices' fallback) already serves and paho keeps retrying, so a
# broker that is down must neither hang `systemctl start` nor get the connector killed and
# restarted over and over (the unit's TimeoutStartSec is longer than this).
READY_WAIT_S = 60.0
# Longest pause between two rounds of the service loop (status, health, watchdog ping).
TICK_S = 5.0


def open_db(settings: ConnectorSettings) -> tuple[ConnectorDB, bytes]:
    key = load_or_create_db_key(Path(settings.connector.data_dir) / "keys" / "db.key")
    url = settings.db_url
    return ConnectorDB(url, key if url.startswith("sqlite") else None), key


def _check_readable(section: str, name: str, path: Path | None) -> None:
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ConnectorConfigError(f"[{section}] {name} {path}: not found") from None
    except OSError as e:
        # Typically a key left 0600 root while the service runs as its own user.
        user = os.environ.get("USER") or str(os.getuid())
        raise ConnectorConfigError(
            f"[{section}] {name} {path}: cannot be read by user {user} ({e.strerror})") from None


def check_files(settings: ConnectorSettings) -> None:
    """Every certificate, key and secret file the running connector needs exists and is
    readable; raises ConnectorConfigError naming section, key and file."""
    for section, cfg in (("mqtt", settings.mqtt), ("https", settings.https)):
        if cfg is not None:
            for name in ("ca_file", "cert_file", "key_file"):
                _check_readable(section, name, getattr(cfg, name))
    if settings.webhook.url:
        if settings.webhook.secret_file is None:
            raise ConnectorConfigError("[webhook] url is set but secret_file is not")
        _check_readable("webhook", "secret_file", settings.webhook.secret_file)
        _check_readable("webhook", "ca_file", settings.webhook.ca_file)
    if settings.mqtt is not None:
        _check_readable("signing", "private_key_file", settings.signing.private_key_file)
    if settings.relay is not None:
        _check_readable("relay", "cert_file", settings.relay.cert_file)
        _check_readable("relay", "key_file", settings.relay.key_file)


class Connector:
    def __init__(self, settings: ConnectorSettings, *, client_id: str | None = None):
        self.settings = settings
        check_files(settings)
        self.stop_event = threading.Event()
        try:
            self.db, key = open_db(settings)
        except ConnectorDbError as e:
            raise ConnectorConfigError(f"[connector] database: {e}") from e
        wh = settings.webhook
        webhook = None
        if wh.url:
            webhook = Webhook.from_files(wh.url, wh.secret_file, timeout_s=wh.timeout_s,
                                         max_backoff_s=wh.max_backoff_s, ca_file=wh.ca_file)
        self.ingest = Ingest(self.db, webhook, self.stop_event)
        self.subscriber = None
        if settings.mqtt is not None:
            m = settings.mqtt
            try:
                self.subscriber = Subscriber(m, client_id or settings.connector.name, self.ingest)
            except ssl.SSLError as e:
                raise ConnectorConfigError(
                    f"[mqtt] cert_file {m.cert_file} / key_file {m.key_file} / ca_file "
                    f"{m.ca_file}: not a usable certificate, key or CA ({e.reason or e})") from e
        self.endpoint = None
        if settings.https is not None:
            h = settings.https
            try:
                self.endpoint = Endpoint(h, self.ingest,
                                         Path(settings.connector.data_dir) / "clips", clip_key(key))
            except ssl.SSLError as e:
                raise ConnectorConfigError(
                    f"[https] cert_file {h.cert_file} / key_file {h.key_file} / ca_file "
                    f"{h.ca_file}: not a usable certificate, key or CA ({e.reason or e})") from e
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
                from sync.signing import KeyFileError, load_private_key

                try:
                    signing_key = load_private_key(settings.signing.private_key_file)
                except KeyFileError as e:
                    raise ConnectorConfigError(f"[signing] private_key_file {e}") from e
                client = self.subscriber.client
                self.receipts = ReceiptSender(
                    signing_key,
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

    # --- running as a service -------------------------------------------------------------

    def problem(self) -> str | None:
        """Why the connector is not working as a whole, or None. A dead worker thread or an
        alarm loop that stopped coming round cannot heal by itself: the service loop then
        stops its watchdog pings and systemd restarts the connector."""
        if self.subscriber is not None:
            if not self.subscriber.worker_alive():
                return "MQTT worker thread ended"
            if not self.subscriber.network_alive():
                return "MQTT network thread ended"
        if self.endpoint is not None and not self.endpoint.alive():
            return "HTTPS server thread ended"
        if not self.alarms.alive():
            return "alarm thread ended"
        # Generous: one alarm round forwards each changed alarm to the EHR (10 s timeout each).
        limit = 3 * self.settings.alarms.check_interval_s + 300
        stuck = time.monotonic() - self.alarms.beat
        if stuck > limit:
            return f"alarm check stuck for {stuck:.0f}s"
        return None

    def status_line(self) -> str:
        """One line for `systemctl status`: links, counts of terminals and waiting records.
        Counts only, never a candidate's data."""
        parts = []
        if self.subscriber is not None:
            m = self.settings.mqtt
            if self.subscriber.subscribed.is_set():
                parts.append(f"connected to broker {m.host}:{m.port}")
            else:
                parts.append(f"waiting for broker {m.host}:{m.port}")
        if self.endpoint is not None:
            parts.append(f"HTTPS on port {self.endpoint.port}")
        try:
            devices = self.db.devices()
            alarms = sum(1 for d in devices if d["alarm"])
            parts.append(f"{len(devices)} terminal{'s' if len(devices) != 1 else ''}"
                         + (f" ({alarms} in alarm)" if alarms else ""))
            if self.ingest.webhook is not None:
                n = self.db.count_unforwarded()
                parts.append(f"{n} record{'s' if n != 1 else ''} waiting for the EHR")
            else:
                parts.append("no EHR webhook: storing only")
        except Exception as e:  # a busy or broken DB must not end the service loop
            log.warning("status: database not readable: %s", e)
            parts.append("database not readable (see the log)")
        return ", ".join(parts)

    def run(self, stop: threading.Event, *, ready_wait_s: float = READY_WAIT_S,
            on_ready: Callable[[], None] | None = None) -> None:
        """Serve until ``stop`` is set (the connector must be started). Tells systemd
        READY=1 once the HTTPS endpoint listens and the MQTT subscription is in place (or
        after ``ready_wait_s`` without the broker, saying so), keeps STATUS= current and
        pings the watchdog while `problem()` finds nothing wrong."""
        deadline = time.monotonic() + ready_wait_s
        last_status = None
        while self.subscriber is not None and not self.subscriber.subscribed.is_set():
            status = self.status_line()
            if status != last_status:
                sdnotify.notify(f"STATUS={status}")
                last_status = status
            if time.monotonic() >= deadline:
                log.warning("no MQTT subscription after %.0fs (broker %s:%s unreachable or "
                            "refusing this connector); serving HTTPS and retrying the broker",
                            ready_wait_s, self.settings.mqtt.host, self.settings.mqtt.port)
                break
            self.subscriber.subscribed.wait(0.5)
            if stop.is_set():
                return
        last_status = self.status_line()
        sdnotify.ready(last_status)
        if on_ready is not None:
            on_ready()
        wd = sdnotify.watchdog_interval()
        tick = min(wd, TICK_S) if wd else TICK_S
        reported = None
        while not stop.wait(tick):
            problem = self.problem()
            if problem is not None:
                if problem != reported:
                    log.error("connector unhealthy: %s; no more watchdog pings, so systemd "
                              "restarts it", problem)
                    reported = problem
                status = f"unhealthy: {problem}"
            else:
                status = self.status_line()
                if wd:
                    sdnotify.watchdog()
            if status != last_status:
                sdnotify.notify(f"STATUS={status}")
                last_status = status
        sdnotify.notify("STOPPING=1\nSTATUS=stopping: finishing or handing back in-flight records")

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
