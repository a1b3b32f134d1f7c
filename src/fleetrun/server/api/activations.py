from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from fleetrun.core import access
from fleetrun.schemas import activations as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.store import activations as store

router = APIRouter(prefix="/v1/activations", tags=["activations"])


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateActivation"))
async def create_activation(
    request: Request,
    body: schemas.ActivationCreate,
    caller: Annotated[Caller, Depends(authorize("CreateActivation", "*"))],
) -> schemas.ActivationCreated:
    state = state_of(request)
    now = state.clock.now()
    row, code = await state.db.write(lambda tx: store.create_activation(tx.session, body, now))
    return schemas.ActivationCreated(**store.to_schema(row, now).model_dump(), code=code)


@router.get("", **action("ListActivations"))
async def list_activations(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListActivations"))]
) -> Page[schemas.Activation]:
    state = state_of(request)
    rows = await state.db.read(store.read_activations)
    now = state.clock.now()
    return Page(
        items=[
            store.to_schema(r, now)
            for r in rows
            if caller.allows("ListActivations", access.frn("activation", r.id))
        ]
    )


@router.delete("/{activation_id}", status_code=204, **action("DeleteActivation"))
async def delete_activation(
    request: Request,
    activation_id: str,
    caller: Annotated[Caller, Depends(authorize("DeleteActivation", "activation/{activation_id}"))],
) -> None:
    await state_of(request).db.write(lambda tx: store.delete_activation(tx.session, activation_id))
