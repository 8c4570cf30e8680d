"""JWT authentication of browser requests: which key verifies a token, and what it grants.

A token comes from `Authorization: Bearer` or from the HttpOnly cookie named by
--auth-cookie; never from the query string, which ends up in proxy and access logs.
When a request repeats either, the first one counts, for both alike: for the header that
is what every proxy that reads it sees, and for the cookie it is the one RFC 6265 has
browsers send first (the most specific path, then the oldest), not one a script or a
sibling site appended later.
Verification pins the algorithm to the key (HS256 for the shared secret, RS256 or
ES256 for a public key), so `alg: none` and HS256-signed-with-the-public-key tokens fail.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from gateway.auth.grants import Grant, InvalidGrantError, parse_floor, parse_grant
from gateway.auth.keys import JwksFile, load_public_key
from gateway.errors import UnauthorizedError
from gateway.settings import Settings

logger = logging.getLogger(__name__)

HMAC_ALGORITHMS = ["HS256"]
MAX_TOKEN_BYTES = 8 * 1024
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
DATE_CLAIMS = ("exp", "iat", "nbf")


class Authenticator:
    """Verifies tokens against one configured key source and turns them into Grants."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.auth_issuer
        self.audience = settings.auth_audience
        self.leeway = settings.auth_leeway
        self.max_lifetime = settings.auth_max_token_lifetime
        self.cookie = settings.auth_cookie
        self._secret = settings.auth_jwt_secret
        self._public_key = load_public_key(settings.auth_public_key_file)
        self._jwks = JwksFile(Path(settings.auth_jwks_file)) if settings.auth_jwks_file else None

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        """The authenticator, or None when no key is configured (no authentication).

        Reads the key file, if any: raises KeyConfigError (a SettingsError) naming the
        setting and the file when it cannot be used.
        """
        if settings.auth_enabled:
            return cls(settings)
        return None

    def authenticate(self, headers: Headers) -> Grant:
        """The grant of the request's token; raises UnauthorizedError saying why not."""
        token = self._token(headers)
        claims = self._verify(token)
        expires = self._check_dates(claims)
        try:
            grant = parse_grant(str(claims["sub"]), claims.get("symbols"), expires)
            return dataclasses.replace(grant, floor=parse_floor(claims))
        except InvalidGrantError as exc:
            raise UnauthorizedError(str(exc), invalid_token=True) from None

    def _token(self, headers: Headers) -> str:
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise UnauthorizedError(
                    "the Authorization header must be 'Bearer <token>'", invalid_token=True
                )
            return token.strip()
        cookie = first_cookie(headers, self.cookie)
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
        except (jwt.PyJWTError, OverflowError, ValueError) as exc:
            # PyJWT converts dates with int(): an infinite or huge one can raise out of it.
            logger.info("token refused", extra={"error": str(exc)})
            raise UnauthorizedError(f"invalid token: {exc}", invalid_token=True) from None
        return claims

    def _check_dates(self, claims: dict[str, Any]) -> float:
        """`exp`, `iat` and `nbf` as JSON numbers a float holds (PyJWT takes "123" and true
        too), and a lifetime within bounds; the expiry, or UnauthorizedError."""
        dates: dict[str, float] = {}
        for name in DATE_CLAIMS:
            value = claims.get(name)
            if value is None and name == "nbf":
                continue
            try:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError
                dates[name] = float(value)  # OverflowError past 1.8e308
                if not math.isfinite(dates[name]):
                    raise ValueError
            except (ValueError, OverflowError):
                raise UnauthorizedError(
                    f"invalid token: the {name} claim must be a number of seconds",
                    invalid_token=True,
                ) from None
        if dates["exp"] - dates["iat"] > self.max_lifetime:
            raise UnauthorizedError(
                f"invalid token: its lifetime (exp - iat) exceeds {self.max_lifetime:g} s",
                invalid_token=True,
            )
        return dates["exp"]

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self._secret:
            return self._secret, HMAC_ALGORITHMS
        if self._public_key is not None:
            algorithm = "RS256" if isinstance(self._public_key, rsa.RSAPublicKey) else "ES256"
            return self._public_key, [algorithm]
        assert self._jwks is not None
        return self._jwks.key_for(jwt.get_unverified_header(token).get("kid"))


def first_cookie(headers: Headers, name: str) -> str | None:
    """The first cookie called `name` in the request's Cookie headers (Starlette's own
    parse keeps the last one, and reads the first Cookie header only)."""
    for header in headers.getlist("cookie"):
        for pair in header.split(";"):
            if pair.partition("=")[0].strip() == name:
                return cookie_parser(pair).get(name)
    return None
