"""Deadlines with three replicas on PostgreSQL, each sweeping them: 120 invocations for
nodes that never connect, sent through all three, reach their delivery deadline and
give exactly 120 TimedOut changes, 120 events and 120 webhook notifications, whichever
replica moved each."""

from __future__ import annotations

import base64
import os
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.e2e.receivers import WebhookReceiver
from tests.harness import PG_ENV, Fleet, ServerProcess, wait_for

KEY = {"FLEETRUN_SECRET_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}
SECRET = "a-webhook-secret-of-some-length"
NODES = 40  # three commands of 40: 120 invocations
INVOCATION_EVENTS = "Command Invocation Status-change Notification"


def _public(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _register(fleet: Fleet, count: int) -> list[str]:
    """Nodes registered through the real route, with keys made here and no agent."""
    activation = fleet.client.create_activation(registration_limit=count)
    ids = []
    with httpx.Client(base_url=fleet.server.url, timeout=30) as http:
        for n in range(count):
            answer = http.post(
                "/v1/agent/register",
                json={
                    "activation_id": activation.id,
                    "activation_code": activation.code,
                    "public_key": _public(Ed25519PrivateKey.generate()),
                    "seal_public_key": _public(X25519PrivateKey.generate()),
                    "name": f"away{n:03d}",
                    "tags": {},
                    "facts": {"platform": "Linux", "hostname": f"away{n:03d}"},
                    "agent_version": "0.0.0-test",
                },
            )
            answer.raise_for_status()
            ids.append(answer.json()["node_id"])
    return ids


@pytest.mark.skipif(not os.environ.get(PG_ENV), reason="replicas share a PostgreSQL database")
@pytest.mark.timeout(300)
def test_120_deadlines_swept_by_three_replicas_end_once_each(tmp_path):
    env = {**KEY, "FLEETRUN_RATE_LIMIT_PER_S": "0"}
    fleet = Fleet(tmp_path, env=env).start()
    others = [ServerProcess(tmp_path / name, env=env, db=fleet.server.db) for name in "bc"]
    try:
        for replica in others:
            replica.start()
        nodes = _register(fleet, NODES)
        with WebhookReceiver(SECRET) as hook:
            fleet.client.create_rule(
                "timed-out",
                pattern={"detail-type": [INVOCATION_EVENTS], "detail": {"status": ["TimedOut"]}},
                targets=[{"target": f"webhook:{hook.url}", "secret": SECRET}],
            )
            commands = []
            for replica in (fleet.server, *others):
                with replica.client(fleet.server.token) as client:
                    sent = client.send_command(
                        script="echo never", node_ids=nodes, delivery_timeout_s=30
                    )
                    commands.append(sent.id)
            started = time.monotonic()
            for command_id in commands:
                done = fleet.client.wait(command_id, timeout_s=120)
                assert done.status == "TimedOut", done
                assert done.delivery_timed_out_count == NODES
            assert time.monotonic() - started < 90
            delivered = wait_for(
                lambda: len(hook.delivered()) >= 3 * NODES and hook.delivered(),
                timeout_s=60,
                what="120 notifications",
            )
            time.sleep(2)  # two sweeps more on each replica: nothing is sent again
            assert len(hook.delivered()) == len(delivered) == 3 * NODES
            events = fleet.client.list_events(detail_type=INVOCATION_EVENTS, limit=1000)
        timed_out = [
            (e.detail["command-id"], e.detail["node-id"])
            for e in events
            if e.detail["status"] == "TimedOut"
        ]
        assert sorted(timed_out) == sorted((c, n) for c in commands for n in nodes)
        ids = {r.json["id"] for r in delivered}
        assert len(ids) == 3 * NODES  # one notification per event
    finally:
        for replica in others:
            replica.stop()
        fleet.close()
