"""`fleetrun rules create|update|list|show|enable|disable|delete|deliveries|redrive`:
the commands that manage rules on the server (added to the `rules` group)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from fleetrun.cli import render
from fleetrun.cli.base import api_options, options
from fleetrun.cli.files import read_json_file
from fleetrun.core.delivery import parse_target
from fleetrun.core.errors import ValidationError
from fleetrun.schemas.events import Delivery, Rule

F = TypeVar("F", bound=Callable[..., Any])


def secret_for(targets: list[str], env_name: str | None) -> tuple[str | None, bool]:
    """The webhook signing secret: from $VAR, or made here (and printed once); None
    when no target is a webhook. Whether it was made here."""
    if not any(t.strip().startswith("webhook:") for t in targets):
        if env_name:
            raise ValidationError("--secret-env is for webhook: targets only.")
        return None, False
    if env_name:
        value = os.environ.get(env_name, "")
        if len(value) < 16:
            raise ValidationError(
                f"${env_name} must hold the webhook secret, 16 characters or more."
            )
        return value, False
    return secrets.token_urlsafe(32), True


def _warn(rule: Rule) -> None:
    """The server's warnings about the pattern, on stderr: stdout stays the result."""
    for warning in rule.warnings:
        render.err.print(f"Warning: {warning}", markup=False)


def _targets(rule: Rule) -> str:
    return ", ".join(t.target for t in rule.targets)


def _target_options(*, required: bool) -> Callable[[F], F]:
    """--target, --secret-env, --input-file, --principal: for create and update alike."""

    def add(command: F) -> F:
        return _add_target_options(command, required)

    return add


EVENT_SHAPE = click.option(
    "--event-shape",
    type=click.Choice(["fleetrun", "aws"]),
    default=None,
    help="Match and deliver events in fleetrun's shape (the default) or as SSM sends them "
    "to EventBridge (aws: source aws.ssm, EC2 Command ... Status-change Notification).",
)


def _add_target_options(command: F, required: bool) -> F:
    command = EVENT_SHAPE(command)
    command = click.option(
        "--principal", default=None, help="command: targets send as this principal."
    )(command)
    command = click.option(
        "--input-file",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="command: targets: the command to send, as an input template (JSON or YAML).",
    )(command)
    command = click.option(
        "--secret-env", default=None, metavar="VAR", help="Webhook secret from $VAR."
    )(command)
    return click.option(
        "--target",
        "targets",
        multiple=True,
        required=required,
        help="SCHEME:ADDRESS (repeatable): webhook:URL, email:ADDRESS, nats:SUBJECT, "
        "redis:CHANNEL, redis-stream:KEY, command:DOCUMENT.",
    )(command)


def _specs(targets: list[str], secret: str | None, template: Any | None) -> list[dict[str, Any]]:
    """The targets as the API takes them: a webhook's secret, a command's template
    (None: none given; on update, the server keeps the one the target had)."""
    specs: list[dict[str, Any]] = []
    for target in targets:
        spec: dict[str, Any] = {"target": target}
        if target.strip().startswith("webhook:") and secret is not None:
            spec["secret"] = secret
        if target.strip().startswith("command:") and template is not None:
            spec["input"] = template
        specs.append(spec)
    return specs


def _report(ctx: click.Context, rule: Rule, done: str, secret: str | None) -> None:
    """The rule changed, and the webhook secret made here (shown this once)."""
    _warn(rule)
    if options(ctx).json:
        return render.emit_json(
            {**rule.model_dump(mode="json"), **({"secret": secret} if secret else {})}
        )
    render.out.print(f"{done} rule {rule.name}: matching events go to {_targets(rule)}.")
    if secret:
        render.out.print(f"Webhook signing secret (shown once, keep it for the receiver): {secret}")


@click.command("create")
@click.argument("name")
@click.option(
    "--pattern-file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The event pattern (JSON or YAML).",
)
@_target_options(required=True)
@click.option("--description", default=None)
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@api_options
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    pattern_file: Path,
    targets: tuple[str, ...],
    secret_env: str | None,
    input_file: Path | None,
    principal: str | None,
    event_shape: str | None,
    description: str | None,
    disabled: bool,
) -> None:
    """Create a rule: events matching the pattern go to every target. A webhook's
    signing secret comes from --secret-env, or is made here and printed once."""
    pattern = read_json_file(pattern_file, "pattern")
    template = read_json_file(input_file, "input") if input_file else None
    secret, made = secret_for(list(targets), secret_env)
    rule = (
        options(ctx)
        .client()
        .create_rule(
            name,
            pattern=pattern,
            targets=_specs(list(targets), secret, template),
            principal=principal,
            description=description,
            enabled=not disabled,
            event_shape=event_shape,
        )
    )
    _report(ctx, rule, "Created", secret if made else None)


@click.command("update")
@click.argument("name")
@click.option(
    "--pattern-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A new event pattern (JSON or YAML; default: kept).",
)
@_target_options(required=False)
@click.option("--description", default=None, help="A new description (default: kept).")
@api_options
@click.pass_context
def update(
    ctx: click.Context,
    name: str,
    pattern_file: Path | None,
    targets: tuple[str, ...],
    secret_env: str | None,
    input_file: Path | None,
    principal: str | None,
    event_shape: str | None,
    description: str | None,
) -> None:
    """Change a rule in place; what is not given stays, and so do its deliveries.

    --target replaces all the targets. A webhook target the rule had keeps its signing
    secret unless --secret-env gives a new one; a new webhook target gets one made here
    (printed once). A command: target keeps its input template unless --input-file
    gives one."""
    given = (pattern_file, targets, secret_env, input_file, principal, event_shape, description)
    if not any(given):
        raise ValidationError(
            f"Nothing to change in rule {name}: give --pattern-file, --target, "
            "--secret-env, --input-file, --principal, --event-shape or --description."
        )
    pattern = read_json_file(pattern_file, "pattern") if pattern_file else None
    template = read_json_file(input_file, "input") if input_file else None
    client = options(ctx).client()
    made = None
    specs = None
    if targets or secret_env or template is not None:
        before = client.get_rule(name)
        names = list(targets) or [t.target for t in before.targets]
        had = {str(parse_target(t.target)) for t in before.targets if t.has_secret}
        fresh = [t for t in names if t.strip().startswith("webhook:")]
        if not secret_env:  # only webhooks the rule did not have need a secret
            fresh = [t for t in fresh if str(parse_target(t)) not in had]
        secret, was_made = secret_for(fresh, secret_env) if fresh or secret_env else (None, False)
        made = secret if was_made else None
        specs = _specs(names, secret, template)
    rule = client.update_rule(
        name,
        pattern=pattern,
        targets=specs,
        principal=principal,
        description=description,
        event_shape=event_shape,
    )
    _report(ctx, rule, "Updated", made)


@click.command("list")
@api_options
@click.pass_context
def list_rules(ctx: click.Context) -> None:
    """List rules."""
    opts = options(ctx)
    found = opts.client().list_rules()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "STATE", "TARGETS", "DESCRIPTION"],
        (
            [r.name, "enabled" if r.enabled else "disabled", _targets(r), r.description or ""]
            for r in found
        ),
        empty="No rules: create one with `fleetrun rules create`.",
    )


@click.command("show")
@click.argument("name")
@api_options
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """Show a rule: its pattern and targets (never their secrets)."""
    opts = options(ctx)
    rule = opts.client().get_rule(name)
    if opts.json:
        return render.emit_json(rule)
    render.block(
        [
            ("Rule", rule.name),
            ("State", "enabled" if rule.enabled else "disabled"),
            ("Pattern", render_json(rule.pattern)),
            ("Event shape", rule.event_shape),
            ("Targets", _targets(rule)),
            ("Principal", rule.principal),
            ("Description", rule.description),
        ]
    )
    _warn(rule)


def render_json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "))


def _toggle(enabled: bool) -> click.Command:
    verb = "enable" if enabled else "disable"

    @click.command(verb)
    @click.argument("name")
    @api_options
    @click.pass_context
    def toggle(ctx: click.Context, name: str) -> None:
        client = options(ctx).client()
        rule = client.enable_rule(name) if enabled else client.disable_rule(name)
        if options(ctx).json:
            return render.emit_json(rule)
        render.out.print(f"Rule {rule.name} is {verb}d.")

    toggle.help = f"{verb.capitalize()} a rule."
    return toggle


enable = _toggle(True)
disable = _toggle(False)


@click.command("delete")
@click.argument("name")
@api_options
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete a rule, and its deliveries not yet made."""
    options(ctx).client().delete_rule(name)
    if options(ctx).json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted rule {name}.")


@click.command("deliveries")
@click.argument("name")
@click.option(
    "--state", type=click.Choice(["pending", "delivered", "dead"]), default=None, help="Only these."
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@api_options
@click.pass_context
def deliveries(ctx: click.Context, name: str, state: str | None, limit: int) -> None:
    """A rule's deliveries, newest first, with every attempt."""
    opts = options(ctx)
    found = opts.client().list_rule_deliveries(name, state=state, limit=limit)
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["EVENT", "TARGET", "STATE", "ATTEMPTS", "LAST"],
        ([d.event_id, d.target, d.state, d.attempts, _last(d)] for d in found),
        empty=f"No deliveries for rule {name} yet.",
    )


def _last(d: Delivery) -> str:
    if not d.history:
        return "-"
    last = d.history[-1]
    return f"{last.outcome}: {last.detail or ''}".strip()


@click.command("redrive")
@click.argument("name")
@api_options
@click.pass_context
def redrive(ctx: click.Context, name: str) -> None:
    """Retry a rule's dead-lettered deliveries (a fresh set of attempts each)."""
    done = options(ctx).client().redrive_rule(name)
    if options(ctx).json:
        return render.emit_json(done)
    render.out.print(f"Redriving {done.redriven} dead delivery(ies) of rule {name}.")


COMMANDS = (create, update, list_rules, show, enable, disable, delete, deliveries, redrive)
