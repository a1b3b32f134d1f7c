"""AWS Systems Manager's names for fleetrun's actions, resources and condition keys.

Policies written for SSM work on fleetrun verbatim, mixed with policies in fleetrun's
own vocabulary, because every request is decided under all of its names at once: a
statement applies when one of its Action patterns matches one of the request's action
names and one of its Resource patterns one of its resource names (`policy.evaluate`).

    fleetrun                          SSM
    fleetrun:SendCommand              ssm:SendCommand             (SSM_ACTIONS: the table)
    frn:fleetrun:node/ID              arn:aws:ec2:*:*:instance/ID
                                      arn:aws:ssm:*:*:managed-instance/ID
    frn:fleetrun:document/NAME        arn:aws:ssm:*:*:document/NAME
    frn:fleetrun:document/RunShellScript
                                      arn:aws:ssm:*::document/AWS-RunShellScript
    fleetrun:ResourceTag/KEY          ssm:resourceTag/KEY, aws:ResourceTag/KEY

fleetrun is one region and one account: the `*` in the region and account of its ARNs
stands for whichever a policy names (`matching.resource_matches`). Its built-in
documents are owned by the service, as AWS's are, so their ARNs have no account and
their SSM names start with `AWS-`.
"""

from __future__ import annotations

from fleetrun.core.documents import BUILTIN_DOCUMENTS

SERVICE = "ssm"
BUILTIN_PREFIX = "AWS-"
# What fleetrun answers where SSM names an account and a region (events, ARNs shown).
ACCOUNT_ID = "000000000000"
REGION = "us-east-1"

# SSM's operation -> the fleetrun actions that do the same. A request is decided under
# both names: a fleetrun action answers to every SSM operation listed for it, and an SSM
# operation to the fleetrun actions listed for it (those that act on the same kind of
# resource as the request). SSM operations not listed here keep their own name only.
SSM_ACTIONS: dict[str, tuple[str, ...]] = {
    # commands
    "SendCommand": ("SendCommand",),
    "CancelCommand": ("CancelCommand",),
    "ListCommands": ("ListCommands", "GetCommand"),
    "ListCommandInvocations": ("ListCommandInvocations",),
    "GetCommandInvocation": ("GetCommandInvocation",),
    # managed nodes
    "DescribeInstanceInformation": ("ListNodes", "GetNode"),
    "DeregisterManagedInstance": ("DeleteNode",),
    # documents
    "CreateDocument": ("CreateDocument",),
    "UpdateDocument": ("UpdateDocument",),
    "UpdateDocumentDefaultVersion": ("UpdateDocumentDefaultVersion",),
    "DeleteDocument": ("DeleteDocument",),
    "GetDocument": ("GetDocument",),
    "DescribeDocument": ("GetDocument",),
    "ListDocumentVersions": ("GetDocument",),
    "ListDocuments": ("ListDocuments",),
    # tags, of a node (ManagedInstance) or of a document: which fleetrun action answers
    # is the one on the kind of resource acted on
    "AddTagsToResource": ("TagNode", "TagDocument"),
    "RemoveTagsFromResource": ("TagNode", "TagDocument"),
    "ListTagsForResource": ("GetNode", "GetDocument"),
    # activations
    "CreateActivation": ("CreateActivation",),
    "DescribeActivations": ("ListActivations",),
    "DeleteActivation": ("DeleteActivation",),
}

_BY_SSM = {op.lower(): verbs for op, verbs in SSM_ACTIONS.items()}
_BY_FLEETRUN: dict[str, tuple[str, ...]] = {}
for _op, _verbs in SSM_ACTIONS.items():
    for _verb in _verbs:
        _BY_FLEETRUN[_verb.lower()] = (*_BY_FLEETRUN.get(_verb.lower(), ()), _op)

# Condition keys SSM policies use for a managed node's tags (fleetrun:ResourceTag/KEY).
TAG_KEYS = ("ssm:resourceTag/", "aws:ResourceTag/")


def ssm_operations(verb: str) -> tuple[str, ...]:
    """The SSM operations a fleetrun action answers to: `SendCommand` -> (SendCommand,)."""
    return _BY_FLEETRUN.get(verb.lower(), ())


def fleetrun_verbs(operation: str) -> tuple[str, ...]:
    """The fleetrun actions an SSM operation answers to (empty when none does the same)."""
    return _BY_SSM.get(operation.lower(), ())


def document_name(name: str) -> str:
    """A fleetrun document's name in SSM: built-ins are `AWS-<name>`."""
    return BUILTIN_PREFIX + name if name in BUILTIN_DOCUMENTS else name


def fleetrun_document(name: str) -> str:
    """An SSM document name as fleetrun names it: `AWS-RunShellScript` -> RunShellScript."""
    if name.startswith(BUILTIN_PREFIX) and name[len(BUILTIN_PREFIX) :] in BUILTIN_DOCUMENTS:
        return name[len(BUILTIN_PREFIX) :]
    return name


def arns(kind: str, name: str) -> tuple[str, ...]:
    """The ARNs of a fleetrun resource, in every region (and every account, but a
    built-in document's, which has none): what SSM policies name it by."""
    if kind == "node":
        return (f"arn:aws:ec2:*:*:instance/{name}", f"arn:aws:ssm:*:*:managed-instance/{name}")
    if kind == "document":
        account = "" if name in BUILTIN_DOCUMENTS else "*"
        return (f"arn:aws:ssm:*:{account}:document/{document_name(name)}",)
    return ()


def parse_arn(arn: str) -> tuple[str, str] | None:
    """The fleetrun resource (kind, name) an AWS ARN names, or None when it names none:
    `arn:aws:ec2:us-east-1:123456789012:instance/n-...` -> ("node", "n-...")."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[1].startswith("aws"):
        return None
    kind, _, name = parts[5].partition("/")
    if not name or any(c in name for c in "*?"):
        return None
    if (parts[2], kind) in (("ec2", "instance"), ("ssm", "managed-instance")):
        return "node", name
    if (parts[2], kind) == ("ssm", "document"):
        return "document", fleetrun_document(name)
    return None
