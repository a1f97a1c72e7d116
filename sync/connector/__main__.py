"""``interview-hr``: the HR side's command line — run the connector, publish signed
question banks / rosters / config / commands, list devices, enrol devices. Subcommands
from other modules (``invite``) register themselves through EXTENSIONS. Secrets are never
printed."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from device.version import software_version
from sync.connector.settings import ConnectorConfigError, ConnectorSettings, load_connector_settings

CONFIG_ENV = "INTERVIEW_HR_CONFIG"
DEFAULT_CONFIG = Path("/etc/interview-hr/config.toml")
# (module, function) pairs: function(subparsers) adds a subcommand whose args carry `func`.
EXTENSIONS = [("sync.wecom.invite", "add_invite_parser"), ("sync.wecom.relay", "add_relay_parser"),
              ("sync.connector.clips", "add_clip_parsers")]

log = logging.getLogger("interview-hr")


def _settings(args) -> ConnectorSettings:
    path = Path(args.config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    return load_connector_settings(path)


def _signing_key(settings: ConnectorSettings, override: Path | None = None):
    from sync.signing import load_private_key

    path = override or settings.signing.private_key_file
    if path is None:
        raise SystemExit("interview-hr: no signing key: set [signing] private_key_file or pass --key")
    return load_private_key(path)


# --- serve ------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    """Run the connector until SIGTERM/SIGINT; exit 0 then. Under systemd (Type=notify) it
    reports READY=1 only once it serves, keeps STATUS= current and pings the watchdog.
    An unusable config (missing or unreadable file, bad certificate) exits 2."""
    from sync.connector.service import Connector

    settings = _settings(args)
    if settings.mqtt is None and settings.https is None:
        print("interview-hr serve: neither [mqtt] nor [https] is configured", file=sys.stderr)
        return 2
    stop = threading.Event()
    # Set before the Connector starts: a SIGTERM during start-up still ends in a clean stop.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with Connector(settings) as conn:
        where = []
        if conn.endpoint is not None:
            where.append(f"HTTPS on port {conn.endpoint.port}")
        if settings.mqtt is not None:
            where.append(f"MQTT {settings.mqtt.host}:{settings.mqtt.port} group {settings.mqtt.share_group}")
        # The stop path (Connector.stop): an MQTT message whose EHR delivery is still being
        # retried is left unacknowledged, so the broker hands it out again on the next start.
        conn.run(stop, on_ready=lambda: print("interview-hr: serving (" + ", ".join(where) + ")",
                                              flush=True))
    log.info("stopped")
    return 0


# --- publishing -------------------------------------------------------------------------

def _targets(settings: ConnectorSettings, args) -> list[str]:
    if args.device:
        return list(args.device)
    from sync.connector.service import open_db

    db, _ = open_db(settings)
    devices = [d["device_id"] for d in db.devices() if d["tenant"] == (args.tenant or settings.signing.tenant)]
    db.close()
    if not devices:
        raise SystemExit("interview-hr: no known devices for this tenant; name them with --device")
    return devices


def _publish(args, kind: str, version: int, payload: dict) -> int:
    from sync.connector.publish import down_topic, make_envelope, publish

    settings = _settings(args)
    if settings.mqtt is None:
        print("interview-hr: [mqtt] is not configured", file=sys.stderr)
        return 2
    key = _signing_key(settings, args.key)
    tenant = args.tenant or settings.signing.tenant
    msgs = []
    for dev in _targets(settings, args):
        env = make_envelope(key, kind=kind, tenant=tenant, version=version, payload=payload,
                            device_id=dev, validity_s=settings.signing.validity_days * 86400)
        msgs.append((down_topic(tenant, dev, kind), env.model_dump_json().encode()))
    # Retained: a device that connects later (or was re-imaged) still gets the latest.
    publish(settings.mqtt, f"{settings.connector.name}-publish-{os.getpid()}", msgs,
            retain=kind != "command")
    print(f"published {kind} version {version} to {len(msgs)} device(s)")
    return 0


def cmd_publish_bank(args) -> int:
    from device.questions import BankError
    from sync.connector.publish import bank_payload

    try:
        version, payload = bank_payload(args.file)
    except BankError as e:
        print(f"interview-hr publish-bank: {e}", file=sys.stderr)
        return 2
    return _publish(args, "questionbank", version, payload)


def cmd_publish_roster(args) -> int:
    from device.roster import RosterError
    from sync.connector.publish import roster_payload

    try:
        version, payload = roster_payload(args.file)
    except RosterError as e:
        print(f"interview-hr publish-roster: {args.file}: {e}", file=sys.stderr)
        return 2
    return _publish(args, "roster", version, payload)


def cmd_publish_config(args) -> int:
    from sync.connector.publish import config_payload

    try:
        payload = config_payload(args.file)
    except (ValueError, OSError) as e:
        print(f"interview-hr publish-config: {args.file}: {e}", file=sys.stderr)
        return 2
    return _publish(args, "config", args.version or int(time.time()), payload)


def cmd_command(args) -> int:
    payload = {"type": args.type, **(json.loads(args.json) if args.json else {})}
    return _publish(args, "command", int(time.time() * 1000), payload)


def cmd_signing_key(args) -> int:
    from sync.signing import generate_signing_key

    pub = Path(args.out).with_suffix(".pub")
    generate_signing_key(args.out, pub)
    print(f"wrote {args.out} (0600) and {pub}; give devices the .pub (it is in enrolment bundles)")
    return 0


# --- devices ----------------------------------------------------------------------------

def _ago(t: float | None, now: float) -> str:
    if t is None:
        return "never"
    s = now - t
    return f"{s:.0f}s ago" if s < 120 else f"{s / 60:.0f}m ago" if s < 7200 else f"{s / 3600:.1f}h ago"


def cmd_devices(args) -> int:
    from sync.connector.alarms import check_devices
    from sync.connector.ingest import Ingest
    from sync.connector.service import open_db

    settings = _settings(args)
    db, _ = open_db(settings)
    now = time.time()
    check_devices(Ingest(db), settings.alarms, now)
    devices = db.devices()
    db.close()
    if args.json:
        print(json.dumps(devices, ensure_ascii=False, indent=1))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{len(devices)} device(s)")
    t.add_column("tenant", no_wrap=True)
    t.add_column("device", no_wrap=True)
    for col in ("status", "heartbeat", "outbox", "oldest undelivered", "clips",
                "bank/roster", "rejected downlink", "alarm"):
        t.add_column(col)
    for d in devices:
        hb = d["heartbeat"] or {}
        age = hb.get("oldest_undelivered_age_s")
        rej = hb.get("downlink_rejected") or {}
        t.add_row(
            d["tenant"], d["device_id"], f"{d['status'] or '?'} ({_ago(d['status_at'], now)})",
            _ago(d["heartbeat_at"], now), str(hb.get("outbox_depth", "?"))
            # Handed to the broker but never receipted by us: a lost receipt or a broker crash.
            + (f" [yellow]+{hb['unreceipted']} unreceipted[/yellow]" if hb.get("unreceipted") else ""),
            "-" if age is None else f"{age / 60:.0f} min",
            # Clips waiting, and whether the device has the HR clip key (without it they wait).
            f"{hb.get('clips_pending', 0)}" + (" [yellow]no clip key[/yellow]" if hb.get("clip_key") is False else "")
            + (f" [red]{hb['clips_failed']} failed[/red]" if hb.get("clips_failed") else ""),
            f"{hb.get('question_bank_version', '-')}/{hb.get('roster_version', '-')}",
            ", ".join(f"{k}={v}" for k, v in rej.items()) or "0",
            f"[red]{d['alarm']}[/red]" if d["alarm"] else "ok",
        )
    # Piped into a file or mail, nothing may be cut off; on a terminal, rich fits the width.
    (Console() if sys.stdout.isatty() else Console(width=200)).print(t)
    return 1 if any(d["alarm"] for d in devices) else 0


# --- enrol ------------------------------------------------------------------------------

def _clip_public_pem(settings: ConnectorSettings) -> str | None:
    """The public half of HR's clip key for the bundle (devices seal answer clips for it)."""
    path = settings.signing.clip_key_file
    if path is None or not Path(path).exists():
        log.warning("no HR clip key ([signing] clip_key_file; make one with `interview-hr "
                    "clip-key`): this device's answer clips will wait until it has one")
        return None
    from device.mediacrypt import clip_public_pem, load_clip_private_key

    return clip_public_pem(load_clip_private_key(path).public_key())


def cmd_enrol_device(args) -> int:
    from cryptography import x509

    from sync.enrolment import make_bundle, write_bundle
    from sync.pki import CertPair, PkiError, common_name

    settings = _settings(args)
    en = settings.enrol
    ca_cert = args.ca_cert or en.ca_cert_file
    ca_key = args.ca_key or en.ca_key_file
    mqtt_host = args.mqtt_host or en.mqtt_host
    if not ca_cert or not ca_key or not mqtt_host:
        print("interview-hr enrol-device: need the CA certificate and key and the broker host "
              "([enrol] ca_cert_file, ca_key_file, mqtt_host, or --ca-cert/--ca-key/--mqtt-host)",
              file=sys.stderr)
        return 2
    csr_pem = Path(args.csr).read_bytes()
    try:
        device_id = args.device_id or common_name(x509.load_pem_x509_csr(csr_pem))
    except ValueError as e:
        print(f"interview-hr enrol-device: {args.csr}: not a PEM CSR ({e})", file=sys.stderr)
        return 2
    wecom = json.loads(Path(args.wecom).read_text(encoding="utf-8")) if args.wecom else None
    try:
        bundle = make_bundle(
            ca=CertPair(Path(ca_cert), Path(ca_key)), csr_pem=csr_pem,
            signing_key=_signing_key(settings, args.key), tenant=args.tenant or settings.signing.tenant,
            device_id=device_id, mqtt_host=mqtt_host, mqtt_port=args.mqtt_port or en.mqtt_port,
            https_base_url=args.https_url or en.https_base_url,
            company_name=args.company or en.company_name, site_name=args.site,
            site_location=args.location, wecom=wecom, cert_days=en.cert_days,
            clip_public_key_pem=_clip_public_pem(settings),
        )
    except PkiError as e:
        print(f"interview-hr enrol-device: {e}", file=sys.stderr)
        return 2
    out = args.out or Path(f"{device_id}.enrol.json")
    write_bundle(bundle, out, args.qr)
    print(f"wrote {out}" + (f" and {args.qr}" if args.qr else "")
          + f"; on the device run: kiosk-provision enrol {out.name}")
    return 0


# --- wiring -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="interview-hr",
        description="The HR-side connector for interview kiosks: receives results over MQTT "
        "and HTTPS, forwards them to the EHR, and publishes signed question banks, rosters "
        "and config.",
    )
    p.add_argument("--config", help=f"connector config (default ${CONFIG_ENV} or {DEFAULT_CONFIG})")
    p.add_argument("--version", action="version", version=f"interview-hr {software_version()}")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("serve", help="run the connector (MQTT subscriber, HTTPS endpoint, alarms)")
    s.set_defaults(func=cmd_serve)

    def targets(sp):
        sp.add_argument("--device", action="append", help="target device id (repeat; default: all known)")
        sp.add_argument("--tenant", help="tenant (default [signing] tenant)")
        sp.add_argument("--key", type=Path, help="Ed25519 signing key (default [signing] private_key_file)")

    s = sub.add_parser("publish-bank", help="validate, sign and publish a question bank (.xlsx/.json)")
    s.add_argument("file", type=Path)
    targets(s)
    s.set_defaults(func=cmd_publish_bank)
    s = sub.add_parser("publish-roster", help="validate, sign and publish today's roster (.json)")
    s.add_argument("file", type=Path)
    targets(s)
    s.set_defaults(func=cmd_publish_roster)
    s = sub.add_parser("publish-config", help="sign and publish a partial config ([session], [retention])")
    s.add_argument("file", type=Path)
    s.add_argument("--version", type=int, help="version (default: now, in seconds)")
    targets(s)
    s.set_defaults(func=cmd_publish_config)
    s = sub.add_parser("command", help="send a signed command (heartbeat, retry_now, ...)")
    s.add_argument("type")
    s.add_argument("--json", help="extra JSON fields")
    targets(s)
    s.set_defaults(func=cmd_command)

    s = sub.add_parser("devices", help="list devices: status, last heartbeat, outbox, alarms")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_devices)

    s = sub.add_parser("example-config", help="print a commented example config")
    s.set_defaults(func=lambda a: print(
        (Path(__file__).with_name("example-config.toml")).read_text(encoding="utf-8"), end="") or 0)

    s = sub.add_parser("signing-key", help="create the Ed25519 key that signs downlink messages")
    s.add_argument("out", type=Path)
    s.set_defaults(func=cmd_signing_key)

    s = sub.add_parser("enrol-device", help="sign a device's CSR and write its enrolment bundle")
    s.add_argument("csr", type=Path)
    s.add_argument("--out", type=Path)
    s.add_argument("--qr", type=Path, help="also write the bundle as a QR code PNG")
    s.add_argument("--device-id", help="expected device id (default: the CSR's CN)")
    s.add_argument("--tenant")
    s.add_argument("--key", type=Path, help="Ed25519 signing key")
    s.add_argument("--ca-cert", type=Path)
    s.add_argument("--ca-key", type=Path)
    s.add_argument("--mqtt-host")
    s.add_argument("--mqtt-port", type=int)
    s.add_argument("--https-url")
    s.add_argument("--company")
    s.add_argument("--site")
    s.add_argument("--location")
    s.add_argument("--wecom", type=Path, help="JSON file with the WeCom block for the device")
    s.set_defaults(func=cmd_enrol_device)

    for module, func in EXTENSIONS:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        getattr(mod, func)(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ConnectorConfigError as e:
        print(f"interview-hr: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
