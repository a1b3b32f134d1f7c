"""Which nodes a command names: the target options `send` and `targets preview` share,
nodes by id, by name or by glob (`--node web01`, `--node 'web*'`), and the sentence for
targets that select nothing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

import click

from fleetrun.cli import completion
from fleetrun.cli.base import F, api_options, options
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.core.ids import is_node_id
from fleetrun.core.tags import parse_tag
from fleetrun.core.targets import Candidate, Target, matches, parse_target

if TYPE_CHECKING:
    from fleetrun.schemas.nodes import Node
    from fleetrun.sdk import Client

GLOB = frozenset("*?[")
VALUES_SHOWN = 20


def target_options(f: F) -> F:
    """--node, --tag, --target, --group, --all."""
    for decorator in reversed(
        [
            click.option(
                "--node",
                "nodes",
                multiple=True,
                metavar="ID|NAME|GLOB",
                help="A node by id, name or glob such as 'web*' (repeatable).",
                shell_complete=completion.nodes,
            ),
            click.option(
                "--tag",
                "tags",
                multiple=True,
                metavar="KEY=VALUE",
                help="Nodes with this tag (repeatable; values of one key are ORed, keys ANDed).",
            ),
            click.option(
                "--target",
                "targets",
                multiple=True,
                metavar="FILTER",
                help="tag:KEY=V1,V2 | tag-key:KEY | group:NAME | all (repeatable, ANDed).",
            ),
            click.option("--group", default=None, metavar="NAME", help="The members of a group."),
            click.option("--all", "all_nodes", is_flag=True, help="Every node."),
        ]
    ):
        f = decorator(f)
    return f


def build(
    client: Client,
    *,
    nodes: Sequence[str],
    tags: Sequence[str],
    targets: Sequence[str],
    group: str | None,
    all_nodes: bool,
) -> list[Target]:
    """The targets the options name (names and globs looked up now, as node ids)."""
    if not (nodes or tags or targets or group or all_nodes):
        raise ValidationError(
            "Say where to run: --node ID|NAME, --tag KEY=VALUE, --target tag:KEY=VALUE, "
            "--group NAME, or --all."
        )
    return named(client, nodes=nodes, tags=tags, targets=targets, group=group, all_nodes=all_nodes)


def named(
    client: Client,
    *,
    nodes: Sequence[str] = (),
    tags: Sequence[str] = (),
    targets: Sequence[str] = (),
    group: str | None = None,
    all_nodes: bool = False,
) -> list[Target]:
    """The targets these options name, none when none is given (an alarm's scope)."""
    from fleetrun.sdk.client import build_targets

    parsed = [parse_target(t) for t in targets]
    grouped: dict[str, list[str]] = defaultdict(list)
    for text in tags:
        key, value = parse_tag(text)
        grouped[key].append(value)
    return build_targets(
        node_ids=node_ids(client, nodes),
        tags=dict(grouped),
        targets=parsed,
        group=group,
        all_nodes=all_nodes,
    )


def node_ids(client: Client, values: Sequence[str]) -> list[str]:
    """Node ids for --node values: an id stays as it is (the server says whether it
    exists); a name or a glob is looked up among the nodes the caller may list."""
    found: list[str] = []
    listed: list[Node] | None = None
    for value in values:
        if is_node_id(value):
            found.append(value)
            continue
        if listed is None:
            listed = client.list_nodes()
        found += [n.id for n in by_name(listed, value)]
    return list(dict.fromkeys(found))


def by_name(nodes: Sequence[Node], pattern: str) -> list[Node]:
    """The nodes a name or a glob names; a plain name must name exactly one node."""
    chosen = [n for n in nodes if fnmatchcase(n.name, pattern)]
    if not chosen:
        raise NotFoundError(
            f"No node {pattern} exists: no node id or name matches it; list nodes with "
            "`fleetrun nodes list`."
        )
    if len(chosen) > 1 and not GLOB & set(pattern):
        ids = ", ".join(n.id for n in chosen[:VALUES_SHOWN])
        raise ValidationError(
            f"{len(chosen)} nodes are named {pattern} ({ids}): give the id of the one you "
            f"mean, or a glob such as '{pattern}*' for all of them."
        )
    return chosen


def node_id(client: Client, value: str) -> str:
    """The id of one node named by id or by name (`nodes show NAME`)."""
    if is_node_id(value):
        return value
    chosen = by_name(client.list_nodes(), value)
    if len(chosen) > 1:
        raise ValidationError(f"{value} names {len(chosen)} nodes: give one name or id.")
    return chosen[0].id


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
        keys = _few(sorted({k for n in nodes for k in n.tags})) or "none"
        if target.key.startswith("tag:"):
            key = target.key[4:]
            wanted = ",".join(target.values)
            have = sorted({n.tags[key] for n in nodes if key in n.tags})
            reasons.append(
                f"no node has {key}={wanted} (the values of {key} are: {_few(have)})"
                if have
                else f"no node has a tag {key} (the tag keys nodes have: {keys})"
            )
        elif target.key == "tag-key":
            wanted = " or ".join(target.values)
            reasons.append(f"no node has a tag {wanted} (the tag keys nodes have: {keys})")
    if not nodes:
        reasons = ["there are no nodes you may see (enrol one: fleetrun activations create)"]
    elif not reasons and len(targets) > 1:
        reasons = ["each filter matches some node, but no node matches all of them (ANDed)"]
    detail = "; ".join(reasons) or "check the targets"
    return f"No node matched the targets, so nothing ran: {detail}."


def explain_no_match(client: Client, targets: list[Target]) -> str:
    return no_match(targets, [Candidate(n.id, n.tags) for n in client.list_nodes()])


def _few(values: list[str]) -> str:
    shown = ", ".join(values[:VALUES_SHOWN])
    more = len(values) - VALUES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


@click.group("targets")
@api_options
def targets_group() -> None:
    """Targets: see which nodes a target selects before sending to it."""


@targets_group.command("preview")
@target_options
@api_options
@click.pass_context
def preview(
    ctx: click.Context,
    nodes: tuple[str, ...],
    tags: tuple[str, ...],
    targets: tuple[str, ...],
    group: str | None,
    all_nodes: bool,
) -> None:
    """List the nodes these targets select now (as `send` would), sending nothing."""
    from fleetrun.cli import render
    from fleetrun.cli.exits import Exit

    opts = options(ctx)
    client = opts.client()
    chosen = build(
        client, nodes=nodes, tags=tags, targets=targets, group=group, all_nodes=all_nodes
    )
    selected = client.resolve_targets(chosen)
    if opts.json:
        render.emit_json([{"id": n.id, "name": n.name} for n in selected])
    elif selected:
        render.table(["ID", "NAME"], ([n.id, n.name] for n in selected), empty="")
        render.err.print(f"{len(selected)} node(s) selected.", markup=False)
    if not selected:
        message = explain_no_match(client, chosen).replace(", so nothing ran", "")
        render.err.print(f"fleetrun: {message}", markup=False)
        ctx.exit(Exit.USAGE)
