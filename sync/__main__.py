"""``interview-sync``: the device's sync daemon (outbox → MQTT/HTTPS, downlink cache,
heartbeats, WeCom). ``--once`` delivers what is due and prints a summary (for technicians).
It never prints candidate data or secrets."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from sync.daemon import SyncDaemon, daemon_command_line


def _arguments(p: argparse.ArgumentParser) -> None:
    from device.version import software_version

    p.add_argument("--once", action="store_true", help="deliver what is due, print a summary, exit")
    p.add_argument("--timeout", type=float, default=30.0, help="with --once: give up after this many seconds")
    p.add_argument("--version", action="version", version=f"interview-sync {software_version()}")


def main(argv: list[str] | None = None) -> int:
    args, settings = daemon_command_line(
        argv, prog="interview-sync", section="sync", add_arguments=_arguments,
        missing_hint="; nothing to do",
        description="Deliver interview results to the HR side over MQTT (TLS) or HTTPS, and "
        "keep question banks, rosters and config fresh from signed downlink messages.")
    if settings is None:
        return 2
    from device.keys import DeviceKeyError
    from device.store import Store, StoreError

    try:
        store = Store.open_from_settings(settings)
    except (StoreError, DeviceKeyError) as e:
        print(f"interview-sync: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    daemon = SyncDaemon(settings, store, stop=stop, once=args.once)
    try:
        if args.once:
            summary = daemon.run_once(timeout=args.timeout)
            print(json.dumps(summary, ensure_ascii=False))
            return 0 if summary["outbox_depth"] == 0 else 1
        signal.signal(signal.SIGTERM, lambda *_: (stop.set(), daemon.wake.set()))
        signal.signal(signal.SIGINT, lambda *_: (stop.set(), daemon.wake.set()))
        daemon.run()
        return 0
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
