"""WeCom (企业微信) for the sync daemon: the sign-in callback server and the HR notifier.

``start_wecom`` is the one hook the daemon calls. The app secret comes from the device's
SecretBox (``kiosk-provision wecom set-secret``); it is never in config, argv or logs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SECRET_NAME = "wecom_secret"


def load_secret(settings: Any) -> str:
    """The WeCom app secret, opened from the SecretBox in the key directory."""
    from device.keys import SecretBox, load_master_key

    key_dir = settings.paths.key_dir
    return SecretBox(key_dir, load_master_key(key_dir)).open(SECRET_NAME).decode("utf-8")


def store_secret(settings: Any, secret: str) -> None:
    """Seal the WeCom app secret (for the provisioning CLI and tests)."""
    from device.keys import SecretBox, load_master_key

    key_dir = settings.paths.key_dir
    SecretBox(key_dir, load_master_key(key_dir)).seal(SECRET_NAME, secret.strip().encode("utf-8"))


def make_audit(settings: Any, store: Any) -> Any:
    from device.audit import AuditLog
    from device.keys import derive_key, load_master_key

    return AuditLog(store, derive_key(load_master_key(settings.paths.key_dir), "audit"))


def start_wecom(
    settings: Any,
    store: Any,
    stop_event: threading.Event,
    *,
    audit: Any | None = None,
    client: Any | None = None,
    notify_interval_s: float = 1.0,
    register_command: Callable[[str, Callable[[dict], Any]], None] | None = None,
) -> list[threading.Thread]:
    """Start the notifier and (unless relay mode) the callback server; returns their threads.

    ``register_command(type, handler)``, if given, is how the daemon's downlink dispatcher
    learns to pass verified ``down/command`` bodies of type ``wecom_signin`` (relay mode)
    to the same checks the callback runs. Returns [] when ``settings.wecom`` is not configured. A missing secret is logged and
    WeCom stays off; the rest of the daemon keeps running.
    """
    if settings.wecom is None:
        return []
    from sync.wecom.callback import (
        RELAY_COMMAND,
        SignInProcessor,
        handle_relay_command,
        server_for_device,
    )
    from sync.wecom.client import client_from_settings
    from sync.wecom.notifier import Notifier

    if client is None:
        try:
            secret = load_secret(settings)
        except (OSError, ValueError) as e:
            log.error("WeCom is configured but its secret is not stored (%s): run `kiosk-provision wecom set-secret`", type(e).__name__)
            return []
        client = client_from_settings(settings.wecom, secret)
    audit = audit if audit is not None else make_audit(settings, store)

    threads: list[threading.Thread] = []
    notifier = Notifier(store, settings, client)
    t = threading.Thread(target=notifier.run, args=(stop_event, notify_interval_s), name="wecom-notifier", daemon=True)
    t.start()
    threads.append(t)

    processor = SignInProcessor(store, settings, client, audit)
    if register_command is not None:
        register_command(RELAY_COMMAND, lambda cmd: handle_relay_command(processor, cmd))
    if getattr(settings.wecom, "relay", False):
        log.info("WeCom relay mode: sign-in callbacks arrive over the downlink")
        return threads
    w = settings.wecom
    if w.redirect_uri.startswith("https://") and not (w.callback_cert_file and w.callback_key_file):
        log.error("wecom.redirect_uri is https but wecom.callback_cert_file/callback_key_file are not set: sign-in callback not started")
        return threads
    if w.redirect_uri.startswith("http://"):
        log.warning("WeCom sign-in callback on plain HTTP (%s): for demos only", w.redirect_uri)
    try:
        server = server_for_device(processor, settings.wecom).start()
    except OSError as e:
        log.error("WeCom sign-in callback cannot listen on %s:%s: %s", settings.wecom.callback_host, settings.wecom.callback_port, e)
        return threads

    def _serve_until_stopped() -> None:
        stop_event.wait()
        server.stop()

    w = threading.Thread(target=_serve_until_stopped, name="wecom-callback", daemon=True)
    w.start()
    threads.append(w)
    return threads
