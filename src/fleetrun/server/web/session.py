"""The console's session: an API token behind a cookie, and what guards it.

Signing in checks an API token exactly as the API does and answers with a cookie that
holds the token sealed with the server's key (AES-GCM, `SecretBox`, bound to the
purpose "console-session") together with the time it stops being valid: the token's own
expiry, or `SESSION_S` from sign-in when that comes first. Nothing is stored on the
server, so every replica that shares the secret key reads it, and the token is never in
the cookie in clear.

`ConsoleMiddleware` opens the cookie on every request under /ui and hands the token on
as `Authorization: Bearer`, so that each console page is authenticated and authorized by
the API's own dependencies (`authorize(...)`, `Caller.require`, `Caller.allows`) as the
signed-in principal; a request that already carries an Authorization header is left as
it is. It also adds the console's security headers (a Content-Security-Policy without
inline script, no framing, no caching).

CSRF: every state-changing request must carry the session's CSRF token (an HMAC of the
cookie under a key derived for that purpose) in the `csrf` form field or the
`X-CSRF-Token` header, and must not come from another site (`Sec-Fetch-Site`, `Origin`).
The cookie is SameSite=Strict as well: a cross-site form post carries no session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetrun.core.errors import AccessDeniedError, FleetrunError
from fleetrun.server.secretbox import SecretBox

COOKIE = "fleetrun_console"
PURPOSE = "console-session"
SESSION_S = 12 * 3600  # at most this long after sign-in, whatever the token's expiry
PREFIX = "/ui"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
CROSS_SITE = (
    "This request came from another site, and the console takes changes only from its "
    "own pages: open the console and submit the form there."
)
BAD_CSRF = (
    "This form is out of date or did not come from the console (its CSRF token does not "
    "match your session): reload the page and submit it again."
)


@dataclass(frozen=True)
class Session:
    token: str
    expires_at: float  # epoch seconds


def make(token: str, token_expires_at: datetime | None, now: float) -> Session:
    """The session a sign-in makes: until the token expires, at most SESSION_S."""
    until = now + SESSION_S
    if token_expires_at is not None:
        until = min(until, token_expires_at.timestamp())
    return Session(token=token, expires_at=until)


def encode(box: SecretBox, session: Session) -> str:
    return box.seal(json.dumps({"t": session.token, "e": session.expires_at}), PURPOSE)


def decode(box: SecretBox, value: str, now: float) -> Session | None:
    """The session a cookie holds, or None when it cannot be opened or has expired."""
    try:
        data = json.loads(box.open(value, PURPOSE))
        session = Session(token=str(data["t"]), expires_at=float(data["e"]))
    except (FleetrunError, ValueError, KeyError, TypeError):
        return None
    return session if session.expires_at > now else None


def csrf_token(box: SecretBox, cookie: str) -> str:
    return hmac.new(box.derive("console-csrf"), cookie.encode(), hashlib.sha256).hexdigest()


def cookie_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is no session  # noqa: S112
                continue
            if COOKIE in jar:
                return jar[COOKIE].value
    return None


def check_origin(request: Request) -> None:
    """Refuse a state-changing request that a browser says came from another site."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise AccessDeniedError(CROSS_SITE)
    origin = request.headers.get("origin")  # "null": an opaque origin, never ours
    host = request.headers.get("host", "")
    if origin is not None and (origin == "null" or urlsplit(origin).netloc != host):
        raise AccessDeniedError(CROSS_SITE)


async def check_csrf(request: Request, box: SecretBox) -> None:
    """Every state-changing console request: same site, and the session's CSRF token."""
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    cookie = request.scope.get("state", {}).get("console_cookie")
    if cookie is None:
        return  # no session: the route's authentication refuses it (or it is sign-in)
    given = request.headers.get("x-csrf-token")
    if given is None:
        values = (await form(request)).get("csrf")
        given = values[0] if values else None
    if given is None or not hmac.compare_digest(given, csrf_token(box, cookie)):
        raise AccessDeniedError(BAD_CSRF)


async def form(request: Request) -> dict[str, list[str]]:
    """A url-encoded form's fields (read once per request, kept on it)."""
    cached: dict[str, list[str]] | None = getattr(request.state, "console_form", None)
    if cached is None:
        body = await request.body()
        cached = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        request.state.console_form = cached
    return cached


class ConsoleMiddleware:
    """Under /ui: the session's token as the bearer token, and the security headers."""

    def __init__(self, app: ASGIApp, box: SecretBox) -> None:
        self.app = app
        self.box = box

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/" or path.startswith(PREFIX)):
            await self.app(scope, receive, send)
            return
        cookie = cookie_of(scope)
        session = decode(self.box, cookie, time.time()) if cookie else None
        headers = list(scope.get("headers") or [])
        if session is not None and cookie is not None:
            scope.setdefault("state", {})["console_cookie"] = cookie
            if not any(name == b"authorization" for name, _ in headers):
                headers.append((b"authorization", f"Bearer {session.token}".encode()))
                scope = {**scope, "headers": headers}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    response_headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
