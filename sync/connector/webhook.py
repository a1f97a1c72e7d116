"""Forwarding to the EHR: an HTTP POST per record, HMAC-SHA256 signed over the timestamp
and body, retried with backoff. It never reports success without a 2xx (or 409, "already
have it") from the EHR."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Interview-Signature"
TIMESTAMP_HEADER = "X-Interview-Timestamp"
ID_HEADER = "X-Interview-Id"
# Retrying these may succeed later; other 4xx mean the EHR will never take this body.
_TRANSIENT_4XX = {408, 425, 429}


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify_signature(secret: bytes, headers: dict, body: bytes, *, tolerance_s: float = 300,
                     now: float | None = None) -> bool:
    """What an EHR does on receipt: check the HMAC and that the timestamp is fresh."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts = lower.get(TIMESTAMP_HEADER.lower(), "")
    sig = lower.get(SIGNATURE_HEADER.lower(), "")
    try:
        age = abs((time.time() if now is None else now) - float(ts))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sig, signature(secret, ts, body))


@dataclass(frozen=True)
class Outcome:
    ok: bool
    permanent: bool = False
    error: str = ""


class Webhook:
    def __init__(self, url: str, secret: bytes, *, timeout_s: float = 10, max_backoff_s: float = 60,
                 ca_file: Path | None = None):
        if not secret:
            raise ValueError("webhook secret is empty")
        self.url = url
        self._secret = secret
        self.max_backoff_s = max_backoff_s
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        self._client = httpx.Client(timeout=timeout_s, verify=verify)
        self._lock = threading.Lock()

    @classmethod
    def from_files(cls, url: str, secret_file: Path | None, **kw) -> Webhook:
        if secret_file is None:
            raise ValueError("webhook.url is set but webhook.secret_file is not")
        try:
            secret = Path(secret_file).read_bytes().strip()
        except FileNotFoundError as e:
            raise ValueError(f"webhook.secret_file {secret_file}: not found") from e
        return cls(url, secret, **kw)

    def post(self, body: dict, msg_id: str) -> Outcome:
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        ts = f"{time.time():.3f}"
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: msg_id,
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: signature(self._secret, ts, data),
        }
        try:
            with self._lock:
                r = self._client.post(self.url, content=data, headers=headers)
        except httpx.HTTPError as e:
            return Outcome(False, error=f"{type(e).__name__}: {e}")
        if 200 <= r.status_code < 300 or r.status_code == 409:
            return Outcome(True)
        permanent = 400 <= r.status_code < 500 and r.status_code not in _TRANSIENT_4XX
        return Outcome(False, permanent=permanent, error=f"HTTP {r.status_code}")

    def backoff(self, attempt: int) -> float:
        """Seconds before retry ``attempt`` (1-based): exponential, capped, jittered."""
        return min(self.max_backoff_s, 0.5 * 2 ** min(attempt, 20)) * random.uniform(0.5, 1.0)

    def close(self) -> None:
        self._client.close()
