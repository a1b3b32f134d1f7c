"""Replicas: send -> Success visible for `echo hi` when the command goes through the
replica that holds the agent, and when it goes through another one.

    FLEETRUN_TEST_DATABASE_URL=postgresql+psycopg://... python bench/replicas.py [--runs 100]

Starts two real server replicas on one fresh PostgreSQL database and one real agent,
held by the first. Each round sends once through each replica, in turn, so both see
the same machine load; prints p50, p90, p99 and max of each and the ratio of the
medians. The bus between replicas (docs/scale-out.md) is what keeps "across" close
to "same": without it a command through the other replica waited for the holder's
periodic pass. For fan-out over several replicas of one machine, see
`bench/swarm.py --server-workers N`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import SERVER_ENV, median, percentile
from tests.harness import PG_ENV, two_replicas

from fleetrun.sdk import Client

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}


def _once(client: Client, node_id: str) -> float:
    started = time.perf_counter()
    command = client.send_command(script="echo hi", node_ids=[node_id])
    done = client.wait(command.id, timeout_s=60)
    if done.status != "Success":
        raise SystemExit(f"a command ended {done.status}")
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    if not os.environ.get(PG_ENV):
        raise SystemExit(f"Replicas share a PostgreSQL database: set {PG_ENV}.")
    samples: dict[str, list[float]] = {"same": [], "across": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        two_replicas(Path(tmp), {**SERVER_ENV, **KEY}) as (fleet, second),
    ):
        (agent,) = fleet.add_agents(1)  # held by the first replica
        with fleet.server.client() as same, second.client(fleet.server.token) as across:
            for n in range(args.warmup + args.runs):
                for name, client in (("same", same), ("across", across)):
                    elapsed = _once(client, agent.node_id)
                    if n >= args.warmup:
                        samples[name].append(elapsed)
    print(f"replicas: {args.runs} runs of `echo hi` on 1 agent held by replica A (PostgreSQL)")
    for name, label in (("same", "through A (holds it)"), ("across", "through B (another)")):
        values = samples[name]
        print(
            f"  {label:22} p50 {percentile(values, 50):6.1f}  p90 {percentile(values, 90):6.1f}"
            f"  p99 {percentile(values, 99):6.1f}  max {max(values):6.1f} ms"
        )
    ratio = median(samples["across"]) / median(samples["same"])
    print(f"  across / same (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
