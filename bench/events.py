"""Events: what writing them costs on the hot path, and how soon a rule's webhook
hears of a change.

    python bench/events.py [--invocations 1000] [--rounds 7] [--runs 20]

1. One transaction moves N invocations to a new status (what the gateway's group
   commit does for a busy fleet), with the event emission switched on and off: the
   difference is what events cost there.
2. A real server and agent, a rule with a webhook on loopback: time from the command
   being seen Success by the SDK to the webhook receiving the event.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import SERVER_ENV, median, percentile
from sqlalchemy import event as sa_event
from sqlalchemy import insert, select
from sqlalchemy.orm import Session
from tests.e2e.receivers import WebhookReceiver
from tests.harness import fleet, wait_for

from fleetrun.core.ids import new_uuid
from fleetrun.core.statuses import InvocationStatus
from fleetrun.server import events
from fleetrun.server.db import Database
from fleetrun.server.store.invocations import transition
from fleetrun.server.store.tables import Command, Invocation, utcnow

SECRET = "bench-secret-bench-secret"


def _seed(db: Database, count: int) -> list[str]:
    now = utcnow()
    command_id = new_uuid()
    with Session(db.engine) as session, session.begin():
        session.add(
            Command(
                id=command_id,
                document_name="RunShellScript",
                parameters={},
                targets=[],
                steps=[],
                requested_at=now,
                deliver_by=now,
                execution_timeout_s=60,
                delivery_timeout_s=60,
                max_concurrency="100%",
                max_errors="0",
                concurrency_limit=count,
                error_threshold=0,
                status="Pending",
                status_detail="Pending",
                counts={},
                updated_at=now,
            )
        )
        session.flush()
        rows = [
            {
                "id": new_uuid(),
                "command_id": command_id,
                "node_id": f"n-{i:017x}",
                "status": "Pending",
                "status_detail": "Pending",
                "requested_at": now,
                "updated_at": now,
            }
            for i in range(count)
        ]
        session.execute(insert(Invocation), rows)
    return [r["id"] for r in rows]


def _round(db: Database, ids: list[str], status: InvocationStatus) -> float:
    t0 = time.perf_counter()
    with Session(db.engine) as session, session.begin():
        for inv in session.execute(select(Invocation).where(Invocation.id.in_(ids))).scalars():
            transition(session, inv, status, status.value)
    return time.perf_counter() - t0


def hot_path(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.migrate()
        ids = _seed(db, count)
        statuses = [InvocationStatus.IN_PROGRESS, InvocationStatus.SUCCESS]
        with_events, without = [], []
        for i in range(rounds):
            with_events.append(_round(db, ids, statuses[i % 2]))
            sa_event.remove(Session, "before_commit", events._flush)
            try:
                without.append(_round(db, ids, statuses[(i + 1) % 2]))
            finally:
                sa_event.listen(Session, "before_commit", events._flush)
        on, off = median(with_events) * 1000, median(without) * 1000
        print(
            f"{count} invocation transitions in one transaction: {off:.1f} ms without events, "
            f"{on:.1f} ms with ({(on - off) / count * 1000:.1f} us per event, "
            f"+{(on - off) / off * 100:.0f}%)"
        )


def webhook_latency(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=dict(SERVER_ENV)) as f:
        agent = f.add_agent()
        with WebhookReceiver(SECRET) as hook:
            f.client.create_rule(
                "bench",
                pattern={
                    "detail-type": ["Command Status-change Notification"],
                    "detail": {"status": ["Success"]},
                },
                targets=[{"target": f"webhook:{hook.url}", "secret": SECRET}],
            )
            times = []
            for _ in range(runs):
                seen = len(hook.delivered())
                command = f.client.send_command(script="true", node_ids=[agent.node_id])
                f.client.wait(command.id, timeout_s=60)
                t0 = time.perf_counter()
                wait_for(lambda seen=seen: len(hook.delivered()) > seen, interval_s=0.001)
                times.append(time.perf_counter() - t0)
        ms = [t * 1000 for t in times]
        print(
            f"webhook after Success seen by the SDK, {runs} runs: p50 {percentile(ms, 50):.0f} ms, "
            f"p99 {percentile(ms, 99):.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--invocations", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    hot_path(args.invocations, args.rounds)
    webhook_latency(args.runs)


if __name__ == "__main__":
    main()
