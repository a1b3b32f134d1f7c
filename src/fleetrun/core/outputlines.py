"""Output as lines, for the search index: how a stored chunk of a stream becomes
numbered lines, and what a search pattern means.

A chunk rarely ends on a line break. The last line of a stream that has no break yet
is indexed as it is and replaced when the rest arrives, so a search sees every line
once, whole, as soon as its first bytes are stored. Lines are numbered from 1 within
one step's stream; a line longer than MAX_LINE_CHARS is indexed by its beginning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
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
            return Pattern(text, re.compile(text))
        except re.error as exc:
            raise ValidationError(
                f"The regular expression {text!r} is not valid ({exc}): check its brackets "
                "and escapes (Python syntax)."
            ) from exc
    if not WORD.search(text):
        raise ValidationError(
            f"The search pattern {text!r} has no word in it to look up: search for words, "
            "or use --regex for punctuation."
        )
    return Pattern(text, None)
