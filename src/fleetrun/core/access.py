"""fleetrun's access vocabulary: actions, resource names, condition keys, built-in roles.

Every API operation is one action, `fleetrun:<Verb><Noun>`, decided on one resource:

    frn:fleetrun:node/<id>         frn:fleetrun:command/<id>      frn:fleetrun:document/<name>
    frn:fleetrun:group/<name>      frn:fleetrun:activation/<id>   frn:fleetrun:principal/<name>
    frn:fleetrun:policy/<name>     frn:fleetrun:role/<name>
    frn:fleetrun:rule/<name>       frn:fleetrun:channel/<name>
    frn:fleetrun:alarm/<name>

or on `*` when the operation has no resource of its own (listing the audit log, creating
an activation). Conditions may use these keys:

    fleetrun:ResourceTag/<key>  the tag <key> of the node acted on (also named
                                ssm:resourceTag/<key> and aws:ResourceTag/<key>)
    fleetrun:DocumentName       the document a command runs (or the one acted on)
    fleetrun:RunAsUser          the user a command asks to run as
    fleetrun:Parameter/<name>   a parameter of the command (a list: one value per item)
    fleetrun:SourceIp           the caller's address
    fleetrun:CurrentTime        the time of the request (ISO 8601, UTC)
    fleetrun:PrincipalName      the caller's principal

`ACTIONS` is the table (docs/access-control.md prints it); `policy.evaluate` does the
deciding and knows none of it. Every request is also decided under its SSM names
(`action_names`, `resource_names`; the table is `fleetrun.core.ssmnames`), so policies
written for AWS Systems Manager work unchanged beside fleetrun's own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from fleetrun.core import ssmnames
from fleetrun.core.errors import ValidationError
from fleetrun.core.inputs import check_not_dots
from fleetrun.core.matching import action_matches
from fleetrun.core.policy import Decision, Policy, PolicyError, evaluate, parse_policy

PREFIX = "frn:fleetrun:"
SERVICE = "fleetrun"

SOURCE_IP = "fleetrun:SourceIp"
CURRENT_TIME = "fleetrun:CurrentTime"
PRINCIPAL_NAME = "fleetrun:PrincipalName"
DOCUMENT_NAME = "fleetrun:DocumentName"
RUN_AS_USER = "fleetrun:RunAsUser"
RESOURCE_TAG = "fleetrun:ResourceTag/"
PARAMETER = "fleetrun:Parameter/"

# Known for every request before any resource is loaded.
GLOBAL_KEYS = frozenset(k.lower() for k in (SOURCE_IP, CURRENT_TIME, PRINCIPAL_NAME))
NODE_KEYS = (RESOURCE_TAG + "<key>",)
COMMAND_KEYS = (DOCUMENT_NAME, RUN_AS_USER, PARAMETER + "<name>")


def frn(kind: str, name: str) -> str:
    """The resource name of one thing: frn("node", "n-...") -> frn:fleetrun:node/n-..."""
    return f"{PREFIX}{kind}/{name}"


def action_name(verb: str) -> str:
    """`SendCommand` -> `fleetrun:SendCommand`; a full name is kept as it is."""
    return verb if ":" in verb else f"{SERVICE}:{verb}"


def action_names(action: str, resource: str | None = None) -> tuple[str, ...]:
    """Every name a request's action has: `fleetrun:SendCommand` -> (it, ssm:SendCommand);
    `ssm:ListCommands` -> (it, fleetrun:ListCommands, fleetrun:GetCommand). An SSM
    operation answers to the fleetrun actions on the kind of resource acted on (all of
    them while it is not known)."""
    return _action_names(action_name(action), _kind(resource))


@lru_cache(maxsize=1024)
def _action_names(full: str, kind: str | None) -> tuple[str, ...]:
    service, _, verb = full.partition(":")
    if service.lower() == SERVICE:
        return (full, *(f"{ssmnames.SERVICE}:{op}" for op in ssmnames.ssm_operations(verb)))
    if service.lower() != ssmnames.SERVICE:
        return (full,)
    verbs = [
        v
        for v in ssmnames.fleetrun_verbs(verb)
        if kind is None or kind in ACTIONS[v].resource.split(", ")
    ]
    return (full, *(action_name(v) for v in verbs))


def _kind(resource: str | None) -> str | None:
    if resource is None or resource == "*" or not resource.startswith(PREFIX):
        return None
    return resource[len(PREFIX) :].partition("/")[0]


def canonical_resource(resource: str) -> str:
    """fleetrun's name for a resource named by its AWS ARN (a node by its instance or
    managed-instance ARN, a document by its ARN); any other name as it is."""
    found = ssmnames.parse_arn(resource)
    return frn(*found) if found is not None else resource


def resource_names(resource: str) -> tuple[str, ...]:
    """Every name a request's resource has: frn:fleetrun:node/ID -> (it, its EC2 instance
    ARN, its managed-instance ARN), in every region and account."""
    own = canonical_resource(resource)
    kind = _kind(own)
    if kind is None:
        return (own,)
    return (own, *ssmnames.arns(kind, own[len(PREFIX) + len(kind) + 1 :]))


@dataclass(frozen=True)
class ActionSpec:
    resource: str  # the resource kind it is decided on, or "*"
    access: str  # read, write or admin (Reader gets read, Operator some writes)
    keys: tuple[str, ...] = ()  # condition keys beyond the global ones
    summary: str = ""


def _a(resource: str, access: str, summary: str, *keys: str) -> ActionSpec:
    return ActionSpec(resource, access, keys, summary)


ACTIONS: dict[str, ActionSpec] = {
    # nodes and enrolment
    "CreateActivation": _a("*", "admin", "create an activation that enrols nodes"),
    "ListActivations": _a("activation", "read", "list activations"),
    "DeleteActivation": _a("activation", "admin", "delete an activation"),
    "ListNodes": _a("node", "read", "list nodes (each node decided on its own)", *NODE_KEYS),
    "GetNode": _a("node", "read", "read a node", *NODE_KEYS),
    "DeleteNode": _a("node", "admin", "deregister a node", *NODE_KEYS),
    "TagNode": _a(
        "node",
        "admin",
        "set or remove a node's tags: decided on its tags before and after",
        *NODE_KEYS,
    ),
    # node groups (acting on a group is decided on each member node)
    "CreateGroup": _a("group", "admin", "create a node group"),
    "ListGroups": _a("group", "read", "list groups (members: the nodes one may list)"),
    "GetGroup": _a("group", "read", "read a group (members: the nodes one may list)"),
    "UpdateGroup": _a("group", "admin", "change a node group's members or description"),
    "DeleteGroup": _a("group", "admin", "delete a node group"),
    # documents
    "CreateDocument": _a("document", "admin", "create a document"),
    "UpdateDocument": _a("document", "admin", "add a version to a document"),
    "UpdateDocumentDefaultVersion": _a("document", "admin", "set the version commands use"),
    "SignDocument": _a("document", "admin", "attach a publisher's signature to a version"),
    "ListDocuments": _a("document", "read", "list documents"),
    "GetDocument": _a("document", "read", "read a document (a version of it)"),
    "DeleteDocument": _a("document", "admin", "delete a document and its versions"),
    "TagDocument": _a("document", "admin", "set or remove a document's tags (SSM's API)"),
    # commands and their invocations
    "SendCommand": _a(
        "document, node",
        "write",
        "run a document: decided on the document, then on each target node",
        *NODE_KEYS,
        *COMMAND_KEYS,
    ),
    "CancelCommand": _a(
        "node", "write", "cancel a command on its nodes", *NODE_KEYS, DOCUMENT_NAME
    ),
    "ListCommands": _a("command", "read", "list commands", DOCUMENT_NAME),
    "GetCommand": _a("command", "read", "read a command", DOCUMENT_NAME),
    "ListCommandInvocations": _a(
        "node", "read", "list a command's invocations (each on its node)", *NODE_KEYS, DOCUMENT_NAME
    ),
    "GetCommandInvocation": _a(
        "node", "read", "read an invocation and its output", *NODE_KEYS, DOCUMENT_NAME
    ),
    # run commands (named, on a node; decided on the node like sending a command)
    "PutRunCommand": _a(
        "node", "write", "create or update a run command, and run it", *NODE_KEYS, *COMMAND_KEYS
    ),
    "GetRunCommand": _a("node", "read", "read a run command and its instance view", *NODE_KEYS),
    "ListRunCommands": _a("node", "read", "list a node's run commands", *NODE_KEYS),
    "DeleteRunCommand": _a("node", "write", "stop and remove a run command", *NODE_KEYS),
    "StartRunCommand": _a(
        "node", "write", "run a run command again, unchanged", *NODE_KEYS, *COMMAND_KEYS
    ),
    "ListRunCommandRuns": _a("node", "read", "list the runs of a run command", *NODE_KEYS),
    "PutGroupRunCommand": _a(
        "group, node",
        "write",
        "put a run command on a group: decided on the group, then on each member",
        *NODE_KEYS,
        *COMMAND_KEYS,
    ),
    "GetGroupRunCommand": _a("group", "read", "read a group's run command and its members'"),
    "ListGroupRunCommands": _a("group", "read", "list a group's run commands"),
    "StartGroupRunCommand": _a(
        "group, node",
        "write",
        "run a group's run command again on every member: decided on the group, then each",
        *NODE_KEYS,
        *COMMAND_KEYS,
    ),
    "DeleteGroupRunCommand": _a("group", "write", "stop and remove a group's run command"),
    # access control
    "GetCallerIdentity": _a("*", "read", "say who the caller is"),
    "CreatePrincipal": _a("principal", "admin", "create a user or service account"),
    "ListPrincipals": _a("principal", "read", "list principals"),
    "GetPrincipal": _a("principal", "read", "read a principal and what is attached to it"),
    "DeletePrincipal": _a("principal", "admin", "delete a principal and its tokens"),
    "AttachPrincipalPolicy": _a("principal", "admin", "attach a policy to a principal"),
    "DetachPrincipalPolicy": _a("principal", "admin", "detach a policy from a principal"),
    "AttachPrincipalRole": _a("principal", "admin", "attach a role to a principal"),
    "DetachPrincipalRole": _a("principal", "admin", "detach a role from a principal"),
    "SimulatePrincipalPolicy": _a("principal", "read", "decide a request for a principal"),
    "CreateToken": _a("principal", "admin", "create an API token for a principal"),
    "ListTokens": _a("principal", "read", "list API tokens (never their secrets)"),
    "RevokeToken": _a("principal", "admin", "revoke an API token of a principal"),
    "CreatePolicy": _a("policy", "admin", "create a policy"),
    "PutPolicy": _a("policy", "admin", "create or replace a policy"),
    "ListPolicies": _a("policy", "read", "list policies"),
    "GetPolicy": _a("policy", "read", "read a policy document"),
    "DeletePolicy": _a("policy", "admin", "delete a policy nothing uses"),
    "CreateRole": _a("role", "admin", "create a role made of policies"),
    "PutRole": _a("role", "admin", "create or replace a role"),
    "ListRoles": _a("role", "read", "list roles"),
    "GetRole": _a("role", "read", "read a role"),
    "DeleteRole": _a("role", "admin", "delete a role no principal has"),
    # events, rules and notification channels
    "ListEvents": _a("*", "read", "list the event log, or stream it as it happens"),
    "CreateRule": _a(
        "rule", "admin", "create a rule (command targets: also CreateToken on its principal)"
    ),
    "ListRules": _a("rule", "read", "list rules (never their target secrets)"),
    "GetRule": _a("rule", "read", "read a rule (never its target secrets)"),
    "UpdateRule": _a(
        "rule", "admin", "change a rule's pattern, targets or description (keeps deliveries)"
    ),
    "EnableRule": _a("rule", "admin", "enable a rule"),
    "DisableRule": _a("rule", "admin", "disable a rule"),
    "DeleteRule": _a("rule", "admin", "delete a rule and its pending deliveries"),
    "ListRuleDeliveries": _a("rule", "read", "list a rule's deliveries and their attempts"),
    "RedriveRule": _a("rule", "admin", "retry a rule's dead-lettered deliveries"),
    "CreateChannel": _a("channel", "admin", "create a notification channel"),
    "ListChannels": _a("channel", "read", "list notification channels"),
    "GetChannel": _a("channel", "read", "read a notification channel (never its secret)"),
    "ListChannelDeliveries": _a("channel", "read", "list a channel's notifications sent"),
    "NotifyChannel": _a(
        "channel", "write", "name a channel in a command's notification (with SendCommand)"
    ),
    "DeleteChannel": _a("channel", "admin", "delete a notification channel"),
    # output alarms and forwarding
    "CreateAlarm": _a("alarm", "admin", "create an alarm on matching output lines"),
    "ListAlarms": _a("alarm", "read", "list alarms and their states"),
    "GetAlarm": _a("alarm", "read", "read an alarm, its counts per period and its history"),
    "DeleteAlarm": _a("alarm", "admin", "delete an alarm and its history"),
    "ListForwarders": _a("*", "read", "list output forwarders, their lag and errors"),
    # audit
    "ListAuditRecords": _a("*", "read", "list audit records"),
    "ExportAuditRecords": _a("*", "read", "export audit records as JSON lines"),
    "VerifyAuditLog": _a("*", "read", "check the audit log's hash chain"),
}

# What Operator may do beyond reading (Azure's Virtual Machine Contributor, for runs).
OPERATOR_ACTIONS = (
    "fleetrun:SendCommand",
    "fleetrun:CancelCommand",
    "fleetrun:NotifyChannel",
    "fleetrun:*RunCommand",
)
READ_ACTIONS = ("fleetrun:Get*", "fleetrun:List*", "fleetrun:Describe*")
AUDIT_READS = ("fleetrun:ExportAuditRecords", "fleetrun:VerifyAuditLog")


def _document(sid: str, actions: Iterable[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": "*"}],
    }


BUILTIN_POLICY_DOCUMENTS: dict[str, dict[str, Any]] = {
    "ReadOnlyAccess": _document(
        "ReadEverything", (*READ_ACTIONS, *AUDIT_READS, "fleetrun:SimulatePrincipalPolicy")
    ),
    "OperatorAccess": _document(
        "RunAndRead",
        (*READ_ACTIONS, *AUDIT_READS, "fleetrun:SimulatePrincipalPolicy", *OPERATOR_ACTIONS),
    ),
    "AdministratorAccess": _document("Everything", ("*",)),
}
BUILTIN_POLICIES: dict[str, Policy] = {
    name: parse_policy(doc, name) for name, doc in BUILTIN_POLICY_DOCUMENTS.items()
}
BUILTIN_ROLES: dict[str, tuple[str, ...]] = {
    "Reader": ("ReadOnlyAccess",),
    "Operator": ("OperatorAccess",),
    "Administrator": ("AdministratorAccess",),
}
BUILTIN_ROLE_DESCRIPTIONS = {
    "Reader": "list and read everything (no secret is ever readable)",
    "Operator": "send and cancel commands, manage run commands, read everything",
    "Administrator": "everything",
}
ADMIN_PRINCIPAL = "admin"


def decide(
    policies: Iterable[Policy],
    action: str,
    resource: str | None,
    context: Mapping[str, Any] | None = None,
    *,
    known: Callable[[str], bool] | None = None,
    names: Foreign | None = None,
) -> Decision:
    """A request decided under all of its names, fleetrun's and SSM's, for the action,
    the resource and the node's tag keys alike (`action_names`, `resource_names`,
    `ssmnames.TAG_KEYS`). A request in fleetrun's words is decided under its fleetrun
    names alone when no policy speaks any other vocabulary: the same decision, sooner.
    `names` is `foreign(policies)`, for a caller that decides many requests on the same
    policies (one per target node) to work it out once."""
    policies = tuple(policies)
    full = action_name(action)
    native = full.lower().startswith(SERVICE + ":") and (
        resource is None or resource == "*" or resource.startswith(PREFIX)
    )
    other = names if names is not None else foreign(policies)
    actions = action_names(full, resource) if other.actions or not native else full
    resources: str | tuple[str, ...] | None = resource
    if resource is not None and (other.resources or not native):
        resources = resource_names(resource)
    if other.keys and context:
        context = _with_ssm_tag_keys(context, other.keys)
    return evaluate(policies, actions, resources, context, known=known)


@dataclass(frozen=True)
class Foreign:
    """What of another vocabulary than fleetrun's a set of policies names."""

    actions: bool  # an action pattern that could name what a fleetrun: name does not
    resources: bool  # a resource pattern that is not frn:... or *
    keys: frozenset[str]  # the ssm:resourceTag/ and aws:ResourceTag/ keys, lower-cased


_TAG_KEYS_LOWER = tuple(k.lower() for k in ssmnames.TAG_KEYS)


def foreign(policies: Iterable[Policy]) -> Foreign:
    """What of another vocabulary than fleetrun's these policies name (see `decide`)."""
    statements = [s for p in policies for s in p.statements]
    return Foreign(
        actions=any(
            p != "*" and not p.lower().startswith(SERVICE + ":")
            for s in statements
            for p in s.actions
        ),
        resources=any(
            p != "*" and not p.startswith(PREFIX) for s in statements for p in s.resources
        ),
        keys=frozenset(
            c.key_lower
            for s in statements
            for c in s.conditions
            if c.key_lower.startswith(_TAG_KEYS_LOWER)
        ),
    )


def _with_ssm_tag_keys(context: Mapping[str, Any], used: frozenset[str]) -> dict[str, Any]:
    """The context with the SSM tag keys the policies use (lower-cased) taken from
    fleetrun:ResourceTag/KEY (a key given under SSM's name already wins)."""
    lowered = {k.lower(): v for k, v in context.items()}
    out = dict(context)
    prefix = RESOURCE_TAG.lower()
    for key in used:
        if key not in lowered:
            tag = key.partition("/")[2]
            value = lowered.get(prefix + tag)
            if value is not None:
                out[key] = value
    return out


def allows_everything(policies: Iterable[Policy]) -> bool:
    """Whether these policies make an administrator: every action allowed on every
    resource whatever the request, by statements without conditions, and no statement
    (not even a conditional Deny) that could take any of it away."""
    policies = tuple(policies)
    for verb, spec in ACTIONS.items():
        # A resource no statement names: only wildcards reach it.
        resource = "*" if spec.resource == "*" else frn(spec.resource, "~any~")
        decision = decide(policies, verb, resource, {}, known=lambda _key: False)
        if not decision.allowed or decision.undecided:
            return False
    return True


def request_context(principal: str, source_ip: str | None, now: datetime) -> dict[str, str]:
    """The global keys of a request."""
    context = {PRINCIPAL_NAME: principal, CURRENT_TIME: now.isoformat()}
    if source_ip:
        context[SOURCE_IP] = source_ip
    return context


def node_context(tags: Mapping[str, str]) -> dict[str, str]:
    """A node's tags as condition keys (`decide` gives them SSM's names as well)."""
    return {RESOURCE_TAG + key: value for key, value in tags.items()}


def command_context(
    document_name: str | None,
    parameters: Mapping[str, Iterable[str]] | None = None,
    run_as_user: str | None = None,
) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if document_name:
        context[DOCUMENT_NAME] = document_name
    if run_as_user:
        context[RUN_AS_USER] = run_as_user
    for name, values in (parameters or {}).items():
        context[PARAMETER + name] = [str(v) for v in values]
    return context


def is_global_key(key: str) -> bool:
    """For partial decisions before a resource is loaded: the keys known already."""
    return key.lower() in GLOBAL_KEYS


# -- names and vocabulary checks ------------------------------------------------------

_NAME_RE = re.compile(r"^[A-Za-z0-9_+=,.@\-]+$")
KEYS = (SOURCE_IP, CURRENT_TIME, PRINCIPAL_NAME, DOCUMENT_NAME, RUN_AS_USER)
KEY_PREFIXES = (RESOURCE_TAG, PARAMETER)


def check_name(kind: str, name: str, max_length: int = 128) -> str:
    """Names of principals, policies and roles: IAM's alphabet, so they fit in an frn."""
    if not name or len(name) > max_length or not _NAME_RE.fullmatch(name):
        raise ValidationError(
            f"The {kind} name {name!r} is not valid: use 1-{max_length} letters, digits or "
            "_ + = , . @ -."
        )
    return check_not_dots(name, f"The {kind} name")


def check_vocabulary(policy: Policy, known_actions: Iterable[str]) -> None:
    """Refuse fleetrun actions and condition keys that name nothing fleetrun knows: a
    misspelt key in a Deny would otherwise never deny. Other services' names pass."""
    known = [action_name(a) for a in known_actions]
    label = f"Policy {policy.name!r}" if policy.name else "The policy"
    for statement in policy.statements:
        place = statement.place()
        for pattern in statement.actions:
            if pattern.lower().startswith(SERVICE + ":") and not any(
                action_matches(pattern, a) for a in known
            ):
                raise PolicyError(
                    f"{label} is not valid: in {place}, the action {pattern!r} names no "
                    "fleetrun action (see docs/access-control.md for the list)."
                )
        for condition in statement.conditions:
            key = condition.key
            if key.lower().startswith(SERVICE + ":") and not _known_key(key):
                raise PolicyError(
                    f"{label} is not valid: in {place}, the condition key {key!r} is not a "
                    f"fleetrun key (use {', '.join(KEYS)}, {RESOURCE_TAG}KEY or {PARAMETER}NAME)."
                )


def _known_key(key: str) -> bool:
    lowered = key.lower()
    if lowered in (k.lower() for k in KEYS):
        return True
    return any(lowered.startswith(p.lower()) and len(key) > len(p) for p in KEY_PREFIXES)
