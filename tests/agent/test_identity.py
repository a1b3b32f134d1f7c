"""The node's identity on disk: its server URLs (the first, then the fallbacks) survive
a round trip, and an identity written before fallbacks existed still loads."""

from __future__ import annotations

import json

from fleetrun.agent.state import Identity, StateDir


def test_an_identity_keeps_its_server_urls_in_order(tmp_path):
    state = StateDir(tmp_path)
    state.prepare()
    identity = Identity("n-1", "https://a:8470", "web01", fallbacks=("https://b:8470",))
    state.save_identity(identity)
    loaded = state.load_identity()
    assert loaded == identity
    assert loaded.servers == ("https://a:8470", "https://b:8470")


def test_an_identity_of_one_url_written_by_an_older_agent_loads(tmp_path):
    state = StateDir(tmp_path)
    state.prepare()
    state.identity_path.write_text(
        json.dumps({"node_id": "n-1", "server": "https://a:8470", "name": "web01"})
    )
    assert state.load_identity().servers == ("https://a:8470",)
