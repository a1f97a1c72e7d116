"""Ed25519 signatures for what the HR side sends to devices (downlink envelopes, invitations).

A document is signed over its canonical JSON without the ``signature`` field. This module
never accepts an unsigned document as valid and never logs key material.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

SIGNATURE_FIELD = "signature"


class SignatureError(Exception):
    """The document is unsigned, or its signature does not verify with the HR public key."""


class KeyFileError(Exception):
    """A signing or verification key file is missing or unreadable; names the file."""


def canonical_json(doc: Any) -> bytes:
    """Deterministic bytes for signing: sorted keys, no spaces, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def generate_signing_key(private_path: Path, public_path: Path | None = None) -> Ed25519PublicKey:
    """Write a new Ed25519 private key (PEM, 0600) and its public key; refuses to overwrite."""
    private_path = Path(private_path)
    if private_path.exists():
        raise KeyFileError(f"{private_path}: a signing key already exists; refusing to overwrite")
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    public_path = Path(public_path) if public_path else private_path.with_suffix(".pub")
    public_path.write_bytes(public_key_pem(key.public_key()))
    return key.public_key()


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError as e:
        raise KeyFileError(f"{path}: signing key not found") from e
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path_or_pem: Path | bytes | str) -> Ed25519PublicKey:
    """Load an Ed25519 public key from a PEM file path, or from PEM bytes/text."""
    if isinstance(path_or_pem, bytes | str) and (
        (b"BEGIN PUBLIC KEY" in path_or_pem) if isinstance(path_or_pem, bytes)
        else ("BEGIN PUBLIC KEY" in path_or_pem)
    ):
        pem = path_or_pem.encode() if isinstance(path_or_pem, str) else path_or_pem
        where = "public key PEM"
    else:
        where = str(path_or_pem)
        try:
            pem = Path(path_or_pem).read_bytes()
        except FileNotFoundError as e:
            raise KeyFileError(f"{where}: HR public key not found") from e
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as e:
        raise KeyFileError(f"{where}: not a PEM public key") from e
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{where}: not an Ed25519 public key")
    return key


def sign_bytes(key: Ed25519PrivateKey, data: bytes) -> str:
    """Return the base64 (standard, padded) Ed25519 signature of ``data``."""
    return base64.b64encode(key.sign(data)).decode("ascii")


def verify_bytes(key: Ed25519PublicKey, data: bytes, signature_b64: str) -> None:
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except (ValueError, TypeError) as e:
        raise SignatureError("signature is not valid base64") from e
    try:
        key.verify(sig, data)
    except InvalidSignature as e:
        raise SignatureError("signature does not verify with the HR public key") from e


def sign_document(key: Ed25519PrivateKey, doc: dict) -> dict:
    """Return a copy of ``doc`` with ``signature`` over the canonical JSON of the rest."""
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    return {**body, SIGNATURE_FIELD: sign_bytes(key, canonical_json(body))}


def verify_document(key: Ed25519PublicKey, doc: dict) -> dict:
    """Verify a signed document; returns it without the signature. Raises SignatureError."""
    if not isinstance(doc, dict):
        raise SignatureError("not a JSON object")
    sig = doc.get(SIGNATURE_FIELD)
    if not sig or not isinstance(sig, str):
        raise SignatureError("unsigned: no signature field")
    body = {k: v for k, v in doc.items() if k != SIGNATURE_FIELD}
    verify_bytes(key, canonical_json(body), sig)
    return body
