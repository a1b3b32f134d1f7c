from __future__ import annotations

import random

import pytest

from fleetrun.core.masking import Masker


def _run(secrets, chunks):
    masker = Masker(secrets)
    return b"".join([masker.feed(c) for c in chunks] + [masker.flush()])


@pytest.mark.parametrize(
    ("secrets", "chunks", "expected"),
    [
        ([], [b"plain", b" text"], b"plain text"),
        ([b"s3cret"], [b"a s3cret b"], b"a *** b"),
        ([b"s3cret"], [b"a s3", b"cret b"], b"a *** b"),  # split across reads
        ([b"s3cret"], [b"s", b"3", b"c", b"r", b"e", b"t"], b"***"),
        ([b"s3cret"], [b"s3cre"], b"s3cre"),  # an unfinished prefix is not a secret
        ([b"ab", b"abcd"], [b"xabcdx ab"], b"x***x ***"),  # the longest wins
        ([b"aa"], [b"aaa"], b"***a"),
        ([b"pw"], [b"pwpw", b"pw"], b"*********"),
    ],
)
def test_masking(secrets, chunks, expected):
    assert _run(secrets, chunks) == expected


def test_any_chunking_gives_the_same_result():
    rng = random.Random(7)
    secrets = [b"hunter2", b"p@ss w0rd\n", "日本".encode()]
    stream = b"".join(
        rng.choice([b"x", b"hunter2", b"p@ss w0rd\n", "日本".encode(), b"hunt", b"\n"])
        for _ in range(400)
    )
    expected = _run(secrets, [stream])
    assert b"hunter2" not in expected and b"p@ss w0rd\n" not in expected
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(stream)), 30))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert _run(secrets, chunks) == expected
