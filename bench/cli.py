"""CLI start-up: wall time of `fleetrun --version`, `fleetrun --help` and
`fleetrun nodes list` (against a real server with a few enrolled nodes).

    python bench/cli.py [--runs 10]

Each figure is a whole process, as an operator's shell runs it; prints min, median and
max in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import SERVER_ENV, median
from tests.harness import fleet

FLEETRUN = [sys.executable, "-m", "fleetrun"]


def timed(args: list[str], runs: int, env: dict[str, str]) -> list[float]:
    samples = []
    for _ in range(runs + 1):  # the first warms the page cache
        started = time.perf_counter()
        subprocess.run([*FLEETRUN, *args], check=True, capture_output=True, env=env)
        samples.append((time.perf_counter() - started) * 1000)
    return samples[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    rows = []
    env = dict(os.environ)
    rows.append(("fleetrun --version", timed(["--version"], args.runs, env)))
    rows.append(("fleetrun --help", timed(["--help"], args.runs, env)))
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=SERVER_ENV) as f:
        f.add_agents(3, start=False)
        env = {**env, "FLEETRUN_SERVER": f.server.url, "FLEETRUN_TOKEN": f.server.token}
        rows.append(("fleetrun nodes list", timed(["nodes", "list"], args.runs, env)))
    print(f"cli: wall time of a whole process, {args.runs} runs each (ms)")
    print(f"{'command':<24} {'min':>8} {'median':>8} {'max':>8}")
    for name, samples in rows:
        print(f"{name:<24} {min(samples):8.0f} {median(samples):8.0f} {max(samples):8.0f}")


if __name__ == "__main__":
    main()
