"""Tell systemd we are ready and alive (sd_notify protocol) over $NOTIFY_SOCKET.

A no-op outside systemd. Must never raise into the caller: a failing notification should
not take down the kiosk or the sync daemon, the watchdog will notice anyway.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _socket_address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    if addr.startswith("@"):
        # Abstract namespace socket: the leading "@" stands for a NUL byte.
        return "\0" + addr[1:]
    return addr


def notify(state: str) -> bool:
    """Send one notification (e.g. "READY=1", "WATCHDOG=1", "STATUS=syncing").

    Several assignments may be joined with newlines. Returns True when the message was
    sent, False when not running under systemd or the send failed.
    """
    addr = _socket_address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode("utf-8"))
        return True
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False


def ready(status: str | None = None) -> bool:
    """READY=1, with an optional human-readable STATUS shown by `systemctl status`."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def watchdog() -> bool:
    """One watchdog keep-alive ping."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between pings the caller should keep to: half of $WATCHDOG_USEC.

    None when no watchdog is configured, or when $WATCHDOG_PID names another process
    (systemd meant the watchdog for someone else, e.g. a parent shell).
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2
