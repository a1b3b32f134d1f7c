"""Running one invocation: its steps as child processes, in order.

Each step is a script file run by its interpreter, as a child process in its own
process group (`start_new_session`) and, where the agent manages cgroups, in its
invocation's cgroup (entered by the child before it drops privileges and executes
the script), with no stdin. Its stdout and stderr are read as they come and spooled
as numbered frames. A timeout or a cancel sends SIGTERM to the whole group (and every
process of the cgroup), then SIGKILL to all of them after a grace period, so no
descendant survives (procs.py says how, and where only process groups are at hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fleetrun.agent import facts
from fleetrun.agent.batching import OutputBatcher
from fleetrun.agent.cgroups import enter_cgroup
from fleetrun.agent.download import DownloadError, fetch_script
from fleetrun.agent.journal import Entry, Journal, Outbox, Stream, process_start_time
from fleetrun.agent.procs import Containment, ProcessGroups
from fleetrun.core import protocol
from fleetrun.core.documents import platform_type, precondition_holds
from fleetrun.core.masking import Masker
from fleetrun.core.sealing import SealError, unseal
from fleetrun.core.statuses import InvocationStatus, StatusDetail, StepStatus, invocation_outcome

log = logging.getLogger(__name__)

PIPE_DRAIN_S = 2.0  # after a step exits, how long a background child may hold its pipes


DETAILS = {
    InvocationStatus.SUCCESS: StatusDetail.SUCCESS,
    InvocationStatus.FAILED: StatusDetail.FAILED,
    InvocationStatus.TIMED_OUT: StatusDetail.EXECUTION_TIMED_OUT,
    InvocationStatus.CANCELLED: StatusDetail.CANCELLED,
}


class StepFailure(Exception):
    """A step could not even start: the message says why."""


@dataclass
class StepResult:
    status: StepStatus
    exit_code: int | None
    message: str | None = None


def interpreter(action: str, script: Path, text: str) -> list[str]:
    if action == "runShellScript":
        return [str(script)] if text.startswith("#!") else ["/bin/sh", str(script)]
    if action == "runPythonScript":
        python = shutil.which("python3") or shutil.which("python")
        if python is None:
            raise StepFailure("python3 is not installed on this node.")
        return [python, str(script)]
    if action == "runPowerShellScript":
        pwsh = shutil.which("pwsh") or shutil.which("powershell")
        if pwsh is None:
            raise StepFailure("PowerShell (pwsh) is not installed on this node.")
        return [pwsh, "-NoLogo", "-NoProfile", "-NonInteractive", "-File", str(script)]
    raise StepFailure(
        f"Unknown action {action!r}: this agent runs runShellScript, "
        "runPythonScript and runPowerShellScript."
    )


SUFFIX = {"runShellScript": ".sh", "runPythonScript": ".py", "runPowerShellScript": ".ps1"}


class Execution:
    def __init__(
        self,
        invoke: protocol.Invoke,
        entry: Entry,
        journal: Journal,
        outbox: Outbox,
        work_dir: Path,
        *,
        node_id: str,
        stop_grace_s: float,
        on_output: Callable[[], None],
        seal_key: X25519PrivateKey | None = None,
        containment: Containment | None = None,
    ) -> None:
        self.invoke = invoke
        self.containment = containment or ProcessGroups()
        self.seal_key = seal_key
        self._secret_env: dict[str, str] = {}
        self._secret_args: list[str] = []
        self.entry = entry
        self.journal = journal
        self.outbox = outbox
        self.work_dir = work_dir / invoke.invocation_id
        self.node_id = node_id
        self.stop_grace_s = stop_grace_s
        self.on_output = on_output
        self._cancel = asyncio.Event()
        self._extra_dirs: list[Path] = []

    def cancel(self) -> None:
        self._cancel.set()

    async def run(self) -> tuple[str, int | None]:
        """Run every step; the invocation's status and exit code."""
        started = time.time()
        self.outbox.state(step=None, status=InvocationStatus.IN_PROGRESS, started_at=started)
        self.on_output()
        deadline = time.monotonic() + self.invoke.execution_timeout_s
        results: list[StepResult] = []
        stop = False
        try:
            self._open_secrets()
        except StepFailure as exc:
            results.append(StepResult(StepStatus.FAILED, None, str(exc)))
            stop = True
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            for idx, step in enumerate(self.invoke.steps):
                if stop or self._cancel.is_set():
                    self.outbox.state(step=idx, status=StepStatus.SKIPPED)
                    continue
                result = await self._run_step(idx, step, deadline)
                results.append(result)
                if result.status not in (StepStatus.SUCCESS, StepStatus.SKIPPED) and (
                    step.on_failure == "exit" or result.status != StepStatus.FAILED
                ):
                    stop = True  # a time-out or a cancel always ends the run
        finally:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            for path in self._extra_dirs:
                shutil.rmtree(path, ignore_errors=True)
        return self._finish(started, results)

    def _open_secrets(self) -> None:
        """Unseal this invocation's secrets, in memory only."""
        if not (self.invoke.secrets or self.invoke.secret_args):
            return
        if self.seal_key is None:
            raise StepFailure("This node has no sealing key: register it again to receive secrets.")
        try:
            for name, sealed in self.invoke.secrets.items():
                context = f"{self.node_id}:{name}".encode()
                self._secret_env[name] = unseal(self.seal_key, sealed, context=context).decode()
            for index, sealed in enumerate(self.invoke.secret_args):
                context = f"{self.node_id}:arg:{index}".encode()
                self._secret_args.append(unseal(self.seal_key, sealed, context=context).decode())
        except (SealError, UnicodeDecodeError) as exc:
            raise StepFailure(
                "A secret parameter could not be opened on this node (was it sealed to "
                "another node's key?)."
            ) from exc

    def _node_info(self, idx: int) -> StepResult:
        """Read-only, in the agent: no process, no change to the node."""
        report = json.dumps(facts.node_info(), indent=2, sort_keys=True) + "\n"
        self.outbox.output(idx, "stdout", report.encode())
        return StepResult(StepStatus.SUCCESS, 0)

    def _masker(self) -> Masker:
        return Masker([v.encode() for v in [*self._secret_env.values(), *self._secret_args]])

    def _finish(self, started: float, results: list[StepResult]) -> tuple[str, int | None]:
        outcome = invocation_outcome(r.status for r in results)
        if self._cancel.is_set() and outcome != InvocationStatus.FAILED:
            outcome = InvocationStatus.CANCELLED
        ran = [r for r in results if r.status != StepStatus.SKIPPED]
        if outcome == InvocationStatus.SUCCESS:
            deciding = ran[-1] if ran else None
        else:
            deciding = next(
                (r for r in ran if r.status.value == outcome.value), ran[-1] if ran else None
            )
        detail = DETAILS[outcome]
        self.outbox.state(
            step=None,
            status=outcome,
            detail=detail,
            exit_code=deciding.exit_code if deciding else None,
            started_at=started,
            ended_at=time.time(),
            message=deciding.message if deciding else None,
        )
        self.entry.state = "finished"
        self.journal.save(self.entry)
        self.on_output()
        return outcome.value, deciding.exit_code if deciding else None

    async def _run_step(self, idx: int, step: protocol.Step, deadline: float) -> StepResult:
        started = time.time()
        if not precondition_holds(step.precondition, platform.system()):
            message = (
                f"Skipped: the step's precondition does not hold on "
                f"{platform_type(platform.system())}."
            )
            self.outbox.state(step=idx, status=StepStatus.SKIPPED, message=message)
            self.on_output()
            return StepResult(StepStatus.SKIPPED, None, message)
        self.outbox.state(step=idx, status=StepStatus.IN_PROGRESS, started_at=started)
        self.on_output()
        try:
            if step.action == "getNodeInfo":
                result = self._node_info(idx)
            else:
                result = await self._execute(idx, step, deadline)
        except StepFailure as exc:
            result = StepResult(StepStatus.FAILED, None, str(exc))
            self.outbox.output(idx, "stderr", (str(exc) + "\n").encode())
        self.outbox.state(
            step=idx,
            status=result.status,
            exit_code=result.exit_code,
            started_at=started,
            ended_at=time.time(),
            message=result.message,
        )
        self.on_output()
        return result

    async def _execute(self, idx: int, step: protocol.Step, deadline: float) -> StepResult:
        if step.script_uri:
            try:
                text = await asyncio.to_thread(fetch_script, step.script_uri, step.script_sha256)
            except DownloadError as exc:
                raise StepFailure(str(exc)) from exc
            step = protocol.replace(step, script=text)
        user = run_as_user(step.run_as or self.invoke.run_as)
        home = self.work_dir if user is None else self._user_dir(idx, user)
        script = home / f"{idx}{SUFFIX.get(step.action, '')}"
        fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(step.script)
        if user is not None:
            os.chown(script, user.uid, user.gid)
        argv = interpreter(step.action, script, step.script) + list(step.args) + self._secret_args
        cwd = step.working_directory or str(home)
        if not os.path.isdir(cwd):  # noqa: ASYNC240 - one stat, before the child starts
            raise StepFailure(f"The working directory {cwd} does not exist on this node.")
        env = self._environment(step, user)
        procs_file = self.containment.entry(self.invoke.invocation_id)
        if procs_file is not None:
            # The child enters the cgroup as root, then drops privileges itself.
            identity: dict[str, Any] = {
                "preexec_fn": functools.partial(_enter_as, procs_file, user)
            }
        else:
            identity = user.popen_args() if user is not None else {}
        loop = asyncio.get_running_loop()
        streams: dict[int, Stream] = {1: "stdout", 2: "stderr"}
        maskers = {1: self._masker(), 2: self._masker()}

        def emit(stream: str, data: bytes) -> None:
            self.outbox.output(idx, cast(Stream, stream), data)
            self.on_output()

        batcher = OutputBatcher(emit, now=loop.time, later=loop.call_later)

        def on_data(fd: int, data: bytes) -> None:
            batcher.add(streams[fd], maskers[fd].feed(data))  # secrets never reach the spool

        try:
            transport, proto = await loop.subprocess_exec(
                lambda: _StepProtocol(loop, on_data),
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
                **identity,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise StepFailure(f"The step could not start: {exc}.") from exc
        pid = transport.get_pid()
        self.entry.state = "running"
        self.entry.pgid = pid
        self.entry.pgid_started = process_start_time(pid)
        self.journal.save(self.entry)
        try:
            timeout = deadline - time.monotonic()
            if step.timeout_s:
                timeout = min(timeout, step.timeout_s)
            ended = await self._wait(pid, proto, max(timeout, 0))
            # Read what is left; a background child that keeps the pipes open is not
            # waited for beyond PIPE_DRAIN_S.
            await asyncio.wait(proto.pipes_closed, timeout=PIPE_DRAIN_S)
        finally:
            transport.close()
            batcher.flush()
            for fd, masker in maskers.items():
                rest = masker.flush()
                if rest:
                    self.outbox.output(idx, streams[fd], rest)
            self.on_output()
        code = transport.get_returncode()
        exit_code = 128 - code if code is not None and code < 0 else code
        if ended == "timeout":
            return StepResult(
                StepStatus.TIMED_OUT, exit_code, "The step ran past its timeout and was stopped."
            )
        if ended == "cancel":
            return StepResult(StepStatus.CANCELLED, exit_code, "Cancelled by an operator.")
        status = StepStatus.SUCCESS if exit_code == 0 else StepStatus.FAILED
        return StepResult(status, exit_code)

    def _user_dir(self, idx: int, user: RunAs) -> Path:
        """A private directory the run-as user owns (the agent's own work directory
        is not reachable for other users)."""
        path = Path(tempfile.mkdtemp(prefix=f"fleetrun-{self.invoke.invocation_id[:8]}-{idx}-"))
        os.chown(path, user.uid, user.gid)
        self._extra_dirs.append(path)
        return path

    def _environment(self, step: protocol.Step, user: RunAs | None) -> dict[str, str]:
        if user is None:
            env = dict(os.environ)
        else:
            # A clean environment for another user: theirs, plus the parameters.
            env = {k: v for k, v in os.environ.items() if k in KEPT_FOR_RUN_AS}
            env.update(
                PATH=DEFAULT_PATH,
                HOME=user.home,
                USER=user.name,
                LOGNAME=user.name,
                SHELL=user.shell,
            )
        env.update(step.env)
        env.update(self._secret_env)
        env.update(
            FLEETRUN_COMMAND_ID=self.invoke.command_id,
            FLEETRUN_INVOCATION_ID=self.invoke.invocation_id,
            FLEETRUN_NODE_ID=self.node_id,
            FLEETRUN_STEP_NAME=step.name,
        )
        return env

    async def _wait(self, pgid: int, proto: _StepProtocol, limit_s: float) -> str:
        cancelled = asyncio.ensure_future(self._cancel.wait())
        waiters: set[asyncio.Future[Any]] = {proto.exited, cancelled}
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            cancelled.cancel()
        if proto.exited in done:
            return "exited"
        reason = "cancel" if cancelled in done else "timeout"
        await self._stop_group(pgid, proto)
        return reason

    async def _stop_group(self, pgid: int, proto: _StepProtocol) -> None:
        """SIGTERM to every process of the invocation, SIGKILL after the grace period."""
        invocation_id = self.invoke.invocation_id
        self.containment.terminate(invocation_id, pgid)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proto.exited), self.stop_grace_s)
        self.containment.kill(invocation_id, pgid)
        await proto.exited
        await self.containment.settle(invocation_id)


class _StepProtocol(asyncio.SubprocessProtocol):
    """Output as it arrives, and the exit as soon as it happens (not when the pipes
    close: a background grandchild may hold them)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, on_data: Callable[[int, bytes], None]
    ) -> None:
        self.on_data = on_data
        self.exited: asyncio.Future[None] = loop.create_future()
        self.pipes_closed = {loop.create_future(), loop.create_future()}
        self._pipes = dict(zip((1, 2), self.pipes_closed, strict=True))

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.on_data(fd, data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        future = self._pipes.get(fd)
        if future is not None and not future.done():
            future.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEPT_FOR_RUN_AS = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM")


@dataclass(frozen=True)
class RunAs:
    name: str
    uid: int
    gid: int
    groups: list[int]
    home: str
    shell: str

    def popen_args(self) -> dict[str, Any]:
        """Privileges are dropped in the child, before it runs anything: groups, gid, uid."""
        return {"user": self.uid, "group": self.gid, "extra_groups": self.groups}

    def drop_to(self) -> None:
        """The same, by hand, in the child (after it entered its cgroup as root)."""
        os.setgroups(self.groups)
        os.setregid(self.gid, self.gid)
        os.setreuid(self.uid, self.uid)


def run_as_user(name: str | None) -> RunAs | None:
    """The user a step runs as (None: the agent's own user), from the password database."""
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise StepFailure(f"The run-as user {name!r} does not exist on this node.") from None
    if entry.pw_uid != os.geteuid() and os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        raise StepFailure(
            f"The agent runs as {me!r} and cannot run as {name!r}: run the agent as root to "
            "use run-as."
        )
    return RunAs(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=os.getgrouplist(entry.pw_name, entry.pw_gid),
        home=entry.pw_dir,
        shell=entry.pw_shell,
    )


def _enter_as(procs_file: bytes, user: RunAs | None) -> None:
    """In the step's child, before exec: into the invocation's cgroup, then the user."""
    enter_cgroup(procs_file)
    if user is not None:
        user.drop_to()
