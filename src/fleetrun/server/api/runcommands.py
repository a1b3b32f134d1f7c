"""Run commands on a node: `/v1/nodes/{node_id}/run-commands[/{name}]`.

Every action is decided on the node (`frn:fleetrun:node/<id>`, with its tags), like
sending a command to it; writing also carries the document and run-as user as
conditions."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core import runcommands as core
from fleetrun.core.errors import AccessDeniedError, ConflictError, ValidationError
from fleetrun.schemas import runcommands as schemas
from fleetrun.schemas.base import Page
from fleetrun.server.api.deps import action, authorize, state_of
from fleetrun.server.audit import AuditEntry
from fleetrun.server.authz import Caller
from fleetrun.server.db import Tx
from fleetrun.server.store import group_runcommands as group_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store import principals as principal_store
from fleetrun.server.store import runcommands as store
from fleetrun.server.store.tables import GroupRunCommand

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

router = APIRouter(prefix="/v1/nodes/{node_id}/run-commands", tags=["run commands"])
groups_router = APIRouter(prefix="/v1/groups/{group_name}/run-commands", tags=["run commands"])


def _require(
    session: Session, caller: Caller, verb: str, node_id: str, extra: dict[str, Any] | None = None
) -> str:
    """Decide `verb` on the node; its id as stored."""
    node = node_store.read_node(session, node_id)
    tags = node_store.read_tags(session, [node.id])[node.id]
    caller.require(
        verb, access.frn("node", node.id), {**access.node_context(tags), **(extra or {})}
    )
    return node.id


def _require_members(
    session: Session, caller: Caller, verb: str, node_ids: list[str], extra: dict[str, Any]
) -> None:
    """Decide `verb` on each member node, with its tags (a group's run commands)."""
    tags = node_store.read_tags(session, node_ids)
    for node_id in node_ids:
        context = {**access.node_context(tags.get(node_id, {})), **extra}
        caller.require(verb, access.frn("node", node_id), context)


def admit(state: ServerState) -> group_store.Admit:
    """How a node that joins a group later is decided for the group's run commands: as
    their author (its policies as they are now, the address it put them from), on the
    group and then on the node with its tags, exactly as the author's PUT would be.
    Either way the decision goes to the audit log."""

    def decide(session: Session, grc: GroupRunCommand, node_id: str) -> str | None:
        principal = grc.principal or ""
        caller = Caller(
            principal=principal,
            source_ip=grc.source_ip,
            policies=tuple(principal_store.effective_policies(session, principal)),
            request_id=f"group-run-command:{grc.group_name}/{grc.name}",
            on_denied=partial(state.audit.denied, None),
        )
        conditions = _conditions(schemas.RunCommandPut.model_validate(grc.spec))
        try:
            caller.require("PutGroupRunCommand", access.frn("group", grc.group_name))
            _require_members(session, caller, "PutGroupRunCommand", [node_id], conditions)
        except AccessDeniedError as exc:
            return (
                f"AccessDenied: this node joined group {grc.group_name} after {principal} "
                f"put run command {grc.name} on it, and was decided as {principal}: "
                f"{exc.message}"
            )
        state.audit.submit(
            AuditEntry(
                kind="decision",
                principal=principal,
                action=access.action_name("PutGroupRunCommand"),
                resource=access.frn("node", node_id),
                decision="allow",
                source_ip=grc.source_ip,
                request_id=caller.request_id,
                detail={"reason": f"joined group {grc.group_name}"},
            )
        )
        return None

    return decide


def _check_destinations(body: schemas.RunCommandPut, state: ServerState) -> None:
    settings = state.settings
    for uri, what in ((body.outputUri, "outputUri"), (body.errorUri, "errorUri")):
        if uri:
            store.check_destination(uri, what)
            state.destinations.check_url(uri, what)  # s3:// names a bucket, no address
        if uri and uri.lower().startswith("s3://") and not settings.s3_enabled:
            raise ValidationError(
                f"{what} is an S3 URL, but this server has no S3 credentials: set "
                "FLEETRUN_S3_ACCESS_KEY_ID and FLEETRUN_S3_SECRET_ACCESS_KEY (and "
                "FLEETRUN_S3_ENDPOINT_URL for non-AWS storage), or give an http(s) URL."
            )


def _conditions(body: schemas.RunCommandPut) -> dict[str, Any]:
    named, _ = core.split_parameters([(p.name, p.value) for p in body.parameters])
    document = body.source.documentName or "RunShellScript"
    return access.command_context(
        document, {k: [v] for k, v in named.items()}, (body.runAsUser or "").strip() or None
    )


@router.get("", **action("ListRunCommands"))
async def list_run_commands(
    request: Request,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("ListRunCommands"))],
) -> Page[schemas.RunCommand]:
    def read(session: Session) -> Page[schemas.RunCommand]:
        _require(session, caller, "ListRunCommands", node_id)
        rows = store.read_run_commands(session, node_id)
        return Page(items=[store.to_schema(session, rc) for rc in rows])

    return await state_of(request).db.read(read)


@router.put("/{name}", **action("PutRunCommand"))
async def put_run_command(
    request: Request,
    response: Response,
    node_id: str,
    name: str,
    body: schemas.RunCommandPut,
    caller: Annotated[Caller, Depends(authorize("PutRunCommand"))],
) -> schemas.RunCommand:
    """Create or update, and run. An identical body runs nothing; a changed one stops
    the running execution (its whole process tree) and runs the new one."""
    state = state_of(request)
    core.check_name(name)
    _check_destinations(body, state)

    def put(tx: Tx) -> tuple[schemas.RunCommand, bool, store.Notify]:
        found = _require(tx.session, caller, "PutRunCommand", node_id, _conditions(body))
        result = store.put_run_command(tx.session, found, name, body, principal=caller.principal)
        created = result.ran and result.run_command.generation == 1
        state.wake_dispatcher(tx)
        return store.to_schema(tx.session, result.run_command), created, result.notify

    view, created, notify = await state.db.write(put)
    await state.gateway.cancel(notify)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return view


@router.get("/{name}", **action("GetRunCommand"))
async def get_run_command(
    request: Request,
    node_id: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetRunCommand"))],
) -> schemas.RunCommand:
    """With its instance view: the current run's state, exit code, and the last 4,096
    bytes of its output and error, refreshed while it runs."""

    def read(session: Session) -> schemas.RunCommand:
        found = _require(session, caller, "GetRunCommand", node_id)
        return store.to_schema(session, store.read_run_command(session, found, name))

    return await state_of(request).db.read(read)


@router.delete("/{name}", **action("DeleteRunCommand"))
async def delete_run_command(
    request: Request,
    node_id: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeleteRunCommand"))],
) -> schemas.RunCommand:
    """Stop a running execution, then remove the run command. Always allowed."""
    state = state_of(request)

    def delete(tx: Tx) -> tuple[schemas.RunCommand, store.Notify]:
        found = _require(tx.session, caller, "DeleteRunCommand", node_id)
        rc = store.read_run_command(tx.session, found, name)
        if group_store.owner(tx.session, rc) is not None:
            # Removed here, the group would put it back (and run it) at once.
            raise ConflictError(
                f"Run command {name!r} on {found} belongs to group {rc.group_name}: delete "
                f"it there (fleetrun run-command delete {name} --group {rc.group_name})."
            )
        view = store.to_schema(tx.session, rc, core.ProvisioningState.DELETING.value)
        _, notify = store.delete_run_command(tx.session, found, name)
        state.wake_dispatcher(tx)
        return view, notify

    view, notify = await state.db.write(delete)
    await state.gateway.cancel(notify)
    return view


@router.post("/{name}/run", status_code=status.HTTP_202_ACCEPTED, **action("StartRunCommand"))
async def rerun_run_command(
    request: Request,
    node_id: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("StartRunCommand"))],
) -> schemas.RunCommand:
    """Run it again, unchanged (a running execution is stopped first)."""
    state = state_of(request)

    def run(tx: Tx) -> tuple[schemas.RunCommand, store.Notify]:
        found = _require(tx.session, caller, "StartRunCommand", node_id)
        rc = store.read_run_command(tx.session, found, name)
        _require(
            tx.session,
            caller,
            "StartRunCommand",
            found,
            _conditions(schemas.RunCommandPut.model_validate(rc.spec)),
        )
        rc, notify = store.rerun(tx.session, found, name)
        state.wake_dispatcher(tx)
        return store.to_schema(tx.session, rc), notify

    view, notify = await state.db.write(run)
    await state.gateway.cancel(notify)
    return view


@router.get("/{name}/runs", **action("ListRunCommandRuns"))
async def list_runs(
    request: Request,
    node_id: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("ListRunCommandRuns"))],
) -> Page[schemas.RunCommandRun]:
    """Every execution of the run command, newest first, each with its own id."""

    def read(session: Session) -> Page[schemas.RunCommandRun]:
        found = _require(session, caller, "ListRunCommandRuns", node_id)
        rc = store.read_run_command(session, found, name)
        return Page(
            items=[store.run_to_schema(session, rc, r) for r in store.read_runs(session, rc)]
        )

    return await state_of(request).db.read(read)


# -- on a node group -------------------------------------------------------------------


def _group_view(session: Session, grc: Any) -> schemas.GroupRunCommand:
    instances = [store.to_schema(session, rc) for rc in group_store.members_of(session, grc)]
    return group_store.to_schema(session, grc, instances)


@groups_router.put("/{name}", **action("PutGroupRunCommand"))
async def put_group_run_command(
    request: Request,
    group_name: str,
    name: str,
    body: schemas.RunCommandPut,
    caller: Annotated[Caller, Depends(authorize("PutGroupRunCommand"))],
) -> schemas.GroupRunCommand:
    """Put it on every member of the group, and on nodes that join later; one instance
    view per member and a roll-up. Decided on the group, then on each member."""
    state = state_of(request)
    core.check_name(name)
    _check_destinations(body, state)

    def put(tx: Tx) -> tuple[schemas.GroupRunCommand, store.Notify]:
        caller.require("PutGroupRunCommand", access.frn("group", group_name))
        conditions = _conditions(body)

        def allow(members: list[str]) -> None:
            _require_members(tx.session, caller, "PutGroupRunCommand", members, conditions)

        grc, notify = group_store.put_group_run_command(
            tx.session,
            group_name,
            name,
            body,
            principal=caller.principal,
            source_ip=caller.source_ip,
            allow=allow,
        )
        state.wake_dispatcher(tx)
        return _group_view(tx.session, grc), notify

    view, notify = await state.db.write(put)
    await state.gateway.cancel(notify)
    return view


@groups_router.get("", **action("ListGroupRunCommands"))
async def list_group_run_commands(
    request: Request,
    group_name: str,
    caller: Annotated[Caller, Depends(authorize("ListGroupRunCommands"))],
) -> Page[schemas.GroupRunCommand]:
    def read(session: Session) -> Page[schemas.GroupRunCommand]:
        caller.require("ListGroupRunCommands", access.frn("group", group_name))
        rows = group_store.read_group_run_commands(session, group_name)
        return Page(items=[_group_view(session, grc) for grc in rows])

    return await state_of(request).db.read(read)


@groups_router.post(
    "/{name}/run", status_code=status.HTTP_202_ACCEPTED, **action("StartGroupRunCommand")
)
async def rerun_group_run_command(
    request: Request,
    group_name: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("StartGroupRunCommand"))],
) -> schemas.GroupRunCommand:
    """Run it again, unchanged, on every member. Decided on the group, then on each."""
    state = state_of(request)

    def run(tx: Tx) -> tuple[schemas.GroupRunCommand, store.Notify]:
        caller.require("StartGroupRunCommand", access.frn("group", group_name))
        grc = group_store.read_group_run_command(tx.session, group_name, name)
        conditions = _conditions(schemas.RunCommandPut.model_validate(grc.spec))
        members = [rc.node_id for rc in group_store.members_of(tx.session, grc)]
        _require_members(tx.session, caller, "StartGroupRunCommand", members, conditions)
        notify = group_store.rerun(tx.session, grc)
        state.wake_dispatcher(tx)
        return _group_view(tx.session, grc), notify

    view, notify = await state.db.write(run)
    await state.gateway.cancel(notify)
    return view


@groups_router.get("/{name}", **action("GetGroupRunCommand"))
async def get_group_run_command(
    request: Request,
    group_name: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetGroupRunCommand"))],
) -> schemas.GroupRunCommand:
    def read(session: Session) -> schemas.GroupRunCommand:
        caller.require("GetGroupRunCommand", access.frn("group", group_name))
        grc = group_store.read_group_run_command(session, group_name, name)
        return _group_view(session, grc)

    return await state_of(request).db.read(read)


@groups_router.delete("/{name}", **action("DeleteGroupRunCommand"))
async def delete_group_run_command(
    request: Request,
    group_name: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("DeleteGroupRunCommand"))],
) -> schemas.GroupRunCommand:
    """Stop and remove it on every member. Always allowed."""
    state = state_of(request)

    def delete(tx: Tx) -> tuple[schemas.GroupRunCommand, store.Notify]:
        caller.require("DeleteGroupRunCommand", access.frn("group", group_name))
        grc = group_store.read_group_run_command(tx.session, group_name, name)
        instances = [
            store.to_schema(tx.session, rc, core.ProvisioningState.DELETING.value)
            for rc in group_store.members_of(tx.session, grc)
        ]
        view = group_store.to_schema(tx.session, grc, instances)
        _, notify = group_store.delete_group_run_command(tx.session, group_name, name)
        state.wake_dispatcher(tx)
        return view, notify

    view, notify = await state.db.write(delete)
    await state.gateway.cancel(notify)
    return view
