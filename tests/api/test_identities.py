"""Who a token speaks for is remembered between requests (server/identities.py), and
forgotten the moment access changes: a revoked token, a detached or rewritten policy, a
changed role or a deleted principal takes effect on the very next request. A change
this server did not make (another replica, a command run beside it) takes effect
within the cache's time to live. Each test makes its token's identity remembered first
(two requests), then changes access."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, update

from fleetrun.core.errors import AccessDeniedError, AuthenticationError
from fleetrun.server.identities import TTL_S, IdentityCache
from fleetrun.server.store.principals import Identity
from fleetrun.server.store.tables import ApiToken

LIST_NODES = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "fleetrun:ListNodes", "Resource": "*"}],
}
NOTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "fleetrun:GetDocument", "Resource": "*"}],
}


def _lister(app, name: str):
    """A principal that may list nodes through its own policy; its client, its token."""
    admin = app.client
    admin.create_principal(name)
    admin.create_policy(name, LIST_NODES)
    admin.attach(name, policy=name)
    created = admin.create_token(name)
    client = app.client_for(created.token)
    client.list_nodes()
    client.list_nodes()  # remembered now
    return client, created


def test_a_revoked_token_is_refused_on_the_next_request(app):
    client, created = _lister(app, "revoked")
    app.client.revoke_token(created.id)
    with pytest.raises(AuthenticationError):
        client.list_nodes()


def test_a_detached_or_rewritten_policy_counts_on_the_next_request(app):
    client, _ = _lister(app, "detached")
    app.client.put_policy("detached", NOTHING)
    with pytest.raises(AccessDeniedError):
        client.list_nodes()
    app.client.put_policy("detached", LIST_NODES)
    client.list_nodes()
    app.client.detach("detached", policy="detached")
    with pytest.raises(AccessDeniedError):
        client.list_nodes()


def test_a_role_changed_or_a_principal_deleted_counts_on_the_next_request(app):
    admin = app.client
    admin.create_policy("lists", LIST_NODES)
    admin.create_policy("reads", NOTHING)
    admin.create_role("lister", ["lists"])
    admin.create_principal("member")
    admin.attach("member", role="lister")
    client = app.client_for(admin.create_token("member").token)
    client.list_nodes()
    client.list_nodes()
    admin.put_role("lister", ["reads"])
    with pytest.raises(AccessDeniedError):
        client.list_nodes()
    admin.detach("member", role="lister")
    admin.delete_principal("member")
    with pytest.raises(AuthenticationError):
        client.whoami()


def test_a_token_that_expires_is_refused_from_its_expiry(app):
    _lister(app, "brief")
    created = app.client.create_token("brief", expires_in_s=60)
    client = app.client_for(created.token)
    [token] = [t for t in app.client.list_tokens("brief") if t.id == created.id]
    client.list_nodes()
    client.list_nodes()
    # To a second before the expiry, by the server's clock (real time passes too):
    # past the time to live, so looked up and remembered again.
    app.advance((token.expires_at - app.clock.now()).total_seconds() - 1.0)
    client.list_nodes()
    assert TTL_S > 1.5
    app.advance(1.5)  # past the expiry, not past the time to live
    with pytest.raises(AuthenticationError):
        client.list_nodes()


def test_a_change_this_server_did_not_make_counts_within_the_time_to_live(app):
    """As another replica's revocation would: a write to the same database through an
    engine of its own. Until the time to live passes, the remembered identity answers
    (which shows it is remembered); then the token is refused."""
    client, created = _lister(app, "elsewhere")
    other = create_engine(app.db.url)
    try:
        with other.begin() as conn:
            conn.execute(
                update(ApiToken)
                .where(ApiToken.id == created.id)
                .values(revoked_at=datetime.now(UTC))
            )
    finally:
        other.dispose()
    client.list_nodes()  # remembered: this server has not seen the change
    app.advance(TTL_S)
    with pytest.raises(AuthenticationError):
        client.list_nodes()


def _identity(name: str) -> Identity:
    return Identity(token_id=name, principal=name, kind="user", policies=())


def test_an_answer_looked_up_while_access_changed_is_not_kept():
    now = [0.0]
    cache = IdentityCache(lambda: now[0])
    at = datetime.now(UTC)
    generation = cache.generation  # a lookup starts
    cache.clear()  # a commit changed access meanwhile
    cache.put("k", _identity("old"), generation)
    assert cache.get("k", at) is None
    cache.put("k", _identity("new"), cache.generation)
    assert cache.get("k", at) == _identity("new")
    now[0] += TTL_S
    assert cache.get("k", at) is None  # too old: looked up again


def test_the_cache_holds_at_most_its_size_forgetting_the_oldest():
    cache = IdentityCache(lambda: 0.0, size=2)
    at = datetime.now(UTC)
    for key in ("a", "b", "c"):
        cache.put(key, _identity(key), cache.generation)
    assert cache.get("a", at) is None
    assert cache.get("b", at) and cache.get("c", at)
