"""SendCommand's request in fleetrun's terms: a `CommandCreate` for the engine.

    InstanceIds, Targets       NodeIds; tag:KEY, tag-key; InstanceIds; resource-groups:Name -> group
    DocumentName               AWS-<name> -> the built-in <name> (core/ssmnames.py)
    DocumentHash (Sha256)      must be the document version's hash, else InvalidDocument
    Parameters                 as given; executionTimeout -> the execution timeout (when
                               the document does not declare it itself)
    TimeoutSeconds             the delivery deadline
    MaxConcurrency, MaxErrors  as given (SSM's patterns are fleetrun's)
    NotificationConfig         the channel named by NotificationArn (its last `:` part)
    OutputS3BucketName, Prefix the output copied there when each invocation ends
                               (server/ssm/s3output.py); refused without an S3 store
    CloudWatchOutputConfig     accepted; fleetrun has no log groups (docs/ssm-compat.md)

Errors are SSM's: InvalidInstanceId, DuplicateInstanceId, InvalidDocument,
InvalidDocumentVersion, InvalidParameters, InvalidNotificationConfig,
InvalidOutputFolder; malformed members ValidationException.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fleetrun.core import ratecontrol, ssm, ssmnames
from fleetrun.core.errors import NotFoundError, ValidationError
from fleetrun.core.events import NOTIFY_STATUSES
from fleetrun.core.ids import is_node_id
from fleetrun.core.targets import MAX_TARGETS, MAX_VALUES, Target
from fleetrun.schemas import commands as schemas
from fleetrun.schemas.events import Notification
from fleetrun.server.authz import Caller
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.ssm.base import (
    SsmError,
    integer,
    string,
    string_lists,
    strings,
    structure,
    structures,
    validation,
)
from fleetrun.server.store import commands as command_store
from fleetrun.server.store import documents as document_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.tables import Command, CommandOutputS3

EXECUTION_TIMEOUT = "executionTimeout"


@dataclass(frozen=True)
class Wanted:
    """A SendCommand request, read and checked for form."""

    document: str  # fleetrun's name
    version: str | None
    parameters: dict[str, list[str]]
    targets: list[Target]
    node_ids: list[str]  # named ones, which must exist
    comment: str | None
    delivery_timeout_s: int | None
    max_concurrency: str | None
    max_errors: str | None
    notification: Notification | None
    output_bucket: str | None
    output_prefix: str
    document_hash: str | None  # the Sha256 the caller expects the document to have


def translate(body: Mapping[str, Any]) -> Wanted:
    name = string(body, "DocumentName", required=True, min_length=3, max_length=128) or ""
    _refuse_unsupported(body)
    output_bucket = string(body, "OutputS3BucketName")
    output_prefix = string(body, "OutputS3KeyPrefix", max_length=500) or ""
    string(body, "OutputS3Region")  # deprecated in SSM too: the store's region is used
    structure(body, "CloudWatchOutputConfig")  # accepted: fleetrun keeps output itself
    targets, node_ids = _targets(body)
    return Wanted(
        document=ssmnames.fleetrun_document(name),
        version=string(body, "DocumentVersion") or None,
        parameters=string_lists(body, "Parameters"),
        targets=targets,
        node_ids=node_ids,
        comment=string(body, "Comment", max_length=100),
        delivery_timeout_s=integer(
            body,
            "TimeoutSeconds",
            low=schemas.MIN_DELIVERY_TIMEOUT_S,
            high=schemas.MAX_DELIVERY_TIMEOUT_S,
        ),
        max_concurrency=_rate(body, "MaxConcurrency", ratecontrol.check_concurrency),
        max_errors=_rate(body, "MaxErrors", ratecontrol.check_errors),
        notification=_notification(structure(body, "NotificationConfig")),
        output_bucket=output_bucket or None,
        output_prefix=output_prefix,
        document_hash=_document_hash(body),
    )


def _document_hash(body: Mapping[str, Any]) -> str | None:
    value = string(body, "DocumentHash", max_length=256)
    kind = string(body, "DocumentHashType") or "Sha256"
    if kind != "Sha256":
        raise validation(
            f"DocumentHashType {kind} is not supported: fleetrun hashes documents with "
            "Sha256 (DescribeDocument's Hash)."
        )
    return value.lower() if value else None


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    if body.get("AlarmConfiguration"):
        raise validation(
            "AlarmConfiguration is not supported: fleetrun has no CloudWatch alarms to gate "
            "a command on; send it without one (docs/ssm-compat.md)."
        )


def _rate(body: Mapping[str, Any], name: str, check: Any) -> str | None:
    value = string(body, name, min_length=1, max_length=7)
    if value is None:
        return None
    try:
        checked: str = check(value)
    except ValidationError as exc:
        raise validation(exc.message) from exc
    return checked


def _targets(body: Mapping[str, Any]) -> tuple[list[Target], list[str]]:
    ids = strings(body, "InstanceIds", max_items=MAX_VALUES)
    given = structures(body, "Targets", max_items=MAX_TARGETS)
    if ids and given:
        raise validation("Give InstanceIds or Targets, not both.")
    if not ids and not given:
        raise validation("SendCommand needs InstanceIds or Targets: which nodes to run on.")
    if ids:
        return [Target(key="NodeIds", values=_instance_ids(ids))], ids
    targets = [_target(t) for t in given]
    named = [v for t in targets if t.key == "NodeIds" for v in t.values]
    return targets, named


def _instance_ids(ids: list[str]) -> list[str]:
    wrong = [i for i in ids if not is_node_id(i)]
    if wrong:
        raise SsmError(
            "InvalidInstanceId",
            f"Instances {wrong} are not fleetrun node ids: node ids look like "
            "n-0123456789abcdef0 (see DescribeInstanceInformation).",
        )
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            raise SsmError("DuplicateInstanceId", f"Instance {node_id} is named twice.")
        seen.add(node_id)
    return ids


def _target(target: Mapping[str, Any]) -> Target:
    key = string(target, "Key", required=True, min_length=1, max_length=163) or ""
    values = strings(target, "Values", max_items=MAX_VALUES)
    if key.lower() == "instanceids":
        return Target(key="NodeIds", values=_instance_ids(values))
    if key.startswith("tag:") or key == "tag-key":
        if not values:
            raise validation(f"Target {key} needs at least one value.")
        return Target(key=key, values=values)
    if key == "resource-groups:Name":
        if len(values) != 1:
            raise validation("Target resource-groups:Name takes exactly one group name.")
        return Target(key="group", values=values)
    raise validation(
        f"Target key {key!r} is not one fleetrun serves: use InstanceIds, tag:KEY, tag-key "
        "or resource-groups:Name (a fleetrun node group)."
    )


def _notification(config: dict[str, Any] | None) -> Notification | None:
    if config is None:
        return None
    arn = string(config, "NotificationArn") or ""
    if not arn:
        return None
    events = strings(config, "NotificationEvents")
    kind = string(config, "NotificationType") or "Command"
    wanted = list(NOTIFY_STATUSES) if not events or "All" in events else events
    wrong = [e for e in wanted if e not in NOTIFY_STATUSES]
    if wrong or kind not in ("Command", "Invocation"):
        raise SsmError(
            "InvalidNotificationConfig",
            f"NotificationEvents {wrong} or NotificationType {kind!r} is not valid: events are "
            f"All, {', '.join(NOTIFY_STATUSES)}; the type Command or Invocation.",
        )
    channel = arn.rsplit(":", 1)[-1]  # arn:aws:sns:REGION:ACCOUNT:NAME, or just NAME
    return Notification(channel=channel, events=wanted, type=kind)


# -- in the transaction --------------------------------------------------------------


def check(session: Session, wanted: Wanted, *, s3_enabled: bool) -> document_store.Resolved:
    """What SSM answers with its own codes, decided before the engine runs: the
    document and version, the named nodes, the notification's channel, S3 output
    (`s3_enabled`: the server has an S3 store). The document, found."""
    try:
        doc = document_store.resolve(session, wanted.document, wanted.version)
    except NotFoundError as exc:
        if wanted.version is not None and _exists(session, wanted.document):
            raise SsmError("InvalidDocumentVersion", exc.message) from exc
        raise SsmError("InvalidDocument", exc.message) from exc
    if wanted.document_hash is not None and wanted.document_hash != doc.hash:
        raise SsmError(
            "InvalidDocument",
            f"DocumentHash {wanted.document_hash} is not the hash of document "
            f"{ssmnames.document_name(wanted.document)} (version {doc.version or '1'}): it changed "
            "since the hash was read; read it again with DescribeDocument.",
        )
    if wanted.node_ids:
        try:
            node_store.read_nodes_by_ids(session, wanted.node_ids)
        except NotFoundError as exc:
            raise SsmError("InvalidInstanceId", exc.message) from exc
    if wanted.notification and not command_store.channel_exists(
        session, wanted.notification.channel
    ):
        raise SsmError(
            "InvalidNotificationConfig",
            f"No channel {wanted.notification.channel!r} exists to notify: NotificationArn "
            "names a fleetrun channel (`fleetrun channels list`).",
        )
    if wanted.output_bucket and not s3_enabled:
        raise SsmError(
            "InvalidOutputFolder",
            f"Output to S3 bucket {wanted.output_bucket!r} is not available: this server has "
            "no S3 store configured (FLEETRUN_S3_ACCESS_KEY_ID and _SECRET_ACCESS_KEY, "
            "docs/ssm-compat.md). fleetrun keeps every command's full output itself "
            "(StandardOutputContent, `fleetrun invocations show --full`); send without "
            "OutputS3BucketName.",
        )
    if wanted.output_bucket and not ssm.is_bucket_name(wanted.output_bucket):
        raise SsmError(
            "InvalidOutputFolder",
            f"{wanted.output_bucket!r} is not an S3 bucket name: 3 to 63 lowercase letters, "
            "digits, dots and hyphens.",
        )
    return doc


def _exists(session: Session, name: str) -> bool:
    try:
        document_store.resolve(session, name, None)
    except NotFoundError:
        return False
    return True


def send(
    session: Session,
    wanted: Wanted,
    doc: document_store.Resolved,
    caller: Caller,
    now: datetime,
) -> Command:
    """The engine's SendCommand of `doc` (what `check` found), as the caller; what it
    refuses about parameters and scripts is InvalidParameters."""
    parameters = dict(wanted.parameters)
    execution_s = None
    declared = doc.content.get("parameters") or {}
    if EXECUTION_TIMEOUT in parameters and EXECUTION_TIMEOUT not in declared:
        execution_s = _execution_timeout(parameters.pop(EXECUTION_TIMEOUT))
    body = schemas.CommandCreate(
        document_name=wanted.document,
        document_version=wanted.version,
        parameters=parameters,
        targets=wanted.targets,
        comment=wanted.comment,
        execution_timeout_s=execution_s,
        delivery_timeout_s=wanted.delivery_timeout_s,
        max_concurrency=wanted.max_concurrency,
        max_errors=wanted.max_errors,
        notification=wanted.notification,
    )
    try:
        command = engine_commands.send_command(
            session, body, principal=caller.principal, caller=caller, now=now
        )
    except ValidationError as exc:
        raise SsmError("InvalidParameters", exc.message) from exc
    if wanted.output_bucket:
        session.add(
            CommandOutputS3(
                command_id=command.id,
                bucket=wanted.output_bucket,
                key_prefix=wanted.output_prefix,
            )
        )
    return command


def _execution_timeout(values: list[str]) -> int:
    """`executionTimeout`: seconds, 1 to 172800, as AWS-RunShellScript takes it."""
    text = values[0] if len(values) == 1 else ""
    if not text.isdigit() or not (
        schemas.MIN_EXECUTION_TIMEOUT_S <= int(text) <= schemas.MAX_EXECUTION_TIMEOUT_S
    ):
        raise SsmError(
            "InvalidParameters",
            f"Parameter executionTimeout {values} is not valid: give one value, a number of "
            f"seconds from 1 to {schemas.MAX_EXECUTION_TIMEOUT_S}.",
        )
    return int(text)
