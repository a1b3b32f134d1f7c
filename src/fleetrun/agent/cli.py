"""`fleetrun-agent`: register this node, run the agent, and keep the node's last word.

    fleetrun-agent register --server URL --activation-id ID --activation-code CODE
    fleetrun-agent run
    fleetrun-agent config set|get|list|clear ...     the node's local configuration
    fleetrun-agent audit                             what ran here
    fleetrun-agent rotate-key                        a new identity key
    fleetrun-agent install-service [--print]         a systemd unit
    fleetrun-agent version                           its version and protocol

Every command takes --state-dir (default /var/lib/fleetrun-agent, or
$FLEETRUN_AGENT_STATE_DIR), so several agents can share one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from fleetrun import __version__
from fleetrun.agent import config as local_config
from fleetrun.agent import metrics, procs, rotate, service
from fleetrun.agent.audit import AuditLog
from fleetrun.agent.cgroups import CgroupUnavailableError, locate
from fleetrun.agent.channel import Channel, TerminalError, rotate_once
from fleetrun.agent.config import BrokenConfigError, ConfigError
from fleetrun.agent.daemon import Agent, AgentOptions
from fleetrun.agent.lock import AlreadyRunningError, StateLock
from fleetrun.agent.register import RegistrationError, register
from fleetrun.agent.service import ServiceError
from fleetrun.agent.state import AgentStateError, StateDir, default_state_dir
from fleetrun.agent.tls import TransportError
from fleetrun.core import logs, protocol
from fleetrun.core.errors import ValidationError
from fleetrun.core.localpolicy import KEYS, LocalConfig
from fleetrun.core.tags import parse_tags

log = logging.getLogger("fleetrun.agent")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", type=Path, default=None, help="agent state directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="fleetrun-agent", description="The fleetrun node agent.")
    top.add_argument("--version", action="version", version=f"fleetrun-agent {__version__}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    reg = sub.add_parser("register", help="trade an activation for a node identity")
    _common(reg)
    reg.add_argument("--server", required=True, help="server URL, e.g. https://host:8470")
    reg.add_argument("--activation-id", required=True)
    reg.add_argument("--activation-code", required=True)
    reg.add_argument("--name", default=None)
    reg.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    reg.add_argument("--ca-file", type=Path, default=None, help="trust only this CA (PEM)")
    reg.add_argument(
        "--ca-fingerprint",
        default=None,
        metavar="SHA256",
        help="trust the server's CA if its SHA-256 fingerprint is this",
    )
    reg.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain http:// to a host that is not this machine",
    )
    reg.add_argument("--force", action="store_true", help="replace an existing identity")

    run = sub.add_parser("run", help="run the agent (foreground)")
    _common(run)
    run.add_argument(
        "--reconnect-max",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="longest wait between reconnection attempts",
    )
    run.add_argument(
        "--stop-grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="SIGTERM to SIGKILL grace for timeouts and cancels",
    )
    run.add_argument(
        "--containment",
        choices=procs.MODES,
        default="auto",
        help="how an invocation's processes are held and killed: a cgroup v2 per "
        "invocation where the agent can manage one (auto), or process groups",
    )
    run.add_argument("--log-level", default="info")
    run.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=os.environ.get("FLEETRUN_LOG_FORMAT") or "text",
        help="log lines as text, or one JSON object each (default: $FLEETRUN_LOG_FORMAT or text)",
    )
    run.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        default=os.environ.get(metrics.ADDRESS_ENV) or None,
        help="serve Prometheus metrics here, e.g. 127.0.0.1:9471 (default: off)",
    )

    status = sub.add_parser("status", help="show this node's identity")
    _common(status)

    cfg = sub.add_parser("config", help="the node's local configuration (only here)")
    cfg_sub = cfg.add_subparsers(dest="action", required=True, parser_class=_Parser)
    cfg_set = cfg_sub.add_parser("set", help="set KEY to VALUE (lists: comma-separated)")
    _common(cfg_set)
    cfg_set.add_argument("key")
    cfg_set.add_argument("value")
    mode = cfg_set.add_mutually_exclusive_group()
    mode.add_argument("--add", action="store_true", help="add to a list instead of replacing it")
    mode.add_argument("--remove", action="store_true", help="remove from a list")
    cfg_get = cfg_sub.add_parser("get", help="show one key")
    _common(cfg_get)
    cfg_get.add_argument("key")
    cfg_list = cfg_sub.add_parser("list", help="show every key in force")
    _common(cfg_list)
    cfg_clear = cfg_sub.add_parser("clear", help="reset KEY to its default")
    _common(cfg_clear)
    cfg_clear.add_argument("key")

    audit = sub.add_parser("audit", help="what ran on this node")
    _common(audit)
    audit.add_argument("--limit", type=int, default=None, help="only the last N")

    rot = sub.add_parser("rotate-key", help="replace this node's identity key")
    _common(rot)
    rot.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")

    ver = sub.add_parser("version", help="this agent's version and protocol")
    ver.add_argument("--json", action="store_true", help="machine-readable output")

    svc = sub.add_parser("install-service", help="write a systemd unit for the agent")
    _common(svc)
    svc.add_argument(
        "--print", "--dry-run", action="store_true", help="only print the unit, write nothing"
    )
    svc.add_argument("--unit-dir", type=Path, default=Path("/etc/systemd/system"))
    return top


def main(argv: list[str] | None = None) -> None:
    args: argparse.Namespace | None = None
    try:
        args = parser().parse_args(argv)
        code = dispatch(args)
    except UsageError as exc:
        print(f"fleetrun-agent: {exc}", file=sys.stderr)
        code = 2
    except TerminalError as exc:
        print(f"fleetrun-agent: {exc}", file=sys.stderr)
        # `run` under systemd: a distinct status, so that the unit does not restart an
        # agent the server will never take (service.py).
        running = args is not None and args.command == "run"
        code = service.EXIT_TERMINAL if running else 1
    except (
        RegistrationError,
        AgentStateError,
        ValidationError,
        ConfigError,
        TransportError,
        AlreadyRunningError,
        ServiceError,
    ) as exc:
        message = getattr(exc, "message", None) or str(exc)
        print(f"fleetrun-agent: {message}", file=sys.stderr)
        code = 1
    except CgroupUnavailableError as exc:
        message = (
            f"--containment cgroup was asked for, but {exc}: run the agent as root on a "
            "machine with cgroup v2, or use --containment auto."
        )
        print(f"fleetrun-agent: {message}", file=sys.stderr)
        code = 1
    except OSError as exc:  # a path the operator gave that cannot be used
        print(f"fleetrun-agent: {_os_error(exc)}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _os_error(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    reason = (exc.strerror or str(exc)).lower()
    return f"Cannot use{where}: {reason}; check the path and its permissions."


def _print(args: argparse.Namespace, data: object, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "version":
        return _version(args)
    state = StateDir(args.state_dir or default_state_dir())
    handler = {
        "register": _register,
        "status": _status,
        "run": _run,
        "config": _config,
        "audit": _audit,
        "rotate-key": _rotate,
        "install-service": _install,
    }[args.command]
    return handler(state, args)


def _version(args: argparse.Namespace) -> int:
    """What the agent tells the server in each hello: its release and protocol."""
    data = {"agent": __version__, "protocol": protocol.PROTOCOL_VERSION}
    _print(args, data, f"fleetrun-agent {__version__} (protocol {protocol.PROTOCOL_VERSION})")
    return 0


def _register(state: StateDir, args: argparse.Namespace) -> int:
    identity = register(
        state,
        args.server,
        args.activation_id,
        args.activation_code,
        name=args.name,
        tags=parse_tags(args.tag),
        force=args.force,
        ca_file=args.ca_file,
        ca_fingerprint=args.ca_fingerprint,
        insecure=args.insecure,
    )
    _print(
        args,
        {"node_id": identity.node_id, "name": identity.name},
        f"Registered node {identity.node_id} ({identity.name}) with {identity.server}.\n"
        f"Start the agent with: fleetrun-agent run --state-dir {state.root}",
    )
    return 0


def _status(state: StateDir, args: argparse.Namespace) -> int:
    identity = state.load_identity()
    try:
        local_config.load(state.config_path)
        config = "ok"
    except ConfigError as exc:
        config = f"cannot be read ({exc}): this node refuses everything until it is repaired"
    lock = StateLock(state.root / "agent.lock")
    running = lock.held_elsewhere()
    data: dict[str, object] = {
        "node_id": identity.node_id,
        "name": identity.name,
        "server": identity.server,
        "running": running,
        "config": config,
        **_containment(identity.node_id, lock.holder() if running else None),
    }
    _print(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0


def _containment(node_id: str, pid: int | None) -> dict[str, str]:
    """How the running agent (or, if none runs, the next one) holds and kills an
    invocation's processes."""
    if pid is not None:
        method = procs.CGROUP if procs.in_use(pid, node_id) else procs.PROCESS_GROUP
        return {"containment": method}
    try:
        locate(node_id)
    except CgroupUnavailableError as exc:
        return {"containment": procs.PROCESS_GROUP, "containment_reason": str(exc)}
    return {"containment": procs.CGROUP}


def _config(state: StateDir, args: argparse.Namespace) -> int:
    path = state.config_path
    if args.action in ("set", "clear"):
        if args.action == "set":
            change = local_config.set_value(
                path, args.key, args.value, add=args.add, remove=args.remove
            )
            text = f"{args.key} = {_show(change.get(args.key))}"
        else:
            change = local_config.clear_value(path, args.key)
            text = f"{args.key} reset to {_show(change.get(args.key))}"
        if change.replaced_broken:
            print(
                f"fleetrun-agent: the old file could not be read ({change.replaced_broken}); "
                f"it is kept as {local_config.broken_path(path)} and {path} now holds only "
                "what was set since.",
                file=sys.stderr,
            )
        _print(args, {args.key: change.get(args.key)}, text)
    elif args.action == "get":
        if args.key not in KEYS:
            raise ValidationError(
                f"{args.key!r} is not a configuration key: see `fleetrun-agent config list`."
            )
        effective = _readable(path).effective()
        _print(args, {args.key: effective[args.key]}, _show(effective[args.key]))
    else:
        effective = _readable(path).effective()
        width = max(len(k) for k in KEYS)
        lines = [f"{k:<{width}}  {_show(effective[k]):<40}  {KEYS[k].help}" for k in KEYS]
        _print(args, effective, "\n".join(lines))
    return 0


def _readable(path: Path) -> LocalConfig:
    """The configuration, or a ConfigError that says the node refuses everything and
    how to repair the file."""
    try:
        return local_config.load(path)
    except BrokenConfigError as exc:
        raise ConfigError(
            f"The local configuration cannot be read ({exc}), so this node refuses "
            "everything: fix the file, or overwrite it with `fleetrun-agent config set KEY "
            "VALUE` or `fleetrun-agent config clear KEY`."
        ) from exc


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return "(not set)" if value is None else str(value)


def _audit(state: StateDir, args: argparse.Namespace) -> int:
    rows = AuditLog(state.audit_path).entries(args.limit)
    if args.json:
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


def _rotate(state: StateDir, args: argparse.Namespace) -> int:
    identity = state.load_identity()
    public_key = rotate.request(state)
    if StateLock(state.root / "agent.lock").held_elsewhere():
        if not rotate.wait_done(state, args.timeout):
            raise AgentStateError(
                f"The running agent did not rotate its key within {args.timeout:.0f}s (is it "
                "connected?); it will when it next connects."
            )
    else:
        asyncio.run(rotate_once(state))  # no agent runs: a session just for this
    _print(
        args,
        {"node_id": identity.node_id, "public_key": public_key},
        f"Rotated the identity key of {identity.node_id}; the old key no longer works.",
    )
    return 0


def _install(state: StateDir, args: argparse.Namespace) -> int:
    try:
        server: str | None = state.load_identity().server
    except AgentStateError:  # not registered yet: the unit is the same but for its link
        server = None
    unit = service.unit(state.root, server)
    if args.print:
        if args.json:
            _print(args, {"unit": None, "text": unit}, "")
        else:
            print(unit, end="")
        return 0
    path = service.install(unit, args.unit_dir)
    _print(
        args,
        {"unit": str(path), "text": unit},
        f"Wrote {path}. Enable and start it with:\n"
        "  systemctl daemon-reload && systemctl enable --now fleetrun-agent",
    )
    return 0


def _run(state: StateDir, args: argparse.Namespace) -> int:
    if args.log_format not in logs.FORMATS:  # from the environment
        raise ValidationError(f"FLEETRUN_LOG_FORMAT must be text or json, not {args.log_format!r}.")
    if args.metrics_address:
        metrics.parse_address(args.metrics_address)  # refused before anything starts
    logs.configure(args.log_level, args.log_format)
    lock = StateLock(state.root / "agent.lock")
    logs.scope(node_id=state.load_identity().node_id)  # every line of this agent names its node
    lock.acquire()
    try:
        return asyncio.run(run_agent(state, args))
    finally:
        lock.release()


async def run_agent(state: StateDir, args: argparse.Namespace) -> int:
    identity = state.load_identity()
    containment = procs.choose(args.containment, identity.node_id)
    if containment.method == procs.PROCESS_GROUP:
        log.warning(
            "invocations are held by process groups (%s): a child that calls setsid and "
            "clears its environment can outlive a cancel",
            containment.detail,
        )
    else:
        log.info("each invocation runs in its own cgroup under %s", containment.detail)
    options = AgentOptions(stop_grace_s=args.stop_grace)
    agent = Agent(state, identity.node_id, options, containment)
    await agent.recover()
    channel = Channel(agent, identity, state.load_key(), reconnect_max_s=args.reconnect_max)
    exporter = None
    if args.metrics_address:
        exporter = metrics.serve(
            args.metrics_address,
            agent.stats,
            connected=channel.connected.is_set,
            running=lambda: len(agent.executions),
        )
        log.info("metrics on http://%s/metrics", args.metrics_address)
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
