"""Encrypted answer recordings: video as JPEG frames and audio as PCM, each chunk sealed
with AES-GCM under the device's "media" key, written on a background thread.

Nothing here ever writes a plaintext frame or sample to disk; a file that is cut short
(power loss) or tampered with fails to open instead of returning partial data silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import struct
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

MAGIC = b"IKMEDIA1"
_REC = struct.Struct(">I")       # ciphertext length
_TS = struct.Struct(">d")        # chunk timestamp (seconds from the recording's start)


class MediaError(Exception):
    """A recording that cannot be read: wrong key, tampered, truncated."""


def _aad(file_id: bytes, index: int, final: bool) -> bytes:
    # Binds every chunk to its file and position, and marks the last one, so chunks cannot be
    # reordered, spliced between files, or dropped from the end unnoticed.
    return file_id + struct.pack(">QB", index, 1 if final else 0)


@dataclass(frozen=True)
class MediaInfo:
    id: str
    kind: str           # "video" | "audio"
    path: str
    size: int
    sha256: str
    chunks: int
    duration_s: float

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "path": self.path, "size": self.size,
                "sha256": self.sha256, "chunks": self.chunks, "duration_s": round(self.duration_s, 3)}


class EncryptedMediaWriter:
    """Append-only encrypted recording. `add()` never blocks the caller: chunks are encoded
    and sealed on the writer's own thread. `close()` waits for the queue and seals the end."""

    def __init__(self, path: Path, key: bytes, kind: str, meta: dict | None = None,
                 *, max_queue: int = 256) -> None:
        if len(key) != 32:
            raise ValueError("media key must be 32 bytes")
        self.path = Path(path)
        self.kind = kind
        self.id = str(uuid.uuid4())
        self._aes = AESGCM(key)
        self._file_id = uuid.UUID(self.id).bytes
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fh = open(self.path, "xb")  # noqa: SIM115 - closed in close()/abort()
        os.chmod(self.path, 0o600)
        header = json.dumps({"kind": kind, "id": self.id, **(meta or {})}).encode()
        self._fh.write(MAGIC + _REC.pack(len(header)) + header)
        self._sha = hashlib.sha256(MAGIC + _REC.pack(len(header)) + header)
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._index = 0
        self._pending: bytes | None = None   # held back one chunk so the last can be flagged final
        self._t0: float | None = None
        self._last_ts = 0.0
        self.dropped = 0
        self._closed = False
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"media-{kind}", daemon=True)
        self._thread.start()

    def add(self, payload, ts: float) -> None:
        """Queue one chunk (a BGR frame for video, int16 PCM for audio) taken at `ts`."""
        if self._closed:
            return
        try:
            self._queue.put_nowait((payload, ts))
        except queue.Full:
            self.dropped += 1  # the disk is too slow: drop a frame rather than stall capture

    def _encode(self, payload) -> bytes:
        if self.kind == "video":
            import cv2

            ok, jpg = cv2.imencode(".jpg", payload, [cv2.IMWRITE_JPEG_QUALITY, 80])
            if not ok:
                raise MediaError("JPEG encoding failed")
            return jpg.tobytes()
        return np.asarray(payload, dtype=np.int16).tobytes()

    def _seal(self, plain: bytes, final: bool) -> None:
        nonce = os.urandom(12)
        ct = self._aes.encrypt(nonce, plain, _aad(self._file_id, self._index, final))
        rec = _REC.pack(len(ct)) + nonce + ct
        self._fh.write(rec)
        self._sha.update(rec)
        self._index += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            payload, ts = item
            try:
                if self._t0 is None:
                    self._t0 = ts
                self._last_ts = ts
                plain = _TS.pack(ts - self._t0) + self._encode(payload)
                if self._pending is not None:
                    self._seal(self._pending, final=False)
                self._pending = plain
            except Exception as exc:  # keep draining so close() never hangs
                self._error = exc
                log.exception("recording %s chunk failed", self.kind)

    def close(self) -> MediaInfo:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            # An empty recording still gets a sealed end marker.
            self._seal(self._pending if self._pending is not None else _TS.pack(0.0), final=True)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        if self._error is not None:
            raise MediaError(f"recording {self.path.name} failed: {self._error}")
        return MediaInfo(self.id, self.kind, str(self.path), self.path.stat().st_size,
                         self._sha.hexdigest(), self._index,
                         (self._last_ts - self._t0) if self._t0 is not None else 0.0)

    def abort(self) -> None:
        """Stop and delete the file (an answer that was not completed)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
            self._fh.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def read_media(path: Path, key: bytes) -> tuple[dict, Iterator[tuple[float, bytes]]]:
    """The header and an iterator of (seconds from start, chunk bytes): JPEG for video, int16
    PCM for audio. Raises MediaError on a wrong key, tampering or truncation."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise MediaError(f"{path}: not an encrypted kiosk recording")
    (hlen,) = _REC.unpack_from(data, len(MAGIC))
    pos = len(MAGIC) + _REC.size
    header = json.loads(data[pos:pos + hlen])
    pos += hlen
    aes = AESGCM(key)
    file_id = uuid.UUID(header["id"]).bytes

    def chunks() -> Iterator[tuple[float, bytes]]:
        p, index, saw_final = pos, 0, False
        while p < len(data):
            if saw_final:
                raise MediaError(f"{path}: data after the final chunk")
            (clen,) = _REC.unpack_from(data, p)
            nonce = data[p + 4:p + 16]
            ct = data[p + 16:p + 16 + clen]
            if len(ct) != clen:
                raise MediaError(f"{path}: truncated at chunk {index}")
            p += 16 + clen
            final = p >= len(data)
            try:
                plain = aes.decrypt(nonce, ct, _aad(file_id, index, final))
            except Exception:
                raise MediaError(f"{path}: chunk {index} does not authenticate (wrong key, tampered or truncated)") from None
            saw_final = final
            index += 1
            (ts,) = _TS.unpack_from(plain, 0)
            yield ts, plain[_TS.size:]
        if not saw_final:
            raise MediaError(f"{path}: recording has no end (truncated)")

    return header, chunks()


def decrypt_audio(path: Path, key: bytes) -> np.ndarray:
    """The whole audio recording as int16 PCM (for export and tests)."""
    _, it = read_media(path, key)
    parts = [np.frombuffer(b, dtype=np.int16) for _, b in it if b]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)
