"""Console pages for running commands: the run form (targets with a live preview, a
script or a document's generated form), the command list, and a command's page with
per-node statuses pushed over server-sent events, cancel, re-run and output.

As the fleet pages do, every handler declares the API route's `authorize(...)` and
calls the API route's function with the caller: the console can do nothing the API
would refuse, and says what the API says when it refuses.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from fleetrun.core import access
from fleetrun.core.documents import bind_parameters
from fleetrun.core.errors import FleetrunError, ValidationError
from fleetrun.core.events import NOTIFY_STATUSES
from fleetrun.core.statuses import TERMINAL_INVOCATION
from fleetrun.core.targets import Target
from fleetrun.schemas import commands as schemas
from fleetrun.schemas.events import Notification
from fleetrun.server.api import commands as commands_api
from fleetrun.server.api import documents as documents_api
from fleetrun.server.api import nodes as nodes_api
from fleetrun.server.api import rules as rules_api
from fleetrun.server.api.deps import authorize, recheck, state_of
from fleetrun.server.authz import Caller
from fleetrun.server.web import sse
from fleetrun.server.web.pages import guard
from fleetrun.server.web.render import field, form, may, page, refusal, templates

router = APIRouter(prefix="/ui", include_in_schema=False, dependencies=[Depends(guard)])

SCRIPT = "RunShellScript"
PREVIEW_NODES = 20  # names shown in the preview; the count is of all
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing the stream
REREAD_S = 2.0  # without a change notice, the command is read again this often
RECHECK_S = 2.0  # the caller is decided again this often (as on the API's streams)
SECRETS_REFUSED = (
    "The console does not take secret parameters: they must be sealed to each node's key "
    "before they leave your machine. Send this command with the CLI: "
    "`fleetrun send --secret-param NAME=VALUE ...`."
)


def targets_of(fields: dict[str, list[str]]) -> list[Target]:
    """The targets the run form names: node ids, KEY=VALUE tags, or a group."""
    kind = field(fields, "target_kind", "tags")
    text = field(fields, "target")
    words = [w for w in text.replace(",", " ").split() if w]
    if not words:
        raise ValidationError("Name the targets: node ids, tags as KEY=VALUE, or a group's name.")
    if kind == "nodes":
        return [Target(key="NodeIds", values=words)]
    if kind == "group":
        return [Target(key="group", values=[words[0]])]
    targets: dict[str, list[str]] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValidationError(f"Tag {word!r} is not KEY=VALUE: write it as env=prod.")
        targets.setdefault(key, []).append(value)
    return [Target(key=f"tag:{k}", values=v) for k, v in targets.items()]


def parameters_of(fields: dict[str, list[str]], declared: dict[str, Any]) -> dict[str, list[str]]:
    """The document's parameters as the form gave them (a StringList one line each); an
    empty field is left out, so the document's default applies."""
    given: dict[str, list[str]] = {}
    for name, spec in declared.items():
        raw = fields.get(f"param.{name}")
        if raw is None:
            continue
        text = raw[0]
        if spec.get("type") == "StringList":
            values = [line for line in text.splitlines() if line.strip()]
        else:
            values = [text] if text != "" else []
        if values:
            given[name] = values
    return given


@router.get("/run")
async def run_page(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("SendCommand"))],
    target_kind: str = "tags",
    target: str = "",
    document: str = SCRIPT,
) -> Response:
    documents = await _documents(request, caller)
    channels = []
    if may(caller, "ListChannels"):
        channels = [c.name for c in (await rules_api.list_channels(request, caller)).items]
    doc = await _document(request, caller, document) if document != SCRIPT else None
    context = {
        "documents": documents,
        "document": doc,
        "document_name": document,
        "target_kind": target_kind,
        "target": target,
        "secrets_refused": SECRETS_REFUSED,
        "channels": channels,
        "notify_statuses": NOTIFY_STATUSES,
    }
    return page(request, "run.html", caller, context)


@router.get("/run/preview")
async def preview(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListNodes"))],
    target_kind: str = "tags",
    target: str = "",
) -> Response:
    """The nodes these targets select now, that the caller may see: their count and the
    first names (the API's /v1/targets/resolve)."""
    resolved: list[schemas.ResolvedNode] = []
    with refusal() as refused:
        fields = {"target_kind": [target_kind], "target": [target]}
        body = schemas.TargetsResolve(targets=targets_of(fields))
        resolved = await nodes_api.resolve_targets(request, body, caller)
    context = {
        "nodes": resolved[:PREVIEW_NODES],
        "count": len(resolved),
        "message": refused.message,
    }
    return page(request, "run_preview.html", caller, context)


@router.post("/run/check")
async def check_parameters(
    request: Request, caller: Annotated[Caller, Depends(authorize("GetDocument"))]
) -> Response:
    """The document's parameters checked as the API checks them when a command is sent
    (the same function, the same sentence)."""
    fields = await form(request)
    with refusal() as refused:
        doc = await _document(request, caller, field(fields, "document"))
        declared = doc.content.get("parameters") or {}
        bind_parameters(doc.content, parameters_of(fields, declared))
    return page(request, "run_check.html", caller, {"message": refused.message})


@router.post("/run")
async def send(
    request: Request, caller: Annotated[Caller, Depends(authorize("SendCommand"))]
) -> Response:
    fields = await form(request)
    if any(name.startswith("secret.") for name in fields):
        raise ValidationError(SECRETS_REFUSED)
    document = field(fields, "document", SCRIPT)
    if document == SCRIPT:
        script = field(fields, "script")
        if not script:
            raise ValidationError("Write the script to run in the script box.")
        parameters = {"commands": script.splitlines()}
    else:
        doc = await _document(request, caller, document)
        parameters = parameters_of(fields, doc.content.get("parameters") or {})
    body = schemas.CommandCreate(
        document_name=document,
        parameters=parameters,
        targets=targets_of(fields),
        comment=field(fields, "comment") or None,
        execution_timeout_s=_number(fields, "execution_timeout_s"),
        delivery_timeout_s=_number(fields, "delivery_timeout_s"),
        max_concurrency=field(fields, "max_concurrency") or None,
        max_errors=field(fields, "max_errors") or None,
        run_as=field(fields, "run_as") or None,
        notification=_notification(fields),
    )
    command = await commands_api.send_command(request, body, caller)
    return _go(request, f"/ui/commands/{command.id}")


@router.get("/commands")
async def commands_page(
    request: Request,
    caller: Annotated[Caller, Depends(authorize("ListCommands"))],
    status: str = "",
    cursor: str | None = None,
) -> Response:
    listed = await commands_api.list_commands(
        request,
        caller,
        status=status or None,
        document=None,
        node=None,
        tag=None,
        since=None,
        until=None,
        limit=50,
        cursor=cursor,
    )
    context = {"commands": listed.items, "next_cursor": listed.next_cursor, "status": status}
    return page(request, "commands.html", caller, context)


@router.get("/commands/{command_id}")
async def command_page(
    request: Request, command_id: str, caller: Annotated[Caller, Depends(authorize("GetCommand"))]
) -> Response:
    command, invocations = await _read(request, caller, command_id)
    return page(
        request,
        "command.html",
        caller,
        {"command": command, "invocations": invocations, **_offers(caller, command)},
    )


@router.get("/commands/{command_id}/stream")
async def stream(
    request: Request, command_id: str, caller: Annotated[Caller, Depends(authorize("GetCommand"))]
) -> StreamingResponse:
    """Server-sent events: the command's status, counts and per-node table, sent again
    each time the command changes (woken by the server's own change notices, as the
    API's long-poll is), until it is finished or the client goes away. The caller is
    decided again every RECHECK_S, as on the API's streams (not on every change, which
    a busy command makes many times a second): a revoked token or a policy that no
    longer allows it ends the stream with the reason."""
    state = state_of(request)
    await _read(request, caller, command_id)  # refused here, before the stream starts

    async def events() -> AsyncIterator[str]:
        sent: int | None = None  # the command's version last sent
        quiet_s = 0.0
        checked = time.monotonic()  # authorize(...) has just decided it
        with state.changes.subscribe(command_id) as changed:
            while not state.stopping:
                if time.monotonic() - checked >= RECHECK_S:
                    refused = await recheck(request, caller, "GetCommand", "*")
                    if refused is not None:
                        yield sse.event("refused", refused.message)
                        return
                    checked = time.monotonic()
                # The table is read only when the command's version says it changed: an
                # open page costs one small read every REREAD_S, not its 1,000 rows.
                command = await _command(request, caller, command_id)
                if command.version != sent:
                    sent, quiet_s = command.version, 0.0
                    yield sse.event("summary", _fragment(request, "command_summary.html", command))
                    invocations = await _invocations(request, caller, command_id)
                    offers = _offers(caller, command)
                    rows = _fragment(request, "command_rows.html", command, invocations, offers)
                    yield sse.event("invocations", rows)
                if command.done:
                    yield sse.event("done", "done")
                    return
                # Woken at once by this server's commits; what another replica stored
                # is read within REREAD_S (and sent only if the command changed).
                if not await changed.wait(REREAD_S):
                    if await request.is_disconnected():
                        return
                    quiet_s += REREAD_S
                    if quiet_s >= KEEPALIVE_S:
                        quiet_s = 0.0
                        yield sse.KEEPALIVE

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"x-accel-buffering": "no"}
    )


@router.get("/commands/{command_id}/nodes/{node_id}")
async def invocation_fragment(
    request: Request,
    command_id: str,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
) -> Response:
    """One node's invocation: while it runs, its output followed live (output.py);
    once it has ended, its stored output."""
    invocation = await commands_api.get_invocation(request, command_id, node_id, caller)
    live = invocation.status not in {s.value for s in TERMINAL_INVOCATION}
    context = {"inv": invocation, "command_id": command_id, "live": live}
    return page(request, "invocation.html", caller, context)


@router.get("/commands/{command_id}/nodes/{node_id}/download")
async def download(
    request: Request,
    command_id: str,
    node_id: str,
    caller: Annotated[Caller, Depends(authorize("GetCommandInvocation"))],
    stream: Literal["stdout", "stderr"] = "stdout",
) -> Response:
    """The full output as a file: the API's output route, saved under a file name."""
    response = await commands_api.get_output(
        request, command_id, node_id, caller, stream=stream, step=None
    )
    name = f"{command_id}-{node_id}.{stream}.txt"
    response.headers["content-disposition"] = f'attachment; filename="{name}"'
    return response


@router.post("/commands/{command_id}/cancel")
async def cancel(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("CancelCommand"))],
) -> Response:
    """Cancel every node, or the nodes ticked in the table."""
    fields = await form(request)
    picked = [n for n in fields.get("node", []) if n]
    node_ids = None if field(fields, "all") or not picked else picked
    body = schemas.CommandCancel(node_ids=node_ids)
    await commands_api.cancel_command(request, command_id, caller, body)
    return _go(request, f"/ui/commands/{command_id}")


@router.post("/commands/{command_id}/rerun")
async def rerun(
    request: Request,
    command_id: str,
    caller: Annotated[Caller, Depends(authorize("SendCommand"))],
) -> Response:
    """The same command again, on every node it targeted or only on those that did not
    succeed: a new command, sent (and decided) as any other."""
    fields = await form(request)
    command, invocations = await _read(request, caller, command_id)
    targets = list(command.targets)
    if field(fields, "only") == "failed":
        failed = [i.node_id for i in invocations if i.status != "Success"]
        if not failed:
            raise ValidationError("No node of this command failed: there is nothing to re-run.")
        targets = [Target(key="NodeIds", values=failed)]
    body = schemas.CommandCreate(
        document_name=command.document_name,
        document_version=command.document_version,
        parameters=command.parameters,
        arguments=command.arguments,
        targets=targets,
        comment=command.comment,
        execution_timeout_s=command.execution_timeout_s,
        delivery_timeout_s=command.delivery_timeout_s,
        max_concurrency=command.max_concurrency,
        max_errors=command.max_errors,
        run_as=command.run_as,
    )
    again = await commands_api.send_command(request, body, caller)
    return _go(request, f"/ui/commands/{again.id}")


# -- reading and rendering -------------------------------------------------------


async def _read(
    request: Request, caller: Caller, command_id: str
) -> tuple[schemas.Command, list[schemas.Invocation]]:
    command = await _command(request, caller, command_id)
    return command, await _invocations(request, caller, command_id)


async def _command(request: Request, caller: Caller, command_id: str) -> schemas.Command:
    return await commands_api.get_command(
        request, command_id, caller, wait_s=0, version=None, until="changed"
    )


async def _invocations(
    request: Request, caller: Caller, command_id: str
) -> list[schemas.Invocation]:
    listed = await commands_api.list_invocations(
        request, command_id, caller, status=None, node=None, tag=None, details=False,
        limit=1000, cursor=None,
    )  # fmt: skip
    return listed.items


def _offers(caller: Caller, command: schemas.Command) -> dict[str, bool]:
    return {
        "may_cancel": not command.done and may(caller, "CancelCommand"),
        "may_rerun": command.done and may(caller, "SendCommand"),
    }


def _fragment(
    request: Request,
    name: str,
    command: schemas.Command,
    invocations: list[schemas.Invocation] | None = None,
    offers: dict[str, bool] | None = None,
) -> str:
    context = {"request": request, "command": command, "invocations": invocations or []}
    return templates.get_template(name).render({**context, **(offers or {})})


def _notification(fields: dict[str, list[str]]) -> Notification | None:
    """The form's notification: a channel, the statuses to notify on (all when none is
    ticked), per command or per invocation."""
    channel = field(fields, "notify_channel")
    if not channel:
        return None
    events = [e for e in fields.get("notify_event", []) if e] or list(NOTIFY_STATUSES)
    kind = "Invocation" if field(fields, "notify_type") == "Invocation" else "Command"
    return Notification(channel=channel, events=events, type=kind)


def _number(fields: dict[str, list[str]], name: str) -> int | None:
    text = field(fields, name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValidationError(f"{name} must be a whole number of seconds, not {text!r}.") from None


def _go(request: Request, target: str) -> Response:
    """After a change: to `target` (htmx follows HX-Redirect; a plain form, a 303)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"hx-redirect": target})
    return RedirectResponse(target, status_code=303)


async def _documents(request: Request, caller: Caller) -> list[Any]:
    try:
        listed = await documents_api.list_documents(request, caller)
    except FleetrunError:
        return []
    return list(listed.items)


async def _document(request: Request, caller: Caller, name: str) -> Any:
    # The API decides this one at its gate, on the named document: so here too.
    caller.require("GetDocument", access.frn("document", name))
    return await documents_api.get_document(request, name, caller)
