"""ListCommands' and ListCommandInvocations' `Filters` (`[{"key", "value"}]`) in
fleetrun's terms, and NextToken in and out.

    InvokedAfter, InvokedBefore   since, until (ISO-8601: 2024-07-07T00:00:00Z)
    Status                        a status or detail code (core/ssm.py's tables)
    DocumentName                  the document (AWS-<name>: the built-in <name>)
    ExecutionStage                Executing | Complete (ListCommands only)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fleetrun.core import ssm, ssmnames
from fleetrun.server.ssm.base import SsmError, string, structures, validation

STAGES = ("Executing", "Complete")


@dataclass(frozen=True)
class Filters:
    since: datetime | None = None
    until: datetime | None = None
    status: str | None = None
    matches_nothing: bool = False  # a status fleetrun never has (LimitExceeded)
    document: str | None = None
    stage: str | None = None


def read(body: Mapping[str, Any], *, invocations: bool) -> Filters:
    keys = ("InvokedAfter", "InvokedBefore", "Status", "DocumentName")
    allowed = keys if invocations else (*keys, "ExecutionStage")
    values: dict[str, str] = {}
    for item in structures(body, "Filters", max_items=5):
        key = string(item, "key", required=True) or ""
        value = string(item, "value", required=True, min_length=1, max_length=128) or ""
        if key not in allowed or key in values:
            raise SsmError(
                "InvalidFilterKey",
                f"Filter key {key!r} is not valid here, or given twice: use each of "
                f"{', '.join(allowed)} at most once.",
            )
        values[key] = value
    statuses = ssm.INVOCATION_STATUS_FILTERS if invocations else ssm.COMMAND_STATUS_FILTERS
    status = values.get("Status")
    if status is not None and status not in statuses:
        raise validation(
            f"Status filter {status!r} is not valid: use one of {', '.join(statuses)}."
        )
    stage = values.get("ExecutionStage")
    if stage is not None and stage not in STAGES:
        raise validation(f"ExecutionStage {stage!r} is not valid: use Executing or Complete.")
    mapped = statuses.get(status) if status else None
    document = values.get("DocumentName")
    return Filters(
        since=_time(values, "InvokedAfter"),
        until=_time(values, "InvokedBefore"),
        status=mapped,
        matches_nothing=mapped in ("LimitExceeded", "InvalidPlatform"),
        document=ssmnames.fleetrun_document(document) if document else None,
        stage=stage,
    )


def _time(values: dict[str, str], key: str) -> datetime | None:
    text = values.get(key)
    if text is None:
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise validation(
            f"Filter {key} {text!r} is not a time: give ISO-8601, such as 2024-07-07T00:00:00Z."
        ) from exc
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def cursor(body: Mapping[str, Any], operation: str) -> str | None:
    """fleetrun's cursor in the request's NextToken, or InvalidNextToken."""
    token = string(body, "NextToken")
    try:
        return ssm.cursor_of(operation, token)
    except ssm.NextTokenError as exc:
        raise invalid_token() from exc


def invalid_token() -> SsmError:
    return SsmError(
        "InvalidNextToken",
        "NextToken is not valid: pass the NextToken of the previous page unchanged.",
    )


def page(
    key: str, items: list[dict[str, Any]], operation: str, next_cursor: str | None
) -> dict[str, Any]:
    """A listing's answer: NextToken only when there is more."""
    answer: dict[str, Any] = {key: items}
    token = ssm.next_token(operation, next_cursor)
    if token is not None:
        answer["NextToken"] = token
    return answer
