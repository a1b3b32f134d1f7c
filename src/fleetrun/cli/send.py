"""`fleetrun send`: run a script or a document on nodes, and show how it went."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import click

from fleetrun.cli import render
from fleetrun.cli.base import F, api_options, options
from fleetrun.cli.exits import Exit
from fleetrun.core.durations import parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import parse_tag
from fleetrun.core.targets import Candidate, Target, matches, parse_target


def _tag_targets(tags: tuple[str, ...]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for text in tags:
        key, value = parse_tag(text)
        grouped[key].append(value)
    return dict(grouped)


def _params(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    """--param NAME=VALUE, repeatable; a name given twice makes a list."""
    params: dict[str, list[str]] = defaultdict(list)
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ValidationError(f"Parameter {text!r} is malformed: write it as NAME=VALUE.")
        params[name.strip()].append(value)
    return dict(params)


def _secrets(pairs: tuple[str, ...]) -> dict[str, str]:
    secrets: dict[str, str] = {}
    for text in pairs:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            # The text may hold a secret: do not repeat it.
            raise ValidationError("A secret parameter is malformed: write it as NAME=VALUE.")
        secrets[name.strip()] = value
    return secrets


def _document(text: str) -> tuple[str, str | None]:
    name, _, version = text.partition(":")
    return name, version or None


def wait_options(f: F) -> F:
    """--wait-timeout and --unreachable-after: a wait that always ends."""
    f = click.option(
        "--unreachable-after",
        default=None,
        metavar="DURATION",
        help="Stop waiting for a node still Delayed (offline) this long after the send and "
        "report it unreachable; it is not cancelled (default 60s).",
    )(f)
    return click.option(
        "--wait-timeout",
        default=None,
        metavar="DURATION",
        help="Stop waiting after this long (30s, 5m, 1h); the command keeps running "
        "(default: until it ends or only unreachable nodes are left).",
    )(f)


def wait_limits(
    wait_timeout: str | None, unreachable_after: str | None
) -> tuple[float | None, float]:
    """The two limits of a wait, in seconds, from the operator's DURATION texts."""
    from fleetrun.cli.waiting import DEFAULT_UNREACHABLE_AFTER_S

    timeout_s = None if wait_timeout is None else parse_duration(wait_timeout, "Wait timeout")
    after_s = (
        DEFAULT_UNREACHABLE_AFTER_S
        if unreachable_after is None
        else parse_duration(unreachable_after, "Unreachable-after")
    )
    return timeout_s, after_s


@click.command("send")
@click.option("--node", "node_ids", multiple=True, metavar="ID", help="A node id (repeatable).")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Nodes with this tag (repeatable; values of one key are ORed, keys ANDed).",
)
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="FILTER",
    help="tag:KEY=V1,V2 | tag-key:KEY | group:NAME | all (repeatable, ANDed).",
)
@click.option("--group", default=None, metavar="NAME", help="The members of a node group.")
@click.option("--all", "all_nodes", is_flag=True, help="Every node.")
@click.option("--script", default=None, help="A shell script (shorthand for RunShellScript).")
@click.option("--document", default=None, metavar="NAME[:VERSION]", help="A document to run.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A document parameter (repeatable; repeat a name for a list).",
)
@click.option(
    "--arg",
    "args",
    multiple=True,
    metavar="VALUE",
    help="A positional argument for the script (repeatable), passed as argv.",
)
@click.option(
    "--max-concurrency",
    default=None,
    metavar="N|P%",
    help="At most this many nodes at once (default 50).",
)
@click.option(
    "--max-errors",
    default=None,
    metavar="N|P%",
    help="Stop starting new nodes after more errors than this (default 0).",
)
@click.option(
    "--execution-timeout",
    "--timeout",
    "execution_timeout",
    type=int,
    default=None,
    metavar="SECONDS",
    help="Run time allowed per node (default 3600, at most 172800).",
)
@click.option(
    "--delivery-timeout",
    type=int,
    default=None,
    metavar="SECONDS",
    help="A node that has not started by then times out (default 3600, 30-2592000).",
)
@click.option("--run-as", default=None, metavar="USER", help="Run as this user on the nodes.")
@click.option(
    "--secret-param",
    "secret_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A secret environment variable (repeatable): sealed here to each node's key, "
    "never stored in clear, masked as *** in the output.",
)
@click.option("--comment", default=None, help="A note kept with the command (100 characters).")
@click.option("--notify", default=None, metavar="CHANNEL", help="Notify this channel of changes.")
@click.option(
    "--notify-on",
    default=None,
    metavar="STATUSES",
    help="Comma-separated: InProgress, Success, Failed, TimedOut, Cancelled (default all).",
)
@click.option(
    "--notify-type",
    type=click.Choice(["Command", "Invocation"]),
    default=None,
    help="One message per command status change (default), or per node's invocation.",
)
@click.option("--wait", is_flag=True, help="Wait, show progress, then each node's output.")
@wait_options
@api_options
@click.pass_context
def send(
    ctx: click.Context,
    node_ids: tuple[str, ...],
    tags: tuple[str, ...],
    targets: tuple[str, ...],
    group: str | None,
    all_nodes: bool,
    script: str | None,
    document: str | None,
    params: tuple[str, ...],
    args: tuple[str, ...],
    max_concurrency: str | None,
    max_errors: str | None,
    execution_timeout: int | None,
    delivery_timeout: int | None,
    run_as: str | None,
    secret_params: tuple[str, ...],
    comment: str | None,
    notify: str | None,
    notify_on: str | None,
    notify_type: str | None,
    wait: bool,
    wait_timeout: str | None,
    unreachable_after: str | None,
) -> None:
    """Run a script or a document on nodes: print its id, or --wait for the results.

    With --wait: progress, then each node's result and a summary; the wait always ends
    (--wait-timeout, --unreachable-after) and the exit code says how it went."""
    opts = options(ctx)
    if not (node_ids or tags or targets or group or all_nodes):
        raise ValidationError(
            "Say where to run: --node ID, --tag KEY=VALUE, --target tag:KEY=VALUE, --group NAME, "
            "or --all."
        )
    if (script is None) == (document is None):
        raise ValidationError("Give either --script or --document (one of them).")
    if script is not None and not script.strip():
        raise ValidationError("The script is empty: give the commands to run with --script.")
    if not wait and (wait_timeout or unreachable_after):
        raise ValidationError("--wait-timeout and --unreachable-after go with --wait.")
    wait_timeout_s, unreachable_after_s = wait_limits(wait_timeout, unreachable_after)
    name, version = _document(document) if document else ("RunShellScript", None)
    parsed: list[Target] = [parse_target(t) for t in targets]
    client = opts.client()
    command = client.send_command(
        script=script,
        document=name,
        document_version=version,
        parameters=_params(params),
        arguments=list(args),
        node_ids=list(node_ids),
        tags=_tag_targets(tags),
        targets=parsed,
        group=group,
        all_nodes=all_nodes,
        timeout_s=execution_timeout,
        delivery_timeout_s=delivery_timeout,
        max_concurrency=max_concurrency,
        max_errors=max_errors,
        run_as=run_as,
        comment=comment,
        secret_parameters=_secrets(secret_params),
        notification=_notification(notify, notify_on, notify_type),
    )
    if command.target_count == 0:
        # A mistyped tag is the usual cause: say which values the key does have.
        if opts.json:
            render.emit_json(command)
        nodes = [Candidate(n.id, n.tags) for n in client.list_nodes()]
        render.err.print(f"fleetrun: {no_match(command.targets, nodes)}", markup=False)
        ctx.exit(Exit.USAGE)
    if not wait:
        if opts.json:
            return render.emit_json(command)
        render.out.print(command.id)
        render.err.print(
            f"Sent to {command.target_count} node(s). Follow it with: fleetrun commands show "
            f"{command.id}",
            markup=False,
        )
        return
    from fleetrun.cli.waiting import wait_and_report

    # The id first, whatever happens next (stderr: stdout stays the results').
    render.err.print(
        f"Command {command.id} sent to {command.target_count} node(s); waiting "
        "(Ctrl-C stops the wait, not the command).",
        markup=False,
    )
    ctx.exit(
        wait_and_report(
            client,
            command,
            json=opts.json,
            wait_timeout_s=wait_timeout_s,
            unreachable_after_s=unreachable_after_s,
        )
    )


def _notification(
    channel: str | None, statuses: str | None, kind: str | None
) -> dict[str, Any] | None:
    if channel is None:
        if statuses or kind:
            raise ValidationError("--notify-on and --notify-type need --notify CHANNEL.")
        return None
    config: dict[str, Any] = {"channel": channel, "type": kind or "Command"}
    if statuses:
        config["events"] = [s.strip() for s in statuses.split(",") if s.strip()]
    return config


VALUES_SHOWN = 20


def no_match(targets: list[Target], nodes: list[Candidate]) -> str:
    """One sentence for targets that selected no node: for each target that alone
    matches nothing, what the fleet has instead."""
    reasons = []
    for target in targets:
        if target.key == "group":
            if len(targets) == 1:
                reasons.append(f"group {target.values[0]} has no members now")
            continue
        if target.key == "NodeIds" or any(matches(target, n) for n in nodes):
            continue
        if target.key.startswith("tag:"):
            key = target.key[4:]
            wanted = ",".join(target.values)
            have = sorted({n.tags[key] for n in nodes if key in n.tags})
            reasons.append(
                f"no node has {key}={wanted} (the values of {key} are: {_few(have)})"
                if have
                else f"no node has a tag {key} (the tag keys nodes have: "
                f"{_few(sorted({k for n in nodes for k in n.tags})) or 'none'})"
            )
        elif target.key == "tag-key":
            keys = sorted({k for n in nodes for k in n.tags})
            reasons.append(
                f"no node has a tag {' or '.join(target.values)} (the tag keys nodes have: "
                f"{_few(keys) or 'none'})"
            )
    if not nodes:
        reasons = ["there are no nodes you may see (enrol one: fleetrun activations create)"]
    elif not reasons and len(targets) > 1:
        reasons = ["each filter matches some node, but no node matches all of them (ANDed)"]
    detail = "; ".join(reasons) or "check the targets"
    return f"No node matched the targets, so nothing ran: {detail}."


def _few(values: list[str]) -> str:
    shown = ", ".join(values[:VALUES_SHOWN])
    return shown + (f" and {len(values) - VALUES_SHOWN} more" if len(values) > VALUES_SHOWN else "")
