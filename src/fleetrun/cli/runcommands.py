"""`fleetrun run-command ...`: named run commands on a node (the Azure-style view)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.text import Text

from fleetrun.cli import completion, render
from fleetrun.cli.base import api_options, options, read_text
from fleetrun.cli.exits import Exit
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.schemas.runcommands import GroupRunCommand, RunCommand
from fleetrun.sdk.client import Client
from fleetrun.sdk.runcommands import RunCommandDefinition

F = TypeVar("F", bound=Callable[..., Any])

STATE_STYLES = {
    "Succeeded": "green",
    "Failed": "red",
    "TimedOut": "red",
    "Canceled": "yellow",
    "Running": "cyan",
    "Pending": "dim",
    "Creating": "cyan",
    "Updating": "cyan",
    "Deleting": "yellow",
}


def _state(value: str) -> Text:
    return Text(value, style=STATE_STYLES.get(value, ""))


def _pairs(values: tuple[str, ...], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            # A protected value may be in the text: do not repeat it.
            raise ValidationError(f"{flag} is malformed: write it as NAME=VALUE.")
        pairs[name.strip()] = value
    return pairs


def _definition_options(f: F) -> F:
    decorators = [
        click.option("--script", default=None, help="The script to run (shell)."),
        click.option(
            "--script-file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            default=None,
            help="A local file whose content is the script (uploaded).",
        ),
        click.option("--script-uri", default=None, help="An http(s) URL the node downloads."),
        click.option("--script-sha256", default=None, help="The digest the download must match."),
        click.option(
            "--document",
            default=None,
            help="A document to run instead of a script.",
            shell_complete=completion.documents,
        ),
        click.option("--document-version", default=None),
        click.option(
            "--param", "params", multiple=True, metavar="NAME=VALUE", help="Environment variable."
        ),
        click.option(
            "--arg", "args", multiple=True, metavar="VALUE", help="Positional argument, in order."
        ),
        click.option(
            "--protected-param",
            "protected",
            multiple=True,
            metavar="NAME=VALUE",
            help="A secret environment variable: sealed to the node, never shown again.",
        ),
        click.option(
            "--protected-arg", "protected_args", multiple=True, metavar="VALUE", hidden=True
        ),
        click.option("--run-as-user", default=None),
        click.option(
            "--run-as-password",
            default=None,
            envvar="FLEETRUN_RUN_AS_PASSWORD",
            help="Write-only (Linux agents do not need it); or set FLEETRUN_RUN_AS_PASSWORD.",
        ),
        click.option("--timeout", "timeout_s", type=int, default=None, help="Seconds."),
        click.option(
            "--async", "async_", is_flag=True, help="Do not wait: provisioning ends at start."
        ),
        click.option("--treat-failure-as-deployment-failure", "treat", is_flag=True),
        click.option("--output-uri", default=None),
        click.option("--error-uri", default=None),
        click.option("--run-after", "run_after", multiple=True, metavar="NAME"),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _node_option(f: F) -> F:
    return click.option(
        "--node",
        "node_id",
        required=True,
        metavar="ID",
        help="The node.",
        shell_complete=completion.nodes,
    )(f)


def _target_options(f: F) -> F:
    f = click.option("--group", "group", default=None, metavar="NAME", help="A node group.")(f)
    return click.option(
        "--node",
        "node_id",
        default=None,
        metavar="ID",
        help="The node.",
        shell_complete=completion.nodes,
    )(f)


def _one_target(node_id: str | None, group: str | None) -> None:
    if (node_id is None) == (group is None):
        raise ValidationError("Give either --node ID or --group NAME (one of them).")


@click.group("run-command")
@api_options
def run_command() -> None:
    """Named run commands on a node: create runs it, update re-runs it, delete stops it."""


def _existing(client: Client, node_id: str, name: str) -> RunCommand | None:
    try:
        return client.get_run_command(node_id, name)
    except NotFoundError:
        return None


def _kept(before: RunCommand, kw: dict[str, Any]) -> dict[str, Any]:
    """`update` without --param or --arg keeps the public parameters and arguments the
    run command had (protected ones are never returned: they must be given again)."""
    if kw["params"] or kw["args"] or kw.get("clear_params"):
        return kw
    named = tuple(f"{p.name}={p.value}" for p in before.parameters if p.name)
    nameless = tuple(p.value for p in before.parameters if not p.name)
    return {**kw, "params": named, "args": nameless}


def _put(
    ctx: click.Context,
    name: str,
    node_id: str | None,
    group: str | None,
    kw: dict[str, Any],
    *,
    before: RunCommand | None = None,
) -> None:
    opts = options(ctx)
    client = opts.client()
    if group is None and before is None:
        before = _existing(client, str(node_id), name)
    script = kw["script"]
    if kw["script_file"] is not None:
        if script is not None:
            raise ValidationError("Give --script or --script-file, not both.")
        script = read_text(kw["script_file"], "script file")
    definition: RunCommandDefinition = {
        "script": script,
        "script_uri": kw["script_uri"],
        "script_sha256": kw["script_sha256"],
        "document": kw["document"],
        "document_version": kw["document_version"],
        "parameters": _pairs(kw["params"], "--param"),
        "arguments": list(kw["args"]),
        "protected_parameters": _pairs(kw["protected"], "--protected-param"),
        "protected_arguments": list(kw["protected_args"]),
        "run_as_user": kw["run_as_user"],
        "run_as_password": kw["run_as_password"],
        "timeout_s": kw["timeout_s"],
        "async_execution": kw["async_"],
        "treat_failure_as_deployment_failure": kw["treat"],
        "output_uri": kw["output_uri"],
        "error_uri": kw["error_uri"],
        "run_after": list(kw["run_after"]),
    }
    if group is not None:
        grc = client.put_group_run_command(group, name, **definition)
        return _finish_group(ctx, client, grc, wait=not kw["async_"])
    rc = client.put_run_command(str(node_id), name, **definition)
    if before is not None and rc.generation == before.generation:
        # The server runs nothing for a definition identical to the one it has.
        if opts.json:
            return render.emit_json(rc)
        render.out.print(
            f"Run command {name} on {node_id} is unchanged: nothing was run (run it again "
            f"with: fleetrun run-command rerun {name} --node {node_id}).",
            markup=False,
        )
        return
    _finish(ctx, client, rc, wait=not kw["async_"])


def _finish_group(ctx: click.Context, client: Client, grc: GroupRunCommand, *, wait: bool) -> None:
    if wait:
        with render.err.status(f"{grc.name} on group {grc.groupName}") as status:
            while not _group_done(grc):
                time.sleep(0.5)
                grc = client.get_group_run_command(grc.groupName, grc.name)
                s = grc.summary
                status.update(
                    f"{grc.name} on {grc.groupName}: {s.succeeded} succeeded, {s.failed} "
                    f"failed, {s.running} running, {s.pending} pending"
                )
    if options(ctx).json:
        render.emit_json(grc)
    else:
        _show_group(grc)
    if wait and (grc.summary.succeeded != grc.summary.total or grc.provisioningState == "Failed"):
        ctx.exit(Exit.FAILED)


def _group_done(grc: GroupRunCommand) -> bool:
    return grc.summary.running == 0 and grc.summary.pending == 0


def _show_group(grc: GroupRunCommand) -> None:
    s = grc.summary
    render.block(
        [
            ("Run command", f"{grc.name} on group {grc.groupName}"),
            ("Provisioning", _state(grc.provisioningState)),
            (
                "Members",
                f"{s.total}: {s.succeeded} succeeded, {s.failed} failed, {s.running} running, "
                f"{s.pending} pending, {s.canceled} canceled",
            ),
        ]
    )
    render.table(
        ["NODE", "PROVISIONING", "EXECUTION", "EXIT", "MESSAGE"],
        (
            [
                i.nodeId,
                _state(i.provisioningState),
                _state(i.instanceView.executionState),
                "-" if i.instanceView.exitCode is None else i.instanceView.exitCode,
                i.instanceView.executionMessage,
            ]
            for i in grc.instances
        ),
        empty="No members yet.",
    )


def _finish(ctx: click.Context, client: Client, rc: RunCommand, *, wait: bool) -> None:
    if wait:
        rc = _wait_with_progress(client, rc)
    if options(ctx).json:
        render.emit_json(rc)
    else:
        _show(rc)
    if wait and (rc.instanceView.executionState != "Succeeded" or rc.provisioningState == "Failed"):
        ctx.exit(Exit.FAILED)


def _wait_with_progress(client: Client, rc: RunCommand) -> RunCommand:
    with render.err.status(f"{rc.name}: {rc.instanceView.executionState}") as status:

        def update(latest: RunCommand) -> None:
            view = latest.instanceView
            status.update(f"{latest.name}: {view.executionState} · {view.executionMessage}")

        return client.wait_run_command(rc.nodeId, rc.name, on_update=update)


def _show(rc: RunCommand) -> None:
    view = rc.instanceView
    source = rc.source
    render.block(
        [
            ("Run command", f"{rc.name} on {rc.nodeId}"),
            (
                "Source",
                source.scriptUri
                or (f"document {source.documentName}" if source.documentName else "inline script"),
            ),
            ("Provisioning", _state(rc.provisioningState)),
            ("Execution", _state(view.executionState)),
            ("Message", view.executionMessage),
            ("Exit code", view.exitCode),
            ("Started", render.when(view.startTime)),
            ("Ended", render.when(view.endTime)),
            ("Duration", render.duration(view.startTime, view.endTime)),
            ("Run", f"{rc.currentRunId} (generation {rc.generation})"),
        ]
    )
    if view.output:
        render.out.print("output (last 4 KiB):", style="bold")
        render.raw(view.output)
    if view.error:
        render.out.print("error (last 4 KiB):", style="red")
        render.raw(view.error)


@run_command.command("create")
@click.argument("name")
@_target_options
@_definition_options
@api_options
@click.pass_context
def create(
    ctx: click.Context, /, name: str, node_id: str | None, group: str | None, **kw: Any
) -> None:
    """Create (or update) a run command and run it; waits unless --async, and exits
    non-zero if the script failed (on a group: on any member)."""
    _one_target(node_id, group)
    _put(ctx, name, node_id, group, kw)


@run_command.command("update")
@click.argument("name")
@_target_options
@_definition_options
@click.option(
    "--clear-params",
    is_flag=True,
    help="Drop the parameters and arguments it had (without --param/--arg they are kept).",
)
@api_options
@click.pass_context
def update(
    ctx: click.Context, /, name: str, node_id: str | None, group: str | None, **kw: Any
) -> None:
    """Replace an existing run command's definition: a changed one stops the running
    execution and runs again; an identical one runs nothing. Its parameters and
    arguments are kept unless --param, --arg or --clear-params say otherwise."""
    _one_target(node_id, group)
    client = options(ctx).client()
    if group is not None:
        client.get_group_run_command(group, name)  # it must exist
        return _put(ctx, name, node_id, group, kw)
    before = client.get_run_command(str(node_id), name)
    _put(ctx, name, node_id, group, _kept(before, kw), before=before)


@run_command.command("show")
@click.argument("name")
@_target_options
@api_options
@click.pass_context
def show(ctx: click.Context, name: str, node_id: str | None, group: str | None) -> None:
    """Show a run command with its instance view (on a group: each member's)."""
    _one_target(node_id, group)
    if group is not None:
        grc = options(ctx).client().get_group_run_command(group, name)
        return render.emit_json(grc) if options(ctx).json else _show_group(grc)
    rc = options(ctx).client().get_run_command(str(node_id), name)
    if options(ctx).json:
        return render.emit_json(rc)
    _show(rc)


@run_command.command("list")
@_target_options
@api_options
@click.pass_context
def list_run_commands(ctx: click.Context, node_id: str | None, group: str | None) -> None:
    """List a node's run commands, or a group's."""
    _one_target(node_id, group)
    client = options(ctx).client()
    if group is not None:
        groups = client.list_group_run_commands(group)
        if options(ctx).json:
            return render.emit_json(groups)
        return render.table(
            ["NAME", "PROVISIONING", "MEMBERS", "SUCCEEDED", "FAILED", "RUNNING", "PENDING"],
            (
                [
                    g.name,
                    _state(g.provisioningState),
                    g.summary.total,
                    g.summary.succeeded,
                    g.summary.failed,
                    g.summary.running,
                    g.summary.pending,
                ]
                for g in groups
            ),
            empty=f"No run commands on group {group}: create one with `fleetrun run-command "
            "create NAME --group`.",
        )
    found = client.list_run_commands(str(node_id))
    if options(ctx).json:
        return render.emit_json(found)
    render.table(
        ["NAME", "PROVISIONING", "EXECUTION", "EXIT", "ENDED", "GENERATION", "GROUP"],
        (
            [
                rc.name,
                _state(rc.provisioningState),
                _state(rc.instanceView.executionState),
                "-" if rc.instanceView.exitCode is None else rc.instanceView.exitCode,
                render.when(rc.instanceView.endTime),
                rc.generation,
                rc.groupName or "",
            ]
            for rc in found
        ),
        empty=f"No run commands on {node_id}: create one with `fleetrun run-command create`.",
    )


@run_command.command("delete")
@click.argument("name")
@_target_options
@api_options
@click.pass_context
def delete(ctx: click.Context, name: str, node_id: str | None, group: str | None) -> None:
    """Stop a running execution and remove the run command (on a group: from every
    member)."""
    _one_target(node_id, group)
    client = options(ctx).client()
    gone: Any = (
        client.delete_group_run_command(group, name)
        if group is not None
        else client.delete_run_command(str(node_id), name)
    )
    if options(ctx).json:
        return render.emit_json(gone)
    where = f"group {group}" if group is not None else str(node_id)
    render.out.print(f"Deleted run command {name} on {where}.")


@run_command.command("rerun")
@click.argument("name")
@_target_options
@click.option("--async", "async_", is_flag=True, help="Do not wait for the result.")
@api_options
@click.pass_context
def rerun(
    ctx: click.Context, name: str, node_id: str | None, group: str | None, async_: bool
) -> None:
    """Run it again, unchanged (on a group: on every member)."""
    _one_target(node_id, group)
    client = options(ctx).client()
    if group is not None:
        grc = client.rerun_group_run_command(group, name)
        return _finish_group(ctx, client, grc, wait=not async_)
    _finish(ctx, client, client.rerun_run_command(str(node_id), name), wait=not async_)


@run_command.command("runs")
@click.argument("name")
@_node_option
@api_options
@click.pass_context
def runs(ctx: click.Context, name: str, node_id: str) -> None:
    """Every execution of a run command, newest first."""
    found = options(ctx).client().list_run_command_runs(node_id, name)
    if options(ctx).json:
        return render.emit_json(found)
    render.table(
        ["RUN", "GEN", "REASON", "EXECUTION", "EXIT", "STARTED", "DURATION", "COMMAND"],
        (
            [
                r.id,
                r.generation,
                r.reason,
                _state(r.instanceView.executionState),
                "-" if r.instanceView.exitCode is None else r.instanceView.exitCode,
                render.when(r.instanceView.startTime),
                render.duration(r.instanceView.startTime, r.instanceView.endTime),
                r.commandId or "-",
            ]
            for r in found
        ),
        empty="No runs.",
    )
