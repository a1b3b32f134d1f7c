"""Access control, audit, events, rules and channels: each operation written once as
an `Op` (see `fleetrun.sdk.wire`), exposed by `Client` and `AsyncClient` as a method of
the same name and arguments."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fleetrun.core.errors import ValidationError
from fleetrun.schemas.access import (
    Identity,
    Policy,
    PolicyCreate,
    PolicyPut,
    Principal,
    PrincipalCreate,
    Role,
    RoleCreate,
    RolePut,
    SimulateRequest,
    SimulateResult,
    Token,
    TokenCreate,
    TokenCreated,
)
from fleetrun.schemas.audit import AuditKey, AuditRecord, AuditVerdict
from fleetrun.schemas.base import ServerVersion, build
from fleetrun.schemas.events import (
    Channel,
    ChannelCreate,
    Delivery,
    Event,
    Redriven,
    Rule,
    RuleCreate,
    RuleTargetCreate,
    RuleUpdate,
)
from fleetrun.sdk.wire import Call, Listing, Op, Stream, clean, model, nothing, paginate, path

# -- access control -----------------------------------------------------------------------


def server_version() -> Op[ServerVersion]:
    """The server's release and agent protocols (needs no token)."""
    return model(ServerVersion, "GET", "/version")


def whoami() -> Op[Identity]:
    return model(Identity, "GET", "/v1/whoami")


def create_principal(
    name: str, *, kind: str = "user", description: str | None = None
) -> Op[Principal]:
    body = build(PrincipalCreate, name=name, kind=kind, description=description)
    return model(Principal, "POST", "/v1/principals", json=body.model_dump())


def list_principals() -> Listing[Principal]:
    return Listing(Principal, "/v1/principals")


def get_principal(name: str) -> Op[Principal]:
    return model(Principal, "GET", path("principals", name))


def delete_principal(name: str) -> Op[None]:
    return nothing("DELETE", path("principals", name))


def attach(principal: str, *, policy: str | None = None, role: str | None = None) -> Op[Principal]:
    """Attach a policy or a role to a principal."""
    kind, name = _one_of(policy, role)
    return model(Principal, "PUT", path("principals", principal, kind, name))


def detach(principal: str, *, policy: str | None = None, role: str | None = None) -> Op[Principal]:
    kind, name = _one_of(policy, role)
    return model(Principal, "DELETE", path("principals", principal, kind, name))


def simulate(
    principal: str,
    action: str,
    resource: str = "*",
    context: Mapping[str, str | Sequence[str]] | None = None,
) -> Op[SimulateResult]:
    """Would `principal` be allowed ACTION on RESOURCE with this context?"""
    values = {k: v if isinstance(v, str) else list(v) for k, v in (context or {}).items()}
    body = build(SimulateRequest, action=action, resource=resource, context=values)
    where = path("principals", principal, "simulate")
    return model(SimulateResult, "POST", where, json=body.model_dump())


def create_token(
    principal: str | None = None,
    *,
    expires_in_s: float | None = None,
    description: str | None = None,
    aws: bool = False,
) -> Op[TokenCreated]:
    """A new API token of `principal` (default: the caller's own); its secret
    (`.token`) is shown only here. With `aws`, an access key for SigV4 clients of the
    SSM-compatible API instead: `.access_key_id` and `.secret_access_key` (shown once)."""
    body = build(
        TokenCreate,
        principal=principal,
        expires_in_s=expires_in_s,
        description=description,
        aws=aws,
    )
    return model(TokenCreated, "POST", "/v1/tokens", json=body.model_dump())


def list_tokens(principal: str | None = None) -> Listing[Token]:
    return Listing(Token, "/v1/tokens", {"principal": principal})


def revoke_token(token_id: str) -> Op[Token]:
    return model(Token, "DELETE", path("tokens", token_id))


def create_policy(
    name: str, document: str | Mapping[str, Any], *, description: str | None = None
) -> Op[Policy]:
    """Create a policy from its JSON text (or an object); refused if it exists."""
    body = build(PolicyCreate, name=name, document=_doc(document), description=description)
    return model(Policy, "POST", "/v1/policies", json=body.model_dump())


def put_policy(
    name: str, document: str | Mapping[str, Any], *, description: str | None = None
) -> Op[Policy]:
    """Create or replace a policy."""
    body = build(PolicyPut, document=_doc(document), description=description)
    return model(Policy, "PUT", path("policies", name), json=body.model_dump())


def list_policies() -> Listing[Policy]:
    return Listing(Policy, "/v1/policies")


def get_policy(name: str) -> Op[Policy]:
    return model(Policy, "GET", path("policies", name))


def delete_policy(name: str) -> Op[None]:
    return nothing("DELETE", path("policies", name))


def create_role(name: str, policies: Sequence[str], *, description: str | None = None) -> Op[Role]:
    body = build(RoleCreate, name=name, policies=list(policies), description=description)
    return model(Role, "POST", "/v1/roles", json=body.model_dump())


def put_role(name: str, policies: Sequence[str], *, description: str | None = None) -> Op[Role]:
    body = build(RolePut, policies=list(policies), description=description)
    return model(Role, "PUT", path("roles", name), json=body.model_dump())


def list_roles() -> Listing[Role]:
    return Listing(Role, "/v1/roles")


def get_role(name: str) -> Op[Role]:
    return model(Role, "GET", path("roles", name))


def delete_role(name: str) -> Op[None]:
    return nothing("DELETE", path("roles", name))


def _doc(document: str | Mapping[str, Any]) -> str | dict[str, Any]:
    return document if isinstance(document, str) else dict(document)


def _one_of(policy: str | None, role: str | None) -> tuple[str, str]:
    if policy is not None and role is None:
        return "policies", policy
    if role is not None and policy is None:
        return "roles", role
    raise ValidationError("Name either a policy or a role, not both and not neither.")


# -- audit --------------------------------------------------------------------------------


def list_audit_records(
    *,
    since: datetime | None = None,
    principal: str | None = None,
    action: str | None = None,
    limit: int = 100,
) -> Op[list[AuditRecord]]:
    """The newest `limit` records matching the filters, newest first."""
    listing = iter_audit_records(
        since=since, principal=principal, action=action, page_size=min(limit, 1000)
    )
    return paginate(listing, limit)


def iter_audit_records(
    *,
    since: datetime | None = None,
    principal: str | None = None,
    action: str | None = None,
    page_size: int = 100,
) -> Listing[AuditRecord]:
    """Every record matching the filters, newest first, `page_size` to a request."""
    params = {
        "since": since.isoformat() if since else None,
        "principal": principal,
        "action": action,
        "limit": page_size,
    }
    return Listing(AuditRecord, "/v1/audit", params)


def export_audit_records(*, since: datetime | None = None) -> Stream:
    """Every record, oldest first, as the JSON objects of the export; the last object
    is the signed head the export was cut at (`{"head": {...}}`, see
    `fleetrun.core.audit.verify_export`)."""
    return Stream("/v1/audit/export", clean({"since": since.isoformat() if since else None}))


def get_audit_key() -> Op[str]:
    """The server's public key (base64 Ed25519) that verifies the heads of exports."""
    return (yield from model(AuditKey, "GET", "/v1/audit/key")).public_key


def verify_audit_log() -> Op[AuditVerdict]:
    return model(AuditVerdict, "GET", "/v1/audit/verify")


# -- events, rules and channels -----------------------------------------------------------


def list_events(
    *,
    since: datetime | None = None,
    detail_type: str | None = None,
    limit: int = 100,
) -> Op[list[Event]]:
    """The newest `limit` events (matching the filters), newest first."""
    params = {
        "since": since.isoformat() if since else None,
        "detail-type": detail_type,
        "limit": min(limit, 1000),
    }
    page = yield Call("GET", "/v1/events", params=params)
    return [Event.model_validate(item) for item in page["items"]]


def stream_events(*, pattern: Mapping[str, Any] | None = None, after: int | None = None) -> Stream:
    """Events as they happen (server-sent events), those matching `pattern` only;
    from the sequence number `after` when given, else from now."""
    params = clean({"pattern": jsonlib.dumps(pattern) if pattern else None, "after": after})
    return Stream("/v1/events/stream", params, read_timeout_s=None)


def create_rule(
    name: str,
    *,
    pattern: Mapping[str, Any],
    targets: Sequence[str | RuleTargetCreate | Mapping[str, Any]],
    principal: str | None = None,
    description: str | None = None,
    enabled: bool = True,
    event_shape: str | None = None,
) -> Op[Rule]:
    """A rule: `targets` are "SCHEME:ADDRESS" strings, or objects with a webhook's
    `secret` or a command's `input` template. `event_shape="aws"` matches and delivers
    events as SSM sends them to EventBridge (default: fleetrun's own shape)."""
    shape = {"event_shape": event_shape} if event_shape is not None else {}
    body = build(
        RuleCreate,
        name=name,
        pattern=pattern,
        targets=[_rule_target(t) for t in targets],
        principal=principal,
        description=description,
        enabled=enabled,
        **shape,
    )
    json = body.model_dump(exclude_none=True)
    if event_shape is None:
        del json["event_shape"]  # the server's default
    return model(Rule, "POST", "/v1/rules", json=json)


def update_rule(
    name: str,
    *,
    pattern: Mapping[str, Any] | None = None,
    targets: Sequence[str | RuleTargetCreate | Mapping[str, Any]] | None = None,
    principal: str | None = None,
    description: str | None = None,
    event_shape: str | None = None,
) -> Op[Rule]:
    """Change a rule in place: what is given replaces what it had, the rest stays. Its
    deliveries (made and pending) stay; a webhook target given again without a
    `secret` keeps the one it had."""
    body = build(
        RuleUpdate,
        pattern=pattern,
        targets=None if targets is None else [_rule_target(t) for t in targets],
        principal=principal,
        description=description,
        event_shape=event_shape,
    )
    json = body.model_dump(exclude_none=True)
    return model(Rule, "PATCH", path("rules", name), json=json)


def list_rules() -> Listing[Rule]:
    return Listing(Rule, "/v1/rules")


def get_rule(name: str) -> Op[Rule]:
    return model(Rule, "GET", path("rules", name))


def enable_rule(name: str) -> Op[Rule]:
    return model(Rule, "POST", path("rules", name, "enable"))


def disable_rule(name: str) -> Op[Rule]:
    return model(Rule, "POST", path("rules", name, "disable"))


def delete_rule(name: str) -> Op[None]:
    return nothing("DELETE", path("rules", name))


def list_rule_deliveries(
    name: str, *, state: str | None = None, limit: int = 100
) -> Op[list[Delivery]]:
    params = {"state": state, "limit": min(limit, 1000)}
    page = yield Call("GET", path("rules", name, "deliveries"), params=params)
    return [Delivery.model_validate(item) for item in page["items"]]


def redrive_rule(name: str) -> Op[Redriven]:
    return model(Redriven, "POST", path("rules", name, "redrive"))


def create_channel(
    name: str,
    *,
    target: str,
    secret: str | None = None,
    description: str | None = None,
) -> Op[Channel]:
    body = build(ChannelCreate, name=name, target=target, secret=secret, description=description)
    return model(Channel, "POST", "/v1/channels", json=body.model_dump(exclude_none=True))


def list_channels() -> Listing[Channel]:
    return Listing(Channel, "/v1/channels")


def get_channel(name: str) -> Op[Channel]:
    return model(Channel, "GET", path("channels", name))


def list_channel_deliveries(name: str, *, limit: int = 100) -> Op[list[Delivery]]:
    page = yield Call("GET", path("channels", name, "deliveries"), params={"limit": limit})
    return [Delivery.model_validate(item) for item in page["items"]]


def delete_channel(name: str) -> Op[None]:
    return nothing("DELETE", path("channels", name))


def _rule_target(target: str | RuleTargetCreate | Mapping[str, Any]) -> RuleTargetCreate:
    if isinstance(target, RuleTargetCreate):
        return target
    if isinstance(target, str):
        return build(RuleTargetCreate, target=target)
    return build(RuleTargetCreate, **dict(target))
