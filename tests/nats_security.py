"""NATS credentials made at test time: the prod config's users, a token, nkeys, a CA with
server and client certificates, and decentralized (JWT) accounts with .creds files."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nkeys  # type: ignore[import-untyped]  # no stubs or py.typed
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts.nats_options import connect_options
from contracts.settings import CommonSettings
from tests.nats_pki import key_usage

ROOT = Path(__file__).resolve().parent.parent
PROD_CONFIG = ROOT / "deploy/overlays/prod/nats.conf"
USERS = ("publisher", "gateway", "provisioner", "admin")
# The inbox prefix each program uses in prod (deploy/overlays/prod/*.yaml).
INBOX_PREFIXES = {
    "publisher": "_INBOX_publisher",
    "gateway": "_INBOX_gateway",
    "provisioner": "_INBOX_provisioner",
}
# JetStream API requests that are refused get no answer: time out soon.
REFUSED_TIMEOUT = 0.5


def authorization_block(conf: str) -> str:
    """The users' block of a nats.conf, `accounts { ... }` (or, with one account,
    `authorization { ... }`), from its first line to its brace."""
    match = re.search(r"^(?:accounts|authorization)\s*\{", conf, re.M)
    assert match is not None, "no accounts or authorization block"
    depth = 0
    for end in range(match.start(), len(conf)):
        depth += {"{": 1, "}": -1}.get(conf[end], 0)
        if depth == 0 and conf[end] == "}":
            return conf[match.start() : end + 1]
    raise AssertionError("the block does not close")


def unmapped(block: str, subjects: list[str]) -> list[str]:
    """`subjects` as a program sends them, before its account's `mappings` (which turn
    $JS.API... into the imports' JS.PRICES.API...): what they are in one account."""
    pairs = re.findall(r'^\s*"([^"]+)":\s*"([^"]+)"\s*$', block, re.M)
    sources = {re.sub(r"\{\{wildcard\(\d+\)\}\}", "*", to): source for source, to in pairs}
    return [sources.get(subject, subject) for subject in subjects]


def allowed(block: str, user: str, direction: str) -> list[str]:
    """The subjects `user` may publish or subscribe to (`direction`) in an authorization block."""
    entry = re.split(r"^\s*(?:\{\s*)?user:\s*", block, flags=re.M)
    (text,) = [e for e in entry if re.match(rf"{user}\b", e)]
    match = re.search(rf"{direction}:\s*\{{\s*allow:\s*\[([^\]]*)\]", text)
    assert match is not None, f"{user} has no {direction} allow list"
    return re.findall(r'"([^"]+)"', match[1])


@dataclass(frozen=True)
class Material:
    """Where a config put what clients need: settings fields (NATS_<FIELD> for processes)."""

    config: Path
    # user -> settings fields (all strings; Any so that they can be passed as **kwargs)
    clients: dict[str, dict[str, Any]]
    refused: dict[str, Any]  # the settings of a client the server must refuse


def users_config(directory: Path, passwords: dict[str, str]) -> Material:
    """The prod overlay's users and permissions, verbatim, with these passwords."""
    block = authorization_block(PROD_CONFIG.read_text())
    for user in USERS:
        block = block.replace(f"${user.upper()}_NATS_PASSWORD", json.dumps(passwords[user]))
    config = _write(directory, block)
    clients = {
        user: {"nats_user": user, "nats_password": passwords[user]}
        | ({"nats_inbox_prefix": INBOX_PREFIXES[user]} if user in INBOX_PREFIXES else {})
        for user in USERS
    }
    return Material(config, clients, {})


def token_config(directory: Path) -> Material:
    token = secrets.token_hex(16)
    config = _write(directory, f"authorization {{ token: {json.dumps(token)} }}")
    client = {"nats_token": token}
    return Material(config, {"publisher": client, "gateway": client}, {})


def nkey_config(directory: Path) -> Material:
    seeds = {user: _seed(nkeys.PREFIX_BYTE_USER) for user in ("publisher", "gateway")}
    users = ", ".join(f"{{ nkey: {_public(seed)} }}" for seed in seeds.values())
    config = _write(directory, f"authorization {{ users: [ {users} ] }}")
    clients = {}
    for user, seed in seeds.items():
        (path := directory / f"{user}.nk").write_bytes(seed + b"\n")
        path.chmod(0o600)
        clients[user] = {"nats_nkey_seed": str(path)}
    return Material(config, clients, {})


def tls_config(directory: Path) -> Material:
    """Mutual TLS: the server presents a cert for 127.0.0.1 and verifies the client's."""
    ca_key, ca_cert = _certificate("test CA", None, ca=True)
    files = {"ca": ca_cert}
    for name, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", None)):
        key, cert = _certificate(name, (ca_key, ca_cert), usage=usage)
        files[name] = cert
        _pem_key(directory / f"{name}-key.pem", key)
    for name, cert in files.items():
        (directory / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    config = _write(
        directory,
        "tls {\n"
        f"  cert_file: {json.dumps(str(directory / 'server.pem'))}\n"
        f"  key_file: {json.dumps(str(directory / 'server-key.pem'))}\n"
        f"  ca_file: {json.dumps(str(directory / 'ca.pem'))}\n"
        "  verify: true\n"
        "}",
    )
    client = {
        "nats_tls_ca": str(directory / "ca.pem"),
        "nats_tls_cert": str(directory / "client.pem"),
        "nats_tls_key": str(directory / "client-key.pem"),
    }
    return Material(
        config, {"publisher": client, "gateway": client}, {"nats_tls_ca": client["nats_tls_ca"]}
    )


def creds_config(directory: Path) -> Material:
    """Decentralized auth: an operator, an account with JetStream, and a user per program
    whose JWT carries the prod config's permissions as they read in that one account
    (`unmapped`); the server resolves from memory."""
    operator, account = _seed(nkeys.PREFIX_BYTE_OPERATOR), _seed(nkeys.PREFIX_BYTE_ACCOUNT)
    unlimited: dict[str, Any] = {
        "subs": -1,
        "data": -1,
        "payload": -1,
        "imports": -1,
        "exports": -1,
    }
    jetstream = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    account_claims = {"limits": unlimited | {"conn": -1, "leaf": -1} | jetstream}
    block = authorization_block(PROD_CONFIG.read_text())
    clients = {}
    for user in ("publisher", "gateway", "provisioner"):
        seed = _seed(nkeys.PREFIX_BYTE_USER)
        # One account: the prod accounts' imports are tested with users_config.
        permissions = {
            "pub": {"allow": unmapped(block, allowed(block, user, "publish"))},
            "sub": {"allow": allowed(block, user, "subscribe")},
        }
        jwt = _jwt(account, _public(seed), user, "user", unlimited | permissions)
        path = directory / f"{user}.creds"
        path.write_text(_creds(jwt, seed))
        path.chmod(0o600)
        clients[user] = {"nats_creds": str(path), "nats_inbox_prefix": INBOX_PREFIXES[user]}
    # JetStream needs a system account for its internal subscriptions.
    system = _public(_seed(nkeys.PREFIX_BYTE_ACCOUNT))
    accounts = {
        _public(account): _jwt(operator, _public(account), "prices", "account", account_claims),
        system: _jwt(operator, system, "SYS", "account", {"limits": unlimited}),
    }
    preload = ", ".join(f"{key}: {jwt}" for key, jwt in accounts.items())
    config = _write(
        directory,
        f"operator: {_jwt(operator, _public(operator), 'test', 'operator', {})}\n"
        f"system_account: {system}\n"
        "resolver: MEMORY\n"
        f"resolver_preload: {{ {preload} }}",
    )
    return Material(config, clients, {})


@asynccontextmanager
async def connected(
    nats_url: str, settings: dict[str, Any]
) -> AsyncIterator[tuple[NATS, JetStreamContext, list[str]]]:
    """A nats-py client with `settings`' credentials, and the errors the server reports to it
    (lower-cased, as nats-py words permission violations)."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    options = connect_options(CommonSettings(nats_url=nats_url, **settings))
    nc = await nats.connect(nats_url, error_cb=on_error, allow_reconnect=False, **options)
    try:
        yield nc, nc.jetstream(timeout=REFUSED_TIMEOUT), errors
    finally:
        await nc.close()


def violations(material: Material) -> list[str]:
    """Permission violations the server logged."""
    return [
        line for line in server_log(material.config).read_text().splitlines() if "Violation" in line
    ]


def _write(directory: Path, text: str) -> Path:
    # The server logs to a file beside its config, so that tests can look for violations.
    path = directory / "nats.conf"
    log = json.dumps(str(server_log(path)))
    path.write_text(f"log_file: {log}\n{text}\n")
    return path


def server_log(config: Path) -> Path:
    return config.with_name("nats.log")


def _seed(prefix: int) -> bytes:
    seed: bytes = nkeys.encode_seed(secrets.token_bytes(32), prefix)
    return seed


def _public(seed: bytes) -> str:
    public: bytes = nkeys.from_seed(bytearray(seed)).public_key
    return public.decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(issuer_seed: bytes, subject: str, name: str, kind: str, claims: dict[str, Any]) -> str:
    """A NATS JWT (v2, signed with the issuer's nkey), as `nsc` would write it."""
    header = {"typ": "JWT", "alg": "ed25519-nkey"}
    payload = {
        "jti": secrets.token_hex(16),  # unique; the server does not recompute it
        "iat": int(time.time()),
        "iss": _public(issuer_seed),
        "name": name,
        "sub": subject,
        "nats": claims | {"type": kind, "version": 2},
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = nkeys.from_seed(bytearray(issuer_seed)).sign(signing_input.encode())
    return f"{signing_input}.{_b64(signature)}"


def _creds(jwt: str, seed: bytes) -> str:
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n"
    )


Signer = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _certificate(
    name: str,
    issuer: Signer | None,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
) -> Signer:
    """A CA (self-signed, issuer None) or a leaf for 127.0.0.1 signed by `issuer`, with the
    extensions OpenSSL's strict verification asks for."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[1].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            key_usage(ca),
            critical=True,
        )
    )
    if issuer is None:
        return key, builder.sign(key, hashes.SHA256())
    issuer_key = issuer[0]
    builder = (
        builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([usage or ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    )
    return key, builder.sign(issuer_key, hashes.SHA256())


def _pem_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
