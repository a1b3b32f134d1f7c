from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from fleetrun.core import access
from fleetrun.schemas import documents as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import documents as store

router = APIRouter(prefix="/v1/documents", tags=["documents"])
DOCUMENT = "document/{name}"


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateDocument"))
async def create_document(
    request: Request,
    body: schemas.DocumentCreate,
    caller: Annotated[Caller, Depends(authorize("CreateDocument"))],
) -> schemas.Document:
    caller.require("CreateDocument", access.frn("document", body.name))

    def create(tx: Tx) -> schemas.Document:
        row = store.create_document(tx.session, body, caller.principal)
        return store.read_document(tx.session, row.name, str(row.version))

    return await state_of(request).db.write(create)


@router.put("/{name}", **action("UpdateDocument"))
async def update_document(
    request: Request,
    name: str,
    body: schemas.DocumentUpdate,
    caller: Annotated[Caller, Depends(authorize("UpdateDocument", DOCUMENT))],
) -> schemas.Document:
    """Add a version (the default version stays until it is set)."""

    def update(tx: Tx) -> schemas.Document:
        row = store.update_document(tx.session, name, body, caller.principal)
        return store.read_document(tx.session, name, str(row.version))

    return await state_of(request).db.write(update)


@router.get("", **action("ListDocuments"))
async def list_documents(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListDocuments"))]
) -> Page[schemas.DocumentSummary]:
    found = await state_of(request).db.read(store.read_documents)
    return Page(
        items=[d for d in found if caller.allows("ListDocuments", access.frn("document", d.name))]
    )


@router.get("/{name}", **action("GetDocument"))
async def get_document(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetDocument", DOCUMENT))],
    version: Annotated[str | None, Query(description="a number, $LATEST or $DEFAULT")] = None,
) -> schemas.Document:
    return await state_of(request).db.read(lambda s: store.read_document(s, name, version))


@router.put("/{name}/default-version", **action("UpdateDocumentDefaultVersion"))
async def set_default_version(
    request: Request,
    name: str,
    body: schemas.DefaultVersion,
    caller: Annotated[Caller, Depends(authorize("UpdateDocumentDefaultVersion", DOCUMENT))],
) -> schemas.Document:
    return await state_of(request).db.write(
        lambda tx: store.set_default_version(tx.session, name, body.version)
    )


@router.post("/{name}/signatures", **action("SignDocument"))
async def sign_document(
    request: Request,
    name: str,
    body: schemas.DocumentSignature,
    caller: Annotated[Caller, Depends(authorize("SignDocument", DOCUMENT))],
) -> schemas.Document:
    """Attach a publisher's signature to a version (made offline with the publisher's
    key: `fleetrun documents sign`). Nodes that require signed documents verify it."""
    return await state_of(request).db.write(lambda tx: store.add_signature(tx.session, name, body))


@router.delete("/{name}", status_code=204, **action("DeleteDocument"))
async def delete_document(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeleteDocument", DOCUMENT))],
) -> None:
    """Delete a document and all its versions. Commands sent with it keep their steps."""
    await state_of(request).db.write(lambda tx: store.delete_document(tx.session, name))
