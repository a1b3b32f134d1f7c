from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fleetrun.core.targets import Target
from fleetrun.schemas.base import Request, Response
from fleetrun.schemas.events import Notification

DEFAULT_EXECUTION_TIMEOUT_S = 3600
MIN_EXECUTION_TIMEOUT_S = 1
MAX_EXECUTION_TIMEOUT_S = 172800
DEFAULT_DELIVERY_TIMEOUT_S = 3600
MIN_DELIVERY_TIMEOUT_S = 30
MAX_DELIVERY_TIMEOUT_S = 2592000


class CommandCreate(Request):
    document_name: str = "RunShellScript"
    document_version: str | None = Field(None, description="a number, $LATEST or $DEFAULT")
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    arguments: list[str] = Field(default_factory=list, description="positional, passed as argv")
    targets: list[Target]
    comment: str | None = Field(None, max_length=100)
    execution_timeout_s: int | None = Field(
        None,
        description=f"per invocation; default {DEFAULT_EXECUTION_TIMEOUT_S}, at most "
        f"{MAX_EXECUTION_TIMEOUT_S}",
    )
    delivery_timeout_s: int | None = Field(
        None,
        description=f"not started by then: TimedOut; default {DEFAULT_DELIVERY_TIMEOUT_S}, "
        f"{MIN_DELIVERY_TIMEOUT_S} to {MAX_DELIVERY_TIMEOUT_S}",
    )
    max_concurrency: str | None = Field(None, description="N or P%; default 50")
    max_errors: str | None = Field(None, description="N or P%; default 0")
    run_as: str | None = Field(None, max_length=64, description="the user to run as on the node")
    secret_parameters: dict[str, SealedParameters] | None = Field(
        None,
        description="per node id: secrets sealed to that node (see POST /v1/targets/resolve); "
        "every target node needs its own, and they are never returned",
    )
    notification: Notification | None = Field(
        None, description="notify a channel when the command (or each invocation) changes"
    )


class SealedParameters(Request):
    """Secrets sealed by the caller to one node's key; only ciphertext reaches the server."""

    env: dict[str, str] = Field(default_factory=dict, description="name -> sealed value")
    args: list[str] = Field(default_factory=list, description="sealed positional arguments")


class TargetsResolve(Request):
    targets: list[Target]


class ResolvedNode(Response):
    id: str
    name: str
    seal_public_key: str | None = None


class CommandCancel(Request):
    node_ids: list[str] | None = Field(None, description="only these nodes (default: all)")


class Command(Response):
    id: str
    notification: Notification | None = None
    document_name: str
    document_version: str | None = None
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=list)
    comment: str | None = None
    principal: str | None = None
    document_hash: str | None = None
    arguments: list[str] = Field(default_factory=list)
    run_as: str | None = None
    requested_at: datetime
    expires_at: datetime | None = None
    deliver_by: datetime | None = None
    execution_timeout_s: int
    delivery_timeout_s: int | None = None
    max_concurrency: str | None = None
    max_errors: str | None = None
    concurrency_limit: int | None = None
    error_threshold: int | None = None
    cancel_requested_at: datetime | None = None
    status: str
    status_detail: str
    target_count: int
    completed_count: int
    error_count: int
    delivery_timed_out_count: int
    counts: dict[str, int] = Field(default_factory=dict)
    version: int = 0

    @property
    def done(self) -> bool:
        return self.status in ("Success", "Failed", "TimedOut", "Cancelled")


class StepResult(Response):
    index: int
    name: str
    action: str
    status: str
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_truncated: bool = False
    stderr_truncated: bool = False


class Transition(Response):
    status: str
    detail: str
    at: datetime


class Invocation(Response):
    id: str
    command_id: str
    node_id: str
    node_name: str | None = None
    status: str
    status_detail: str
    exit_code: int | None = None
    requested_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    steps: list[StepResult] = Field(default_factory=list)
    transitions: list[Transition] = Field(default_factory=list)
    output_expired_at: datetime | None = Field(
        None, description="when retention deleted its output (docs/output.md)"
    )
