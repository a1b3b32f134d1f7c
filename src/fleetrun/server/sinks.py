"""Output destinations of run commands (`outputUri`, `errorUri`): the server appends each
run's stdout and stderr there as they stream, besides keeping them in its own store.

An `s3://BUCKET/KEY` destination is written by the server with its configured
credentials (FLEETRUN_S3_*), through AWS's client; S3 objects cannot be appended to, so the
object is rewritten whole with what has come so far (every few seconds while the
script runs, and at the end).

The protocol for an http(s) destination, one request per chunk, in order:

    PUT <uri>   Content-Range: bytes START-END/*   body: bytes START..END (inclusive)
    PUT <uri>   Content-Range: bytes */TOTAL       empty body: the stream is complete

Each run starts again at byte 0 (the destination replaces what it had, like Azure's
append blob per execution). `X-Fleetrun-Run` (the run id) and `X-Fleetrun-Stream`
(stdout or stderr) say what arrives. Any 2xx answer is success. A destination that
answers otherwise, or cannot be reached after `ATTEMPTS` passes, is given up for that
run and reported in its instance view's executionMessage; the script is not failed.

One pass every `sweep_interval_s` sends what the output store has beyond what was sent;
the offsets are kept in the run's row, so a restart resumes where it stopped. With
several replicas only the leader makes the pass (`ServerState.leads`), so each byte is
sent once; when it dies, the next replica resumes from the offsets (the replicas share
an output store: docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import runcommands as core
from fleetrun.server import s3store
from fleetrun.server.db import Tx
from fleetrun.server.destinations import DestinationRefusedError, guarded_client
from fleetrun.server.output import stream_key
from fleetrun.server.ssm import s3output
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import Invocation, RunCommandRun

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
S3_REWRITE_S = 5.0
ATTEMPTS = 3
TIMEOUT_S = 30.0


class SinkError(Exception):
    """The destination did not take a chunk: the message says why."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Stream:
    name: str  # stdout or stderr
    what: str  # outputUri or errorUri
    uri: str
    sent: int
    parts: list[tuple[str, int]] = field(default_factory=list)  # (output key, size)

    @property
    def total(self) -> int:
        return sum(size for _, size in self.parts)


@dataclass
class Pending:
    run_id: str
    finished: bool
    streams: list[Stream]


def pending(session: Session) -> list[Pending]:
    """Runs with bytes (or an end) still to send."""
    rows = session.execute(
        select(RunCommandRun, Invocation)
        .join(Invocation, Invocation.command_id == RunCommandRun.command_id)
        .where(RunCommandRun.sink_done.is_(False))
        .limit(200)
    ).all()
    out = []
    for run, inv in rows:
        steps = invocation_store.read_steps(session, inv.id)
        streams = []
        for name, what, uri, sent in (
            ("stdout", "outputUri", run.output_uri, run.output_sent),
            ("stderr", "errorUri", run.error_uri, run.error_sent),
        ):
            if uri:
                sizes = [
                    (
                        stream_key(inv.command_id, inv.node_id, s.idx, name),
                        s.stdout_bytes if name == "stdout" else s.stderr_bytes,
                    )
                    for s in steps
                ]
                streams.append(Stream(name, what, uri, sent, sizes))
        out.append(Pending(run.id, run.execution_state in core.FINISHED, streams))
    return out


class OutputSinks:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._task: asyncio.Task[None] | None = None
        self._failures: dict[str, int] = {}
        self._s3_written: dict[tuple[str, str], float] = {}  # (run, stream) -> monotonic

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="output-sinks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        # http(s) destinations are named by API callers: only where the destination
        # policy allows. The S3 endpoint is the operator's own setting.
        s3 = s3store.S3(self.state.settings)
        async with guarded_client(self.state.destinations, timeout=TIMEOUT_S) as http:
            while True:
                await asyncio.sleep(self.state.settings.sweep_interval_s)
                if not self.state.leads:  # another replica sends, once for all
                    continue
                try:
                    await self.tick(http, s3)
                except Exception:
                    log.exception("output destinations pass failed; retrying on the next one")

    async def tick(self, http: httpx.AsyncClient, s3: s3store.S3) -> None:
        if self.state.settings.s3_enabled:  # SSM SendCommand's OutputS3BucketName
            await s3output.upload(self.state, s3)
        for item in await self.state.db.read(pending):
            try:
                before = [stream.sent for stream in item.streams]
                for stream in item.streams:
                    if stream.uri.lower().startswith("s3://"):
                        await self._send_s3(s3, item.run_id, stream, finished=item.finished)
                    else:
                        await self._send(http, item.run_id, stream)
                self._failures.pop(item.run_id, None)  # failures count while in a row
                if item.finished:
                    for stream in item.streams:
                        if not stream.uri.lower().startswith("s3://"):
                            await _put(http, item.run_id, stream, f"bytes */{stream.total}", b"")
                    await self._save(item, done=True)
                elif [stream.sent for stream in item.streams] != before:
                    await self._save(item, done=False)  # only progress is written
            except SinkError as exc:
                if exc.retryable:
                    self._failures[item.run_id] = self._failures.get(item.run_id, 0) + 1
                    if self._failures[item.run_id] < ATTEMPTS:
                        await self._save(item, done=False)
                        continue
                self._failures.pop(item.run_id, None)
                await self._save(item, done=True, message=str(exc))

    async def _send(self, http: httpx.AsyncClient, run_id: str, stream: Stream) -> None:
        """Append what the output store has beyond `stream.sent`."""
        offset = 0
        for key, size in stream.parts:
            lo, hi = max(stream.sent - offset, 0), size
            if lo < hi:
                buffer = b""
                async for data in self.state.output.read(key, lo, hi):
                    buffer += data
                    while len(buffer) >= CHUNK_BYTES:
                        await self._chunk(http, run_id, stream, buffer[:CHUNK_BYTES])
                        buffer = buffer[CHUNK_BYTES:]
                if buffer:
                    await self._chunk(http, run_id, stream, buffer)
            offset += size

    async def _send_s3(
        self, s3: s3store.S3, run_id: str, stream: Stream, *, finished: bool
    ) -> None:
        """S3 objects cannot be appended to: the object is written whole again with
        what has come so far, at most every S3_REWRITE_S while the script runs, and
        once at the end (an empty stream is written too)."""
        key = (run_id, stream.name)
        now = time.monotonic()
        if stream.sent >= stream.total and not (finished and stream.sent == 0):
            return
        if not finished and now - self._s3_written.get(key, 0.0) < S3_REWRITE_S:
            return
        data = b""
        for part, size in stream.parts:
            async for chunk in self.state.output.read(part, 0, size):
                data += chunk
        bucket, _, name = stream.uri[len("s3://") :].partition("/")
        try:
            await s3.put(bucket, name, data, {"fleetrun-run": run_id})
        except s3store.S3Error as exc:
            where = core.redact_uri(stream.uri)
            if exc.status is None:
                raise SinkError(
                    f"The {stream.what} {where} could not be reached; the output is "
                    "complete in fleetrun's own store.",
                    retryable=True,
                ) from exc
            raise SinkError(
                f"The {stream.what} {where} refused the {stream.name} with HTTP "
                f"{exc.status}; the output is complete in fleetrun's own store.",
                retryable=exc.status >= 500,
            ) from exc
        self._s3_written[key] = now
        stream.sent = len(data)
        if finished:
            self._s3_written.pop(key, None)

    async def _chunk(
        self, http: httpx.AsyncClient, run_id: str, stream: Stream, data: bytes
    ) -> None:
        end = stream.sent + len(data) - 1
        await _put(http, run_id, stream, f"bytes {stream.sent}-{end}/*", data)
        stream.sent += len(data)

    async def _save(self, item: Pending, *, done: bool, message: str | None = None) -> None:
        def save(tx: Tx) -> None:
            run = tx.session.get(RunCommandRun, item.run_id)
            if run is None:
                return  # its run command was deleted meanwhile
            for stream in item.streams:
                if stream.name == "stdout":
                    run.output_sent = stream.sent
                else:
                    run.error_sent = stream.sent
            run.sink_done = done
            if message:
                run.sink_message = message

        await self.state.db.write(save)


async def _put(
    http: httpx.AsyncClient, run_id: str, stream: Stream, content_range: str, data: bytes
) -> None:
    headers = {
        "content-range": content_range,
        "content-type": "application/octet-stream",
        "x-fleetrun-run": run_id,
        "x-fleetrun-stream": stream.name,
    }
    await _request(http, stream, stream.uri, headers, data)


async def _request(
    http: httpx.AsyncClient, stream: Stream, url: str, headers: dict[str, str], data: bytes
) -> None:
    where = core.redact_uri(stream.uri)
    try:
        response = await http.put(url, content=data, headers=headers)
    except DestinationRefusedError as exc:
        raise SinkError(
            f"The {stream.what} {where} was not sent to: {exc.message} The output is "
            "complete in fleetrun's own store.",
            retryable=False,
        ) from exc
    except httpx.HTTPError as exc:
        raise SinkError(
            f"The {stream.what} {where} could not be reached ({type(exc).__name__}); the "
            "output is complete in fleetrun's own store.",
            retryable=True,
        ) from exc
    if not 200 <= response.status_code < 300:
        with contextlib.suppress(Exception):
            await response.aclose()
        raise SinkError(
            f"The {stream.what} {where} refused the {stream.name} with HTTP "
            f"{response.status_code}; the output is complete in fleetrun's own store.",
            retryable=False,
        )
