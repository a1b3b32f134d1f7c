"""Change notices: a waiter of the end is woken by every change, and told which of them
may have been the end (server/changes.py)."""

from __future__ import annotations

import asyncio

from fleetrun.server.changes import Changes


async def test_a_waiter_learns_whether_a_change_may_have_been_the_end():
    changes = Changes()
    with changes.subscribe("c1") as sub:
        changes.publish("c1", final=False)  # a step on the way
        assert await sub.wait(1.0)
        assert not sub.take_final()
        changes.publish("c1", final=False)
        changes.publish("c1", final=True)  # the end, in the same wake-up
        assert await sub.wait(1.0)
        assert sub.take_final()
        assert not sub.take_final()  # taken
        changes.publish("c1")  # another replica's notice: perhaps the end
        assert await sub.wait(1.0)
        assert sub.take_final()
        changes.publish_all()  # a replica missed notices: anything may have ended
        assert await sub.wait(1.0)
        assert sub.take_final()
        changes.publish("c2", final=True)  # not what this one waits for
        assert not await sub.wait(0.05)
        assert not sub.take_final()


async def test_many_waiters_of_one_key_are_each_told():
    changes = Changes()
    with changes.subscribe("c1") as a, changes.subscribe("c1") as b:
        changes.publish("c1", final=True)
        assert await asyncio.gather(a.wait(1.0), b.wait(1.0)) == [True, True]
        assert a.take_final() and b.take_final()
