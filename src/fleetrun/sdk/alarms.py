"""Output alarms and forwarders: each operation written once as an `Op` (see
`fleetrun.sdk.wire`), exposed by `Client` and `AsyncClient` under the same name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetrun.core.durations import parse_duration
from fleetrun.core.targets import Target
from fleetrun.schemas.alarms import Alarm, AlarmCreate, AlarmHistoryItem, Forwarder
from fleetrun.schemas.base import build
from fleetrun.sdk.wire import Call, Listing, Op, model, nothing, path


def create_alarm(
    name: str,
    *,
    pattern: str,
    threshold: int,
    period: str | float,
    regex: bool = False,
    targets: Sequence[Target | Mapping[str, Any]] = (),
    document_name: str | None = None,
    evaluation_periods: int = 1,
    treat_missing: str = "ok",
    description: str | None = None,
) -> Op[Alarm]:
    """An alarm on output lines matching `pattern`: ALARM when at least `threshold` of
    them arrive in each of `evaluation_periods` periods of `period` ("5m" or seconds)."""
    period_s = period if isinstance(period, int | float) else parse_duration(period, "Period")
    body = build(
        AlarmCreate,
        name=name,
        pattern=pattern,
        regex=regex,
        targets=[t if isinstance(t, Target) else Target(**t) for t in targets],
        document_name=document_name,
        threshold=threshold,
        period_s=int(period_s),
        evaluation_periods=evaluation_periods,
        treat_missing=treat_missing,
        description=description,
    )
    return model(Alarm, "POST", "/v1/alarms", json=body.model_dump(exclude_none=True))


def list_alarms() -> Listing[Alarm]:
    return Listing(Alarm, "/v1/alarms")


def get_alarm(name: str) -> Op[Alarm]:
    return model(Alarm, "GET", path("alarms", name))


def get_alarm_history(name: str) -> Op[list[AlarmHistoryItem]]:
    page = yield Call("GET", path("alarms", name, "history"))
    return [AlarmHistoryItem.model_validate(item) for item in page["items"]]


def delete_alarm(name: str) -> Op[None]:
    return nothing("DELETE", path("alarms", name))


def list_forwarders() -> Op[list[Forwarder]]:
    page = yield Call("GET", "/v1/outputs/forwarders")
    return [Forwarder.model_validate(item) for item in page["items"]]
