"""How stored chunks become numbered lines for the search index, and which patterns a
search takes: tables of (input, expected)."""

from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError
from fleetrun.core.outputlines import MAX_LINE_CHARS, Lines, compile_search, split_chunk


@pytest.mark.parametrize(
    ("partial", "last_no", "data", "expected"),
    [
        (None, 0, b"a\nb\n", Lines(1, ["a", "b"], False)),
        (None, 0, b"a\nb", Lines(1, ["a", "b"], False)),  # b: unfinished, indexed already
        ("b", 2, b"c\nd\n", Lines(2, ["bc", "d"], True)),  # b grows into bc
        ("b", 2, b"cd", Lines(2, ["bcd"], True)),
        (None, 5, b"\n", Lines(6, [""], False)),  # an empty line is a line
        ("x", 3, b"\n", Lines(3, ["x"], True)),  # the unfinished line ends
        (None, 0, b"dos\r\nline\r\n", Lines(1, ["dos", "line"], False)),
        (None, 0, b"caf\xc3\xa9 \xff\n", Lines(1, ["café \ufffd"], False)),
        (None, 0, b"z" * (MAX_LINE_CHARS + 5) + b"\n", Lines(1, ["z" * MAX_LINE_CHARS], False)),
    ],
)
def test_a_chunk_becomes_numbered_lines(partial, last_no, data, expected):
    assert split_chunk(partial, last_no, data) == expected


@pytest.mark.parametrize(
    ("text", "regex", "line", "matches"),
    [
        ("disk full", False, "anything", True),  # words: the index decides
        (r"code=\d+", True, "exit code=17", True),
        (r"^code", True, "exit code=17", False),
    ],
)
def test_a_pattern_matches_as_it_says(text, regex, line, matches):
    assert compile_search(text, regex=regex).matches(line) is matches


@pytest.mark.parametrize(
    ("text", "regex", "says"),
    [
        ("", False, "is empty"),
        ("  ", True, "is empty"),
        ("!!! ---", False, "has no word"),
        ("a(", True, "is not valid"),
        ("x" * 501, False, "the limit is 500"),
    ],
)
def test_a_pattern_that_cannot_be_searched_is_refused_with_a_sentence(text, regex, says):
    with pytest.raises(ValidationError, match=says):
        compile_search(text, regex=regex)
