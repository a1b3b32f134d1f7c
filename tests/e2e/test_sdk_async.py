"""`AsyncClient` against a real server and real agents, where streaming is the point (the
in-process app answers whole, so its streams are tested here): a command sent, waited
for and its output read as an async iterator; events followed as they happen."""

from __future__ import annotations

import asyncio
import hashlib

from fleetrun.sdk import AsyncClient


async def test_output_streams_as_an_async_iterator_byte_exact(shared_fleet):
    server = shared_fleet.server
    node = shared_fleet.agents[0].node_id
    script = 'python3 -c "import sys\nfor i in range(20000): print(i)"'
    expected = "".join(f"{i}\n" for i in range(20000)).encode()
    async with AsyncClient(server.url, server.token, verify=server.verify) as client:
        command = await client.send_command(script=script, node_ids=[node])
        done = await client.wait(command.id, timeout_s=60)
        assert done.status == "Success"
        chunks = [c async for c in client.iter_output(command.id, node)]
        data = b"".join(chunks)
        assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()
        assert await client.get_output(command.id, node, start=len(expected) - 6) == b"19999\n"


async def test_events_are_followed_as_they_happen(shared_fleet):
    """The stream is open (on_open) before the command is sent; the command's own
    status change comes through it, filtered by the pattern."""
    server = shared_fleet.server
    opened = asyncio.Event()
    pattern = {"detail-type": ["Command Status-change Notification"]}
    async with AsyncClient(server.url, server.token, verify=server.verify) as client:

        async def follow() -> list[str]:
            seen: list[str] = []
            async for event in client.stream_events(pattern=pattern, on_open=opened.set):
                seen.append(event.detail["status"])
                if event.detail["status"] == "Success":
                    return seen
            return seen

        follower = asyncio.create_task(follow())
        await asyncio.wait_for(opened.wait(), 30)
        command = await client.send_command(script="true", tags={"role": "db"})
        statuses = await asyncio.wait_for(follower, 60)
        assert statuses[-1] == "Success"
        assert (await client.get_command(command.id)).status == "Success"
