"""Run command latency: PUT (a changed script) -> instance view Succeeded, on one agent.

    python bench/run_command_latency.py [--runs 100]

Starts a real server (SQLite, or PostgreSQL with FLEETRUN_TEST_DATABASE_URL) and one
real agent on loopback; each PUT changes the script so it runs, and the instance view
is polled every 10 ms. Prints p50, p90, p99 and max in milliseconds.
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
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=SERVER_ENV) as f:
        [agent] = f.add_agents(1)
        client = f.client
        samples = []
        for n in range(args.warmup + args.runs):
            started = time.perf_counter()
            client.put_run_command(agent.node_id, "bench", script=f"echo hi {n}")
            done = client.wait_run_command(agent.node_id, "bench", timeout_s=30, poll_s=0.01)
            elapsed = (time.perf_counter() - started) * 1000
            if done.instanceView.executionState != "Succeeded":
                raise SystemExit(f"run {n}: {done.instanceView}")
            if n >= args.warmup:
                samples.append(elapsed)
        db = f.server.db.kind if f.server.db else "?"
    print(f"run command: {args.runs} PUTs of `echo hi N` on 1 agent ({db}), PUT -> Succeeded")
    print(f"  p50 {percentile(samples, 50):7.1f} ms")
    print(f"  p90 {percentile(samples, 90):7.1f} ms")
    print(f"  p99 {percentile(samples, 99):7.1f} ms")
    print(f"  max {max(samples):7.1f} ms")


if __name__ == "__main__":
    main()
