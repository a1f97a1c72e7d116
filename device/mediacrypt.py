"""The encrypted answer-recording file format (IKMEDIA2), shared by the kiosk (writer), the
sync daemon (ships the bytes, adds HR's key wrap) and the HR connector (decrypts for HR).
Qt-free. It never writes or returns a content key or plaintext chunk except to its caller.

Each file has its own random content key (CEK). The header carries the CEK wrapped for the
device (AES-GCM under the device's "media" key) and, when known, for HR (X25519 ECDH with an
ephemeral key + HKDF-SHA256 + AES-GCM); HR's X25519 private key never reaches the device,
the device's media key never reaches HR. Chunks are AES-GCM under the CEK, bound to the
file id, their index and a final flag; the wraps are bound to the file id and the header
metadata, so neither chunks nor metadata can be spliced, reordered, cut or altered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"IKMEDIA2"
LEGACY_MAGIC = b"IKMEDIA1"     # chunks directly under the device key; still readable by the device
REC = struct.Struct(">I")      # header length / ciphertext length
TS = struct.Struct(">d")       # chunk timestamp (seconds from the recording's start)
HR_ALG = "X25519-HKDF-SHA256-A256GCM"
_KEYS = "keys"                 # header field holding the wraps (not part of the bound metadata)


class MediaError(Exception):
    """A recording that cannot be read: wrong key, tampered, truncated, not wrapped for you."""


def chunk_aad(file_id: bytes, index: int, final: bool) -> bytes:
    # Binds every chunk to its file and position, and marks the last one, so chunks cannot be
    # reordered, spliced between files, or dropped from the end unnoticed.
    return file_id + struct.pack(">QB", index, 1 if final else 0)


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode(), validate=True)


def _meta_digest(header: dict) -> bytes:
    meta = {k: v for k, v in header.items() if k != _KEYS}
    return hashlib.sha256(json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()).digest()


def _wrap_aad(header: dict, who: bytes) -> bytes:
    return uuid.UUID(header["id"]).bytes + who + _meta_digest(header)


# --- HR clip key -------------------------------------------------------------------------

def generate_clip_key(private_path: Path, public_path: Path) -> str:
    """Create HR's X25519 clip key pair (private PEM 0600, public PEM); returns the public PEM."""
    key = X25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    private_path = Path(private_path)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = clip_public_pem(key.public_key())
    Path(public_path).write_text(pub)
    return pub


def clip_public_pem(key: X25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_clip_public_key(pem: str | bytes) -> X25519PublicKey:
    k = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(k, X25519PublicKey):
        raise ValueError("not an X25519 public key (the HR clip key)")
    return k


def load_clip_private_key(path: Path) -> X25519PrivateKey:
    k = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(k, X25519PrivateKey):
        raise ValueError(f"{path}: not an X25519 private key (the HR clip key)")
    return k


def key_id(pub: X25519PublicKey) -> str:
    """Short fingerprint naming which HR key a wrap is for (sha256 of the raw key, 16 hex)."""
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _hr_kek(shared: bytes, epk: bytes, rpk: bytes, file_id: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=epk + rpk,
                info=b"IKMEDIA2 hr clip key wrap " + file_id).derive(shared)


def _wrap_hr(header: dict, cek: bytes, hr_pub: X25519PublicKey) -> dict:
    eph = X25519PrivateKey.generate()
    epk = eph.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    rpk = hr_pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    file_id = uuid.UUID(header["id"]).bytes
    kek = _hr_kek(eph.exchange(hr_pub), epk, rpk, file_id)
    nonce = os.urandom(12)
    ct = AESGCM(kek).encrypt(nonce, cek, _wrap_aad(header, b"hr"))
    return {"alg": HR_ALG, "kid": key_id(hr_pub), "epk": _b64(epk), "nonce": _b64(nonce), "ct": _b64(ct)}


def _wrap_device(header: dict, cek: bytes, device_key: bytes) -> dict:
    nonce = os.urandom(12)
    ct = AESGCM(device_key).encrypt(nonce, cek, _wrap_aad(header, b"device"))
    return {"alg": "A256GCM", "nonce": _b64(nonce), "ct": _b64(ct)}


def unwrap_device(header: dict, device_key: bytes) -> bytes:
    w = (header.get(_KEYS) or {}).get("device")
    if not w:
        raise MediaError("recording has no device key wrap")
    try:
        return AESGCM(device_key).decrypt(_unb64(w["nonce"]), _unb64(w["ct"]), _wrap_aad(header, b"device"))
    except Exception:
        raise MediaError("content key does not unwrap with this device key (wrong key or tampered header)") from None


def unwrap_hr(header: dict, hr_key: X25519PrivateKey) -> bytes:
    w = (header.get(_KEYS) or {}).get("hr")
    if not w:
        raise MediaError("recording is not sealed for HR (no HR clip key on the device yet)")
    pub = hr_key.public_key()
    if w.get("kid") != key_id(pub):
        raise MediaError(f"recording is sealed for HR clip key {w.get('kid')}, not this one ({key_id(pub)})")
    try:
        epk = _unb64(w["epk"])
        rpk = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        kek = _hr_kek(hr_key.exchange(X25519PublicKey.from_public_bytes(epk)), epk, rpk,
                      uuid.UUID(header["id"]).bytes)
        return AESGCM(kek).decrypt(_unb64(w["nonce"]), _unb64(w["ct"]), _wrap_aad(header, b"hr"))
    except Exception:
        raise MediaError("content key does not unwrap with this HR key (tampered header)") from None


# --- writing ---------------------------------------------------------------------------

class SealedWriter:
    """The file-format half of the kiosk's recorder: header with the key wraps, then sealed
    chunks appended in order. Not thread-safe; one writer thread calls it."""

    def __init__(self, fh, device_key: bytes, kind: str, meta: dict | None = None,
                 hr_public_key: X25519PublicKey | None = None, file_id: str | None = None) -> None:
        if len(device_key) != 32:
            raise ValueError("media key must be 32 bytes")
        self.id = file_id or str(uuid.uuid4())
        self._fid = uuid.UUID(self.id).bytes
        cek = AESGCM.generate_key(256)
        self._aes = AESGCM(cek)
        header: dict = {"kind": kind, "id": self.id, **(meta or {})}
        keys = {"device": _wrap_device(header, cek, device_key)}
        if hr_public_key is not None:
            keys["hr"] = _wrap_hr(header, cek, hr_public_key)
        header[_KEYS] = keys
        self.header = header
        raw = json.dumps(header).encode()
        head = MAGIC + REC.pack(len(raw)) + raw
        self._fh = fh
        fh.write(head)
        self.sha = hashlib.sha256(head)
        self.index = 0

    def seal(self, plain: bytes, final: bool) -> None:
        nonce = os.urandom(12)
        ct = self._aes.encrypt(nonce, plain, chunk_aad(self._fid, self.index, final))
        rec = REC.pack(len(ct)) + nonce + ct
        self._fh.write(rec)
        self.sha.update(rec)
        self.index += 1


# --- reading ---------------------------------------------------------------------------

def split(data: bytes, where: str = "recording") -> tuple[bytes, dict, int]:
    """(magic, header, offset of the first chunk record)."""
    magic = data[:len(MAGIC)]
    if magic not in (MAGIC, LEGACY_MAGIC):
        raise MediaError(f"{where}: not an encrypted kiosk recording")
    try:
        (hlen,) = REC.unpack_from(data, len(MAGIC))
        pos = len(MAGIC) + REC.size
        header = json.loads(data[pos:pos + hlen])
        uuid.UUID(header["id"])
    except Exception:
        raise MediaError(f"{where}: header is damaged") from None
    return magic, header, pos + hlen


def _chunks(data: bytes, pos: int, aes: AESGCM, file_id: bytes, where: str) -> Iterator[tuple[float, bytes]]:
    index, saw_final = 0, False
    while pos < len(data):
        if saw_final:
            raise MediaError(f"{where}: data after the final chunk")
        (clen,) = REC.unpack_from(data, pos)
        nonce = data[pos + 4:pos + 16]
        ct = data[pos + 16:pos + 16 + clen]
        if len(ct) != clen:
            raise MediaError(f"{where}: truncated at chunk {index}")
        pos += 16 + clen
        final = pos >= len(data)
        try:
            plain = aes.decrypt(nonce, ct, chunk_aad(file_id, index, final))
        except Exception:
            raise MediaError(f"{where}: chunk {index} does not authenticate (wrong key, tampered or truncated)") from None
        saw_final = final
        index += 1
        (ts,) = TS.unpack_from(plain, 0)
        yield ts, plain[TS.size:]
    if not saw_final:
        raise MediaError(f"{where}: recording has no end (truncated)")


def open_bytes(data: bytes, *, device_key: bytes | None = None,
               hr_key: X25519PrivateKey | None = None,
               where: str = "recording") -> tuple[dict, Iterator[tuple[float, bytes]]]:
    """The header (without the key wraps) and an iterator of (seconds from start, chunk bytes).
    Exactly one of ``device_key`` / ``hr_key``. Raises MediaError on a wrong key, tampering or
    truncation (a chunk that fails stops the iteration with the error, never partial data)."""
    magic, header, pos = split(data, where)
    file_id = uuid.UUID(header["id"]).bytes
    if magic == LEGACY_MAGIC:
        if device_key is None:
            raise MediaError(f"{where}: an IKMEDIA1 recording can only be read on its device")
        cek = device_key
    elif hr_key is not None:
        cek = unwrap_hr(header, hr_key)
    elif device_key is not None:
        try:
            cek = unwrap_device(header, device_key)
        except MediaError as e:
            raise MediaError(f"{where}: {e}") from None
    else:
        raise ValueError("open_bytes needs device_key or hr_key")
    public = {k: v for k, v in header.items() if k != _KEYS}
    return public, _chunks(data, pos, AESGCM(cek), file_id, where)


def hr_key_id(data: bytes) -> str | None:
    """Which HR clip key the recording is sealed for (None: not sealed for HR)."""
    _, header, _ = split(data)
    w = (header.get(_KEYS) or {}).get("hr")
    return w.get("kid") if w else None


def _read_head(path: Path) -> bytes:
    """Magic, header length and header of a recording file (the header only: recordings can
    be tens of MB)."""
    with Path(path).open("rb") as f:
        head = f.read(len(MAGIC) + REC.size)
        if len(head) == len(MAGIC) + REC.size and head[:len(MAGIC)] in (MAGIC, LEGACY_MAGIC):
            head += f.read(REC.unpack_from(head, len(MAGIC))[0])
    return head


def seal_for_hr(path: Path, device_key: bytes, hr_public_key: X25519PublicKey) -> bool:
    """Add (or replace) the HR wrap of a finished recording recorded before the HR clip key
    was known. Only the header changes; the file is replaced atomically. Returns True when
    it changed. Raises MediaError if the device key does not open it."""
    path = Path(path)
    magic, header, pos = split(_read_head(path), path.name)
    if magic != MAGIC:
        raise MediaError(f"{path.name}: IKMEDIA1 recording cannot be sealed for HR")
    if (header.get(_KEYS) or {}).get("hr", {}).get("kid") == key_id(hr_public_key):
        return False
    cek = unwrap_device(header, device_key)
    header[_KEYS]["hr"] = _wrap_hr(header, cek, hr_public_key)
    raw = json.dumps(header).encode()
    tmp = path.with_name(path.name + SEAL_TMP_SUFFIX)
    # A tmp left by a crash is ours and stale: remove it and create afresh (O_EXCL, so a
    # leftover of any kind, a symlink included, is never written through).
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f, path.open("rb") as src:
            f.write(MAGIC + REC.pack(len(raw)) + raw)
            src.seek(pos)
            shutil.copyfileobj(src, f, 1 << 20)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


SEAL_TMP_SUFFIX = ".tmp"
SEAL_TMP_STALE_S = 3600.0


def remove_stale_seal_tmp(media_dir: Path, *, max_age_s: float = SEAL_TMP_STALE_S,
                          now: float | None = None) -> int:
    """Delete ``<recording>.ikm.tmp`` files ``seal_for_hr`` left behind when the process died
    mid-write (encrypted, but litter retention never sees). Only those untouched for
    ``max_age_s``: a tmp being written now is younger. Returns how many were removed."""
    now = time.time() if now is None else now
    removed = 0
    for p in Path(media_dir).glob("*/*.ikm" + SEAL_TMP_SUFFIX):
        try:
            if p.is_file() and not p.is_symlink() and now - p.stat().st_mtime >= max_age_s:
                p.unlink()
                removed += 1
            elif p.is_symlink():
                p.unlink()   # never made by us; never followed
                removed += 1
        except FileNotFoundError:
            continue   # gone meanwhile (its sealing finished)
    return removed


# --- master key rotation ---------------------------------------------------------------

COPY_BLOCK = 1 << 20


@dataclass(frozen=True)
class Rewrapped:
    """What ``rewrap_device`` left on disk: whether it rewrote the file, and the file's
    length and sha256 now (for the ``media`` row)."""
    changed: bool
    size: int
    sha256: str


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path, progress: Callable[[int], None] | None) -> Rewrapped:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        for block in iter(lambda: f.read(COPY_BLOCK), b""):
            h.update(block)
            size += len(block)
            if progress is not None:
                progress(len(block))
    return Rewrapped(False, size, h.hexdigest())


def _legacy_chunks(src, end: int, old_key: bytes, file_id: bytes, where: str) -> Iterator[tuple[bytes, bool]]:
    """(plaintext, final) of an IKMEDIA1 file read record by record from ``src`` (positioned
    at the first record), checked under the old device key; MediaError on anything wrong."""
    aes = AESGCM(old_key)
    index, final = 0, False
    while src.tell() < end:
        rec = src.read(REC.size + 12)
        if len(rec) != REC.size + 12:
            raise MediaError(f"{where}: truncated at chunk {index}")
        (clen,) = REC.unpack_from(rec, 0)
        ct = src.read(clen)
        if len(ct) != clen:
            raise MediaError(f"{where}: truncated at chunk {index}")
        final = src.tell() >= end
        try:
            plain = aes.decrypt(rec[REC.size:], ct, chunk_aad(file_id, index, final))
        except Exception:
            raise MediaError(f"{where}: chunk {index} does not authenticate (wrong key, tampered "
                             "or truncated)") from None
        index += 1
        yield plain, final
    if not final:
        raise MediaError(f"{where}: recording has no end (truncated)")


def rewrap_device(path: Path, old_key: bytes, new_key: bytes, *,
                  progress: Callable[[int], None] | None = None) -> Rewrapped:
    """Re-seal a finished recording for a new device media key (master key rotation).

    IKMEDIA2: the content key is unwrapped with ``old_key`` and wrapped under ``new_key``;
    the HR wrap (X25519, independent of the device's keys) and the chunk bytes are copied
    unchanged. IKMEDIA1 (chunks directly under the old key): every chunk is re-encrypted
    under a fresh content key, giving an IKMEDIA2 file. Streams in 1 MiB blocks and calls
    ``progress(n)`` for every n bytes of the original processed.

    Crash-safe and idempotent: the new file is written beside it (``<file>.tmp``, O_EXCL,
    synced) and renamed over it, and the folder synced, so the path holds the old file or
    the new one, never a mix; a file that already opens with ``new_key`` (an interrupted
    rotation got to it) is only hashed. Raises MediaError when neither key opens it (the
    file is left as it is) and OSError when it cannot be written (the original stays)."""
    path = Path(path)
    tmp = path.with_name(path.name + SEAL_TMP_SUFFIX)
    # A tmp beside it was left by a crash (the rotation runs with the services stopped):
    # never trusted, never written through, removed even when this file is already done.
    tmp.unlink(missing_ok=True)
    magic, header, pos = split(_read_head(path), path.name)
    file_id = uuid.UUID(header["id"]).bytes
    if magic == MAGIC:
        try:
            unwrap_device(header, new_key)
        except MediaError:
            pass
        else:
            return _hash_file(path, progress)
        try:
            cek = unwrap_device(header, old_key)
        except MediaError as e:
            raise MediaError(f"{path.name}: {e}") from None
        header[_KEYS]["device"] = _wrap_device(header, cek, new_key)
        aes = None
    else:
        header = {k: v for k, v in header.items() if k != _KEYS}
        cek = AESGCM.generate_key(256)
        header[_KEYS] = {"device": _wrap_device(header, cek, new_key)}
        aes = AESGCM(cek)
    raw = json.dumps(header).encode()
    head = MAGIC + REC.pack(len(raw)) + raw
    h = hashlib.sha256(head)
    size = len(head)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f, path.open("rb") as src:
            f.write(head)
            if progress is not None:
                progress(pos)
            src.seek(pos)
            if aes is None:
                for block in iter(lambda: src.read(COPY_BLOCK), b""):
                    f.write(block)
                    h.update(block)
                    size += len(block)
                    if progress is not None:
                        progress(len(block))
            else:
                end = os.fstat(src.fileno()).st_size
                index = 0
                for plain, final in _legacy_chunks(src, end, old_key, file_id, path.name):
                    nonce = os.urandom(12)
                    ct = aes.encrypt(nonce, plain, chunk_aad(file_id, index, final))
                    rec = REC.pack(len(ct)) + nonce + ct
                    f.write(rec)
                    h.update(rec)
                    size += len(rec)
                    index += 1
                    if progress is not None:
                        progress(len(rec))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)   # the rename is durable before the caller retires the old key
    return Rewrapped(True, size, h.hexdigest())
