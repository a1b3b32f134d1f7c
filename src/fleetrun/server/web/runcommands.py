"""Console pages for groups and run commands: a group's members and its run commands
(each with a roll-up and one instance view per member), and the forms that put, re-run
and delete run commands on a group or a node. As elsewhere in the console, each handler
declares the API route's `authorize(...)` and calls the API route's function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from starlette.responses import RedirectResponse

from fleetrun.core import access
from fleetrun.core.errors import FleetrunError, ValidationError
from fleetrun.schemas import runcommands as schemas
from fleetrun.server.api import groups as groups_api
from fleetrun.server.api import runcommands as api
from fleetrun.server.api.deps import authorize
from fleetrun.server.authz import Caller
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import field, form, may, page

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])


def put_body(fields: dict[str, list[str]]) -> schemas.RunCommandPut:
    """A run command from the console's form: a script (or a document's name), run as,
    timeout."""
    script = field(fields, "script")
    document = field(fields, "document")
    if bool(script) == bool(document):
        raise ValidationError("Give the run command a script, or the name of a document.")
    timeout = field(fields, "timeout_s")
    try:
        timeout_s = int(timeout) if timeout else None
    except ValueError:
        raise ValidationError(f"The timeout must be whole seconds, not {timeout!r}.") from None
    source = (
        schemas.RunCommandSource(script=script.replace("\r\n", "\n"))
        if script
        else schemas.RunCommandSource(documentName=document)
    )
    return schemas.RunCommandPut(
        source=source, runAsUser=field(fields, "run_as") or None, timeoutInSeconds=timeout_s
    )


@router.get("/groups")
async def groups_page(
    request: Request, caller: Annotated[Caller, Depends(authorize("ListGroups"))]
) -> Response:
    listed = await groups_api.list_groups(request, caller)
    return page(request, "groups.html", caller, {"groups": listed.items})


@router.get("/groups/{name}")
async def group_page(
    request: Request, name: str, caller: Annotated[Caller, Depends(authorize("GetGroup"))]
) -> Response:
    # The API decides GetGroup at its gate, on the named group: so here too.
    group_resource = access.frn("group", name)
    caller.require("GetGroup", group_resource)
    group = await groups_api.get_group(request, name, caller)
    run_commands = None
    if caller.allows("ListGroupRunCommands", group_resource):
        try:
            run_commands = (await api.list_group_run_commands(request, name, caller)).items
        except FleetrunError:
            run_commands = None
    context = {
        "group": group,
        "run_commands": run_commands,
        "may_put": caller.allows("PutGroupRunCommand", group_resource),
        "may_start": caller.allows("StartGroupRunCommand", group_resource),
        "may_delete": caller.allows("DeleteGroupRunCommand", group_resource),
    }
    return page(request, "group.html", caller, context)


@router.post("/groups/{group_name}/run-commands")
async def put_group_run_command(
    request: Request,
    group_name: str,
    caller: Annotated[Caller, Depends(authorize("PutGroupRunCommand"))],
) -> Response:
    fields = await form(request)
    await api.put_group_run_command(
        request, group_name, field(fields, "name"), put_body(fields), caller
    )
    return RedirectResponse(f"/ui/groups/{group_name}", status_code=303)


@router.get("/nodes/{node_id}/run-commands/{name}")
async def run_command_page(
    request: Request,
    node_id: str,
    name: str,
    caller: Annotated[Caller, Depends(authorize("GetRunCommand"))],
) -> Response:
    """One run command on a node: its instance view, and every execution of it."""
    rc = await api.get_run_command(request, node_id, name, caller)
    runs = None
    if may(caller, "ListRunCommandRuns"):
        try:
            runs = (await api.list_runs(request, node_id, name, caller)).items
        except FleetrunError:
            runs = None
    context = {
        "rc": rc,
        "runs": runs,
        "may_start": may(caller, "StartRunCommand") and not rc.groupName,
        "may_delete": may(caller, "DeleteRunCommand") and not rc.groupName,
    }
    return page(request, "run_command.html", caller, context)


@router.post("/nodes/{node_id}/run-commands")
async def put_run_command(
    request: Request,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("PutRunCommand"))],
) -> Response:
    fields = await form(request)
    await api.put_run_command(
        request, Response(), node_id, field(fields, "name"), put_body(fields), caller
    )
    return RedirectResponse(f"/ui/nodes/{node_id}", status_code=303)


def _on_run_command(
    path: str, action: str, call: Callable[[Request, str, str, Caller], Awaitable[object]]
) -> None:
    """POST /ui{path}: the API route `call` on one run command of a group or a node
    (the path's first parameter names it), then back to that group's or node's page."""
    owner_param = path[path.index("{") + 1 : path.index("}")]
    owner_page = "/ui" + path.split("/run-commands/")[0]

    @router.post(path, name=f"console_{action}", dependencies=[Depends(authorize(action))])
    async def act(request: Request, name: str) -> Response:
        owner = request.path_params[owner_param]
        await call(request, owner, name, request.state.caller)  # the gate's caller
        return RedirectResponse(owner_page.format(**{owner_param: owner}), status_code=303)


# Re-run and delete a run command: the path's parameters keep the API's names, which
# its gate reads (a refusal on a node's run command names the node).
for _path, _action, _call in (
    ("/groups/{group_name}/run-commands/{name}/run", "StartGroupRunCommand",
     api.rerun_group_run_command),
    ("/groups/{group_name}/run-commands/{name}/delete", "DeleteGroupRunCommand",
     api.delete_group_run_command),
    ("/nodes/{node_id}/run-commands/{name}/run", "StartRunCommand", api.rerun_run_command),
    ("/nodes/{node_id}/run-commands/{name}/delete", "DeleteRunCommand", api.delete_run_command),
):  # fmt: skip
    _on_run_command(_path, _action, _call)
