"""Live output latency: a line printed on a node -> the same line read from the
server's live stream (`iter_output(..., follow=True)`).

    python bench/live_output.py [--lines 100] [--interval 0.1] [--burst 0]

Starts a real server (SQLite, or PostgreSQL with FLEETRUN_TEST_DATABASE_URL) and one
real agent on loopback. The script prints `--lines` lines, each carrying the time it was
printed, one every `--interval` seconds (and `--burst` filler lines between them, to see
the batching under load); the stream's reader notes when each arrives. Both ends read
the same clock. Prints p50, p90, p99 and max in milliseconds (target: under 200 ms).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import SERVER_ENV, percentile
from tests.harness import fleet

SCRIPT = """
import sys, time
for n in range({lines}):
    for _ in range({burst}):
        sys.stdout.write("filler " * 10 + "\\n")
    print("mark", time.time(), flush=True)
    time.sleep({interval})
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--burst", type=int, default=0)
    args = parser.parse_args()
    script = SCRIPT.format(lines=args.lines, interval=args.interval, burst=args.burst)
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=SERVER_ENV) as f:
        [agent] = f.add_agents(1)
        client = f.client
        command = client.send_command(
            document="RunPythonScript", parameters={"commands": script}, node_ids=[agent.node_id]
        )
        samples, pending = [], b""
        for chunk in client.iter_output(command.id, agent.node_id, follow=True):
            arrived = time.time()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.startswith(b"mark "):
                    samples.append((arrived - float(line.split()[1])) * 1000)
        db = f.server.db.kind if f.server.db else "?"
    print(
        f"live output: {len(samples)} lines, one every {args.interval:g} s with "
        f"{args.burst} filler lines between ({db}), printed -> read from the stream"
    )
    for pct in (50, 90, 99):
        print(f"  p{pct} {percentile(samples, pct):7.1f} ms")
    print(f"  max {max(samples):7.1f} ms")


if __name__ == "__main__":
    main()
