"""The technician PIN's hash: scrypt, in the format kept in config `kiosk.technician_pin_hash`.
Shared by the kiosk (which checks it) and kiosk-provision (which sets it); Qt-free. Never
log, print or store a PIN, only its hash.

Hash format: ``scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>`` (hashlib.scrypt, 32 bytes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os

log = logging.getLogger(__name__)

_N, _R, _P = 2**14, 8, 1
MIN_DIGITS_NEW = 6   # what `kiosk-provision pin set` accepts: 10^6 guesses behind the lockout
MAX_DIGITS = 12
MIN_DIGITS_ANY = 4   # hashes of shorter PINs (the demo's 2468) still verify


class PinFormatError(ValueError):
    """A PIN that is not all digits or has the wrong length."""


def check_new_pin(pin: str) -> str:
    """The PIN a technician chose, if acceptable: 6-12 ASCII digits, not all one digit
    and not a straight run (123456, 987654), which are the first things anyone tries."""
    if not (pin.isascii() and pin.isdigit()) or not MIN_DIGITS_NEW <= len(pin) <= MAX_DIGITS:
        raise PinFormatError(f"the technician PIN must be {MIN_DIGITS_NEW}-{MAX_DIGITS} digits")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    if len(steps) == 1 and steps <= {0, 1, 9}:
        raise PinFormatError("the technician PIN must not be one repeated digit or a straight run")
    return pin


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    if not (pin.isascii() and pin.isdigit()) or not MIN_DIGITS_ANY <= len(pin) <= MAX_DIGITS:
        raise PinFormatError(f"the technician PIN must be {MIN_DIGITS_ANY}-{MAX_DIGITS} digits")
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def is_pin_hash(value: str) -> bool:
    """True if value has the scrypt$n$r$p$salt$hash shape (does not check any PIN)."""
    try:
        algo, n, r, p, salt, digest = value.split("$")
        return (algo == "scrypt" and int(n) > 1 and int(r) > 0 and int(p) > 0
                and len(base64.b64decode(salt, validate=True)) >= 8
                and len(base64.b64decode(digest, validate=True)) == 32)
    except (ValueError, TypeError):
        return False


def verify_pin(pin_hash: str, pin: str) -> bool:
    try:
        algo, n, r, p, salt, digest = pin_hash.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(pin.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
        return hmac.compare_digest(got, base64.b64decode(digest))
    except (ValueError, TypeError):
        log.error("kiosk.technician_pin_hash is malformed (expected scrypt$n$r$p$salt$hash)")
        return False
