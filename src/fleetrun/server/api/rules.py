"""Rules (an event pattern and targets) and their deliveries; channels (where command
notifications go). A bad pattern, target or template is refused with one sentence and
nothing is stored; target secrets are never returned."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from sqlalchemy.orm import Session

from fleetrun.core import access, delivery
from fleetrun.core.destinations import DestinationPolicy
from fleetrun.schemas import events as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import deliveries as delivery_store
from fleetrun.server.store import rules as store

router = APIRouter(prefix="/v1/rules", tags=["rules"])
channels_router = APIRouter(prefix="/v1/channels", tags=["channels"])
RULE = "rule/{name}"
CHANNEL = "channel/{name}"


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateRule"))
async def create_rule(
    request: Request,
    body: schemas.RuleCreate,
    caller: Annotated[Caller, Depends(authorize("CreateRule"))],
) -> schemas.Rule:
    """A rule whose command: targets send as another principal needs the power to act
    as it: CreateToken on that principal."""
    caller.require("CreateRule", access.frn("rule", body.name))
    if body.principal is not None and body.principal != caller.principal:
        caller.require("CreateToken", access.frn("principal", body.principal))
    state = state_of(request)
    for spec in body.targets:
        _check_destination(state.destinations, spec.target)

    def create(tx: Tx) -> schemas.Rule:
        return store.to_schema(store.create_rule(tx.session, body, state.secrets))

    return await state.db.write(create)


@router.get("", **action("ListRules"))
async def list_rules(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListRules"))]
) -> Page[schemas.Rule]:
    def read(session: Session) -> Page[schemas.Rule]:
        return Page(
            items=[
                store.to_schema(r)
                for r in store.read_rules(session)
                if caller.allows("ListRules", access.frn("rule", r.name))
            ]
        )

    return await state_of(request).db.read(read)


@router.get("/{name}", **action("GetRule"))
async def get_rule(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("GetRule", RULE))]
) -> schemas.Rule:
    return await state_of(request).db.read(lambda s: store.to_schema(store.read_rule(s, name)))


@router.patch("/{name}", **action("UpdateRule"))
async def update_rule(
    request: Request,
    name: str,
    body: schemas.RuleUpdate,
    caller: Annotated[Caller, Depends(authorize("UpdateRule", RULE))],
) -> schemas.Rule:
    """Change a rule in place; its deliveries stay. A new principal for command:
    targets needs the power to act as it (CreateToken), as at creation."""
    if body.principal is not None and body.principal != caller.principal:
        caller.require("CreateToken", access.frn("principal", body.principal))
    state = state_of(request)
    for spec in body.targets or []:
        _check_destination(state.destinations, spec.target)

    def update(tx: Tx) -> schemas.Rule:
        return store.to_schema(store.update_rule(tx.session, name, body, state.secrets))

    return await state.db.write(update)


@router.post("/{name}/enable", **action("EnableRule"))
async def enable_rule(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("EnableRule", RULE))]
) -> schemas.Rule:
    return await state_of(request).db.write(
        lambda tx: store.to_schema(store.set_enabled(tx.session, name, True))
    )


@router.post("/{name}/disable", **action("DisableRule"))
async def disable_rule(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DisableRule", RULE))],
) -> schemas.Rule:
    return await state_of(request).db.write(
        lambda tx: store.to_schema(store.set_enabled(tx.session, name, False))
    )


@router.delete("/{name}", status_code=204, **action("DeleteRule"))
async def delete_rule(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("DeleteRule", RULE))]
) -> None:
    def delete(tx: Tx) -> None:
        store.delete_rule(tx.session, name)
        delivery_store.forget_rule(tx.session, name)

    await state_of(request).db.write(delete)


@router.get("/{name}/deliveries", **action("ListRuleDeliveries"))
async def list_deliveries(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("ListRuleDeliveries", RULE))],
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[schemas.Delivery]:
    """Newest first, each with every attempt."""

    def read(session: Session) -> Page[schemas.Delivery]:
        store.read_rule(session, name)
        return Page(
            items=delivery_store.read_deliveries(session, rule=name, state=state, limit=limit)
        )

    return await state_of(request).db.read(read)


@router.post("/{name}/redrive", **action("RedriveRule"))
async def redrive_rule(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("RedriveRule", RULE))],
) -> schemas.Redriven:
    """Dead letters get a fresh set of attempts, starting now."""
    fleet = state_of(request)

    def redrive(tx: Tx) -> int:
        store.read_rule(tx.session, name)
        return delivery_store.redrive(tx.session, name)

    count = await fleet.db.write(redrive)
    fleet.outbox.wake()
    return schemas.Redriven(rule=name, redriven=count)


# -- channels ------------------------------------------------------------------------


@channels_router.post("", status_code=status.HTTP_201_CREATED, **action("CreateChannel"))
async def create_channel(
    request: Request,
    body: schemas.ChannelCreate,
    caller: Annotated[Caller, Depends(authorize("CreateChannel"))],
) -> schemas.Channel:
    caller.require("CreateChannel", access.frn("channel", body.name))
    state = state_of(request)
    _check_destination(state.destinations, body.target)
    return await state.db.write(
        lambda tx: store.channel_schema(store.create_channel(tx.session, body, state.secrets))
    )


@channels_router.get("", **action("ListChannels"))
async def list_channels(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListChannels"))]
) -> Page[schemas.Channel]:
    def read(session: Session) -> Page[schemas.Channel]:
        return Page(
            items=[
                store.channel_schema(c)
                for c in store.read_channels(session)
                if caller.allows("ListChannels", access.frn("channel", c.name))
            ]
        )

    return await state_of(request).db.read(read)


@channels_router.get("/{name}", **action("GetChannel"))
async def get_channel(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetChannel", CHANNEL))],
) -> schemas.Channel:
    return await state_of(request).db.read(
        lambda s: store.channel_schema(store.read_channel(s, name))
    )


@channels_router.get("/{name}/deliveries", **action("ListChannelDeliveries"))
async def list_channel_deliveries(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("ListChannelDeliveries", CHANNEL))],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[schemas.Delivery]:
    def read(session: Session) -> Page[schemas.Delivery]:
        store.read_channel(session, name)
        return Page(items=delivery_store.read_deliveries(session, channel=name, limit=limit))

    return await state_of(request).db.read(read)


@channels_router.delete("/{name}", status_code=204, **action("DeleteChannel"))
async def delete_channel(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeleteChannel", CHANNEL))],
) -> None:
    await state_of(request).db.write(lambda tx: store.delete_channel(tx.session, name))


def _check_destination(policy: DestinationPolicy, text: str) -> None:
    """A webhook the server would post to an internal address is refused when written."""
    target = delivery.parse_target(text)
    if target.scheme == "webhook":
        policy.check_url(target.address, f"The webhook target {text!r}")
