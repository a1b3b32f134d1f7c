"""Who is calling the SSM-compatible API: the request's SigV4 signature checked
against an access key fleetrun issued (`fleetrun tokens create --aws`).

The signature must be for service `ssm` (any region), made within five minutes of the
server's time, over the headers the client says it signed, with the key's secret. The
answers are AWS's: no Authorization header is MissingAuthenticationTokenException, a
malformed one IncompleteSignatureException, an unknown or revoked key
UnrecognizedClientException, an expired one ExpiredTokenException, and a wrong
signature, service, day or clock InvalidSignatureException. Failures count against the
source address like a wrong bearer token does (too many: ThrottlingException).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime, timedelta

from fastapi import Request

from fleetrun.core import sigv4
from fleetrun.core.errors import ServerError
from fleetrun.server.api.deps import caller_of, remembered_identity
from fleetrun.server.authz import Caller
from fleetrun.server.ssm.base import SsmError
from fleetrun.server.state import ServerState
from fleetrun.server.store import principals as principal_store
from fleetrun.server.store import tokens as token_store
from fleetrun.server.store.principals import Identity

SERVICE = "ssm"
MAX_SKEW = timedelta(minutes=5)
CACHE_PREFIX = "aws:"  # identity cache keys of access keys (bearer tokens: their hash)
WRONG_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service "
    "documentation for details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."
EXPIRED_KEY = "The security token included in the request is expired"


async def authenticate(request: Request, state: ServerState, body: bytes) -> Caller:
    source = request.client.host if request.client else "-"
    _hold_back(state, source, state.unauthenticated.wait_s(source, state.clock.monotonic()))
    try:
        identity = await _verify(request, state, body)
    except SsmError:
        _hold_back(state, source, state.unauthenticated.take(source, state.clock.monotonic()))
        raise
    return caller_of(request, identity)


async def _verify(request: Request, state: ServerState, body: bytes) -> Identity:
    header = request.headers.get("authorization")
    if not header:
        raise SsmError("MissingAuthenticationTokenException", "Missing Authentication Token")
    try:
        auth = sigv4.parse_authorization(header)
    except sigv4.SignatureFormatError as exc:
        raise SsmError(
            "IncompleteSignatureException", f"Authorization header is not valid SigV4: {exc}."
        ) from exc
    amz_date = _signed_date(request, auth)
    _check_scope(auth, amz_date, state.clock.now())
    identity = await _identity(state, auth.access_key)
    secret = _secret(state, auth.access_key, identity)
    expected = sigv4.signature(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers={name: request.headers.get(name, "") for name in auth.signed_headers},
        payload_hash=hashlib.sha256(body).hexdigest(),
        amz_date=amz_date,
        region=auth.region,
        service=auth.service,
        secret_key=secret,
    )
    if not hmac.compare_digest(expected, auth.signature):
        raise SsmError("InvalidSignatureException", WRONG_SIGNATURE)
    return identity


def _signed_date(request: Request, auth: sigv4.Authorization) -> str:
    """The request's X-Amz-Date, which must be among the signed headers (with host)."""
    amz_date = request.headers.get("x-amz-date", "")
    missing = [h for h in ("host", "x-amz-date") if h not in auth.signed_headers]
    if not amz_date or missing:
        raise SsmError(
            "IncompleteSignatureException",
            "The request must carry an X-Amz-Date header, and sign it and Host "
            f"(SignedHeaders lacks {', '.join(missing) or 'nothing, but X-Amz-Date is absent'}).",
        )
    return amz_date


def _check_scope(auth: sigv4.Authorization, amz_date: str, now: datetime) -> None:
    if auth.service != SERVICE:
        raise SsmError(
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{SERVICE}'. ",
        )
    try:
        at = sigv4.parse_amz_date(amz_date)
    except ValueError as exc:
        raise SsmError(
            "IncompleteSignatureException",
            f"X-Amz-Date {amz_date!r} is not a date in the form YYYYMMDDTHHMMSSZ.",
        ) from exc
    if auth.day != amz_date[:8]:
        raise SsmError(
            "InvalidSignatureException",
            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
            f"date from HTTP: '{auth.day}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    stamp = now.strftime(sigv4.AMZ_DATE)
    if at < now - MAX_SKEW:
        earliest = (now - MAX_SKEW).strftime(sigv4.AMZ_DATE)
        raise SsmError(
            "InvalidSignatureException",
            f"Signature expired: {amz_date} is now earlier than {earliest} ({stamp} - 5 min.)",
        )
    if at > now + MAX_SKEW:
        latest = (now + MAX_SKEW).strftime(sigv4.AMZ_DATE)
        raise SsmError(
            "InvalidSignatureException",
            f"Signature not yet current: {amz_date} is still later than {latest} "
            f"({stamp} + 5 min.)",
        )


async def _identity(state: ServerState, access_key_id: str) -> Identity:
    """Who the key speaks for: remembered between requests like a bearer token's
    identity, else looked up."""
    now = state.clock.now()
    identity = await remembered_identity(
        state,
        CACHE_PREFIX + access_key_id,
        now,
        lambda s: principal_store.identify_access_key(s, access_key_id, now),
    )
    if identity is None:
        expired = await state.db.read(
            lambda s: principal_store.access_key_expired(s, access_key_id, now)
        )
        if expired:
            raise SsmError("ExpiredTokenException", EXPIRED_KEY)
        raise SsmError("UnrecognizedClientException", UNKNOWN_KEY)
    return identity


def _secret(state: ServerState, access_key_id: str, identity: Identity) -> str:
    if identity.secret_sealed is None:  # a bearer token's row: never an access key
        raise SsmError("UnrecognizedClientException", UNKNOWN_KEY)
    try:
        return state.secrets.open(identity.secret_sealed, token_store.seal_context(access_key_id))
    except ServerError as exc:
        raise SsmError(
            "InternalServerError",
            "This access key's secret cannot be opened: the server's secret key changed "
            "(replicas must share FLEETRUN_SECRET_KEY); create a new access key.",
            status=500,
        ) from exc


def _hold_back(state: ServerState, source: str, wait_s: float | None) -> None:
    if wait_s is not None:
        raise SsmError(
            "ThrottlingException",
            f"Rate exceeded: too many requests without a valid signature from {source}; "
            f"retry in {math.ceil(wait_s)} second(s) with a valid access key.",
        )
