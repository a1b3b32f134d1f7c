"""The event log and its deliveries.

Routing: an unrouted event becomes one delivery per target of every enabled rule whose
pattern matches it (in the rule's event shape: fleetrun's, or SSM's), and one per
command notification that asks for it; then it is marked routed, all in one
transaction (so a crash routes it again, or not at all, never half). Claiming: a due
delivery is leased to one server for a while; the lease runs out if that server dies,
and another (or the same, restarted) takes it up. On PostgreSQL both use `FOR UPDATE
SKIP LOCKED`, so replicas share the work without waiting on each other or doing it
twice. A rule's deliveries carry the event in its shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.orm import Session

from fleetrun.core.events import (
    COMMAND_STATUS,
    INVOCATION_STATUS,
    envelope,
    notification_wanted,
)
from fleetrun.core.eventshapes import FLEETRUN, shaped
from fleetrun.core.ids import new_uuid
from fleetrun.schemas import events as schemas
from fleetrun.server.store.tables import (
    Channel,
    Command,
    Delivery,
    DeliveryAttempt,
    Event,
    Rule,
    utcnow,
)

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


def event_of(row: Event) -> dict[str, Any]:
    return envelope(row.id, row.detail_type, row.time, row.resources, row.detail)


def event_schema(row: Event) -> schemas.Event:
    return schemas.Event.model_validate({**event_of(row), "seq": row.seq})


def read_events(
    session: Session,
    *,
    since: datetime | None = None,
    after: int | None = None,
    detail_type: str | None = None,
    limit: int = 100,
    newest_first: bool = True,
) -> list[Event]:
    query = select(Event)
    if since is not None:
        query = query.where(Event.time >= since)
    if after is not None:
        query = query.where(Event.seq > after)
    if detail_type:
        query = query.where(Event.detail_type == detail_type)
    order = Event.seq.desc() if newest_first else Event.seq
    return list(session.execute(query.order_by(order).limit(limit)).scalars())


def last_seq(session: Session) -> int:
    row = session.execute(select(Event.seq).order_by(Event.seq.desc()).limit(1)).scalar()
    return int(row or 0)


# -- routing ------------------------------------------------------------------------


def has_unrouted(session: Session) -> bool:
    """Whether any event waits to be routed (a read, to spare the writer)."""
    found = session.execute(select(Event.seq).where(Event.routed.is_(False)).limit(1))
    return found.first() is not None


def anyone_listening(session: Session) -> bool:
    """Whether an event could make a delivery now: a rule is enabled, or a channel
    exists (commands can only name existing channels). Without either, routing only
    marks events, and the outbox does that in batches."""
    rule = session.execute(select(Rule.name).where(Rule.enabled.is_(True)).limit(1)).first()
    return rule is not None or session.execute(select(Channel.name).limit(1)).first() is not None


def routing_due(session: Session, *, idle: bool) -> bool:
    """Whether the outbox should route now: an event waits, and (when it has routed
    recently, `idle`) something could match it; otherwise the waiting events are marked
    with the next batch. One read for both questions: it runs after every commit."""
    return has_unrouted(session) and (not idle or anyone_listening(session))


def _due(now: datetime) -> tuple[Any, ...]:
    """A delivery due now: pending, its time come, and no live lease on it."""
    return (
        Delivery.state == PENDING,
        Delivery.next_attempt_at <= now,
        or_(Delivery.lease_until.is_(None), Delivery.lease_until < now),
    )


def has_due(session: Session, now: datetime) -> bool:
    """Whether a delivery is due (a read, before claiming in a write)."""
    found = session.execute(select(Delivery.id).where(*_due(now)).limit(1))
    return found.first() is not None


def route(
    session: Session,
    matcher: Callable[[Rule], Callable[[dict[str, Any]], bool]],
    *,
    limit: int = 500,
    skip_locked: bool = False,
) -> tuple[int, int]:
    """Route a batch of unrouted events: how many there were, and how many deliveries
    they made."""
    rules = [(r, matcher(r)) for r in _enabled_rules(session)]
    # Plain rows, not ORM objects: a busy fleet makes thousands of events a second,
    # and each is read once here. With no rule enabled only notifications can want
    # one, and they need only these columns.
    columns = (
        [Event.seq, Event.id, Event.detail_type, Event.time, Event.resources, Event.detail]
        if rules
        else [Event.seq, Event.id, Event.detail_type, Event.detail]
    )
    query = select(*columns).where(Event.routed.is_(False)).order_by(Event.seq).limit(limit)
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    rows: list[Any] = list(session.execute(query))
    if not rows:
        return 0, 0
    notifications = _notifications(session, rows)
    now = utcnow()
    made: list[dict[str, Any]] = []
    for row in rows:
        event = event_of(row) if rules else {}
        shapes: dict[str, dict[str, Any] | None] = {FLEETRUN: event}
        for rule, matches in rules:
            if rule.event_shape not in shapes:
                shapes[rule.event_shape] = shaped(event, rule.event_shape)
            seen = shapes[rule.event_shape]
            if seen is not None and matches(seen):
                for index, target in enumerate(rule.targets):
                    made.append(
                        _delivery(row.id, now, target["target"], rule=rule.name, index=index)
                    )
        config = notifications.get(str(row.detail.get("command-id")))
        if config and notification_wanted(config, row.detail_type, str(row.detail.get("status"))):
            made.append(_delivery(row.id, now, "", channel=str(config["channel"])))
    for start in range(0, len(made), 1000):
        session.execute(insert(Delivery), made[start : start + 1000])
    session.execute(update(Event).where(Event.seq.in_([r.seq for r in rows])).values(routed=True))
    return len(rows), len(made)


def _enabled_rules(session: Session) -> list[Rule]:
    return list(session.execute(select(Rule).where(Rule.enabled.is_(True))).scalars())


def _notifications(session: Session, rows: Iterable[Event]) -> dict[str, dict[str, Any]]:
    ids = {
        str(r.detail.get("command-id"))
        for r in rows
        if r.detail_type in (COMMAND_STATUS, INVOCATION_STATUS)
    }
    if not ids:
        return {}
    found = session.execute(
        select(Command.id, Command.notification).where(
            Command.id.in_(ids), Command.notification.is_not(None)
        )
    )
    return {command_id: config for command_id, config in found if config}


def _delivery(
    event_id: str, now: datetime, target: str, *, rule: str = "", channel: str = "", index: int = 0
) -> dict[str, Any]:
    return {
        "id": new_uuid(),
        "event_id": event_id,
        "rule": rule,
        "channel": channel,
        "target_index": index,
        "target": target,
        "state": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "leased_by": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }


# -- claiming and recording attempts ----------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: str
    attempt: int  # the number this attempt will have
    rule: str
    channel: str
    target_index: int
    target: str
    event: dict[str, Any]


def claim(
    session: Session,
    owner: str,
    *,
    now: datetime,
    lease_s: float,
    limit: int,
    skip_locked: bool = False,
) -> list[Claimed]:
    """Lease up to `limit` due deliveries to `owner`."""
    query = select(Delivery).where(*_due(now)).order_by(Delivery.next_attempt_at).limit(limit)
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    rows = list(session.execute(query).scalars())
    if not rows:
        return []
    until = now + timedelta(seconds=lease_s)
    for row in rows:
        row.lease_until = until
        row.leased_by = owner
    found = {
        e.id: event_of(e)
        for e in session.execute(
            select(Event).where(Event.id.in_({r.event_id for r in rows}))
        ).scalars()
    }
    shapes = _rule_shapes(session, {r.rule for r in rows if r.rule})
    return [
        Claimed(
            r.id,
            r.attempts + 1,
            r.rule,
            r.channel,
            r.target_index,
            r.target,
            _delivered(found.get(r.event_id, {}), shapes.get(r.rule, FLEETRUN)),
        )
        for r in rows
    ]


def _rule_shapes(session: Session, names: set[str]) -> dict[str, str]:
    if not names:
        return {}
    found = session.execute(select(Rule.name, Rule.event_shape).where(Rule.name.in_(names)))
    return {str(name): str(shape) for name, shape in found}


def _delivered(event: dict[str, Any], shape: str) -> dict[str, Any]:
    """The event as a rule in `shape` receives it (it matched in that shape)."""
    if not event or shape == FLEETRUN:
        return event
    return shaped(event, shape) or event


def record(
    session: Session,
    claimed: Claimed,
    owner: str,
    *,
    outcome: str,
    detail: str | None,
    duration_ms: int,
    retry_at: datetime | None,
    now: datetime | None = None,
) -> None:
    """The result of one attempt, made at `now` (default: the system's time): delivered;
    retry at `retry_at`; or dead (no retry time: out of attempts, or a failure no retry
    can mend)."""
    now = now or utcnow()
    session.add(
        DeliveryAttempt(
            delivery_id=claimed.id,
            number=claimed.attempt,
            at=now,
            duration_ms=duration_ms,
            outcome=outcome,
            detail=detail,
        )
    )
    if outcome == DELIVERED:
        state, error = DELIVERED, None
    else:
        state, error = (PENDING if retry_at is not None else DEAD), detail
    values: dict[str, Any] = {
        "state": state,
        "attempts": claimed.attempt,
        "last_error": error,
        "lease_until": None,
        "leased_by": None,
        "updated_at": now,
        "next_attempt_at": retry_at or now,
    }
    # Only while the lease is ours: a server that lost it (paused past the lease) must
    # not overwrite the work of the one that took over.
    session.execute(
        update(Delivery)
        .where(Delivery.id == claimed.id, Delivery.leased_by == owner)
        .values(**values)
    )


def still_leased(session: Session, delivery_id: str, owner: str) -> bool:
    """Whether `owner` still holds the delivery (locked until the transaction ends)."""
    row = session.execute(
        select(Delivery.id)
        .where(Delivery.id == delivery_id, Delivery.leased_by == owner)
        .with_for_update()
    ).scalar_one_or_none()
    return row is not None


# -- reading and redriving -------------------------------------------------------------


def read_deliveries(
    session: Session,
    *,
    rule: str | None = None,
    channel: str | None = None,
    state: str | None = None,
    limit: int = 100,
) -> list[schemas.Delivery]:
    query = select(Delivery).order_by(Delivery.created_at.desc(), Delivery.id).limit(limit)
    if rule is not None:
        query = query.where(Delivery.rule == rule)
    if channel is not None:
        query = query.where(Delivery.channel == channel)
    if state:
        query = query.where(Delivery.state == state)
    rows = list(session.execute(query).scalars())
    history: dict[str, list[DeliveryAttempt]] = {}
    if rows:
        attempts = session.execute(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_([r.id for r in rows]))
            .order_by(DeliveryAttempt.id)
        ).scalars()
        for attempt in attempts:
            history.setdefault(attempt.delivery_id, []).append(attempt)
    return [
        schemas.Delivery(
            id=r.id,
            event_id=r.event_id,
            rule=r.rule or None,
            channel=r.channel or None,
            target=r.target,
            state=r.state,
            attempts=r.attempts,
            next_attempt_at=r.next_attempt_at if r.state == PENDING else None,
            last_error=r.last_error,
            created_at=r.created_at,
            updated_at=r.updated_at,
            history=[
                schemas.DeliveryAttempt(
                    number=a.number,
                    at=a.at,
                    duration_ms=a.duration_ms,
                    outcome=a.outcome,
                    detail=a.detail,
                )
                for a in history.get(r.id, [])
            ],
        )
        for r in rows
    ]


def redrive(session: Session, rule: str) -> int:
    """Give a rule's dead letters a fresh set of attempts, now."""
    now = utcnow()
    result = session.execute(
        update(Delivery)
        .where(Delivery.rule == rule, Delivery.state == DEAD)
        .values(state=PENDING, attempts=0, next_attempt_at=now, lease_until=None, updated_at=now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def forget_rule(session: Session, rule: str) -> None:
    """A deleted rule's deliveries not yet made are dropped (its history goes too)."""
    session.execute(delete(Delivery).where(Delivery.rule == rule))


def prune(session: Session, before: datetime, *, limit: int = 5000) -> int:
    """Forget routed events older than `before` and deliveries delivered before it;
    dead letters, and the events they need, stay until redriven or their rule goes."""
    done = list(
        session.execute(
            select(Delivery.id)
            .where(Delivery.state == DELIVERED, Delivery.updated_at < before)
            .limit(limit)
        ).scalars()
    )
    if done:
        session.execute(delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(done)))
        session.execute(delete(Delivery).where(Delivery.id.in_(done)))
    kept = select(Delivery.event_id).where(Delivery.state != DELIVERED)
    old = list(
        session.execute(
            select(Event.seq)
            .where(Event.routed.is_(True), Event.time < before, Event.id.not_in(kept))
            .limit(limit)
        ).scalars()
    )
    if old:
        session.execute(delete(Event).where(Event.seq.in_(old)))
    return len(old) + len(done)
