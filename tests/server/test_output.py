from __future__ import annotations

import pytest

from fleetrun.server.output import LocalOutputStore, append_tail, read_parts, tail_text


@pytest.mark.parametrize(
    ("chunks", "total", "chars", "expected", "cut"),
    [
        ([b"hello"], 5, 10, "hello", False),
        ([b"hello ", b"world"], 11, 5, "world", True),
        (["é".encode() * 3], 6, 2, "éé", True),
    ],
)
def test_tail(chunks, total, chars, expected, cut):
    tail = b""
    for chunk in chunks:
        tail = append_tail(tail, chunk, chars)
    assert tail_text(tail, total, chars) == (expected, cut)


def test_tail_that_starts_inside_a_character_drops_the_broken_bytes():
    data = ("x" + "é" * 10).encode()
    tail = append_tail(b"", data, 2)  # keeps 8 bytes: starts mid-character? no, at a boundary
    tail = tail[1:]  # force a start on a continuation byte
    text, cut = tail_text(tail, len(data), 100)
    assert cut and "\ufffd" not in text and set(text) == {"é"}


async def test_store_writes_at_offsets_and_reads_ranges(tmp_path):
    store = LocalOutputStore(tmp_path)
    store.write("c/n/0.stdout", 0, b"hello ")
    store.write("c/n/0.stdout", 6, b"world")
    store.write("c/n/0.stdout", 6, b"WORLD")  # a repeated write overwrites, never appends
    data = b"".join([c async for c in store.read("c/n/0.stdout", 0, 11)])
    assert data == b"hello WORLD"
    assert b"".join([c async for c in store.read("c/n/0.stdout", 3, 8)]) == b"lo WO"
    with pytest.raises(ValueError, match="bad output key"):
        store.write("../escape", 0, b"x")


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [(0, 9, b"abcdefghi"), (2, 7, b"cdefg"), (3, 6, b"def"), (4, 5, b"e"), (5, 5, b"")],
)
async def test_a_range_of_a_stream_of_several_steps_spans_their_parts(
    tmp_path, start, end, expected
):
    store = LocalOutputStore(tmp_path)
    parts = [("c/n/0.stdout", 3), ("c/n/1.stdout", 0), ("c/n/2.stdout", 3), ("c/n/3.stdout", 3)]
    for (key, _), data in zip(parts, [b"abc", b"", b"def", b"ghi"], strict=True):
        store.write(key, 0, data)
    assert b"".join([c async for c in read_parts(store, parts, start, end)]) == expected
