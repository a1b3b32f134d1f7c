"""Who the caller is: `GET /v1/whoami`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from fleetrun.schemas import access as schemas
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.store import principals as store

router = APIRouter(prefix="/v1", tags=["identity"])


@router.get("/whoami", **action("GetCallerIdentity"))
async def whoami(
    request: Request, caller: Annotated[Caller, Depends(authorize("GetCallerIdentity", "*"))]
) -> schemas.Identity:
    attached = await state_of(request).db.read(
        lambda s: store.read_attachments(s, caller.principal)
    )
    return schemas.Identity(
        principal=caller.principal,
        kind=str(caller.attributes.get("kind", "user")),
        token_id=caller.token_id,
        attached=[schemas.Attached(kind=a.kind, name=a.name) for a in attached],
    )
