"""End-to-end latency: SDK send -> Success visible, for `echo hi` on one local agent.

    python bench/latency.py [--runs 200]

Starts a real server (SQLite, or PostgreSQL with FLEETRUN_TEST_DATABASE_URL) and one
real agent on loopback, then prints p50, p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import SERVER_ENV, percentile
from tests.harness import fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=SERVER_ENV) as f:
        [agent] = f.add_agents(1)
        client = f.client
        samples = []
        for n in range(args.warmup + args.runs):
            started = time.perf_counter()
            command = client.send_command(script="echo hi", node_ids=[agent.node_id])
            done = client.wait(command.id, timeout_s=30)
            elapsed = (time.perf_counter() - started) * 1000
            if done.status != "Success":
                raise SystemExit(f"run {n}: {done.status}")
            if n >= args.warmup:
                samples.append(elapsed)
        db = f.server.db.kind if f.server.db else "?"
    print(f"latency: {args.runs} runs of `echo hi` on 1 agent ({db}), send -> Success visible")
    print(f"  p50 {percentile(samples, 50):7.1f} ms")
    print(f"  p90 {percentile(samples, 90):7.1f} ms")
    print(f"  p99 {percentile(samples, 99):7.1f} ms")
    print(f"  max {max(samples):7.1f} ms")


if __name__ == "__main__":
    main()
