"""Requests gathered while the previous batch is being served, served together.

Ten thousand agents connecting at once each need a read (their key) and a write
(online); ten thousand registering each need a node stored: one transaction each is
ten thousand thread hops and commits, most of the time taken. A `Batches` gathers
the requests that arrive while its loop serves the last batch and serves them in one
call, so the batches grow with the load and a quiet server answers a single request
at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batches(Generic[Item, Result]):
    def __init__(
        self,
        serve: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        limit: int,
        what: str,
    ) -> None:
        self._serve = serve  # one result per item, in order
        self._limit = limit
        self._what = what  # for the log: "nodes marked online"
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Result:
        """Served with the batch this joins. A caller that gives up (is cancelled)
        before its batch begins is left out of it."""
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        self._wake.set()
        return await done

    def start(self) -> None:
        """Serve batches until `stop`."""
        self._task = asyncio.create_task(self.loop(), name=f"batches of {self._what}")

    async def stop(self) -> None:
        """The server stops: no more batches, and whoever still waits ends here."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.cancel()

    async def loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._waiting:
                waiting = [w for w in self._waiting if not w[1].done()]
                batch, self._waiting = waiting[: self._limit], waiting[self._limit :]
                if batch:
                    await self._run(batch)

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._serve([item for item, _ in batch])
        except Exception as exc:
            if len(batch) > 1:  # one bad item fails only its own request
                log.exception("%d %s failed together; each alone", len(batch), self._what)
                for one in batch:
                    await self._run([one])
                return
            _, done = batch[0]
            if not done.done():
                done.set_exception(exc)  # the caller logs it
            return
        for (_, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)

    def cancel(self) -> None:
        """The server stops: whoever still waits ends here."""
        for _, done in self._waiting:
            done.cancel()
        self._waiting.clear()
