"""Relay mode on the HR side: ``interview-hr wecom-relay`` serves the WeCom redirect URI where
phones can reach it and forwards code+state to the device over the signed downlink.

The device runs the same checks as its own callback would (sync/wecom/callback.py). This
module never logs codes or states, and never retains a relayed command on the broker.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sync.wecom.callback import CallbackServer, relay_server

log = logging.getLogger(__name__)

COMMAND_VALIDITY_S = 300  # a relayed sign-in is useless after the QR state's lifetime anyway


def command_publisher(settings: Any, key: Any, *, tenant: str | None = None) -> Callable[[str, dict], None]:
    """``publish(device_id, command)``: sign a ``down/command`` envelope and publish it (QoS 1, not retained)."""
    from sync.connector.publish import down_topic, make_envelope, publish

    tenant = tenant or settings.signing.tenant
    lock = threading.Lock()
    last = [0]

    def send(device_id: str, command: dict) -> None:
        with lock:
            # Commands must have increasing versions per device; ms clock, never repeating.
            version = max(int(time.time() * 1000), last[0] + 1)
            last[0] = version
        env = make_envelope(
            key, kind="command", tenant=tenant, version=version, payload=command,
            device_id=device_id, validity_s=COMMAND_VALIDITY_S,
        )
        publish(
            settings.mqtt,
            f"{settings.connector.name}-wecom-relay-{os.getpid()}",
            [(down_topic(tenant, device_id, "command"), env.model_dump_json().encode())],
            retain=False,
        )
        log.info("relayed a WeCom sign-in to device %s", device_id)

    return send


def add_relay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``interview-hr wecom-relay`` on the connector CLI's subparsers."""
    p = subparsers.add_parser(
        "wecom-relay",
        help="serve the WeCom redirect URI and relay sign-ins to devices over the downlink",
        description=run_relay.__doc__,
    )
    p.add_argument("--redirect-uri", required=True, help="the redirect URI registered in WeCom (its path is served)")
    p.add_argument("--listen", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=8443, help="port to listen on")
    p.add_argument("--cert", type=Path, help="TLS certificate (PEM chain) for the redirect URI's host")
    p.add_argument("--tls-key", type=Path, help="TLS private key")
    p.add_argument("--key", type=Path, help="Ed25519 signing key (default [signing] private_key_file)")
    p.add_argument("--tenant", help="tenant (default [signing] tenant)")
    p.set_defaults(func=run_relay)
    return p


def run_relay(args: argparse.Namespace) -> int:
    """Serve the WeCom redirect URI on the HR side and forward each sign-in (code, state) to
    the device named in the state, as a signed command. For sites where phones cannot reach
    the terminals; set ``relay = true`` in the devices' [wecom] section."""
    from sync.connector.__main__ import _settings, _signing_key

    settings = _settings(args)
    if settings.mqtt is None:
        print("interview-hr wecom-relay: [mqtt] is not configured", file=sys.stderr)
        return 2
    if args.redirect_uri.startswith("https://") and not args.cert:
        print("interview-hr wecom-relay: an https redirect URI needs --cert and --tls-key", file=sys.stderr)
        return 2
    key = _signing_key(settings, args.key)
    server: CallbackServer = relay_server(
        command_publisher(settings, key, tenant=args.tenant),
        redirect_uri=args.redirect_uri, host=args.listen, port=args.port,
        certfile=args.cert, keyfile=args.tls_key,
    ).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"relaying WeCom sign-ins from {server.url}", flush=True)
    stop.wait()
    server.stop()
    return 0
