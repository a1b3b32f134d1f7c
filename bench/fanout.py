"""Fan-out: time from send until one command has finished on N local agents, and
the resident memory of the server and of one agent.

    python bench/fanout.py --agents 50 [--repeat 3] [--max-concurrency 50] [--max-errors 0]

With --compare-rate-control it also times the same command with concurrency at
100%, to show what the limits cost.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import SERVER_ENV, median, rss_mb
from tests.harness import fleet

from fleetrun.sdk import Client


def timed(
    client: Client, args: argparse.Namespace, max_concurrency: str | None
) -> tuple[list[float], int]:
    """Send the command `repeat` times; the times, and the concurrency limit applied."""
    times, limit = [], 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        command = client.send_command(
            script=args.script,
            tags={"bench": "fanout"},
            max_concurrency=max_concurrency,
            max_errors=args.max_errors,
        )
        done = client.wait(command.id, timeout_s=600)
        times.append(time.perf_counter() - t0)
        assert done.status == "Success", done
        assert done.completed_count == args.agents, done
        limit = command.concurrency_limit or 0
    return times, limit


def runs(times: list[float]) -> str:
    return ", ".join(f"{t * 1000:.0f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="commands to time (median shown)")
    parser.add_argument("--script", default="echo hi")
    parser.add_argument("--max-concurrency", default=None, help="N or P%% (server default 50)")
    parser.add_argument("--max-errors", default=None, help="N or P%% (server default 0)")
    parser.add_argument(
        "--compare-rate-control",
        action="store_true",
        help="also time 100%% concurrency, to show the cost of the limits",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=SERVER_ENV) as f:
        started = time.perf_counter()
        agents = f.add_agents(args.agents, tags={"bench": "fanout"})
        enrol_s = time.perf_counter() - started
        times, limit = timed(f.client, args, args.max_concurrency)
        unlimited = timed(f.client, args, "100%")[0] if args.compare_rate_control else None
        assert f.server.proc is not None
        assert agents[0].proc is not None
        server_mb = rss_mb(f.server.proc.pid)
        agent_mb = rss_mb(agents[0].proc.pid)
        db = f.server.db.kind if f.server.db else "?"
    print(f"fanout: {args.agents} agents ({db}), `{args.script}`, {args.repeat} command(s)")
    print(
        f"  limits           max concurrency {args.max_concurrency or '50 (default)'} -> "
        f"{limit} at once, max errors {args.max_errors or '0 (default)'}"
    )
    print(f"  enrol + connect  {enrol_s:8.2f} s")
    print(f"  send -> done     {median(times) * 1000:8.1f} ms median (runs: {runs(times)} ms)")
    if unlimited is not None:
        print(
            f"  100% concurrency {median(unlimited) * 1000:8.1f} ms median (runs: {runs(unlimited)} ms)"
        )
        print(f"  rate control     {(median(times) - median(unlimited)) * 1000:+8.1f} ms")
    print(f"  server RSS       {server_mb:8.1f} MB")
    print(f"  one agent RSS    {agent_mb:8.1f} MB")


if __name__ == "__main__":
    main()
