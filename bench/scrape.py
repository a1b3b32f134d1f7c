"""What a Prometheus scrape of GET /metrics costs as the invocations table grows (its
status gauges are counted in the database at scrape time), and what the per-request
instrumentation adds to a cheap route. In process, on SQLite (or PostgreSQL with
FLEETRUN_TEST_DATABASE_URL).

    .venv/bin/python bench/scrape.py [--rows 10000,100000] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import median, percentile
from sqlalchemy import text
from tests.inprocess import App

from fleetrun.server.metrics import Metrics

CLONE = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :rows)
INSERT INTO invocations (id, command_id, node_id, node_name, seq, status, status_detail,
                         requested_at, updated_at, last_seq)
SELECT substr(lower(hex(randomblob(16))), 1, 32), i.command_id,
       'n-' || (:offset + n.x), i.node_name, 0,
       CASE n.x % 3 WHEN 0 THEN 'Success' WHEN 1 THEN 'Failed' ELSE 'InProgress' END,
       i.status_detail, i.requested_at, i.updated_at, 0
FROM invocations AS i, n
WHERE i.id = :template
"""
CLONE_PG = CLONE.replace("substr(lower(hex(randomblob(16))), 1, 32)", "md5(random()::text)")


def timed(app: App, path: str, count: int, headers: dict[str, str]) -> list[float]:
    assert app.http is not None
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = app.http.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return times


def per_request_us(metrics: Metrics, count: int = 100_000) -> float:
    """What MetricsMiddleware does per request: one counter, one histogram."""
    started = time.perf_counter()
    for _ in range(count):
        metrics.http_seconds.labels("/v1/commands/{command_id}").observe(0.004)
        metrics.http_requests.labels("/v1/commands/{command_id}", "GET", "200").inc()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    warnings.simplefilter("ignore")  # the test client's own deprecation notices
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="0,10000,100000")
    parser.add_argument("--scrapes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = App(Path(tmp)).start()
        try:
            [node] = app.enrol()
            command = app.client.send_command(script="true", node_ids=[node.node_id])
            state = app.http.app.state.fleet  # type: ignore[union-attr]
            template = app.client.get_invocation(command.id, node.node_id).id
            headers = {"authorization": f"Bearer {app.token}"}
            print(f"per request, the HTTP metrics add {per_request_us(state.metrics):.1f} µs")
            added = 0
            for rows in (int(r) for r in args.rows.split(",")):
                if rows > added:
                    clone = CLONE if state.db.is_sqlite else CLONE_PG
                    with state.db.engine.begin() as conn:
                        conn.execute(
                            text(clone),
                            {"rows": rows - added, "offset": added, "template": template},
                        )
                    added = rows
                times = timed(app, "/metrics", args.scrapes, headers)
                print(
                    f"GET /metrics with {added + 1} invocations: median {median(times):.1f} ms, "
                    f"p95 {percentile(times, 95):.1f} ms over {args.scrapes}"
                )
        finally:
            app.close()


if __name__ == "__main__":
    main()
