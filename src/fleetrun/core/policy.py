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

A request may carry several names for its action and for its resource (fleetrun's and
SSM's, `fleetrun.core.ssmnames`): a statement applies when any of its patterns matches
any of the names, so a Deny in either vocabulary denies and an Allow in either allows,
and NotAction/NotResource apply only when no name matches.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fleetrun.core.errors import ValidationError
from fleetrun.core.matching import (
    OPERATORS,
    QUALIFIERS,
    UNKNOWN,
    Condition,
    Operator,
    Unknown,
    action_matches,
    holds,
    operator_names,
    prepare,
    resource_matches,
)

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


# -- the parsed model -----------------------------------------------------------------


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
            prepared = tuple(_prepare(spec, v, place) for v in values)
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


def _prepare(spec: Operator, value: str, place: str) -> Any:
    try:
        return prepare(spec, value)
    except ValueError as exc:
        raise _Refuse(place, str(exc)) from None


# -- evaluation -----------------------------------------------------------------------


class _Request:
    """A request's context with keys folded to lower case, and what is known of it."""

    def __init__(self, context: Context, known: Callable[[str], bool] | None) -> None:
        self.values: dict[str, list[str]] = {}
        for key, value in context.items():
            if isinstance(value, str):  # the common case, first
                self.values[key.lower()] = [value]
                continue
            if value is None:
                continue
            items = [value] if isinstance(value, bool | int | float) else list(value)
            self.values[key.lower()] = [_text(v) for v in items if v is not None]
        self.known = known

    def is_known(self, key: str) -> bool:
        return self.known is None or self.known(key.lower())

    def holds(self, cond: Condition, lookup: Callable[[str], Any] | None) -> bool | None:
        values = self.values.get(cond.key_lower)
        return holds(cond, values, known=self.is_known(cond.key), lookup=lookup)

    def variable(self, key: str) -> str | Unknown | None:
        if not self.is_known(key):
            return UNKNOWN
        values = self.values.get(key.lower())
        return values[0] if values is not None and len(values) == 1 else None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
    statement: Statement,
    action: str | Sequence[str],
    resource: str | Sequence[str] | None,
    request: _Request,
) -> bool | None:
    """Whether the statement applies to the request (None: not known yet). The action
    and the resource may each be given as several names of the same thing (one per
    vocabulary): a pattern matches the request when it matches any of its names."""
    actions = _names(action)
    hit = any(action_matches(p, a) for p in statement.actions for a in actions)
    if hit == statement.not_actions:
        return False
    lookup = request.variable if statement.variables else None
    if resource is None:
        on_resource: bool | None = (
            None if statement.not_resources or "*" not in statement.resources else True
        )
    else:
        names = _names(resource)
        matches = [resource_matches(p, r, lookup) for p in statement.resources for r in names]
        any_match: bool | None = True if True in matches else None if None in matches else False
        on_resource = (
            any_match if not statement.not_resources or any_match is None else not any_match
        )
    if on_resource is False:
        return False
    return _all([on_resource, *(request.holds(c, lookup) for c in statement.conditions)])


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


def _names(value: str | Sequence[str]) -> Sequence[str]:
    return (value,) if isinstance(value, str) else value


def evaluate(
    policies: Iterable[Policy],
    action: str | Sequence[str],
    resource: str | Sequence[str] | None,
    context: Context | None = None,
    *,
    known: Callable[[str], bool] | None = None,
) -> Decision:
    """Decide `action` on `resource` with `context` (keys case-insensitive; a list is a
    multi-valued key). `action` and `resource` may each be a list of the names of one
    thing (see `applies`). With `known` (lower-cased key -> known yet?) or resource None the
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
