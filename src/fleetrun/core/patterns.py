"""Event patterns: which events a rule wants, in EventBridge's syntax and with its semantics.

A pattern is a JSON object shaped like the events it selects. Every leaf is a list of
values; a field matches when its value in the event equals any of them (OR), and an event
matches when every field of the pattern matches (AND)::

    {"source": ["fleetrun"], "detail": {"status": ["Failed", "TimedOut"]}}

A list value may also hold operator objects: `prefix`, `suffix`, `equals-ignore-case`,
`wildcard`, `anything-but`, `numeric`, `cidr` and `exists`; `"$or": [{...}, {...}]` at any
level matches when any of its sub-patterns does. A dotted field name is a path, in the
pattern and in the event alike (EventBridge joins path segments with dots):
`{"detail": {"state.status": [...]}}` is `{"detail": {"state": {"status": [...]}}}`.
When the event holds a list, a leaf matches
if any element does, and a nested pattern must match within one element of the list, never
by mixing fields of different elements.

`compile_pattern` checks the pattern once and raises `PatternError` (a `ValidationError`)
whose one sentence names the field and the fault; `Pattern.matches` is then pure and cheap.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from fleetrun.core.errors import ValidationError

__all__ = ["Pattern", "PatternError", "compile_pattern", "pattern_fields"]

NUMERIC_LIMIT = Decimal("5e9")  # numeric operators work within -5.0e9 .. +5.0e9, inclusive
NUMERIC_STEP = Decimal("0.000001")  # ... and six digits to the right of the decimal point
MAX_DEPTH = 32  # nesting of objects and $or, so a hostile pattern cannot exhaust the stack
OPERATORS = (
    "anything-but",
    "cidr",
    "equals-ignore-case",
    "exists",
    "numeric",
    "prefix",
    "suffix",
    "wildcard",
)
ANYTHING_BUT_OPERATORS = ("equals-ignore-case", "prefix", "suffix", "wildcard")
LOWER_BOUNDS = (">", ">=")
UPPER_BOUNDS = ("<", "<=")
NUMERIC_SHAPES = {("=",), ("lower",), ("upper",), ("lower", "upper")}  # as AWS accepts them

_MISSING: Any = object()  # the value of a field the event does not have

Test = Callable[[Any], bool]  # one leaf value of the event -> does it match


class PatternError(ValidationError):
    """The pattern is not valid; `field` names where, when the fault is in one field."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# -- the compiled form --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Leaf:
    """A field's list of values: matches when any of them does."""

    tests: tuple[Test, ...]
    exists: frozenset[bool]  # {"exists": true/false} entries of the list

    @property
    def absence_only(self) -> bool:
        return not self.tests and self.exists == {False}

    def matches(self, value: Any) -> bool:
        scalars = [] if value is _MISSING else list(_scalars(value))
        if bool(scalars) in self.exists:
            return True
        return any(test(s) for s in scalars for test in self.tests)


@dataclass(frozen=True, slots=True)
class _Node:
    """An object of the pattern: every field matches, and one of each `$or` group does."""

    fields: tuple[tuple[str, _Node | _Leaf], ...]
    alternatives: tuple[tuple[_Node, ...], ...]
    absence_only: bool  # it asks only that fields be missing ({"exists": false})
    nested: bool = False  # some field is an object (found under dotted names too)

    def matches(self, value: Any) -> bool:
        if isinstance(value, list):
            elements = list(_elements(value)) or [_MISSING]
            if self.absence_only:
                # Nothing ties the object to one element: a field is missing only if it is
                # missing from every element, as a field is when the list is flattened.
                return all(self._matches_one(element) for element in elements)
            # Array consistency: the whole object must match within one element.
            return any(self._matches_one(element) for element in elements)
        return self._matches_one(value)

    def _matches_one(self, value: Any) -> bool:
        is_dict = isinstance(value, dict)
        dotted = is_dict and self.nested and _has_dotted_names(value)
        for key, child in self.fields:
            if not is_dict:
                found = _MISSING
            elif dotted and isinstance(child, _Node):
                found = _field(value, key)
            else:
                found = value.get(key, _MISSING)
            if not child.matches(found):
                return False
        return all(any(alt._matches_one(value) for alt in group) for group in self.alternatives)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A checked event pattern. `source` is the pattern as given; `matches` is pure."""

    source: dict[str, Any]
    _root: _Node

    def matches(self, event: dict[str, Any]) -> bool:
        return self._root.matches(event)

    @property
    def fields(self) -> frozenset[str]:
        """The dotted paths of the event fields the pattern reads."""
        return frozenset(_fields(self._root, ""))


def compile_pattern(pattern: dict[str, Any] | str) -> Pattern:
    """Check `pattern` (an object, or its JSON text) and return it ready to match."""
    if isinstance(pattern, str):
        pattern = _parse_json(pattern)
    if not isinstance(pattern, dict):
        raise PatternError(
            f'A pattern must be a JSON object like {{"source": ["fleetrun"]}}, '
            f"not {_kind(pattern)}."
        )
    if not pattern:
        raise PatternError('A pattern must name at least one field, like {"source": ["fleetrun"]}.')
    return Pattern(copy.deepcopy(pattern), _node(_undotted(pattern, [], 0), [], 0))


def pattern_fields(pattern: dict[str, Any] | str | Pattern) -> set[str]:
    """The dotted paths of the event fields a pattern reads (checking it on the way)."""
    compiled = pattern if isinstance(pattern, Pattern) else compile_pattern(pattern)
    return set(compiled.fields)


# -- matching helpers ---------------------------------------------------------------------


def _elements(values: list[Any]) -> Iterator[Any]:
    """The elements of a list, looking into lists within it (without recursion: events
    are not checked like patterns, and may nest lists deeply)."""
    stack = [iter(values)]
    while stack:
        for value in stack[-1]:
            if isinstance(value, list):
                stack.append(iter(value))
                break
            yield value
        else:
            stack.pop()


def _field(value: dict[str, Any], key: str) -> Any:
    """The object at `key`, with what the event names by dotted keys under it:
    {"state.status": "x"} has {"status": "x"} at "state", as EventBridge reads events."""
    found = value.get(key, _MISSING)
    if not (found is _MISSING or isinstance(found, dict)):
        return found
    prefix = key + "."
    dotted = {
        k[len(prefix) :]: v for k, v in value.items() if isinstance(k, str) and k.startswith(prefix)
    }
    if not dotted:
        return found
    return dotted if found is _MISSING else {**found, **dotted}


def _has_dotted_names(value: dict[str, Any]) -> bool:
    """Whether an event object names a field with a dot (most have none: one quick look)."""
    try:
        return "." in "".join(value)
    except TypeError:  # a name that is not a string (an event built in code)
        return True


def _scalars(value: Any) -> Iterator[Any]:
    """The leaf values of an event field: objects are not leaves; lists are looked into."""
    if isinstance(value, list):
        for element in _elements(value):
            if not isinstance(element, dict):
                yield element
    elif not isinstance(value, dict):
        yield value


def _fields(node: _Node, prefix: str) -> Iterator[str]:
    for key, child in node.fields:
        path = f"{prefix}{key}"
        if isinstance(child, _Leaf):
            yield path
        else:
            yield from _fields(child, f"{path}.")
    for group in node.alternatives:
        for alternative in group:
            yield from _fields(alternative, prefix)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _decimal(value: Any) -> Decimal | None:
    """A JSON number as an exact decimal, rounded to the precision AWS compares at."""
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        return None
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if abs(number) > NUMERIC_LIMIT:
        return number  # beyond the numeric range: compared exactly, as text would be
    return number.quantize(NUMERIC_STEP, rounding=ROUND_HALF_EVEN)


def _in_range(number: Decimal | None) -> bool:
    return number is not None and abs(number) <= NUMERIC_LIMIT


# -- checking and compiling ---------------------------------------------------------------


def _parse_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise PatternError(f"The pattern holds {name}, which is not a JSON number.")

    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise PatternError(
            f"The pattern nests deeper than {MAX_DEPTH} levels; flatten it."
        ) from None
    except json.JSONDecodeError as exc:
        raise PatternError(
            f"The pattern is not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})."
        ) from None


def _where(path: list[str]) -> str:
    return f'pattern field "{".".join(path)}"'


def _fail(path: list[str], fault: str) -> PatternError:
    return PatternError(f"{_where(path)}: {fault}.", ".".join(path))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if _is_number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _undotted(pattern: dict[str, Any], path: list[str], depth: int) -> dict[str, Any]:
    """The pattern with every dotted field name made nested objects, as EventBridge
    joins path segments with dots: {"state.status": [...]} is {"state": {"status": [...]}}.
    A field named both ways is refused (which of the two would it be?)."""
    if depth > MAX_DEPTH:
        raise _fail(path, f"nests deeper than {MAX_DEPTH} levels; flatten the pattern")
    out: dict[str, Any] = {}
    for key, value in pattern.items():
        if key == "$or" and isinstance(value, list):
            value = [
                _undotted(v, [*path, key], depth + 1) if isinstance(v, dict) else v for v in value
            ]
        elif isinstance(value, dict):
            value = _undotted(value, [*path, str(key)], depth + 1)
        steps = key.split(".") if isinstance(key, str) and key != "$or" else [key]
        for step in reversed(steps[1:]):
            value = {step: value}
        _merge(out, steps[0], value, [*path, str(key)])
    return out


def _merge(into: dict[str, Any], key: str, value: Any, path: list[str]) -> None:
    if key not in into:
        into[key] = value
    elif isinstance(into[key], dict) and isinstance(value, dict) and key != "$or":
        merged = dict(into[key])
        for inner, item in value.items():
            _merge(merged, inner, item, path)
        into[key] = merged
    else:
        raise _fail(
            path, "names a field the pattern names already (dotted and nested are the same field)"
        )


def _node(pattern: dict[str, Any], path: list[str], depth: int) -> _Node:
    if depth > MAX_DEPTH:
        raise _fail(path, f"nests deeper than {MAX_DEPTH} levels; flatten the pattern")
    fields: list[tuple[str, _Node | _Leaf]] = []
    alternatives: list[tuple[_Node, ...]] = []
    for key, value in pattern.items():
        here = [*path, str(key)]
        if key == "$or":
            alternatives.append(_alternatives(value, here, depth))
        elif isinstance(value, list):
            fields.append((key, _leaf(value, here)))
        elif isinstance(value, dict):
            if not value:
                raise _fail(here, "is an empty object; name a field inside it or remove it")
            fields.append((key, _node(value, here, depth + 1)))
        else:
            example = json.dumps(value, default=str)
            raise _fail(
                here,
                f"expects a list of values like [{example}] or a nested object, not {_kind(value)}",
            )
    absence_only = not alternatives and all(child.absence_only for _, child in fields)
    nested = any(isinstance(child, _Node) for _, child in fields)
    return _Node(tuple(fields), tuple(alternatives), absence_only, nested)


def _alternatives(value: Any, path: list[str], depth: int) -> tuple[_Node, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise _fail(path, "$or expects a list of at least two sub-patterns, like [{...}, {...}]")
    group = []
    for index, alternative in enumerate(value):
        here = [*path[:-1], f"$or[{index}]"]
        if not isinstance(alternative, dict) or not alternative:
            raise _fail(
                here,
                "each $or entry must be a non-empty object, "
                f"not {_kind(alternative) if alternative != {} else 'an empty one'}",
            )
        group.append(_node(alternative, here, depth + 1))
    return tuple(group)


def _leaf(values: list[Any], path: list[str]) -> _Leaf:
    if not values:
        raise _fail(path, 'is an empty list; give at least one value, like ["fleetrun"]')
    tests: list[Test] = []
    exists: set[bool] = set()
    strings = frozenset(v for v in values if isinstance(v, str))
    if strings:  # one set lookup for all the plain strings, the common case
        tests.append(lambda v: isinstance(v, str) and v in strings)
    for value in values:
        if isinstance(value, str):
            continue
        if isinstance(value, dict):
            name, operand = _operator(value, path)
            if name == "exists":
                if not isinstance(operand, bool):
                    raise _fail(path, f"exists expects true or false, not {_kind(operand)}")
                exists.add(operand)
            else:
                tests.append(_OPERATORS[name](operand, path))
        elif isinstance(value, list):
            raise _fail(path, "a list of values cannot hold another list")
        else:
            tests.append(_equals(value, path))
    return _Leaf(tuple(tests), frozenset(exists))


def _operator(value: dict[str, Any], path: list[str]) -> tuple[str, Any]:
    if len(value) != 1:
        names = ", ".join(sorted(value)) or "none"
        raise _fail(
            path,
            f"an operator object holds exactly one operator, not {len(value)} ({names}); "
            "list several objects to match any of them",
        )
    ((name, operand),) = value.items()
    if name not in OPERATORS:
        raise _fail(path, f'unknown operator "{name}"; use one of {", ".join(OPERATORS)}')
    return name, operand


def _equals(value: Any, path: list[str]) -> Test:
    if value is None:
        return lambda v: v is None
    if isinstance(value, bool):
        return lambda v: isinstance(v, bool) and v is value
    if _is_number(value):
        number = _number(value, path, "a value", limit=False)
        return lambda v: _decimal(v) == number
    raise _fail(path, f"values must be strings, numbers, booleans or null, not {_kind(value)}")


def _number(value: Any, path: list[str], what: str, limit: bool = True) -> Decimal:
    number = _decimal(value)
    if number is None:
        raise _fail(path, f"{what} must be a finite number, not {_kind(value)}")
    if limit and not _in_range(number):
        raise _fail(path, f"{what} {value} is out of range; numbers go from -5.0e9 to 5.0e9")
    return number


def _string(operand: Any, path: list[str], name: str) -> str:
    if not isinstance(operand, str):
        raise _fail(
            path, f'{name} expects a string, like {{"{name}": "abc"}}, not {_kind(operand)}'
        )
    return operand


def _ignoring_case(operand: Any, path: list[str], name: str) -> tuple[str, bool]:
    """The operand of prefix or suffix: a string, or {"equals-ignore-case": string}."""
    if isinstance(operand, dict) and list(operand) == ["equals-ignore-case"]:
        text = _string(operand["equals-ignore-case"], path, f"{name} equals-ignore-case")
        return text.casefold(), True
    if isinstance(operand, dict):
        raise _fail(
            path,
            f'{name} takes a string or {{"equals-ignore-case": "..."}}, '
            f"not an object with {', '.join(sorted(operand)) or 'nothing'}",
        )
    return _string(operand, path, name), False


def _prefix(operand: Any, path: list[str]) -> Test:
    text, fold = _ignoring_case(operand, path, "prefix")
    if fold:
        return lambda v: isinstance(v, str) and v.casefold().startswith(text)
    return lambda v: isinstance(v, str) and v.startswith(text)


def _suffix(operand: Any, path: list[str]) -> Test:
    text, fold = _ignoring_case(operand, path, "suffix")
    if fold:
        return lambda v: isinstance(v, str) and v.casefold().endswith(text)
    return lambda v: isinstance(v, str) and v.endswith(text)


def _equals_ignore_case(operand: Any, path: list[str]) -> Test:
    text = _string(operand, path, "equals-ignore-case").casefold()
    return lambda v: isinstance(v, str) and v.casefold() == text


def _wildcard(operand: Any, path: list[str]) -> Test:
    regex = _wildcard_regex(_string(operand, path, "wildcard"), path)
    return lambda v: isinstance(v, str) and regex.fullmatch(v) is not None


def _wildcard_regex(text: str, path: list[str]) -> re.Pattern[str]:
    """`*` is any run of characters; `\\*` a star and `\\\\` a backslash; `**` is refused."""
    parts: list[str] = []
    literal: list[str] = []
    index, star = 0, False
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in ("*", "\\"):
                raise _fail(
                    path,
                    f'wildcard "{text}" escapes {escaped or "nothing"!r}; only \\* (a star) '
                    "and \\\\ (a backslash) may be escaped",
                )
            literal.append(escaped)
            index, star = index + 2, False
            continue
        if char == "*":
            if star:
                raise _fail(path, f'wildcard "{text}" has consecutive wildcards; use one *')
            parts += [re.escape("".join(literal)), ".*"]
            literal, star = [], True
        else:
            literal.append(char)
            star = False
        index += 1
    parts.append(re.escape("".join(literal)))
    return re.compile("".join(parts), re.DOTALL)


def _cidr(operand: Any, path: list[str]) -> Test:
    text = _string(operand, path, "cidr")
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise _fail(
            path, f'cidr "{text}" is not an IP range; write it like 10.0.0.0/24 or 2001:db8::/32'
        ) from None

    def test(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            address = ipaddress.ip_address(value.strip())
        except ValueError:
            return False
        return address.version == network.version and address in network

    return test


def _numeric(operand: Any, path: list[str]) -> Test:
    usage = 'numeric expects pairs of an operator and a number, like {"numeric": [">", 0]}'
    if not isinstance(operand, list) or not operand or len(operand) % 2:
        raise _fail(path, usage)
    bounds: dict[str, tuple[str, Decimal]] = {}
    sides: list[str] = []
    for op, value in zip(operand[::2], operand[1::2], strict=True):
        if op not in ("=", *LOWER_BOUNDS, *UPPER_BOUNDS):
            raise _fail(path, f"numeric operator {json.dumps(op)} is unknown; use =, <, <=, >, >=")
        side = "=" if op == "=" else "lower" if op in LOWER_BOUNDS else "upper"
        sides.append(side)
        bounds[side] = (op, _number(value, path, f"numeric {op} operand"))
    if tuple(sides) not in NUMERIC_SHAPES:
        raise _fail(
            path,
            "numeric takes = alone, one bound, or a lower bound (> or >=) then an upper "
            'bound (< or <=), like [">", 0, "<=", 5]',
        )
    if "lower" in bounds and "upper" in bounds and bounds["lower"][1] >= bounds["upper"][1]:
        raise _fail(path, "numeric range is empty; its lower bound must be below its upper bound")
    checks = tuple(bounds.values())

    def test(value: Any) -> bool:
        number = _decimal(value)
        return _in_range(number) and all(_compare(number, op, bound) for op, bound in checks)

    return test


def _compare(number: Any, op: str, bound: Decimal) -> bool:
    if op == "=":
        return bool(number == bound)
    if op == "<":
        return bool(number < bound)
    if op == "<=":
        return bool(number <= bound)
    if op == ">":
        return bool(number > bound)
    return bool(number >= bound)


def _anything_but(operand: Any, path: list[str]) -> Test:
    if isinstance(operand, dict):
        return _anything_but_operator(operand, path)
    values = operand if isinstance(operand, list) else [operand]
    if not values:
        raise _fail(path, "anything-but expects a value or a non-empty list of values")
    if all(isinstance(v, str) for v in values):
        strings = frozenset(values)
        return lambda v: not (isinstance(v, str) and v in strings)
    if all(_is_number(v) for v in values):
        numbers = frozenset(_number(v, path, "anything-but value", limit=False) for v in values)
        return lambda v: _decimal(v) not in numbers
    raise _fail(
        path,
        "anything-but expects a string, a number, a list of only strings or only numbers, "
        "or one of " + ", ".join(f'{{"{name}": ...}}' for name in ANYTHING_BUT_OPERATORS),
    )


def _anything_but_operator(operand: dict[str, Any], path: list[str]) -> Test:
    if len(operand) != 1 or next(iter(operand)) not in ANYTHING_BUT_OPERATORS:
        names = ", ".join(sorted(operand)) or "nothing"
        raise _fail(
            path,
            f"anything-but takes one of {', '.join(ANYTHING_BUT_OPERATORS)} inside it, not {names}",
        )
    ((name, inner),) = operand.items()
    where = f"anything-but {name}"
    if isinstance(inner, list) and not inner:
        raise _fail(path, f"{where} expects a string or a non-empty list of strings")
    excluded = tuple(
        _OPERATORS[name](_excluded_text(v, path, name, where), path)
        for v in (inner if isinstance(inner, list) else [inner])
    )
    # Exclusions only ever exclude strings: any other present value matches.
    return lambda v: not any(test(v) for test in excluded)


def _excluded_text(value: Any, path: list[str], name: str, where: str) -> str:
    text = _string(value, path, where)
    if not text and name in ("prefix", "suffix"):
        raise _fail(path, f"{where} expects a non-empty string (an empty one excludes all)")
    return text


_OPERATORS: dict[str, Callable[[Any, list[str]], Test]] = {
    "anything-but": _anything_but,
    "cidr": _cidr,
    "equals-ignore-case": _equals_ignore_case,
    "numeric": _numeric,
    "prefix": _prefix,
    "suffix": _suffix,
    "wildcard": _wildcard,
}
