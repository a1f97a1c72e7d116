"""The kiosk's half of sign-in, and the checks both halves share: QR states, verifications,
interview codes and signed invitation QR codes, each refusal with its bilingual message.

No network here: WeCom is reached by the sync daemon only. Never log a candidate's name,
an OAuth code or an invitation's contents; audit ids and reasons only.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from device import roster as roster_mod
from device.roster import RosterEntry

log = logging.getLogger(__name__)

WECOM_QR_LOGIN = "https://login.work.weixin.qq.com/wwlogin/sso/login"
INVITATION_MAX_LEN = 1024  # ours are ~210 characters; a cap keeps hostile JSON small
INVITATION_PREFIX = "IKINV1."  # QR text: IKINV1.<base64url canonical JSON>.<base64url signature>
ROTATE_BEFORE_S = 20.0  # the screen shows a fresh code this long before the old one expires
VERIFICATION_MAX_AGE_S = 120.0  # older unconsumed verifications are stale (kiosk was restarted)

# reason -> (Chinese, English): the same words on the phone and on the screen.
MESSAGES: dict[str, tuple[str, str]] = {
    "ok": ("验证成功，请看终端屏幕。", "Verified. Please look at the terminal screen."),
    "expired_state": (
        "二维码已过期，请重新扫描屏幕上的新二维码。",
        "This QR code has expired. Please scan the new code on the screen.",
    ),
    "reused_state": (
        "该二维码已被使用，请重新扫描屏幕上的新二维码。",
        "This QR code was already used. Please scan the new code on the screen.",
    ),
    "unknown_user": (
        "未能识别您的企业微信身份，请联系招聘人员，或使用邀请二维码/面试码签到。",
        "We could not identify your WeCom account. Please contact your recruiter, or use your invitation QR code or interview code.",
    ),
    "off_roster": (
        "今天的面试名单中没有您的预约，请联系招聘人员。",
        "You are not on today's interview list. Please contact your recruiter.",
    ),
    "wrong_device": (
        "您的面试安排在另一台终端，请确认地点或联系招聘人员。",
        "Your interview is booked on another terminal. Please check the location or contact your recruiter.",
    ),
    "outside_slot": (
        "现在不在您的面试时间段内，请在预约时间前后签到。",
        "It is not your interview time yet (or it has passed). Please sign in during your booked time.",
    ),
    "forged_invitation": (
        "邀请二维码无效，请使用招聘人员发送的原始邀请。",
        "This invitation QR code is not valid. Please use the original invitation from your recruiter.",
    ),
    "expired_invitation": (
        "邀请二维码已过期，请联系招聘人员获取新的邀请。",
        "This invitation has expired. Please ask your recruiter for a new one.",
    ),
    "unknown_code": (
        "面试码不正确，请核对后重新输入。",
        "This interview code is not correct. Please check it and try again.",
    ),
    "wecom_unreachable": (
        "暂时无法连接企业微信。请出示邀请二维码，或在屏幕上输入面试码。",
        "WeCom cannot be reached right now. Please show your invitation QR code or type your interview code on the screen.",
    ),
}
REASONS = tuple(k for k in MESSAGES if k != "ok")


@dataclass(frozen=True)
class SignInRefusal:
    """Why sign-in was refused, in words for the candidate (Chinese first)."""

    reason: str
    message_zh: str
    message_en: str

    @classmethod
    def of(cls, reason: str) -> SignInRefusal:
        zh, en = MESSAGES[reason]
        return cls(reason, zh, en)


@dataclass(frozen=True)
class QrState:
    nonce: str  # the full WeCom `state` value (device marker + random part)
    url: str  # the WeCom web QR-login URL to render as the idle screen's QR code
    expires: float
    rotate_at: float  # show a new code from here on; this one still works until `expires`


@dataclass(frozen=True)
class VerificationRow:
    id: str
    device_id: str
    method: str  # wecom | relay | invitation | code
    candidate_ref: str | None
    roster_entry: RosterEntry | None
    status: str  # ok | refused
    reason: str | None
    created: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def refusal(self) -> SignInRefusal | None:
        return None if self.ok else SignInRefusal.of(self.reason or "unknown_user")


# ---- QR state (the WeCom `state` nonce) ----------------------------------------------------


def state_for(device_id: str) -> str:
    """A fresh state: 32 random hex digits + the device id in hex.

    WeCom allows only ``a-zA-Z0-9`` (<=128 bytes) in ``state``; carrying the device lets
    the HR connector route a relayed callback and lets us tell a wrong-device scan apart.
    """
    return secrets.token_hex(16) + device_id.encode("utf-8").hex()


def device_of_state(state: str) -> str | None:
    """The device id a state was made for, or None if it is not one of ours."""
    if len(state) <= 32 or len(state) > 128 or not state.isalnum():
        return None
    try:
        return bytes.fromhex(state[32:]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def qr_login_url(settings: Any, state: str) -> str:
    """WeCom's web QR-login URL (wechatpy has no helper for it)."""
    w = settings.wecom
    q = urlencode(
        {
            "login_type": "CorpApp",
            "appid": w.corp_id,
            "agentid": str(w.agent_id),
            "redirect_uri": w.redirect_uri,
            "state": state,
        }
    )
    return f"{WECOM_QR_LOGIN}?{q}"


def new_qr_state(store: Any, settings: Any, now: float) -> QrState:
    """Insert a single-use state for this device and return the QR-login URL for it."""
    if settings.wecom is None:
        raise ValueError("settings.wecom is not configured: no WeCom QR sign-in")
    ttl = float(settings.wecom.state_ttl_s)
    state = state_for(settings.device.id)
    with store.transaction():
        store.db["signin_states"].insert(
            {"nonce": state, "device_id": settings.device.id, "created": now, "expires": now + ttl, "used": None}
        )
        # Keep the table small: states a day past expiry can no longer matter.
        store.db.execute("DELETE FROM signin_states WHERE expires < ?", [now - 86400])
    return QrState(
        nonce=state,
        url=qr_login_url(settings, state),
        expires=now + ttl,
        rotate_at=now + max(ttl - ROTATE_BEFORE_S, ttl / 2),
    )


def consume_state(store: Any, state: str, device_id: str, now: float) -> SignInRefusal | None:
    """Check a callback's state (ours, this device, unexpired, unused) and mark it used."""
    owner = device_of_state(state)
    if owner is not None and owner != device_id:
        return SignInRefusal.of("wrong_device")
    with store.transaction():
        rows = list(store.db.query("SELECT * FROM signin_states WHERE nonce = ?", [state]))
        if not rows:
            return SignInRefusal.of("expired_state")  # rotated away and pruned, or never ours
        row = rows[0]
        if row["device_id"] != device_id:
            return SignInRefusal.of("wrong_device")
        if row["used"] is not None:
            return SignInRefusal.of("reused_state")
        if row["expires"] <= now:
            return SignInRefusal.of("expired_state")
        store.db.execute("UPDATE signin_states SET used = ? WHERE nonce = ?", [now, state])
    return None


# ---- verifications (the rows the kiosk picks up) --------------------------------------------


def record_verification(
    store: Any,
    device_id: str,
    method: str,
    result: RosterEntry | SignInRefusal,
    now: float,
    *,
    consumed: bool = False,
) -> str:
    """Write a verifications row for an outcome; returns its id."""
    vid = str(uuid.uuid4())
    ok = not isinstance(result, SignInRefusal)
    store.db["verifications"].insert(
        {
            "id": vid,
            "device_id": device_id,
            "method": method,
            "candidate_ref": result.entry_id if ok else None,
            "roster_entry": json.dumps(result.model_dump(mode="json"), ensure_ascii=False) if ok else None,
            "status": "ok" if ok else "refused",
            "reason": None if ok else result.reason,
            "created": now,
            "consumed": now if consumed else None,
        }
    )
    return vid


def _row(r: dict[str, Any]) -> VerificationRow:
    entry = None
    if r.get("roster_entry"):
        entry = RosterEntry.model_validate(json.loads(r["roster_entry"]))
    return VerificationRow(
        id=r["id"],
        device_id=r["device_id"],
        method=r["method"],
        candidate_ref=r.get("candidate_ref"),
        roster_entry=entry,
        status=r["status"],
        reason=r.get("reason"),
        created=r["created"],
    )


def take_verification(
    store: Any, device_id: str, *, now: float | None = None, max_age_s: float = VERIFICATION_MAX_AGE_S
) -> VerificationRow | None:
    """The oldest unconsumed verification for this device, marked consumed; stale ones are dropped."""
    now = time.time() if now is None else now
    sql = "SELECT * FROM verifications WHERE device_id = ? AND consumed IS NULL ORDER BY created, rowid"
    # The kiosk polls five times a second: look first, take the write lock only when there is a row.
    with store.lock:
        if not list(store.db.query(sql, [device_id])):
            return None
    with store.transaction():
        for r in list(store.db.query(sql, [device_id])):
            store.db.execute("UPDATE verifications SET consumed = ? WHERE id = ?", [now, r["id"]])
            if r["created"] < now - max_age_s:
                log.info("dropping stale verification %s", r["id"])
                continue
            try:
                return _row(r)
            except ValueError:
                # Consumed anyway: a row we cannot read must not be retried forever.
                log.error("verification %s is unreadable; dropped", r["id"])
    return None


# ---- roster ---------------------------------------------------------------------------------


def match_identity(
    store: Any,
    settings: Any,
    now: float,
    *,
    userid: str | None = None,
    external_userid: str | None = None,
    openid: str | None = None,
) -> RosterEntry | SignInRefusal:
    """Match a WeCom identity against the cached roster for this device and time."""
    roster = roster_mod.current_roster(store)
    if roster is None:
        return SignInRefusal.of("off_roster")
    m = roster_mod.find_by_identity(
        roster,
        userid=userid,
        external_userid=external_userid,
        openid=openid,
        device_id=settings.device.id,
        now=now,
        site=settings.device.site_name or None,
    )
    if m.entry is not None:
        return m.entry
    if m.reason == "off_roster" and not any(
        (userid and e.wecom_userid == userid)
        or (external_userid and e.external_userid == external_userid)
        or (openid and e.openid == openid)
        for e in roster.entries
    ):
        # Nobody HR booked has this WeCom identity: a person we don't know (or a different
        # account than HR registered), rather than a booked candidate on the wrong day.
        return SignInRefusal.of("unknown_user")
    return SignInRefusal.of(m.reason if m.reason in MESSAGES else "unknown_user")


def check_interview_code(store: Any, settings: Any, code: str, now: float) -> RosterEntry | SignInRefusal:
    """A one-time interview code typed on the screen (the fallback when WeCom is down)."""
    roster = roster_mod.current_roster(store)
    if roster is None or not roster_mod.normalize_code(code):
        return SignInRefusal.of("unknown_code")
    m = roster_mod.match_code(roster, code, settings.device.id, now, site=settings.device.site_name or None)
    if m.entry is not None:
        return m.entry
    return SignInRefusal.of(m.reason if m.reason in MESSAGES else "unknown_code")


# ---- invitation QR codes --------------------------------------------------------------------


def canonical_json(doc: Any) -> bytes:
    """Same bytes as sync.signing.canonical_json (device may not import sync)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def decode_invitation(qr_text: str) -> tuple[dict[str, Any], bytes, bytes]:
    """Split QR text into (claims, signed bytes, signature); ValueError if malformed."""
    text = qr_text.strip()
    if len(text) > INVITATION_MAX_LEN:
        raise ValueError("invitation QR code is too long")
    if not text.startswith(INVITATION_PREFIX):
        raise ValueError("not an invitation QR code")
    parts = text[len(INVITATION_PREFIX) :].split(".")
    if len(parts) != 2:
        raise ValueError("invitation QR code has the wrong number of parts")
    try:
        body = unb64url(parts[0])
        sig = unb64url(parts[1])
        claims = json.loads(body.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError("invitation QR code is not valid base64 JSON") from e
    if not isinstance(claims, dict):
        raise ValueError("invitation claims are not a JSON object")
    return claims, body, sig


def hr_public_key(store: Any, settings: Any) -> Ed25519PublicKey | None:
    """The HR side's Ed25519 key: the one cached from the downlink, else the configured file."""
    pem: bytes | None = None
    cached = store.cache_get("pubkey", "downlink")
    if cached is not None and cached[1].get("pem"):
        pem = str(cached[1]["pem"]).encode("ascii")
    elif settings.sync is not None and settings.sync.downlink_public_key_file is not None:
        try:
            pem = Path(settings.sync.downlink_public_key_file).read_bytes()
        except OSError as e:
            log.error("HR public key %s unreadable: %s", settings.sync.downlink_public_key_file, e)
            return None
    if pem is None:
        return None
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        log.error("HR public key is not a PEM public key")
        return None
    return key if isinstance(key, Ed25519PublicKey) else None


def verify_invitation(store: Any, settings: Any, qr_text: str, now: float) -> RosterEntry | SignInRefusal:
    """Check an invitation QR (signature, device or site, validity window) against the roster."""
    try:
        claims, body, sig = decode_invitation(qr_text)
    except ValueError as e:
        log.info("invitation refused: %s", e)
        return SignInRefusal.of("forged_invitation")
    key = hr_public_key(store, settings)
    if key is None:
        log.error("no HR public key cached or configured: cannot check invitations")
        return SignInRefusal.of("forged_invitation")
    try:
        key.verify(sig, body)
    except InvalidSignature:
        log.warning("invitation with a bad signature refused")
        return SignInRefusal.of("forged_invitation")
    if canonical_json(claims) != body:
        return SignInRefusal.of("forged_invitation")  # signed bytes must be the canonical form
    try:
        not_before = float(claims["nbf"])
        not_after = float(claims["exp"])
        entry_id = str(claims["entry"])
    except (KeyError, TypeError, ValueError):
        return SignInRefusal.of("forged_invitation")
    if now < not_before or now > not_after:
        return SignInRefusal.of("expired_invitation")
    dev, site = claims.get("device"), claims.get("site")
    if dev and dev != settings.device.id:
        return SignInRefusal.of("wrong_device")
    if not dev and site and site != settings.device.site_name:
        return SignInRefusal.of("wrong_device")
    roster = roster_mod.current_roster(store)
    entry = None if roster is None else next((e for e in roster.entries if e.entry_id == entry_id), None)
    if entry is None:
        return SignInRefusal.of("off_roster")
    return entry


# ---- one call for the kiosk's local methods -------------------------------------------------


def local_signin(
    store: Any,
    settings: Any,
    now: float,
    *,
    code: str | None = None,
    qr_text: str | None = None,
    audit: Any | None = None,
) -> VerificationRow:
    """Check an interview code or an invitation QR, record and audit the outcome.

    Returns the (already consumed) verification row, so the kiosk treats it like one
    taken from the sync daemon: ``Verified(row.roster_entry, ..., verification_id=row.id)``.
    """
    if (code is None) == (qr_text is None):
        raise ValueError("give exactly one of code= or qr_text=")
    method = "code" if code is not None else "invitation"
    result = (
        check_interview_code(store, settings, code, now)
        if code is not None
        else verify_invitation(store, settings, qr_text or "", now)
    )
    device_id = settings.device.id
    with store.transaction():
        vid = record_verification(store, device_id, method, result, now, consumed=True)
        if audit is not None:
            audit_outcome(audit, "kiosk", method, result, device_id=device_id, verification_id=vid)
    with store.lock:
        rows = list(store.db.query("SELECT * FROM verifications WHERE id = ?", [vid]))
    return _row(rows[0])


def audit_outcome(
    audit: Any,
    actor: str,
    method: str,
    result: RosterEntry | SignInRefusal,
    *,
    device_id: str,
    verification_id: str | None = None,
    identity_ref: str | None = None,
) -> int:
    """One audit entry per sign-in outcome: ids and reasons only, never names."""
    ok = not isinstance(result, SignInRefusal)
    detail: dict[str, Any] = {"method": method, "device_id": device_id, "verification_id": verification_id}
    if ok:
        detail["entry_id"] = result.entry_id
    else:
        detail["reason"] = result.reason
    if identity_ref:
        detail["identity"] = identity_ref
    return audit.append(actor, "signin.ok" if ok else "signin.refused", detail)
