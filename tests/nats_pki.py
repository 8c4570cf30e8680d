"""A throwaway PKI shaped like the prod overlay's cert-manager objects (nats-tls.yaml): one CA
for client connections (the server's certificate and each program's client certificate),
another for cluster routes, written as cert-manager writes a Certificate's Secret (tls.crt,
tls.key, ca.crt) into one directory per Secret."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Where the prod NATS pods mount the Secrets (overlays/prod/nats-cluster.yaml) and nats.conf
# reads them: <MOUNT>/server and <MOUNT>/routes.
MOUNT = "/etc/nats-tls"
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH

Signer = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def certificate_authority(name: str) -> Signer:
    """A self-signed CA, as cert-manager's bootstrap (a selfSigned issuer and isCA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, _name(name), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def leaf(name: str, ca: Signer, usages: list[x509.ObjectIdentifier]) -> Signer:
    """A certificate for 127.0.0.1 and localhost signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        _builder(name, ca[1].subject, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(ca=False), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca[0].public_key()), False
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca[0], hashes.SHA256())
    )
    return key, cert


def write_secret(directory: Path, pair: Signer, ca: Signer) -> Path:
    """tls.crt, tls.key and ca.crt in `directory`, as kubelet mounts a cert-manager Secret."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = pair
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.crt").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    key_file = directory / "tls.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return directory


@dataclass(frozen=True)
class Pki:
    """`root` stands for MOUNT on this machine: root/server and root/routes for the NATS
    nodes; clients/<user> for each program's client certificate."""

    root: Path
    clients: Path
    client_ca: Signer
    route_ca: Signer

    def client_env(self, user: str) -> dict[str, str]:
        """NATS_TLS_* for a program, as its Deployment sets them."""
        directory = self.clients / user
        if not directory.exists():
            write_secret(
                directory, leaf(f"nats-client-{user}", self.client_ca, [CLIENT]), self.client_ca
            )
        return {
            "NATS_TLS_CA": str(directory / "ca.crt"),
            "NATS_TLS_CERT": str(directory / "tls.crt"),
            "NATS_TLS_KEY": str(directory / "tls.key"),
        }

    def client_settings(self, user: str) -> dict[str, Any]:
        """The same as settings fields (nats_tls_ca, ...; Any, to pass as **kwargs)."""
        return {name.lower(): value for name, value in self.client_env(user).items()}


def write_pki(directory: Path) -> Pki:
    client_ca = certificate_authority("nats-ca")
    route_ca = certificate_authority("nats-routes-ca")
    root = directory / "mount"
    write_secret(root / "server", leaf("nats", client_ca, [SERVER]), client_ca)
    # Routes are mutual TLS: each node's route certificate is both server and client.
    write_secret(root / "routes", leaf("nats-routes", route_ca, [SERVER, CLIENT]), route_ca)
    return Pki(root, directory / "clients", client_ca, route_ca)
