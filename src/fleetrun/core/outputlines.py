"""Output as lines, for the search index: how a stored chunk of a stream becomes
numbered lines, and what a search pattern means.

A chunk rarely ends on a line break. The last line of a stream that has no break yet
is indexed as it is and replaced when the rest arrives, so a search sees every line
once, whole, as soon as its first bytes are stored. Lines are numbered from 1 within
one step's stream; a line longer than MAX_LINE_CHARS is indexed by its beginning.
Bytes that are not UTF-8, and NUL (which PostgreSQL's text cannot hold), are indexed as
U+FFFD; the stored output keeps the bytes as they came.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fleetrun.core.errors import ValidationError

MAX_LINE_CHARS = 2000
MAX_PATTERN_CHARS = 500
WORD = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True)
class Lines:
    """The lines a chunk adds: `texts[0]` is line `first_no`; when `replaces_last`,
    it is the stream's unfinished last line, now longer, and replaces that row."""

    first_no: int
    texts: list[str]
    replaces_last: bool


def split_chunk(partial: str | None, last_no: int, data: bytes) -> Lines:
    """The lines of `data` appended to a stream whose last indexed line is `last_no`;
    `partial` is that line's text when the stream did not end with a line break."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\x00", "\ufffd")
    if partial is not None:
        text = partial + text
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()  # the chunk ended with a line break: nothing unfinished
    texts = [p[:MAX_LINE_CHARS] for p in parts]
    if partial is not None:
        return Lines(first_no=max(last_no, 1), texts=texts, replaces_last=True)
    return Lines(first_no=last_no + 1, texts=texts, replaces_last=False)


@dataclass(frozen=True)
class Pattern:
    """What to look for: words (in this order, any case) or a regular expression."""

    text: str
    regex: re.Pattern[str] | None
    # Strings every matching line contains (a regex's literal parts): the database looks
    # for them first, so the expression is tried only on the lines that hold them.
    required: tuple[str, ...] = field(default=())
    # The expression ignores case: `required` is in lower case, and a line holds it when
    # its text in lower case (ASCII letters folded, as SQLite's lower() does) does.
    folded: bool = False

    def matches(self, line: str) -> bool:
        if self.regex is not None:
            return self.regex.search(line) is not None
        return True  # the index decided it


def compile_search(text: str, *, regex: bool) -> Pattern:
    """The pattern, or a ValidationError that says what is wrong with it."""
    if not text.strip():
        raise ValidationError("The search pattern is empty: give a word, a phrase or a --regex.")
    if len(text) > MAX_PATTERN_CHARS:
        raise ValidationError(
            f"The search pattern is {len(text)} characters long; the limit is {MAX_PATTERN_CHARS}."
        )
    if regex:
        try:
            compiled = re.compile(text)
        except re.error as exc:
            raise ValidationError(
                f"The regular expression {text!r} is not valid ({exc}): check its brackets "
                "and escapes (Python syntax)."
            ) from exc
        folded = bool(compiled.flags & re.IGNORECASE)
        return Pattern(text, compiled, required_literals(compiled), folded)
    if not WORD.search(text):
        raise ValidationError(
            f"The search pattern {text!r} has no word in it to look up: search for words, "
            "or use --regex for punctuation."
        )
    return Pattern(text, None)


MAX_REQUIRED = 3  # the longest literals looked for; more narrow the lines little further


def required_literals(regex: re.Pattern[str]) -> tuple[str, ...]:
    """Strings every line `regex` finds a match in must contain, longest first: its
    literal runs outside alternatives, optional parts and lookarounds. When it ignores
    case, the runs in lower case, cut where a character may match beyond ASCII (any
    non-ASCII character, and i, k and s), so that lower-casing the line's ASCII letters
    is enough to find them."""
    folded = bool(regex.flags & re.IGNORECASE)
    try:
        from re import _parser  # type: ignore[attr-defined]

        parsed = _parser.parse(regex.pattern, regex.flags)
    except Exception:  # another Python's parser: look for nothing first
        return ()
    runs = _runs(parsed, _parser, folded)
    if folded:
        runs = [piece.lower() for run in runs for piece in _ascii_pieces(run)]
    found = {run for run in runs if len(run) >= 2}
    return tuple(sorted(found, key=lambda run: (-len(run), run))[:MAX_REQUIRED])


def _ascii_pieces(run: str) -> list[str]:
    """`run` cut at every character whose case-insensitive match lower() may not find."""
    return re.split(r"[^\x00-\x7f]|[iksIKS]", run)


def _runs(items: Any, sre: Any, folded: bool = False) -> list[str]:
    """The literal runs of a parsed sequence that every match includes (`folded`: the
    whole expression ignores case, so a part that ignores case is no different)."""
    runs: list[str] = []
    run: list[str] = []
    for op, arg in items:
        if op is sre.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            runs.append("".join(run))
            run = []
        if op is sre.SUBPATTERN:
            _group, add_flags, _del_flags, sub = arg
            if folded or not add_flags & re.IGNORECASE:
                runs.extend(_runs(sub, sre, folded))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", None)):
            least, _most, sub = arg
            if least >= 1:
                runs.extend(_runs(sub, sre, folded))
        elif op is getattr(sre, "ATOMIC_GROUP", None):
            runs.extend(_runs(arg, sre, folded))
        # anything else (a class, any character, an alternative, an anchor, a
        # lookaround, a back reference) requires no particular string
    if run:
        runs.append("".join(run))
    return runs
