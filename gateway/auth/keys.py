"""The keys that verify tokens: a PEM public key or a JWKS file, read when the
authenticator is built at start.

A key that cannot be used is a bad setting (KeyConfigError: exit 2 with one line), not a
failure found at the first request.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from contracts.settings import SettingsError

logger = logging.getLogger(__name__)

PUBLIC_KEY_ALGORITHMS = ["RS256", "ES256"]


class KeyConfigError(SettingsError):
    """A key file cannot be used; the message names the setting and the file."""


def load_public_key(path: str) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None:
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


class JwksFile:
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
