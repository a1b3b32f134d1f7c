"""Run commands on top of commands: each run is one command with one invocation on the
node, so delivery, the journal, output, cancel and timeouts are the engine's own.

    PUT   new or changed body: a new run (the running one is cancelled first);
          identical body: nothing
    POST  .../run: a new run of the same definition
    DELETE: cancel the running one, remove the definition and its runs

A run waits (Pending, no command yet) while an earlier run of the same name is still
stopping, or while a run command named in `runAfter` has not finished; it starts as soon
as they end (`start_waiting`, called when any run on the node finishes). Its states
follow its invocation (`refresh_runs`, called in the transaction that changes it), and
`record_state` is the one place where a run's (and so a run command's) state changes.
"""

from __future__ import annotations

import secrets as random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, object_session

from fleetrun.core import documents, envnames, protocol, sealing
from fleetrun.core import runcommands as core
from fleetrun.core.errors import ConflictError, FleetrunError, NotFoundError, ValidationError
from fleetrun.core.ids import new_run_id
from fleetrun.core.runcommands import ExecutionState, ProvisioningState
from fleetrun.core.targets import Target
from fleetrun.schemas import runcommands as schemas
from fleetrun.schemas.commands import (
    MAX_DELIVERY_TIMEOUT_S,
    CommandCreate,
    SealedParameters,
)
from fleetrun.server import events
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.store import commands as command_store
from fleetrun.server.store import documents as document_store
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import Invocation, RunCommand, RunCommandRun, utcnow

Notify = list[tuple[str, str]]  # (node id, invocation id) to tell the agent to stop


@dataclass
class Put:
    run_command: RunCommand
    ran: bool  # a new run was made (False: identical body)
    notify: Notify = field(default_factory=list)


# -- checking a body ------------------------------------------------------------------


def check_body(session: Session, name: str, body: schemas.RunCommandPut) -> None:
    """Refuse a body that cannot run, with one sentence, before anything is stored."""
    core.check_name(name)
    source = body.source
    given = [k for k in ("script", "scriptUri", "documentName") if getattr(source, k)]
    if len(given) != 1:
        raise ValidationError(
            "A run command needs exactly one source: give source.script, source.scriptUri "
            "or source.documentName"
            + (f" (this one has {' and '.join(given)})." if given else " (this one has none).")
        )
    if source.script is not None and not source.script.strip():
        raise ValidationError("The script is empty: give the commands to run.")
    protocol.check_script_size(
        len((source.script or "").encode())
        + sum(len(p.value.encode()) for p in [*body.parameters, *body.protectedParameters]),
        "The run command's script with its parameters",
    )
    if source.scriptUri:
        check_uri(source.scriptUri, "scriptUri", schemes=("http", "https"))
    if source.scriptSha256 is not None:
        if not source.scriptUri:
            raise ValidationError("scriptSha256 goes with scriptUri: give both, or neither.")
        if len(source.scriptSha256) != 64 or any(
            c not in "0123456789abcdef" for c in source.scriptSha256.lower()
        ):
            raise ValidationError("scriptSha256 must be 64 hex digits (a SHA-256 digest).")
    if source.documentVersion and not source.documentName:
        raise ValidationError("source.documentVersion goes with source.documentName.")
    for uri, what in ((body.outputUri, "outputUri"), (body.errorUri, "errorUri")):
        if uri:
            check_destination(uri, what)
    timeout = body.timeoutInSeconds
    if timeout is not None and not 0 <= timeout <= core.MAX_TIMEOUT_S:
        raise ValidationError(
            f"timeoutInSeconds {timeout} is out of range: give 1 to {core.MAX_TIMEOUT_S} "
            f"(0 or none means {core.DEFAULT_TIMEOUT_S})."
        )
    envnames.check(
        [p.name for p in [*body.parameters, *body.protectedParameters] if p.name],
        "Parameter",
    )
    for other in body.runAfter:
        core.check_name(other)
        if other == name:
            raise ValidationError(f"Run command {name} cannot run after itself.")
    if source.documentName:
        doc = document_store.resolve(session, source.documentName, source.documentVersion)
        named, _ = core.split_parameters([(p.name, p.value) for p in body.parameters])
        documents.bind_parameters(doc.content, {k: [v] for k, v in named.items()})


def check_destination(uri: str, what: str) -> None:
    """An outputUri or errorUri: http(s), or s3://BUCKET/KEY."""
    check_uri(uri, what, schemes=("http", "https", "s3"))
    if urlsplit(uri).scheme.lower() == "s3" and not urlsplit(uri).path.strip("/"):
        raise ValidationError(f"{what} {uri!r} needs an object key: s3://BUCKET/KEY.")


def check_uri(uri: str, what: str, *, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(uri)
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise ValidationError(
            f"{what} {uri!r} is not a valid URL: give an absolute "
            f"{' or '.join(schemes)} URL such as https://host/path."
        )
    return uri


def _check_order(session: Session, node_id: str, name: str, run_after: list[str]) -> None:
    """runAfter must not close a loop: A after B after A would never start."""
    graph = {
        rc.name: list(rc.spec.get("runAfter") or [])
        for rc in session.execute(select(RunCommand).where(RunCommand.node_id == node_id))
        .scalars()
        .all()
    }
    graph[name] = run_after
    seen: set[str] = set()
    stack = list(run_after)
    while stack:
        current = stack.pop()
        if current == name:
            raise ValidationError(
                f"runAfter of {name} makes a loop (it would wait for itself): remove one link."
            )
        if current not in seen:
            seen.add(current)
            stack.extend(graph.get(current, []))


# -- writing --------------------------------------------------------------------------


def put_run_command(
    session: Session,
    node_id: str,
    name: str,
    body: schemas.RunCommandPut,
    *,
    principal: str | None,
    group_name: str | None = None,
    hold: str | None = None,
    checked: bool = False,
) -> Put:
    """Create or update, and run. With `group_name`, the run command belongs to that
    group; with `hold`, its run ends Failed with that message instead of starting;
    `checked`: the caller has run `check_body` already (once for a whole group)."""
    if not checked:
        check_body(session, name, body)
    node = node_store.read_node(session, node_id)
    _check_order(session, node.id, name, body.runAfter)
    rc = _find(session, node.id, name)
    if rc is not None and rc.group_name != group_name:
        owner = f"group {rc.group_name}" if rc.group_name else "the node itself"
        raise ConflictError(
            f"Node {node.id} already has a run command {name!r}, put there by {owner}: "
            "change or delete it there, or choose another name."
        )
    whole = body.model_dump(mode="json")
    if rc is not None and rc.fingerprint == core.fingerprint(whole, rc.salt):
        return Put(rc, ran=False)
    sealed = _seal(node.id, node.seal_public_key, body)
    now = utcnow()
    if rc is None:
        count = session.execute(
            select(func.count()).select_from(RunCommand).where(RunCommand.node_id == node.id)
        ).scalar_one()
        if count >= core.MAX_PER_NODE:
            raise ConflictError(
                f"The maximum number of run commands on a node (max={core.MAX_PER_NODE}, "
                f"current={count}) has been reached: delete one you no longer need and retry."
            )
        salt = random.token_hex(16)
        rc = RunCommand(
            id=random.token_hex(18),
            node_id=node.id,
            name=name,
            salt=salt,
            generation=0,
            created_at=now,
            provisioning_state=ProvisioningState.CREATING.value,
        )
        session.add(rc)
        reason = "Create"
    else:
        reason = "Update"
    rc.group_name = group_name
    rc.spec = _public(body)
    rc.sealed = sealed
    # A held run never starts: the same body put again must run, not count as done.
    rc.fingerprint = core.fingerprint(whole, rc.salt) if hold is None else ""
    rc.principal = principal
    rc.updated_at = now
    session.flush()
    return Put(rc, ran=True, notify=_new_run(session, rc, reason, hold))


def rerun(session: Session, node_id: str, name: str) -> tuple[RunCommand, Notify]:
    rc = read_run_command(session, node_id, name)
    rc.updated_at = utcnow()
    return rc, _new_run(session, rc, "Rerun")


def delete_run_command(session: Session, node_id: str, name: str) -> tuple[RunCommand, Notify]:
    """Stop what runs, then remove the definition and its runs. Always allowed."""
    rc = read_run_command(session, node_id, name)
    notify = _stop_current(session, rc, "Deleted before it started.")
    current = session.get(RunCommandRun, rc.current_run_id) if rc.current_run_id else None
    if current is not None:
        record_state(
            rc,
            current,
            ExecutionState(current.execution_state),
            ProvisioningState.DELETING,
            current.message,
        )
    session.execute(delete(RunCommandRun).where(RunCommandRun.run_command_id == rc.id))
    session.delete(rc)
    session.flush()
    start_waiting(session, rc.node_id)  # what ran after it need not wait any longer
    return rc, notify


def _new_run(session: Session, rc: RunCommand, reason: str, hold: str | None = None) -> Notify:
    notify = _stop_current(session, rc, "Superseded by a newer run before it started.")
    rc.generation += 1
    run = RunCommandRun(
        id=new_run_id(),
        run_command_id=rc.id,
        node_id=rc.node_id,
        generation=rc.generation,
        reason=reason,
        execution_state=ExecutionState.PENDING.value,
        provisioning_state=_busy(reason).value,
        requested_at=utcnow(),
        output_uri=rc.spec.get("outputUri"),
        error_uri=rc.spec.get("errorUri"),
        output_sent=0,
        error_sent=0,
        sink_done=not (rc.spec.get("outputUri") or rc.spec.get("errorUri")),
    )
    session.add(run)
    rc.current_run_id = run.id
    rc.provisioning_state = run.provisioning_state
    session.flush()
    if hold is not None:
        record_state(rc, run, ExecutionState.FAILED, ProvisioningState.FAILED, hold)
    else:
        _announce(session, rc, run)
    start_waiting(session, rc.node_id)
    return notify


def _busy(reason: str) -> ProvisioningState:
    return ProvisioningState.CREATING if reason == "Create" else ProvisioningState.UPDATING


def _stop_current(session: Session, rc: RunCommand, waiting_message: str) -> Notify:
    """Cancel the current run: a waiting one at once, a running one through the engine
    (its whole process tree is stopped, and the next run waits until it is)."""
    run = session.get(RunCommandRun, rc.current_run_id) if rc.current_run_id else None
    if run is None or run.execution_state in core.FINISHED:
        return []
    if run.command_id is None:
        record_state(rc, run, ExecutionState.CANCELED, ProvisioningState.SUCCEEDED, waiting_message)
        return []
    notify = engine_commands.cancel_command(session, run.command_id, None)
    engine_commands.refresh_command(session, run.command_id)
    refresh_runs(session, [run.command_id])  # cancelled before it started: finished now
    return notify


def _public(body: schemas.RunCommandPut) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"protectedParameters", "runAsPassword"})


def _seal(node_id: str, key: str | None, body: schemas.RunCommandPut) -> dict[str, Any] | None:
    """Protected parameters (and the run-as password) sealed to the node's key; the
    clear values live only in this request's memory."""
    named, positional = core.split_parameters([(p.name, p.value) for p in body.protectedParameters])
    if not (named or positional or body.runAsPassword):
        return None
    if not key:
        raise ConflictError(
            f"Node {node_id} has no sealing key (its agent registered before secrets existed): "
            "register it again to give it protected parameters."
        )
    sealed: dict[str, Any] = {
        "env": {
            n: sealing.seal(key, v.encode(), context=f"{node_id}:{n}".encode())
            for n, v in named.items()
        },
        "args": [
            sealing.seal(key, v.encode(), context=f"{node_id}:arg:{i}".encode())
            for i, v in enumerate(positional)
        ],
    }
    if body.runAsPassword:
        # Linux agents drop privileges themselves and need no password; it is kept
        # sealed for agents that will.
        sealed["password"] = sealing.seal(
            key, body.runAsPassword.encode(), context=f"{node_id}:runAsPassword".encode()
        )
    return sealed


# -- starting runs ----------------------------------------------------------------------


def _command_for(
    rc: RunCommand, run: RunCommandRun
) -> tuple[CommandCreate, command_store.StepExtras]:
    spec = rc.spec
    source = spec["source"]
    named, positional = core.split_parameters(
        [(p["name"], p["value"]) for p in spec.get("parameters") or []]
    )
    extras = command_store.StepExtras(
        script_uri=source.get("scriptUri"), script_sha256=source.get("scriptSha256")
    )
    if source.get("documentName"):
        document, version = source["documentName"], source.get("documentVersion")
        parameters = {k: [v] for k, v in named.items()}
    else:
        document, version = "RunShellScript", None
        parameters = {"commands": [source.get("script") or "# the script comes from scriptUri"]}
        extras.env = named
    sealed = rc.sealed or {}
    secret = None
    if sealed.get("env") or sealed.get("args"):
        secret = {
            rc.node_id: SealedParameters(env=sealed.get("env", {}), args=sealed.get("args", []))
        }
    body = CommandCreate(
        document_name=document,
        document_version=version,
        parameters=parameters,
        arguments=positional,
        targets=[Target(key="NodeIds", values=[rc.node_id])],
        comment=f"run command {rc.name} ({run.id})",
        execution_timeout_s=spec.get("timeoutInSeconds") or core.DEFAULT_TIMEOUT_S,
        delivery_timeout_s=MAX_DELIVERY_TIMEOUT_S,
        run_as=spec.get("runAsUser"),
        secret_parameters=secret,
    )
    return body, extras


def _start(session: Session, rc: RunCommand, run: RunCommandRun) -> None:
    body, extras = _command_for(rc, run)
    try:
        command = engine_commands.send_command(session, body, principal=rc.principal, extras=extras)
    except FleetrunError as exc:  # e.g. the document was deleted while it waited
        record_state(rc, run, ExecutionState.FAILED, ProvisioningState.FAILED, exc.message)
        return
    run.command_id = command.id
    session.flush()


def start_waiting(session: Session, node_id: str) -> bool:
    """Start the waiting runs on a node that may start now; whether any did."""
    started = False
    waiting = session.execute(
        select(RunCommandRun)
        .where(
            RunCommandRun.node_id == node_id,
            RunCommandRun.command_id.is_(None),
            RunCommandRun.execution_state == ExecutionState.PENDING.value,
        )
        .order_by(RunCommandRun.requested_at)
    ).scalars()
    for run in list(waiting):
        rc = session.get(RunCommand, run.run_command_id)
        if rc is None:
            continue
        blocked, failed = _blocked(session, rc, run)
        if failed:
            record_state(rc, run, ExecutionState.FAILED, ProvisioningState.FAILED, failed)
        elif not blocked:
            _start(session, rc, run)
            started = started or run.command_id is not None
    return started


def _blocked(session: Session, rc: RunCommand, run: RunCommandRun) -> tuple[bool, str | None]:
    """Whether the run must still wait, or the sentence saying why it never will."""
    earlier = session.execute(
        select(func.count())
        .select_from(RunCommandRun)
        .where(
            RunCommandRun.run_command_id == rc.id,
            RunCommandRun.id != run.id,
            RunCommandRun.command_id.is_not(None),
            RunCommandRun.execution_state.not_in([s.value for s in core.FINISHED]),
        )
    ).scalar_one()
    if earlier:
        return True, None
    for name in rc.spec.get("runAfter") or []:
        other = _find(session, rc.node_id, name)
        current = (
            session.get(RunCommandRun, other.current_run_id)
            if other is not None and other.current_run_id
            else None
        )
        if current is None:
            continue  # nothing of that name: nothing to wait for
        if current.execution_state not in core.FINISHED:
            return True, None
        if current.provisioning_state == ProvisioningState.FAILED:
            return False, f"Not run: {name}, which it runs after, failed."
    return False, None


# -- following the engine -------------------------------------------------------------


def refresh_runs(session: Session, command_ids: Iterable[str]) -> bool:
    """Bring the runs carried by these commands up to date with their invocations, and
    start what was waiting for them; whether a run was started."""
    ids = list(command_ids)
    if not ids:
        return False
    rows = session.execute(
        select(RunCommandRun, Invocation)
        .join(Invocation, Invocation.command_id == RunCommandRun.command_id)
        .where(RunCommandRun.command_id.in_(ids))
    ).all()
    finished_on: set[str] = set()
    for run, inv in rows:
        rc = session.get(RunCommand, run.run_command_id)
        if rc is None:
            continue
        execution = core.execution_state(inv.status, inv.status_detail)
        provisioning = core.provisioning_state(
            execution,
            started=inv.started_at is not None,
            updating=run.reason != "Create",
            async_execution=bool(rc.spec.get("asyncExecution")),
            treat_failure=bool(rc.spec.get("treatFailureAsDeploymentFailure")),
        )
        if record_state(rc, run, execution, provisioning, inv.message) and (
            execution in core.FINISHED
        ):
            finished_on.add(run.node_id)
    started = False
    for node_id in finished_on:
        started = start_waiting(session, node_id) or started
    return started


def record_state(
    rc: RunCommand,
    run: RunCommandRun,
    execution: ExecutionState,
    provisioning: ProvisioningState,
    message: str | None,
) -> bool:
    """The one place a run's states (and its run command's provisioning state) change;
    whether they did. A change here is a run-command state change event."""
    if (run.execution_state, run.provisioning_state) == (execution.value, provisioning.value):
        return False
    run.execution_state = execution.value
    run.provisioning_state = provisioning.value
    if message is not None:
        run.message = message
    if execution in core.FINISHED and run.ended_at is None:
        run.ended_at = utcnow()
    if rc.current_run_id == run.id:
        rc.provisioning_state = provisioning.value
    session = object_session(rc)
    if session is not None:
        _announce(session, rc, run)
    return True


def _announce(session: Session, rc: RunCommand, run: RunCommandRun) -> None:
    """A run-command state-change event for the run's states as they are now."""
    source = rc.spec.get("source") or {}
    events.run_command_changed(
        session,
        run_command=rc.name,
        run_id=run.id,
        node_id=rc.node_id,
        group=rc.group_name,
        execution_state=run.execution_state,
        provisioning_state=run.provisioning_state,
        message=run.message,
        command_id=run.command_id,
        document_name=source.get("documentName") or "RunShellScript",
    )


# -- reading --------------------------------------------------------------------------


def _find(session: Session, node_id: str, name: str) -> RunCommand | None:
    return session.execute(
        select(RunCommand).where(RunCommand.node_id == node_id, RunCommand.name == name)
    ).scalar_one_or_none()


def read_run_command(session: Session, node_id: str, name: str) -> RunCommand:
    node = node_store.read_node(session, node_id)
    rc = _find(session, node.id, name)
    if rc is None:
        raise NotFoundError(
            f"Node {node_id} has no run command {name!r}; list them with "
            f"`fleetrun run-command list --node {node_id}`."
        )
    return rc


def read_run_commands(session: Session, node_id: str) -> list[RunCommand]:
    node = node_store.read_node(session, node_id)
    return list(
        session.execute(
            select(RunCommand).where(RunCommand.node_id == node.id).order_by(RunCommand.name)
        )
        .scalars()
        .all()
    )


def read_runs(session: Session, rc: RunCommand) -> list[RunCommandRun]:
    return list(
        session.execute(
            select(RunCommandRun)
            .where(RunCommandRun.run_command_id == rc.id)
            .order_by(RunCommandRun.generation.desc())
        )
        .scalars()
        .all()
    )


def instance_view(session: Session, run: RunCommandRun | None) -> schemas.InstanceView:
    if run is None:
        return schemas.InstanceView(executionState=ExecutionState.UNKNOWN.value)
    inv = (
        session.execute(
            select(Invocation).where(Invocation.command_id == run.command_id)
        ).scalar_one_or_none()
        if run.command_id
        else None
    )
    if inv is None:
        execution = ExecutionState(run.execution_state)
        return schemas.InstanceView(
            executionState=execution.value,
            executionMessage=run.message
            or "Waiting for an earlier run, or a run command it runs after, to finish.",
            endTime=run.ended_at,
        )
    steps = invocation_store.read_steps(session, inv.id)
    execution = core.execution_state(inv.status, inv.status_detail)
    message = core.execution_message(execution, inv.status, inv.exit_code, inv.message)
    if run.sink_message:
        message = f"{message} {run.sink_message}"
    return schemas.InstanceView(
        executionState=execution.value,
        executionMessage=message,
        exitCode=inv.exit_code,
        output=core.tail(b"".join(s.stdout_tail for s in steps)),
        error=core.tail(b"".join(s.stderr_tail for s in steps)),
        startTime=inv.started_at,
        endTime=inv.ended_at,
    )


def run_to_schema(session: Session, rc: RunCommand, run: RunCommandRun) -> schemas.RunCommandRun:
    return schemas.RunCommandRun(
        id=run.id,
        name=rc.name,
        nodeId=run.node_id,
        generation=run.generation,
        reason=run.reason,
        commandId=run.command_id,
        requestedAt=run.requested_at,
        provisioningState=run.provisioning_state,
        instanceView=instance_view(session, run),
    )


def shown_source(spec: dict[str, Any]) -> schemas.RunCommandSource:
    source = dict(spec["source"])
    source["scriptUri"] = core.redact_uri(source.get("scriptUri"))
    return schemas.RunCommandSource(**source)


def to_schema(
    session: Session, rc: RunCommand, provisioning: str | None = None
) -> schemas.RunCommand:
    spec = rc.spec
    current = session.get(RunCommandRun, rc.current_run_id) if rc.current_run_id else None
    return schemas.RunCommand(
        name=rc.name,
        nodeId=rc.node_id,
        groupName=rc.group_name,
        source=shown_source(spec),
        parameters=[schemas.RunCommandParameter(**p) for p in spec.get("parameters") or []],
        runAsUser=spec.get("runAsUser"),
        timeoutInSeconds=spec.get("timeoutInSeconds") or core.DEFAULT_TIMEOUT_S,
        asyncExecution=bool(spec.get("asyncExecution")),
        treatFailureAsDeploymentFailure=bool(spec.get("treatFailureAsDeploymentFailure")),
        outputUri=core.redact_uri(spec.get("outputUri")),
        errorUri=core.redact_uri(spec.get("errorUri")),
        runAfter=list(spec.get("runAfter") or []),
        provisioningState=provisioning or rc.provisioning_state,
        generation=rc.generation,
        currentRunId=rc.current_run_id,
        createdAt=rc.created_at,
        updatedAt=rc.updated_at,
        instanceView=instance_view(session, current),
    )
