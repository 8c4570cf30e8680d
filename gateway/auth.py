"""JWT authentication of browser requests: which key verifies a token, and what it grants.

A token comes from `Authorization: Bearer` or from the HttpOnly cookie named by
--auth-cookie; never from the query string, which ends up in proxy and access logs.
Verification pins the algorithm to the key (HS256 for the shared secret, RS256 or
ES256 for a public key), so `alg: none` and HS256-signed-with-the-public-key tokens fail.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.datastructures import Headers

from gateway.errors import UnauthorizedError
from gateway.grants import Grant, InvalidGrantError, parse_grant
from gateway.settings import Settings

logger = logging.getLogger(__name__)

HMAC_ALGORITHMS = ["HS256"]
PUBLIC_KEY_ALGORITHMS = ["RS256", "ES256"]
MAX_TOKEN_BYTES = 8 * 1024
REQUIRED_CLAIMS = ["exp", "iss", "aud"]


class KeyConfigError(ValueError):
    """A key file cannot be used; raised at start so the process exits with a clear line."""


class Authenticator:
    """Verifies tokens against one configured key source and turns them into Grants."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience
        self.leeway = settings.auth_leeway
        self.cookie = settings.auth_cookie
        self._secret = settings.auth_jwt_secret
        self._public_key = _load_public_key(settings.auth_public_key_file)
        self._jwks = _JwksFile(Path(settings.auth_jwks_file)) if settings.auth_jwks_file else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        """The authenticator, or None when no key is configured (no authentication)."""
        if settings.auth_enabled:
            return cls(settings)
        return None

    def authenticate(self, headers: Headers, cookies: dict[str, str]) -> Grant:
        """The grant of the request's token; raises UnauthorizedError saying why not."""
        token = self._token(headers, cookies)
        claims = self._verify(token)
        try:
            return parse_grant(
                str(claims.get("sub", "")), claims.get("symbols"), float(claims["exp"])
            )
        except InvalidGrantError as exc:
            raise UnauthorizedError(str(exc), invalid_token=True) from None

    def _token(self, headers: Headers, cookies: dict[str, str]) -> str:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise UnauthorizedError(
                    "the Authorization header must be 'Bearer <token>'", invalid_token=True
                )
            return token.strip()
        cookie = cookies.get(self.cookie)
        if not cookie:
            raise UnauthorizedError(
                f"a token is required: send Authorization: Bearer or the {self.cookie} cookie"
            )
        return cookie

    def _verify(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise UnauthorizedError(
                f"the token is longer than {MAX_TOKEN_BYTES} bytes", invalid_token=True
            )
        try:
            key, algorithms = self._key_for(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            logger.info("token refused", extra={"error": str(exc)})
            raise UnauthorizedError(f"invalid token: {exc}", invalid_token=True) from None
        return claims

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self._secret:
            return self._secret, HMAC_ALGORITHMS
        if self._public_key is not None:
            algorithm = "RS256" if isinstance(self._public_key, rsa.RSAPublicKey) else "ES256"
            return self._public_key, [algorithm]
        assert self._jwks is not None
        return self._jwks.key_for(jwt.get_unverified_header(token).get("kid"))


def _load_public_key(path: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
    if not path:
        return None
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise KeyConfigError(f"--auth-public-key-file {path}: {exc}") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise KeyConfigError(
        f"--auth-public-key-file {path}: need an RSA key of >= 2048 bits (RS256) "
        "or a P-256 EC key (ES256)"
    )


class _JwksFile:
    """A JWKS file, read again when it changes: a rotated key set (a ConfigMap update)
    takes effect without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._reload()
        if not self._keys:
            raise KeyConfigError(f"--auth-jwks-file {path}: no RS256 or ES256 signing key")

    def key_for(self, kid: object) -> tuple[Any, list[str]]:
        if kid not in self._keys:
            self._reload()  # an unknown kid may be a rotation we have not read yet
        key = self._keys.get(kid if isinstance(kid, str) else None)
        if key is None and kid is None and len(self._keys) == 1:
            key = next(iter(self._keys.values()))
        if key is None:
            raise jwt.InvalidKeyError(f"no key with kid {kid!r} in the key set")
        return key.key, [key.algorithm_name]

    def _reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime == self._mtime:
                return
            key_set = jwt.PyJWKSet.from_json(self.path.read_text())
        except (OSError, jwt.PyJWTError, ValueError) as exc:
            if self._mtime < 0:
                raise KeyConfigError(f"--auth-jwks-file {self.path}: {exc}") from None
            logger.warning("JWKS file not reloaded", extra={"error": str(exc)})
            return
        self._mtime = mtime
        self._keys = {
            key.key_id: key
            for key in key_set.keys
            if key.algorithm_name in PUBLIC_KEY_ALGORITHMS and key.public_key_use in (None, "sig")
        }
