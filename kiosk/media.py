"""Encrypted answer recordings: video as JPEG frames and audio as PCM, each chunk sealed
with AES-GCM under the file's own content key (wrapped for the device's "media" key and for
HR's clip key; format in device/mediacrypt.py), written on a background thread.

Nothing here ever writes a plaintext frame or sample to disk; a file that is cut short
(power loss) or tampered with fails to open instead of returning partial data silently.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.mediacrypt import TS as _TS
from device.mediacrypt import MediaError, SealedWriter, open_bytes

log = logging.getLogger(__name__)

__all__ = ["EncryptedMediaWriter", "MediaError", "MediaInfo", "decrypt_audio", "read_media"]


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
                 *, max_queue: int = 256, hr_public_key=None) -> None:
        """``key``: the device's "media" key; ``hr_public_key``: HR's X25519 clip key when
        the device knows it (else the sync daemon seals for HR before upload)."""
        if len(key) != 32:
            raise ValueError("media key must be 32 bytes")
        self.path = Path(path)
        self.kind = kind
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fh = open(self.path, "xb")  # noqa: SIM115 - closed in close()/abort()
        os.chmod(self.path, 0o600)
        self._sealer = SealedWriter(self._fh, key, kind, meta, hr_public_key)
        self.id = self._sealer.id
        self.sealed_for_hr = hr_public_key is not None
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
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
        self._sealer.seal(plain, final)

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
                         self._sealer.sha.hexdigest(), self._sealer.index,
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
    PCM for audio, with the device's media key. Raises MediaError on a wrong key, tampering
    or truncation."""
    return open_bytes(Path(path).read_bytes(), device_key=key, where=str(path))


def decrypt_audio(path: Path, key: bytes) -> np.ndarray:
    """The whole audio recording as int16 PCM (for export and tests)."""
    _, it = read_media(path, key)
    parts = [np.frombuffer(b, dtype=np.int16) for _, b in it if b]
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)
