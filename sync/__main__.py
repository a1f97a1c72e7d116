"""``interview-sync``: the device's sync daemon (outbox → MQTT/HTTPS, downlink cache,
heartbeats, WeCom). ``--once`` delivers what is due and prints a summary (for technicians).
It never prints candidate data or secrets."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from device.config import ConfigError, load_settings, resolve_config_path


def main(argv: list[str] | None = None) -> int:
    from device.version import software_version

    p = argparse.ArgumentParser(
        prog="interview-sync",
        description="Deliver interview results to the HR side over MQTT (TLS) or HTTPS, and "
        "keep question banks, rosters and config fresh from signed downlink messages.",
    )
    p.add_argument("--config", help="config file (default $INTERVIEW_KIOSK_CONFIG or /etc/interview-kiosk/config.toml)")
    p.add_argument("--once", action="store_true", help="deliver what is due, print a summary, exit")
    p.add_argument("--timeout", type=float, default=30.0, help="with --once: give up after this many seconds")
    p.add_argument("--version", action="version", version=f"interview-sync {software_version()}")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(resolve_config_path(args.config))
    except ConfigError as e:
        print(f"interview-sync: {e}", file=sys.stderr)
        return 2
    if settings.sync is None:
        print("interview-sync: the config has no [sync] section; nothing to do", file=sys.stderr)
        return 2
    from device.keys import DeviceKeyError
    from device.store import Store, StoreError

    try:
        store = Store.open_from_settings(settings)
    except (StoreError, DeviceKeyError) as e:
        print(f"interview-sync: {e}", file=sys.stderr)
        return 2
    from sync.daemon import SyncDaemon

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
