"""TLS for federation links.

Each node generates a self-signed certificate (ECDSA P-256) for its link server at ``init``. The
child pins the parent's certificate by SHA-256 fingerprint (carried in the join token), fetches it
once at join, checks the fingerprint, and from then on trusts exactly that certificate as its only
root. The certificate names a fixed host name that the client sets as the TLS target name, so
links work by IP address without a CA.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.errors import TrustError, Unavailable
from hub.keys import write_secret

# The TLS name every node certificate carries; clients set it as the target name override.
LINK_TLS_NAME = "courthub-node"


def generate_self_signed(common_name: str, cert_path: Path, key_path: Path, *, days: int = 3650) -> str:
    """Create the node's TLS key (0600) and certificate; returns the certificate fingerprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(LINK_TLS_NAME),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_secret(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(pem)
    return fingerprint_pem(pem)


def fingerprint_pem(pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def fetch_pinned_certificate(host: str, port: int, expected_fingerprint: str, *, timeout: float = 10.0) -> bytes:
    """Fetch a server's TLS certificate and return its PEM only if the fingerprint matches."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check; no CA is involved
    ctx.set_alpn_protocols(["h2"])
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, ctx.wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        raise Unavailable(f"cannot reach parent at {host}:{port}: {exc}") from None
    if der is None:
        raise TrustError(f"parent at {host}:{port} presented no TLS certificate")
    actual = hashlib.sha256(der).hexdigest()
    if actual != expected_fingerprint:
        raise TrustError(
            f"parent at {host}:{port} presented TLS certificate {actual[:16]}…, "
            f"but the join token pins {expected_fingerprint[:16]}…"
        )
    return ssl.DER_cert_to_PEM_cert(der).encode("ascii")
