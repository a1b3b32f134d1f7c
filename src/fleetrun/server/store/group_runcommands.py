"""Run commands on a node group: one run command of the same name on every member, and
on nodes that join later (a tag group follows tags).

The group row keeps the public definition; each member's run command is an ordinary
one (`runcommands.put_run_command`) that remembers its group, so every member runs,
re-runs on a change and reports exactly as a single node would. `sync` puts the run
command on members that joined since: a node joins groups only when it registers
(its tags are fixed then), so registration calls it, as do creating a group (one made
again under an old name) and server start. Members that leave keep theirs until it is
removed.

A node that joins is decided as the group run command's author (the principal who put
it, from the address it put it from), at the moment it joins, exactly as the author's
PUT would be decided on it (`Admit`, given by the server's access layer, which also
audits the decision): a node the author may not touch gets the run command with a run
that ends Failed, its message saying AccessDenied and why, and runs nothing.

Protected parameters are sealed to each member's key at the PUT; a node that joins
later cannot receive them (the server never keeps them in clear), so its run ends
Failed with a message that says to PUT the group run command again.
"""

from __future__ import annotations

import logging
import secrets as random
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import runcommands as core
from fleetrun.core.errors import FleetrunError, NotFoundError
from fleetrun.schemas import runcommands as schemas
from fleetrun.server.store import groups as group_store
from fleetrun.server.store import runcommands as rc_store
from fleetrun.server.store.tables import GroupRunCommand, NodeGroup, RunCommand, utcnow

log = logging.getLogger(__name__)

# Whether the author of a group run command may put it on a node that joins the group
# now: None, or the sentence saying why not.
Admit = Callable[[Session, GroupRunCommand, str], str | None]


def put_group_run_command(
    session: Session,
    group_name: str,
    name: str,
    body: schemas.RunCommandPut,
    *,
    principal: str | None,
    source_ip: str | None,
    allow: Callable[[list[str]], None],
) -> tuple[GroupRunCommand, rc_store.Notify]:
    """Put it on every member now (`allow` decides the caller on the members first)."""
    group = group_store.read_group(session, group_name)
    rc_store.check_body(session, name, body)
    members = group_store.members(session, group)
    allow(members)
    grc = session.get(GroupRunCommand, (group.name, name))
    now = utcnow()
    if grc is None:
        grc = GroupRunCommand(
            group_name=group.name, name=name, salt=random.token_hex(16), created_at=now
        )
        session.add(grc)
    grc.spec = body.model_dump(mode="json", exclude={"protectedParameters", "runAsPassword"})
    grc.has_secrets = bool(body.protectedParameters or body.runAsPassword)
    grc.fingerprint = core.fingerprint(body.model_dump(mode="json"), grc.salt)
    grc.principal = principal
    grc.source_ip = source_ip
    grc.updated_at = now
    notify: rc_store.Notify = []
    for node_id in members:
        put = rc_store.put_run_command(
            session, node_id, name, body, principal=principal, group_name=group.name, checked=True
        )
        notify += put.notify
    session.flush()
    return grc, notify


def sync(session: Session, admit: Admit) -> bool:
    """Put group run commands on members that do not have them yet (each decided by
    `admit`); whether any was."""
    rows = list(session.execute(select(GroupRunCommand)).scalars())
    added = False
    for grc in rows:
        group = session.get(NodeGroup, grc.group_name)
        if group is None:
            continue  # the group was deleted: its members keep what they had
        have = set(
            session.execute(
                select(RunCommand.node_id).where(
                    RunCommand.group_name == grc.group_name, RunCommand.name == grc.name
                )
            ).scalars()
        )
        for node_id in group_store.members(session, group):
            if node_id not in have:
                added = _join(session, grc, node_id, admit) or added
    return added


def _join(session: Session, grc: GroupRunCommand, node_id: str, admit: Admit) -> bool:
    hold = admit(session, grc, node_id)
    if hold is None and grc.has_secrets:
        hold = (
            f"This node joined group {grc.group_name} after its protected parameters were "
            "sealed to the members of the time: put the group run command again to seal "
            "them to it."
        )
    try:
        rc_store.put_run_command(
            session,
            node_id,
            grc.name,
            schemas.RunCommandPut.model_validate(grc.spec),
            principal=grc.principal,
            group_name=grc.group_name,
            hold=hold,
        )
    except FleetrunError as exc:  # e.g. the node has 25 already: try again next sweep
        log.info(
            "group run command %s/%s not put on %s: %s", grc.group_name, grc.name, node_id, exc
        )
        return False
    return True


def read_group_run_command(session: Session, group_name: str, name: str) -> GroupRunCommand:
    """Found even when the node group itself was deleted since, so it can be removed."""
    grc = session.get(GroupRunCommand, (group_name, name))
    if grc is None:
        group_store.read_group(session, group_name)  # an unknown group: say that
        raise NotFoundError(f"Group {group_name} has no run command {name!r}.")
    return grc


def read_group_run_commands(session: Session, group_name: str) -> list[GroupRunCommand]:
    rows = list(
        session.execute(
            select(GroupRunCommand)
            .where(GroupRunCommand.group_name == group_name)
            .order_by(GroupRunCommand.name)
        ).scalars()
    )
    if not rows:
        group_store.read_group(session, group_name)  # an unknown group: say that
    return rows


def rerun(session: Session, grc: GroupRunCommand) -> rc_store.Notify:
    """Run it again, unchanged, on every member."""
    notify: rc_store.Notify = []
    for rc in members_of(session, grc):
        _, stopped = rc_store.rerun(session, rc.node_id, rc.name)
        notify += stopped
    grc.updated_at = utcnow()
    return notify


def owner(session: Session, rc: RunCommand) -> GroupRunCommand | None:
    """The group run command a node's run command belongs to, while it lives."""
    if rc.group_name is None:
        return None
    return session.get(GroupRunCommand, (rc.group_name, rc.name))


def members_of(session: Session, grc: GroupRunCommand) -> list[RunCommand]:
    return list(
        session.execute(
            select(RunCommand)
            .where(RunCommand.group_name == grc.group_name, RunCommand.name == grc.name)
            .order_by(RunCommand.node_id)
        ).scalars()
    )


def delete_group_run_command(
    session: Session, group_name: str, name: str
) -> tuple[GroupRunCommand, rc_store.Notify]:
    """Stop and remove it on every member, then the group's definition."""
    grc = read_group_run_command(session, group_name, name)
    notify: rc_store.Notify = []
    for rc in members_of(session, grc):
        _, stopped = rc_store.delete_run_command(session, rc.node_id, rc.name)
        notify += stopped
    session.delete(grc)
    session.flush()
    return grc, notify


def to_schema(
    session: Session, grc: GroupRunCommand, instances: list[schemas.RunCommand]
) -> schemas.GroupRunCommand:
    spec = grc.spec
    summary = schemas.GroupRunCommandSummary(total=len(instances))
    for view in instances:
        state = view.instanceView.executionState
        if state == "Succeeded":
            summary.succeeded += 1
        elif state in ("Failed", "TimedOut"):
            summary.failed += 1
        elif state == "Running":
            summary.running += 1
        elif state == "Canceled":
            summary.canceled += 1
        else:
            summary.pending += 1
    states = {v.provisioningState for v in instances}
    provisioning = next(
        (s for s in ("Failed", "Deleting", "Creating", "Updating") if s in states), "Succeeded"
    )
    return schemas.GroupRunCommand(
        groupName=grc.group_name,
        name=grc.name,
        source=rc_store.shown_source(spec),
        parameters=[schemas.RunCommandParameter(**p) for p in spec.get("parameters") or []],
        runAsUser=spec.get("runAsUser"),
        timeoutInSeconds=spec.get("timeoutInSeconds") or core.DEFAULT_TIMEOUT_S,
        asyncExecution=bool(spec.get("asyncExecution")),
        treatFailureAsDeploymentFailure=bool(spec.get("treatFailureAsDeploymentFailure")),
        runAfter=list(spec.get("runAfter") or []),
        provisioningState=provisioning,
        summary=summary,
        instances=instances,
        createdAt=grc.created_at,
        updatedAt=grc.updated_at,
    )
