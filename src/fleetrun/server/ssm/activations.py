"""SSM's hybrid activations over fleetrun's: CreateActivation, DescribeActivations and
DeleteActivation.

An activation is what `fleetrun-agent register --activation-id ID --activation-code
CODE` trades for a node identity, as SSM's agent does with `-register -id -code`:

    DefaultInstanceName   the registered nodes' name
    RegistrationLimit     1-1000 (default 1)
    ExpirationDate        in the future, at most 30 days away (default: in 24 hours)
    Tags                  copied onto every node registered with it
    IamRole               required by SSM and kept as a label (DescribeActivations,
                          DescribeInstanceInformation show it, filters match it): a
                          fleetrun node is given no role; what it may run is its local policy
    RegistrationMetadata  accepted ("reserved for internal use" in SSM)

The code is shown once and kept only as a hash. Each operation is decided as the native
route decides it (fleetrun:CreateActivation on `*`, ListActivations and
DeleteActivation on the activation).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError as SchemaError
from sqlalchemy.orm import Session

from fleetrun.core import access, ssm
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.core.ids import is_uuid
from fleetrun.schemas import activations as schemas
from fleetrun.server.db import Tx
from fleetrun.server.ssm import filters
from fleetrun.server.ssm.base import (
    Call,
    Operation,
    SsmError,
    integer,
    max_results,
    string,
    structures,
)
from fleetrun.server.ssm.tagging import read_tags, tag_list
from fleetrun.server.store import activations as store
from fleetrun.server.store.tables import Activation

FILTER_KEYS = ("ActivationIds", "DefaultInstanceName", "IamRole")


def _invalid(message: str) -> SsmError:
    return SsmError("InvalidParameters", message)


def _expires_in_s(body: Mapping[str, Any], now: datetime) -> float:
    """Seconds from now to ExpirationDate (epoch seconds, or ISO-8601 as botocore may
    send), within 30 days; 24 hours when it is not given."""
    value = body.get("ExpirationDate")
    if value is None:
        return schemas.DEFAULT_EXPIRES_S
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            at = datetime.fromtimestamp(value, UTC)
        else:
            at = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError) as exc:
        raise _invalid(f"ExpirationDate {value!r} is not a time.") from exc
    seconds = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() - now.timestamp()
    if not 0 < seconds <= schemas.MAX_EXPIRES_S:
        raise _invalid(
            "ExpirationDate must be in the future and at most 30 days from now: "
            f"{at:%Y-%m-%d %H:%M:%S} UTC is not."
        )
    return seconds


async def create_activation(call: Call) -> dict[str, Any]:
    body, state = call.body, call.state
    role = string(body, "IamRole", required=True, max_length=64) or ""
    now = state.clock.now()
    try:
        wanted = schemas.ActivationCreate(
            name=string(body, "DefaultInstanceName", max_length=256) or None,
            description=string(body, "Description", max_length=256),
            tags=read_tags(structures(body, "Tags", max_items=1000)),
            registration_limit=integer(body, "RegistrationLimit", low=1, high=1000) or 1,
            expires_in_s=_expires_in_s(body, now),
        )
    except SchemaError as exc:
        raise _invalid(f"The activation is not valid: {exc.errors()[0]['msg']}.") from exc
    except SsmError as exc:
        raise _invalid(exc.message) from exc
    structures(body, "RegistrationMetadata", max_items=1000)
    call.caller.require("CreateActivation", "*")

    def create(tx: Tx) -> tuple[str, str]:
        try:
            row, code = store.create_activation(tx.session, wanted, now)
        except ValidationError as exc:
            raise _invalid(exc.message) from exc
        row.iam_role = role
        return row.id, code

    activation_id, code = await state.db.write(create)
    return {"ActivationId": activation_id, "ActivationCode": code}


def _read_filters(body: Mapping[str, Any]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for item in structures(body, "Filters", max_items=len(FILTER_KEYS) * 10):
        key = string(item, "FilterKey") or ""
        if key not in FILTER_KEYS:
            raise SsmError(
                "InvalidFilter",
                f"FilterKey {key!r} is not valid: use {', '.join(FILTER_KEYS)}.",
            )
        values = item.get("FilterValues") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SsmError("InvalidFilter", f"FilterValues of {key} must be a list of strings.")
        wanted.setdefault(key, []).extend(values)
    return wanted


def _matches(row: Activation, wanted: dict[str, list[str]]) -> bool:
    have = {
        "ActivationIds": row.id,
        "DefaultInstanceName": row.name or "",
        "IamRole": row.iam_role or "",
    }
    return all(not values or have[key] in values for key, values in wanted.items())


def _position(row: Activation) -> str:
    """Where a row is in the listing (newest first): its creation time, then its id."""
    return f"{row.created_at.isoformat()}|{row.id}"


def shape(row: Activation, now: datetime) -> dict[str, Any]:
    """SSM's `Activation`."""
    return {
        "ActivationId": row.id,
        "Description": row.description or "",
        "DefaultInstanceName": row.name or "",
        "IamRole": row.iam_role or "",
        "RegistrationLimit": row.registration_limit,
        "RegistrationsCount": row.registrations_count,
        "ExpirationDate": ssm.epoch(row.expires_at),
        "Expired": store.to_schema(row, now).expired,
        "CreatedDate": ssm.epoch(row.created_at),
        "Tags": tag_list(row.tags or {}),
    }


async def describe_activations(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    wanted = _read_filters(body)
    limit = max_results(body, default=50)
    after = filters.cursor(body, call.operation)
    now = call.state.clock.now()

    def read(session: Session) -> tuple[list[dict[str, Any]], str | None]:
        page: list[Activation] = []
        for row in store.read_activations(session):
            if after is not None and _position(row) >= after:
                continue
            if not _matches(row, wanted) or not caller.allows(
                "ListActivations", access.frn("activation", row.id)
            ):
                continue
            if len(page) == limit:
                return [shape(r, now) for r in page], _position(page[-1])
            page.append(row)
        return [shape(r, now) for r in page], None

    items, next_cursor = await call.state.db.read(read)
    return filters.page("ActivationList", items, call.operation, next_cursor)


async def delete_activation(call: Call) -> dict[str, Any]:
    activation_id = string(call.body, "ActivationId", required=True) or ""
    if not is_uuid(activation_id):
        raise SsmError(
            "InvalidActivationId",
            f"{activation_id!r} is not an activation id: ids are UUIDs, as CreateActivation "
            "and DescribeActivations show them.",
        )
    call.caller.require("DeleteActivation", access.frn("activation", activation_id))

    def delete(tx: Tx) -> None:
        try:
            store.delete_activation(tx.session, activation_id)
        except NotFoundError as exc:
            raise SsmError(
                "InvalidActivation",
                f"Activation {activation_id} does not exist (or was deleted already); its "
                "registered nodes stay registered.",
            ) from exc

    await call.state.db.write(delete)
    return {}


OPERATIONS: dict[str, Operation] = {
    "CreateActivation": Operation("CreateActivation", create_activation),
    "DescribeActivations": Operation("ListActivations", describe_activations),
    "DeleteActivation": Operation("DeleteActivation", delete_activation),
}
