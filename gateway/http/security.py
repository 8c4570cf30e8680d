"""The headers browsers act on: a security policy on every response, and CORS.

The page needs only its own origin: module scripts, one stylesheet, an SVG favicon, a
SharedWorker, and fetches of /stocks, /symbols and /page-config (plus the renew URL of
the site's login service, when set). Everything else is refused, so an injected script
or a framing page gets nothing to work with.

Strict-Transport-Security is left to the TLS-terminating ingress: the gateway speaks
plain HTTP behind it and cannot tell whether the browser's connection was https (a
client-sent X-Forwarded-Proto is not to be trusted without a trusted proxy list).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ForeignOriginError
from gateway.settings import Settings

# Seconds a browser may reuse a preflight answer: /stocks reconnects often, and each
# cross-origin reconnect with an Authorization header would otherwise cost a round trip.
PREFLIGHT_MAX_AGE = 600
# The only request headers the client library sets beyond the CORS-safelisted ones.
CORS_REQUEST_HEADERS = ("Authorization", "Last-Event-ID")
# The answer headers a cross-origin page may read: a stream's effective delivery.
CORS_EXPOSED_HEADERS = ("Price-Conflate", "Price-Delay")
_EXPOSED = ", ".join(CORS_EXPOSED_HEADERS).encode()
# Powerful features the page never uses; a script injected into it cannot ask for them.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)


def content_security_policy(settings: Settings) -> str:
    """The page's CSP: its own origin only, no inline script or style, no eval."""
    connect = ["'self'"]
    if renew := _origin_of(settings.auth_renew_url):
        connect.append(renew)  # the page POSTs there to renew its cookie
    directives = {
        "default-src": "'none'",
        "script-src": "'self'",
        # style.css only: the page sets no style attributes, and CSSOM writes from
        # scripts (element.style.x = ...) are not governed by style-src.
        "style-src": "'self'",
        "img-src": "'self'",  # the favicon; sparklines are SVG elements, not images
        "connect-src": " ".join(connect),
        "worker-src": "'self'",  # price-worker.js, the SharedWorker
        "base-uri": "'none'",  # the page resolves static/... against its own URL
        "form-action": "'none'",  # the picker's form is handled in script, never sent
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def security_headers(settings: Settings) -> list[tuple[bytes, bytes]]:
    """The headers added to every response, as ASGI header pairs."""
    headers = {
        "content-security-policy": content_security_policy(settings),
        "x-content-type-options": "nosniff",
        # The page's URL (its symbols) is nobody else's business, and the gateway reads
        # no Referer. A fetch() POST to the renew service still carries Origin.
        "referrer-policy": "no-referrer",
        "cross-origin-opener-policy": "same-origin",
        # Applies to no-cors loads only (<script src>, <img src> from another site);
        # CORS requests of listed origins are governed by CORS and still succeed.
        "cross-origin-resource-policy": "same-origin",
        "x-frame-options": "DENY",  # for browsers that predate frame-ancestors
        "permissions-policy": PERMISSIONS_POLICY,
    }
    return [(name.encode(), value.encode()) for name, value in headers.items()]


class SecurityHeadersMiddleware:
    """Adds `headers` to each HTTP response that does not set them itself.

    Raw ASGI: the work is one list per response start; body chunks (the SSE stream's
    events) pass through untouched.
    """

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new list: responses may share theirs (gateway.stream.HEADERS is a constant).
                own = list(message.get("headers", ()))
                present = {name.lower() for name, _ in own}
                own.extend(h for h in self.headers if h[0] not in present)
                message["headers"] = own
            await send(message)

        await self.app(scope, receive, send_with_headers)


def browser_middleware(settings: Settings) -> list[Middleware]:
    """Security headers outermost (CORS preflight answers carry them too), then CORS
    when --cors-origins lists any origin."""
    middleware = [Middleware(SecurityHeadersMiddleware, headers=security_headers(settings))]
    return middleware + CorsPolicy(settings).middleware()


class CorsPolicy:
    """Which browser origins may read the gateway's answers, and whether with cookies: one
    policy for CORSMiddleware (preflights, and every route but GET /stocks) and for the
    /stocks fast path (app.py), which streams without the middleware stack in between."""

    def __init__(self, settings: Settings) -> None:
        self.origins = settings.cors_origin_list
        self.any = self.origins == ("*",)
        # Never with "*": Starlette would then echo any Origin along with
        # Allow-Credentials, letting every site read responses with the user's cookie.
        self.credentials = bool(self.origins) and not self.any
        self._listed = {origin.encode() for origin in self.origins if origin != "*"}

    def middleware(self) -> list[Middleware]:
        """CORSMiddleware with this policy; none when no origin is listed."""
        if not self.origins:
            return []
        return [
            Middleware(
                CORSMiddleware,
                allow_origins=self.origins,
                allow_credentials=self.credentials,
                allow_methods=["GET"],
                allow_headers=CORS_REQUEST_HEADERS,
                expose_headers=CORS_EXPOSED_HEADERS,
                max_age=PREFLIGHT_MAX_AGE,
            )
        ]

    def check_origin(self, origin: str | None, host: str | None) -> None:
        """Raise ForeignOriginError for a browser request from a site that is neither
        listed nor the gateway itself. CORS only keeps that site from reading the
        answer; the request is still made with the user's cookie (an identity provider
        may set SameSite=None), so a stream would be opened for it. No Origin (curl,
        native clients, same-origin GETs) is no browser site to refuse."""
        if origin is None or self.any or origin in self.origins:
            return
        # The gateway's own origin, however it is reached: its host is the Host header.
        if host is not None and urlsplit(origin).netloc == host.lower():
            return
        raise ForeignOriginError(
            f"Origin {origin!r} may not call the gateway: it is not in --cors-origins"
        )

    def for_origin(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of a simple GET from `origin`, as CORSMiddleware answers it
        (tests/test_security_cors.py holds the two to the same headers)."""
        if not self.origins:
            return []
        headers = []
        if origin is not None:
            if self.any:
                headers.append((b"access-control-allow-origin", b"*"))
            if self.credentials:
                headers.append((b"access-control-allow-credentials", b"true"))
            headers.append((b"access-control-expose-headers", _EXPOSED))
            if (raw := origin.encode("latin-1")) in self._listed:
                headers.append((b"access-control-allow-origin", raw))
        # The answer depends on the Origin: caches must keep one per origin.
        headers.append((b"vary", b"Origin"))
        return headers


def _origin_of(url: str) -> str | None:
    """The origin of an absolute URL; None for "" or a path (covered by 'self')."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
