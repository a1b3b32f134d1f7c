"""Sending one delivery to its target, and saying how it went.

Each sender answers `delivered`, `retry` (a failure another attempt may mend: a
network error, a timeout, HTTP 5xx/408/429, SMTP 4xx, a broker that is down) or
`failed` (one no retry can mend: HTTP 4xx, a refused address, a command the rule's
principal may not send). The outbox decides when to retry and when to give up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from fleetrun import __version__
from fleetrun.core import delivery, documents
from fleetrun.core.errors import FleetrunError
from fleetrun.core.events import COMMAND_STATUS, INVOCATION_STATUS, notification_message
from fleetrun.schemas.base import describe
from fleetrun.schemas.commands import CommandCreate
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.destinations import guarded_client
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.store import commands as command_store
from fleetrun.server.store import deliveries as store
from fleetrun.server.store import documents as document_store
from fleetrun.server.store import principals as principal_store
from fleetrun.server.store.rules import secret_context
from fleetrun.server.store.tables import Channel, Rule

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

DELIVERED, RETRY, FAILED = "delivered", "retry", "failed"


@dataclass(frozen=True)
class Result:
    outcome: str
    detail: str | None = None
    recorded: bool = False  # the sender recorded the attempt itself (in its transaction)


@dataclass(frozen=True)
class Spec:
    """What a delivery goes to, read afresh at each attempt."""

    target: delivery.Target
    secret: str | None  # opened
    input: dict[str, Any] | None
    principal: str | None
    payload: dict[str, Any]  # the event, or a channel's notification message


def target_index(targets: list[dict[str, Any]], claimed: store.Claimed) -> int | None:
    """Where the delivery's target is in its rule now: at the place it was routed to,
    or, after `rules update` moved it, wherever the same target is; None if it is gone."""
    if claimed.target_index < len(targets) and targets[claimed.target_index]["target"] == (
        claimed.target
    ):
        return claimed.target_index
    found = [i for i, t in enumerate(targets) if t["target"] == claimed.target]
    return found[0] if found else None


class Senders:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._http: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def spec(self, claimed: store.Claimed, session: Session) -> Spec | str:
        """The destination of a delivery, or why there is none any more."""
        box = self.state.secrets
        if claimed.channel:
            channel = session.get(Channel, claimed.channel)
            if channel is None:
                return f"channel {claimed.channel!r} was deleted"
            secret = (
                box.open(channel.secret, secret_context("channel", channel.name))
                if channel.secret
                else None
            )
            payload = notification_message(claimed.event, _output_location(claimed.event))
            return Spec(delivery.parse_target(channel.target), secret, None, None, payload)
        rule = session.get(Rule, claimed.rule)
        index = None if rule is None else target_index(rule.targets, claimed)
        if rule is None or index is None:
            return f"rule {claimed.rule!r} (or this target of it) was deleted"
        entry = rule.targets[index]
        sealed = entry.get("secret")
        secret = box.open(sealed, secret_context("rule", rule.name, index)) if sealed else None
        return Spec(
            delivery.parse_target(entry["target"]),
            secret,
            entry.get("input"),
            rule.principal,
            claimed.event,
        )

    async def send(self, claimed: store.Claimed, spec: Spec, owner: str) -> Result:
        scheme = spec.target.scheme
        try:
            if scheme == "webhook":
                return await self._webhook(spec, claimed)
            if scheme == "email":
                return await asyncio.to_thread(self._email, spec, claimed)
            if scheme == "nats":
                return await self._nats(spec)
            if scheme in ("redis", "redis-stream"):
                return await self._redis(spec)
            return await self._command(spec, claimed, owner)
        except FleetrunError as exc:
            return Result(FAILED, exc.message)
        except Exception as exc:
            log.warning("delivery %s to %s failed: %r", claimed.id, spec.target, exc)
            return Result(RETRY, f"{type(exc).__name__}: {exc}"[:500])

    # -- webhook ------------------------------------------------------------------

    async def _webhook(self, spec: Spec, claimed: store.Claimed) -> Result:
        if self._http is None:
            self._http = guarded_client(
                self.state.destinations,
                timeout=self.state.settings.delivery_timeout_s,
                headers={"user-agent": f"fleetrun/{__version__}"},
            )
        body = _json(spec.payload)
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            delivery.TIMESTAMP_HEADER: timestamp,
            delivery.EVENT_ID_HEADER: str(claimed.event.get("id", "")),
            "X-Fleetrun-Delivery": claimed.id,
        }
        if spec.secret:
            headers[delivery.SIGNATURE_HEADER] = delivery.sign(spec.secret, timestamp, body)
        try:
            response = await self._http.post(spec.target.address, content=body, headers=headers)
        except httpx.TimeoutException:
            return Result(RETRY, f"no answer within {self.state.settings.delivery_timeout_s:g}s")
        except httpx.TransportError as exc:
            return Result(RETRY, f"network error: {type(exc).__name__}: {exc}"[:500])
        code = response.status_code
        if 200 <= code < 300:
            return Result(DELIVERED, f"HTTP {code}")
        if delivery.retryable_status(code):
            return Result(RETRY, f"HTTP {code}")
        return Result(FAILED, f"HTTP {code}: the receiver refused it (4xx is not retried)")

    # -- e-mail -------------------------------------------------------------------

    def _email(self, spec: Spec, claimed: store.Claimed) -> Result:
        settings = self.state.settings
        if not settings.smtp_host:
            return Result(
                FAILED,
                "no SMTP server is configured: set --smtp-host (FLEETRUN_SMTP_HOST), then redrive",
            )
        message = compose_email(settings.smtp_from, spec.target.address, spec.payload, claimed)
        timeout = settings.delivery_timeout_s
        try:
            if settings.smtp_security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    settings.smtp_host,
                    settings.smtp_port,
                    timeout=timeout,
                    context=_smtp_tls(settings.smtp_ca_file),
                )
            else:
                smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
            with smtp:
                if settings.smtp_security == "starttls":
                    smtp.starttls(context=_smtp_tls(settings.smtp_ca_file))
                if settings.smtp_user:
                    smtp.login(settings.smtp_user, settings.smtp_password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            return Result(FAILED, f"the SMTP server refused the address: {_smtp_reason(exc)}")
        except smtplib.SMTPAuthenticationError:
            return Result(FAILED, "the SMTP server refused the user name or password")
        except smtplib.SMTPResponseException as exc:
            outcome = RETRY if 400 <= exc.smtp_code < 500 else FAILED
            return Result(outcome, f"SMTP {exc.smtp_code}")
        except ssl.SSLCertVerificationError as exc:
            return Result(
                RETRY,
                f"SMTP: the server's certificate is not trusted ({exc.verify_message}): "
                "give its CA with --smtp-ca-file",
            )
        except (smtplib.SMTPException, OSError) as exc:
            return Result(RETRY, f"SMTP: {type(exc).__name__}: {exc}"[:500])
        return Result(DELIVERED, f"accepted by {settings.smtp_host}")

    # -- brokers --------------------------------------------------------------------

    async def _nats(self, spec: Spec) -> Result:
        import nats

        url = self.state.settings.nats_url
        timeout = self.state.settings.delivery_timeout_s
        client = await nats.connect(
            url, connect_timeout=timeout, allow_reconnect=False, max_reconnect_attempts=0
        )
        try:
            await client.publish(spec.target.address, _json(spec.payload))
            await client.flush(timeout=max(1, round(timeout)))
        finally:
            await client.close()
        return Result(DELIVERED, f"published on {spec.target.address}")

    async def _redis(self, spec: Spec) -> Result:
        import redis.asyncio as redis_asyncio

        settings = self.state.settings
        client = redis_asyncio.from_url(
            settings.redis_url,
            socket_timeout=settings.delivery_timeout_s,
            socket_connect_timeout=settings.delivery_timeout_s,
        )
        try:
            if spec.target.scheme == "redis":
                receivers = await client.publish(spec.target.address, _json(spec.payload))
                return Result(DELIVERED, f"published to {receivers} subscriber(s)")
            entry = await client.xadd(spec.target.address, {"event": _json(spec.payload)})
            return Result(
                DELIVERED, f"stream entry {entry.decode() if isinstance(entry, bytes) else entry}"
            )
        finally:
            await client.aclose()

    # -- commands -----------------------------------------------------------------------

    async def _command(self, spec: Spec, claimed: store.Claimed, owner: str) -> Result:
        """Send the command and record the attempt in one transaction: a crash cannot
        send it twice."""
        state = self.state
        principal = spec.principal or ""

        def send(tx: Tx) -> Result | None:
            started = time.monotonic()
            if not store.still_leased(tx.session, claimed.id, owner):
                return None  # another server took it over: it sends the command, not us
            try:
                rendered, env = command_input(tx.session, spec, claimed.event)
                body = CommandCreate(**{**rendered, "document_name": spec.target.address})
                caller = Caller(
                    principal=principal,
                    policies=tuple(principal_store.effective_policies(tx.session, principal)),
                    request_id=f"rule:{claimed.rule}",
                    on_denied=partial(state.audit.denied, None),
                )
                with tx.session.begin_nested():
                    command = engine_commands.send_command(
                        tx.session,
                        body,
                        principal=principal,
                        caller=caller,
                        extras=command_store.StepExtras(env=env),
                        now=state.clock.now(),
                    )
                result = Result(DELIVERED, f"command {command.id}", recorded=True)
                state.wake_dispatcher(tx)
            except FleetrunError as exc:
                result = Result(FAILED, exc.message, recorded=True)
            except PydanticValidationError as exc:  # the template made no valid command
                reason = "The input template made no valid command from this event: " + describe(
                    exc.errors()
                )
                result = Result(FAILED, reason[:500], recorded=True)
            store.record(
                tx.session,
                claimed,
                owner,
                outcome=result.outcome,
                detail=result.detail,
                duration_ms=int((time.monotonic() - started) * 1000),
                retry_at=None,
                now=state.clock.now(),
            )
            return result

        result = await state.db.write(send)
        return result or Result(RETRY, "lease lost to another server", recorded=True)


def command_input(
    session: Session, spec: Spec, event: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The command body a rule's input template makes from this event, and the
    environment variables that carry the event fields its script reads (never text of
    the script: `delivery.render_command_input`)."""
    template = spec.input or {}
    version = delivery.render_input(template.get("document_version"), event)
    doc = document_store.resolve(session, spec.target.address, version)
    return delivery.render_command_input(template, event, documents.script_parameters(doc.content))


def compose_email(
    sender: str, to: str, payload: Mapping[str, Any], claimed: store.Claimed
) -> EmailMessage:
    """A message a person can read at a glance, with the event JSON attached."""
    event = claimed.event
    detail_type = str(event.get("detail-type", "Event"))
    detail: Mapping[str, Any] = event.get("detail") or {}
    status = detail.get("status") or detail.get("ping-status") or detail.get("action") or ""
    what = detail.get("document-name") or detail.get("node-name") or detail.get("principal") or ""
    subject = f"[fleetrun] {detail_type}"
    if status:
        subject += f": {status}"
    if what:
        subject += f" ({what})"
    lines = [f"{detail_type} at {event.get('time')}.", ""]
    lines += [
        f"{key}: {_plain(value)}"
        for key, value in detail.items()
        if value not in (None, "", [], {})
    ]
    if claimed.channel:
        lines += ["", f"Notification channel: {claimed.channel}"]
    else:
        lines += ["", f"Rule: {claimed.rule}"]
    lines += ["", f"Event id: {event.get('id')}", "The full event is attached as JSON."]
    # Long subjects stay on one line (RFC 5322 allows 998 characters): folded ones
    # reach some mail readers with a stray leading space.
    message = EmailMessage(policy=email_policy.SMTP.clone(max_line_length=998))
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content("\n".join(lines) + "\n")
    message.add_attachment(
        json.dumps(payload if claimed.channel else event, indent=2).encode(),
        maintype="application",
        subtype="json",
        filename="event.json",
    )
    return message


def _plain(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def _smtp_reason(exc: smtplib.SMTPRecipientsRefused) -> str:
    for code, text in exc.recipients.values():
        return f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
    return "refused"


def _output_location(event: Mapping[str, Any]) -> str:
    detail = event.get("detail") or {}
    command_id = detail.get("command-id")
    if event.get("detail-type") == INVOCATION_STATUS and detail.get("node-id"):
        return f"/v1/commands/{command_id}/invocations/{detail['node-id']}/output"
    if event.get("detail-type") == COMMAND_STATUS:
        return f"/v1/commands/{command_id}/invocations"
    return ""


def _smtp_tls(ca_file: str | None) -> ssl.SSLContext:
    """Verify the SMTP server's certificate and name, against `ca_file` when given (a
    private CA), else the system's trust store."""
    return ssl.create_default_context(cafile=ca_file)
