"""Console pages for documents (list, view a version) and the audit log (filter, page,
verify the chain). Each declares the API route's `authorize(...)`, with the same
resource, and calls the API route's function."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from fleetrun.server.api import audit as audit_api
from fleetrun.server.api import documents as documents_api
from fleetrun.server.api.deps import authorize
from fleetrun.server.authz import Caller
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import page

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])


@router.get("/documents")
async def documents_page(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListDocuments"))]
) -> Response:
    listed = await documents_api.list_documents(request, caller)
    return page(request, "documents.html", caller, {"documents": listed.items})


@router.get("/documents/{name}")
async def document_page(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetDocument", documents_api.DOCUMENT))],
    version: str | None = None,
) -> Response:
    document = await documents_api.get_document(request, name, caller, version or None)
    latest = int(document.latest_version) if document.latest_version.isdigit() else 1
    context = {
        "document": document,
        "versions": [str(v) for v in range(latest, 0, -1)],
        "content": json.dumps(document.content, indent=2),
    }
    return page(request, "document.html", caller, context)


@router.get("/audit")
async def audit_page(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListAuditRecords", "*"))],
    since: str = "",
    principal: str = "",
    action: str = "",
    cursor: str | None = None,
) -> Response:
    listed = await audit_api.list_records(
        request,
        caller,
        since=since or None,
        principal=principal or None,
        action_name=action or None,
        limit=100,
        cursor=cursor,
    )
    context = {
        "records": listed.items,
        "next_cursor": listed.next_cursor,
        "filters": {"since": since, "principal": principal, "action": action},
    }
    return page(request, "audit.html", caller, context)


@router.get("/audit/verify")
async def audit_verify(
    request: Request, caller: Annotated[Caller, Depends(authorize("VerifyAuditLog", "*"))]
) -> Response:
    verdict = await audit_api.verify(request, caller)
    return page(request, "audit_verdict.html", caller, {"verdict": verdict})
