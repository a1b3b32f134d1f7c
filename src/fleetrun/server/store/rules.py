"""Rules (an event pattern and its targets) and channels (named destinations of
command notifications): creation with every check before anything is stored, reading,
enabling. Target secrets are stored sealed with the server's key and never shown."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import access, delivery, documents, patterns
from fleetrun.core.errors import ConflictError, NotFoundError, ValidationError
from fleetrun.schemas import events as schemas
from fleetrun.schemas.base import describe
from fleetrun.schemas.commands import CommandCreate
from fleetrun.server.secretbox import SecretBox
from fleetrun.server.store import documents as document_store
from fleetrun.server.store.tables import Channel, Principal, Rule, utcnow

COMMAND_INPUT_KEYS = frozenset(CommandCreate.model_fields) - {"secret_parameters", "notification"}


def secret_context(kind: str, name: str, index: int = 0) -> str:
    return f"{kind}/{name}/{index}"


def create_rule(session: Session, body: schemas.RuleCreate, box: SecretBox) -> Rule:
    access.check_name("rule", body.name, 64)
    stored = _checked(
        session, body.name, body.pattern, body.targets, body.principal, box, body.event_shape
    )
    if session.get(Rule, body.name) is not None:
        raise ConflictError(
            f"Rule {body.name!r} exists already: delete it first, or choose another name."
        )
    now = utcnow()
    rule = Rule(
        name=body.name,
        description=body.description,
        pattern=body.pattern,
        targets=stored,
        principal=body.principal,
        enabled=body.enabled,
        event_shape=body.event_shape,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    return rule


def update_rule(session: Session, name: str, body: schemas.RuleUpdate, box: SecretBox) -> Rule:
    """Change a rule in place, checked as a new one would be. What the body leaves out
    stays; a target given again without its secret or input template keeps the one it
    had (a secret is sealed again for the target's new place). The rule's deliveries
    stay: a pending one finds its target wherever it now is (`senders.target_index`)."""
    rule = read_rule(session, name)
    pattern = body.pattern if body.pattern is not None else rule.pattern
    principal = body.principal if body.principal is not None else rule.principal
    shape = body.event_shape if body.event_shape is not None else rule.event_shape
    specs = body.targets
    if specs is None:  # the stored ones, each to keep its secret
        specs = [
            schemas.RuleTargetCreate(target=t["target"], input=t.get("input")) for t in rule.targets
        ]
    kept = {str(delivery.parse_target(t["target"])): (i, t) for i, t in enumerate(rule.targets)}
    specs = [_with_kept(spec, name, kept, box) for spec in specs]
    if body.principal is None and not any(_sends_commands(spec) for spec in specs):
        principal = None  # it had command: targets, and has none now
    rule.targets = _checked(session, name, pattern, specs, principal, box, shape)
    rule.pattern = pattern
    rule.principal = principal
    rule.event_shape = shape
    if body.description is not None:
        rule.description = body.description
    rule.updated_at = utcnow()
    return rule


def _sends_commands(spec: schemas.RuleTargetCreate) -> bool:
    return delivery.parse_target(spec.target).scheme == "command"


def _with_kept(
    spec: schemas.RuleTargetCreate,
    name: str,
    kept: dict[str, tuple[int, dict[str, Any]]],
    box: SecretBox,
) -> schemas.RuleTargetCreate:
    """A target given again without its secret (webhook) or its input template
    (command) keeps the one it had."""
    index, before = kept.get(str(delivery.parse_target(spec.target)), (0, {}))
    update: dict[str, Any] = {}
    if not spec.secret and before.get("secret"):
        update["secret"] = box.open(before["secret"], secret_context("rule", name, index))
    if spec.input is None and before.get("input") is not None:
        update["input"] = before["input"]
    return spec.model_copy(update=update) if update else spec


def _checked(
    session: Session,
    name: str,
    pattern: dict[str, Any],
    targets: list[schemas.RuleTargetCreate],
    principal: str | None,
    box: SecretBox,
    shape: str,
) -> list[dict[str, Any]]:
    """A rule's targets as stored (secrets sealed), after every check of the pattern,
    the targets, their templates (against the fields of events in the rule's shape)
    and the principal."""
    patterns.compile_pattern(pattern)  # a PatternError names the fault
    kinds = delivery.pattern_detail_types(pattern)
    stored = []
    for index, spec in enumerate(targets):
        target = delivery.parse_target(spec.target)
        _check_secret(target, spec.secret)
        entry: dict[str, Any] = {"target": str(target), "secret": None, "input": None}
        if spec.secret:
            entry["secret"] = box.seal(spec.secret, secret_context("rule", name, index))
        if target.scheme == "command":
            entry["input"] = _check_input(session, target, spec.input, kinds, principal, shape)
        elif spec.input is not None:
            raise ValidationError(
                f"Target {target} takes no input template: only command: targets do."
            )
        stored.append(entry)
    if principal is not None and not any(t["input"] is not None for t in stored):
        raise ValidationError("A rule names a principal only for command: targets: drop it.")
    return stored


def _check_secret(target: delivery.Target, secret: str | None) -> None:
    if target.scheme == "webhook" and not secret:
        raise ValidationError(
            f"Target {target} needs a signing secret (16 characters or more): give one, "
            "so receivers can check that the request comes from this server."
        )
    if target.scheme != "webhook" and secret:
        raise ValidationError(f"Target {target} takes no secret: only webhook: targets do.")


def _check_input(
    session: Session,
    target: delivery.Target,
    template: dict[str, Any] | None,
    kinds: list[str] | None,
    principal: str | None,
    shape: str,
) -> dict[str, Any]:
    if not template or "targets" not in template:
        raise ValidationError(
            f"Target {target} needs an input template with targets, e.g. "
            '{"targets": [{"key": "NodeIds", "values": ["$.detail.node-id"]}]}.'
        )
    unknown = sorted(set(template) - COMMAND_INPUT_KEYS)
    if unknown:
        raise ValidationError(
            f"The input template's field {unknown[0]!r} is not a command field: use "
            + ", ".join(sorted(COMMAND_INPUT_KEYS))
            + "."
        )
    delivery.check_template(template, kinds, shape)
    sample = delivery.render_input(template, _SAMPLE)
    try:
        CommandCreate(**{**sample, "document_name": target.address})
    except Exception as exc:
        errors = getattr(exc, "errors", None)
        reason = describe(errors()) if callable(errors) else str(exc)
        raise ValidationError(f"The input template does not make a command: {reason}") from None
    try:
        doc = document_store.resolve(session, target.address, None)
    except NotFoundError as exc:
        raise ValidationError(exc.message) from None
    # Event fields in the document's script are placed as data, or the rule is refused.
    delivery.render_command_input(template, _SAMPLE, documents.script_parameters(doc.content))
    if principal is None:
        raise ValidationError(
            f"Target {target} sends commands: name the principal they are sent as "
            "(--principal), whose policies decide them."
        )
    if session.get(Principal, principal) is None:
        raise ValidationError(
            f"No principal {principal!r} exists to send the rule's commands as: create it first."
        )
    return template


class _AnyDetail(dict[str, Any]):
    """A detail with a (node-id shaped) text for every field."""

    def get(self, key: str, default: Any = None) -> Any:
        return "n-00000000000000000"


# An event with a value for every path a template may read, to check its shape.
_SAMPLE: dict[str, Any] = {
    "version": "0",
    "id": "00000000-0000-4000-8000-000000000000",
    "detail-type": "sample",
    "source": "fleetrun",
    "time": "2026-01-01T00:00:00.000Z",
    "resources": ["frn:fleetrun:node/n-00000000000000000"],
    "detail": _AnyDetail(),
}


def read_rule(session: Session, name: str) -> Rule:
    rule = session.get(Rule, name)
    if rule is None:
        raise NotFoundError(f"No rule {name!r} exists; list rules with `fleetrun rules list`.")
    return rule


def read_rules(session: Session) -> list[Rule]:
    return list(session.execute(select(Rule).order_by(Rule.name)).scalars())


def set_enabled(session: Session, name: str, enabled: bool) -> Rule:
    rule = read_rule(session, name)
    rule.enabled = enabled
    rule.updated_at = utcnow()
    return rule


def delete_rule(session: Session, name: str) -> None:
    session.delete(read_rule(session, name))


def to_schema(rule: Rule) -> schemas.Rule:
    return schemas.Rule(
        name=rule.name,
        description=rule.description,
        pattern=rule.pattern,
        targets=[
            schemas.RuleTarget(
                target=t["target"], has_secret=bool(t.get("secret")), input=t.get("input")
            )
            for t in rule.targets
        ],
        principal=rule.principal,
        enabled=rule.enabled,
        event_shape=rule.event_shape,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        warnings=delivery.pattern_warnings(rule.pattern, rule.event_shape),
    )


# -- channels ----------------------------------------------------------------------


def create_channel(session: Session, body: schemas.ChannelCreate, box: SecretBox) -> Channel:
    access.check_name("channel", body.name, 64)
    target = delivery.parse_target(body.target)
    if target.scheme == "command":
        raise ValidationError(
            f"Target {target} cannot be a channel: channels deliver messages (webhook:, "
            "email:, nats:, redis:, redis-stream:); use a rule to send commands."
        )
    _check_secret(target, body.secret)
    if session.get(Channel, body.name) is not None:
        raise ConflictError(
            f"Channel {body.name!r} exists already: delete it first, or choose another name."
        )
    channel = Channel(
        name=body.name,
        description=body.description,
        target=str(target),
        secret=box.seal(body.secret, secret_context("channel", body.name)) if body.secret else None,
        created_at=utcnow(),
    )
    session.add(channel)
    return channel


def read_channel(session: Session, name: str) -> Channel:
    channel = session.get(Channel, name)
    if channel is None:
        raise NotFoundError(
            f"No channel {name!r} exists; list channels with `fleetrun channels list`."
        )
    return channel


def read_channels(session: Session) -> list[Channel]:
    return list(session.execute(select(Channel).order_by(Channel.name)).scalars())


def delete_channel(session: Session, name: str) -> None:
    session.delete(read_channel(session, name))


def channel_schema(channel: Channel) -> schemas.Channel:
    return schemas.Channel(
        name=channel.name,
        target=channel.target,
        has_secret=channel.secret is not None,
        description=channel.description,
        created_at=channel.created_at,
    )
