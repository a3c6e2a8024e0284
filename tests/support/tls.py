"""A private certificate authority for tests, and an address a registry can serve TLS on.

    ca = PrivateCA.create(tmp_path)                      # ca.cert_path: the PEM a client must trust
    cert, key = ca.issue(tmp_path, ip=non_loopback_address())
    registry = RegistryProcess(tls=(cert, key), address=...)   # https://<address>:<port>

Keys are ECDSA P-256 (fast to make); certificates are valid for a day, with the address as an IP
subjectAltName (Go's TLS, which docker-registry uses, ignores the common name). Built with the
``cryptography`` package.

Why a non-loopback address: ecr-mirror speaks plain http to loopback hosts, as the test registries
need. A registry that a client must reach over TLS, like a private upstream, is served on this
machine's own non-loopback address instead; nothing leaves the machine.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PrivateCA", "non_loopback_address"]

_SIOCGIFADDR = 0x8915  # Linux: an interface's IPv4 address


def non_loopback_address() -> str:
    """An IPv4 address of one of this machine's interfaces that is not loopback (nor link-local).

    Raises RuntimeError when there is none (a test that needs it fails, it does not skip).
    """
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
        address = ipaddress.IPv4Address(answer[20:24])
        if not (address.is_loopback or address.is_link_local or address.is_unspecified):
            return str(address)
    raise RuntimeError("this machine has no non-loopback IPv4 address to serve a TLS test registry on")


@dataclass(frozen=True)
class PrivateCA:
    """A self-signed CA: ``cert_path`` (PEM) to trust, and its key to sign server certificates."""

    cert_path: Path
    _cert: object
    _key: object

    @classmethod
    def create(cls, directory: Path, name: str = "ecr-mirror test CA") -> PrivateCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "ca.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(path, cert, key)

    def issue(self, directory: Path, *, ip: str, name: str = "registry") -> tuple[Path, Path]:
        """A server certificate for ``ip`` signed by this CA: ``(cert.pem, key.pem)`` in ``directory``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self._cert.subject)  # type: ignore[attr-defined]
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)  # type: ignore[attr-defined]
            .sign(self._key, hashes.SHA256())  # type: ignore[arg-type]
        )
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path
