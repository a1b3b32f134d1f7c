"""The AWS JSON 1.1 protocol of AWS Systems Manager, on the server's root: what lets an
unmodified `boto3.client("ssm", endpoint_url=SERVER)` or `aws ssm ... --endpoint-url`
talk to fleetrun.

    POST /   X-Amz-Target: AmazonSSM.<Operation>
             Content-Type: application/x-amz-json-1.1
             Authorization: AWS4-HMAC-SHA256 ... (auth.py)

A request is authenticated (SigV4, as the access key's principal), decided at the gate
on the operation's fleetrun action as the native route's `authorize` does, and handed
to its operation's handler (one module per resource, each with an `OPERATIONS` table);
handlers call the same services the native routes do and decide per resource the same
way. Every answer is JSON in AWS's shapes; every error is `{"__type", "message"}` with
SSM's code, so boto3 raises its modelled exception. An operation fleetrun does not
serve answers `UnknownOperationException`, as AWS does for a name it does not know.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from fleetrun.core import logs
from fleetrun.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    FleetrunError,
    LimitExceededError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from fleetrun.server.api.deps import admit, audit_entry, state_of
from fleetrun.server.ssm import (
    activations,
    auth,
    commands,
    documentlist,
    documents,
    instances,
    tags,
)
from fleetrun.server.ssm.base import Call, Operation, SsmError

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "AmazonSSM."
# Every operation served, by SSM name: the tables of the resource modules.
OPERATIONS: dict[str, Operation] = {
    **commands.OPERATIONS,
    **instances.OPERATIONS,
    **documents.OPERATIONS,
    **documentlist.OPERATIONS,
    **tags.OPERATIONS,
    **activations.OPERATIONS,
}


async def handle(request: Request) -> JSONResponse:
    """`POST /`: one SSM operation."""
    request_id = getattr(request.state, "request_id", "-")
    try:
        return _answer(await _serve(request), request_id)
    except SsmError as exc:
        return _error(exc, request_id)
    except FleetrunError as exc:
        return _error(_translate(exc), request_id)
    except Exception:
        log.exception("SSM request %s failed", request_id)
        failed = SsmError(
            "InternalServerError",
            f"The server failed on this request (id {request_id}); its log has the details.",
            status=500,
        )
        return _error(failed, request_id)


async def _serve(request: Request) -> dict[str, Any]:
    state = state_of(request)
    target = request.headers.get("x-amz-target", "")
    entry = audit_entry(request)
    if entry is not None:
        entry.detail = {"ssm": target.removeprefix(TARGET_PREFIX) or None}
    raw = await request.body()
    caller = await auth.authenticate(request, state, raw)
    name = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""
    operation = OPERATIONS.get(name)
    if operation is None:
        raise SsmError(
            "UnknownOperationException",
            f"Operation {target or '(no X-Amz-Target)'} is not one fleetrun serves: see "
            "docs/ssm-compat.md for the operations it does.",
        )
    body = _body(request, raw)
    admit(request, caller, operation.gate_action(body), None)
    logs.bind(ssm_operation=name)
    return await operation.handler(Call(request, state, caller, name, body))


def _body(request: Request, raw: bytes) -> Mapping[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (CONTENT_TYPE, "application/x-amz-json-1.0", "application/json"):
        raise SsmError(
            "SerializationException",
            f"Content-Type {content_type or '(none)'!r} is not understood: send {CONTENT_TYPE}.",
        )
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SsmError(
            "SerializationException", f"The request body is not a JSON object ({exc})."
        ) from exc
    if not isinstance(body, dict):
        raise SsmError("SerializationException", "The request body must be a JSON object.")
    return body


def _translate(error: FleetrunError) -> SsmError:
    """A fleetrun error a handler did not word in SSM's terms itself."""
    if isinstance(error, AccessDeniedError):
        return SsmError("AccessDeniedException", error.message)
    if isinstance(error, AuthenticationError):
        return SsmError("UnrecognizedClientException", error.message)
    if isinstance(error, LimitExceededError):
        return SsmError("ThrottlingException", error.message)
    if isinstance(error, PayloadTooLargeError):
        return SsmError("MaxDocumentSizeExceeded", error.message)
    if isinstance(error, ValidationError | NotFoundError) or error.status_code < 500:
        return SsmError("ValidationException", error.message)
    return SsmError("InternalServerError", error.message, status=500)


def _answer(body: dict[str, Any], request_id: str) -> JSONResponse:
    return JSONResponse(body, media_type=CONTENT_TYPE, headers={"x-amzn-requestid": request_id})


def _error(error: SsmError, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"__type": error.code, "message": error.message},
        status_code=error.status,
        media_type=CONTENT_TYPE,
        headers={"x-amzn-requestid": request_id},
    )
