"""IAM-grammar policies: parsing and evaluation, pure and generic.

A policy is a JSON document in the grammar of AWS IAM identity policies:

    {"Version": "2012-10-17",
     "Statement": [{"Sid": "...", "Effect": "Allow" | "Deny",
                    "Action" | "NotAction": "svc:Verb" | [...],
                    "Resource" | "NotResource": "ARN" | [...],
                    "Condition": {"Operator": {"key": "value" | [...]}}}]}

`parse_policy` checks a document and says in one sentence what is wrong and where;
`evaluate` decides a request (action, resource, context) against a set of policies as
the IAM User Guide's evaluation logic does for identity policies:

    1. an explicit Deny in a statement that applies wins;
    2. otherwise an Allow in a statement that applies allows;
    3. otherwise the request is implicitly denied.

A statement applies when its Action (or NotAction) matches the action, its Resource
(or NotResource) matches the resource, and every condition holds. Within a Condition
block operators and keys are ANDed, the values of one key ORed (NORed for negated
operators); key names are case-insensitive, actions too, resources are not.

Nothing here knows fleetrun's own actions, resources or keys: strings are compared as
AWS compares them, so an AWS policy evaluates here as AWS documents it. Evaluation can
also be partial (`known=`): keys that are not known yet, and an unknown resource (None),
make a statement undecided rather than false, so a caller can refuse early what no
resource could allow and decide the rest once it knows the resource.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal

from fleetrun.core.errors import ValidationError

VERSIONS = ("2012-10-17", "2008-10-17")
VARIABLES_VERSION = "2012-10-17"  # policy variables (${key}) exist only in this version
MAX_DOCUMENT_BYTES = 64 * 1024

Effect = Literal["Allow", "Deny"]
ContextValue = str | Sequence[str]
Context = Mapping[str, Any]  # key -> a value, or a list of values (a multi-valued key)

_STATEMENT_KEYS = (
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
    "Principal",
    "NotPrincipal",
)
_TOP_KEYS = ("Version", "Id", "Statement")
_ACTION_RE = re.compile(r"^[A-Za-z0-9_.\-]+:[A-Za-z0-9_*?\-]+$")
_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+:\S+$")


class PolicyError(ValidationError):
    """A policy document that is not valid; the message names the fault and its place."""


# -- operators ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Operator:
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


OPERATORS: dict[str, _Operator] = {
    "StringEquals": _Operator("string", lambda v, p: v == p, variables=True),
    "StringNotEquals": _Operator("string", lambda v, p: v == p, negated=True, variables=True),
    "StringEqualsIgnoreCase": _Operator(
        "string", lambda v, p: v.casefold() == p.casefold(), variables=True
    ),
    "StringNotEqualsIgnoreCase": _Operator(
        "string", lambda v, p: v.casefold() == p.casefold(), negated=True, variables=True
    ),
    "StringLike": _Operator("glob", _string_like, variables=True),
    "StringNotLike": _Operator("glob", _string_like, negated=True, variables=True),
    "NumericEquals": _Operator("numeric", _compare("Equals", "numeric")),
    "NumericNotEquals": _Operator("numeric", _compare("Equals", "numeric"), negated=True),
    "NumericLessThan": _Operator("numeric", _compare("LessThan", "numeric")),
    "NumericLessThanEquals": _Operator("numeric", _compare("LessThanEquals", "numeric")),
    "NumericGreaterThan": _Operator("numeric", _compare("GreaterThan", "numeric")),
    "NumericGreaterThanEquals": _Operator("numeric", _compare("GreaterThanEquals", "numeric")),
    "DateEquals": _Operator("date", _compare("Equals", "date")),
    "DateNotEquals": _Operator("date", _compare("Equals", "date"), negated=True),
    "DateLessThan": _Operator("date", _compare("LessThan", "date")),
    "DateLessThanEquals": _Operator("date", _compare("LessThanEquals", "date")),
    "DateGreaterThan": _Operator("date", _compare("GreaterThan", "date")),
    "DateGreaterThanEquals": _Operator("date", _compare("GreaterThanEquals", "date")),
    "Bool": _Operator("bool", lambda v, p: v.strip().lower() == p),
    "BinaryEquals": _Operator("binary", lambda v, p: v == p),
    "IpAddress": _Operator("ip", _in_network),
    "NotIpAddress": _Operator("ip", _in_network, negated=True),
    "ArnEquals": _Operator("arn", _arn_like, variables=True),
    "ArnLike": _Operator("arn", _arn_like, variables=True),
    "ArnNotEquals": _Operator("arn", _arn_like, negated=True, variables=True),
    "ArnNotLike": _Operator("arn", _arn_like, negated=True, variables=True),
    "Null": _Operator("null", None),
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


# -- the parsed model -----------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class Statement:
    policy: str  # the name of the policy it belongs to
    index: int  # 1-based position in the policy
    sid: str | None
    effect: Effect
    actions: tuple[str, ...]
    not_actions: bool
    resources: tuple[str, ...]
    not_resources: bool
    conditions: tuple[Condition, ...]
    variables: bool  # Version 2012-10-17: ${...} in resources and string values

    def ref(self) -> dict[str, Any]:
        """How a decision names this statement."""
        return {"policy": self.policy, "index": self.index, "sid": self.sid, "effect": self.effect}

    def describe(self) -> str:
        sid = f" (Sid {self.sid})" if self.sid else ""
        return f"statement {self.index}{sid} of policy {self.policy!r}"

    def place(self) -> str:
        """Where it is, as refusals name it: Statement 2 (Sid 'X')."""
        return _place(self.index, self.sid)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str
    statements: tuple[Statement, ...]
    document: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


# -- parsing --------------------------------------------------------------------------


class _Refuse(Exception):
    def __init__(self, place: str, fault: str) -> None:
        super().__init__(fault)
        self.place = place
        self.fault = fault


def parse_policy(document: str | bytes | Mapping[str, Any], name: str = "") -> Policy:
    """A checked policy, or a PolicyError saying what is wrong and where."""
    label = f"Policy {name!r}" if name else "The policy"
    data = _load_json(document, label) if isinstance(document, str | bytes) else document
    try:
        return _policy(data, name)
    except _Refuse as exc:
        raise PolicyError(f"{label} is not valid: in {exc.place}, {exc.fault}.") from None


def _load_json(text: str | bytes, label: str) -> Any:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise PolicyError(
            f"{label} is {len(raw)} bytes long; a policy may have at most "
            f"{MAX_DOCUMENT_BYTES} bytes: split it into several policies."
        )
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicates)
    except _DuplicateKeyError as exc:
        raise PolicyError(
            f"{label} is not valid: the key {exc.key!r} appears twice in one object; keep one."
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "it is not UTF-8"
        raise PolicyError(
            f"{label} is not valid JSON{where} ({reason}): fix the document and retry."
        ) from None


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _policy(data: Any, name: str) -> Policy:
    where = "the document"
    if not isinstance(data, Mapping):
        raise _Refuse(where, "the document must be a JSON object with Version and Statement")
    for key in data:
        if key not in _TOP_KEYS:
            raise _Refuse(where, f"the element {key!r} is unknown ({_hint(key, _TOP_KEYS)})")
    version = data.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise _Refuse(where, f"Version {version!r} is not supported: write 2012-10-17")
    raw = data.get("Statement")
    if raw is None:
        raise _Refuse(where, "there is no Statement: add one or more statements")
    items = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(items, list) or not items:
        raise _Refuse(where, "Statement must be an object or a non-empty list of objects")
    statements = []
    sids: set[str] = set()
    for index, item in enumerate(items, start=1):
        statement = _statement(item, index, name, version == VARIABLES_VERSION)
        if statement.sid is not None:
            if statement.sid in sids:
                raise _Refuse(_place(index, statement.sid), "the Sid is used twice")
            sids.add(statement.sid)
        statements.append(statement)
    return Policy(name=name, version=version, statements=tuple(statements), document=data)


def _place(index: int, sid: str | None) -> str:
    return f"Statement {index}" + (f" (Sid {sid!r})" if sid else "")


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f"did you mean {close[0]}?" if close else f"use one of {', '.join(choices)}"


def _statement(item: Any, index: int, policy: str, variables: bool) -> Statement:
    if not isinstance(item, Mapping):
        raise _Refuse(f"Statement {index}", "a statement must be a JSON object")
    sid = item.get("Sid")
    if sid is not None and not (isinstance(sid, str) and re.fullmatch(r"[A-Za-z0-9 _\-]*", sid)):
        raise _Refuse(f"Statement {index}", "Sid must be a string of letters and digits")
    where = _place(index, sid)
    for key in item:
        if key not in _STATEMENT_KEYS:
            raise _Refuse(where, f"the element {key!r} is unknown ({_hint(key, _STATEMENT_KEYS)})")
    if "Principal" in item or "NotPrincipal" in item:
        raise _Refuse(
            where,
            "Principal has no meaning in a policy attached to principals: remove it and "
            "attach the policy to the principal instead",
        )
    effect = item.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise _Refuse(where, f"Effect {effect!r} is not Allow or Deny")
    actions, not_actions = _either(item, "Action", "NotAction", where)
    for action in actions:
        if action != "*" and not _ACTION_RE.match(action):
            raise _Refuse(
                where,
                f"the action {action!r} is malformed: write SERVICE:Verb, "
                "e.g. fleetrun:SendCommand",
            )
    resources, not_resources = _either(item, "Resource", "NotResource", where)
    for resource in resources:
        if resource != "*" and resource.count(":") < 2:
            raise _Refuse(
                where,
                f"the resource {resource!r} is not * or a resource name such as "
                "frn:fleetrun:node/n-0123456789abcdef0",
            )
    conditions = _conditions(item.get("Condition"), where)
    return Statement(
        policy=policy,
        index=index,
        sid=sid,
        effect=effect,
        actions=actions,
        not_actions=not_actions,
        resources=resources,
        not_resources=not_resources,
        conditions=conditions,
        variables=variables,
    )


def _either(
    item: Mapping[str, Any], name: str, other: str, where: str
) -> tuple[tuple[str, ...], bool]:
    if (name in item) == (other in item):
        raise _Refuse(where, f"give exactly one of {name} and {other}")
    key = name if name in item else other
    return _strings(item[key], f"{key}", where), key == other


def _strings(value: Any, what: str, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise _Refuse(where, f"{what} must be a string or a non-empty list of strings")
    for entry in items:
        if not isinstance(entry, str) or not entry:
            raise _Refuse(where, f"{what} must hold non-empty strings, not {entry!r}")
    return tuple(items)


def _conditions(block: Any, where: str) -> tuple[Condition, ...]:
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise _Refuse(where, "Condition must be an object of operators")
    out = []
    for operator, keys in block.items():
        qualifier, base, if_exists = _split_operator(operator, where)
        spec = OPERATORS[base]
        if not isinstance(keys, Mapping) or not keys:
            raise _Refuse(where, f"condition operator {operator} must map keys to values")
        for key, raw in keys.items():
            place = f"{where}, condition {operator} on {key!r}"
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise _Refuse(where, f"the condition key {key!r} is malformed: write SERVICE:Name")
            values = _condition_values(raw, place)
            prepared = tuple(_prepare(spec, base, v, place) for v in values)
            out.append(
                Condition(
                    operator=operator,
                    base=base,
                    qualifier=qualifier,
                    if_exists=if_exists,
                    key=key,
                    values=values,
                    prepared=prepared,
                )
            )
    return tuple(out)


def _split_operator(operator: str, where: str) -> tuple[str | None, str, bool]:
    qualifier: str | None = None
    name = operator
    if ":" in operator:
        qualifier, _, name = operator.partition(":")
        if qualifier not in QUALIFIERS:
            raise _Refuse(
                where,
                f"the set qualifier {qualifier!r} of {operator} is unknown "
                f"({_hint(qualifier, QUALIFIERS)})",
            )
    base, if_exists = name, False
    if name.endswith("IfExists") and name[: -len("IfExists")] in OPERATORS:
        base, if_exists = name[: -len("IfExists")], True
    if base not in OPERATORS:
        raise _Refuse(
            where,
            f"the condition operator {operator!r} is unknown ({_hint(name, operator_names())})",
        )
    if base == "Null" and (if_exists or qualifier):
        raise _Refuse(
            where, f"{operator} is not an operator: Null takes no qualifier and no IfExists"
        )
    return qualifier, base, if_exists


def _condition_values(raw: Any, place: str) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise _Refuse(place, "the list of values is empty")
    values = []
    for item in items:
        if isinstance(item, bool):
            values.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            values.append(str(item))
        else:
            raise _Refuse(place, f"the value {item!r} is not a string, number or boolean")
    return tuple(values)


def _prepare(spec: _Operator, base: str, value: str, place: str) -> Any:
    """Check one policy value and turn it into what the operator compares with."""
    kind = spec.kind
    if kind == "numeric":
        number = _num(value)
        if number is None:
            raise _Refuse(place, f"{value!r} is not a number")
        return number
    if kind == "date":
        when = _date(value)
        if when is None:
            raise _Refuse(
                place, f"{value!r} is not a date (use ISO 8601, e.g. 2026-01-31T23:59:59Z)"
            )
        return when
    if kind in ("bool", "null"):
        if value.lower() not in ("true", "false"):
            raise _Refuse(place, f"{value!r} is not true or false")
        return value.lower()
    if kind == "ip":
        try:
            return ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise _Refuse(
                place, f"{value!r} is not an IP address or CIDR range (e.g. 203.0.113.0/24)"
            ) from None
    return value


# -- matching -------------------------------------------------------------------------


class _Unknown:
    """A policy variable whose key is not known yet (partial evaluation)."""


UNKNOWN = _Unknown()
_STAR, _ONE = object(), object()
_VAR_RE = re.compile(r"\$\{([^}]*)\}")


def _tokens(
    pattern: str, lookup: Callable[[str], str | _Unknown | None] | None
) -> list[Any] | _Unknown | None:
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
                    if isinstance(value, _Unknown):
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
) -> re.Pattern[str] | _Unknown | None:
    if lookup is None or "${" not in pattern:
        return _static_regex(pattern, segments, False)
    tokens = _tokens(pattern, lookup)
    if tokens is None or isinstance(tokens, _Unknown):
        return tokens
    return _regex(tokens, segments=segments)


def resource_matches(
    pattern: str, resource: str, lookup: Callable[[str], Any] | None = None
) -> bool | None:
    """Resource names compare case-sensitively, segment by segment (see `_regex`)."""
    if pattern == "*":
        return True
    regex = _pattern(pattern, lookup, segments=True)
    if isinstance(regex, _Unknown):
        return None
    return regex is not None and regex.fullmatch(resource) is not None


# -- evaluation -----------------------------------------------------------------------


class _Request:
    """A request's context with keys folded to lower case, and what is known of it."""

    def __init__(self, context: Context, known: Callable[[str], bool] | None) -> None:
        self.values: dict[str, list[str]] = {}
        for key, value in context.items():
            if value is None:
                continue
            items = [value] if isinstance(value, str | bool | int | float) else list(value)
            self.values[key.lower()] = [_text(v) for v in items if v is not None]
        self.known = known

    def is_known(self, key: str) -> bool:
        return self.known is None or self.known(key.lower())

    def variable(self, key: str) -> str | _Unknown | None:
        if not self.is_known(key):
            return UNKNOWN
        values = self.values.get(key.lower())
        return values[0] if values is not None and len(values) == 1 else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _condition(cond: Condition, request: _Request, variables: bool) -> bool | None:
    if not request.is_known(cond.key):
        return None
    values = request.values.get(cond.key_lower)
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
    policy_values = _policy_values(cond, spec, request if variables else None)
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


def _policy_values(cond: Condition, spec: _Operator, request: _Request | None) -> list[Any] | None:
    """The policy's values ready to compare; None when a variable is not known yet."""
    lookup = request.variable if request is not None and spec.variables else None
    out: list[Any] = []
    for raw, prepared in zip(cond.values, cond.prepared, strict=True):
        if spec.kind == "glob":
            regex = _pattern(raw, lookup, segments=False)
        elif spec.kind == "arn":
            parts = raw.split(":", 5)
            compiled = [_pattern(part, lookup, segments=False) for part in parts]
            if any(isinstance(c, _Unknown) for c in compiled):
                return None
            if any(c is None for c in compiled):
                continue
            out.append(compiled)
            continue
        elif spec.kind == "string" and lookup is not None and "${" in raw:
            tokens = _tokens(raw, lookup)
            if isinstance(tokens, _Unknown):
                return None
            if tokens is None:
                continue
            out.append("".join("*" if t is _STAR else "?" if t is _ONE else t for t in tokens))
            continue
        else:
            out.append(prepared)
            continue
        if isinstance(regex, _Unknown):
            return None
        if regex is not None:
            out.append(regex)
    return out


def _all(results: Iterable[bool | None]) -> bool | None:
    """Three-valued AND: False wins, then None (undecided), then True."""
    undecided = False
    for result in results:
        if result is False:
            return False
        if result is None:
            undecided = True
    return None if undecided else True


def applies(
    statement: Statement, action: str, resource: str | None, request: _Request
) -> bool | None:
    """Whether the statement applies to the request (None: not known yet)."""
    hit = any(action_matches(p, action) for p in statement.actions)
    if hit == statement.not_actions:
        return False
    lookup = request.variable if statement.variables else None
    if resource is None:
        on_resource: bool | None = (
            None if statement.not_resources or "*" not in statement.resources else True
        )
    else:
        matches = [resource_matches(p, resource, lookup) for p in statement.resources]
        any_match: bool | None = True if True in matches else None if None in matches else False
        on_resource = (
            any_match if not statement.not_resources or any_match is None else not any_match
        )
    if on_resource is False:
        return False
    return _all(
        [on_resource, *(_condition(c, request, statement.variables) for c in statement.conditions)]
    )


@dataclass(frozen=True)
class Decision:
    """The outcome: `allowed`, whether a Deny decided it (`explicit`), and the
    statements that decided it (the Deny statements, or the Allow statements)."""

    allowed: bool
    explicit: bool
    matched: tuple[Statement, ...] = ()
    undecided: bool = False  # partial evaluation: an Allow may apply once all is known

    @property
    def word(self) -> str:
        return "allow" if self.allowed else "deny"

    def matched_statements(self) -> list[dict[str, Any]]:
        return [s.ref() for s in self.matched]

    def why(self) -> str:
        """What decided, in a few words: "statement 2 (Sid X) of policy 'p' denies it"."""
        if self.explicit:
            return f"{self.matched[0].describe()} denies it"
        if self.allowed:
            return f"{self.matched[0].describe()} allows it"
        return "no statement allows it"

    def reason(self, action: str, resource: str | None) -> str:
        target = f" on {resource}" if resource else ""
        if self.explicit:
            return f"{self.matched[0].describe()} denies {action}{target}"
        if self.allowed:
            return f"{self.matched[0].describe()} allows {action}{target}"
        return f"no statement allows {action}{target}"


def evaluate(
    policies: Iterable[Policy],
    action: str,
    resource: str | None,
    context: Context | None = None,
    *,
    known: Callable[[str], bool] | None = None,
) -> Decision:
    """Decide `action` on `resource` with `context` (keys case-insensitive; a list is a
    multi-valued key). With `known` (lower-cased key -> known yet?) or resource None the
    evaluation is partial: `allowed` is True when some Allow may still apply and no Deny
    surely does, and `undecided` says a full decision is still to be made."""
    request = _Request(context or {}, known)
    denies: list[Statement] = []
    allows: list[Statement] = []
    undecided = False
    for policy in policies:
        for statement in policy.statements:
            result = applies(statement, action, resource, request)
            if result is False:
                continue
            undecided = undecided or result is None
            if statement.effect == "Allow":
                allows.append(statement)
            elif result is True:
                denies.append(statement)
    if denies:
        return Decision(allowed=False, explicit=True, matched=tuple(denies))
    if allows:
        return Decision(allowed=True, explicit=False, matched=tuple(allows), undecided=undecided)
    return Decision(allowed=False, explicit=False)
