"""Change notices inside one server process: who waits for what to change.

A long-polling reader subscribes before it reads, so a change that lands between its
read and its wait is not missed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Subscription:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._final = False

    def notify(self, final: bool | None = None) -> None:
        """`final`: whether the thing reached its end with this change (None: perhaps,
        as when another replica tells of it)."""
        if final is not False:
            self._final = True
        self._event.set()

    def take_final(self) -> bool:
        """Whether a change since the last call may have been the end."""
        final, self._final = self._final, False
        return final

    async def wait(self, timeout_s: float) -> bool:
        # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for swallows a
        # cancellation that arrives as the awaited event is set, and a loop cancelled at
        # shutdown would then wait forever (the server hung on stop). The same in the
        # dispatcher's, the outbox's and the audit writer's loops.
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Changes:
    def __init__(self) -> None:
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)

    def publish(self, key: str, *, final: bool | None = None) -> None:
        for sub in self._subs.get(key, ()):
            sub.notify(final)

    def publish_all(self) -> None:
        """Everything may have changed (a replica missed what the others said)."""
        for subs in self._subs.values():
            for sub in subs:
                sub.notify()

    @contextmanager
    def subscribe(self, key: str) -> Iterator[Subscription]:
        sub = Subscription()
        self._subs[key].add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[key]
