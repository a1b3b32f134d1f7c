"""The dispatcher: moves released invocations to the agents that run them.

It wakes when something changes (a command is created, an agent connects, an
invocation ends) and at least every `sweep_interval_s`. Each pass:

1. closes out what ran out of time (at most once per `sweep_interval_s`): not started
   by the delivery deadline (TimedOut, DeliveryTimedOut), or silent long past the
   command's expiry;
2. delivers every released, unaccepted invocation whose node holds a session on this
   replica, re-sending an `invoke` that was not acknowledged in `invoke_resend_s`;
3. marks Pending invocations of offline nodes Delayed: they go out when the node
   connects;
4. ends Undeliverable (detail TooLarge) an invocation whose `invoke` frame is over
   the agent channel's size limit, rather than send what the agent must refuse;
5. tells the agents held here to stop what is Cancelling (a cancel asked through
   another replica, or a cancel frame lost with a session), again every
   `invoke_resend_s` until the agent confirms.

Releasing invocations within max-concurrency, and terminating them past max-errors,
happens in the same transaction that changes an invocation's status
(`refresh_command`), so it needs no pass of its own.

Delivery is at least once; the agent's journal makes a repeat harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from fleetrun.core import protocol
from fleetrun.core.statuses import InvocationStatus
from fleetrun.server.db import Tx
from fleetrun.server.engine import commands as engine_commands
from fleetrun.server.engine import invocations as engine_invocations
from fleetrun.server.store import invocations as invocation_store
from fleetrun.server.store.tables import Command

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState

log = logging.getLogger(__name__)

PLAN_CACHE_SIZE = 1024


class Dispatcher:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._wake = asyncio.Event()
        self._full = True  # a full delivery pass is due
        self._nodes: set[str] = set()  # nodes that just connected
        self._cancels = False  # a cancel pass is due
        self._last_full = 0.0
        self._last_expire = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._plans: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def wake(self) -> None:
        self._full = True
        self._wake.set()

    def cancel_soon(self) -> None:
        """Tell the agents held here, on the next pass, to stop whatever is being
        cancelled and not yet confirmed."""
        self._cancels = True
        self._wake.set()

    def node_connected(self, node_id: str) -> None:
        self._nodes.add(node_id)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        interval = self.state.settings.sweep_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: see changes.py
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("dispatcher pass failed; retrying on the next one")
                await asyncio.sleep(interval)

    async def tick(self) -> None:
        now = self.state.clock.monotonic()
        # Deadlines are looked at once per sweep interval, not on every wake: a busy
        # server wakes on every frame, and each look is a query.
        if now - self._last_expire >= self.state.settings.sweep_interval_s:
            self._last_expire = now
            await self.expire()
        if self._full or now - self._last_full >= self.state.settings.invoke_resend_s:
            self._full, self._nodes, self._cancels, self._last_full = False, set(), False, now
            await self.deliver(None)
            await self.cancel_again()
        elif self._nodes:
            nodes, self._nodes = self._nodes, set()
            await self.deliver(sorted(nodes))
        if self._cancels:
            self._cancels = False
            await self.cancel_again()

    async def deliver(self, node_ids: list[str] | None) -> None:
        # A full pass reads only what this replica may act on, not the whole fleet's.
        mine = None if node_ids is not None else self.state.replica_id
        rows = await self.state.db.read(
            lambda s: invocation_store.deliverable(s, node_ids, replica_id=mine)
        )
        resend_s = self.state.settings.invoke_resend_s
        offline: list[str] = []
        too_large: dict[str, int] = {}
        started = self.state.clock.monotonic()  # one reading for the pass, not one per row
        for invocation_id, node_id, command_id, status, secrets in rows:
            agent = self.state.gateway.session_for(node_id)
            if agent is None:
                if status == InvocationStatus.PENDING:
                    offline.append(invocation_id)
                continue
            sent = agent.sent_invokes.get(invocation_id)
            if sent is not None and started - sent < resend_s:
                continue
            frame = await self._invoke(invocation_id, command_id, secrets)
            if frame is None:
                continue
            # A frame over the agent's limit would close its session, and be sent again
            # on every reconnect ahead of everything else: it ends here instead.
            text = protocol.dump(frame)
            size = len(text.encode())
            if size > protocol.MAX_FRAME_BYTES:
                too_large[invocation_id] = size
                continue
            if await agent.send(frame, text=text):
                agent.sent_invokes[invocation_id] = self.state.clock.monotonic()
        if too_large:

            def refuse(tx: Tx) -> None:
                self.state.refresh_commands(tx, engine_invocations.too_large(tx.session, too_large))

            await self.state.db.write(refuse)
        if offline:

            def delay(tx: Tx) -> None:
                changed = engine_invocations.mark_delayed(tx.session, offline)
                self.state.refresh_commands(tx, changed)

            await self.state.db.write(delay)

    async def cancel_again(self) -> None:
        """Tell the agents held here to stop what is being cancelled and not yet
        confirmed, once per `invoke_resend_s` each: a cancel asked through another
        replica reaches its agent here, and a cancel frame lost with a session is sent
        again."""
        rows = await self.state.db.read(invocation_store.cancelling)
        resend_s = self.state.settings.invoke_resend_s
        now = self.state.clock.monotonic()
        for node_id, invocation_id in rows:
            agent = self.state.gateway.session_for(node_id)
            if agent is None:
                continue
            sent = agent.sent_cancels.get(invocation_id)
            if sent is not None and now - sent < resend_s:
                continue
            if await agent.send(protocol.Cancel(invocation_id=invocation_id)):
                agent.sent_cancels[invocation_id] = now

    async def expire(self) -> None:
        """Close out what ran out of time; looks first, so that a pass with nothing due
        writes nothing."""
        now = self.state.clock.now()
        if not await self.state.db.read(lambda s: engine_commands.expiry_due(s, now)):
            return

        def sweep(tx: Tx) -> None:
            touched = engine_commands.expire(tx.session, now)
            self.state.refresh_commands(tx, touched)

        await self.state.db.write(sweep)

    async def _invoke(
        self, invocation_id: str, command_id: str, secrets: dict[str, Any] | None
    ) -> protocol.Invoke | None:
        plan = self._plans.get(command_id)
        if plan is None:
            command = await self.state.db.read(lambda s: s.get(Command, command_id))
            if command is None:
                return None
            plan = {
                "command_id": command.id,
                "document_name": command.document_name,
                "document_version": command.document_version,
                "steps": [protocol.convert(s, protocol.Step) for s in command.steps],
                "execution_timeout_s": float(command.execution_timeout_s),
                "run_as": command.run_as,
                "principal": command.principal,
                "parameters": command.parameters,
                "arguments": command.arguments or [],
                "document": protocol.DocumentRef(
                    name=command.document_name,
                    version=command.document_version,
                    content=command.document_content or {},
                    signatures=command.document_signatures or [],
                )
                if command.document_content is not None
                else None,
            }
            self._plans[command_id] = plan
            if len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        sealed = secrets or {}
        return protocol.Invoke(
            invocation_id=invocation_id,
            secrets=sealed.get("env", {}),
            secret_args=sealed.get("args", []),
            **plan,
        )
