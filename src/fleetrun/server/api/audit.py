"""The audit log: list, export (JSON lines), verify. Each reader first waits for the
records still queued, so it sees every request answered before it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter

from fleetrun.schemas import audit as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.store import audit as store

router = APIRouter(prefix="/v1/audit", tags=["audit"])
EXPORT_BATCH = 1000
_record = TypeAdapter(schemas.AuditRecord)


@router.get("", **action("ListAuditRecords"))
async def list_records(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListAuditRecords", "*"))],
    since: datetime | None = None,
    principal: str | None = None,
    action_name: Annotated[str | None, Query(alias="action")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> Page[schemas.AuditRecord]:
    """Newest first."""
    state = state_of(request)
    await state.audit.flush()
    rows, next_cursor = await state.db.read(
        lambda s: store.read_records(
            s,
            since=since,
            principal=principal,
            action=action_name,
            limit=limit,
            cursor=cursor,
        )
    )
    return Page(items=[store.to_schema(r) for r in rows], next_cursor=next_cursor)


class NDJSONResponse(StreamingResponse):
    media_type = "application/x-ndjson"


@router.get(
    "/export",
    response_class=NDJSONResponse,
    responses={
        200: {
            "description": "One AuditRecord (JSON) a line.",
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        }
    },
    **action("ExportAuditRecords"),
)
async def export_records(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ExportAuditRecords", "*"))],
    since: datetime | None = None,
) -> StreamingResponse:
    """Every record (since a time), oldest first, one JSON object a line, with the
    hashes that let anyone check the chain again."""
    state = state_of(request)
    await state.audit.flush()

    async def lines() -> AsyncIterator[bytes]:
        after = 0
        while True:
            rows = await state.db.read(
                partial(store.read_after, after=after, since=since, limit=EXPORT_BATCH)
            )
            for row in rows:
                data = _record.dump_python(schemas.AuditRecord(**row), mode="json")
                yield (json.dumps(data, ensure_ascii=False) + "\n").encode()
            if len(rows) < EXPORT_BATCH:
                return
            after = rows[-1]["seq"]

    return NDJSONResponse(lines())


@router.get("/verify", **action("VerifyAuditLog"))
async def verify(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("VerifyAuditLog", "*"))],
) -> schemas.AuditVerdict:
    """Recompute the whole chain; name the first record missing or altered."""
    state = state_of(request)
    await state.audit.flush()
    verdict = await state.db.read(store.verify_log)
    return schemas.AuditVerdict(
        ok=verdict.ok,
        records=verdict.records,
        first_bad_seq=verdict.first_bad_seq,
        problem=verdict.problem,
        message=verdict.message,
    )
