"""The single-file agent's entry point (`python3 fleetrun-agent.pyz ...`).

The archive holds the agent's own code. Its dependencies (msgspec, websockets,
cryptography, tomli-w, click) include compiled extensions, which Python cannot import
from inside a zip, so they live in a directory beside the archive: `fleetrun-agent-deps`
next to it, or the directory $FLEETRUN_AGENT_DEPS names. Packages the system Python
already has are used when that directory is absent.
"""

import os
import sys

DEPS_ENV = "FLEETRUN_AGENT_DEPS"


def _deps_dir() -> str:
    archive = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get(DEPS_ENV) or os.path.join(os.path.dirname(archive), "fleetrun-agent-deps")


def main() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (a system Python may be older)
        sys.exit("fleetrun-agent: needs Python 3.11 or newer; run the archive with one.")
    deps = _deps_dir()
    if os.path.isdir(deps):
        sys.path.insert(1, deps)
    try:
        import click  # noqa: F401
        import cryptography  # noqa: F401
        import msgspec  # noqa: F401
        import tomli_w  # noqa: F401
        import websockets  # noqa: F401
    except ImportError as exc:
        sys.exit(
            f"fleetrun-agent: {exc.name} is missing: put the fleetrun-agent-deps directory "
            f"built with this archive beside it (looked in {deps}), or set {DEPS_ENV}."
        )
    from fleetrun.agent.cli import main as agent_main

    agent_main()


main()
