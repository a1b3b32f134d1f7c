"""The schema. One table per resource; Alembic migrations in migrations/ build it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    principal: Mapped[str] = mapped_column(String(128), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    # An AWS-style access key (SigV4, the SSM-compatible API): its id, and its secret
    # sealed with the server's key (it must be read back to check signatures). Such a
    # row's token_hash is of a secret nobody was given: it is no bearer token.
    access_key_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    secret_sealed: Mapped[str | None] = mapped_column(Text)


class Principal(Base):
    """A user or service account: what tokens authenticate as, what policies attach to."""

    __tablename__ = "principals"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # user or service
    description: Mapped[str | None] = mapped_column(String(256))
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Policy(Base):
    """A custom policy: its document kept as the operator wrote it (built-in policies
    live in code, in fleetrun.core.access)."""

    __tablename__ = "policies"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(256))
    document: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Role(Base):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RolePolicy(Base):
    """A policy of a role, by name (custom or built-in)."""

    __tablename__ = "role_policies"

    role: Mapped[str] = mapped_column(
        String(128), ForeignKey("roles.name", ondelete="CASCADE"), primary_key=True
    )
    policy: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Attachment(Base):
    """A policy or a role attached to a principal, by name."""

    __tablename__ = "principal_attachments"
    __table_args__ = (Index("ix_principal_attachments_kind_name", "kind", "name"),)

    principal: Mapped[str] = mapped_column(
        String(64), ForeignKey("principals.name", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # policy or role
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    attached_at: Mapped[datetime]


class AuditRecord(Base):
    """One audited event: an API request, a decision, an agent session. Append-only:
    the database refuses UPDATE and DELETE, and the hash chain shows what got past."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))  # request, decision, agent
    principal: Mapped[str | None] = mapped_column(String(64), index=True)
    action: Mapped[str | None] = mapped_column(String(128), index=True)
    resource: Mapped[str | None] = mapped_column(String(512))
    decision: Mapped[str | None] = mapped_column(String(8))  # allow, deny
    source_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(8))
    path: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest record's number and hash, kept apart (one row): the writer locks it
    to extend the chain, and `verify` compares the chain's end with it."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class Activation(Base):
    __tablename__ = "activations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(256))
    tags: Mapped[dict[str, Any]]
    registration_limit: Mapped[int] = mapped_column(Integer)
    registrations_count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]
    iam_role: Mapped[str | None] = mapped_column(String(64))  # SSM's IamRole, a label


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    hostname: Mapped[str | None] = mapped_column(String(256))
    platform: Mapped[str | None] = mapped_column(String(64))
    platform_version: Mapped[str | None] = mapped_column(String(256))
    architecture: Mapped[str | None] = mapped_column(String(64))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(128))
    seal_public_key: Mapped[str | None] = mapped_column(String(128))
    activation_id: Mapped[str | None] = mapped_column(String(36))
    ping_status: Mapped[str] = mapped_column(String(32))
    last_ping_at: Mapped[datetime | None]
    registered_at: Mapped[datetime]
    session_id: Mapped[str | None] = mapped_column(String(64))
    replica_id: Mapped[str | None] = mapped_column(String(36))  # the replica holding it
    facts: Mapped[dict[str, Any]]
    local_config: Mapped[dict[str, Any]]
    deleted_at: Mapped[datetime | None]


class Replica(Base):
    """A server process holding agents' sessions, for as long as it renews its lease:
    once the lease runs out, any replica marks the nodes it held ConnectionLost."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    started_at: Mapped[datetime]
    lease_until: Mapped[datetime]


class NodeTag(Base):
    __tablename__ = "node_tags"
    __table_args__ = (Index("ix_node_tags_key_value", "key", "value"),)

    node_id: Mapped[str] = mapped_column(
        String(20), ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class Command(Base):
    __tablename__ = "commands"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    document_name: Mapped[str] = mapped_column(String(128), index=True)
    document_version: Mapped[str | None] = mapped_column(String(32))
    parameters: Mapped[dict[str, Any]]
    targets: Mapped[list[Any]]
    steps: Mapped[list[Any]]  # the resolved steps every invocation runs
    comment: Mapped[str | None] = mapped_column(String(100))
    principal: Mapped[str | None] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(index=True)
    expires_at: Mapped[datetime | None]
    document_hash: Mapped[str | None] = mapped_column(String(64))
    # What was sent, as it was: nodes that require signed documents verify it.
    document_content: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    document_signatures: Mapped[list[Any]] = mapped_column(JSON, default=list)
    arguments: Mapped[list[Any]] = mapped_column(default=list)  # positional, for every step
    run_as: Mapped[str | None] = mapped_column(String(64))
    execution_timeout_s: Mapped[int] = mapped_column(Integer)
    delivery_timeout_s: Mapped[int] = mapped_column(Integer)
    deliver_by: Mapped[datetime] = mapped_column(index=True)  # not started by then: TimedOut
    max_concurrency: Mapped[str] = mapped_column(String(8))
    max_errors: Mapped[str] = mapped_column(String(8))
    concurrency_limit: Mapped[int] = mapped_column(Integer)
    error_threshold: Mapped[int] = mapped_column(Integer)
    cancel_requested_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(32), index=True)
    status_detail: Mapped[str] = mapped_column(String(64))
    target_count: Mapped[int] = mapped_column(Integer, default=0)
    completed_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    delivery_timed_out_count: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict[str, Any]]
    # Invocations by "status|detail|waiting" (engine.moves.tally_key), kept by each
    # move; None: unknown, counted again at the next refresh.
    tally: Mapped[dict[str, int] | None] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]
    # SNS-style notifications: {"channel": NAME, "events": [...], "type": Command|Invocation}
    notification: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Invocation(Base):
    __tablename__ = "invocations"
    __table_args__ = (
        UniqueConstraint("command_id", "node_id"),
        Index("ix_invocations_node_status", "node_id", "status"),
        Index("ix_invocations_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    command_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("commands.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str] = mapped_column(String(20))
    node_name: Mapped[str | None] = mapped_column(String(256))
    seq: Mapped[int] = mapped_column(Integer, default=0)  # release order within the command
    status: Mapped[str] = mapped_column(String(32))
    status_detail: Mapped[str] = mapped_column(String(64))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    acked_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # Sealed secrets only ({"env": {...}, "args": [...]}); cleared when it ends.
    secrets: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    updated_at: Mapped[datetime]
    # When retention deleted its output (reads then say so instead of answering empty).
    output_expired_at: Mapped[datetime | None]

    # The status is the row's version: every ORM update or delete of an invocation says
    # `WHERE status = <the status it read>`, so a move decided on a stale read (the
    # dispatcher marking Delayed what a cancel has just ended) fails with StaleDataError
    # and its transaction runs again, instead of overwriting the newer status.
    __mapper_args__ = {"version_id_col": status, "version_id_generator": False}


class Document(Base):
    """A named document; its content lives in versions."""

    __tablename__ = "documents"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    default_version: Mapped[int] = mapped_column(Integer)
    latest_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # key -> value (SSM's tags)


class DocumentVersion(Base):
    __tablename__ = "document_versions"

    name: Mapped[str] = mapped_column(
        String(128), ForeignKey("documents.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content: Mapped[dict[str, Any]]
    format: Mapped[str] = mapped_column(String(8))  # YAML or JSON, as it was given
    hash: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical JSON
    signatures: Mapped[list[Any]] = mapped_column(JSON, default=list)  # publishers' signatures
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str | None] = mapped_column(String(128))
    version_name: Mapped[str | None] = mapped_column(String(128))  # SSM's VersionName


class NodeGroup(Base):
    """A named set of nodes: a list of ids, or every node matching tag filters."""

    __tablename__ = "node_groups"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(256))
    node_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    tags: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # key -> values (ORed)
    created_at: Mapped[datetime]


class InvocationStep(Base):
    __tablename__ = "invocation_steps"

    invocation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("invocations.id", ondelete="CASCADE"), primary_key=True
    )
    idx: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    message: Mapped[str | None] = mapped_column(Text)
    stdout_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    stderr_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    stdout_tail: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    stderr_tail: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    # How far each stream is in the search index (server/indexer.py).
    stdout_indexed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stderr_indexed: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class OutputLine(Base):
    """One line of stored output, for search (`store/outputlines.py`). On SQLite the
    full-text index is the FTS5 table `output_lines_fts`, on PostgreSQL a GIN index
    over `to_tsvector('simple', text)`: both made by migration 0740."""

    __tablename__ = "output_lines"
    __table_args__ = (
        UniqueConstraint("invocation_id", "step", "stream", "line_no"),
        # A search finds lines by the full-text index or by id (newest first), then
        # checks their scope: no index per node or command to keep up as lines arrive.
        Index("ix_output_lines_at", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    invocation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("invocations.id", ondelete="CASCADE")
    )
    command_id: Mapped[str] = mapped_column(String(36))
    node_id: Mapped[str] = mapped_column(String(20))
    step: Mapped[int] = mapped_column(Integer)
    stream: Mapped[str] = mapped_column(String(8))
    line_no: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    text: Mapped[str] = mapped_column(Text)


class CommandOutputS3(Base):
    """Where a command's output is copied once each invocation ends: an S3 bucket of
    the server's S3-compatible store (SSM SendCommand's OutputS3BucketName)."""

    __tablename__ = "command_output_s3"

    command_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("commands.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[str] = mapped_column(String(63))
    key_prefix: Mapped[str] = mapped_column(String(500), default="")


class OutputS3Upload(Base):
    """An invocation whose output was copied to its command's bucket (or why not)."""

    __tablename__ = "output_s3_uploads"

    invocation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("invocations.id", ondelete="CASCADE"), primary_key=True
    )
    uploaded_at: Mapped[datetime]
    message: Mapped[str | None] = mapped_column(Text)


class InvocationTransition(Base):
    """Every status an invocation took, with its time."""

    __tablename__ = "invocation_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invocation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("invocations.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]


class Event(Base):
    """Something that happened (EventBridge's envelope), written in the transaction of
    the change that caused it. Unrouted events are the outbox: the router turns each
    into deliveries (one per matching rule target or notification) and marks it."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_routed_seq", "routed", "seq"),)

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(36), unique=True)
    detail_type: Mapped[str] = mapped_column(String(128), index=True)
    time: Mapped[datetime] = mapped_column(index=True)
    resources: Mapped[list[Any]]
    detail: Mapped[dict[str, Any]]
    routed: Mapped[bool] = mapped_column(Boolean, default=False)


class Rule(Base):
    """An event pattern and its targets."""

    __tablename__ = "rules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(256))
    pattern: Mapped[dict[str, Any]]
    # [{"target": "webhook:URL", "secret": sealed|None, "input": {...}|None}]
    targets: Mapped[list[Any]]
    principal: Mapped[str | None] = mapped_column(String(64))  # command targets act as it
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # "fleetrun" or "aws" (SSM's EventBridge events): what it matches and delivers
    event_shape: Mapped[str] = mapped_column(
        String(16), default="fleetrun", server_default="fleetrun"
    )
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Channel(Base):
    """A named notification destination that commands name in --notify."""

    __tablename__ = "channels"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(256))
    target: Mapped[str] = mapped_column(String(1024))
    secret: Mapped[str | None] = mapped_column(String(512))  # sealed with the server key
    created_at: Mapped[datetime]


class Delivery(Base):
    """One event to one destination (a rule's target, or a command's channel), until it
    is delivered or dead-lettered. Claimed with a lease, so a crashed server's work is
    taken up again and two replicas do not send it twice."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "rule", "channel", "target_index"),
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_rule_state", "rule", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), index=True)
    rule: Mapped[str] = mapped_column(String(64), default="")  # "" for a notification
    channel: Mapped[str] = mapped_column(String(64), default="")  # "" for a rule target
    target_index: Mapped[int] = mapped_column(Integer, default=0)
    target: Mapped[str] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(16))  # pending, delivered, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered, retry, failed
    detail: Mapped[str | None] = mapped_column(Text)


class RunCommand(Base):
    """A named run command on one node (its definition; executions are runs)."""

    __tablename__ = "run_commands"
    __table_args__ = (UniqueConstraint("node_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(36))
    group_name: Mapped[str | None] = mapped_column(String(128), index=True)
    spec: Mapped[dict[str, Any]]  # the public part of the PUT body
    # Secrets sealed to the node only: {"env": {...}, "args": [...], "password": ...}.
    sealed: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    salt: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    current_run_id: Mapped[str | None] = mapped_column(String(20))
    provisioning_state: Mapped[str] = mapped_column(String(16))
    principal: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RunCommandRun(Base):
    """One execution of a run command, carried by a command with one invocation."""

    __tablename__ = "run_command_runs"

    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # rc-...
    run_command_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("run_commands.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[str] = mapped_column(String(20), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(16))  # Create, Update, Rerun
    command_id: Mapped[str | None] = mapped_column(String(36), index=True)
    execution_state: Mapped[str] = mapped_column(String(16))
    provisioning_state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)  # why it ended before a command
    requested_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # Where its stdout and stderr are appended (outputUri, errorUri), how far each has
    # gone, and what went wrong there (shown in the instance view, never failing it).
    output_uri: Mapped[str | None] = mapped_column(Text)
    error_uri: Mapped[str | None] = mapped_column(Text)
    output_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    error_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    sink_message: Mapped[str | None] = mapped_column(Text)
    sink_done: Mapped[bool] = mapped_column(Boolean, default=True)


class GroupRunCommand(Base):
    """A run command put on a node group: one run command per member, now and later."""

    __tablename__ = "group_run_commands"

    group_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(36), primary_key=True)
    spec: Mapped[dict[str, Any]]  # the public part of the PUT body
    has_secrets: Mapped[bool] = mapped_column(Boolean, default=False)
    salt: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Its author: who put it last, and from where. A node that joins the group later is
    # decided as this principal, then, exactly as the author's PUT was.
    principal: Mapped[str | None] = mapped_column(String(128))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class OutputChunk(Base):
    """One stored chunk of output, noted in the transaction that stored it: the queue
    the alarm evaluator and the forwarders read in order, each from its own cursor.
    The bytes stay in the output store; rows every reader has passed are pruned."""

    __tablename__ = "output_chunks"
    # Numbers are never used again, even once every row is pruned: cursors hold them.
    __table_args__ = {"sqlite_autoincrement": True}

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime]
    invocation_id: Mapped[str] = mapped_column(String(36))
    command_id: Mapped[str] = mapped_column(String(36))
    node_id: Mapped[str] = mapped_column(String(20))
    step: Mapped[int] = mapped_column(Integer)
    stream: Mapped[str] = mapped_column(String(8))
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(Integer)
    # The replica that stored the bytes: with an output store of its own (a data
    # directory), only it can read them; a reader elsewhere hands the chunk to it.
    stored_by: Mapped[str | None] = mapped_column(String(36))


class OutputCursor(Base):
    """How far one reader of output_chunks has gone ("alarms", "forward:<name>"), with
    a lease so that one replica at a time moves it, and what went wrong last."""

    __tablename__ = "output_cursors"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    leased_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    sent_lines: Mapped[int] = mapped_column(BigInteger, default=0)
    last_ok_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class Alarm(Base):
    """A metric filter over output lines and the alarm on its counts (core.alarms)."""

    __tablename__ = "alarms"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str | None] = mapped_column(String(256))
    pattern: Mapped[str] = mapped_column(Text)
    regex: Mapped[bool] = mapped_column(Boolean, default=False)
    targets: Mapped[list[Any]]  # core.targets shapes; empty: every node
    document_name: Mapped[str | None] = mapped_column(String(128))
    threshold: Mapped[int] = mapped_column(Integer)
    period_s: Mapped[int] = mapped_column(Integer)
    evaluation_periods: Mapped[int] = mapped_column(Integer)
    treat_missing: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24))
    state_reason: Mapped[str] = mapped_column(Text, default="")
    state_changed_at: Mapped[datetime]
    principal: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]


class AlarmDatapoint(Base):
    """What one period saw, for one alarm: lines in scope, lines that matched."""

    __tablename__ = "alarm_datapoints"

    alarm: Mapped[str] = mapped_column(
        String(64), ForeignKey("alarms.name", ondelete="CASCADE"), primary_key=True
    )
    period: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    lines: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(BigInteger, default=0)


class AlarmHistory(Base):
    """Every state an alarm took, with why."""

    __tablename__ = "alarm_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm: Mapped[str] = mapped_column(
        String(64), ForeignKey("alarms.name", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime]
    old_state: Mapped[str] = mapped_column(String(24))
    new_state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text)
