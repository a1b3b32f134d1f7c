"""Run commands on the wire. Field names follow Azure's managed Run Command
(`runAsUser`, `timeoutInSeconds`, `instanceView`...), so its users find what they know.
Secrets (`protectedParameters`, `runAsPassword`) are write-only: no response has them."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from fleetrun.schemas.base import Request, Response


class RunCommandSource(Request):
    """Exactly one of script, scriptUri, documentName."""

    script: str | None = Field(None, description="the script itself")
    scriptUri: str | None = Field(None, description="http(s) URL the agent downloads")
    scriptSha256: str | None = Field(None, description="hex sha256 the download must match")
    documentName: str | None = Field(None, description="a document, e.g. RunShellScript")
    documentVersion: str | None = None


class RunCommandParameter(Request):
    name: str = Field("", max_length=128, description="empty: a positional argument")
    value: str = Field(max_length=32768)


class RunCommandPut(Request):
    source: RunCommandSource
    parameters: list[RunCommandParameter] = Field(default_factory=list, max_length=100)
    protectedParameters: list[RunCommandParameter] = Field(default_factory=list, max_length=100)
    runAsUser: str | None = Field(None, max_length=64)
    runAsPassword: str | None = Field(None, max_length=1024, description="write-only")
    timeoutInSeconds: int | None = Field(None, description="0 or none: 5400")
    asyncExecution: bool = False
    treatFailureAsDeploymentFailure: bool = False
    outputUri: str | None = Field(None, max_length=2048)
    errorUri: str | None = Field(None, max_length=2048)
    runAfter: list[str] = Field(default_factory=list, max_length=25)


class InstanceView(Response):
    executionState: str
    executionMessage: str = ""
    exitCode: int | None = None
    output: str = ""
    error: str = ""
    startTime: datetime | None = None
    endTime: datetime | None = None


class RunCommandRun(Response):
    """One execution of a run command."""

    id: str
    name: str
    nodeId: str
    generation: int
    reason: str  # Create, Update or Rerun
    commandId: str | None = None  # the command that carried it (none while it waits)
    requestedAt: datetime
    provisioningState: str
    instanceView: InstanceView


class RunCommand(Response):
    name: str
    nodeId: str
    groupName: str | None = None
    source: RunCommandSource
    parameters: list[RunCommandParameter] = Field(default_factory=list)
    runAsUser: str | None = None
    timeoutInSeconds: int
    asyncExecution: bool = False
    treatFailureAsDeploymentFailure: bool = False
    outputUri: str | None = None
    errorUri: str | None = None
    runAfter: list[str] = Field(default_factory=list)
    provisioningState: str
    generation: int
    currentRunId: str | None = None
    createdAt: datetime
    updatedAt: datetime
    instanceView: InstanceView


class GroupRunCommandSummary(Response):
    """How the members are doing, by executionState."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0  # Failed and TimedOut
    running: int = 0
    pending: int = 0
    canceled: int = 0


class GroupRunCommand(Response):
    groupName: str
    name: str
    source: RunCommandSource
    parameters: list[RunCommandParameter] = Field(default_factory=list)
    runAsUser: str | None = None
    timeoutInSeconds: int
    asyncExecution: bool = False
    treatFailureAsDeploymentFailure: bool = False
    runAfter: list[str] = Field(default_factory=list)
    provisioningState: str  # Failed if any member's is; Creating/Updating while any is
    summary: GroupRunCommandSummary
    instances: list[RunCommand] = Field(default_factory=list)  # one per member
    createdAt: datetime
    updatedAt: datetime
