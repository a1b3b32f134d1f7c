"""Where events go and how: target addresses, input templates, retry backoff and the
webhook signature. Pure functions; the server's outbox does the sending.

Targets are written `SCHEME:ADDRESS`:

    webhook:https://hooks.example.com/fleet   POST of the event, signed (see `sign`)
    email:ops@example.com                     through the configured SMTP server
    nats:fleet.events                         NATS publish
    redis:fleet-events                        Redis PUBLISH
    redis-stream:fleet-events                 Redis XADD (field `event`)
    command:Bootstrap                         send a command, built by an input template

An input template is JSON in which a string that is a path, "$.detail.node-id", is
replaced by that value of the event, and "<$.detail.node-id>" inside a longer string
by its text. In a command's parameter that is a script (`commands`), an event field
never becomes script text: `render_command_input` passes it in an environment variable
(FLEETRUN_EVENT_1, ...) and writes a reference to it, placed for the script's language
as a document's placeholder is (`fleetrun.core.substitution`); a whole path there (the
event's text as the script) is refused.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fleetrun.core import eventshapes, substitution
from fleetrun.core.errors import ValidationError

SCHEMES = ("webhook", "email", "nats", "redis", "redis-stream", "command")
SIGNATURE_HEADER = "X-Fleetrun-Signature"
TIMESTAMP_HEADER = "X-Fleetrun-Timestamp"
EVENT_ID_HEADER = "X-Fleetrun-Event-Id"

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)
_SUBJECT = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*(\.>)?$")
_KEY = re.compile(r"^[^\s]{1,256}$")
_DOCUMENT = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class Target:
    scheme: str
    address: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.address}"


def parse_target(text: str) -> Target:
    """A checked target, or a ValidationError naming what is wrong with it."""
    scheme, sep, address = text.strip().partition(":")
    if not sep or scheme not in SCHEMES:
        raise ValidationError(
            f"Target {text!r} has an unknown scheme: write one of "
            + ", ".join(f"{s}:..." for s in SCHEMES)
            + "."
        )
    if scheme == "webhook":
        parts = urlsplit(address)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(
                f"Target {text!r} is not a valid webhook: give an http:// or https:// URL "
                "with a host."
            )
    elif scheme == "email":
        if not _EMAIL.fullmatch(address):
            raise ValidationError(
                f"Target {text!r} is not a valid e-mail address: write email:NAME@DOMAIN."
            )
    elif scheme == "nats":
        if not _SUBJECT.fullmatch(address):
            raise ValidationError(
                f"Target {text!r} is not a valid NATS subject: use dot-separated tokens of "
                "letters, digits, _ and -."
            )
    elif scheme in ("redis", "redis-stream"):
        if not _KEY.fullmatch(address):
            raise ValidationError(f"Target {text!r} needs a channel or stream name without spaces.")
    elif not _DOCUMENT.fullmatch(address):
        raise ValidationError(f"Target {text!r} does not name a document: write command:DOCUMENT.")
    return Target(scheme, address)


# -- input templates ---------------------------------------------------------------

_PATH = re.compile(r"^\$(\.[A-Za-z0-9_\-]+|\[\d+\])*$")
_EMBEDDED = re.compile(r"<(\$(?:\.[A-Za-z0-9_\-]+|\[\d+\])*)>")
_STEP = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]")


def template_paths(template: Any) -> list[str]:
    """Every event path a template reads."""
    found: list[str] = []
    if isinstance(template, str):
        if _PATH.match(template):
            found.append(template)
        else:
            found.extend(_EMBEDDED.findall(template))
    elif isinstance(template, Mapping):
        for value in template.values():
            found.extend(template_paths(value))
    elif isinstance(template, list):
        for value in template:
            found.extend(template_paths(value))
    return found


def _steps(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _STEP.findall(path[1:])]


def check_template(
    template: Any, detail_types: Iterable[str] | None, shape: str = eventshapes.FLEETRUN
) -> None:
    """Refuse a template that reads a field no event it can receive (in the rule's
    shape) has. With `detail_types` None (the rule takes any event), any known field
    will do."""
    fields = eventshapes.detail_fields(shape)
    kinds = list(detail_types) if detail_types is not None else list(fields)
    for path in template_paths(template):
        steps = _steps(path)
        if not steps:
            continue
        head = steps[0]
        if head == "detail":
            if len(steps) < 2 or not isinstance(steps[1], str):
                continue
            name = steps[1]
            if not any(name in fields.get(k, ()) for k in kinds):
                which = ", ".join(repr(k) for k in kinds) if detail_types else "any event"
                raise ValidationError(
                    f"The input template reads {path}, but {which} has no detail field "
                    f"{name!r}: use one of the fields listed in docs/events.md."
                )
        elif head not in eventshapes.envelope_fields(shape):
            raise ValidationError(
                f"The input template reads {path}, which no event has: use $.detail.FIELD "
                "or one of $.id, $.time, $.resources, $.detail-type, $.source."
            )


def lookup(event: Any, path: str) -> Any:
    value = event
    for step in _steps(path):
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            value = value.get(step) if isinstance(value, Mapping) else None
        if value is None:
            return None
    return value


def render_input(template: Any, event: Mapping[str, Any]) -> Any:
    """The template with the event's values in place of its paths."""
    if isinstance(template, str):
        if _PATH.match(template):
            return lookup(event, template)
        return _EMBEDDED.sub(lambda m: _text(lookup(event, m.group(1))), template)
    if isinstance(template, Mapping):
        return {k: render_input(v, event) for k, v in template.items()}
    if isinstance(template, list):
        return [render_input(v, event) for v in template]
    return template


EVENT_VAR = "FLEETRUN_EVENT_{}"


def render_command_input(
    template: Mapping[str, Any], event: Mapping[str, Any], scripts: Mapping[str, set[str]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """A command target's template made into a command body for this event, and the
    environment variables its scripts read. `scripts` names the document's parameters
    that are a script, with the actions that run them (`documents.script_parameters`):
    event fields reach those only as references to environment variables."""
    params = template.get("parameters")
    used = sorted(set(scripts) & set(params)) if isinstance(params, Mapping) else []
    if scripts and not isinstance(params, Mapping | None):
        raise ValidationError(
            "The input template's parameters must be written out, not read from the event: "
            f"{', '.join(sorted(scripts))} is the script, and an event field never becomes code."
        )
    rendered = render_input({k: v for k, v in template.items() if k != "parameters"}, event)
    if params is None:
        return rendered, {}
    assert isinstance(params, Mapping)
    out = {k: render_input(v, event) for k, v in params.items() if k not in used}
    env: dict[str, str] = {}
    for name in used:
        out[name] = _script_value(name, params[name], event, scripts[name], env)
    rendered["parameters"] = out
    return rendered, env


def _script_value(
    name: str, value: Any, event: Mapping[str, Any], actions: set[str], env: dict[str, str]
) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValidationError(f"The input template's parameter {name} must be script lines.")
    for item in items:
        if _PATH.match(item):
            raise ValidationError(
                f"The input template makes the event field {item} the script ({name}): an "
                f"event field never becomes code; write it inside a line, <{item}>, where it "
                "reaches the script as an environment variable."
            )
    if not any(_EMBEDDED.search(i) for i in items):
        return list(items)
    if len(actions) != 1:
        raise ValidationError(
            f"The input template puts event fields in {name}, which steps of several "
            "languages run: put them in a parameter that is not the script instead."
        )
    variables: dict[str, str] = {}
    lines: list[substitution.Line | None] = []
    for item in items:
        pieces: list[str | substitution.Ref] = []
        last = 0
        for match in _EMBEDDED.finditer(item):
            path = match.group(1)
            if path not in variables:
                variables[path] = EVENT_VAR.format(len(env) + 1)
                env[variables[path]] = _text(lookup(event, path))
            pieces += [
                item[last : match.start()],
                substitution.Ref(match.group(0), variables[path]),
            ]
            last = match.end()
        pieces.append(item[last:])
        lines.append(tuple(p for p in pieces if p != ""))
    placed = substitution.place(next(iter(actions)), f"The input template's {name}", lines)
    return [str(line) for line in placed]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def pattern_detail_types(pattern: Mapping[str, Any]) -> list[str] | None:
    """The detail-types a pattern names by exact value, or None when it does not
    restrict them to a list of exact names."""
    values = pattern.get("detail-type")
    if not isinstance(values, list) or not values:
        return None
    if not all(isinstance(v, str) for v in values):
        return None
    return [str(v) for v in values]


def pattern_warnings(pattern: Mapping[str, Any], shape: str = eventshapes.FLEETRUN) -> list[str]:
    """What in a valid pattern can never match anything fleetrun emits in the rule's
    shape: a detail-type or a source named by exact value that no event has (at the top
    level and in the branches of a top-level $or). A rule written so is kept, and told;
    each warning is one sentence, with the name meant when one is close."""
    fields = eventshapes.detail_fields(shape)
    found: list[str] = []
    for part in [pattern, *_or_branches(pattern)]:
        for value in _exact_strings(part.get("detail-type")):
            if value not in fields and value not in found:
                found.append(value)
    warnings = [f"{_never(value, shape)}: {_meant(value, fields)}" for value in found]
    sources = {
        v for part in [pattern, *_or_branches(pattern)] for v in _exact_strings(part.get("source"))
    }
    source = eventshapes.source(shape)
    other = eventshapes.AWS if shape == eventshapes.FLEETRUN else eventshapes.FLEETRUN
    warnings += [
        f"The pattern names the source {value!r}, which no event has: every event's "
        f"source is {source!r} in the {shape} shape"
        + (
            f" (set the rule's event shape to {other})."
            if value == eventshapes.source(other)
            else "."
        )
        for value in sorted(sources - {source})
    ]
    return warnings


def _or_branches(pattern: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    branches = pattern.get("$or")
    return [b for b in branches if isinstance(b, Mapping)] if isinstance(branches, list) else []


def _exact_strings(values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


def _never(value: str, shape: str) -> str:
    shaped = "" if shape == eventshapes.FLEETRUN else f" in the {shape} shape"
    return f"The pattern names the detail-type {value!r}, which fleetrun never emits{shaped}"


def _meant(value: str, fields: Mapping[str, Any]) -> str:
    by_lower = {name.lower(): name for name in fields}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f"did you mean {by_lower[close[0]]!r}?"
    return "it emits " + ", ".join(repr(name) for name in fields) + "."


# -- retries -------------------------------------------------------------------------


def backoff_s(attempt: int, *, base_s: float, cap_s: float, jitter: float) -> float:
    """The wait after failed attempt number `attempt` (1-based): exponential from
    `base_s`, capped at `cap_s`, then scaled into [half, whole] by `jitter` in [0, 1]
    ("equal jitter": retries spread out but never come back at once)."""
    exponent = min(max(attempt - 1, 0), 32)
    ceiling = min(cap_s, base_s * float(2**exponent))
    return ceiling / 2 + ceiling / 2 * min(max(jitter, 0.0), 1.0)


def retryable_status(status_code: int) -> bool:
    """A webhook's answer that is worth another try: 5xx, 408 and 429."""
    return status_code >= 500 or status_code in (408, 429)


# -- webhook signatures ------------------------------------------------------------


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256, keyed by the target's secret, of the
    timestamp, a dot and the body: the X-Fleetrun-Signature header."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now_s: float, tolerance_s: float
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent (so a
    captured request cannot be replayed later)."""
    try:
        age = abs(now_s - float(timestamp))
    except ValueError:
        return False
    return bool(age <= tolerance_s) and hmac.compare_digest(
        sign(secret, timestamp, body), signature
    )
