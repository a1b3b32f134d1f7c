"""Agents registering: activations traded for node identities, stored in batches.

A fleet being built registers thousands of agents in minutes. Each registration is
decided alone (its activation's code, expiry and limit; its node's fields), but the
registrations that arrive while the last batch is being stored are stored together in
one transaction (`store.nodes.register_nodes`: a handful of statements for the lot),
so the rate grows with the load instead of stopping at one commit per agent.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fleetrun.core.errors import FleetrunError
from fleetrun.schemas.agent import RegisterRequest
from fleetrun.server.batches import Batches
from fleetrun.server.db import Tx
from fleetrun.server.store import group_runcommands as group_run_command_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.nodes import Registered

if TYPE_CHECKING:
    from fleetrun.server.state import ServerState
    from fleetrun.server.store.group_runcommands import Admit

# The most registrations in one transaction: enough to carry a fleet's enrolment,
# few enough that one batch never holds the writer for long.
MAX_BATCH = 500

Request = tuple[RegisterRequest, datetime]


class Registrations:
    def __init__(self, state: ServerState, admit: Admit) -> None:
        self._state = state
        self._admit = admit  # decides a group run command for a node that joins
        self._batches: Batches[Request, Registered | FleetrunError] = Batches(
            self._store, limit=MAX_BATCH, what="registrations"
        )

    def start(self) -> None:
        self._batches.start()

    async def stop(self) -> None:
        await self._batches.stop()

    async def register(self, request: RegisterRequest, now: datetime) -> Registered:
        """The new node, or the error that says why the request cannot make one."""
        result = await self._batches((request, now))
        if isinstance(result, FleetrunError):
            raise result
        return result

    async def _store(self, requests: list[Request]) -> list[Registered | FleetrunError]:
        def store(tx: Tx) -> list[Registered | FleetrunError]:
            results = node_store.register_nodes(tx.session, requests)
            # Their tags may make them members of groups with run commands: they get
            # them now (a node's tags, so its groups, are fixed when it registers), each
            # decided as the run command's author.
            if any(isinstance(r, Registered) for r in results) and group_run_command_store.sync(
                tx.session, self._admit
            ):
                self._state.wake_dispatcher(tx)
            return results

        return await self._state.db.write(store)
