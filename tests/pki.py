"""Keys and certificates made in the test run: a CA and a 127.0.0.1 server certificate for local https
servers, and a self-signed RSA certificate that plays the SNS signing certificate."""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, ip: str | None = None) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class LocalPKI:
    ca_file: Path
    server_cert: Path
    server_key: Path
    signing_key: rsa.RSAPrivateKey
    signing_cert_pem: bytes

    @classmethod
    def create(cls, folder: Path) -> LocalPKI:
        folder.mkdir(parents=True, exist_ok=True)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True)
        server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        server = _cert("127.0.0.1", server_key, "test CA", ca_key, ca=False, ip="127.0.0.1")
        signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signing = _cert("sns.test", signing_key, "sns.test", signing_key, ca=False)
        (folder / "ca.pem").write_bytes(_pem(ca))
        (folder / "server.pem").write_bytes(_pem(server))
        (folder / "server.key").write_bytes(server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return cls(folder / "ca.pem", folder / "server.pem", folder / "server.key", signing_key, _pem(signing))

    def sign_sns(self, message: dict, version: str = "1") -> dict:
        """Sign an SNS message as the SNS developer guide describes: name/value lines in byte order."""
        if message["Type"] == "Notification":
            keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        text = "".join(f"{k}\n{message[k]}\n" for k in keys if k in message)
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.signing_key.sign(text.encode(), padding.PKCS1v15(), digest)
        return {**message, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode()}
