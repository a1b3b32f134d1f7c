"""Following output across reconnects (`fleetrun.sdk.output.Follow`, no I/O): each byte
once though a resumed stream repeats some, the request resumes where the last stopped,
and a connection lost too often in a row gives up."""

from __future__ import annotations

import base64
import json

from fleetrun.sdk import output


def frame(kind: str, payload: dict) -> list[str]:
    return [f"event: {kind}", f"data: {json.dumps(payload)}", ""]


def chunk(offset: int, data: bytes) -> list[str]:
    return frame("output", {"offset": offset, "data": base64.b64encode(data).decode()})


def fed(follow: output.Follow, lines: list[str]) -> bytes:
    return b"".join(follow.feed(line) or b"" for line in lines)


def test_a_resumed_stream_gives_each_byte_once_and_ends_with_the_invocation():
    follow = output.Follow("c-1", "n-1", "stdout", 0)
    assert follow.request().params == {"stream": "stdout", "offset": 0}
    assert fed(follow, chunk(0, b"one\n") + chunk(4, b"tw")) == b"one\ntw"
    assert follow.lost() == output.backoff_s(1)
    assert follow.request().params == {"stream": "stdout", "offset": 6}
    # The server sends again from the start of a chunk it had only partly sent.
    assert fed(follow, chunk(4, b"two\n") + chunk(0, b"one\n")) == b"o\n"
    assert not follow.ended
    fed(follow, frame("end", {"status": "Success", "offset": 8}))
    assert follow.ended and follow.offset == 8


def test_a_connection_lost_too_often_in_a_row_gives_up_and_bytes_reset_the_count():
    follow = output.Follow("c-1", "n-1", "stderr", 3)
    waits = [follow.lost() for _ in range(output.RECONNECTS)]
    assert None not in waits and waits == sorted(waits)
    fed(follow, chunk(3, b"x"))  # bytes came: the next loss is the first again
    assert follow.lost() == output.backoff_s(1)
    for _ in range(output.RECONNECTS - 1):
        follow.lost()
    assert follow.lost() is None
