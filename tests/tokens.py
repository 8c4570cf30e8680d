"""Minting JWTs for the authentication tests, as an identity provider would."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "test-secret-of-at-least-thirty-two-bytes!"
ISSUER = "https://login.example.test/"
AUDIENCE = "price-gateway"
AUTH = {"auth_jwt_secret": SECRET, "auth_issuer": ISSUER, "auth_audience": AUDIENCE}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def claims(symbols: object = "*", *, expires_in: float = 300, **extra: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "sub": "user-1",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(now),
        "exp": now + expires_in,
        "symbols": symbols,
    } | extra


def mint(
    symbols: object = "*",
    *,
    key: str | PrivateKey = SECRET,
    algorithm: str = "HS256",
    kid: str | None = None,
    expires_in: float = 300,
    **extra: Any,
) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(
        claims(symbols, expires_in=expires_in, **extra), key, algorithm, headers=headers
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def write_public_pem(key: PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def write_jwks(keys: dict[str, PrivateKey], path: Path) -> Path:
    """A JWKS file with the public half of each key under its kid."""
    entries = []
    for kid, key in keys.items():
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        jwk = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(key.public_key()))
        entries.append(jwk | {"kid": kid, "alg": algorithm, "use": "sig"})
    path.write_text(json.dumps({"keys": entries}))
    return path
