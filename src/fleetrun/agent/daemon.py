"""The agent's core: what it does with each frame, independent of the socket.

`Agent.handle` takes frames from the server; `Agent.uplink` sends spooled frames
back, at most WINDOW unacknowledged frames per invocation at a time. On start,
`recover` closes out what a previous run of the agent left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleetrun.agent.audit import AuditLog
from fleetrun.agent.config import Watcher
from fleetrun.agent.executor import Execution
from fleetrun.agent.journal import Journal, Outbox, spool_path
from fleetrun.agent.metrics import AgentStats
from fleetrun.agent.procs import Containment, ProcessGroups
from fleetrun.agent.state import StateDir
from fleetrun.core import documents, envnames, localpolicy, logs, protocol, signing
from fleetrun.core.errors import FleetrunError
from fleetrun.core.statuses import InvocationStatus, StatusDetail

log = logging.getLogger(__name__)

WINDOW = 64  # unacknowledged frames in flight per invocation

Send = Callable[[str], Awaitable[None]]


class Refused(Exception):
    """The node's local configuration does not let this invocation run."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class AgentOptions:
    stop_grace_s: float = 5.0


class Agent:
    def __init__(
        self,
        state: StateDir,
        node_id: str,
        options: AgentOptions,
        containment: Containment | None = None,
    ) -> None:
        self.state = state
        self.containment = containment or ProcessGroups()
        self.node_id = node_id
        self.options = options
        state.prepare()
        self.journal = Journal(state.journal_dir)
        self.config = Watcher(state.config_path)
        self.audit = AuditLog(state.audit_path)
        self.own_user = pwd.getpwuid(os.geteuid()).pw_name
        self.seal_key = state.load_seal_key() if state.seal_key_path.exists() else None
        self.outboxes: dict[str, Outbox] = {}
        self.executions: dict[str, Execution] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._ready = asyncio.Event()
        self.stats = AgentStats()  # read by the metrics endpoint, when there is one

    # -- start-up ---------------------------------------------------------------

    async def recover(self) -> None:
        """Close out what a previous run left: never run it again, deliver its output.
        Whatever its scripts still run is killed (their cgroups, or their groups)."""
        self.journal.prune()
        killed = []
        for entry in self.journal.unreported():
            outbox = self._outbox(entry.invocation_id)
            if entry.state in ("accepted", "running"):
                self.containment.kill(entry.invocation_id, entry.pgid, entry.pgid_started)
                killed.append(entry.invocation_id)
                now = time.time()
                message = "The agent restarted while this ran; it was stopped and not run again."
                outbox.state(
                    step=None,
                    status=InvocationStatus.FAILED,
                    detail=StatusDetail.AGENT_RESTARTED,
                    ended_at=now,
                    message=message,
                )
                entry.state = "finished"
                self.journal.save(entry)
                log.warning("invocation %s was interrupted by a restart", entry.invocation_id)
            if outbox.done:
                self._complete(entry.invocation_id)
        for invocation_id in killed:
            await self.containment.settle(invocation_id)
        self.containment.tidy(keep=set())  # cgroups emptied since the last run

    def running_ids(self) -> list[str]:
        return [e.invocation_id for e in self.journal.unreported()]

    # -- frames from the server -------------------------------------------------

    async def handle(self, frame: protocol.Frame, send: Send) -> None:
        if isinstance(frame, protocol.Invoke):
            await self._invoke(frame, send)
        elif isinstance(frame, protocol.Received):
            self._received(frame)
        elif isinstance(frame, protocol.Cancel):
            execution = self.executions.get(frame.invocation_id)
            if execution is not None:
                execution.cancel()

    async def _invoke(self, invoke: protocol.Invoke, send: Send) -> None:
        entry = self.journal.get(invoke.invocation_id)
        if entry is not None:
            # Seen before: acknowledge again, never run again.
            log.info(
                "invocation %s delivered again: acknowledged, not run again", invoke.invocation_id
            )
            await send(
                protocol.dump(protocol.Ack(invocation_id=invoke.invocation_id, accepted=True))
            )
            self._ready.set()
            return
        self.config.refresh()
        try:
            invoke = self._checked(invoke)
        except Refused as refused:
            log.warning(
                "invocation %s refused: %s",
                invoke.invocation_id,
                refused.reason,
                extra={"command_id": invoke.command_id, "invocation_id": invoke.invocation_id},
            )
            self.stats.finished("Refused")
            self.audit.record(invoke, outcome="Refused", refused_by=refused.reason)
            ack = protocol.Ack(
                invocation_id=invoke.invocation_id,
                accepted=False,
                reason=refused.reason,
                detail=StatusDetail.BLOCKED_BY_LOCAL_POLICY,
            )
            await send(protocol.dump(ack))
            return
        entry = self.journal.accept(invoke)  # fsynced before anything else happens
        await send(protocol.dump(protocol.Ack(invocation_id=invoke.invocation_id, accepted=True)))
        execution = Execution(
            invoke,
            entry,
            self.journal,
            self._outbox(invoke.invocation_id),
            self.state.work_dir,
            node_id=self.node_id,
            stop_grace_s=self.options.stop_grace_s,
            on_output=self._ready.set,
            seal_key=self.seal_key,
            containment=self.containment,
        )
        self.executions[invoke.invocation_id] = execution
        task = asyncio.create_task(self._execute(execution), name=f"run {invoke.invocation_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _checked(self, invoke: protocol.Invoke) -> protocol.Invoke:
        """The invocation as this node will run it, or Refused naming the local rule.

        With signed documents required, the steps are made here from the signed
        content and the command's parameters; the server's steps are not used."""
        if self.config.error:
            raise Refused(
                f"The local configuration cannot be read ({self.config.error}): nothing runs."
            )
        config = self.config.config
        declared = None
        if config.get("security.require_signed_documents"):
            invoke = self._from_signed_document(invoke, config.get("security.trusted_publishers"))
            declared = list(
                (invoke.document.content if invoke.document else {}).get("parameters") or {}
            )
        # Checked here again, whatever the server checked: an older or a compromised
        # server must not set LD_PRELOAD and the like on this node.
        reason = envnames.invocation_refusal(
            [name for step in invoke.steps for name in step.env], invoke.secrets, declared
        )
        if reason:
            raise Refused(reason)
        reason = localpolicy.refusal(
            config,
            handlers=[localpolicy.handler_of(s) for s in invoke.steps],
            run_as=[s.run_as or invoke.run_as for s in invoke.steps],
            own_user=self.own_user,
            execution_timeout_s=invoke.execution_timeout_s,
        )
        if reason:
            raise Refused(reason)
        return invoke

    def _from_signed_document(self, invoke: protocol.Invoke, trusted: list[str]) -> protocol.Invoke:
        doc = invoke.document
        if doc is None or not doc.signatures:
            raise Refused(
                "security.require_signed_documents is true and this command's document "
                f"({invoke.document_name}) is not signed: inline scripts are refused here."
            )
        if signing.trusted_signer(doc.signatures, doc.content, trusted) is None:
            raise Refused(
                "security.require_signed_documents is true and no signature on "
                f"{doc.name} is valid from a key in security.trusted_publishers (changed "
                "after signing, or signed by someone else)."
            )
        try:
            params = documents.bind_parameters(doc.content, invoke.parameters)
            steps = documents.resolve_steps(
                doc.content,
                params,
                documents.StepOptions(run_as=invoke.run_as, args=invoke.arguments),
            )
        except FleetrunError as exc:
            raise Refused(
                f"The signed document does not take these parameters: {exc.message}"
            ) from None
        return protocol.replace(invoke, steps=steps)

    async def _execute(self, execution: Execution) -> None:
        invocation_id = execution.invoke.invocation_id
        # this task's log lines name the invocation (a task has its own context)
        logs.scope(command_id=execution.invoke.command_id, invocation_id=invocation_id)
        try:
            outcome, exit_code = await execution.run()
            self.audit.record(execution.invoke, outcome=outcome, exit_code=exit_code)
            self.stats.finished(outcome)
            log.info("invocation %s finished: %s (exit code %s)", invocation_id, outcome, exit_code)
        except Exception:
            log.exception("invocation %s failed inside the agent", invocation_id)
            execution.outbox.state(
                step=None,
                status=InvocationStatus.FAILED,
                detail=StatusDetail.FAILED,
                ended_at=time.time(),
                message="The agent failed while running this invocation.",
            )
            self.stats.finished("Failed")
            execution.entry.state = "finished"
            self.journal.save(execution.entry)
            self._ready.set()
        finally:
            self.executions.pop(invocation_id, None)
            self.containment.tidy(keep=set(self.executions))

    def _received(self, frame: protocol.Received) -> None:
        outbox = self.outboxes.get(frame.invocation_id)
        if outbox is None:
            return
        outbox.ack(frame.seq)
        if outbox.done and frame.invocation_id not in self.executions:
            self._complete(frame.invocation_id)
        self._ready.set()

    def _outbox(self, invocation_id: str) -> Outbox:
        outbox = self.outboxes.get(invocation_id)
        if outbox is None:
            outbox = Outbox(spool_path(self.state.spool_dir, invocation_id), invocation_id)
            self.outboxes[invocation_id] = outbox
        return outbox

    def _complete(self, invocation_id: str) -> None:
        """The server has stored everything: forget the spool, keep the id."""
        outbox = self.outboxes.pop(invocation_id)
        outbox.close(delete=True)
        entry = self.journal.get(invocation_id)
        if entry is not None:
            entry.state = "reported"
            self.journal.save(entry)

    # -- frames to the server ---------------------------------------------------

    async def watch_config(self, send: Send, interval_s: float = 2.0) -> None:
        """Tell the server when the local configuration changes (it shows it read-only)."""
        reported = self.config.report()  # what the hello carried
        while True:
            await asyncio.sleep(interval_s)
            self.config.refresh()
            current = self.config.report()
            if current != reported:
                await send(protocol.dump(protocol.Config(local_config=current)))
                reported = current

    async def uplink(self, send: Send) -> None:
        """Send spooled frames for as long as the session lasts."""
        for outbox in self.outboxes.values():
            outbox.rewind()
        while True:
            self._ready.clear()
            for outbox in list(self.outboxes.values()):
                for line in outbox.take(WINDOW - outbox.in_flight):
                    await send(line)
            await self._ready.wait()

    async def shutdown(self) -> None:
        """Stop running scripts (all of each one's processes); the next start reports
        them as interrupted (AgentRestarted) instead of running them again."""
        running = [e for e in self.journal.unreported() if e.state in ("accepted", "running")]
        for entry in running:
            if entry.pgid:
                self.containment.terminate(entry.invocation_id, entry.pgid)
        if running:
            await asyncio.sleep(min(self.options.stop_grace_s, 2.0))
            for entry in running:
                self.containment.kill(entry.invocation_id, entry.pgid)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for entry in running:
            await self.containment.settle(entry.invocation_id)
        self.containment.close()
