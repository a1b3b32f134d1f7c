"""`fleetrun-agent`: register this node, then run the agent.

    fleetrun-agent register --server URL --activation-id ID --activation-code CODE
    fleetrun-agent run

Every command takes --state-dir (default /var/lib/fleetrun-agent, or
$FLEETRUN_AGENT_STATE_DIR), so several agents can share one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from fleetrun import __version__
from fleetrun.agent.channel import Channel, TerminalError
from fleetrun.agent.daemon import Agent, AgentOptions
from fleetrun.agent.register import RegistrationError, register
from fleetrun.agent.state import AgentStateError, StateDir, default_state_dir
from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import parse_tags

log = logging.getLogger("fleetrun.agent")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="fleetrun-agent", description="The fleetrun node agent.")
    top.add_argument("--version", action="version", version=f"fleetrun-agent {__version__}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state-dir", type=Path, default=None, help="agent state directory")
        p.add_argument("--json", action="store_true", help="machine-readable output")

    reg = sub.add_parser("register", help="trade an activation for a node identity")
    common(reg)
    reg.add_argument("--server", required=True, help="server URL, e.g. http://host:8470")
    reg.add_argument("--activation-id", required=True)
    reg.add_argument("--activation-code", required=True)
    reg.add_argument("--name", default=None)
    reg.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    reg.add_argument("--force", action="store_true", help="replace an existing identity")

    run = sub.add_parser("run", help="run the agent (foreground)")
    common(run)
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
    run.add_argument("--log-level", default="info")

    status = sub.add_parser("status", help="show this node's identity")
    common(status)
    return top


def main(argv: list[str] | None = None) -> None:
    try:
        args = parser().parse_args(argv)
        code = dispatch(args)
    except UsageError as exc:
        print(f"fleetrun-agent: {exc}", file=sys.stderr)
        code = 2
    except (RegistrationError, AgentStateError, TerminalError, ValidationError) as exc:
        print(f"fleetrun-agent: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def dispatch(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir or default_state_dir())
    if args.command == "register":
        identity = register(
            state,
            args.server,
            args.activation_id,
            args.activation_code,
            name=args.name,
            tags=parse_tags(args.tag),
            force=args.force,
        )
        if args.json:
            print(json.dumps({"node_id": identity.node_id, "name": identity.name}))
        else:
            print(f"Registered node {identity.node_id} ({identity.name}) with {identity.server}.")
            print(f"Start the agent with: fleetrun-agent run --state-dir {state.root}")
        return 0
    if args.command == "status":
        identity = state.load_identity()
        data = {"node_id": identity.node_id, "name": identity.name, "server": identity.server}
        print(json.dumps(data) if args.json else "\n".join(f"{k}: {v}" for k, v in data.items()))
        return 0
    if args.command == "run":
        logging.basicConfig(
            level=args.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        return asyncio.run(run_agent(state, args))
    raise UsageError(f"unknown command {args.command}")


async def run_agent(state: StateDir, args: argparse.Namespace) -> int:
    identity = state.load_identity()
    key = state.load_key()
    agent = Agent(state, identity.node_id, AgentOptions(stop_grace_s=args.stop_grace))
    agent.recover()
    channel = Channel(agent, identity, key, reconnect_max_s=args.reconnect_max)
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
    if runner in done and runner.exception() is not None:
        raise runner.exception()  # type: ignore[misc]
    log.info("fleetrun-agent stopped")
    return 0
