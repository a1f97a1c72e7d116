"""Site PKI for the uplink: a site CA, the broker's server certificate, and client
certificates for devices and HR connectors (the certificate's CN is the MQTT user name).
Private keys are written 0600 and never printed or logged.

Also a small CLI for the customer's IT: ``python -m sync.pki --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DAYS = 825


class PkiError(Exception):
    """A certificate or key that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create with 0600 from the start so the key is never world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError as e:
        raise PkiError(f"{path}: certificate file not found") from e
    except ValueError as e:
        raise PkiError(f"{path}: not a PEM certificate ({e})") from e


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError as e:
        raise PkiError(f"{path}: key file not found") from e
    except (ValueError, TypeError) as e:
        raise PkiError(f"{path}: not an unencrypted PEM private key ({e})") from e
    return key  # type: ignore[return-value]


def make_ca(out_dir: Path, name: str = "Interview Kiosk Site CA", days: int = 3650) -> CertPair:
    """Create a site CA (``ca.crt`` / ``ca.key``) in ``out_dir``; refuses to overwrite."""
    out_dir = Path(out_dir)
    pair = CertPair(out_dir / "ca.crt", out_dir / "ca.key")
    if pair.key.exists():
        raise PkiError(f"{pair.key}: a CA key already exists; refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(pair.key, key)
    _write_cert(pair.cert, cert)
    return pair


def make_csr(key_path: Path, common_name: str) -> bytes:
    """Create a private key at ``key_path`` (0600) and return a PEM CSR for ``common_name``.

    This is what a device runs at enrolment: the key never leaves it.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    _write_private(Path(key_path), key)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _issue(
    ca: CertPair,
    subject_cn: str,
    public_key,
    *,
    server_names: list[str] | None,
    days: int,
) -> x509.Certificate:
    ca_cert = load_cert(ca.cert)
    ca_key = load_key(ca.key)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server_names is not None:
        alt: list[x509.GeneralName] = []
        for n in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                alt.append(x509.DNSName(n))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def make_server_cert(
    ca: CertPair, out_dir: Path, names: list[str], stem: str = "server", days: int = DEFAULT_DAYS
) -> CertPair:
    """Broker / HTTPS endpoint certificate for host names or IP addresses ``names``."""
    out_dir = Path(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(ca, names[0], key.public_key(), server_names=names, days=days)
    pair = CertPair(out_dir / f"{stem}.crt", out_dir / f"{stem}.key")
    _write_private(pair.key, key)
    _write_cert(pair.cert, cert)
    return pair


def make_client_cert(
    ca: CertPair, out_dir: Path, common_name: str, stem: str | None = None, days: int = DEFAULT_DAYS
) -> CertPair:
    """Client certificate for a device (CN = device id) or an HR connector (CN = its name)."""
    out_dir = Path(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(ca, common_name, key.public_key(), server_names=None, days=days)
    stem = stem or common_name
    pair = CertPair(out_dir / f"{stem}.crt", out_dir / f"{stem}.key")
    _write_private(pair.key, key)
    _write_cert(pair.cert, cert)
    return pair


def sign_csr(ca: CertPair, csr_pem: bytes, *, expect_cn: str | None = None, days: int = DEFAULT_DAYS) -> bytes:
    """Sign a device's CSR as a client certificate; returns the certificate PEM.

    Refuses a CSR whose self-signature is wrong or whose CN is not ``expect_cn``.
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise PkiError(f"CSR: not a PEM certificate signing request ({e})") from e
    if not csr.is_signature_valid:
        raise PkiError("CSR: its signature does not verify (corrupted or tampered)")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise PkiError("CSR: no common name (CN) in the subject")
    cn = str(cns[0].value)
    if expect_cn is not None and cn != expect_cn:
        raise PkiError(f"CSR: common name is {cn!r}, expected the device id {expect_cn!r}")
    cert = _issue(ca, cn, csr.public_key(), server_names=None, days=days)
    return cert.public_bytes(serialization.Encoding.PEM)


def common_name(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else ""


def verify_issued_by(cert_pem: bytes, ca_pem: bytes) -> None:
    """Raise PkiError unless ``cert_pem`` was signed by the CA in ``ca_pem`` and is in date."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca)
    except Exception as e:  # ValueError / InvalidSignature / TypeError
        raise PkiError(f"certificate {common_name(cert)!r} was not issued by {common_name(ca)!r}: {e}") from e
    now = _now()
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise PkiError(
            f"certificate {common_name(cert)!r} is not valid now "
            f"({cert.not_valid_before_utc:%Y-%m-%d} .. {cert.not_valid_after_utc:%Y-%m-%d})"
        )


def public_key_matches(cert_pem: bytes, key_path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = load_key(key_path)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m sync.pki",
        description="Make the site CA, the broker certificate and client certificates "
        "for kiosks and HR connectors (CN = MQTT user name).",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("ca", help="create ca.crt / ca.key in DIR")
    c.add_argument("dir", type=Path)
    c.add_argument("--name", default="Interview Kiosk Site CA")
    s = sub.add_parser("server", help="broker / HTTPS server certificate")
    s.add_argument("--ca-dir", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--name", action="append", required=True, help="DNS name or IP (repeat)")
    s.add_argument("--stem", default="server")
    cl = sub.add_parser("client", help="client certificate (device id or connector name)")
    cl.add_argument("--ca-dir", type=Path, required=True)
    cl.add_argument("--out", type=Path, required=True)
    cl.add_argument("--cn", required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "ca":
            pair = make_ca(args.dir, args.name)
        else:
            ca = CertPair(args.ca_dir / "ca.crt", args.ca_dir / "ca.key")
            if args.cmd == "server":
                pair = make_server_cert(ca, args.out, args.name, stem=args.stem)
            else:
                pair = make_client_cert(ca, args.out, args.cn)
    except PkiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {pair.cert} and {pair.key} (key mode 0600)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
