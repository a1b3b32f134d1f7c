"""Run commands: named, long-lived scripts on a node (the Azure-style managed view).

A run command is a definition; each execution of it is a *run*, carried by one command
with one invocation on the node. Everything a run command shows is derived from the
invocation of its current run by the pure functions here:

    invocation status ──execution_state──▶ executionState (Pending, Running, Succeeded, ...)
    executionState + flags ──provisioning_state──▶ provisioningState (Creating, ...)

`provisioningState` says whether the platform got the script going (Azure's meaning):
with `asyncExecution` it is Succeeded as soon as the script runs; a script that fails
fails provisioning only with `treatFailureAsDeploymentFailure`; a run that never
started (refused by the node, never delivered) always fails it.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Any

from fleetrun.core.errors import ValidationError
from fleetrun.core.statuses import InvocationStatus, StatusDetail

MAX_PER_NODE = 25  # run commands on one node (Azure's limit)
MAX_NAME_CHARS = 36  # Azure's limit on Linux
TAIL_BYTES = 4096  # instanceView output and error: the last 4 KiB of each stream
DEFAULT_TIMEOUT_S = 5400  # no timeoutInSeconds: the 90 minutes Azure's docs speak of
MAX_TIMEOUT_S = 172800

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
NAME_RULE = (
    f"use 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-', starting with a letter or a digit"
)


class ExecutionState(StrEnum):
    PENDING = "Pending"  # not started yet (waiting for the node, or for runAfter)
    RUNNING = "Running"  # the script runs (or is being stopped)
    SUCCEEDED = "Succeeded"  # exit code 0
    FAILED = "Failed"  # non-zero exit, or it could not run (the message says why)
    TIMED_OUT = "TimedOut"  # ran past timeoutInSeconds and was stopped
    CANCELED = "Canceled"  # stopped by an update, a delete or an operator
    UNKNOWN = "Unknown"  # no run yet


class ProvisioningState(StrEnum):
    CREATING = "Creating"  # first run, not through yet
    UPDATING = "Updating"  # a later run, not through yet
    SUCCEEDED = "Succeeded"  # the platform ran it (see the module docstring)
    FAILED = "Failed"  # it could not run, or it failed with treatFailureAsDeploymentFailure
    DELETING = "Deleting"  # being stopped and removed


FINISHED = frozenset(
    {
        ExecutionState.SUCCEEDED,
        ExecutionState.FAILED,
        ExecutionState.TIMED_OUT,
        ExecutionState.CANCELED,
        ExecutionState.UNKNOWN,
    }
)

_EXECUTION = {
    InvocationStatus.PENDING: ExecutionState.PENDING,
    InvocationStatus.DELAYED: ExecutionState.PENDING,
    InvocationStatus.IN_PROGRESS: ExecutionState.RUNNING,
    InvocationStatus.CANCELLING: ExecutionState.RUNNING,
    InvocationStatus.SUCCESS: ExecutionState.SUCCEEDED,
    InvocationStatus.FAILED: ExecutionState.FAILED,
    InvocationStatus.TIMED_OUT: ExecutionState.TIMED_OUT,
    InvocationStatus.CANCELLED: ExecutionState.CANCELED,
}


def check_name(name: str) -> str:
    if len(name) > MAX_NAME_CHARS or not _NAME_RE.fullmatch(name):
        raise ValidationError(f"The run command name {name!r} is not valid: {NAME_RULE}.")
    return name


def execution_state(status: str, detail: str | None = None) -> ExecutionState:
    """The Azure executionState of an invocation status. A run that was never delivered
    (delivery deadline, node deleted, refused) is Failed: the message says why."""
    if status == InvocationStatus.TIMED_OUT and detail == StatusDetail.DELIVERY_TIMED_OUT:
        return ExecutionState.FAILED
    return _EXECUTION.get(InvocationStatus(status), ExecutionState.FAILED)


def provisioning_state(
    execution: ExecutionState,
    *,
    started: bool,
    updating: bool,
    async_execution: bool,
    treat_failure: bool,
) -> ProvisioningState:
    busy = ProvisioningState.UPDATING if updating else ProvisioningState.CREATING
    if execution in (ExecutionState.PENDING, ExecutionState.UNKNOWN):
        return busy
    if execution == ExecutionState.RUNNING:
        return ProvisioningState.SUCCEEDED if async_execution else busy
    if execution == ExecutionState.SUCCEEDED:
        return ProvisioningState.SUCCEEDED
    if not started or treat_failure:
        return ProvisioningState.FAILED
    return ProvisioningState.SUCCEEDED


_MESSAGES = {
    ExecutionState.PENDING: "Waiting to start.",
    ExecutionState.RUNNING: "Execution in progress.",
    ExecutionState.SUCCEEDED: "Execution completed.",
}


def execution_message(
    execution: ExecutionState, status: str, exit_code: int | None, message: str | None
) -> str:
    """One sentence for the instance view: the engine's own message when it has one."""
    if status == InvocationStatus.DELAYED:
        return "The node is offline: the script runs when it connects."
    if status == InvocationStatus.CANCELLING:
        return "Stopping the script."
    if message and execution not in (ExecutionState.SUCCEEDED, ExecutionState.RUNNING):
        return message
    if execution in _MESSAGES:
        return _MESSAGES[execution]
    if execution == ExecutionState.FAILED and exit_code is not None:
        return f"Execution failed: the script exited with code {exit_code}."
    if execution == ExecutionState.TIMED_OUT:
        return "The script ran past timeoutInSeconds and was stopped."
    if execution == ExecutionState.CANCELED:
        return "The script was stopped."
    return "Execution failed."


def tail(data: bytes, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes as text (a cut multi-byte character is dropped)."""
    return data[-limit:].decode("utf-8", errors="ignore")


def fingerprint(body: dict[str, Any], salt: str) -> str:
    """What makes two PUT bodies the same: a salted hash of the whole body, secrets
    included (salted per run command, so a stored fingerprint does not reveal a weak
    secret by a dictionary lookup)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((salt + text).encode()).hexdigest()


def redact_uri(uri: str | None) -> str | None:
    """A destination URL as responses show it: a pre-signed URL's query (its signature)
    is write-only, like a secret."""
    if not uri or "?" not in uri:
        return uri
    return uri.split("?", 1)[0] + "?<redacted>"


def split_parameters(
    parameters: list[tuple[str, str]],
) -> tuple[dict[str, str], list[str]]:
    """Named parameters (environment variables) and nameless ones (positional
    arguments, in order). Azure drops parameters with an empty value; so do we."""
    named: dict[str, str] = {}
    positional: list[str] = []
    for name, value in parameters:
        if value == "":
            continue
        if name:
            named[name] = value
        else:
            positional.append(value)
    return named, positional
