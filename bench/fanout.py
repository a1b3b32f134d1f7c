"""Fan-out: time from send until one command has finished on N local agents, and
the resident memory of the server and of one agent.

    python bench/fanout.py --agents 50 [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import median, rss_mb
from tests.harness import fleet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="commands to time (median shown)")
    parser.add_argument("--script", default="echo hi")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp)) as f:
        started = time.perf_counter()
        agents = f.add_agents(args.agents, tags={"bench": "fanout"})
        enrol_s = time.perf_counter() - started
        client = f.client
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            command = client.send_command(script=args.script, tags={"bench": "fanout"})
            done = client.wait(command.id, timeout_s=600)
            times.append(time.perf_counter() - t0)
            assert done.status == "Success" and done.completed_count == args.agents, done
        assert f.server.proc is not None and agents[0].proc is not None
        server_mb = rss_mb(f.server.proc.pid)
        agent_mb = rss_mb(agents[0].proc.pid)
        db = f.server.db.kind if f.server.db else "?"
    print(f"fanout: {args.agents} agents ({db}), `{args.script}`, {args.repeat} command(s)")
    print(f"  enrol + connect  {enrol_s:8.2f} s")
    print(
        f"  send -> done     {median(times) * 1000:8.1f} ms median "
        f"(runs: {', '.join(f'{t * 1000:.0f}' for t in times)} ms)"
    )
    print(f"  server RSS       {server_mb:8.1f} MB")
    print(f"  one agent RSS    {agent_mb:8.1f} MB")


if __name__ == "__main__":
    main()
