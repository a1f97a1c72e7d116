"""The device's secrets: the master key, keys derived from it, and small sealed secrets.

Everything encrypted on the device hangs off master.key (0600 in a 0700 directory), so
destroying it destroys the data (crypto-shred). Never log, print or copy a key.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_FILE = "master.key"
SECRETS_SUBDIR = "secrets"
KEY_BYTES = 32
PURPOSES = ("store", "media", "secrets", "audit")
_SEALED_MAGIC = b"IKS1"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,63}$")


class DeviceKeyError(Exception):
    """Base of the key errors (files on disk, not the builtin KeyError)."""


class MasterKeyMissing(DeviceKeyError, FileNotFoundError):
    """No master key: the device was never initialised, or it was wiped."""


class KeyFileUnsafe(DeviceKeyError, PermissionError):
    """The master key is readable by others or has the wrong size: refuse to use it."""


class SecretMissing(DeviceKeyError, FileNotFoundError):
    """A sealed secret that was never stored."""


class SecretTampered(DeviceKeyError, ValueError):
    """A sealed secret that does not decrypt: wrong key or an edited file."""


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write a 0600 file atomically (tmp + rename), or exclusively (refuse if it exists)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if exclusive:
        fd = os.open(path, flags, 0o600)
        target = path
    else:
        target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(target, flags, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if target != path:
        os.replace(target, path)
    _fsync_dir(path.parent)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_dir(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)


def create_master_key(key_dir: Path) -> bytes:
    """Create key_dir/master.key (32 random bytes, 0600; dir 0700). Refuses to overwrite."""
    key_dir = Path(key_dir)
    _private_dir(key_dir)
    path = key_dir / MASTER_KEY_FILE
    if path.exists():
        raise FileExistsError(
            f"{path} already exists; refusing to overwrite the device's master key"
        )
    key = secrets.token_bytes(KEY_BYTES)
    _write_private(path, key, exclusive=True)
    return key


def load_master_key(key_dir: Path) -> bytes:
    """Read the master key; MasterKeyMissing / KeyFileUnsafe with what to do about it."""
    path = Path(key_dir) / MASTER_KEY_FILE
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MasterKeyMissing(
            f"no master key at {path}: run `kiosk-provision init` (or the device was wiped)"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileUnsafe(
            f"{path} is accessible to other users (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}` and check who could have read it"
        )
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise KeyFileUnsafe(f"{path} has {len(key)} bytes, expected {KEY_BYTES}: damaged key file")
    return key


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose (HKDF-SHA256), so one leaked sub-key exposes nothing else."""
    if len(master) != KEY_BYTES:
        raise ValueError(f"master key must be {KEY_BYTES} bytes")
    if not purpose:
        raise ValueError("purpose must be a non-empty string")
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=b"interview-kiosk/v1/" + purpose.encode("utf-8"),
    ).derive(master)


def shred_keys(key_dir: Path) -> list[Path]:
    """Overwrite and delete the master key and sealed secrets: the data becomes unreadable.

    Returns the files destroyed. Overwriting is best effort on flash/journaled storage;
    deleting the only copy of the key is what makes the encrypted data unrecoverable.
    """
    key_dir = Path(key_dir)
    destroyed: list[Path] = []
    candidates = [key_dir / MASTER_KEY_FILE]
    sdir = key_dir / SECRETS_SUBDIR
    if sdir.is_dir():
        candidates += sorted(p for p in sdir.iterdir() if p.is_file())
    for p in candidates:
        if not p.exists():
            continue
        size = p.stat().st_size
        with open(p, "r+b", buffering=0) as f:
            f.write(secrets.token_bytes(max(size, 1)))
            os.fsync(f.fileno())
        p.unlink()
        destroyed.append(p)
    if destroyed:
        _fsync_dir(key_dir)
    return destroyed


class SecretBox:
    """Small secrets (the WeCom app secret, MQTT password) sealed with AES-GCM under
    key_dir/secrets/<name>, keyed by derive_key(master, "secrets")."""

    def __init__(self, key_dir: Path, master: bytes):
        self.dir = Path(key_dir) / SECRETS_SUBDIR
        self._aead = AESGCM(derive_key(master, "secrets"))

    def _path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(
                f"secret name {name!r}: expected lowercase letters, digits, '.', '_', '-'"
            )
        return self.dir / name

    def seal(self, name: str, data: bytes) -> None:
        path = self._path(name)
        _private_dir(self.dir)
        nonce = secrets.token_bytes(12)
        # The name is authenticated, so a sealed file renamed to another secret won't open.
        blob = _SEALED_MAGIC + nonce + self._aead.encrypt(nonce, data, name.encode())
        _write_private(path, blob, exclusive=False)

    def open(self, name: str) -> bytes:
        path = self._path(name)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise SecretMissing(f"secret {name!r} is not stored in {self.dir}") from None
        if not blob.startswith(_SEALED_MAGIC) or len(blob) < 4 + 12 + 16:
            raise SecretTampered(f"{path} is not a sealed secret")
        try:
            return self._aead.decrypt(blob[4:16], blob[16:], name.encode())
        except InvalidTag:
            raise SecretTampered(f"{path} does not decrypt with this device's key") from None

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def delete(self, name: str) -> bool:
        path = self._path(name)
        if path.exists():
            path.unlink()
            return True
        return False
