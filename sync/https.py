"""The device's HTTPS uplink (mutual TLS, httpx): the fallback transport for records when
the broker is unreachable, and resumable chunked upload of answer clips. A record counts as
delivered only on a 2xx; it never sends a clip's bytes in the clear (TLS, and the file is
the kiosk's AES-GCM-encrypted recording as stored).
"""

from __future__ import annotations

import hashlib
import json
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024


def tls_context(ca_file, cert_file=None, key_file=None) -> ssl.SSLContext:
    """Verify the server against the site CA; present the device certificate (mutual TLS)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file and key_file:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


class UplinkError(Exception):
    """Delivery over HTTPS failed. ``permanent``: the server will never take this body.
    ``conflict``: the server holds a different completed clip under this id (never replaced)."""

    def __init__(self, message: str, *, permanent: bool = False, conflict: bool = False,
                 status: int | None = None):
        super().__init__(message)
        self.permanent = permanent or conflict
        self.conflict = conflict
        self.status = status  # the HTTP status, when the server answered


class HttpsUplink:
    def __init__(self, settings, *, client: httpx.Client | None = None):
        hs = settings.sync.https
        dev = settings.device
        self.base = f"{hs.base_url.rstrip('/')}/{dev.tenant}/{dev.id}"
        if client is None:
            client = httpx.Client(timeout=hs.timeout_s, verify=tls_context(
                hs.ca_file, hs.cert_file, hs.key_file))
        self.client = client
        self._lock = threading.Lock()  # one httpx.Client, used from the daemon and clip threads

    def close(self) -> None:
        self.client.close()

    def _request(self, method: str, url: str, **kw) -> httpx.Response:
        try:
            with self._lock:
                return self.client.request(method, url, **kw)
        except httpx.HTTPError as e:
            raise UplinkError(f"{method} {url}: {type(e).__name__}: {e}") from None

    @staticmethod
    def _check(r: httpx.Response, what: str) -> None:
        if 200 <= r.status_code < 300:
            return
        try:
            detail = r.json().get("error", "")
        except (ValueError, AttributeError):
            detail = ""
        permanent = r.status_code in (400, 403, 404, 413, 422)
        raise UplinkError(f"{what}: HTTP {r.status_code} {detail}".strip(), permanent=permanent,
                          status=r.status_code)

    # --- records -------------------------------------------------------------------------

    def post_record(self, kind: str, body: bytes, *, msg_id: str, created: float | None) -> None:
        headers = {"Content-Type": "application/json", "X-Message-Id": msg_id}
        if created is not None:
            headers["X-Created"] = f"{created:.6f}"
        r = self._request("POST", f"{self.base}/up/{kind}", content=body, headers=headers)
        self._check(r, f"{kind} {msg_id}")

    # --- clips ----------------------------------------------------------------------------

    def upload_clip(
        self, clip_id: str, path: Path, meta: dict, *, chunk_bytes: int = CHUNK_BYTES,
        on_progress: Callable[[int, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Upload ``path`` resumably: ask the server how much it has, send the rest in
        chunks. Returns the offset the upload started from (0 = from scratch)."""
        path = Path(path)
        try:
            data_len = path.stat().st_size
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except FileNotFoundError:
            raise UplinkError(f"clip {clip_id}: file {path.name} is missing", permanent=True) from None
        url = f"{self.base}/clips/{clip_id}"
        body = json.dumps({**meta, "length": data_len, "sha256": h.hexdigest()}).encode()
        r = self._request("POST", url, content=body, headers={"Content-Type": "application/json"})
        if r.status_code == 409:
            # The connector restarts an unfinished upload of a resealed file itself; a 409
            # here means a different clip is stored complete under this id. Retrying cannot
            # change that.
            try:
                detail = r.json().get("error", "")
            except (ValueError, AttributeError):
                detail = ""
            raise UplinkError(f"clip {clip_id}: HTTP 409 {detail}".strip(), conflict=True)
        self._check(r, f"clip {clip_id}")
        state = r.json()
        offset = int(state.get("offset", 0))
        start = offset
        if state.get("complete"):
            return start
        with path.open("rb") as f:
            while offset < data_len:
                if stop is not None and stop.is_set():
                    raise UplinkError(f"clip {clip_id}: stopped at {offset}/{data_len}")
                f.seek(offset)
                chunk = f.read(chunk_bytes)
                r = self._request("PATCH", url, content=chunk, headers={
                    "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream",
                })
                if r.status_code == 409 and "Upload-Offset" in r.headers:
                    offset = int(r.headers["Upload-Offset"])  # server knows better; resume there
                    continue
                if r.status_code == 422:
                    raise UplinkError(f"clip {clip_id}: server checksum mismatch; will re-send")
                self._check(r, f"clip {clip_id} at {offset}")
                offset = int(r.headers.get("Upload-Offset", offset + len(chunk)))
                if on_progress is not None:
                    on_progress(offset, data_len)
        return start
