"""The REST API where an agent is needed: output served whole or by byte range, and a
long poll answered by a running command. (Route authorization, validation sentences and
paging are in tests/api/test_routes.py.)"""

from __future__ import annotations

import httpx


def _api(fleet, method, path, headers=None, **kw):
    headers = {"authorization": f"Bearer {fleet.server.token}", **(headers or {})}
    return httpx.request(method, fleet.server.url + path, headers=headers, **kw)


def test_output_is_served_whole_or_by_byte_range(shared_fleet):
    client = shared_fleet.client
    node = shared_fleet.agents[0].node_id
    command = client.send_command(script="printf 0123456789; printf abc >&2", node_ids=[node])
    assert client.wait(command.id, timeout_s=30).status == "Success"
    path = f"/v1/commands/{command.id}/invocations/{node}/output"
    whole = _api(shared_fleet, "GET", path)
    assert (whole.status_code, whole.content) == (200, b"0123456789")
    part = _api(shared_fleet, "GET", path, headers={"range": "bytes=2-5"})
    assert (part.status_code, part.content) == (206, b"2345")
    assert part.headers["content-range"] == "bytes 2-5/10"
    assert _api(shared_fleet, "GET", path, headers={"range": "bytes=-3"}).content == b"789"
    assert _api(shared_fleet, "GET", path, params={"stream": "stderr"}).content == b"abc"
    bad = _api(shared_fleet, "GET", path, headers={"range": "lines=1-2"})
    assert bad.status_code == 400 and "Range" in bad.json()["error"]["message"]


def test_long_poll_answers_when_the_command_changes(shared_fleet):
    client = shared_fleet.client
    command = client.send_command(script="sleep 1", node_ids=[shared_fleet.agents[0].node_id])
    seen = client.get_command(command.id)
    changed = client.get_command(command.id, wait_s=20, version=seen.version)
    assert changed.version != seen.version or changed.done
    final = client.wait(command.id, timeout_s=30)
    assert final.status == "Success"
