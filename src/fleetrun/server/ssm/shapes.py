"""fleetrun's commands and invocations in SSM's response shapes (`Command`,
`CommandInvocation`, `CommandPlugin`, `GetCommandInvocationResult`), with AWS's
conventions: empty strings and empty structures where a member is unset, epoch numbers
for timestamp members and ISO-8601 strings where SSM types a date as a string.

Output is the head of each stream, as SSM returns it (stdout up to 24,000 characters,
stderr up to 8,000, a plugin's Output up to 2,500), read from the output store when the
stream is longer than the tail the database keeps.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from fleetrun.core import ssm, ssmnames
from fleetrun.core.targets import Target
from fleetrun.schemas import commands as schemas
from fleetrun.schemas.events import Notification
from fleetrun.server.output import OutputStore, stream_key
from fleetrun.server.ssm.s3output import Destination, Where
from fleetrun.server.store.tables import Command, Invocation, InvocationStep

NO_CLOUDWATCH = {"CloudWatchLogGroupName": "", "CloudWatchOutputEnabled": False}
NO_NOTIFICATION: dict[str, Any] = {
    "NotificationArn": "",
    "NotificationEvents": [],
    "NotificationType": "",
}


def command(c: schemas.Command, where: Where | None = None) -> dict[str, Any]:
    """SSM's `Command` for a fleetrun command (`where`: its S3 output destination)."""
    instance_ids, targets = _targets(c.targets)
    return {
        "CommandId": c.id,
        "DocumentName": ssmnames.document_name(c.document_name),
        "DocumentVersion": c.document_version or "",
        "Comment": c.comment or "",
        "ExpiresAfter": ssm.epoch(c.expires_at),
        "Parameters": c.parameters,
        "InstanceIds": instance_ids,
        "Targets": targets,
        "RequestedDateTime": ssm.epoch(c.requested_at),
        "Status": ssm.command_status(c.status),
        "StatusDetails": ssm.status_details(c.status, c.status_detail),
        "OutputS3Region": "",
        "OutputS3BucketName": where.bucket if where else "",
        "OutputS3KeyPrefix": where.prefix if where else "",
        "MaxConcurrency": c.max_concurrency or "50",
        "MaxErrors": c.max_errors or "0",
        "TargetCount": c.target_count,
        "CompletedCount": c.completed_count,
        "ErrorCount": c.error_count,
        "DeliveryTimedOutCount": c.delivery_timed_out_count,
        "ServiceRole": "",
        "NotificationConfig": notification(c.notification),
        "CloudWatchOutputConfig": NO_CLOUDWATCH,
        "TimeoutSeconds": c.delivery_timeout_s or schemas.DEFAULT_DELIVERY_TIMEOUT_S,
    }


def notification(config: Notification | None) -> dict[str, Any]:
    """A command's notification as SSM's NotificationConfig: the channel's name in
    NotificationArn (a channel is fleetrun's SNS topic)."""
    if config is None:
        return NO_NOTIFICATION
    return {
        "NotificationArn": config.channel,
        "NotificationEvents": list(config.events),
        "NotificationType": config.type,
    }


def _targets(targets: list[Target]) -> tuple[list[str], list[dict[str, Any]]]:
    """(InstanceIds, Targets): a command sent to named nodes only lists them as
    InstanceIds, as SSM does; any other keeps its targets, in SSM's keys."""
    if len(targets) == 1 and targets[0].key == "NodeIds":
        return list(targets[0].values), []
    keys = {"NodeIds": "InstanceIds", "group": "resource-groups:Name", "all": "InstanceIds"}
    return [], [{"Key": keys.get(t.key, t.key), "Values": list(t.values)} for t in targets]


# -- invocations ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    """One step of an invocation as SSM shows a plugin, its output heads read."""

    name: str
    status: str
    exit_code: int | None
    started_at: Any
    ended_at: Any
    stdout: str
    stderr: str


async def step_views(
    output: OutputStore, inv: Invocation, steps: list[InvocationStep], plan: list[dict[str, Any]]
) -> list[StepView]:
    """Every step the command planned (those not started yet: Pending, no output)."""
    by_idx = {s.idx: s for s in steps}
    views = []
    for idx in range(max(len(plan), max(by_idx, default=-1) + 1)):
        row = by_idx.get(idx)
        spec = plan[idx] if idx < len(plan) else {}
        if row is None:
            name = spec.get("name", f"step{idx}")
            views.append(StepView(name, "Pending", None, None, None, "", ""))
            continue
        stdout = await _head(output, inv, row, "stdout", ssm.MAX_STDOUT_CHARS)
        stderr = await _head(output, inv, row, "stderr", ssm.MAX_STDERR_CHARS)
        views.append(
            StepView(
                row.name, row.status, row.exit_code, row.started_at, row.ended_at, stdout, stderr
            )
        )
    return views


async def _head(
    output: OutputStore, inv: Invocation, step: InvocationStep, stream: str, chars: int
) -> str:
    """The first `chars` characters of a step's stream (TRUNCATED at the end when it
    is longer): the kept tail when it is the whole stream, else read from the store."""
    total = step.stdout_bytes if stream == "stdout" else step.stderr_bytes
    tail = step.stdout_tail if stream == "stdout" else step.stderr_tail
    if total <= len(tail):
        data = bytes(tail)
    else:
        key = stream_key(inv.command_id, inv.node_id, step.idx, stream)
        want = min(total, chars * 4)  # room for the widest UTF-8 characters
        data = b"".join([chunk async for chunk in output.read(key, 0, want)])
    cut = total > len(data)
    text = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data, final=not cut)
    return ssm.truncate(text, chars, cut=cut)


def plugin(view: StepView, inv: Invocation, s3: Destination | None) -> dict[str, Any]:
    """SSM's `CommandPlugin` for a step."""
    return {
        "Name": ssm.plugin_name(view.name),
        "Status": ssm.plugin_status(view.status),
        "StatusDetails": ssm.status_details(ssm.plugin_status(view.status), None),
        "ResponseCode": -1 if view.exit_code is None else view.exit_code,
        "ResponseStartDateTime": ssm.epoch(view.started_at),
        "ResponseFinishDateTime": ssm.epoch(view.ended_at),
        "Output": ssm.plugin_output(view.stdout, view.stderr),
        "StandardOutputUrl": _url(s3, inv, [view], "stdout"),
        "StandardErrorUrl": _url(s3, inv, [view], "stderr"),
        "OutputS3Region": s3.settings.s3_region if s3 else "",
        "OutputS3BucketName": s3.where.bucket if s3 else "",
        "OutputS3KeyPrefix": s3.where.prefix if s3 else "",
    }


def _url(s3: Destination | None, inv: Invocation, views: list[StepView], stream: str) -> str:
    """Where the stream's whole text is in S3: SSM fills it in only when the command
    has one plugin (and a bucket)."""
    if s3 is None or len(views) != 1:
        return ""
    return s3.url(inv.command_id, inv.node_id, views[0].name, stream)


def invocation(
    c: Command, inv: Invocation, views: list[StepView] | None, s3: Destination | None = None
) -> dict[str, Any]:
    """SSM's `CommandInvocation`; its plugins only when `views` are given (Details)."""
    return {
        "CommandId": c.id,
        "InstanceId": inv.node_id,
        "InstanceName": inv.node_name or "",
        "Comment": c.comment or "",
        "DocumentName": ssmnames.document_name(c.document_name),
        "DocumentVersion": c.document_version or "",
        "RequestedDateTime": ssm.epoch(inv.requested_at),
        "Status": ssm.invocation_status(inv.status),
        "StatusDetails": ssm.status_details(inv.status, inv.status_detail),
        "TraceOutput": ssm.truncate(inv.message or "", ssm.MAX_TRACE_CHARS),
        "StandardOutputUrl": _url(s3, inv, _planned(c), "stdout"),
        "StandardErrorUrl": _url(s3, inv, _planned(c), "stderr"),
        "CommandPlugins": [plugin(v, inv, s3) for v in views or []],
        "ServiceRole": "",
        "NotificationConfig": notification(
            Notification(**c.notification) if c.notification else None
        ),
        "CloudWatchOutputConfig": NO_CLOUDWATCH,
    }


def _planned(c: Command) -> list[StepView]:
    return [StepView(step.get("name", ""), "Pending", None, None, None, "", "") for step in c.steps]


def command_invocation(
    c: Command,
    inv: Invocation,
    views: list[StepView],
    plugin_name: str | None,
    s3: Destination | None = None,
) -> dict[str, Any]:
    """GetCommandInvocation's result: one plugin's, or (no PluginName) the whole
    invocation's, with the outputs of its steps in order."""
    chosen = [v for v in views if plugin_name in (None, v.name, ssm.plugin_name(v.name))]
    if plugin_name is None:
        status = ssm.invocation_status(inv.status)
        details = ssm.status_details(inv.status, inv.status_detail)
        code = inv.exit_code
        start, end = inv.started_at, inv.ended_at
        name = ssm.plugin_name(views[0].name) if views else ""
    else:
        view = chosen[0]
        status = ssm.plugin_status(view.status)
        details = ssm.status_details(status, None)
        code, start, end, name = view.exit_code, view.started_at, view.ended_at, plugin_name
    stdout = "".join(v.stdout for v in chosen)
    stderr = "".join(v.stderr for v in chosen)
    return {
        "CommandId": c.id,
        "InstanceId": inv.node_id,
        "Comment": c.comment or "",
        "DocumentName": ssmnames.document_name(c.document_name),
        "DocumentVersion": c.document_version or "",
        "PluginName": name,
        "ResponseCode": -1 if code is None else code,
        "ExecutionStartDateTime": ssm.iso(start),
        "ExecutionElapsedTime": ssm.iso_duration(start, end),
        "ExecutionEndDateTime": ssm.iso(end),
        "Status": status,
        "StatusDetails": details,
        "StandardOutputContent": ssm.truncate(stdout, ssm.MAX_STDOUT_CHARS),
        "StandardOutputUrl": _url(s3, inv, chosen, "stdout"),
        "StandardErrorContent": ssm.truncate(stderr, ssm.MAX_STDERR_CHARS),
        "StandardErrorUrl": _url(s3, inv, chosen, "stderr"),
        "CloudWatchOutputConfig": NO_CLOUDWATCH,
    }
