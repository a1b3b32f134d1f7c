"""Registrations that arrive together are stored together (server/registrations.py),
and each is still decided as it would be alone: its activation's code, expiry and
limit (counting the registrations before it), its node's fields."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import update

from fleetrun.core.errors import AccessDeniedError, AuthenticationError, ValidationError
from fleetrun.schemas.agent import RegisterRequest
from fleetrun.server.db import Tx
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store.nodes import Registered
from fleetrun.server.store.tables import Activation


def _key() -> str:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _request(activation, name: str, **changes: str) -> RegisterRequest:
    fields = {
        "activation_id": activation.id,
        "activation_code": activation.code,
        "public_key": _key(),
        "name": name,
        "facts": {"platform": "Linux"},
        "agent_version": "0.0.0-test",
        **changes,
    }
    return RegisterRequest.model_validate(fields)


def test_registrations_at_once_are_each_decided_and_stored_together(app):
    activation = app.client.create_activation(registration_limit=5, tags={"env": "test"})
    good = [_request(activation, f"n{i}") for i in range(8)]
    wrong_code = _request(activation, "wrong", activation_code="x" * 32)
    bad_key = _request(activation, "badkey", public_key="bm90IGEga2V5")
    ordered = [good[0], wrong_code, *good[1:4], bad_key, *good[4:]]
    registrations = app.http.app.state.fleet.registrations
    now = datetime.now(UTC)

    async def all_at_once() -> list[object]:
        return await asyncio.gather(
            *(registrations.register(r, now) for r in ordered), return_exceptions=True
        )

    results = dict(zip((r.name for r in ordered), app.http.portal.call(all_at_once), strict=True))
    assert isinstance(results["wrong"], AuthenticationError)
    assert isinstance(results["badkey"], ValidationError)
    # The limit counts the requests before each, in the order they came: the first five
    # good ones are nodes, the last three are told the limit, and the count stays at it.
    registered = [results[f"n{i}"] for i in range(5)]
    assert all(isinstance(r, Registered) for r in registered)
    for name in ("n5", "n6", "n7"):
        assert isinstance(results[name], AccessDeniedError)
        assert "registration limit of 5" in str(results[name])
    (stored,) = [a for a in app.client.list_activations() if a.id == activation.id]
    assert stored.registrations_count == 5
    nodes = {n.id: n for n in app.client.list_nodes()}
    assert set(nodes) == {r.node_id for r in registered}
    assert {nodes[r.node_id].name for r in registered} == {f"n{i}" for i in range(5)}
    assert all(n.tags == {"env": "test"} for n in nodes.values())
    events = app.client.list_events(detail_type="Node Registration")
    assert sorted(e.detail["node-id"] for e in events) == sorted(nodes)


def test_registrations_counted_meanwhile_by_another_server_are_claimed_one_by_one(app):
    """The activation's count is read, then claimed for the whole batch only if the
    limit still allows it; when another server counted some in between, each request
    is claimed alone, in order, until the limit says no."""
    activation = app.client.create_activation(registration_limit=4)
    requests = [_request(activation, f"n{i}") for i in range(3)]
    now = datetime.now(UTC)

    def meanwhile(tx: Tx) -> list[object]:
        tx.session.get(Activation, activation.id)  # read: 0 counted
        tx.session.execute(  # ... and another server counts 2 (this session keeps 0)
            update(Activation)
            .where(Activation.id == activation.id)
            .values(registrations_count=2)
            .execution_options(synchronize_session=False)
        )
        return node_store.register_nodes(tx.session, [(r, now) for r in requests])

    results = app.http.portal.call(app.http.app.state.fleet.db.write, meanwhile)
    assert [type(r) for r in results] == [Registered, Registered, AccessDeniedError]
    (stored,) = [a for a in app.client.list_activations() if a.id == activation.id]
    assert stored.registrations_count == 4
    assert {n.name for n in app.client.list_nodes()} == {"n0", "n1"}


@pytest.mark.parametrize("count", [1, 40])
async def test_registration_over_http_answers_each_request(app, count):
    """Through the route, one at a time or many in parallel: each gets its own node."""
    activation = app.client.create_activation(registration_limit=count)
    bodies = [_request(activation, f"h{i}").model_dump() for i in range(count)]
    async with app.async_http() as http:
        answers = await asyncio.gather(
            *(http.post("/v1/agent/register", json=body) for body in bodies)
        )
    assert [a.status_code for a in answers] == [201] * count
    assert sorted(a.json()["name"] for a in answers) == sorted(f"h{i}" for i in range(count))
    assert len(app.client.list_nodes()) == count
