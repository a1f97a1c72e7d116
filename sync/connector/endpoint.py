"""The connector's HTTPS endpoint (mutual TLS): fallback records from devices that cannot
reach the broker, and resumable answer-clip uploads stored encrypted (AES-GCM) at rest.
A device may only write under its own id (the CN of its client certificate); nothing is
acknowledged before it is stored.

Routes (under any prefix, e.g. ``/kiosk/v1``):
  POST  <prefix>/<tenant>/<device>/up/<kind>      record body (JSON); X-Message-Id, X-Created
  POST  <prefix>/<tenant>/<device>/clips/<id>     clip metadata {length, sha256, ...} → offset
  HEAD  <prefix>/<tenant>/<device>/clips/<id>     Upload-Offset / Upload-Length
  PATCH <prefix>/<tenant>/<device>/clips/<id>     chunk at Upload-Offset → new Upload-Offset
  GET   <prefix>/health
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sync.connector.ingest import UP_KINDS, Ingest, RejectedMessage, decode_body
from sync.connector.settings import HttpsServerSection

log = logging.getLogger(__name__)

_UP = re.compile(r"/(?P<tenant>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})/(?P<device>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})/up/(?P<kind>[a-z]+)$")
_CLIP = re.compile(r"/(?P<tenant>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})/(?P<device>[A-Za-z0-9][A-Za-z0-9_.\-]{0,63})/clips/(?P<clip>[A-Za-z0-9_.\-]{1,128})$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_REC = struct.Struct(">I")  # length of one encrypted chunk record (nonce + ciphertext)


def clip_key(db_key: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"interview-hr clips").derive(db_key)


class ClipFile:
    """A clip on disk as a sequence of AES-GCM records, one per uploaded chunk."""

    def __init__(self, path: Path, key: bytes, clip_id: str):
        self.path = Path(path)
        self._aead = AESGCM(key)
        self._aad = clip_id.encode()

    def _records(self):
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            pos = 0
            while True:
                head = f.read(_REC.size)
                if len(head) < _REC.size:
                    return
                (n,) = _REC.unpack(head)
                blob = f.read(n)
                if len(blob) < n:
                    return
                yield pos, pos + _REC.size + n, blob
                pos += _REC.size + n

    def truncate_to(self, plain_bytes: int) -> None:
        """Drop anything after ``plain_bytes`` (a chunk written before a crash, not recorded)."""
        total, end = 0, 0
        for _start, stop, blob in self._records():
            size = len(blob) - 12 - 16
            if total + size > plain_bytes:
                break
            total += size
            end = stop
        if total != plain_bytes:
            raise ValueError(f"clip file {self.path.name} holds {total} bytes, DB says {plain_bytes}")
        if self.path.exists() and self.path.stat().st_size != end:
            with self.path.open("r+b") as f:
                f.truncate(end)

    def append(self, chunk: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        nonce = os.urandom(12)
        blob = nonce + self._aead.encrypt(nonce, chunk, self._aad)
        with self.path.open("ab") as f:
            f.write(_REC.pack(len(blob)) + blob)
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> bytes:
        return b"".join(self._aead.decrypt(b[:12], b[12:], self._aad) for _, _, b in self._records())


def peer_common_name(sock) -> str | None:
    cert = sock.getpeercert() if hasattr(sock, "getpeercert") else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that vanished mid-request is routine (it resumes later); one line, no trace.
        import sys

        log.info("https: connection from %s ended: %s", client_address[0], sys.exc_info()[1])


class Endpoint:
    """Owns the HTTPS server thread."""

    def __init__(self, cfg: HttpsServerSection, ingest: Ingest, clip_dir: Path, clip_key: bytes):
        self.cfg = cfg
        self.ingest = ingest
        self.clip_dir = Path(clip_dir)
        self.clip_key = clip_key
        self._clip_locks: dict[str, threading.Lock] = {}
        self.active: set = set()  # open client sockets, closed on stop()
        self._locks_lock = threading.Lock()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
        ctx.load_verify_locations(str(cfg.ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
        endpoint = self

        class Handler(_Handler):
            ep = endpoint

        self.server = _Server((cfg.listen_host, cfg.port), Handler)
        self.server.daemon_threads = True
        # The TLS handshake happens in the request thread (setup), so one slow client
        # cannot stall the accept loop.
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True,
                                             do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="hr-https", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        # Keep-alive connections would otherwise outlive the server in their threads.
        for sock in list(self.active):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def clip_lock(self, clip_id: str) -> threading.Lock:
        with self._locks_lock:
            return self._clip_locks.setdefault(clip_id, threading.Lock())


class _Handler(BaseHTTPRequestHandler):
    ep: Endpoint
    protocol_version = "HTTP/1.1"
    server_version = "interview-hr"

    def setup(self) -> None:
        self.request.settimeout(30)
        try:
            self.request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            log.info("TLS handshake from %s refused: %s", self.client_address[0], e)
            raise
        self.ep.active.add(self.request)
        super().setup()

    def finish(self) -> None:
        self.ep.active.discard(self.request)
        super().finish()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        log.debug("https %s: " + format, self.client_address[0], *args)

    # --- plumbing -----------------------------------------------------------------------

    def _reply(self, code: int, body: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body or {}, ensure_ascii=False).encode() if self.command != "HEAD" else b""
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)) if self.command != "HEAD" else "0")
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _body(self, limit: int) -> bytes | None:
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._reply(400, {"error": "bad Content-Length"})
            return None
        if n > limit:
            self._reply(413, {"error": f"body of {n} bytes is over the {limit}-byte limit"})
            self.close_connection = True
            return None
        data = self.rfile.read(n)
        if len(data) != n:
            self.close_connection = True
            return None  # the client went away mid-body; nothing stored
        return data

    def _route(self, pattern: re.Pattern) -> re.Match | None:
        path = self.path.split("?", 1)[0]
        m = pattern.search(path)
        if not m:
            self._reply(404, {"error": f"no such resource {path}"})
            return None
        cn = peer_common_name(self.connection)
        if cn != m["device"]:
            log.warning("https: certificate %r tried to write as device %r", cn, m["device"])
            self._reply(403, {"error": f"client certificate {cn!r} may not write as {m['device']!r}"})
            return None
        return m

    # --- records ------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/health"):
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        if _CLIP.search(self.path.split("?", 1)[0]):
            return self._clip_create()
        m = self._route(_UP)
        if not m:
            return
        body = self._body(self.ep.cfg.max_record_bytes)
        if body is None:
            return
        kind = m["kind"]
        try:
            if kind not in UP_KINDS:
                raise RejectedMessage(f"unknown kind {kind!r}")
            payload = decode_body(body, self.path, self.ep.cfg.max_record_bytes)
            created = self.headers.get("X-Created")
            res = self.ep.ingest.accept(
                kind=kind, tenant=m["tenant"], device_id=m["device"], payload=payload, via="https",
                msg_id=self.headers.get("X-Message-Id"),
                created=float(created) if created else None, retry=False,
            )
        except (RejectedMessage, ValueError) as e:
            self.ep.ingest.reject("https", self.path, str(e), len(body))
            return self._reply(400, {"error": str(e)})
        if res.ok:
            return self._reply(200, {"stored": True, "new": res.new})
        return self._reply(503, {"error": f"stored, not yet forwarded: {res.error}"}, {"Retry-After": 10})

    # --- clips --------------------------------------------------------------------------

    def _clip_file(self, clip: dict) -> ClipFile:
        return ClipFile(Path(clip["path"]), self.ep.clip_key, clip["id"])

    def _clip_create(self) -> None:
        m = self._route(_CLIP)
        if not m:
            return
        body = self._body(64 * 1024)
        if body is None:
            return
        try:
            meta = decode_body(body, self.path, 64 * 1024)
            length = meta.get("length")
            sha = meta.get("sha256")
            if not isinstance(length, int) or length < 0 or length > self.ep.cfg.max_clip_bytes:
                raise RejectedMessage(f"length must be an integer 0..{self.ep.cfg.max_clip_bytes}")
            if not isinstance(sha, str) or not _SHA.match(sha):
                raise RejectedMessage("sha256 must be 64 lowercase hex digits")
        except RejectedMessage as e:
            self.ep.ingest.reject("https", self.path, str(e), len(body))
            return self._reply(400, {"error": str(e)})
        clip_id = m["clip"]
        path = self.ep.clip_dir / m["tenant"] / m["device"] / f"{clip_id}.enc"
        with self.ep.clip_lock(clip_id):
            self.ep.ingest.db.create_clip(id=clip_id, tenant=m["tenant"], device_id=m["device"],
                                          meta=meta, length=length, sha256=sha, path=str(path))
            clip = self.ep.ingest.db.clip(clip_id)
            assert clip is not None
            if clip["device_id"] != m["device"]:
                log.error("clip %s from %s: a clip with this id is stored from %s; not replaced",
                          clip_id, m["device"], clip["device_id"])
                return self._reply(409, {"error": "a clip with this id exists from another device"})
            if clip["sha256"] != sha or clip["length"] != length:
                if clip["completed"]:
                    # A stored clip is never replaced: HR may already have exported it.
                    log.error("clip %s from %s: a different completed clip with this id is stored;"
                              " not replaced", clip_id, m["device"])
                    return self._reply(409, {"error": "a different completed clip with this id is "
                                             "stored; not replaced"})
                # Not completed: the device resealed the recording (HR rotated the clip key
                # mid-upload). The partial bytes belong to the old sealing: drop them, restart.
                self._clip_file(clip).path.unlink(missing_ok=True)
                self.ep.ingest.db.restart_clip(id=clip_id, meta=meta, length=length, sha256=sha)
                log.info("clip %s from %s: upload restarted for a new sealing (%d of %d bytes of"
                         " the old one dropped)", clip_id, m["device"], clip["received_bytes"],
                         clip["length"])
                clip = self.ep.ingest.db.clip(clip_id)
                assert clip is not None
            if length == 0 and not clip["completed"]:
                self.ep.ingest.db.set_clip_progress(clip_id, 0, time.time())
                clip = self.ep.ingest.db.clip(clip_id)
        self._reply(200, {"offset": clip["received_bytes"], "complete": bool(clip["completed"])},
                    {"Upload-Offset": clip["received_bytes"], "Upload-Length": clip["length"]})

    def do_HEAD(self) -> None:
        m = self._route(_CLIP)
        if not m:
            return
        clip = self.ep.ingest.db.clip(m["clip"])
        if not clip or clip["device_id"] != m["device"]:
            return self._reply(404)
        self._reply(200, None, {"Upload-Offset": clip["received_bytes"], "Upload-Length": clip["length"],
                                "Upload-Complete": "1" if clip["completed"] else "0"})

    def do_PATCH(self) -> None:
        m = self._route(_CLIP)
        if not m:
            return
        clip_id = m["clip"]
        try:
            offset = int(self.headers.get("Upload-Offset", ""))
        except ValueError:
            return self._reply(400, {"error": "Upload-Offset header missing or not an integer"})
        body = self._body(self.ep.cfg.max_chunk_bytes)
        if body is None:
            return
        db = self.ep.ingest.db
        with self.ep.clip_lock(clip_id):
            clip = db.clip(clip_id)
            if not clip or clip["device_id"] != m["device"]:
                return self._reply(404, {"error": "create the clip first (POST)"})
            have = clip["received_bytes"]
            if clip["completed"] or offset != have:
                return self._reply(409, {"error": f"offset {offset} but {have} bytes received"},
                                   {"Upload-Offset": have})
            if have + len(body) > clip["length"]:
                return self._reply(400, {"error": "chunk runs past the declared length"})
            f = self._clip_file(clip)
            f.truncate_to(have)
            f.append(body)
            have += len(body)
            completed = None
            if have == clip["length"]:
                digest = hashlib.sha256(f.read()).hexdigest()
                if digest != clip["sha256"]:
                    # Corrupted in transit or on the device: start over rather than keep it.
                    f.path.unlink(missing_ok=True)
                    db.set_clip_progress(clip_id, 0)
                    log.error("clip %s: sha256 mismatch; upload restarts", clip_id)
                    return self._reply(422, {"error": "sha256 does not match; upload again"},
                                       {"Upload-Offset": 0})
                completed = time.time()
            db.set_clip_progress(clip_id, have, completed)
        self._reply(200, {"offset": have, "complete": completed is not None}, {"Upload-Offset": have})
