"""Alarms: their rows, datapoints and history (the state machine is core.alarms)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core import alarms as core
from fleetrun.core.errors import ConflictError, NotFoundError
from fleetrun.core.events import ALARM_STATE
from fleetrun.core.targets import Target
from fleetrun.schemas import alarms as schemas
from fleetrun.server import events
from fleetrun.server.store.tables import Alarm, AlarmDatapoint, AlarmHistory

SHOWN_DATAPOINTS = 20


def spec_of(alarm: Alarm) -> core.AlarmSpec:
    return core.AlarmSpec(
        pattern=alarm.pattern,
        regex=alarm.regex,
        threshold=alarm.threshold,
        period_s=alarm.period_s,
        evaluation_periods=alarm.evaluation_periods,
        treat_missing=core.TreatMissing(alarm.treat_missing),
    )


def create_alarm(
    session: Session, body: schemas.AlarmCreate, principal: str | None, now: datetime
) -> Alarm:
    access.check_name("alarm", body.name, 64)
    core.check_spec(
        core.AlarmSpec(
            body.pattern,
            body.regex,
            body.threshold,
            body.period_s,
            body.evaluation_periods,
            core.TreatMissing(body.treat_missing),
        )
    )
    if session.get(Alarm, body.name) is not None:
        raise ConflictError(
            f"An alarm named {body.name!r} exists: delete it first or choose another name."
        )
    alarm = Alarm(
        name=body.name,
        description=body.description,
        pattern=body.pattern,
        regex=body.regex,
        targets=[t.model_dump() for t in body.targets],
        document_name=body.document_name,
        threshold=body.threshold,
        period_s=body.period_s,
        evaluation_periods=body.evaluation_periods,
        treat_missing=body.treat_missing,
        state=core.AlarmState.INSUFFICIENT_DATA,
        state_reason="Created: not evaluated yet.",
        state_changed_at=now,
        principal=principal,
        created_at=now,
    )
    session.add(alarm)
    session.flush()
    return alarm


def read_alarm(session: Session, name: str) -> Alarm:
    alarm = session.get(Alarm, name)
    if alarm is None:
        raise NotFoundError(f"No alarm named {name!r}: `fleetrun alarms list` shows them.")
    return alarm


def any_alarm(session: Session) -> bool:
    return session.execute(select(Alarm.name).limit(1)).first() is not None


def read_alarms(session: Session) -> list[Alarm]:
    return list(session.execute(select(Alarm).order_by(Alarm.name)).scalars())


def delete_alarm(session: Session, name: str) -> None:
    read_alarm(session, name)
    session.execute(delete(AlarmDatapoint).where(AlarmDatapoint.alarm == name))
    session.execute(delete(AlarmHistory).where(AlarmHistory.alarm == name))
    session.execute(delete(Alarm).where(Alarm.name == name))


def read_history(session: Session, name: str, limit: int = 100) -> list[AlarmHistory]:
    read_alarm(session, name)
    return list(
        session.execute(
            select(AlarmHistory)
            .where(AlarmHistory.alarm == name)
            .order_by(AlarmHistory.id.desc())
            .limit(limit)
        ).scalars()
    )


def read_points(session: Session, name: str, since_period: int) -> dict[int, core.Datapoint]:
    rows = session.execute(
        select(AlarmDatapoint).where(
            AlarmDatapoint.alarm == name, AlarmDatapoint.period >= since_period
        )
    ).scalars()
    return {r.period: core.Datapoint(lines=r.lines, matched=r.matched) for r in rows}


def add_counts(session: Session, name: str, counts: dict[int, core.Datapoint]) -> None:
    """Add a batch's lines to the alarm's periods."""
    for period, point in counts.items():
        row = session.get(AlarmDatapoint, (name, period))
        if row is None:
            session.add(
                AlarmDatapoint(alarm=name, period=period, lines=point.lines, matched=point.matched)
            )
        else:
            row.lines += point.lines
            row.matched += point.matched
    session.flush()


def prune_points(session: Session, name: str, before_period: int) -> None:
    session.execute(
        delete(AlarmDatapoint).where(
            AlarmDatapoint.alarm == name, AlarmDatapoint.period < before_period
        )
    )


def change_state(session: Session, alarm: Alarm, decision: core.Decision, now: datetime) -> bool:
    """Move the alarm to the decided state, if it is still in the state it was read in
    (another replica may have moved it first); its history and its event go with it."""
    old = alarm.state
    if decision.state == old:
        return False
    result = session.execute(
        update(Alarm)
        .where(Alarm.name == alarm.name, Alarm.state == old)
        .values(state=decision.state, state_reason=decision.reason, state_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(
        AlarmHistory(
            alarm=alarm.name,
            at=now,
            old_state=old,
            new_state=decision.state,
            reason=decision.reason,
        )
    )
    events.emit(
        session,
        ALARM_STATE,
        [access.frn("alarm", alarm.name)],
        {
            "alarm-name": alarm.name,
            "state": {"value": str(decision.state), "reason": decision.reason},
            "previous-state": {"value": old, "reason": alarm.state_reason},
            "configuration": {
                "pattern": alarm.pattern,
                "regex": alarm.regex,
                "threshold": alarm.threshold,
                "period": alarm.period_s,
                "evaluation-periods": alarm.evaluation_periods,
                "treat-missing": alarm.treat_missing,
                "document-name": alarm.document_name,
            },
        },
        at=now,
    )
    return True


def to_schema(session: Session, alarm: Alarm, now: datetime) -> schemas.Alarm:
    current = core.period_of(now.timestamp(), alarm.period_s)
    points = read_points(session, alarm.name, current - SHOWN_DATAPOINTS + 1)
    shown = [
        schemas.Datapoint(
            period_start=datetime.fromtimestamp(p * alarm.period_s, UTC),
            lines=points[p].lines if p in points else 0,
            matched=points[p].matched if p in points else 0,
        )
        for p in range(current, max(current - SHOWN_DATAPOINTS, -1), -1)
        if p in points or p > current - alarm.evaluation_periods - 1
    ]
    return schemas.Alarm(
        name=alarm.name,
        description=alarm.description,
        pattern=alarm.pattern,
        regex=alarm.regex,
        targets=[Target(**t) for t in alarm.targets],
        document_name=alarm.document_name,
        threshold=alarm.threshold,
        period_s=alarm.period_s,
        evaluation_periods=alarm.evaluation_periods,
        treat_missing=alarm.treat_missing,
        state=alarm.state,
        state_reason=alarm.state_reason,
        state_changed_at=alarm.state_changed_at,
        created_at=alarm.created_at,
        datapoints=shown,
    )


def history_schema(rows: Iterable[AlarmHistory]) -> list[schemas.AlarmHistoryItem]:
    return [
        schemas.AlarmHistoryItem(
            at=r.at, old_state=r.old_state, new_state=r.new_state, reason=r.reason
        )
        for r in rows
    ]
