"""What a session remembers of the invokes it sent: an answered invoke is never sent again
on it, even by a delivery pass that read the invocation before the answer was stored;
it is forgotten only well after (the mark would otherwise grow forever)."""

from __future__ import annotations

import math

from fleetrun.server.gateway.session import ANSWERED_KEEP_S, AgentSession


def test_an_answered_invoke_stays_answered_for_a_while_then_is_forgotten():
    # No socket: marking answers does not touch it.
    agent = AgentSession(ws=None, node_id="mi-0123456789abcdef0", session_id="s", running=[])  # type: ignore[arg-type]
    now = 1000.0
    agent.sent_invokes["a"] = now
    agent.answered("a", now)
    assert agent.sent_invokes["a"] == math.inf  # a pass with an older read skips it

    now += ANSWERED_KEEP_S / 2
    agent.sent_invokes["b"] = now
    agent.answered("b", now)
    assert agent.sent_invokes == {"a": math.inf, "b": math.inf}

    now += ANSWERED_KEEP_S / 2 + 1  # a's answer is older than the keep, b's is not
    agent.answered("c", now)
    assert agent.sent_invokes == {"b": math.inf, "c": math.inf}
