"""The technician PIN gate: the lockout after 5 wrong tries, kept in the store so a restart
does not reset it. Hashing lives in device.pin (kiosk-provision sets the PIN with it).
Never log or store a PIN, only its hash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from device.pin import hash_pin, verify_pin

__all__ = ["LOCKOUT_S", "MAX_TRIES", "PinGate", "hash_pin", "verify_pin"]

log = logging.getLogger(__name__)

MAX_TRIES = 5
LOCKOUT_S = 300.0
KV_KEY = "kiosk.technician_pin"


class PinGate:
    """Checks PINs; after MAX_TRIES wrong ones, refuses everything for LOCKOUT_S."""

    def __init__(self, pin_hash: str | None, store, *, clock: Callable[[], float] = time.time) -> None:
        self.pin_hash = pin_hash
        self.store = store
        self.clock = clock

    @property
    def configured(self) -> bool:
        return bool(self.pin_hash)

    def _state(self) -> dict:
        try:
            return dict(self.store.kv_get(KV_KEY, None) or {"failures": 0, "locked_until": 0.0})
        except Exception:
            log.exception("PIN lockout state unreadable; treating as locked")
            return {"failures": MAX_TRIES, "locked_until": self.clock() + LOCKOUT_S}

    def _save(self, st: dict) -> None:
        self.store.kv_set(KV_KEY, st)

    def locked_for(self) -> float:
        return max(0.0, float(self._state().get("locked_until", 0.0)) - self.clock())

    def tries_left(self) -> int:
        return max(0, MAX_TRIES - int(self._state().get("failures", 0)))

    def check(self, pin: str) -> tuple[bool, str]:
        """(ok, reason): reason is "ok", "wrong", "locked" or "not_configured"."""
        if not self.configured:
            return False, "not_configured"
        st = self._state()
        now = self.clock()
        if st.get("locked_until", 0.0) > now:
            return False, "locked"
        if verify_pin(self.pin_hash, pin):
            self._save({"failures": 0, "locked_until": 0.0})
            return True, "ok"
        failures = int(st.get("failures", 0)) + 1
        if failures >= MAX_TRIES:
            self._save({"failures": 0, "locked_until": now + LOCKOUT_S})
            log.warning("technician PIN: %d wrong tries, locked for %.0f s", failures, LOCKOUT_S)
            return False, "locked"
        self._save({"failures": failures, "locked_until": 0.0})
        return False, "wrong"
