"""Reading a shell script far enough to know what quoting each placeholder sits in.

`ShellReader` takes the script as a sequence of characters in which each placeholder
is one int (its index), so no text of the script can pass for a placeholder, and says
for each one whether it sits in a word, double quotes (or an unquoted here-document),
single quotes or a comment; or raises `Refusal` where no variable reference would be
read as data there: a quoted here-document, backticks, `$'...'`, arithmetic (`$((`,
`((`, `let`, `[[ -eq ]]`, `${x:offset}`, subscripts), right after a backslash or a `$`,
or a `#!` line that gives the script to another language. POSIX sh with the bash forms
that matter here; `fleetrun.core.substitution` writes the references.
"""

from __future__ import annotations

Kind = tuple[str, ...]  # how one reference is written: ("word",), ("str", prefix, quote)...


class Refusal(Exception):
    """A placeholder (by index) where a value cannot be data: why, and what to write."""

    def __init__(self, ref: int, why: str, instead: str) -> None:
        super().__init__(why)
        self.ref, self.why, self.instead = ref, why, instead


SHELLS = {"sh", "bash", "dash", "ash", "ksh", "mksh", "zsh", "busybox"}
_ARITH_OPS = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge"}
_BREAK = set(";&|()<>")


class ShellReader:
    """Reads a POSIX shell script (with the bash forms that matter here) far enough to
    know, for each placeholder, what quoting it sits in."""

    def __init__(self, seq: list[str | int], first_var: str) -> None:
        self.s = seq
        self.n = len(seq)
        self.first_var = first_var
        self.kinds: dict[int, Kind] = {}
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents to read
        self.arith_until = -1  # refs before this index sit in arithmetic

    def at(self, i: int) -> str | int | None:
        return self.s[i] if i < self.n else None

    def ref(self, i: int, kind: str) -> None:
        k = self.s[i]
        assert isinstance(k, int)
        if i < self.arith_until:
            raise Refusal(k, *ARITH)
        self.kinds[k] = (kind,)

    def refuse_ref(self, i: int, reason: tuple[str, str]) -> None:
        k = self.s[i]
        if isinstance(k, int):
            raise Refusal(k, *reason)

    def read(self) -> dict[int, Kind]:
        self.shebang()
        self.bare(0, None)
        return self.kinds

    def shebang(self) -> None:
        if self.s[:2] != ["#", "!"]:
            return
        head = []
        for c in self.s[2:]:
            if c == "\n":
                break
            head.append(c if isinstance(c, str) else " ")
        words = "".join(head).split()
        program = words[0].rsplit("/", 1)[-1] if words else ""
        if program == "env" and len(words) > 1:
            program = words[1].rsplit("/", 1)[-1]
        if program not in SHELLS:
            raise Refusal(
                0,
                f"is in a script its #! line gives to {program or 'an unknown program'}, "
                "whose language fleetrun does not read",
                "read the value from the environment variable "
                f"{self.first_var} in that language instead",
            )

    def bare(self, i: int, close: str | None) -> int:
        word_start = True
        depth = 0
        while i < self.n:
            c = self.s[i]
            if isinstance(c, int):
                self.ref(i, "word")
                i += 1
                word_start = False
                continue
            if c == "\n":
                i = self.heredocs(i + 1)
                word_start = True
                continue
            if c in " \t":
                i += 1
                word_start = True
                continue
            if c == "#" and word_start:
                while i < self.n and self.s[i] != "\n":
                    if isinstance(self.s[i], int):
                        self.ref(i, "comment")
                    i += 1
                continue
            if word_start and self._starts(i, "(("):
                i = self.arith(i + 2, "))")
                continue
            if word_start and self._starts(i, "[[") and self.at(i + 2) in (" ", "\t", "\n"):
                self.dbracket(i + 2)
            if word_start and self._starts(i, "let") and self.at(i + 3) in (" ", "\t"):
                self.let(i + 3)
            word_start = c in _BREAK
            if c == "\\":
                self.refuse_ref(i + 1, ESCAPED)
                i += 2
            elif c == "'":
                i = self.single(i + 1)
            elif c == '"':
                i = self.double(i + 1)
            elif c == "`":
                i = self.backtick(i + 1)
            elif c == "$":
                i = self.dollar(i, in_dq=False)
            elif self._starts(i, "<<<"):
                i += 3
            elif self._starts(i, "<<"):
                i = self.heredoc_start(i + 2)
            else:
                if c == "(":
                    depth += 1
                elif c == ")":
                    if depth == 0 and close == ")":
                        return i + 1
                    depth -= 1
                i += 1
        return i

    def _starts(self, i: int, text: str) -> bool:
        return self.s[i : i + len(text)] == list(text)

    def single(self, i: int) -> int:
        while i < self.n and self.s[i] != "'":
            if isinstance(self.s[i], int):
                self.ref(i, "sq")
            i += 1
        return i + 1

    def double(self, i: int, end: str = '"', stop: int | None = None) -> int:
        """Inside double quotes (or, with end None, an unquoted here-document line)."""
        limit = self.n if stop is None else stop
        while i < limit:
            c = self.s[i]
            if isinstance(c, int):
                self.ref(i, "dq")
                i += 1
            elif c == end:
                return i + 1
            elif c == "\\":
                self.refuse_ref(i + 1, ESCAPED)
                i += 2
            elif c == "$":
                i = self.dollar(i, in_dq=True)
            elif c == "`":
                i = self.backtick(i + 1)
            else:
                i += 1
        return i

    def backtick(self, i: int) -> int:
        while i < self.n and self.s[i] != "`":
            self.refuse_ref(i, BACKTICK)
            i += 2 if self.s[i] == "\\" else 1
        return i + 1

    def dollar(self, i: int, *, in_dq: bool) -> int:
        nxt = self.at(i + 1)
        if isinstance(nxt, int):
            raise Refusal(nxt, *DOLLAR)
        if nxt == "'" and not in_dq:
            j = i + 2
            while j < self.n and self.s[j] != "'":
                self.refuse_ref(j, ANSI)
                j += 2 if self.s[j] == "\\" else 1
            return j + 1
        if nxt == "(" and self.at(i + 2) == "(":
            return self.arith(i + 3, "))")
        if nxt == "(":
            return self.bare(i + 2, ")")
        if nxt == "[":
            return self.arith(i + 2, "]")
        if nxt == "{":
            return self.param(i + 2, in_dq=in_dq)
        return i + 1

    def arith(self, i: int, close: str) -> int:
        depth = 0
        while i < self.n:
            c = self.s[i]
            self.refuse_ref(i, ARITH)
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0 and close == "))" and self.at(i + 1) == ")":
                    return i + 2
                depth -= 1
            elif c == "]" and close == "]" and depth == 0:
                return i + 1
            i += 1
        return i

    def param(self, i: int, *, in_dq: bool) -> int:
        """After `${`: the name, a subscript, the operator, then the word."""
        j = i
        if self.at(j) in ("#", "!"):
            j += 1
        while (
            j < self.n
            and isinstance(self.s[j], str)
            and (str(self.s[j]).isalnum() or self.s[j] == "_")
        ):
            j += 1
        self.refuse_ref(j, NAME)
        if j == i and self.at(j) in tuple("@*#?-$!0"):
            j += 1
        if self.at(j) == "[":
            while j < self.n and self.s[j] != "]":
                self.refuse_ref(j, ARITH)
                j += 1
            j += 1
        if self.at(j) == ":" and self.at(j + 1) not in ("-", "=", "?", "+"):
            while j < self.n and self.s[j] != "}":
                self.refuse_ref(j, ARITH)
                j += 1
            return j + 1
        while j < self.n:
            c = self.s[j]
            if isinstance(c, int):
                self.ref(j, "dq" if in_dq else "word")
                j += 1
            elif c == "}":
                return j + 1
            elif c == "\\":
                self.refuse_ref(j + 1, ESCAPED)
                j += 2
            elif c == "'" and not in_dq:
                j = self.single(j + 1)
            elif c == '"':
                j = self.double(j + 1)
            elif c == "$":
                j = self.dollar(j, in_dq=in_dq)
            elif c == "`":
                j = self.backtick(j + 1)
            else:
                j += 1
        return j

    def dbracket(self, i: int) -> None:
        """`[[ ... ]]` compares -eq/-lt/... operands as arithmetic, which bash evaluates
        (array subscripts included): placeholders there are refused."""
        j, words, word = i, [], ""
        while j < self.n:
            c = self.s[j]
            if c in (" ", "\t", "\n") or isinstance(c, int):
                if word == "]]":
                    break
                words.append(word)
                word = ""
            else:
                word += str(c)
            j += 1
        if _ARITH_OPS & set(words):
            self.arith_until = max(self.arith_until, j)

    def let(self, i: int) -> None:
        j = i
        while j < self.n and self.s[j] not in ("\n", ";", "&", "|"):
            j += 1
        self.arith_until = max(self.arith_until, j)

    def heredoc_start(self, i: int) -> int:
        strip = self.at(i) == "-"
        i += 1 if strip else 0
        while self.at(i) in (" ", "\t"):
            i += 1
        quoted, delim = False, []
        while i < self.n:
            c = self.s[i]
            self.refuse_ref(i, DELIMITER)
            if c in (" ", "\t", "\n") or c in _BREAK:
                break
            if c in ("'", '"'):
                quoted = True
                i += 1
                while i < self.n and self.s[i] != c:
                    self.refuse_ref(i, DELIMITER)
                    delim.append(str(self.s[i]))
                    i += 1
                i += 1
            elif c == "\\":
                quoted = True
                if i + 1 < self.n:
                    self.refuse_ref(i + 1, DELIMITER)
                    delim.append(str(self.s[i + 1]))
                i += 2
            else:
                delim.append(str(c))
                i += 1
        self.pending.append(("".join(delim), quoted, strip))
        return i

    def heredocs(self, i: int) -> int:
        pending, self.pending = self.pending, []
        for delim, quoted, strip in pending:
            i = self.heredoc_body(i, delim, quoted=quoted, strip=strip)
        return i

    def heredoc_body(self, i: int, delim: str, *, quoted: bool, strip: bool) -> int:
        while i < self.n:
            j = i
            while j < self.n and self.s[j] != "\n":
                j += 1
            line = self.s[i:j]
            while strip and line and line[0] == "\t":
                line = line[1:]
            if all(isinstance(c, str) for c in line) and "".join(map(str, line)) == delim:
                return min(j + 1, self.n)
            if quoted:
                for k in range(i, j):
                    self.refuse_ref(k, QUOTED_HEREDOC)
                i = j + 1
                continue
            end = self.double(i, end="\0", stop=j)
            if end > j:  # a $(...) that went on past the line
                while end < self.n and self.s[end] != "\n":
                    end += 1
                j = end
            i = j + 1
        return self.n


ESCAPED = ("comes right after a backslash", "remove the backslash")
DOLLAR = ("comes right after a $", "remove the $")
BACKTICK = ("is inside backticks", "use $(...) instead of backticks")
ANSI = ("is inside $'...'", "put it outside the $'...' quotes")
ARITH = (
    "is in arithmetic (which evaluates the text it is given)",
    'check the value is a number first, e.g. case "$NAME" in *[!0-9]*) exit 1;; esac, '
    "then use $NAME",
)
NAME = ("is a variable name inside ${...}", "use a fixed variable name")
DELIMITER = ("is in a here-document's delimiter", "use a fixed delimiter word")
QUOTED_HEREDOC = (
    "is inside a quoted here-document, where nothing expands",
    "write the delimiter unquoted (<<EOF), or read the environment variable in the program "
    "the here-document feeds",
)
