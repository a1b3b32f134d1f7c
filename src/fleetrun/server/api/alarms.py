"""Output alarms (metric filters over output lines, CloudWatch style) and the output
forwarders' health. A bad alarm is refused with one sentence and nothing is stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.schemas import alarms as schemas
from fleetrun.schemas.base import Page
from fleetrun.server import forwarding, outputlog
from fleetrun.server.alarms import CURSOR as ALARMS_CURSOR
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import alarms as store

router = APIRouter(prefix="/v1/alarms", tags=["alarms"])
outputs_router = APIRouter(prefix="/v1/outputs", tags=["alarms"])
ALARM = "alarm/{name}"


@router.post("", status_code=status.HTTP_201_CREATED, **action("CreateAlarm"))
async def create_alarm(
    request: Request,
    body: schemas.AlarmCreate,
    caller: Annotated[Caller, Depends(authorize("CreateAlarm"))],
) -> schemas.Alarm:
    caller.require("CreateAlarm", access.frn("alarm", body.name))
    state = state_of(request)

    def create(tx: Tx) -> schemas.Alarm:
        now = state.clock.now()
        alarm = store.create_alarm(tx.session, body, caller.principal, now)
        outputlog.ensure_cursor(tx.session, ALARMS_CURSOR, now)
        tx.publish("alarm-created")  # the other replicas note their output from now on
        return store.to_schema(tx.session, alarm, now)

    # Output is noted from before the alarm commits, so that none stored meanwhile is
    # missed (a chunk noted with no alarm to count it is pruned), and an evaluator's
    # look that began before the commit cannot turn that off.
    state.output_log.alarm_creating()
    try:
        return await state.db.write(create)
    finally:
        state.output_log.alarm_created()


@router.get("", **action("ListAlarms"))
async def list_alarms(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListAlarms"))]
) -> Page[schemas.Alarm]:
    state = state_of(request)

    def read(session: Session) -> Page[schemas.Alarm]:
        now = state.clock.now()
        return Page(
            items=[
                store.to_schema(session, a, now)
                for a in store.read_alarms(session)
                if caller.allows("ListAlarms", access.frn("alarm", a.name))
            ]
        )

    return await state.db.read(read)


@router.get("/{name}", **action("GetAlarm"))
async def get_alarm(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("GetAlarm", ALARM))]
) -> schemas.Alarm:
    state = state_of(request)
    return await state.db.read(
        lambda s: store.to_schema(s, store.read_alarm(s, name), state.clock.now())
    )


@router.get("/{name}/history", **action("GetAlarm"))
async def get_alarm_history(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("GetAlarm", ALARM))]
) -> Page[schemas.AlarmHistoryItem]:
    """The states the alarm took, newest first."""
    return await state_of(request).db.read(
        lambda s: Page(items=store.history_schema(store.read_history(s, name)))
    )


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, **action("DeleteAlarm"))
async def delete_alarm(
    request: Request,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeleteAlarm", ALARM))],
) -> Response:
    await state_of(request).db.write(lambda tx: store.delete_alarm(tx.session, name))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@outputs_router.get("/forwarders", **action("ListForwarders"))
async def list_forwarders(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListForwarders"))]
) -> Page[schemas.Forwarder]:
    """The log systems output is forwarded to: how far each is behind, what failed last."""
    state = state_of(request)
    return await state.db.read(
        lambda s: Page(items=forwarding.views(s, state.forwarding.forwarders))
    )
