"""SSM's Run Command operations over fleetrun's commands: SendCommand,
GetCommandInvocation, ListCommands, ListCommandInvocations and CancelCommand.

Each is the native route's work (the same engine, stores and per-resource decisions,
as the caller's principal) with SSM's request translated in (`sendcommand.py`) and its
answer shaped out (`shapes.py`); errors are worded in SSM's codes where SSM has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import logs, ssm
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.core.ids import is_node_id, is_uuid
from fleetrun.core.statuses import TERMINAL_COMMAND
from fleetrun.core.targets import MAX_VALUES
from fleetrun.server.commandauthz import (
    cancellable_nodes,
    command_resource,
    readable_invocations,
    require_invocation,
)
from fleetrun.server.db import Tx
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.ssm import filters, s3output, sendcommand, shapes
from fleetrun.server.ssm.base import (
    Call,
    Operation,
    SsmError,
    boolean,
    max_results,
    string,
    strings,
)
from fleetrun.server.store import commands as store
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import Command, Invocation, InvocationStep


async def send_command(call: Call) -> dict[str, Any]:
    state, caller = call.state, call.caller
    wanted = sendcommand.translate(call.body)
    now = state.clock.now()

    def create(tx: Tx) -> dict[str, Any]:
        doc = sendcommand.check(tx.session, wanted, s3_enabled=state.settings.s3_enabled)
        command = sendcommand.send(tx.session, wanted, doc, caller, now)
        logs.bind(command_id=command.id)
        state.wake_dispatcher(tx)
        where = None
        if wanted.output_bucket:
            where = s3output.Where(wanted.output_bucket, wanted.output_prefix)
        return shapes.command(store.to_schema(command), where)

    return {"Command": await state.db.write(create)}


async def get_command_invocation(call: Call) -> dict[str, Any]:
    command_id = string(call.body, "CommandId", required=True) or ""
    node_id = string(call.body, "InstanceId", required=True) or ""
    plugin_name = string(call.body, "PluginName", min_length=4)
    _check_instance_id(node_id)
    caller = call.caller

    def read(
        session: Session,
    ) -> tuple[Command, Invocation, list[InvocationStep], s3output.Where | None]:
        try:
            command = store.read_command(session, command_id)
            inv = invocation_store.read_invocation(session, command_id, node_id)
        except NotFoundError as exc:
            raise SsmError(
                "InvocationDoesNotExist",
                f"Command {command_id} has no invocation on instance {node_id}.",
            ) from exc
        require_invocation(session, caller, command, node_id)
        where = s3output.read_where(session, [command_id]).get(command_id)
        return command, inv, invocation_store.read_steps(session, inv.id), where

    command, inv, steps, where = await call.state.db.read(read)
    views = await shapes.step_views(call.state.output, inv, steps, command.steps)
    if plugin_name is not None and not any(
        plugin_name in (v.name, ssm.plugin_name(v.name)) for v in views
    ):
        names = ", ".join(ssm.plugin_name(v.name) for v in views)
        raise SsmError(
            "InvalidPluginName",
            f"Command {command_id} has no step {plugin_name!r}: its steps are {names}.",
        )
    s3 = s3output.Destination(where, call.state.settings) if where else None
    return shapes.command_invocation(command, inv, views, plugin_name, s3)


def _check_instance_id(node_id: str) -> None:
    if not is_node_id(node_id):
        raise SsmError(
            "InvalidInstanceId",
            f"{node_id!r} is not a fleetrun node id: node ids look like n-0123456789abcdef0.",
        )


def _check_command_id(command_id: str) -> None:
    if not is_uuid(command_id):
        raise SsmError("InvalidCommandId", f"{command_id!r} is not a command id.")


async def list_commands(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    command_id = string(body, "CommandId")
    node_id = string(body, "InstanceId")
    limit = max_results(body, default=50)
    wanted = filters.read(body, invocations=False)
    cursor = filters.cursor(body, call.operation)
    if node_id is not None:
        _check_instance_id(node_id)

    def kept(command: Command) -> bool:
        if wanted.stage is not None and (command.status in TERMINAL_COMMAND) != (
            wanted.stage == "Complete"
        ):
            return False
        return caller.allows("ListCommands", *command_resource(command))

    def listed(session: Session) -> tuple[list[Command], str | None, dict[str, s3output.Where]]:
        rows, next_cursor = read(session)
        return rows, next_cursor, s3output.read_where(session, [r.id for r in rows])

    def read(session: Session) -> tuple[list[Command], str | None]:
        if command_id is not None:
            _check_command_id(command_id)
            command = _command(session, command_id)
            return ([command] if kept(command) else []), None
        if wanted.matches_nothing:
            return [], None
        found = store.CommandFilter(
            status=wanted.status,
            document=wanted.document,
            node_id=node_id,
            since=wanted.since,
            until=wanted.until,
        )
        try:
            return store.read_commands(session, found, limit=limit, cursor=cursor, keep=kept)
        except ValidationError as exc:  # the cursor inside the token
            raise filters.invalid_token() from exc

    rows, next_cursor, where = await call.state.db.read(listed)
    items = [shapes.command(store.to_schema(r), where.get(r.id)) for r in rows]
    return filters.page("Commands", items, call.operation, next_cursor)


async def list_command_invocations(call: Call) -> dict[str, Any]:
    body, caller = call.body, call.caller
    command_id = string(body, "CommandId")
    node_id = string(body, "InstanceId")
    limit = max_results(body, default=50)
    details = boolean(body, "Details")
    wanted = filters.read(body, invocations=True)
    cursor = filters.cursor(body, call.operation)
    if command_id is not None:
        _check_command_id(command_id)
    if node_id is not None:
        _check_instance_id(node_id)
    keep = readable_invocations(caller, "ListCommandInvocations")

    def read(session: Session) -> tuple[list[_Row], str | None, dict[str, s3output.Where]]:
        if command_id is not None:
            _command(session, command_id)
        if wanted.matches_nothing:
            return [], None, {}
        found = invocation_store.InvocationFilter(
            command_id=command_id,
            node_id=node_id,
            status=wanted.status,
            since=wanted.since,
            until=wanted.until,
        )
        try:
            rows, next_cursor = invocation_store.read_invocations(
                session, found, limit=limit, cursor=cursor
            )
        except ValidationError as exc:
            raise filters.invalid_token() from exc
        rows = keep(session, rows)
        commands = store.commands_by_id(session, (r.command_id for r in rows))
        if wanted.document is not None:
            rows = [r for r in rows if commands[r.command_id].document_name == wanted.document]
        steps = invocation_store.read_steps_of(session, [r.id for r in rows]) if details else {}
        found_rows = [_Row(commands[r.command_id], r, steps.get(r.id, [])) for r in rows]
        return found_rows, next_cursor, s3output.read_where(session, list(commands))

    rows, next_cursor, where = await call.state.db.read(read)
    items = []
    for row in rows:
        views = None
        if details:
            views = await shapes.step_views(call.state.output, row.inv, row.steps, row.plan)
        dest = where.get(row.command.id)
        s3 = s3output.Destination(dest, call.state.settings) if dest else None
        items.append(shapes.invocation(row.command, row.inv, views, s3))
    return filters.page("CommandInvocations", items, call.operation, next_cursor)


@dataclass(frozen=True)
class _Row:
    command: Command
    inv: Invocation
    steps: list[InvocationStep]

    @property
    def plan(self) -> list[dict[str, Any]]:
        return list(self.command.steps)


async def cancel_command(call: Call) -> dict[str, Any]:
    """Not started: Cancelled at once; running: Cancelling until the agent confirms;
    finished: unchanged (SSM answers nothing either way)."""
    command_id = string(call.body, "CommandId", required=True) or ""
    node_ids = strings(call.body, "InstanceIds", max_items=MAX_VALUES) or None
    _check_command_id(command_id)
    for node_id in node_ids or []:
        _check_instance_id(node_id)
    if node_ids and len(set(node_ids)) != len(node_ids):
        raise SsmError("DuplicateInstanceId", "An instance is named twice in InstanceIds.")
    state, caller = call.state, call.caller

    def cancel(tx: Tx) -> list[tuple[str, str]]:
        command = _command(tx.session, command_id)
        if node_ids:
            have = set(
                tx.session.execute(
                    select(Invocation.node_id).where(Invocation.command_id == command_id)
                ).scalars()
            )
            missing = [n for n in node_ids if n not in have]
            if missing:
                raise SsmError(
                    "InvalidInstanceId",
                    f"Command {command_id} was not sent to instance {missing[0]}.",
                )
        allowed = cancellable_nodes(tx.session, caller, command, node_ids)
        notify = engine_commands.cancel_command(tx.session, command_id, allowed)
        state.refresh_commands(tx, [command_id])
        return notify

    notify = await state.db.write(cancel)
    await state.gateway.cancel(notify)
    return {}


def _command(session: Session, command_id: str) -> Command:
    try:
        return store.read_command(session, command_id)
    except NotFoundError as exc:
        raise SsmError("InvalidCommandId", f"No command {command_id} exists.") from exc


OPERATIONS: dict[str, Operation] = {
    "SendCommand": Operation("SendCommand", send_command),
    "GetCommandInvocation": Operation("GetCommandInvocation", get_command_invocation),
    "ListCommands": Operation("ListCommands", list_commands),
    "ListCommandInvocations": Operation("ListCommandInvocations", list_command_invocations),
    "CancelCommand": Operation("CancelCommand", cancel_command),
}
