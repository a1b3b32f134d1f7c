"""SendCommand's OutputS3BucketName / OutputS3KeyPrefix: each invocation's output
copied, once it has ended, to a bucket of the server's S3-compatible store
(FLEETRUN_S3_*), under the keys the SSM agent uses:

    PREFIX/COMMAND_ID/NODE_ID/awsrunShellScript/stdout   (stderr beside it, when any)

The server writes with its own credentials, through AWS's client (nodes need none), from
the output it keeps anyway; the output sinks' pass (server/sinks.py) calls `upload` on
every sweep. A bucket that refuses is recorded (and logged) and not tried again: the
output stays readable from fleetrun itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import ssm
from fleetrun.core.statuses import TERMINAL_INVOCATION
from fleetrun.server import s3store
from fleetrun.server.db import Tx
from fleetrun.server.output import stream_key
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import CommandOutputS3, Invocation, OutputS3Upload, utcnow

if TYPE_CHECKING:
    from fleetrun.server.settings import Settings
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

BATCH = 100


@dataclass(frozen=True)
class Where:
    """A command's S3 destination."""

    bucket: str
    prefix: str

    def key(self, command_id: str, node_id: str, step_name: str, stream: str) -> str:
        return ssm.output_key(self.prefix, command_id, node_id, step_name, stream)

    def url(self, settings: Settings, key: str) -> str:
        return s3store.object_url(settings, self.bucket, key)


@dataclass(frozen=True)
class Destination:
    """A command's S3 destination as its answers show it: bucket, prefix, and the URL
    of each object (StandardOutputUrl)."""

    where: Where
    settings: Settings

    def url(self, command_id: str, node_id: str, step_name: str, stream: str) -> str:
        return self.where.url(self.settings, self.where.key(command_id, node_id, step_name, stream))


@dataclass(frozen=True)
class Part:
    output_key: str  # in the server's output store
    size: int
    s3_key: str


@dataclass(frozen=True)
class Upload:
    invocation_id: str
    where: Where
    parts: list[Part]


def read_where(session: Session, command_ids: list[str]) -> dict[str, Where]:
    rows = session.execute(
        select(CommandOutputS3).where(CommandOutputS3.command_id.in_(command_ids))
    ).scalars()
    return {r.command_id: Where(r.bucket, r.key_prefix) for r in rows}


def pending(session: Session) -> list[Upload]:
    """Ended invocations whose command asked for S3 output, not yet copied."""
    rows = session.execute(
        select(Invocation, CommandOutputS3)
        .join(CommandOutputS3, CommandOutputS3.command_id == Invocation.command_id)
        .outerjoin(OutputS3Upload, OutputS3Upload.invocation_id == Invocation.id)
        .where(
            OutputS3Upload.invocation_id.is_(None),
            Invocation.status.in_([s.value for s in TERMINAL_INVOCATION]),
        )
        .limit(BATCH)
    ).all()
    uploads = []
    for inv, dest in rows:
        where = Where(dest.bucket, dest.key_prefix)
        parts = []
        for step in invocation_store.read_steps(session, inv.id):
            for stream, size in (("stdout", step.stdout_bytes), ("stderr", step.stderr_bytes)):
                if stream == "stdout" or size:
                    parts.append(
                        Part(
                            stream_key(inv.command_id, inv.node_id, step.idx, stream),
                            size,
                            where.key(inv.command_id, inv.node_id, step.name, stream),
                        )
                    )
        uploads.append(Upload(inv.id, where, parts))
    return uploads


async def upload(state: ServerState, s3: s3store.S3) -> None:
    """Copy what has ended since the last pass."""
    for item in await state.db.read(pending):
        message = None
        try:
            for part in item.parts:
                await _put(state, s3, item.where, part)
        except _Refused as exc:
            message = str(exc)
            log.warning("output of invocation %s not copied to S3: %s", item.invocation_id, exc)
        await state.db.write(partial(_done, invocation_id=item.invocation_id, message=message))


class _Refused(Exception):
    pass


async def _put(state: ServerState, s3: s3store.S3, where: Where, part: Part) -> None:
    data = b""
    if part.size:
        async for chunk in state.output.read(part.output_key, 0, part.size):
            data += chunk
    try:
        await s3.put(where.bucket, part.s3_key, data)
    except s3store.S3Error as exc:
        raise _Refused(str(exc)) from exc


def _done(tx: Tx, *, invocation_id: str, message: str | None) -> None:
    if tx.session.get(OutputS3Upload, invocation_id) is None:
        tx.session.add(
            OutputS3Upload(invocation_id=invocation_id, uploaded_at=utcnow(), message=message)
        )
