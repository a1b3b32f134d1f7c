"""The output store: the full stdout and stderr of every step, byte-exact.

Streams are written at the offset the database records, so a write that was repeated
after a crash overwrites rather than duplicates, and a reader never sees more than
the database has acknowledged. The database keeps only a bounded tail of each stream
for the API; the whole stream lives here.

`OutputStore` is the interface; `LocalOutputStore` keeps a directory of files, and
`S3OutputStore` objects in an S3-compatible bucket that every replica reads and writes.
`write` runs on a database thread inside the transaction that records the new length.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fleetrun.server.s3store import S3, S3Error

if TYPE_CHECKING:
    from fleetrun.server.store.tables import InvocationStep

STDOUT_TAIL_CHARS = 24_000
STDERR_TAIL_CHARS = 8_000
READ_CHUNK = 256 * 1024


def output_key(invocation_id: str) -> str:
    """What readers following an invocation's output subscribe to (`Changes`)."""
    return f"output:{invocation_id}"


def stream_key(command_id: str, node_id: str, step: int, stream: str) -> str:
    return f"{command_id}/{node_id}/{step}.{stream}"


Part = tuple[str, int]  # one step's stream: its key in the store, and the bytes stored


def stream_parts(
    command_id: str, node_id: str, steps: Iterable[InvocationStep], stream: str
) -> list[Part]:
    """An invocation's `stream` as the parts it is stored in, one per step, in order."""
    return [
        (
            stream_key(command_id, node_id, s.idx, stream),
            s.stdout_bytes if stream == "stdout" else s.stderr_bytes,
        )
        for s in steps
    ]


async def read_parts(
    store: OutputStore, parts: Sequence[Part], start: int, end: int
) -> AsyncIterator[bytes]:
    """Bytes [start, end) of the stream the `parts` make, read part by part."""
    base = 0
    for key, size in parts:
        lo, hi = max(start - base, 0), min(end - base, size)
        if lo < hi:
            async for chunk in store.read(key, lo, hi):
                yield chunk
        base += size


class OutputStore(Protocol):
    # Whether every replica reads what any replica wrote (a bucket), or only the one
    # that wrote it (a data directory of its own).
    shared: bool

    def write(self, key: str, offset: int, data: bytes) -> None: ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]: ...

    async def delete_prefix(self, prefix: str) -> None: ...

    async def unready(self) -> str | None:
        """Why the store cannot be used now (for /readyz), or None."""

    async def close(self) -> None: ...


class LocalOutputStore:
    shared = False  # each replica's own directory

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._root = root.resolve()
        self._under = os.path.join(self._root, "")
        self._dirs: set[str] = set()

    def _name(self, key: str) -> str:
        # Keys are made of ids and numbers; one with ".." or an absolute path that
        # leads out of the store is refused. Lexical, not Path.resolve(): that is a
        # system call per path component, on every chunk stored.
        name = os.path.normpath(os.path.join(self._root, key))
        if not name.startswith(self._under):
            raise ValueError(f"bad output key {key!r}")
        return name

    def _path(self, key: str) -> Path:
        return Path(self._name(key))

    def write(self, key: str, offset: int, data: bytes) -> None:
        """Called inside a database transaction, on a database thread."""
        name = self._name(key)
        parent = os.path.dirname(name)
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            if len(self._dirs) > 4096:
                self._dirs.clear()
            self._dirs.add(parent)
        _write_at(name, offset, data)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a stream (end is what the database acknowledged)."""
        path = self._path(key)
        if end <= start or not path.exists():
            return
        with path.open("rb") as fh:
            fh.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = await asyncio.to_thread(fh.read, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk

    async def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            await asyncio.to_thread(shutil.rmtree, path, True)

    async def unready(self) -> str | None:
        return None

    async def close(self) -> None:
        return None


class S3OutputStore:
    """Each chunk is an object of its own, named by its stream and the offset it starts
    at: `PREFIX/KEY/OFFSET` (20 digits, so that names sort as offsets do). A chunk written
    again (after a crash, or by a second replica after the agent moved) lands on the
    same name; a reader lists the stream's chunks and reads, in order, what covers the
    range asked for."""

    shared = True

    def __init__(self, s3: S3, bucket: str, prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix

    def write(self, key: str, offset: int, data: bytes) -> None:
        """Called inside a database transaction, on a database thread: the length is
        recorded only once the chunk is stored."""
        if data:
            self.s3.put_now(self.bucket, f"{self.prefix}{key}/{offset:020d}", data)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a stream (end is what the database acknowledged)."""
        if end <= start:
            return
        found = await asyncio.to_thread(self.s3.list_now, self.bucket, f"{self.prefix}{key}/")
        at = start
        for name, size in found:
            offset = int(name.rpartition("/")[2])
            if offset + size <= at:
                continue
            if offset > at:
                break  # nothing stored here: never under what the database acknowledged
            upto = min(offset + size, end)
            while at < upto:
                stop = min(upto, at + READ_CHUNK)
                yield await asyncio.to_thread(
                    self.s3.get_now, self.bucket, name, at - offset, stop - offset
                )
                at = stop
            if at >= end:
                return

    async def delete_prefix(self, prefix: str) -> None:
        await asyncio.to_thread(self.s3.delete_prefix_now, self.bucket, f"{self.prefix}{prefix}/")

    async def unready(self) -> str | None:
        try:
            await asyncio.to_thread(self.s3.check_now, self.bucket)
        except S3Error as exc:
            return f"the output store {exc}"
        return None

    async def close(self) -> None:
        self.s3.close()


def _write_at(path: str, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def tail_bytes_for(chars: int) -> int:
    return chars * 4  # room for the widest UTF-8 characters


def append_tail(tail: bytes, data: bytes, chars: int) -> bytes:
    keep = tail_bytes_for(chars)
    joined = tail + data
    return joined[-keep:] if len(joined) > keep else joined


def tail_text(tail: bytes, total_bytes: int, chars: int) -> tuple[str, bool]:
    """The last `chars` characters of a stream whose last bytes are `tail`, and
    whether anything before them was left out."""
    cut = total_bytes > len(tail)
    if cut:
        # The kept bytes may start inside a character: skip continuation bytes.
        start = 0
        while start < min(3, len(tail)) and 0x80 <= tail[start] <= 0xBF:
            start += 1
        tail = tail[start:]
    text = tail.decode("utf-8", errors="replace")
    if len(text) > chars:
        return text[-chars:], True
    return text, cut
