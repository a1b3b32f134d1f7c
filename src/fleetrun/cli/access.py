"""`fleetrun principals|tokens|policies|roles ...`, `fleetrun policy simulate|validate`
and `fleetrun whoami`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from fleetrun.cli import render
from fleetrun.cli.base import api_options, json_option, options, read_text
from fleetrun.cli.exits import Exit
from fleetrun.core import access
from fleetrun.core.durations import parse_duration
from fleetrun.core.errors import ValidationError
from fleetrun.core.policy import parse_policy
from fleetrun.schemas.access import MAX_TOKEN_EXPIRES_S, Principal

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _attached(principal: Principal) -> str:
    return ", ".join(f"{a.kind} {a.name}" for a in principal.attached) or "-"


# -- whoami --------------------------------------------------------------------------


@click.command("whoami")
@api_options
@click.pass_context
def whoami(ctx: click.Context) -> None:
    """Show the principal behind the token, and what is attached to it."""
    opts = options(ctx)
    me = opts.client().whoami()
    if opts.json:
        return render.emit_json(me)
    render.block(
        [
            ("Principal", me.principal),
            ("Kind", me.kind),
            ("Token", me.token_id),
            ("Attached", ", ".join(f"{a.kind} {a.name}" for a in me.attached) or "-"),
        ]
    )


# -- principals ----------------------------------------------------------------------


@click.group("principals")
@api_options
def principals() -> None:
    """Principals: users and service accounts, and what is attached to them."""


@principals.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(["user", "service"]), default="user", show_default=True)
@click.option("--description", default=None)
@api_options
@click.pass_context
def create_principal(ctx: click.Context, name: str, kind: str, description: str | None) -> None:
    """Create a principal (it may do nothing until a policy or role is attached)."""
    opts = options(ctx)
    created = opts.client().create_principal(name, kind=kind, description=description)
    if opts.json:
        return render.emit_json(created)
    render.out.print(f"Created {created.kind} {created.name}.")
    render.err.print(
        f"Next: fleetrun principals attach {name} --role Reader; "
        f"fleetrun tokens create --principal {name}",
        markup=False,
    )


@principals.command("list")
@api_options
@click.pass_context
def list_principals(ctx: click.Context) -> None:
    """List principals."""
    opts = options(ctx)
    found = opts.client().list_principals()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "KIND", "ATTACHED", "CREATED", "DESCRIPTION"],
        (
            [p.name, p.kind, _attached(p), render.when(p.created_at), p.description or ""]
            for p in found
        ),
        empty="No principals you may see.",
    )


@principals.command("show")
@click.argument("name")
@api_options
@click.pass_context
def show_principal(ctx: click.Context, name: str) -> None:
    """Show a principal and what is attached to it."""
    opts = options(ctx)
    found = opts.client().get_principal(name)
    if opts.json:
        return render.emit_json(found)
    render.block(
        [
            ("Name", found.name),
            ("Kind", found.kind + (" (built-in)" if found.builtin else "")),
            ("Attached", _attached(found)),
            ("Created", render.when(found.created_at)),
            ("Description", found.description),
        ]
    )


@principals.command("delete")
@click.argument("name")
@api_options
@click.pass_context
def delete_principal(ctx: click.Context, name: str) -> None:
    """Delete a principal with its tokens (they stop working at once)."""
    opts = options(ctx)
    opts.client().delete_principal(name)
    if opts.json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted principal {name} and its tokens.")


def _attach_options(f: Any) -> Any:
    f = click.option("--role", default=None, help="A role (Reader, Operator, Administrator...).")(f)
    return click.option("--policy", default=None, help="A policy.")(f)


@principals.command("attach")
@click.argument("name")
@_attach_options
@api_options
@click.pass_context
def attach(ctx: click.Context, name: str, policy: str | None, role: str | None) -> None:
    """Attach a policy or a role to a principal (counts from its next request)."""
    opts = options(ctx)
    found = opts.client().attach(name, policy=policy, role=role)
    if opts.json:
        return render.emit_json(found)
    render.out.print(f"{found.name} now has: {_attached(found)}.")


@principals.command("detach")
@click.argument("name")
@_attach_options
@api_options
@click.pass_context
def detach(ctx: click.Context, name: str, policy: str | None, role: str | None) -> None:
    """Detach a policy or a role from a principal."""
    opts = options(ctx)
    found = opts.client().detach(name, policy=policy, role=role)
    if opts.json:
        return render.emit_json(found)
    render.out.print(f"{found.name} now has: {_attached(found)}.")


# -- tokens --------------------------------------------------------------------------


@click.group("tokens")
@api_options
def tokens() -> None:
    """API tokens: shown once when created, stored only as hashes."""


@tokens.command("create")
@click.option("--principal", default=None, help="Whose token it is (default: your own).")
@click.option("--expires", default=None, help="Lifetime, e.g. 12h or 30d (default: never).")
@click.option("--description", default=None)
@click.option(
    "--aws",
    is_flag=True,
    help="An AWS access key (id and secret) for boto3 and aws-cli on the SSM-compatible API.",
)
@api_options
@click.pass_context
def create_token(
    ctx: click.Context,
    principal: str | None,
    expires: str | None,
    description: str | None,
    aws: bool,
) -> None:
    """Create a token (or with --aws an access key) and print it: this is the only
    time its secret is shown."""
    opts = options(ctx)
    expires_s = parse_duration(expires) if expires else None
    if expires_s is not None and not 0 < expires_s <= MAX_TOKEN_EXPIRES_S:
        raise ValidationError(f"Expiry {expires} is out of range: give at most 3650d.")
    created = opts.client().create_token(
        principal, expires_in_s=expires_s, description=description, aws=aws
    )
    if opts.json:
        return render.emit_json(created)
    expiry = render.when(created.expires_at) if created.expires_at else "never"
    if aws:
        render.out.print(f"aws_access_key_id = {created.access_key_id}", markup=False)
        render.out.print(f"aws_secret_access_key = {created.secret_access_key}", markup=False)
        render.err.print(
            f"Access key {created.access_key_id} of {created.principal} (token {created.id}, "
            f"expires: {expiry}). Keep the secret now: it is not shown again. Use it with "
            "boto3.client('ssm', endpoint_url=SERVER) or aws ssm --endpoint-url SERVER.",
            markup=False,
        )
        return None
    render.out.print(created.token, markup=False)
    render.err.print(
        f"Token {created.id} of {created.principal} (expires: {expiry}). Keep it now: it is "
        "not shown again.",
        markup=False,
    )


@tokens.command("list")
@click.option("--principal", default=None, help="Only this principal's tokens.")
@api_options
@click.pass_context
def list_tokens(ctx: click.Context, principal: str | None) -> None:
    """List tokens and access keys (never their secrets)."""
    opts = options(ctx)
    found = opts.client().list_tokens(principal)
    if opts.json:
        return render.emit_json(found)

    def state(t: Any) -> str:
        if t.revoked_at:
            return "revoked"
        return "active" if t.active else "expired"

    render.table(
        [
            "ID",
            "PRINCIPAL",
            "ACCESS KEY",
            "STATE",
            "CREATED",
            "EXPIRES",
            "LAST USED",
            "DESCRIPTION",
        ],
        (
            [
                t.id,
                t.principal,
                t.access_key_id or "-",
                state(t),
                render.when(t.created_at),
                render.when(t.expires_at) if t.expires_at else "never",
                render.when(t.last_used_at) if t.last_used_at else "never",
                t.description or "",
            ]
            for t in found
        ),
        empty="No tokens.",
    )


@tokens.command("revoke")
@click.argument("token_id")
@api_options
@click.pass_context
def revoke_token(ctx: click.Context, token_id: str) -> None:
    """Revoke a token: it stops working on its next request."""
    opts = options(ctx)
    revoked = opts.client().revoke_token(token_id)
    if opts.json:
        return render.emit_json(revoked)
    render.out.print(f"Revoked token {revoked.id} of {revoked.principal}.")


# -- policies ------------------------------------------------------------------------


@click.group("policies")
@api_options
def policies() -> None:
    """Policies: IAM-style JSON documents (see docs/access-control.md)."""


def _read_text(path: Path) -> str:
    return read_text(path)


@policies.command("create")
@click.argument("name")
@click.option("--file", "file_", type=FILE, required=True, help="The policy document (JSON).")
@click.option("--description", default=None)
@api_options
@click.pass_context
def create_policy(ctx: click.Context, name: str, file_: Path, description: str | None) -> None:
    """Create a policy from a JSON file; a document with a fault is refused whole."""
    opts = options(ctx)
    created = opts.client().create_policy(name, _read_text(file_), description=description)
    if opts.json:
        return render.emit_json(created)
    count = len(created.document.get("Statement") or [])
    render.out.print(f"Created policy {created.name} ({count} statement(s)).")


@policies.command("update")
@click.argument("name")
@click.option("--file", "file_", type=FILE, required=True, help="The policy document (JSON).")
@click.option("--description", default=None)
@api_options
@click.pass_context
def update_policy(ctx: click.Context, name: str, file_: Path, description: str | None) -> None:
    """Replace a policy's document (or create it): counts from the next request."""
    opts = options(ctx)
    stored = opts.client().put_policy(name, _read_text(file_), description=description)
    if opts.json:
        return render.emit_json(stored)
    render.out.print(f"Policy {stored.name} is at version {stored.version}.")


@policies.command("list")
@api_options
@click.pass_context
def list_policies(ctx: click.Context) -> None:
    """List policies, built-in ones first."""
    opts = options(ctx)
    found = opts.client().list_policies()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "KIND", "VERSION", "STATEMENTS", "UPDATED", "DESCRIPTION"],
        (
            [
                p.name,
                "built-in" if p.builtin else "custom",
                p.version,
                len(p.document.get("Statement") or []),
                render.when(p.updated_at),
                p.description or "",
            ]
            for p in found
        ),
        empty="No policies you may see.",
    )


@policies.command("show")
@click.argument("name")
@api_options
@click.pass_context
def show_policy(ctx: click.Context, name: str) -> None:
    """Print a policy's document."""
    opts = options(ctx)
    found = opts.client().get_policy(name)
    if opts.json:
        return render.emit_json(found)
    render.raw(json.dumps(found.document, indent=2))


@policies.command("delete")
@click.argument("name")
@api_options
@click.pass_context
def delete_policy(ctx: click.Context, name: str) -> None:
    """Delete a policy that no role or principal uses."""
    opts = options(ctx)
    opts.client().delete_policy(name)
    if opts.json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted policy {name}.")


# -- roles ---------------------------------------------------------------------------


@click.group("roles")
@api_options
def roles() -> None:
    """Roles: named sets of policies (Reader, Operator, Administrator, your own)."""


@roles.command("create")
@click.argument("name")
@click.option("--policy", "names", multiple=True, required=True, help="A policy (repeatable).")
@click.option("--description", default=None)
@api_options
@click.pass_context
def create_role(
    ctx: click.Context, name: str, names: tuple[str, ...], description: str | None
) -> None:
    """Create a role made of policies."""
    opts = options(ctx)
    created = opts.client().create_role(name, list(names), description=description)
    if opts.json:
        return render.emit_json(created)
    render.out.print(f"Created role {created.name}: {', '.join(created.policies)}.")


@roles.command("update")
@click.argument("name")
@click.option("--policy", "names", multiple=True, required=True, help="A policy (repeatable).")
@click.option("--description", default=None)
@api_options
@click.pass_context
def update_role(
    ctx: click.Context, name: str, names: tuple[str, ...], description: str | None
) -> None:
    """Replace a role's policies (or create it)."""
    opts = options(ctx)
    stored = opts.client().put_role(name, list(names), description=description)
    if opts.json:
        return render.emit_json(stored)
    render.out.print(f"Role {stored.name}: {', '.join(stored.policies)}.")


@roles.command("list")
@api_options
@click.pass_context
def list_roles(ctx: click.Context) -> None:
    """List roles, built-in ones first."""
    opts = options(ctx)
    found = opts.client().list_roles()
    if opts.json:
        return render.emit_json(found)
    render.table(
        ["NAME", "KIND", "POLICIES", "DESCRIPTION"],
        (
            [
                r.name,
                "built-in" if r.builtin else "custom",
                ", ".join(r.policies),
                r.description or "",
            ]
            for r in found
        ),
        empty="No roles you may see.",
    )


@roles.command("show")
@click.argument("name")
@api_options
@click.pass_context
def show_role(ctx: click.Context, name: str) -> None:
    """Show a role's policies."""
    opts = options(ctx)
    found = opts.client().get_role(name)
    if opts.json:
        return render.emit_json(found)
    render.block(
        [
            ("Name", found.name + (" (built-in)" if found.builtin else "")),
            ("Policies", ", ".join(found.policies)),
            ("Description", found.description),
        ]
    )


@roles.command("delete")
@click.argument("name")
@api_options
@click.pass_context
def delete_role(ctx: click.Context, name: str) -> None:
    """Delete a role that no principal has."""
    opts = options(ctx)
    opts.client().delete_role(name)
    if opts.json:
        return render.emit_json({"deleted": name})
    render.out.print(f"Deleted role {name}.")


# -- policy simulate / validate --------------------------------------------------------


@click.group("policy")
def policy() -> None:
    """Try policies out: simulate a request, validate documents."""


def _context(pairs: tuple[str, ...], context_file: Path | None) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if context_file is not None:
        try:
            data = json.loads(_read_text(context_file))
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{context_file} is not valid JSON at line {exc.lineno}, column {exc.colno} "
                f"({exc.msg})."
            ) from None
        if not isinstance(data, dict):
            raise ValidationError(f"{context_file} must hold a JSON object of KEY: VALUE.")
        for key, value in data.items():
            values = value if isinstance(value, list) else [value]
            context[key] = [
                ("true" if v else "false") if isinstance(v, bool) else str(v) for v in values
            ]
            if not isinstance(value, list):
                context[key] = context[key][0]
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError(
                f"Context {pair!r} is malformed: write KEY=VALUE, e.g. "
                "fleetrun:ResourceTag/env=prod."
            )
        key = key.strip()
        if key in context:  # a key given twice is a multi-valued key
            before = context[key]
            context[key] = [*(before if isinstance(before, list) else [before]), value]
        else:
            context[key] = value
    return context


@policy.command("simulate")
@click.option("--principal", default=None, help="Decide for this principal (asks the server).")
@click.option(
    "--policy-file",
    "files",
    multiple=True,
    type=FILE,
    help="Decide with these policy documents, offline (repeatable).",
)
@click.option("--action", "action_", required=True, help="e.g. fleetrun:SendCommand.")
@click.option(
    "--resource", default="*", show_default=True, help="e.g. frn:fleetrun:node/n-0123456789abcdef0."
)
@click.option("--context", "pairs", multiple=True, metavar="KEY=VALUE", help="A condition key.")
@click.option(
    "--context-file", type=FILE, default=None, help="JSON object of keys (a list: many values)."
)
@api_options
@click.pass_context
def simulate(
    ctx: click.Context,
    principal: str | None,
    files: tuple[Path, ...],
    action_: str,
    resource: str,
    pairs: tuple[str, ...],
    context_file: Path | None,
) -> None:
    """Would this be allowed? Prints allow or deny and the statement that decided;
    exits 0 on allow and 1 on deny. Actions and resources may be named in SSM's
    vocabulary too (ssm:SendCommand, arn:aws:ec2:*:*:instance/ID). With neither
    --principal nor --policy-file, no policy allows anything: the answer is deny."""
    opts = options(ctx)
    if principal is not None and files:
        raise ValidationError(
            "Say whose permissions to simulate: --principal NAME, or --policy-file FILE "
            "(repeatable) to decide offline, not both."
        )
    context = _context(pairs, context_file)
    target = access.action_name(action_)
    decision: str
    tags: dict[str, str] | None = None
    if principal is not None:
        result = opts.client().simulate(principal, target, resource, context)
        decision, reason, tags = result.decision, result.reason, result.node_tags
        for warning in result.warnings:
            render.err.print(f"Warning: {warning}", markup=False)
        matched = result.model_dump()["matched_statements"]
    else:
        docs = [parse_policy(_read_text(f), f.name) for f in files]
        context = {access.CURRENT_TIME: datetime.now(UTC).isoformat(), **context}
        outcome = access.decide(docs, target, resource, context)
        decision, matched = outcome.word, outcome.matched_statements()
        reason = outcome.reason(target, resource)
    if opts.json:
        shown: dict[str, Any] = {"decision": decision, "matched_statements": matched}
        render.emit_json({**shown, **({"node_tags": tags} if tags is not None else {})})
    else:
        render.out.print(decision, style="green" if decision == "allow" else "red")
        render.out.print(f"{reason[0].upper()}{reason[1:]}.", markup=False)
        if tags is not None:
            with_tags = render.tags(tags) if tags else "none"
            render.out.print(f"Decided with the node's tags: {with_tags}.", markup=False)
    ctx.exit(Exit.OK if decision == "allow" else Exit.FAILED)


@policy.command("validate")
@click.argument("files", nargs=-1, required=True, type=FILE)
@json_option
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Check policy documents offline, as the server would before storing them."""
    checked = []
    for path in files:
        parsed = parse_policy(_read_text(path), path.name)
        access.check_vocabulary(parsed, access.ACTIONS)
        checked.append({"file": str(path), "statements": len(parsed.statements)})
    if options(ctx).json:
        return render.emit_json(checked)
    for item in checked:
        render.out.print(f"{item['file']}: valid ({item['statements']} statement(s)).")
