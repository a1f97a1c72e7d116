"""The enrolment bundle ``interview-hr enrol-device`` hands to ``kiosk-provision enrol``
(format in docs/internals.md): the device's signed certificate, the site CA, where to
connect, and the HR downlink key, signed with that key. It never carries the device's
private key, which never leaves the device.
"""

from __future__ import annotations

import base64
import json
import os
import time
import zlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.pki import CertPair, load_cert, sign_csr
from sync.signing import public_key_pem, sign_document

BUNDLE_TYPE = "interview-kiosk-enrolment"
QR_PREFIX = "IKENROL1:"


def make_bundle(
    *, ca: CertPair, csr_pem: bytes, signing_key: Ed25519PrivateKey, tenant: str, device_id: str,
    mqtt_host: str, mqtt_port: int = 8883, https_base_url: str | None = None,
    company_name: str | None = None, site_name: str | None = None, site_location: str | None = None,
    wecom: dict | None = None, cert_days: int = 825, now: float | None = None,
    clip_public_key_pem: str | None = None,
) -> dict:
    cert_pem = sign_csr(ca, csr_pem, expect_cn=device_id, days=cert_days)
    from cryptography.hazmat.primitives import serialization

    ca_pem = load_cert(ca.cert).public_bytes(serialization.Encoding.PEM)
    doc: dict = {
        "type": BUNDLE_TYPE, "version": 1, "issued": int(now if now is not None else time.time()),
        "tenant": tenant, "device_id": device_id,
        "mqtt": {"host": mqtt_host, "port": mqtt_port},
        "https": {"base_url": https_base_url} if https_base_url else None,
        "ca_pem": ca_pem.decode(), "cert_pem": cert_pem.decode(),
        "downlink_public_key_pem": public_key_pem(signing_key.public_key()).decode(),
        "wecom": wecom,
    }
    for k, v in (("company_name", company_name), ("site_name", site_name),
                 ("site_location", site_location), ("clip_public_key_pem", clip_public_key_pem)):
        if v is not None:
            doc[k] = v
    return sign_document(signing_key, doc)


def bundle_qr_text(bundle: dict) -> str:
    raw = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode()
    return QR_PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def bundle_from_qr_text(text: str) -> dict:
    text = text.strip()
    if not text.startswith(QR_PREFIX):
        raise ValueError(f"not an enrolment QR text (expected it to start with {QR_PREFIX})")
    b = text[len(QR_PREFIX):]
    return json.loads(zlib.decompress(base64.urlsafe_b64decode(b + "=" * (-len(b) % 4))))


def write_bundle(bundle: dict, out: Path, qr_png: Path | None = None) -> None:
    out = Path(out)
    # 0600: the bundle may carry the WeCom app secret.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(bundle, ensure_ascii=False, indent=1))
    if qr_png is not None:
        import qrcode

        from sync.wecom.invite import qr_picture, save_png

        # Drawn so the terminal's own camera reader (device.qr) decodes it: plain qrcode
        # output with its default mask was unreadable to the terminal for some texts.
        save_png(qr_picture(bundle_qr_text(bundle), error_correction=qrcode.constants.ERROR_CORRECT_L),
                 Path(qr_png))
