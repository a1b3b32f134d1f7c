"""SSM's Run Command operations over fleetrun's commands: SendCommand,
GetCommandInvocation, ListCommands, ListCommandInvocations and CancelCommand.

Each is the native route's work (the same engine, stores and per-resource decisions,
as the caller's principal) with SSM's request translated in (`sendcommand.py`) and its
answer shaped out (`shapes.py`); errors are worded in SSM's codes where SSM has one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fleetrun.core import logs, ssm
from fleetrun.core.errors import NotFoundError
from fleetrun.core.ids import is_node_id, is_uuid
from fleetrun.server.api.commands import _require_invocation
from fleetrun.server.db import Tx
from fleetrun.server.ssm import sendcommand, shapes
from fleetrun.server.ssm.base import Call, Operation, SsmError, string
from fleetrun.server.store import commands as store
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import Command, Invocation, InvocationStep


async def send_command(call: Call) -> dict[str, Any]:
    state, caller = call.state, call.caller
    wanted = sendcommand.translate(call.body)
    now = state.clock.now()

    def create(tx: Tx) -> dict[str, Any]:
        sendcommand.check(tx.session, wanted)
        command = sendcommand.send(tx.session, wanted, caller, now)
        logs.bind(command_id=command.id)
        tx.after_commit(state.dispatcher.wake)
        return shapes.command(store.to_schema(command))

    return {"Command": await state.db.write(create)}


async def get_command_invocation(call: Call) -> dict[str, Any]:
    command_id = string(call.body, "CommandId", required=True) or ""
    node_id = string(call.body, "InstanceId", required=True) or ""
    plugin_name = string(call.body, "PluginName", min_length=4)
    _check_instance_id(node_id)
    caller = call.caller

    def read(session: Session) -> tuple[Command, Invocation, list[InvocationStep]]:
        try:
            command = store.read_command(session, command_id)
            inv = invocation_store.read_invocation(session, command_id, node_id)
        except NotFoundError as exc:
            raise SsmError(
                "InvocationDoesNotExist",
                f"Command {command_id} has no invocation on instance {node_id}.",
            ) from exc
        _require_invocation(session, caller, command, node_id)
        return command, inv, invocation_store.read_steps(session, inv.id)

    command, inv, steps = await call.state.db.read(read)
    views = await shapes.step_views(call.state.output, inv, steps, command.steps)
    if plugin_name is not None and not any(
        plugin_name in (v.name, ssm.plugin_name(v.name)) for v in views
    ):
        names = ", ".join(ssm.plugin_name(v.name) for v in views)
        raise SsmError(
            "InvalidPluginName",
            f"Command {command_id} has no step {plugin_name!r}: its steps are {names}.",
        )
    return shapes.command_invocation(command, inv, views, plugin_name)


def _check_instance_id(node_id: str) -> None:
    if not is_node_id(node_id):
        raise SsmError(
            "InvalidInstanceId",
            f"{node_id!r} is not a fleetrun node id: node ids look like n-0123456789abcdef0.",
        )


def _check_command_id(command_id: str) -> None:
    if not is_uuid(command_id):
        raise SsmError("InvalidCommandId", f"{command_id!r} is not a command id.")


OPERATIONS: dict[str, Operation] = {
    "SendCommand": Operation("SendCommand", send_command),
    "GetCommandInvocation": Operation("GetCommandInvocation", get_command_invocation),
}
