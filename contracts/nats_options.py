"""How both commands connect to NATS: credentials, TLS and reply inboxes, from the settings."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # contracts.settings imports this module to check the TLS files
    from contracts.settings import CommonSettings


def tls_context(ca: str, cert: str, key: str) -> ssl.SSLContext | None:
    """A client TLS context trusting `ca` (else the system's CAs) and presenting `cert` and
    `key` (mutual TLS) when given; None when neither is set (plain, or TLS by a tls:// URL).

    Raises ssl.SSLError for a file that is not PEM, or a key that does not fit the cert.
    """
    if not (ca or cert):
        return None
    context = ssl.create_default_context(cafile=ca or None)
    if cert:
        # An empty password instead of None: OpenSSL would prompt on the terminal for an
        # encrypted key; this makes it fail instead.
        context.load_cert_chain(cert, key, password="")
    return context


def connect_options(settings: CommonSettings) -> dict[str, Any]:
    """Keyword arguments for nats.connect() beyond the servers: the one authentication
    method configured (settings allow at most one), TLS, and the inbox prefix."""
    options: dict[str, Any] = {"inbox_prefix": settings.nats_inbox_prefix}
    if settings.nats_user:
        options |= {"user": settings.nats_user, "password": settings.nats_password}
    if settings.nats_token:
        options["token"] = settings.nats_token
    if settings.nats_nkey_seed:
        options["nkeys_seed"] = settings.nats_nkey_seed
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    tls = tls_context(settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key)
    if tls is not None:
        options["tls"] = tls
    return options
