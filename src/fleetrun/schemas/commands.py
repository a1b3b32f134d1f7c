from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fleetrun.core.targets import Target
from fleetrun.schemas.base import Request, Response

DEFAULT_EXECUTION_TIMEOUT_S = 3600
MAX_EXECUTION_TIMEOUT_S = 172800
DEFAULT_DELIVERY_TIMEOUT_S = 3600


class CommandCreate(Request):
    document_name: str = "RunShellScript"
    document_version: str | None = None
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    targets: list[Target]
    comment: str | None = Field(None, max_length=100)
    execution_timeout_s: int | None = Field(
        None, description=f"per invocation; default {DEFAULT_EXECUTION_TIMEOUT_S}"
    )


class Command(Response):
    id: str
    document_name: str
    document_version: str | None = None
    parameters: dict[str, list[str]] = Field(default_factory=dict)
    targets: list[Target] = Field(default_factory=list)
    comment: str | None = None
    principal: str | None = None
    requested_at: datetime
    expires_at: datetime | None = None
    execution_timeout_s: int
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
