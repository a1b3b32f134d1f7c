"""Agent-channel frames: microseconds to read (parse) and write (dump) one frame.

    python bench/frames.py [--frames 50000] [--repeat 5]

Pure CPU, no server: the gateway parses every output and state frame thousands of agents
send, so this is a floor under the server's cost per invocation. Prints the median of
`repeat` runs for an output frame (96 bytes of output), a final state frame and an invoke.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import _common  # noqa: F401  (puts the repository on sys.path)

from fleetrun.core import protocol

OUTPUT = protocol.Output(
    invocation_id="0" * 36, seq=12, step=0, stream="stdout", data=protocol.encode(b"hi\n" * 32)
)
STATE = protocol.State(
    invocation_id="0" * 36, seq=13, status="Success", exit_code=0, started_at=1.0, ended_at=2.0
)
INVOKE = protocol.Invoke(
    invocation_id="0" * 36,
    command_id="1" * 36,
    document_name="RunShellScript",
    steps=[protocol.Step(name="run", action="runShellScript", script="echo hi")],
    execution_timeout_s=3600.0,
)


def per_call_us(call: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"frames: {args.frames} per run, median of {args.repeat} runs")
    for name, frame in (("output", OUTPUT), ("state", STATE), ("invoke", INVOKE)):
        text = protocol.dump(frame)
        parse = statistics.median(
            per_call_us(partial(protocol.parse, text), args.frames) for _ in range(args.repeat)
        )
        dump = statistics.median(
            per_call_us(partial(protocol.dump, frame), args.frames) for _ in range(args.repeat)
        )
        print(f"  {name:8} parse {parse:6.2f} us   dump {dump:6.2f} us   ({len(text)} bytes)")


if __name__ == "__main__":
    main()
