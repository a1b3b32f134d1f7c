"""How policy values meet request values: condition operators, wildcards, variables.

Pure and generic (no fleetrun names): `fleetrun.core.policy` parses documents and
decides requests with what is here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any


@dataclass(frozen=True, slots=True)
class Operator:
    kind: str  # string, numeric, date, bool, binary, ip, arn, null
    test: Callable[[str, Any], bool] | None  # (context value, prepared policy value)
    negated: bool = False  # a negated operator: values NORed, true when the key is absent
    variables: bool = False  # policy values may hold ${...} variables


def _num(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _date(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date or time, or of a number of epoch seconds."""
    text = text.strip()
    number = _num(text)
    if number is not None:
        return float(number)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _compare(op: str, kind: str) -> Callable[[str, Any], bool]:
    parse = _num if kind == "numeric" else _date

    def test(value: str, policy: Any) -> bool:
        parsed = parse(value)
        if parsed is None:
            return False
        if op == "Equals":
            return bool(parsed == policy)
        if op == "LessThan":
            return bool(parsed < policy)
        if op == "LessThanEquals":
            return bool(parsed <= policy)
        if op == "GreaterThan":
            return bool(parsed > policy)
        return bool(parsed >= policy)

    return test


def _in_network(value: str, network: Any) -> bool:
    address = _ip(value)
    return address is not None and address.version == network.version and address in network


def _string_like(value: str, pattern: Any) -> bool:
    return pattern.fullmatch(value) is not None


def _arn_like(value: str, patterns: Any) -> bool:
    if len(patterns) == 1:  # "*": any value at all
        return bool(patterns[0].fullmatch(value))
    parts = value.split(":", 5)
    return len(parts) == len(patterns) and all(
        p.fullmatch(part) is not None for p, part in zip(patterns, parts, strict=True)
    )


OPERATORS: dict[str, Operator] = {
    "StringEquals": Operator("string", lambda v, p: v == p, variables=True),
    "StringNotEquals": Operator("string", lambda v, p: v == p, negated=True, variables=True),
    "StringEqualsIgnoreCase": Operator(
        "string", lambda v, p: v.casefold() == p.casefold(), variables=True
    ),
    "StringNotEqualsIgnoreCase": Operator(
        "string", lambda v, p: v.casefold() == p.casefold(), negated=True, variables=True
    ),
    "StringLike": Operator("glob", _string_like, variables=True),
    "StringNotLike": Operator("glob", _string_like, negated=True, variables=True),
    "NumericEquals": Operator("numeric", _compare("Equals", "numeric")),
    "NumericNotEquals": Operator("numeric", _compare("Equals", "numeric"), negated=True),
    "NumericLessThan": Operator("numeric", _compare("LessThan", "numeric")),
    "NumericLessThanEquals": Operator("numeric", _compare("LessThanEquals", "numeric")),
    "NumericGreaterThan": Operator("numeric", _compare("GreaterThan", "numeric")),
    "NumericGreaterThanEquals": Operator("numeric", _compare("GreaterThanEquals", "numeric")),
    "DateEquals": Operator("date", _compare("Equals", "date")),
    "DateNotEquals": Operator("date", _compare("Equals", "date"), negated=True),
    "DateLessThan": Operator("date", _compare("LessThan", "date")),
    "DateLessThanEquals": Operator("date", _compare("LessThanEquals", "date")),
    "DateGreaterThan": Operator("date", _compare("GreaterThan", "date")),
    "DateGreaterThanEquals": Operator("date", _compare("GreaterThanEquals", "date")),
    "Bool": Operator("bool", lambda v, p: v.strip().lower() == p),
    "BinaryEquals": Operator("binary", lambda v, p: v == p),
    "IpAddress": Operator("ip", _in_network),
    "NotIpAddress": Operator("ip", _in_network, negated=True),
    "ArnEquals": Operator("arn", _arn_like, variables=True),
    "ArnLike": Operator("arn", _arn_like, variables=True),
    "ArnNotEquals": Operator("arn", _arn_like, negated=True, variables=True),
    "ArnNotLike": Operator("arn", _arn_like, negated=True, variables=True),
    "Null": Operator("null", None),
}
QUALIFIERS = ("ForAnyValue", "ForAllValues")


def operator_names() -> list[str]:
    """Every operator a Condition may name, with its IfExists form (but not Null's)."""
    names = []
    for name in OPERATORS:
        names.append(name)
        if name != "Null":
            names.append(f"{name}IfExists")
    return names


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str  # as written, e.g. "ForAnyValue:StringLikeIfExists"
    base: str  # e.g. "StringLike"
    qualifier: str | None  # "ForAnyValue", "ForAllValues" or None
    if_exists: bool
    key: str  # as written
    values: tuple[str, ...]
    prepared: tuple[Any, ...] = field(repr=False, compare=False, default=())

    @property
    def key_lower(self) -> str:
        return self.key.lower()


def prepare(spec: Operator, value: str) -> Any:
    """Check one policy value and turn it into what the operator compares with (a
    ValueError says what is wrong with it)."""
    kind = spec.kind
    if kind == "numeric":
        number = _num(value)
        if number is None:
            raise ValueError(f"{value!r} is not a number")
        return number
    if kind == "date":
        when = _date(value)
        if when is None:
            raise ValueError(f"{value!r} is not a date (use ISO 8601, e.g. 2026-01-31T23:59:59Z)")
        return when
    if kind in ("bool", "null"):
        if value.lower() not in ("true", "false"):
            raise ValueError(f"{value!r} is not true or false")
        return value.lower()
    if kind == "ip":
        try:
            return ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or CIDR range (e.g. 203.0.113.0/24)"
            ) from None
    return value


class Unknown:
    """A policy variable whose key is not known yet (partial evaluation)."""


UNKNOWN = Unknown()
_STAR, _ONE = object(), object()


def _tokens(
    pattern: str, lookup: Callable[[str], str | Unknown | None] | None
) -> list[Any] | Unknown | None:
    """The pattern as literal strings and wildcards, with ${...} variables replaced by
    the (literal) context values. None: a variable has no value and no default."""
    out: list[Any] = []
    pos = 0
    while pos < len(pattern):
        if lookup is not None and pattern.startswith("${", pos):
            end = pattern.find("}", pos)
            if end != -1:
                inner = pattern[pos + 2 : end].strip()
                if inner in ("*", "?", "$"):
                    out.append(inner)
                else:
                    key, _, default = inner.partition(",")
                    value = lookup(key.strip())
                    if isinstance(value, Unknown):
                        return UNKNOWN
                    if value is None:
                        default = default.strip()
                        if len(default) >= 2 and default[0] == default[-1] == "'":
                            value = default[1:-1]
                        else:
                            return None
                    out.append(value)
                pos = end + 1
                continue
        char = pattern[pos]
        out.append(_STAR if char == "*" else _ONE if char == "?" else char)
        pos += 1
    return out


def _regex(tokens: list[Any], *, segments: bool, ignore_case: bool = False) -> re.Pattern[str]:
    """Glob tokens as a regular expression. With `segments` (resource names), a
    wildcard stays inside one colon-separated segment, except a * that ends a segment."""
    parts = []
    for i, token in enumerate(tokens):
        if token is _STAR:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            ends_segment = nxt is None or (isinstance(nxt, str) and nxt.startswith(":"))
            parts.append(".*" if not segments or ends_segment else "[^:]*")
        elif token is _ONE:
            parts.append("[^:]" if segments else ".")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


@lru_cache(maxsize=4096)
def _static_regex(pattern: str, segments: bool, ignore_case: bool) -> re.Pattern[str]:
    tokens = _tokens(pattern, None)
    assert isinstance(tokens, list)
    return _regex(tokens, segments=segments, ignore_case=ignore_case)


def action_matches(pattern: str, action: str) -> bool:
    """Actions compare case-insensitively, with * and ? wildcards."""
    return _static_regex(pattern, False, True).fullmatch(action) is not None


def _pattern(
    pattern: str, lookup: Callable[[str], Any] | None, *, segments: bool
) -> re.Pattern[str] | Unknown | None:
    if lookup is None or "${" not in pattern:
        return _static_regex(pattern, segments, False)
    tokens = _tokens(pattern, lookup)
    if tokens is None or isinstance(tokens, Unknown):
        return tokens
    return _regex(tokens, segments=segments)


EVERY = "*"  # a request's ARN in every region, or every (non-empty) account


def _in_place(pattern: str, resource: str) -> str:
    """A resource whose ARN says `*` for its region or account is in every region (or
    every account that is one: not the empty one of a service-owned resource), so it is
    compared as if it were in the one the pattern names."""
    theirs = _place(pattern)
    if theirs is None or EVERY not in resource:
        return resource
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return resource
    region, account = theirs
    if region is not None and parts[3] == EVERY:
        parts[3] = region
    if account and parts[4] == EVERY:
        parts[4] = account
    return ":".join(parts)


@lru_cache(maxsize=4096)
def _place(pattern: str) -> tuple[str | None, str | None] | None:
    """The region and account an ARN pattern names (None: it names none)."""
    if not pattern.startswith("arn:") or "${" in pattern:
        return None
    theirs = pattern.split(":", 5)
    region = theirs[3] if len(theirs) >= 4 else None
    account = theirs[4] if len(theirs) >= 5 else None
    return region, account


def resource_matches(
    pattern: str, resource: str, lookup: Callable[[str], Any] | None = None
) -> bool | None:
    """Resource names compare case-sensitively, segment by segment (see `_regex`); an
    ARN in every region or account (`*` there) is in the one the pattern names."""
    if pattern == "*":
        return True
    resource = _in_place(pattern, resource)
    regex = _pattern(pattern, lookup, segments=True)
    if isinstance(regex, Unknown):
        return None
    return regex is not None and regex.fullmatch(resource) is not None


def holds(
    cond: Condition,
    values: list[str] | None,
    *,
    known: bool = True,
    lookup: Callable[[str], Any] | None = None,
) -> bool | None:
    """Whether a condition holds for the request's values of its key (None: the key,
    or a variable, is not known yet). `lookup` gives policy variables their values."""
    if not known:
        return None
    present = bool(values)
    spec = OPERATORS[cond.base]
    if cond.base == "Null":
        return any((not present) == (want == "true") for want in cond.prepared)
    if cond.if_exists and not present:
        return True
    if cond.qualifier == "ForAllValues" and not present:
        return True
    if not present:
        return spec.negated and cond.qualifier is None
    assert values is not None
    policy_values = _policy_values(cond, spec, lookup if spec.variables else None)
    if policy_values is None:
        return None

    test = spec.test
    assert test is not None

    def positive(value: str) -> bool:
        return any(test(value, p) for p in policy_values)

    if cond.qualifier is None:
        hit = any(positive(v) for v in values)
        return not hit if spec.negated else hit
    per_value = (lambda v: not positive(v)) if spec.negated else positive
    if cond.qualifier == "ForAnyValue":
        return any(per_value(v) for v in values)
    return all(per_value(v) for v in values)


def _policy_values(
    cond: Condition, spec: Operator, lookup: Callable[[str], Any] | None
) -> list[Any] | None:
    """The policy's values ready to compare; None when a variable is not known yet."""
    out: list[Any] = []
    for raw, prepared in zip(cond.values, cond.prepared, strict=True):
        if spec.kind == "glob":
            regex = _pattern(raw, lookup, segments=False)
        elif spec.kind == "arn":
            parts = raw.split(":", 5)
            compiled = [_pattern(part, lookup, segments=False) for part in parts]
            if any(isinstance(c, Unknown) for c in compiled):
                return None
            if any(c is None for c in compiled):
                continue
            out.append(compiled)
            continue
        elif spec.kind == "string" and lookup is not None and "${" in raw:
            tokens = _tokens(raw, lookup)
            if isinstance(tokens, Unknown):
                return None
            if tokens is None:
                continue
            out.append("".join("*" if t is _STAR else "?" if t is _ONE else t for t in tokens))
            continue
        else:
            out.append(prepared)
            continue
        if isinstance(regex, Unknown):
            return None
        if regex is not None:
            out.append(regex)
    return out
