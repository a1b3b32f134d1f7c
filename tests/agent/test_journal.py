"""Spooled frames survive a restart and go out again until acknowledged."""

from __future__ import annotations

import json

from fleetrun.agent.journal import MAX_CHUNK, Journal, Outbox
from fleetrun.core import protocol


def _frames(lines):
    return [json.loads(line) for line in lines]


def test_outbox_numbers_frames_and_resends_after_rewind(tmp_path):
    with Outbox(tmp_path / "i.spool", "i") as box:
        _numbered(box)


def _numbered(box):
    box.state(step=None, status="InProgress")
    box.output(0, "stdout", b"hello")
    box.state(step=None, status="Success", exit_code=0)
    first = _frames(box.take(10))
    assert [f["seq"] for f in first] == [1, 2, 3]
    assert list(box.take(10)) == []
    box.ack(1)
    box.rewind()  # a new session: what is not acknowledged goes again
    assert [f["seq"] for f in _frames(box.take(10))] == [2, 3]
    assert not box.done
    box.ack(3)
    assert box.done


def test_outbox_reloads_from_disk_and_continues_numbering(tmp_path):
    path = tmp_path / "i.spool"
    box = Outbox(path, "i")
    box.output(0, "stdout", b"a" * 10)
    box.output(0, "stderr", b"b")
    box.close()
    with path.open("ab") as fh:
        fh.write(b'{"type":"output","seq":3')  # a torn write from a crash
    with Outbox(path, "i") as again:
        _reloaded(again)


def _reloaded(again):
    assert again.next_seq == 3
    again.state(step=None, status="Failed", detail="AgentRestarted")
    frames = _frames(again.take(10))
    assert [f["seq"] for f in frames] == [1, 2, 3]
    assert frames[2]["detail"] == "AgentRestarted"
    assert again.final_seq == 3


def test_outbox_splits_big_output(tmp_path):
    with Outbox(tmp_path / "i.spool", "i") as box:
        _split(box)


def _split(box):
    data = bytes(range(256)) * (MAX_CHUNK // 256 * 3 + 1)
    box.output(1, "stdout", data)
    frames = [protocol.parse(line) for line in box.take(100)]
    assert len(frames) == 4
    assert b"".join(f.payload for f in frames) == data


def test_outbox_window(tmp_path):
    with Outbox(tmp_path / "i.spool", "i") as box:
        _window(box)


def _window(box):
    for n in range(10):
        box.output(0, "stdout", str(n).encode())
    assert len(list(box.take(4))) == 4
    assert box.in_flight == 4
    box.ack(2)
    assert box.in_flight == 2


def test_journal_survives_reopen(tmp_path):
    journal = Journal(tmp_path)
    invoke = protocol.Invoke(
        invocation_id="abc", command_id="c", document_name="d", steps=[], execution_timeout_s=5
    )
    entry = journal.accept(invoke)
    entry.state = "running"
    entry.pgid = 123
    journal.save(entry)
    reopened = Journal(tmp_path)
    assert reopened.get("abc").state == "running"
    assert reopened.get("abc").pgid == 123
    assert [e.invocation_id for e in reopened.unreported()] == ["abc"]
