"""`kiosk-provision enrol BUNDLE`: join the terminal to the customer's HR side.

The bundle (made by `interview-hr enrol-device`, format in docs/internals.md) carries the
broker, the site CA, this device's signed certificate, WeCom settings and the downlink
signing key. It is checked whole before anything changes. The WeCom secret is sealed in
the key directory and never printed, logged or written to the config.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

from rich.table import Table

from device.config import ConfigError
from device.keys import SecretBox
from provisioning.cli import Context, ExitCode
from provisioning.configfile import update_config
from provisioning.identity import CLIENT_KEY_FILE, TLS_DIR

QR_PREFIX = "IKENROL1:"
BUNDLE_TYPE = "interview-kiosk-enrolment"
MAX_BUNDLE_BYTES = 256 * 1024
WECOM_SECRET_NAME = "wecom_secret"
PENDING_CLIENT_KEY = "client.key.new"  # written by rotate-keys until its certificate arrives
DOWNLINK_CACHE = ("pubkey", "downlink")
CLIP_KEY_CACHE = ("pubkey", "clips")


class BundleError(Exception):
    """A bundle that cannot be used; the message says what is wrong (never a secret)."""


def encode_qr_text(bundle: dict[str, Any]) -> str:
    """The QR form of a bundle: prefix + base64url(zlib(json)), no padding."""
    raw = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return QR_PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii").rstrip("=")


def parse_bundle(text: str | bytes) -> dict[str, Any]:
    """A bundle from its JSON or its QR text. Raises BundleError."""
    if isinstance(text, bytes):
        if len(text) > MAX_BUNDLE_BYTES:
            raise BundleError(f"bundle is {len(text)} bytes, more than {MAX_BUNDLE_BYTES}: not a bundle")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BundleError("bundle is not UTF-8 text (JSON or the QR text)") from None
    text = text.strip().lstrip("\ufeff")
    if text.startswith(QR_PREFIX):
        body = text[len(QR_PREFIX):].strip()
        try:
            packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            decomp = zlib.decompressobj()
            raw = decomp.decompress(packed, MAX_BUNDLE_BYTES)
            if decomp.unconsumed_tail:
                raise BundleError(f"QR text unpacks to more than {MAX_BUNDLE_BYTES} bytes")
        except (binascii.Error, ValueError, zlib.error) as e:
            raise BundleError(f"QR text is damaged (base64/zlib: {e}); scan it again") from None
        text = raw.decode("utf-8", errors="replace")
    if not text.startswith("{"):
        raise BundleError(f"not an enrolment bundle: expected JSON or text starting with {QR_PREFIX}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise BundleError(f"bundle JSON is invalid at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(doc, dict):
        raise BundleError("bundle must be a JSON object")
    return doc


def _need(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        got = "missing" if key not in doc else f"a {type(value).__name__}"
        raise BundleError(f"{where}{key}: expected {name}, got {got}")
    if isinstance(value, str) and not value.strip():
        raise BundleError(f"{where}{key}: expected a non-empty string")
    return value


def check_shape(doc: dict[str, Any]) -> None:
    """Field types and presence, each problem named by its key."""
    if doc.get("type") != BUNDLE_TYPE:
        raise BundleError(f"type: expected {BUNDLE_TYPE!r}, got {doc.get('type')!r}")
    if doc.get("version") != 1:
        raise BundleError(f"version: this kiosk understands version 1, got {doc.get('version')!r}")
    _need(doc, "issued", int)
    for key in ("tenant", "device_id", "ca_pem", "cert_pem", "downlink_public_key_pem", "signature"):
        _need(doc, key, str)
    for key in ("company_name", "site_name", "site_location"):
        if key in doc and not isinstance(doc[key], str):
            raise BundleError(f"{key}: expected a string")
    mqtt = _need(doc, "mqtt", dict)
    _need(mqtt, "host", str, "mqtt.")
    port = _need(mqtt, "port", int, "mqtt.")
    if not 1 <= port <= 65535:
        raise BundleError(f"mqtt.port: expected 1-65535, got {port}")
    if doc.get("https") is not None:
        _need(_need(doc, "https", dict), "base_url", str, "https.")
    if doc.get("wecom") is not None:
        wecom = _need(doc, "wecom", dict)
        for key in ("corp_id", "secret", "redirect_uri"):
            _need(wecom, key, str, "wecom.")
        _need(wecom, "agent_id", int, "wecom.")
        oncall = wecom.get("hr_oncall", [])
        if not isinstance(oncall, list) or not all(isinstance(x, str) for x in oncall):
            raise BundleError("wecom.hr_oncall: expected a list of WeCom user ids")


def verify_bundle(doc: dict[str, Any], *, device_id: str, key_dir: Path) -> Path:
    """Signature, device, certificate chain and key match. Returns the client key it matches."""
    from sync.pki import PkiError, public_key_matches, verify_issued_by
    from sync.signing import KeyFileError, SignatureError, load_public_key, verify_document

    check_shape(doc)
    try:
        verify_document(load_public_key(doc["downlink_public_key_pem"].encode()), doc)
    except (SignatureError, KeyFileError, ValueError) as e:
        raise BundleError(f"signature: {e} (the bundle was altered or damaged)") from None
    if doc["device_id"] != device_id:
        raise BundleError(f"device_id: the bundle is for {doc['device_id']!r}, this terminal is {device_id!r}")
    cert, ca = doc["cert_pem"].encode(), doc["ca_pem"].encode()
    try:
        verify_issued_by(cert, ca)
    except PkiError as e:
        raise BundleError(f"cert_pem: {e}") from None
    except ValueError as e:
        raise BundleError(f"cert_pem / ca_pem: not a PEM certificate ({e})") from None
    for name in (PENDING_CLIENT_KEY, CLIENT_KEY_FILE):
        key = Path(key_dir) / name
        if key.exists() and public_key_matches(cert, key):
            return key
    raise BundleError("cert_pem: the certificate is not for this terminal's key "
                      "(made from another CSR; send the current tls/device.csr again)")


def _fingerprint(pem: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    text = pem.strip()
    if "CERTIFICATE" in text.split("\n", 1)[0]:
        der = x509.load_pem_x509_certificate(text.encode()).public_bytes(serialization.Encoding.DER)
    else:
        der = serialization.load_pem_public_key(text.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _read_source(ctx: Context, args: argparse.Namespace) -> tuple[str | bytes, bool]:
    """The bundle text and whether it came from a file the technician should now destroy."""
    if args.scan:
        return scan_qr(ctx, args.scan_seconds), False
    if not args.bundle:
        raise ctx.fail(ExitCode.USAGE, "请给出注册包文件、二维码文本，或使用 --scan",
                       "give a bundle file, the QR text, or --scan")
    if args.bundle == "-":
        return sys.stdin.buffer.read(MAX_BUNDLE_BYTES + 1), False
    if args.bundle.strip().startswith((QR_PREFIX, "{")):
        return args.bundle, False
    path = Path(args.bundle)
    if path.is_file():
        return path.read_bytes()[: MAX_BUNDLE_BYTES + 1], True
    raise ctx.fail(ExitCode.USAGE, "找不到注册包文件 {p}", "no such bundle file: {p}", p=path)


# What other QR codes a technician may hold up by mistake, and what to tell them.
_OTHER_CODES = (
    ("IKINV1.", "这是候选人的面试邀请二维码，不是注册二维码", "that is a candidate's invitation QR code, not the enrolment code"),
    ("https://open.work.weixin.qq.com", "这是企业微信登录二维码，不是注册二维码", "that is a WeCom sign-in QR code, not the enrolment code"),
    ("https://login.work.weixin.qq.com", "这是企业微信登录二维码，不是注册二维码", "that is a WeCom sign-in QR code, not the enrolment code"),
)
SCAN_REMIND_S = 15.0


def scan_qr(ctx: Context, seconds: float) -> str:
    """Read the bundle's QR code with the terminal's own camera (as configured).

    Says what is wrong instead of only timing out: a camera that cannot be opened or stops
    delivering, a QR code that is not an enrolment bundle, and a reminder while nothing reads.
    """
    from device.qr import read_qr_texts
    from hardware.camera import CameraError, camera_from_settings

    try:
        camera = camera_from_settings(ctx.settings())
        camera.start()
    except (CameraError, OSError, ValueError) as e:
        raise ctx.fail(ExitCode.FAILED, "摄像头无法打开：{e}（运行 kiosk-provision selftest 检查）",
                       "the camera could not be opened: {e} (run kiosk-provision selftest)", e=e) from None
    ctx.say("请把注册二维码对准摄像头，保持稳定（{s:.0f} 秒内）……",
            "Hold the enrolment QR code up to the camera and keep it still (up to {s:.0f} s)…", s=seconds)
    frames, told = 0, set()
    try:
        start = time.monotonic()
        deadline, remind = start + seconds, start + SCAN_REMIND_S
        while (now := time.monotonic()) < deadline:
            if now >= remind:
                remind = now + SCAN_REMIND_S
                ctx.say("还没有识别到二维码：请靠近一些（二维码占画面约三分之一高），避免反光。还剩 {s:.0f} 秒",
                        "no code read yet: hold it closer (about a third of the picture's height) and "
                        "avoid glare. {s:.0f} s left", s=deadline - now)
            frame = camera.read(timeout=1.0)
            if frame is None:
                if not camera.alive:
                    raise ctx.fail(ExitCode.FAILED, "摄像头停止了画面：{e}（运行 kiosk-provision selftest 检查）",
                                   "the camera stopped delivering pictures: {e} (run kiosk-provision selftest)",
                                   e=camera.error or "unknown")
                continue
            frames += 1
            for text in read_qr_texts(frame.image):
                if text.startswith(QR_PREFIX):
                    return text
                zh, en = next(((z, e) for prefix, z, e in _OTHER_CODES if text.startswith(prefix)),
                              ("这个二维码不是注册二维码", "that QR code is not an enrolment code"))
                if en not in told:
                    told.add(en)
                    ctx.warn(zh + "：请出示 interview-hr enrol-device --qr 生成的二维码",
                             en + ": show the code `interview-hr enrol-device --qr` made")
    finally:
        camera.stop()
    if frames == 0:
        raise ctx.fail(ExitCode.FAILED, "{s:.0f} 秒内摄像头没有送来画面（运行 kiosk-provision selftest 检查）",
                       "the camera delivered no picture in {s:.0f} s (run kiosk-provision selftest)", s=seconds)
    raise ctx.fail(ExitCode.FAILED, "{s:.0f} 秒内没有识别到注册二维码", "no enrolment QR code seen in {s:.0f} s", s=seconds)


def run_enrol(ctx: Context, args: argparse.Namespace) -> int:
    settings = ctx.settings()
    master = ctx.master_key()
    key_dir = Path(settings.paths.key_dir)
    data_dir = Path(settings.paths.data_dir)
    raw, from_file = _read_source(ctx, args)
    try:
        doc = parse_bundle(raw)
        client_key = verify_bundle(doc, device_id=settings.device.id, key_dir=key_dir)
    except BundleError as e:
        ctx.record("device.enrol_rejected", {"reason": str(e)[:200]})
        raise ctx.fail(ExitCode.FAILED, "注册包被拒绝：{e}", "enrolment bundle rejected: {e}", e=e) from None

    store = ctx.store()
    downlink_sha = _fingerprint(doc["downlink_public_key_pem"])
    cached = store.cache_get(*DOWNLINK_CACHE)
    if cached is not None and cached[0] > doc["issued"] and cached[1].get("sha256") != downlink_sha:
        ctx.record("device.enrol_rejected", {"reason": "older than the installed enrolment"})
        raise ctx.fail(ExitCode.FAILED, "注册包比当前的旧（签发时间 {a} < {b}），已拒绝",
                       "the bundle is older than the current enrolment (issued {a} < {b}); refused",
                       a=doc["issued"], b=cached[0])

    # A key made by rotate-keys becomes the client key once its certificate has arrived.
    if client_key.name == PENDING_CLIENT_KEY:
        client_key = client_key.replace(key_dir / CLIENT_KEY_FILE)
    tls = data_dir / TLS_DIR
    tls.mkdir(parents=True, exist_ok=True, mode=0o755)
    files = {"ca": tls / "ca.crt", "cert": tls / "device.crt", "downlink": tls / "hr-downlink.pub"}
    files["ca"].write_text(doc["ca_pem"].strip() + "\n")
    files["cert"].write_text(doc["cert_pem"].strip() + "\n")
    files["downlink"].write_text(doc["downlink_public_key_pem"].strip() + "\n")

    device = {"tenant": doc["tenant"]}
    for key in ("company_name", "site_name", "site_location"):
        if doc.get(key):
            device[key] = doc[key]
    tls_files = {"ca_file": files["ca"], "cert_file": files["cert"], "key_file": client_key}
    changes: dict[str, dict[str, Any]] = {
        "device": device,
        "sync": {"downlink_public_key_file": files["downlink"]},
        "sync.mqtt": {"host": doc["mqtt"]["host"], "port": doc["mqtt"]["port"], "tls": True, **tls_files},
    }
    if doc.get("https"):
        changes["sync.https"] = {"base_url": doc["https"]["base_url"], **tls_files}
    wecom = doc.get("wecom")
    if wecom:
        changes["wecom"] = {"corp_id": wecom["corp_id"], "agent_id": wecom["agent_id"],
                            "redirect_uri": wecom["redirect_uri"],
                            "hr_oncall": list(wecom.get("hr_oncall", []))}
    clip_pem = doc.get("clip_public_key_pem")
    if clip_pem:
        from device.mediacrypt import load_clip_public_key

        try:
            load_clip_public_key(clip_pem)  # checked before anything changes
        except ValueError as e:
            raise ctx.fail(ExitCode.FAILED, "注册包中的 HR 视频密钥无效，未做更改：{e}",
                           "the bundle's HR clip key is not usable; nothing changed: {e}", e=e) from None
    try:
        update_config(ctx.config_path, changes)
    except ConfigError as e:
        raise ctx.fail(ExitCode.FAILED, "注册包内容与配置不符，未做更改：{e}",
                       "the bundle's settings do not fit the config; nothing changed: {e}", e=e) from None
    if wecom:
        SecretBox(key_dir, master).seal(WECOM_SECRET_NAME, wecom["secret"].encode("utf-8"))
    store.cache_put(*DOWNLINK_CACHE, int(doc["issued"]),
                    {"pem": doc["downlink_public_key_pem"], "sha256": downlink_sha})
    if clip_pem:
        # HR's X25519 clip key: the sync daemon seals each answer clip for it before upload.
        store.cache_put(*CLIP_KEY_CACHE, int(doc["issued"]),
                        {"pem": clip_pem, "sha256": _fingerprint(clip_pem)})
    settings = ctx.reload_settings()
    ctx.record("device.enrol", {
        "tenant": doc["tenant"], "device_id": doc["device_id"], "issued": doc["issued"],
        "broker": f"{doc['mqtt']['host']}:{doc['mqtt']['port']}",
        "cert_sha256": _fingerprint(doc["cert_pem"]), "ca_sha256": _fingerprint(doc["ca_pem"]),
        "downlink_sha256": downlink_sha, "wecom_corp_id": wecom["corp_id"] if wecom else None,
    })

    if ctx.json_output:
        ctx.emit_json({"ok": True, "tenant": doc["tenant"], "device_id": doc["device_id"],
                       "broker": f"{doc['mqtt']['host']}:{doc['mqtt']['port']}",
                       "wecom": bool(wecom), "downlink_sha256": downlink_sha})
    else:
        t = Table(title=ctx.tr("注册完成", "Enrolled"), show_header=False, title_justify="left")
        t.add_row(ctx.tr("租户 / 设备", "Tenant / device"), f"{doc['tenant']} / {doc['device_id']}")
        if doc.get("site_name"):
            t.add_row(ctx.tr("地点", "Site"), doc["site_name"])
        t.add_row("MQTT", f"{doc['mqtt']['host']}:{doc['mqtt']['port']} (TLS)")
        if doc.get("https"):
            t.add_row("HTTPS", doc["https"]["base_url"])
        t.add_row(ctx.tr("设备证书", "Certificate"), str(files["cert"]))
        t.add_row(ctx.tr("下行签名公钥", "Downlink key"), "sha256 " + downlink_sha[:16] + "…")
        if wecom:
            t.add_row(ctx.tr("企业微信", "WeCom"), f"{wecom['corp_id']} / {wecom['agent_id']}, "
                      + ctx.tr("应用密钥已加密保存", "app secret stored encrypted"))
        ctx.console.print(t)
        ctx.say("下一步：kiosk-provision selftest", "Next: kiosk-provision selftest")
    if from_file and wecom:
        ctx.warn("注册包文件 {p} 含有企业微信应用密钥：注册后请删除（包括 U 盘上的副本）。",
                 "the bundle file {p} holds the WeCom app secret: delete it now, "
                 "including copies on USB sticks.", p=args.bundle)
    return ExitCode.OK


def run_wecom_set_secret(ctx: Context, args: argparse.Namespace) -> int:
    """Store (or replace) the WeCom app secret, sealed; read without echo, never shown."""
    settings = ctx.settings()
    master = ctx.master_key()
    if sys.stdin.isatty():
        secret = getpass.getpass(ctx.tr("企业微信应用 Secret（不会显示）：", "WeCom app secret (not shown): "))
    else:
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        raise ctx.fail(ExitCode.USAGE, "没有输入密钥", "no secret given")
    SecretBox(settings.paths.key_dir, master).seal(WECOM_SECRET_NAME, secret.encode("utf-8"))
    ctx.record("wecom.set_secret", {"corp_id": settings.wecom.corp_id if settings.wecom else None})
    ctx.say("[green]✓[/] 企业微信应用密钥已加密保存", "[green]✓[/] WeCom app secret stored encrypted")
    return ExitCode.OK
