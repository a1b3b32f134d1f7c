"""How fleetrun's words read in AWS Systems Manager's vocabulary, and back: the pure
half of the SSM-compatible API (`fleetrun.server.ssm`).

- statuses: fleetrun's statuses and CamelCase details become SSM's `Status` enums and
  `StatusDetails` strings ("In Progress", "Delivery Timed Out"); SSM's filter values
  become fleetrun's. The one table for the API's shapes and the SSM event shape
  (`fleetrun.core.eventshapes`) alike.
- plugins: the built-ins' steps report SSM's plugin names (`aws:runShellScript`); the
  documents' own names (`AWS-RunShellScript`) are `fleetrun.core.ssmnames`'.
- output: stdout cut at 24,000 characters and stderr at 8,000, as the agent does
  (head kept, `--output truncated--` at the end); a plugin's `Output` of at most 2,500.
- times: epoch seconds for SSM's timestamp members, ISO-8601 strings (and durations)
  for the members SSM types as strings.
- paging: NextToken is fleetrun's cursor wrapped with the operation it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime

from fleetrun.core.statuses import CommandStatus, InvocationStatus, StatusDetail

# -- documents -----------------------------------------------------------------------

# The plugin name SSM reports for a built-in's one step. (Document names are in
# `fleetrun.core.ssmnames`: `document_name`, `fleetrun_document`.)
PLUGIN_NAMES: dict[str, str] = {
    "runShellScript": "aws:runShellScript",
    "runPowerShellScript": "aws:runPowerShellScript",
    "runPythonScript": "aws:runPythonScript",
}


def plugin_name(step_name: str) -> str:
    """A step's name as SSM reports it: the built-ins' `aws:` plugin names, else the
    step's own name (SSM: the step `name` of a 2.x document)."""
    return PLUGIN_NAMES.get(step_name, step_name)


def output_key(prefix: str, command_id: str, node_id: str, step_name: str, stream: str) -> str:
    """The S3 key of one step's stream, laid out as the SSM agent writes it:
    PREFIX/COMMAND/INSTANCE/PLUGIN/stdout (the plugin name without its colon)."""
    plugin = plugin_name(step_name).replace(":", "")
    parts = [p for p in (prefix.strip("/"), command_id, node_id, plugin, stream) if p]
    return "/".join(parts)


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def is_bucket_name(name: str) -> bool:
    """An S3 bucket name: 3-63 lowercase letters, digits, dots and hyphens."""
    return BUCKET_RE.fullmatch(name) is not None and ".." not in name


# -- statuses ------------------------------------------------------------------------

# fleetrun's detail code -> SSM's StatusDetails string.
_DETAILS: dict[str, str] = {
    StatusDetail.PENDING: "Pending",
    StatusDetail.DELAYED: "Delayed",
    StatusDetail.IN_PROGRESS: "In Progress",
    StatusDetail.SUCCESS: "Success",
    StatusDetail.FAILED: "Failed",
    StatusDetail.DELIVERY_TIMED_OUT: "Delivery Timed Out",
    StatusDetail.EXECUTION_TIMED_OUT: "Execution Timed Out",
    StatusDetail.CANCELLING: "Cancelling",
    StatusDetail.CANCELLED: "Cancelled",
    StatusDetail.ERROR_THRESHOLD_EXCEEDED: "Terminated",
    StatusDetail.UNDELIVERABLE: "Undeliverable",
    StatusDetail.NODE_DELETED: "Undeliverable",
    StatusDetail.TOO_LARGE: "Undeliverable",
    StatusDetail.ACCESS_DENIED: "Access Denied",
    StatusDetail.BLOCKED_BY_LOCAL_POLICY: "Failed",
    StatusDetail.AGENT_RESTARTED: "Failed",
    StatusDetail.INCOMPLETE: "Incomplete",
    StatusDetail.NO_INSTANCES_IN_TAG: "No Instances In Tag",
}

# fleetrun's statuses SSM's Status enums (CommandInvocationStatus, and the `status` of
# its EventBridge events) lack: each reads as Failed, and StatusDetails says which.
_AS_FAILED = frozenset(
    {InvocationStatus.TERMINATED, InvocationStatus.UNDELIVERABLE, InvocationStatus.ACCESS_DENIED}
)


def status_details(status: str, detail: str | None) -> str:
    """SSM's StatusDetails for a fleetrun (status, detail)."""
    if status == InvocationStatus.TERMINATED:
        return "Terminated"
    if status == InvocationStatus.UNDELIVERABLE:
        return "Undeliverable"
    if status == InvocationStatus.ACCESS_DENIED:
        return "Access Denied"
    return _DETAILS.get(detail or status, _DETAILS.get(status, status))


def invocation_status(status: str) -> str:
    """SSM's CommandInvocationStatus for a fleetrun invocation status: its own word, or
    Failed for the three SSM has only as StatusDetails. A command's statuses are all
    SSM's words already, so this is also the `status` of the SSM event shape."""
    return InvocationStatus.FAILED.value if status in _AS_FAILED else status


def plugin_status(status: str) -> str:
    """SSM's CommandPluginStatus for a step status (a skipped step succeeded, as the
    agent counts it)."""
    return "Success" if status == "Skipped" else status


def command_status(status: str) -> str:
    """SSM's CommandStatus (fleetrun's command statuses are SSM's)."""
    return CommandStatus(status).value


# ListCommands / ListCommandInvocations `Status` filter values -> fleetrun's filter
# (a status or a detail code, as the native list routes take).
COMMAND_STATUS_FILTERS: dict[str, str] = {
    "Pending": "Pending",
    "InProgress": "InProgress",
    "Success": "Success",
    "Cancelled": "Cancelled",
    "Failed": "Failed",
    "TimedOut": "TimedOut",
    "AccessDenied": "AccessDenied",
    "DeliveryTimedOut": "DeliveryTimedOut",
    "ExecutionTimedOut": "ExecutionTimedOut",
    "Incomplete": "Incomplete",
    "NoInstancesInTag": "NoInstancesInTag",
    "LimitExceeded": "LimitExceeded",
}
INVOCATION_STATUS_FILTERS: dict[str, str] = {
    "Pending": "Pending",
    "InProgress": "InProgress",
    "Delayed": "Delayed",
    "Success": "Success",
    "Cancelled": "Cancelled",
    "Failed": "Failed",
    "TimedOut": "TimedOut",
    "AccessDenied": "AccessDenied",
    "DeliveryTimedOut": "DeliveryTimedOut",
    "ExecutionTimedOut": "ExecutionTimedOut",
    "Undeliverable": "Undeliverable",
    "InvalidPlatform": "InvalidPlatform",
    "Terminated": "Terminated",
}


# -- output --------------------------------------------------------------------------

MAX_STDOUT_CHARS = 24_000
MAX_STDERR_CHARS = 8_000
MAX_PLUGIN_OUTPUT_CHARS = 2_500
MAX_TRACE_CHARS = 2_500
TRUNCATED = "--output truncated--"
ERROR_TITLE = "\n----------ERROR-------\n"
OUTPUT_CUT = "\n---Output truncated---"
ERROR_CUT = "\n---Error truncated----"


def truncate(text: str, limit: int, *, cut: bool = False) -> str:
    """At most `limit` characters: the head, with TRUNCATED replacing the tail when
    the text is longer (or `cut`: the text is already a head of something longer)."""
    if len(text) <= limit and not cut:
        return text
    return text[: limit - len(TRUNCATED)] + TRUNCATED


def plugin_output(stdout: str, stderr: str, limit: int = MAX_PLUGIN_OUTPUT_CHARS) -> str:
    """A plugin's `Output`: stdout, then the error title and stderr when there is any;
    over `limit`, the heads of each with the agent's truncation marks (each gets half
    the room when both are long)."""
    title = ERROR_TITLE if stderr else ""
    if len(stdout) + len(title) + len(stderr) <= limit:
        return stdout + title + stderr
    room = limit - len(title)
    out_room = room if not stderr else max(room - len(stderr), room // 2)
    out = stdout if len(stdout) <= out_room else _head(stdout, out_room, OUTPUT_CUT)
    err_room = room - len(out)
    err = stderr if len(stderr) <= err_room else _head(stderr, err_room, ERROR_CUT)
    return out + title + err


def _head(text: str, room: int, mark: str) -> str:
    return text[: max(room - len(mark), 0)] + mark


# -- times ---------------------------------------------------------------------------


def epoch(at: datetime | None) -> float | None:
    """An SSM timestamp member: epoch seconds with milliseconds."""
    return None if at is None else round(at.timestamp(), 3)


def iso(at: datetime | None) -> str:
    """An SSM date held in a string member (`ExecutionStartDateTime`): ISO-8601 with
    milliseconds and Z, or "" when there is none."""
    if at is None:
        return ""
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def iso_duration(start: datetime | None, end: datetime | None) -> str:
    """`ExecutionElapsedTime`: an ISO-8601 duration such as PT0.541S, or ""."""
    if start is None or end is None:
        return ""
    seconds = max((end - start).total_seconds(), 0.0)
    return f"PT{seconds:.3f}S"


# -- paging --------------------------------------------------------------------------


class NextTokenError(ValueError):
    """A NextToken this operation did not hand out."""


def next_token(operation: str, cursor: str | None) -> str | None:
    """The NextToken for fleetrun's cursor (None: the listing is complete)."""
    if cursor is None:
        return None
    raw = json.dumps({"op": operation, "cursor": cursor}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def cursor_of(operation: str, token: str | None) -> str | None:
    """fleetrun's cursor inside a NextToken of `operation`, or NextTokenError."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        found = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise NextTokenError(token) from exc
    if not isinstance(found, dict) or found.get("op") != operation:
        raise NextTokenError(token)
    cursor = found.get("cursor")
    if not isinstance(cursor, str):
        raise NextTokenError(token)
    return cursor
