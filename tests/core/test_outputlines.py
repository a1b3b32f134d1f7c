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


@pytest.mark.parametrize(
    ("text", "required"),
    [
        (r"status=5\d\d after \d{4}ms", ("status=5", " after ", "ms")),
        (r"took [0-9]{4,}ms", ("took ", "ms")),
        (r"\berror\b", ("error",)),
        (r"a\.b", ("a.b",)),
        (r"a(?:bc)+d", ("bc",)),  # repeated at least once: required
        (r"ab(?P<x>cd)ef", ("ab", "cd", "ef")),
        (r"foo(?=bar)", ("foo",)),  # what a lookahead asks is not taken
        (r"(abc){0,3}zz", ("zz",)),  # may be absent: not required
        (r"x(?:abc)?y", ()),
        (r"ab|cd", ()),  # either: neither required
        (r"(?i)abc", ("abc",)),  # any case: looked for in the line in lower case
        (r"(?i)Disk FULL", (" full",)),  # cut at i, k, s: they match beyond ASCII
        (r"(?i)ÉCHEC total", ("chec total",)),  # and at what lower() may not fold
        (r"(?i)error (?-i:CODE)", ("error ", "code")),  # looser than asked: still every line
        (r"(?i:abc)def", ("def",)),
        (r"\d+", ()),
        (r"one two three four", ("one two three four",)),
    ],
)
def test_a_regex_requires_its_literal_parts(text, required):
    assert compile_search(text, regex=True).required == required


REGEXES = [
    r"(?i)AbC",
    r"(?i)x(?:Ab)+[cd]e",
    r"status=5\d\d after \d{4}ms",
    r"a(?:bc)+d",
    r"x(?:abc)?y",
    r"(ab|cd)+e",
    r"(?i:ab)cd",
    r"a.c{2,}",
    r"ab(?!c)",
    r"[ab]cd",
    r"(?:ab){1,2}c",
    r"a*bc",
]


@pytest.mark.parametrize("text", REGEXES)
def test_every_line_a_regex_finds_holds_what_it_requires(text):
    """The database keeps only lines holding the required parts: no line the expression
    finds may lack one (random lines over a small alphabet, so many match)."""
    import random

    pattern = compile_search(text, regex=True)
    assert pattern.regex is not None
    rng = random.Random(text)
    matched = 0
    for _ in range(20_000):
        line = "".join(rng.choice("abcdexyACBDE=5 ") for _ in range(rng.randint(0, 12)))
        if pattern.regex.search(line):
            matched += 1
            # what the database looks in: the line, or its ASCII letters in lower case
            held = _ascii_lower(line) if pattern.folded else line
            assert all(part in held for part in pattern.required), (line, pattern.required)
    assert matched or text.startswith("status")


def _ascii_lower(text: str) -> str:
    """What SQLite's lower() makes of a text: ASCII letters in lower case, the rest as is."""
    return "".join(c.lower() if c.isascii() else c for c in text)


def test_a_regex_that_ignores_case_finds_lines_beyond_ascii_the_narrowing_keeps():
    """Under IGNORECASE, i, k and s also match the dotless i, the dotted capital I, the
    long s and the Kelvin sign, which lower() in the database does not fold: the literal
    is cut there, so those lines are kept."""
    for text, line in [
        (r"(?i)disk full", "D\u0131SK FULL"),
        (r"(?i)stack", "\u017ftacK"),
        (r"(?i)kilo", "\u212aILO"),
        (r"(?i)café au", "CAFÉ AU"),
    ]:
        pattern = compile_search(text, regex=True)
        assert pattern.regex is not None and pattern.regex.search(line), (text, line)
        assert all(part in _ascii_lower(line) for part in pattern.required), (text, line)
