"""`fleetrun-agent`: register this node, run the agent, and keep the node's last word.

    fleetrun-agent register --server URL --activation-id ID --activation-code CODE
                            (--server again for each further replica, tried in turn)
    fleetrun-agent run
    fleetrun-agent status                            running? connected? to what, since when
    fleetrun-agent config set|get|list|clear ...     the node's local configuration
    fleetrun-agent audit                             what ran here
    fleetrun-agent rotate-key                        a new identity key
    fleetrun-agent install-service [--print]         a systemd unit
    fleetrun-agent version                           its version and protocol

--state-dir (default /var/lib/fleetrun-agent, or $FLEETRUN_AGENT_STATE_DIR) and --json
are taken by the group and by every command, so several agents can share one machine.
Exit codes (docs/agent.md): 0 done; 1 failed, with one sentence saying why; 2 bad usage;
3 and 4 from `status` (not running; running but not connected); 78 from `run` when the
server will never take this agent; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from fleetrun import __version__
from fleetrun.agent import config as local_config
from fleetrun.agent import metrics, procs, rotate, service
from fleetrun.agent import status as agent_status
from fleetrun.agent.audit import AuditLog
from fleetrun.agent.cgroups import CgroupUnavailableError, locate, migrations_favoured
from fleetrun.agent.channel import Channel, TerminalError, rotate_once
from fleetrun.agent.cli_base import (
    FAILED,
    INTERRUPTED,
    SETTINGS,
    Failure,
    Group,
    Options,
    common,
    pass_options,
    say,
)
from fleetrun.agent.cli_config import config_group
from fleetrun.agent.config import ConfigError
from fleetrun.agent.daemon import Agent, AgentOptions
from fleetrun.agent.lock import AlreadyRunningError, StateLock
from fleetrun.agent.register import RegistrationError, register
from fleetrun.agent.service import ServiceError
from fleetrun.agent.state import AgentStateError, StateDir
from fleetrun.agent.tls import TransportError
from fleetrun.core import logs, protocol
from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import parse_tags

log = logging.getLogger("fleetrun.agent")


@click.group(cls=Group, context_settings=SETTINGS, no_args_is_help=False)
@click.version_option(__version__, prog_name="fleetrun-agent", message="%(prog)s %(version)s")
@common
def cli() -> None:
    """The fleetrun node agent."""


def main(argv: list[str] | None = None) -> None:
    """The entry point: the one place errors become a sentence and an exit code."""
    try:
        result = cli.main(
            args=argv, prog_name="fleetrun-agent", standalone_mode=False, obj=Options()
        )
        code = result if isinstance(result, int) else 0
    except click.exceptions.Abort:
        code = INTERRUPTED
    except click.ClickException as exc:
        say(_usage(exc))
        code = exc.exit_code
    except Failure as exc:
        say(exc.message)
        code = exc.code
    except (
        RegistrationError,
        AgentStateError,
        ValidationError,
        ConfigError,
        TransportError,
        AlreadyRunningError,
        ServiceError,
        TerminalError,
    ) as exc:
        say(getattr(exc, "message", None) or str(exc))
        code = FAILED
    except CgroupUnavailableError as exc:
        say(
            f"--containment cgroup was asked for, but {exc}: run the agent as root on a "
            "machine with cgroup v2, or use --containment auto."
        )
        code = FAILED
    except OSError as exc:  # a path the operator gave that cannot be used
        say(_os_error(exc))
        code = FAILED
    except KeyboardInterrupt:
        code = INTERRUPTED
    sys.exit(code)


def _usage(exc: click.ClickException) -> str:
    """Click's complaint as one line, with where to read the usage."""
    message = exc.format_message().replace("\n", " ").strip()
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        return f"{message.rstrip('.')} (see `{ctx.command_path} --help`)."
    return message


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    reason = (exc.strerror or str(exc)).lower()
    return f"Cannot use{where}: {reason}; check the path and its permissions."


@cli.command("version")
@common
@pass_options
def version_command(opts: Options) -> int:
    """This agent's version and protocol.

    What it tells the server in each hello."""
    data = {"agent": __version__, "protocol": protocol.PROTOCOL_VERSION}
    opts.print(data, f"fleetrun-agent {__version__} (protocol {protocol.PROTOCOL_VERSION})")
    return 0


@cli.command("register")
@click.option(
    "--server",
    "servers",
    required=True,
    multiple=True,
    help="Server URL, e.g. https://host:8470; repeat it for each replica: the agent tries "
    "them in turn.",
)
@click.option("--activation-id", required=True)
@click.option("--activation-code", required=True)
@click.option("--name", default=None)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE")
@click.option("--ca-file", type=click.Path(path_type=Path), help="Trust only this CA (PEM).")
@click.option(
    "--ca-fingerprint",
    metavar="SHA256",
    help="Trust the server's CA if its SHA-256 fingerprint is this.",
)
@click.option(
    "--insecure", is_flag=True, help="Allow plain http:// to a host that is not this machine."
)
@click.option("--force", is_flag=True, help="Replace an existing identity.")
@common
@pass_options
def register_command(
    opts: Options,
    servers: tuple[str, ...],
    activation_id: str,
    activation_code: str,
    name: str | None,
    tags: tuple[str, ...],
    ca_file: Path | None,
    ca_fingerprint: str | None,
    insecure: bool,
    force: bool,
) -> int:
    """Trade an activation for a node identity."""
    state = opts.state()
    identity = register(
        state,
        list(servers),
        activation_id,
        activation_code,
        name=name,
        tags=parse_tags(list(tags)),
        force=force,
        ca_file=ca_file,
        ca_fingerprint=ca_fingerprint,
        insecure=insecure,
    )
    opts.print(
        {"node_id": identity.node_id, "name": identity.name},
        f"Registered node {identity.node_id} ({identity.name}) with {identity.server}.\n"
        f"Start the agent with: fleetrun-agent run --state-dir {state.root}",
    )
    return 0


@cli.command("status")
@common
@pass_options
def status_command(opts: Options) -> int:
    """Is the agent running and connected, to what, since when.

    Also this node's identity, its local configuration's health and how invocations
    are contained. Exit 0: connected; 4: running but not connected (the last error
    says why); 3: not running."""
    state = opts.state()
    identity = state.load_identity()
    try:
        local_config.load(state.config_path)
        config = "ok"
    except ConfigError as exc:
        config = f"cannot be read ({exc}): this node refuses everything until it is repaired"
    now = agent_status.read(state.root)
    data: dict[str, object] = {
        "node_id": identity.node_id,
        "name": identity.name,
        "server": identity.server,
        "servers": list(identity.servers),
        "running": now.running,
        "config": config,
        **_containment(identity.node_id, now.pid if now.running else None),
        **now.report(),
    }
    if now.record is not None:
        data["server"] = now.record.server  # the URL the running agent talks to
    shown = {k: v for k, v in data.items() if v is not None}
    opts.print(data, "\n".join(f"{k}: {_said(v)}" for k, v in shown.items()))
    return now.exit_code


def _said(value: object) -> object:
    """A value as the text output says it: yes/no, not Python's True/False."""
    return ("yes" if value else "no") if isinstance(value, bool) else value


def _containment(node_id: str, pid: int | None) -> dict[str, str]:
    """How the running agent (or, if none runs, the next one) holds and kills an
    invocation's processes."""
    if pid is not None:
        method = procs.CGROUP if procs.in_use(pid, node_id) else procs.PROCESS_GROUP
    else:
        try:
            locate(node_id)
        except CgroupUnavailableError as exc:
            return {"containment": procs.PROCESS_GROUP, "containment_reason": str(exc)}
        method = procs.CGROUP
    if method != procs.CGROUP:
        return {"containment": method}
    # Whether starting a step costs a kernel-wide synchronisation (docs/security.md).
    favoured = migrations_favoured()
    if favoured is None:
        return {"containment": method}
    return {"containment": method, "cgroup_favordynmods": "yes" if favoured else "no"}


cli.add_command(config_group)


@cli.command("audit")
@click.option("--limit", type=int, default=None, help="Only the last N.")
@common
@pass_options
def audit_command(opts: Options, limit: int | None) -> int:
    """What ran on this node."""
    rows = AuditLog(opts.state().audit_path).entries(limit)
    if opts.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        extra = (
            f" refused: {row['refused_by']}"
            if row.get("refused_by")
            else f" exit {row.get('exit_code')}"
        )
        print(
            f"{row['time']}  {row['outcome']:<10} {row['document']}  command {row['command_id']}"
            f"  by {row.get('principal') or '-'}  as {row.get('run_as') or '(agent)'}"
            f"  sha256:{row['content_hash'][:16]}{extra}"
        )
    if not rows:
        print("Nothing has run on this node yet.", file=sys.stderr)
    return 0


@cli.command("rotate-key")
@click.option("--timeout", type=float, default=60.0, metavar="SECONDS")
@common
@pass_options
def rotate_command(opts: Options, timeout: float) -> int:
    """Replace this node's identity key."""
    state = opts.state()
    identity = state.load_identity()
    public_key = rotate.request(state)
    if StateLock(state.root / agent_status.LOCK_NAME).held_elsewhere():
        if not rotate.wait_done(state, timeout):
            raise AgentStateError(
                f"The running agent did not rotate its key within {timeout:.0f}s (is it "
                "connected?); it will when it next connects."
            )
    else:
        asyncio.run(rotate_once(state))  # no agent is running: a session just for this
    opts.print(
        {"node_id": identity.node_id, "public_key": public_key},
        f"Rotated the identity key of {identity.node_id}; the old key no longer works.",
    )
    return 0


@cli.command("install-service")
@click.option(
    "--print", "--dry-run", "print_", is_flag=True, help="Only print the unit, write nothing."
)
@click.option("--unit-dir", type=click.Path(path_type=Path), default=Path("/etc/systemd/system"))
@common
@pass_options
def install_command(opts: Options, print_: bool, unit_dir: Path) -> int:
    """Write a systemd unit for the agent."""
    state = opts.state()
    try:
        server: str | None = state.load_identity().server
    except AgentStateError:  # not registered yet: the unit is the same but for its link
        server = None
    unit = service.unit(state.root, server)
    if print_:
        if opts.json:
            opts.print({"unit": None, "text": unit}, "")
        else:
            print(unit, end="")
        return 0
    path = service.install(unit, unit_dir)
    opts.print(
        {"unit": str(path), "text": unit},
        f"Wrote {path}. Enable and start it with:\n"
        "  systemctl daemon-reload && systemctl enable --now fleetrun-agent",
    )
    return 0


@dataclass(frozen=True)
class RunOptions:
    reconnect_max: float
    stop_grace: float
    containment: str


@cli.command("run")
@click.option(
    "--reconnect-max",
    type=float,
    default=30.0,
    metavar="SECONDS",
    help="Longest wait between reconnection attempts.",
)
@click.option(
    "--stop-grace",
    type=float,
    default=5.0,
    metavar="SECONDS",
    help="SIGTERM to SIGKILL grace for timeouts and cancels.",
)
@click.option(
    "--containment",
    type=click.Choice(procs.MODES),
    default="auto",
    help="How an invocation's processes are held and killed: a cgroup v2 per invocation "
    "where the agent can manage one (auto), or process groups.",
)
@click.option("--log-level", default="info")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default=None,
    help="Log lines as text, or one JSON object each (default: $FLEETRUN_LOG_FORMAT or text).",
)
@click.option(
    "--metrics-address",
    metavar="HOST:PORT",
    default=None,
    help="Serve Prometheus metrics here, e.g. 127.0.0.1:9471 (default: "
    f"${metrics.ADDRESS_ENV}, else off).",
)
@common
@pass_options
def run_command(
    opts: Options,
    reconnect_max: float,
    stop_grace: float,
    containment: str,
    log_level: str,
    log_format: str | None,
    metrics_address: str | None,
) -> int:
    """Run the agent (foreground)."""
    log_format = log_format or os.environ.get("FLEETRUN_LOG_FORMAT") or "text"
    if log_format not in logs.FORMATS:  # from the environment
        raise ValidationError(f"FLEETRUN_LOG_FORMAT must be text or json, not {log_format!r}.")
    metrics_address = metrics_address or os.environ.get(metrics.ADDRESS_ENV) or None
    if metrics_address:
        metrics.parse_address(metrics_address)  # refused before anything starts
    logs.configure(log_level, log_format)
    state = opts.state()
    lock = StateLock(state.root / agent_status.LOCK_NAME)
    logs.scope(node_id=state.load_identity().node_id)  # every line of this agent names its node
    lock.acquire()
    try:
        run = RunOptions(reconnect_max, stop_grace, containment)
        return asyncio.run(run_agent(state, run, metrics_address))
    except TerminalError as exc:
        # under systemd: a status of its own, so that the unit does not restart an agent
        # the server will never take (service.py)
        raise Failure(str(exc), service.EXIT_TERMINAL) from exc
    finally:
        lock.release()


async def run_agent(state: StateDir, run: RunOptions, metrics_address: str | None) -> int:
    identity = state.load_identity()
    containment = procs.choose(run.containment, identity.node_id)
    if containment.method == procs.PROCESS_GROUP:
        log.warning(
            "invocations are held by process groups (%s): a child that calls setsid and "
            "clears its environment can outlive a cancel",
            containment.detail,
        )
    else:
        log.info("each invocation runs in its own cgroup under %s", containment.detail)
        if migrations_favoured() is False:
            log.info(
                "the cgroup v2 hierarchy is mounted without favordynmods: each step waits "
                "for the kernel to move it into its cgroup (about 10 ms); see the agent's "
                "cgroups in docs/security.md"
            )
    agent = Agent(state, identity.node_id, AgentOptions(stop_grace_s=run.stop_grace), containment)
    await agent.recover()
    channel = Channel(agent, identity, state.load_key(), reconnect_max_s=run.reconnect_max)
    exporter = None
    if metrics_address:
        exporter = metrics.serve(
            metrics_address,
            agent.stats,
            connected=channel.connected.is_set,
            running=lambda: len(agent.executions),
        )
        log.info("metrics on http://%s/metrics", metrics_address)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(channel.run_forever())
    stopper = asyncio.create_task(stop.wait())
    log.info("fleetrun-agent %s starting as node %s", __version__, identity.node_id)
    done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    runner.cancel()
    stopper.cancel()
    await asyncio.gather(runner, stopper, return_exceptions=True)
    await agent.shutdown()
    if exporter is not None:
        exporter.shutdown()
    if runner in done and runner.exception() is not None:
        raise runner.exception()  # type: ignore[misc]
    log.info("fleetrun-agent stopped")
    return 0
