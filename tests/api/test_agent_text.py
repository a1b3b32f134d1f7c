"""Text an agent sends that a database cannot hold as it came: PostgreSQL's text holds
no NUL, so a NUL in any string of an agent's frame (a state's message, an ack's reason)
is stored as U+FFFD, on both databases alike, and the session carries on."""

from __future__ import annotations

import time

from fleetrun.core import protocol


def test_a_nul_in_a_state_message_is_stored_as_a_replacement_and_the_command_ends(app):
    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        iid = session.start(command.id)
        message = "could not open bad\x00name (literal \\u0000 kept)"
        session.finish(iid, 2, 1, time.time(), message=message)
        done = app.client.wait(command.id, timeout_s=30)
    assert done.status == "Failed"
    inv = app.client.get_invocation(command.id, node.node_id)
    assert inv.message == "could not open bad\ufffdname (literal \\u0000 kept)"


def test_a_nul_in_an_ack_reason_is_stored_as_a_replacement(app):
    (node,) = app.enrol(1)
    command = app.client.send_command(script="true", node_ids=[node.node_id])
    with app.connect(node) as session:
        invoke = session.next_invoke()
        session.send(
            protocol.Ack(invocation_id=invoke.invocation_id, accepted=False, reason="rule\x00x")
        )
        app.client.wait(command.id, timeout_s=30)
    inv = app.client.get_invocation(command.id, node.node_id)
    assert inv.message == "rule\ufffdx"
