"""Where a value lands in a script, and how it gets there as data.

A placeholder inside a line of a step's script is never replaced by the value's text.
The value travels in an environment variable, and the placeholder becomes a reference
to that variable, written the way its position in the script needs, so that the
language reads the value as data whatever it holds:

    shell       echo {{ p }}            echo "${FLEETRUN_P_p}"
                echo "x{{ p }}"         echo "x${FLEETRUN_P_p}"
                echo 'x{{ p }}'         echo 'x'"${FLEETRUN_P_p}"''
                cat <<EOF / {{ p }}     ${FLEETRUN_P_p}   (an unquoted here-document)
    Python      x = {{ p }}             x = __import__('os').environ['FLEETRUN_P_p']
                "x{{ p }}"              "x" f"{__import__('os').environ['FLEETRUN_P_p']}" ""
    PowerShell  "x{{ p }}", x{{ p }}    "x${env:FLEETRUN_P_p}", x${env:FLEETRUN_P_p}

Where no reference can be written that the language reads as data (a quoted
here-document, backticks, arithmetic, a bytes or f-string literal, a PowerShell
verbatim string, right after a backslash...), `place` refuses with one sentence that
names the step, the line and what to write instead. The position is read from the
template alone, never from a value, so a document is accepted or refused whatever it
is sent with, and the server and a node that makes its steps itself write the same
script. A line that is a whole placeholder (`None` here) is code by design: it is read
as an empty line.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleetrun.core.errors import ValidationError
from fleetrun.core.shellsyntax import DOLLAR, ESCAPED, Kind, Refusal, ShellReader


@dataclass(frozen=True)
class Ref:
    """A placeholder in a line: its text as written, the environment variable that
    carries the value, and (for a list in a shell word) one variable per item."""

    label: str
    var: str
    words: tuple[str, ...] | None = None


Line = tuple["str | Ref", ...]


def place(action: str, where: str, lines: Sequence[Line | None]) -> list[str | None]:
    """The lines with every Ref written as a reference to its variable in the form its
    position needs (None lines stay None), or a ValidationError naming `where` (the
    step), the line and what to write instead."""
    seq: list[str | int] = []
    refs: list[Ref] = []
    line_of: list[int] = []
    number = 1
    for index, line in enumerate(lines):
        if index:
            seq.append("\n")
            number += 1
        for piece in line or ():
            if isinstance(piece, Ref):
                seq.append(len(refs))
                refs.append(piece)
                line_of.append(number)
            else:
                seq.extend(piece)
                number += piece.count("\n")
    if not refs:
        return [None if line is None else "".join(str(p) for p in line) for line in lines]
    reader = READERS.get(action)
    try:
        if reader is None:
            raise Refusal(0, f"is in a {action} step, which takes no placeholders", "remove it")
        kinds = reader(seq, refs)
    except Refusal as refusal:
        ref = refs[refusal.ref]
        raise ValidationError(
            f"{where}, line {line_of[refusal.ref]}: {ref.label} {refusal.why}, so "
            f"fleetrun cannot pass its value there as data; {refusal.instead}."
        ) from None
    write = WRITERS[action]
    out: list[str | None] = []
    counter = 0
    for line in lines:
        if line is None:
            out.append(None)
            continue
        text = []
        for piece in line:
            if isinstance(piece, Ref):
                text.append(write(piece, kinds[counter]))
                counter += 1
            else:
                text.append(piece)
        out.append("".join(text))
    return out


# -- writers and the other languages ------------------------------------------------


def _shell_word(ref: Ref, kind: Kind) -> str:
    if kind[0] == "word":
        if ref.words is not None:
            return " ".join(f'"${{{w}}}"' for w in ref.words)
        return f'"${{{ref.var}}}"'
    if kind[0] == "sq":
        return f"'\"${{{ref.var}}}\"'"
    return f"${{{ref.var}}}"  # inside double quotes, a here-document, a comment


# -- Python ----------------------------------------------------------------------------

_SENTINEL = "_fleetrun_ref"
_SENTINEL_RE = re.compile(r"_fleetrun_ref(\d+)_")


def _python_read(seq: list[str | int], refs: list[Ref]) -> dict[int, Kind]:
    text = "".join(c if isinstance(c, str) else f"{_SENTINEL}{c}_" for c in seq)
    if _SENTINEL_RE.sub("", text).find(_SENTINEL) >= 0:
        raise Refusal(0, f"is in a script that uses the name {_SENTINEL}", "rename that")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text + "\n").readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        what = exc.args[0] if exc.args else str(exc)
        raise Refusal(
            0,
            f"is in a Python script that cannot be read ({what})",
            "fix the script",
        ) from None
    kinds: dict[int, Kind] = {}
    depth = 0
    for tok in tokens:
        name = tokenize.tok_name.get(tok.type, "")
        if name in ("FSTRING_START", "TSTRING_START"):
            depth += 1
        elif name in ("FSTRING_END", "TSTRING_END"):
            depth -= 1
        for match in _SENTINEL_RE.finditer(tok.string):
            k = int(match.group(1))
            kinds[k] = _python_kind(k, name, tok.string, match, in_fstring=depth > 0)
    missing = [k for k in range(len(refs)) if k not in kinds]
    if missing:
        raise Refusal(missing[0], "could not be found in the Python script", "fix the script")
    return kinds


def _python_kind(k: int, name: str, token: str, match: re.Match[str], *, in_fstring: bool) -> Kind:
    if name == "COMMENT":
        return ("comment",)
    prefix = ""
    if name == "STRING":
        prefix = re.match(r"[A-Za-z]*", token).group(0)  # type: ignore[union-attr]
    if in_fstring or any(p in prefix.lower() for p in "ft"):
        raise Refusal(
            k,
            "is inside an f-string",
            "put it outside the f-string, or use a plain string ('...' + x + '...')",
        )
    if name == "NAME":
        if token != match.group(0):
            raise Refusal(k, "is joined to other letters", "put a space or an operator around it")
        return ("code",)
    if name != "STRING":
        raise Refusal(k, "is joined to other characters", "put a space or an operator around it")
    if "b" in prefix.lower():
        raise Refusal(k, "is inside a bytes literal", "use a str literal and .encode() it")
    before = token[: match.start()]
    if (len(before) - len(before.rstrip("\\"))) % 2:
        raise Refusal(k, *ESCAPED)
    body = token[len(prefix) :]
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    return ("str", prefix, quote)


def _python_write(ref: Ref, kind: Kind) -> str:
    value = f"__import__('os').environ['{ref.var}']"
    if kind[0] == "str":
        _, prefix, quote = kind
        return f'{quote} f"{{{value}}}" {prefix}{quote}'
    return value


# -- PowerShell ------------------------------------------------------------------------

_PS_SQ = frozenset("'\u2018\u2019\u201a\u201b")  # PowerShell reads typographic quotes too
_PS_DQ = frozenset('"\u201c\u201d\u201e')
VERBATIM = (
    "is inside a single-quoted (verbatim) string, where nothing expands",
    'use a double-quoted string ("...") there',
)


class _PowerShell:
    """Reads a PowerShell script far enough to know, for each placeholder, whether it
    sits in code, an expandable string, a verbatim string or a comment."""

    def __init__(self, seq: list[str | int]) -> None:
        self.s = seq
        self.n = len(seq)
        self.kinds: dict[int, Kind] = {}

    def at(self, i: int) -> str | int | None:
        return self.s[i] if i < self.n else None

    def mark(self, i: int, kind: str = "code") -> None:
        k = self.s[i]
        assert isinstance(k, int)
        if kind == "code" and i and self.s[i - 1] == "$":
            raise Refusal(k, *DOLLAR)
        self.kinds[k] = (kind,)

    def refuse_ref(self, i: int, reason: tuple[str, str]) -> None:
        k = self.at(i)
        if isinstance(k, int):
            raise Refusal(k, *reason)

    def read(self) -> dict[int, Kind]:
        self.code(0, close=False)
        return self.kinds

    def code(self, i: int, *, close: bool) -> int:
        depth = 0
        while i < self.n:
            c = self.s[i]
            if isinstance(c, int):
                self.mark(i)
                i += 1
            elif c == "#":
                i = self._until(i, "\n", "comment")
            elif c == "<" and self.at(i + 1) == "#":
                i = self._until(i, "#>", "comment")
            elif c == "`":
                self.refuse_ref(i + 1, ("comes right after a backtick", "remove the backtick"))
                i += 2
            elif c == "@" and self.at(i + 1) in _PS_DQ | _PS_SQ and self.at(i + 2) == "\n":
                i = self.here(i + 3, verbatim=self.at(i + 1) in _PS_SQ)
            elif c in _PS_SQ:
                i = self.single(i + 1)
            elif c in _PS_DQ:
                i = self.double(i + 1)
            elif c == "$" and self.at(i + 1) == "(":
                i = self.code(i + 2, close=True)
            else:
                if c == "(":
                    depth += 1
                elif c == ")":
                    if close and depth == 0:
                        return i + 1
                    depth -= 1
                i += 1
        return i

    def _until(self, i: int, end: str, kind: str) -> int:
        while i < self.n and self.s[i : i + len(end)] != list(end):
            if isinstance(self.s[i], int):
                self.mark(i, kind)
            i += 1
        return i + len(end)

    def single(self, i: int) -> int:
        while i < self.n:
            c = self.s[i]
            self.refuse_ref(i, VERBATIM)
            if c in _PS_SQ:
                if self.at(i + 1) in _PS_SQ:
                    i += 2
                    continue
                return i + 1
            i += 1
        return i

    def double(self, i: int) -> int:
        while i < self.n:
            c = self.s[i]
            if isinstance(c, int):
                self.mark(i)
                i += 1
            elif c in _PS_DQ:
                if self.at(i + 1) in _PS_DQ:
                    i += 2
                    continue
                return i + 1
            elif c == "`":
                self.refuse_ref(i + 1, ("comes right after a backtick", "remove the backtick"))
                i += 2
            elif c == "$" and self.at(i + 1) == "(":
                i = self.code(i + 2, close=True)
            else:
                i += 1
        return i

    def here(self, i: int, *, verbatim: bool) -> int:
        """The body of a here-string: until a line that starts with "@ (or '@)."""
        line_start = True
        while i < self.n:
            c = self.s[i]
            if line_start and c in (_PS_SQ if verbatim else _PS_DQ) and self.at(i + 1) == "@":
                return i + 2
            line_start = c == "\n"
            if isinstance(c, int):
                if verbatim:
                    raise Refusal(
                        c,
                        "is inside a verbatim here-string (@'...'@), where nothing expands",
                        'use an expandable one (@"..."@)',
                    )
                self.mark(i)
                i += 1
            elif c == "`" and not verbatim:
                self.refuse_ref(i + 1, ("comes right after a backtick", "remove the backtick"))
                i += 2
            elif c == "$" and self.at(i + 1) == "(" and not verbatim:
                i = self.code(i + 2, close=True)
            else:
                i += 1
        return i


def _powershell_write(ref: Ref, kind: Kind) -> str:
    return f"${{env:{ref.var}}}"


READERS: dict[str, Callable[[list[str | int], list[Ref]], dict[int, Kind]]] = {
    "runShellScript": lambda seq, refs: ShellReader(seq, refs[0].var).read(),
    "runPythonScript": _python_read,
    "runPowerShellScript": lambda seq, refs: _PowerShell(seq).read(),
}
WRITERS: dict[str, Callable[[Ref, Kind], str]] = {
    "runShellScript": _shell_word,
    "runPythonScript": _python_write,
    "runPowerShellScript": _powershell_write,
}
