"""Policies written for AWS Systems Manager decide fleetrun's requests unchanged: SSM's
actions, ARNs and tag keys are names of fleetrun's, mixed freely with fleetrun's own,
with explicit deny > allow > implicit deny across both vocabularies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetrun.core import access, ssmnames
from fleetrun.core.documents import BUILTIN_DOCUMENTS
from fleetrun.core.matching import resource_matches
from fleetrun.core.policy import parse_policy

NODE = "frn:fleetrun:node/n-0123456789abcdef0"
OTHER_NODE = "frn:fleetrun:node/n-fedcba98765432100"
SHELL = "frn:fleetrun:document/RunShellScript"  # built-in: AWS-RunShellScript in SSM
MINE = "frn:fleetrun:document/Patch"


def policy(*statements):
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, "p")


def allow(action, resource="*", condition=None):
    statement = {"Effect": "Allow", "Action": action, "Resource": resource}
    return {**statement, "Condition": condition} if condition else statement


def deny(action, resource="*", condition=None):
    return {**allow(action, resource, condition), "Effect": "Deny"}


@pytest.mark.parametrize(
    ("action", "resource", "names"),
    [
        ("SendCommand", None, ("fleetrun:SendCommand", "ssm:SendCommand")),
        ("fleetrun:GetCommand", None, ("fleetrun:GetCommand", "ssm:ListCommands")),
        (
            "fleetrun:GetDocument",
            None,
            (
                "fleetrun:GetDocument",
                "ssm:GetDocument",
                "ssm:DescribeDocument",
                "ssm:ListDocumentVersions",
                "ssm:ListTagsForResource",
            ),
        ),
        (
            "fleetrun:TagNode",
            NODE,
            ("fleetrun:TagNode", "ssm:AddTagsToResource", "ssm:RemoveTagsFromResource"),
        ),
        ("fleetrun:ListAuditRecords", None, ("fleetrun:ListAuditRecords",)),
        (
            "ssm:ListCommands",
            None,
            ("ssm:ListCommands", "fleetrun:ListCommands", "fleetrun:GetCommand"),
        ),
        (
            "ssm:DescribeInstanceInformation",
            NODE,
            ("ssm:DescribeInstanceInformation", "fleetrun:ListNodes", "fleetrun:GetNode"),
        ),
        # the tag operations answer to the fleetrun action on the resource's kind
        ("ssm:ListTagsForResource", NODE, ("ssm:ListTagsForResource", "fleetrun:GetNode")),
        ("ssm:ListTagsForResource", MINE, ("ssm:ListTagsForResource", "fleetrun:GetDocument")),
        ("ssm:AddTagsToResource", NODE, ("ssm:AddTagsToResource", "fleetrun:TagNode")),
        ("ssm:AddTagsToResource", MINE, ("ssm:AddTagsToResource", "fleetrun:TagDocument")),
        (
            "ssm:RemoveTagsFromResource",
            MINE,
            ("ssm:RemoveTagsFromResource", "fleetrun:TagDocument"),
        ),
        (
            "ssm:AddTagsToResource",
            None,
            ("ssm:AddTagsToResource", "fleetrun:TagNode", "fleetrun:TagDocument"),
        ),
        (
            "fleetrun:TagDocument",
            MINE,
            ("fleetrun:TagDocument", "ssm:AddTagsToResource", "ssm:RemoveTagsFromResource"),
        ),
        ("ssm:ListTagsForResource", "frn:fleetrun:command/c-1", ("ssm:ListTagsForResource",)),
        ("ssm:UpdateInstanceInformation", None, ("ssm:UpdateInstanceInformation",)),
        ("ec2:DescribeInstances", None, ("ec2:DescribeInstances",)),
    ],
)
def test_action_names(action, resource, names):
    assert access.action_names(action, resource) == names


@pytest.mark.parametrize(
    ("resource", "names"),
    [
        (
            NODE,
            (
                NODE,
                "arn:aws:ec2:*:*:instance/n-0123456789abcdef0",
                "arn:aws:ssm:*:*:managed-instance/n-0123456789abcdef0",
            ),
        ),
        (SHELL, (SHELL, "arn:aws:ssm:*::document/AWS-RunShellScript")),
        (MINE, (MINE, "arn:aws:ssm:*:*:document/Patch")),
        ("frn:fleetrun:command/c-1", ("frn:fleetrun:command/c-1",)),
        ("*", ("*",)),
        # an ARN is first made fleetrun's name, whatever its region and account say
        ("arn:aws:ec2:eu-west-1:111122223333:instance/n-0123456789abcdef0", None),
        ("arn:aws:ssm:us-east-2::document/AWS-RunShellScript", None),
        ("arn:aws:ssm:us-east-2:111122223333:document/Patch", None),
        ("arn:aws:s3:::bucket/key", ("arn:aws:s3:::bucket/key",)),
        ("arn:aws:ssm:*:*:document/*", ("arn:aws:ssm:*:*:document/*",)),
    ],
)
def test_resource_names(resource, names):
    expected = names or access.resource_names(
        {
            "arn:aws:ec2:eu-west-1:111122223333:instance/n-0123456789abcdef0": NODE,
            "arn:aws:ssm:us-east-2::document/AWS-RunShellScript": SHELL,
            "arn:aws:ssm:us-east-2:111122223333:document/Patch": MINE,
        }[resource]
    )
    assert access.resource_names(resource) == expected


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        # fleetrun is every region, and every account but the empty one of built-ins
        ("arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:instance/n-1", True),
        ("arn:aws:ec2:us-west-1:123456789012:instance/n-1", "arn:aws:ec2:*:*:instance/n-1", True),
        ("arn:aws:ec2:us-west-1:123456789012:instance/n-2", "arn:aws:ec2:*:*:instance/n-1", False),
        ("arn:aws:ec2:us-*:*:instance/n-?", "arn:aws:ec2:*:*:instance/n-1", True),
        (
            "arn:aws:ssm:us-west-1::document/AWS-*",
            "arn:aws:ssm:*::document/AWS-RunShellScript",
            True,
        ),
        ("arn:aws:ssm:*:*:document/*", "arn:aws:ssm:*::document/AWS-RunShellScript", True),
        ("arn:aws:ssm:us-west-1::document/*", "arn:aws:ssm:*:*:document/AWS-Mine", False),
        ("arn:aws:ssm:*:123456789012:document/AWS-*", "arn:aws:ssm:*::document/AWS-X", False),
        ("arn:aws:ssm:us-east-1:*", "arn:aws:ssm:*:*:document/Patch", True),
        ("arn:aws:ssm:*", "arn:aws:ssm:*:*:managed-instance/n-1", True),
        ("arn:aws:ec2:*:*:instance/*", "arn:aws:ssm:*:*:managed-instance/n-1", False),
        # a concrete name keeps its region and account
        ("arn:aws:ec2:us-west-1:*:instance/*", "arn:aws:ec2:eu-west-1:1:instance/i-1", False),
    ],
)
def test_every_region_and_account(pattern, resource, expected):
    assert resource_matches(pattern, resource) is expected


# The three policies of AWS's "Restricting Run Command access based on tags", verbatim.
POLICIES = Path(__file__).parent.parent / "policies"
SEED_ONE = json.loads((POLICIES / "ssm-tag-finance-webservers.json").read_text())
SEED_TWO = json.loads((POLICIES / "ssm-tag-both-keys.json").read_text())
SEED_THREE = json.loads((POLICIES / "ssm-tag-either-key.json").read_text())


def decides(policies, action, resource, tags=None):
    """The decision, checked to be the same when the caller has worked out what the
    policies name beforehand (as the server's Caller does, once per request)."""
    context = access.node_context(tags or {})
    allowed = access.decide(policies, action, resource, context).allowed
    names = access.foreign(policies)
    assert access.decide(policies, action, resource, context, names=names).allowed is allowed
    return allowed


@pytest.mark.parametrize(
    ("resource", "tags", "allowed"),
    [
        (SHELL, None, True),
        (MINE, None, True),
        (NODE, {"Finance": "WebServers"}, True),
        (NODE, {"Finance": "WebServer"}, False),
        (NODE, {"finance": "WebServers"}, True),  # condition key names ignore case, as in IAM
        (NODE, {"Team": "WebServers"}, False),
        (NODE, None, False),
    ],
)
def test_seed_policy_one(resource, tags, allowed):
    policies = [parse_policy(SEED_ONE, "seed-1")]
    assert decides(policies, "fleetrun:SendCommand", resource, tags) is allowed


@pytest.mark.parametrize(
    ("action", "resource", "tags", "allowed"),
    [
        ("fleetrun:SendCommand", SHELL, None, True),
        ("fleetrun:SendCommand", "frn:fleetrun:document/RunPowerShellScript", None, True),
        ("fleetrun:SendCommand", MINE, None, False),  # not an AWS-* document
        ("fleetrun:SendCommand", NODE, {"tag_key1": "tag_value1", "tag_key2": "tag_value2"}, True),
        ("fleetrun:SendCommand", NODE, {"tag_key1": "tag_value1"}, False),
        ("fleetrun:SendCommand", NODE, {"tag_key2": "tag_value2"}, False),
        ("fleetrun:SendCommand", NODE, None, False),
        ("fleetrun:GetCommand", "frn:fleetrun:command/c-1", None, True),
        ("fleetrun:ListCommandInvocations", NODE, None, True),
        ("fleetrun:GetDocument", MINE, None, True),
        ("fleetrun:GetCommandInvocation", NODE, None, False),
        ("fleetrun:CancelCommand", NODE, None, False),
    ],
)
def test_seed_policy_two(action, resource, tags, allowed):
    policies = [parse_policy(SEED_TWO, "seed-2")]
    assert decides(policies, action, resource, tags) is allowed


@pytest.mark.parametrize(
    ("tags", "allowed"),
    [
        ({"tag_key1": "tag_value1"}, True),
        ({"tag_key2": "tag_value2"}, True),
        ({"tag_key1": "tag_value1", "tag_key2": "tag_value2"}, True),
        ({"tag_key1": "other"}, False),
        (None, False),
    ],
)
def test_seed_policy_three_either_group(tags, allowed):
    policies = [parse_policy(SEED_THREE, "seed-3")]
    assert decides(policies, "fleetrun:SendCommand", NODE, tags) is allowed


# fleetrun's allow, an SSM deny on tagged EC2 instances
SSM_DENIES_PROD = [
    allow("fleetrun:*"),
    deny(
        "ssm:SendCommand",
        "arn:aws:ec2:*:*:instance/*",
        {"StringEquals": {"aws:ResourceTag/env": "prod"}},
    ),
]

# the document allowed in SSM's words, the nodes in fleetrun's
SPLIT_GRANT = [
    allow("ssm:SendCommand", "arn:aws:ssm:*:*:document/*"),
    allow("fleetrun:SendCommand", "frn:fleetrun:node/*"),
]

# one node, by its managed-instance ARN
ONE_MANAGED_INSTANCE = [
    allow("ssm:SendCommand", "arn:aws:ssm:*:*:managed-instance/n-0123456789abcdef0")
]

# SendCommand denied in SSM's words on every node but NODE
DENY_BUT_ONE_NODE = [
    allow("fleetrun:*"),
    {
        "Effect": "Deny",
        "Action": "ssm:SendCommand",
        "NotResource": "arn:aws:ec2:*:*:instance/n-0123456789abcdef0",
    },
]

# everything but SendCommand, in SSM's words
ALLOW_BUT_SEND = [{"Effect": "Allow", "NotAction": "ssm:SendCommand", "Resource": "*"}]


@pytest.mark.parametrize(
    ("statements", "action", "resource", "tags", "allowed"),
    [
        # an allow in one vocabulary, a deny in the other: deny wins both ways
        (
            [
                allow("ssm:*"),
                deny(
                    "fleetrun:SendCommand",
                    "frn:fleetrun:node/*",
                    {"StringEquals": {"fleetrun:ResourceTag/env": "prod"}},
                ),
            ],
            "fleetrun:SendCommand",
            NODE,
            {"env": "prod"},
            False,
        ),
        (SSM_DENIES_PROD, "fleetrun:SendCommand", NODE, {"env": "prod"}, False),
        (SSM_DENIES_PROD, "fleetrun:SendCommand", NODE, {"env": "test"}, True),
        # the document allowed in SSM's words, the nodes in fleetrun's
        (SPLIT_GRANT, "fleetrun:SendCommand", SHELL, None, True),
        (SPLIT_GRANT, "fleetrun:SendCommand", NODE, None, True),
        # a managed-instance ARN names the node as well as the EC2 one
        (ONE_MANAGED_INSTANCE, "fleetrun:SendCommand", NODE, None, True),
        (ONE_MANAGED_INSTANCE, "fleetrun:SendCommand", OTHER_NODE, None, False),
        # NotResource in SSM words: the node is one of the named, so it does not apply
        (DENY_BUT_ONE_NODE, "fleetrun:SendCommand", NODE, None, True),
        (DENY_BUT_ONE_NODE, "fleetrun:SendCommand", OTHER_NODE, None, False),
        # NotAction in SSM words: fleetrun:SendCommand is ssm:SendCommand
        (ALLOW_BUT_SEND, "fleetrun:SendCommand", NODE, None, False),
        (ALLOW_BUT_SEND, "fleetrun:GetNode", NODE, None, True),
        # ssm:Describe* reads nodes, ssm:*Document* manages documents
        ([allow("ssm:Describe*")], "fleetrun:ListNodes", NODE, None, True),
        ([allow("ssm:*Document*")], "fleetrun:DeleteDocument", MINE, None, True),
        ([allow("ssm:*Document*")], "fleetrun:SendCommand", MINE, None, False),
        # an SSM operation with no fleetrun twin is decided on its own name only
        ([allow("fleetrun:*")], "ssm:UpdateInstanceInformation", "*", None, False),
        ([allow("fleetrun:GetNode")], "ssm:DescribeInstanceInformation", NODE, None, True),
        # the tag operations: fleetrun:TagDocument / GetDocument on a document,
        # fleetrun:TagNode / GetNode on a node, in either vocabulary
        (
            [allow("ssm:AddTagsToResource", "arn:aws:ssm:*:*:document/*")],
            "fleetrun:TagDocument",
            MINE,
            None,
            True,
        ),
        (
            [allow("ssm:AddTagsToResource", "arn:aws:ssm:*:*:document/*")],
            "fleetrun:TagNode",
            NODE,
            None,
            False,
        ),
        ([allow("ssm:RemoveTagsFromResource")], "fleetrun:TagDocument", MINE, None, True),
        ([allow("ssm:AddTagsToResource")], "fleetrun:TagNode", NODE, {"env": "dev"}, True),
        ([allow("ssm:AddTagsToResource")], "fleetrun:GetDocument", MINE, None, False),
        ([allow("fleetrun:TagDocument")], "ssm:AddTagsToResource", MINE, None, True),
        ([allow("fleetrun:TagDocument")], "ssm:RemoveTagsFromResource", MINE, None, True),
        ([allow("fleetrun:TagDocument")], "ssm:AddTagsToResource", NODE, None, False),
        ([allow("fleetrun:TagNode")], "ssm:AddTagsToResource", MINE, None, False),
        ([allow("fleetrun:GetDocument")], "ssm:ListTagsForResource", MINE, None, True),
        ([allow("fleetrun:GetDocument")], "ssm:ListTagsForResource", NODE, None, False),
        ([allow("ssm:ListTagsForResource")], "fleetrun:GetDocument", MINE, None, True),
        ([allow("ssm:ListTagsForResource")], "fleetrun:TagDocument", MINE, None, False),
        (
            [allow("fleetrun:*"), deny("ssm:AddTagsToResource")],
            "fleetrun:TagDocument",
            MINE,
            None,
            False,
        ),
        (
            [allow("ssm:*"), deny("fleetrun:TagDocument")],
            "ssm:AddTagsToResource",
            MINE,
            None,
            False,
        ),
        ([allow("ssm:*"), deny("fleetrun:TagDocument")], "ssm:AddTagsToResource", NODE, None, True),
        # nothing allows: implicit deny
        ([deny("ssm:CancelCommand")], "fleetrun:SendCommand", NODE, None, False),
    ],
)
def test_mixed_vocabularies(statements, action, resource, tags, allowed):
    assert decides([policy(*statements)], action, resource, tags) is allowed


@pytest.mark.parametrize(
    ("native", "in_ssm", "arn"),
    [
        # AWS's own twins
        ("RunShellScript", "AWS-RunShellScript", "arn:aws:ssm:*::document/AWS-RunShellScript"),
        (
            "RunPowerShellScript",
            "AWS-RunPowerShellScript",
            "arn:aws:ssm:*::document/AWS-RunPowerShellScript",
        ),
        # fleetrun's built-ins with no AWS twin are service-owned all the same
        ("RunPythonScript", "AWS-RunPythonScript", "arn:aws:ssm:*::document/AWS-RunPythonScript"),
        ("GetNodeInfo", "AWS-GetNodeInfo", "arn:aws:ssm:*::document/AWS-GetNodeInfo"),
        # a document of yours: its own name, in an account
        ("Patch", "Patch", "arn:aws:ssm:*:*:document/Patch"),
    ],
)
def test_document_names_and_arns_go_both_ways(native, in_ssm, arn):
    assert ssmnames.document_name(native) == in_ssm
    assert ssmnames.fleetrun_document(in_ssm) == native
    assert ssmnames.fleetrun_document(native) == native  # fleetrun's own name is taken too
    assert ssmnames.arns("document", native) == (arn,)
    assert ssmnames.parse_arn(arn.replace("*", "us-east-2", 1)) == ("document", native)


def test_every_built_in_has_an_aws_name():
    for name in BUILTIN_DOCUMENTS:
        assert ssmnames.document_name(name) == "AWS-" + name


def test_names_that_are_no_built_in():
    assert ssmnames.fleetrun_document("AWS-Unknown") == "AWS-Unknown"
    assert ssmnames.fleetrun_document("AWS-") == "AWS-"
    assert ssmnames.parse_arn("arn:aws:ssm:us-east-1:1:document/*") is None
    assert ssmnames.parse_arn("arn:aws:ssm:us-east-1:1:parameter/x") is None
    assert ssmnames.parse_arn("not an arn") is None


def test_every_mapped_fleetrun_action_exists():
    for operation, verbs in ssmnames.SSM_ACTIONS.items():
        for verb in verbs:
            assert verb in access.ACTIONS, (operation, verb)


def test_ssm_policies_pass_the_vocabulary_check():
    for document in (SEED_ONE, SEED_TWO, SEED_THREE):
        access.check_vocabulary(parse_policy(document, "seed"), access.ACTIONS)


def test_the_guide_lists_every_ssm_action_as_the_table_maps_it():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "access-control.md").read_text()
    for operation, verbs in ssmnames.SSM_ACTIONS.items():
        row = f"| `ssm:{operation}` | " + ", ".join(f"`fleetrun:{v}`" for v in verbs) + " |"
        assert row in guide, row


def test_a_deny_in_ssm_words_takes_administrator_away():
    everything = policy(allow("*"))
    assert access.allows_everything([everything])
    assert not access.allows_everything([everything, policy(deny("ssm:SendCommand"))])
    assert not access.allows_everything(
        [everything, policy(deny("*", "arn:aws:ec2:*:*:instance/*"))]
    )


@pytest.mark.parametrize("verb", ["SendCommand", "fleetrun:SendCommand"])
def test_a_bare_verb_is_fleetruns_action_whatever_the_policies(verb):
    for statements in ([allow("fleetrun:SendCommand")], [allow("ssm:SendCommand")]):
        assert access.decide([policy(*statements)], verb, NODE).allowed
