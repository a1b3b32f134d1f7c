"""Console pages for documents (list, view a version) and the audit log (filter, page,
verify the chain). Each declares the API route's `authorize(...)`, with the same
resource, and calls the API route's function."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import RedirectResponse

from fleetrun.core import access
from fleetrun.core.errors import FleetrunError
from fleetrun.schemas.documents import DocumentCreate, DocumentUpdate
from fleetrun.server.api import audit as audit_api
from fleetrun.server.api import documents as documents_api
from fleetrun.server.api.deps import authorize
from fleetrun.server.authz import Caller
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import field, form, page

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


@router.get("/documents-new")
async def new_document_page(
    request: Request, caller: Annotated[Caller, Depends(authorize("CreateDocument"))]
) -> Response:
    return page(request, "document_edit.html", caller, {"document": None, "content": ""})


@router.post("/documents-new")
async def create_document(
    request: Request, caller: Annotated[Caller, Depends(authorize("CreateDocument"))]
) -> Response:
    """Checked by the API (the same parser, validation and sentences); on a refusal the
    form comes back with the sentence and the text as written."""
    fields = await form(request)
    name, content = field(fields, "name"), _text(fields)
    try:
        body = DocumentCreate(name=name, content=content)
        made = await documents_api.create_document(request, body, caller)
    except FleetrunError as exc:
        return _edit_again(request, caller, None, name, content, exc)
    return RedirectResponse(f"/ui/documents/{made.name}", status_code=303)


@router.get("/documents/{name}/edit")
async def edit_document_page(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("UpdateDocument", documents_api.DOCUMENT))],
) -> Response:
    caller.require("GetDocument", access.frn("document", name))
    document = await documents_api.get_document(request, name, caller, "$LATEST")
    content = json.dumps(document.content, indent=2)
    return page(request, "document_edit.html", caller, {"document": document, "content": content})


@router.post("/documents/{name}/edit")
async def update_document(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("UpdateDocument", documents_api.DOCUMENT))],
) -> Response:
    fields = await form(request)
    content = _text(fields)
    try:
        made = await documents_api.update_document(
            request, name, DocumentUpdate(content=content), caller
        )
    except FleetrunError as exc:
        return _edit_again(request, caller, name, name, content, exc)
    return RedirectResponse(f"/ui/documents/{name}?version={made.version}", status_code=303)


def _text(fields: dict[str, list[str]]) -> str:
    values = fields.get("content")
    return values[0].replace("\r\n", "\n") if values else ""


def _edit_again(
    request: Request,
    caller: Caller,
    existing: str | None,
    name: str,
    content: str,
    error: FleetrunError,
) -> Response:
    context = {
        "document": {"name": existing} if existing else None,
        "name": name,
        "content": content,
        "message": error.message,
    }
    return page(request, "document_edit.html", caller, context, status_code=error.status_code)


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
