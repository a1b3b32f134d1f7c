"""Real receivers on loopback for event deliveries: an HTTP server that checks
webhook signatures (and can fail on purpose), and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.harness import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Answers `fail_with` to the first `fail_first` requests (all of them while
    `failing`), then 200; keeps every request and whether its signature held."""

    secret: str
    fail_first: int = 0
    fail_with: int = 503
    failing: bool = False
    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Received]:
        return [r for r, code in zip(self.requests, self.answered, strict=False) if code == 200]

    def __enter__(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                # Checked as the docs tell a receiver to, not with fleetrun's own code:
                # HMAC-SHA256 over "<timestamp>.<body>", hex, "sha256=" in front.
                stamp = headers.get("x-fleetrun-timestamp", "")
                expected = (
                    "sha256="
                    + hmac.new(
                        receiver.secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
                    ).hexdigest()
                )
                fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
                verified = fresh and hmac.compare_digest(
                    expected, headers.get("x-fleetrun-signature", "")
                )
                failing = receiver.failing or len(receiver.requests) < receiver.fail_first
                code = 401 if not verified else receiver.fail_with if failing else 200
                receiver.requests.append(Received(headers, body, verified))
                receiver.answered.append(code)
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on loopback keeping every message it accepts."""

    def __init__(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        tls: str | None = None,
        tls_dir: Path | None = None,
    ) -> None:
        """`tls`: None (plain), "starttls" (required before anything else) or "tls"
        (implicit TLS); its certificate is signed by a private CA made in `tls_dir`,
        whose certificate is then `self.ca_file`."""
        self.port = free_port()
        self.messages: list[Message] = []
        self.logins: list[tuple[str, str]] = []
        self.user = user
        self.password = password
        self.tls = tls
        self.ca_file: Path | None = None
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            from fleetrun.server.tls import self_signed

            assert tls_dir is not None, "a TLS receiver needs a directory for its CA"
            files = self_signed(tls_dir, [])
            self.ca_file = files.ca
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._context.load_cert_chain(files.cert, files.key)

    def __enter__(self) -> SmtpReceiver:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                receiver.messages.append(
                    message_from_bytes(envelope.content, policy=policy.default)
                )
                return "250 OK"

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            login, password = data.login.decode(), data.password.decode()
            receiver.logins.append((login, password))
            return AuthResult(success=(login, password) == (receiver.user, receiver.password))

        kwargs: dict[str, Any] = {}
        if self.user is not None:
            kwargs = {"authenticator": authenticate, "auth_require_tls": self.tls == "starttls"}
        if self.tls == "starttls":
            kwargs.update(tls_context=self._context, require_starttls=True)
        elif self.tls == "tls":
            kwargs.update(ssl_context=self._context)
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
