"""What the console's fleet page costs on a large fleet: the server time of its first
page, a filtered page and a later page, on 10,000 nodes (clones of one enrolled node
with tags), for the administrator and for a principal whose policy admits only the
nodes of one tag. In process, on SQLite (the clone statements are SQLite's).

    .venv/bin/python bench/console.py [--nodes 10000] [--loads 20]
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import warnings
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import median, percentile
from sqlalchemy import text
from tests.inprocess import App

# Nodes n-1..n-N cloned from the enrolled one (name node-00001...), each with role=web
# or role=db (one in ten) and env=test.
CLONE_NODES = """
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < :count)
INSERT INTO nodes (id, name, hostname, platform, platform_version, architecture,
                   agent_version, public_key, seal_public_key, activation_id, ping_status,
                   last_ping_at, registered_at, session_id, facts, local_config, deleted_at)
SELECT 'n-' || printf('%017d', n.x), 'node-' || printf('%05d', n.x), t.hostname, t.platform,
       t.platform_version, t.architecture, t.agent_version, t.public_key, t.seal_public_key,
       t.activation_id, t.ping_status, t.last_ping_at, t.registered_at, NULL, t.facts,
       t.local_config, NULL
FROM nodes AS t, n WHERE t.id = :template
"""
CLONE_TAGS = """
INSERT INTO node_tags (node_id, key, value)
SELECT id, 'role', CASE WHEN CAST(substr(id, 3) AS INTEGER) % 10 = 0 THEN 'db' ELSE 'web' END
FROM nodes WHERE id LIKE 'n-0%'
UNION ALL SELECT id, 'env', 'test' FROM nodes WHERE id LIKE 'n-0%'
"""
DB_ONLY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "fleetrun:List*",
            "Resource": "*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "db"}},
        }
    ],
}


def sign_in(app: App, token: str) -> None:
    assert app.http is not None
    app.http.cookies.clear()
    answer = app.http.post(
        "/ui/sign-in", data={"token": token}, headers={"origin": "http://127.0.0.1"}
    )
    assert answer.status_code == 200, answer.text


def timed(app: App, path: str, loads: int) -> tuple[list[float], str]:
    assert app.http is not None
    times, body = [], ""
    for _ in range(loads):
        started = time.perf_counter()
        response = app.http.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
        body = response.text
    return times, body


def report(label: str, times: list[float], body: str) -> None:
    rows = len(re.findall(r"<tr>\s*<td><span class=\"badge", body))
    print(
        f"{label:<44} {rows:>3} rows  median {median(times):6.1f} ms  "
        f"p95 {percentile(times, 95):6.1f} ms"
    )


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = App(Path(tmp)).start()
        try:
            [node] = app.enrol()
            state = app.http.app.state.fleet  # type: ignore[union-attr]
            if not state.db.is_sqlite:
                raise SystemExit("the clone statements are SQLite's: run without a PG URL")
            with state.db.engine.begin() as conn:
                conn.execute(text(CLONE_NODES), {"count": args.nodes, "template": node.node_id})
                conn.execute(text(CLONE_TAGS))
            print(f"{args.nodes} nodes; each figure is the server time of one page load")
            sign_in(app, app.token)
            report("administrator, first page", *timed(app, "/ui/nodes", args.loads))
            report("administrator, tag role=db", *timed(app, "/ui/nodes?tag=role%3Ddb", args.loads))
            report(
                "administrator, name filter 'node-09'",
                *timed(app, "/ui/nodes?name=node-09", args.loads),
            )
            _, body = timed(app, "/ui/nodes", 1)
            cursor = re.search(r"cursor=([^\"&]+)", body)
            assert cursor is not None
            report(
                "administrator, second page",
                *timed(app, f"/ui/nodes?cursor={cursor.group(1)}", args.loads),
            )
            admin = app.client
            admin.create_principal("dbops")
            admin.create_policy("dbops", DB_ONLY)
            admin.attach("dbops", policy="dbops")
            sign_in(app, admin.create_token("dbops").token)
            report(
                "role=db only principal (1 in 10), first page", *timed(app, "/ui/nodes", args.loads)
            )
        finally:
            app.close()


if __name__ == "__main__":
    main()
