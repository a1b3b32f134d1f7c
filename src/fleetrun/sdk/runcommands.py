"""Run commands (the managed, Azure-style view), each operation written once as an
`Op` (see `fleetrun.sdk.wire`); `Client` and `AsyncClient` expose each one as a method
of the same name and arguments. A definition is typed: the keywords of
`RunCommandDefinition`, or a `RunCommandPut`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict, Unpack

from fleetrun.core.errors import ValidationError
from fleetrun.core.runcommands import FINISHED
from fleetrun.schemas.base import build
from fleetrun.schemas.runcommands import (
    GroupRunCommand,
    RunCommand,
    RunCommandPut,
    RunCommandRun,
)
from fleetrun.sdk.wire import Listing, Op, Sleep, model, path


class RunCommandDefinition(TypedDict, total=False):
    """The keywords of `put_run_command` and `put_group_run_command`: what to run
    (exactly one of `script`, `script_uri`, `document`) and how. They map one to one
    onto the server's `RunCommandPut` (`fleetrun.schemas.runcommands`)."""

    script: str | None  # the script itself (shell)
    script_uri: str | None  # an http(s) URL the node downloads
    script_sha256: str | None  # the hex digest that download must match
    document: str | None  # a document to run instead, e.g. RunShellScript
    document_version: str | None
    parameters: Mapping[str, str] | None  # environment variables
    arguments: Sequence[str]  # positional arguments, in order
    protected_parameters: Mapping[str, str] | None  # sealed to the node, never returned
    protected_arguments: Sequence[str]
    run_as_user: str | None
    run_as_password: str | None  # write-only
    timeout_s: int | None  # 0 or none: 5400
    async_execution: bool  # provisioning ends when the run starts
    treat_failure_as_deployment_failure: bool
    output_uri: str | None
    error_uri: str | None
    run_after: Sequence[str]  # names of run commands this one waits for


def run_command_body(
    *,
    script: str | None = None,
    script_uri: str | None = None,
    script_sha256: str | None = None,
    document: str | None = None,
    document_version: str | None = None,
    parameters: Mapping[str, str] | None = None,
    arguments: Sequence[str] = (),
    protected_parameters: Mapping[str, str] | None = None,
    protected_arguments: Sequence[str] = (),
    run_as_user: str | None = None,
    run_as_password: str | None = None,
    timeout_s: int | None = None,
    async_execution: bool = False,
    treat_failure_as_deployment_failure: bool = False,
    output_uri: str | None = None,
    error_uri: str | None = None,
    run_after: Sequence[str] = (),
) -> dict[str, Any]:
    """The PUT body of a run command, checked here as the server would."""

    def params(named: Mapping[str, str] | None, nameless: Sequence[str]) -> list[Any]:
        pairs = [{"name": k, "value": v} for k, v in (named or {}).items()]
        return pairs + [{"name": "", "value": v} for v in nameless]

    body = build(
        RunCommandPut,
        source={
            "script": script,
            "scriptUri": script_uri,
            "scriptSha256": script_sha256,
            "documentName": document,
            "documentVersion": document_version,
        },
        parameters=params(parameters, arguments),
        protectedParameters=params(protected_parameters, protected_arguments),
        runAsUser=run_as_user,
        runAsPassword=run_as_password,
        timeoutInSeconds=timeout_s,
        asyncExecution=async_execution,
        treatFailureAsDeploymentFailure=treat_failure_as_deployment_failure,
        outputUri=output_uri,
        errorUri=error_uri,
        runAfter=list(run_after),
    )
    return body.model_dump(mode="json", exclude_none=True)


def _definition(body: RunCommandPut | None, definition: RunCommandDefinition) -> dict[str, Any]:
    if body is None:
        return run_command_body(**definition)
    if definition:
        raise ValidationError("Give the run command as a RunCommandPut or as keywords, not both.")
    return body.model_dump(mode="json", exclude_none=True)


# -- run commands -------------------------------------------------------------------------


def put_run_command(
    node_id: str,
    name: str,
    body: RunCommandPut | None = None,
    **definition: Unpack[RunCommandDefinition],
) -> Op[RunCommand]:
    """Create or update a run command on a node, and run it (an identical body runs
    nothing). The definition is the keywords of `RunCommandDefinition` (`script=`,
    `document=`, `parameters=`, ...) or a `RunCommandPut`: named parameters become
    environment variables, arguments positional ones (public before protected);
    protected values are sealed to the node's key by the server and never returned."""
    json = _definition(body, definition)
    return model(RunCommand, "PUT", path("nodes", node_id, "run-commands", name), json=json)


def put_group_run_command(
    group: str,
    name: str,
    body: RunCommandPut | None = None,
    **definition: Unpack[RunCommandDefinition],
) -> Op[GroupRunCommand]:
    """Put a run command on every member of a node group (and on nodes that join it
    later); the definition as for `put_run_command`."""
    json = _definition(body, definition)
    return model(GroupRunCommand, "PUT", path("groups", group, "run-commands", name), json=json)


def get_group_run_command(group: str, name: str) -> Op[GroupRunCommand]:
    return model(GroupRunCommand, "GET", path("groups", group, "run-commands", name))


def list_group_run_commands(group: str) -> Listing[GroupRunCommand]:
    return Listing(GroupRunCommand, path("groups", group, "run-commands"))


def rerun_group_run_command(group: str, name: str) -> Op[GroupRunCommand]:
    return model(GroupRunCommand, "POST", path("groups", group, "run-commands", name, "run"))


def delete_group_run_command(group: str, name: str) -> Op[GroupRunCommand]:
    return model(GroupRunCommand, "DELETE", path("groups", group, "run-commands", name))


def get_run_command(node_id: str, name: str) -> Op[RunCommand]:
    return model(RunCommand, "GET", path("nodes", node_id, "run-commands", name))


def list_run_commands(node_id: str) -> Listing[RunCommand]:
    return Listing(RunCommand, path("nodes", node_id, "run-commands"))


def delete_run_command(node_id: str, name: str) -> Op[RunCommand]:
    return model(RunCommand, "DELETE", path("nodes", node_id, "run-commands", name))


def rerun_run_command(node_id: str, name: str) -> Op[RunCommand]:
    return model(RunCommand, "POST", path("nodes", node_id, "run-commands", name, "run"))


def list_run_command_runs(node_id: str, name: str) -> Listing[RunCommandRun]:
    return Listing(RunCommandRun, path("nodes", node_id, "run-commands", name, "runs"))


def wait_run_command(
    node_id: str,
    name: str,
    *,
    timeout_s: float | None = None,
    until: Callable[[RunCommand], bool] | None = None,
    on_update: Callable[[RunCommand], None] | None = None,
    poll_s: float = 0.5,
) -> Op[RunCommand]:
    """Poll until `until` holds (default: the current run has finished)."""
    done = until or (lambda rc: rc.instanceView.executionState in FINISHED)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        rc = yield from get_run_command(node_id, name)
        if on_update:
            on_update(rc)
        if done(rc) or (deadline is not None and time.monotonic() >= deadline):
            return rc
        yield Sleep(poll_s)
