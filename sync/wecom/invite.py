"""Invitation QR codes, made on the HR side: a roster entry, the device or site, and a
validity window, signed with HR's Ed25519 key, as a PNG plus the text of a WeCom message.

The kiosk checks them offline (device/signin.verify_invitation). The QR carries ids and
times only, never the candidate's name; this module never prints or logs the private key.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import qrcode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.signin import INVITATION_PREFIX, b64url, canonical_json
from sync.signing import KeyFileError, load_private_key

EARLY_S = 30 * 60  # an invitation works from half an hour before the slot ...
LATE_S = 30 * 60  # ... until half an hour after it, unless --valid-from/--valid-until say otherwise


def make_invitation(
    key: Ed25519PrivateKey,
    entry_id: str,
    *,
    not_before: float,
    not_after: float,
    device: str | None = None,
    site: str | None = None,
) -> str:
    """The QR text: ``IKINV1.<claims>.<signature>`` (base64url, signature over canonical JSON)."""
    if not entry_id:
        raise ValueError("entry_id is required")
    if not (device or site):
        raise ValueError("an invitation is bound to a device or a site: give one")
    if not_after <= not_before:
        raise ValueError("the validity window is empty (valid-until <= valid-from)")
    claims: dict[str, Any] = {
        "v": 1,
        "entry": entry_id,
        "nbf": int(not_before),
        "exp": int(not_after),
    }
    if device:
        claims["device"] = device
    if site:
        claims["site"] = site
    body = canonical_json(claims)
    return f"{INVITATION_PREFIX}{b64url(body)}.{b64url(key.sign(body))}"


def _readable(img: Any, text: str) -> bool:
    from device.qr import read_qr_texts

    return text in read_qr_texts(img)


def qr_picture(qr_text: str, *, box_size: int = 10, error_correction: int | None = None) -> Any:
    """The QR code as a greyscale PIL image that the terminal's reader (device.qr) decodes.

    Checked, not assumed: try qrcode's chosen mask and then the eight mask patterns, and keep
    the first one the reader decodes at full size and at a camera-like 3.5 pixels per module
    (OpenCV's detector, our reader until session 2, could not read about 1 in 15 of ours with
    the default mask). Pillow and zxing-cpp only, no OpenCV or numpy: the HR connector's slim
    install (sync/connector/requirements.txt) draws enrolment and invitation codes with this.
    """
    from PIL import Image

    fallback = None
    for mask in (None, *range(8)):
        qr = qrcode.QRCode(error_correction=error_correction if error_correction is not None
                           else qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=4,
                           mask_pattern=mask)
        qr.add_data(qr_text)
        qr.make(fit=True)
        img = qr.make_image(fill_color="black", back_color="white").convert("L")
        if not _readable(img, qr_text):
            continue
        fallback = img if fallback is None else fallback
        side = int((qr.modules_count + 8) * 3.5)
        # BOX averages the pixels each output pixel covers, as OpenCV's INTER_AREA does.
        if _readable(img.resize((side, side), Image.Resampling.BOX), qr_text):
            return img
    if fallback is None:
        raise ValueError("no QR mask pattern gives a code the terminal can read; shorten the text")
    return fallback


def qr_image(qr_text: str, *, box_size: int = 10, error_correction: int | None = None) -> Any:
    """qr_picture as a numpy greyscale array (uint8, 0 black, 255 white), like a camera frame."""
    import numpy as np

    return np.array(qr_picture(qr_text, box_size=box_size, error_correction=error_correction))


def save_png(picture: Any, out: Path) -> Path:
    """Write a qr_picture as a PNG, naming the file when it cannot."""
    out = Path(out)
    try:
        picture.save(out, format="PNG")
    except OSError as e:
        raise OSError(f"{out}: could not write the PNG ({e.strerror or e})") from e
    return out


def render_png(qr_text: str, out: Path, *, box_size: int = 10) -> Path:
    """Write the QR code as a PNG (error correction M: survives a cracked phone screen)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_png(qr_picture(qr_text, box_size=box_size), out)


def message_text(*, job_title: str, where: str, not_before: float, not_after: float, code: str | None = None) -> str:
    """The WeCom message a recruiter sends with the PNG (Chinese first, then English)."""
    f = "%m-%d %H:%M"
    window = f"{datetime.fromtimestamp(not_before).strftime(f)} – {datetime.fromtimestamp(not_after).strftime(f)}"
    lines = [
        f"您好！欢迎参加「{job_title}」面试。",
        f"地点：{where}；签到时间：{window}。",
        "到达后，请在面试终端屏幕上用企业微信扫码签到，或将下方邀请二维码对准终端摄像头。",
    ]
    if code:
        lines.append(f"如无法扫码，可在屏幕上输入面试码：{code}")
    lines += [
        "",
        f"Hello! Welcome to your interview for \"{job_title}\".",
        f"Place: {where}. Sign in between {window}.",
        "At the terminal, scan the screen's QR code with WeCom, or hold the invitation QR code below up to the terminal's camera.",
    ]
    if code:
        lines.append(f"If scanning does not work, type your interview code on the screen: {code}")
    return "\n".join(lines)


def _ts(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, datetime):
        return v.timestamp()
    return datetime.fromisoformat(str(v)).timestamp()


def _find_entry(roster_path: Path, entry_id: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(roster_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(f"{roster_path}: cannot read roster JSON: {e}") from None
    entries = data.get("entries", []) if isinstance(data, dict) else data
    for e in entries:
        if isinstance(e, dict) and str(e.get("entry_id")) == entry_id:
            return e
    raise SystemExit(f"{roster_path}: no roster entry with entry_id {entry_id!r}")


def add_invite_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``interview-hr invite`` on the connector CLI's subparsers."""
    p = subparsers.add_parser(
        "invite",
        help="make a signed invitation QR code (PNG) and the WeCom message text",
        description=run_invite.__doc__,
    )
    p.add_argument("--key", type=Path, help="HR Ed25519 signing key (default [signing] private_key_file: the downlink key)")
    p.add_argument("--roster", type=Path, required=True, help="roster JSON the entry comes from")
    p.add_argument("--entry", required=True, help="roster entry id")
    p.add_argument("--device", help="bind to this device id (default: the entry's device)")
    p.add_argument("--site", help="bind to this site name instead of one device")
    p.add_argument("--valid-from", help="ISO time (default: 30 min before the slot)")
    p.add_argument("--valid-until", help="ISO time (default: 30 min after the slot)")
    p.add_argument("--where", default="", help="place named in the message text")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.set_defaults(func=run_invite)
    return p


def run_invite(args: argparse.Namespace) -> int:
    """Make an invitation QR code for one roster entry: writes the PNG and prints the message."""
    try:
        if args.key is not None:
            key = load_private_key(args.key)
        else:  # the connector's downlink key, as `publish-roster` uses
            from sync.connector.__main__ import _settings, _signing_key

            key = _signing_key(_settings(args))
    except KeyFileError as e:
        print(f"interview-hr invite: {e}", file=sys.stderr)
        return 2
    entry = _find_entry(args.roster, args.entry)
    device = args.device or (None if args.site else entry.get("device_id"))
    site = args.site or (None if device else entry.get("site"))
    try:
        start = _ts(args.valid_from) or ((_ts(entry.get("slot_start")) or time.time()) - EARLY_S)
        end = _ts(args.valid_until) or ((_ts(entry.get("slot_end")) or (start + EARLY_S + 3600)) + LATE_S)
        text = make_invitation(key, args.entry, not_before=start, not_after=end, device=device, site=site)
    except ValueError as e:
        print(f"interview-hr invite: {e}", file=sys.stderr)
        return 2
    render_png(text, args.out)
    print(
        message_text(
            job_title=str(entry.get("job_title") or entry.get("job_id") or ""),
            where=args.where or site or device or "",
            not_before=start,
            not_after=end,
            code=entry.get("interview_code"),
        )
    )
    print(f"\n(QR code written to {args.out}; valid {timedelta(seconds=int(end - start))})", file=sys.stderr)
    return 0
