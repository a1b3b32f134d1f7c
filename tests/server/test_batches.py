"""Batches: what arrives while a batch is served is served together next; one bad
item fails only its own request; a request given up before its batch is left out."""

from __future__ import annotations

import asyncio

import pytest

from fleetrun.server.batches import Batches


def run(coro):
    return asyncio.run(coro)


def test_requests_arriving_meanwhile_are_served_together():
    served: list[list[int]] = []

    async def serve(items: list[int]) -> list[int]:
        served.append(items)
        await asyncio.sleep(0.05)  # while this batch is served, the others gather
        return [i * 10 for i in items]

    async def main() -> list[int]:
        batches: Batches[int, int] = Batches(serve, limit=3, what="numbers")
        loop = asyncio.create_task(batches.loop())
        first = asyncio.create_task(batches(1))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batches(i)) for i in range(2, 7)]
        results = await asyncio.gather(first, *rest)
        loop.cancel()
        return results

    assert run(main()) == [10, 20, 30, 40, 50, 60]
    assert served == [[1], [2, 3, 4], [5, 6]]  # at most `limit` at once, in order


def test_a_bad_item_fails_alone_and_a_given_up_request_is_left_out(caplog):
    served: list[list[int]] = []

    async def serve(items: list[int]) -> list[int]:
        served.append(items)
        await asyncio.sleep(0.02)
        if 13 in items:
            raise ValueError("unlucky")
        return items

    async def main() -> tuple[list[object], list[list[int]]]:
        batches: Batches[int, int] = Batches(serve, limit=10, what="numbers")
        loop = asyncio.create_task(batches.loop())
        busy = asyncio.create_task(batches(0))
        await asyncio.sleep(0.005)
        waiting = [asyncio.create_task(batches(i)) for i in (12, 13, 14, 15)]
        await asyncio.sleep(0)
        waiting[3].cancel()  # 15 gives up before its batch begins
        results = await asyncio.gather(busy, *waiting, return_exceptions=True)
        loop.cancel()
        return results, served

    results, served = run(main())
    assert results[0] == 0
    assert results[1] == 12
    assert isinstance(results[2], ValueError)
    assert results[3] == 14
    assert isinstance(results[4], asyncio.CancelledError)
    assert served == [[0], [12, 13, 14], [12], [13], [14]]
    assert "3 numbers failed together; each alone" in caplog.text


def test_stopping_ends_whoever_waits():
    async def main() -> None:
        async def never(items: list[int]) -> list[int]:
            raise AssertionError("not served: the loop never runs")

        batches: Batches[int, int] = Batches(never, limit=10, what="numbers")
        waiting = asyncio.create_task(batches(1))
        await asyncio.sleep(0)
        batches.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    run(main())
