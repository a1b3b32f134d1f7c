"""The policy evaluator, as a table: (policy, request, decision), with the AWS IAM User
Guide's and the SSM guide's own examples evaluated as AWS documents them."""

from __future__ import annotations

import pytest

from fleetrun.core.policy import PolicyError, evaluate, operator_names, parse_policy


def allow(action="*", resource="*", condition=None, **extra):
    statement = {"Effect": "Allow", "Action": action, "Resource": resource, **extra}
    if condition is not None:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def decide(docs, action, resource, context=None, **kw):
    policies = [parse_policy(d, f"p{i}") for i, d in enumerate(docs)]
    return evaluate(policies, action, resource, context or {}, **kw)


# -- AWS Systems Manager: "Restricting Run Command access based on tags" -------------------

SSM_FINANCE = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": ["arn:aws:ssm:*:*:document/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": ["arn:aws:ec2:*:*:instance/*"],
            "Condition": {"StringLike": {"ssm:resourceTag/Finance": ["WebServers"]}},
        },
    ],
}
SSM_TWO_TAGS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": "*",
            "Condition": {
                "StringLike": {
                    "ssm:resourceTag/tag_key1": ["tag_value1"],
                    "ssm:resourceTag/tag_key2": ["tag_value2"],
                }
            },
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": [
                "arn:aws:ssm:us-west-1::document/AWS-*",
                "arn:aws:ssm:us-east-2::document/AWS-*",
            ],
        },
        {
            "Effect": "Allow",
            "Action": [
                "ssm:UpdateInstanceInformation",
                "ssm:ListCommands",
                "ssm:ListCommandInvocations",
                "ssm:GetDocument",
            ],
            "Resource": "*",
        },
    ],
}
SSM_EITHER_GROUP = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": "*",
            "Condition": {"StringLike": {"ssm:resourceTag/tag_key1": ["tag_value1"]}},
        },
        {
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": "*",
            "Condition": {"StringLike": {"ssm:resourceTag/tag_key2": ["tag_value2"]}},
        },
    ],
}
INSTANCE = "arn:aws:ec2:us-east-2:111122223333:instance/i-0123456789abcdef0"


@pytest.mark.parametrize(
    ("doc", "action", "resource", "context", "allowed"),
    [
        # The document is allowed on its own; the node only with the Finance tag.
        (SSM_FINANCE, "ssm:SendCommand", "arn:aws:ssm:us-east-2:111122223333:document/X", {}, True),
        (SSM_FINANCE, "ssm:SendCommand", INSTANCE, {"ssm:resourceTag/Finance": "WebServers"}, True),
        (SSM_FINANCE, "ssm:SendCommand", INSTANCE, {"ssm:resourceTag/Finance": "Database"}, False),
        (SSM_FINANCE, "ssm:SendCommand", INSTANCE, {}, False),  # untagged: AccessDenied
        (SSM_FINANCE, "ssm:SendCommand", INSTANCE, {"SSM:RESOURCETAG/FINANCE": "WebServers"}, True),
        (SSM_FINANCE, "SSM:sendcommand", INSTANCE, {"ssm:resourceTag/Finance": "WebServers"}, True),
        (
            SSM_FINANCE,
            "ssm:CancelCommand",
            INSTANCE,
            {"ssm:resourceTag/Finance": "WebServers"},
            False,
        ),
        # Two tags in one statement are ANDed.
        (
            SSM_TWO_TAGS,
            "ssm:SendCommand",
            INSTANCE,
            {"ssm:resourceTag/tag_key1": "tag_value1", "ssm:resourceTag/tag_key2": "tag_value2"},
            True,
        ),
        (
            SSM_TWO_TAGS,
            "ssm:SendCommand",
            INSTANCE,
            {"ssm:resourceTag/tag_key1": "tag_value1"},
            False,
        ),
        (
            SSM_TWO_TAGS,
            "ssm:SendCommand",
            "arn:aws:ssm:us-west-1::document/AWS-RunShellScript",
            {},
            True,
        ),
        (
            SSM_TWO_TAGS,
            "ssm:SendCommand",
            "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript",
            {},
            False,
        ),
        (SSM_TWO_TAGS, "ssm:SendCommand", "arn:aws:ssm:us-west-1::document/Custom", {}, False),
        (SSM_TWO_TAGS, "ssm:ListCommands", "*", {}, True),
        # Two statements are ORed: either tag group will do.
        (
            SSM_EITHER_GROUP,
            "ssm:SendCommand",
            INSTANCE,
            {"ssm:resourceTag/tag_key2": "tag_value2"},
            True,
        ),
        (
            SSM_EITHER_GROUP,
            "ssm:SendCommand",
            INSTANCE,
            {"ssm:resourceTag/tag_key1": "tag_value1"},
            True,
        ),
        (
            SSM_EITHER_GROUP,
            "ssm:SendCommand",
            INSTANCE,
            {"ssm:resourceTag/tag_key1": "other"},
            False,
        ),
    ],
)
def test_ssm_run_command_examples(doc, action, resource, context, allowed):
    assert decide([doc], action, resource, context).allowed is allowed


# -- IAM User Guide examples -------------------------------------------------------------

DATE_RANGE = allow(
    "service-prefix:action-name",
    condition={
        "DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"},
        "DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"},
    },
)
DENY_OUTSIDE_IPS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]},
                "Bool": {"aws:ViaAWSService": "false"},
            },
        },
    ],
}
DENY_WITHOUT_MFA = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": ["ec2:StopInstances", "ec2:TerminateInstances"],
            "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}},
        },
    ],
}
ONLY_LONG_TERM_CREDENTIALS = allow("ec2:*", condition={"Null": {"aws:TokenIssueTime": "true"}})
HOME_FOLDER = allow("s3:*", "arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*")
LIST_OWN_PREFIX = allow(
    "s3:ListBucket",
    "arn:aws:s3:::amzn-s3-demo-bucket",
    condition={"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}},
)
ALL_TAG_KEYS_ALLOWED = allow(
    "ec2:CreateTags",
    condition={"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}},
)
ANY_TAG_KEY = allow(
    "ec2:CreateTags",
    condition={"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}},
)
NO_TAG_KEY_LIKE = allow(
    "ec2:CreateTags", condition={"ForAllValues:StringNotLike": {"aws:TagKeys": ["key1*"]}}
)
SOME_TAG_KEY_NOT = allow(
    "ec2:CreateTags", condition={"ForAnyValue:StringNotEquals": {"aws:TagKeys": ["a", "b"]}}
)
NOT_ACTION_IAM = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}],
}
NOT_RESOURCE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": "s3:*",
            "NotResource": ["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"],
        },
    ],
}
MAX_KEYS = allow("s3:ListBucket", condition={"NumericLessThanEquals": {"s3:max-keys": "10"}})
ALARM_ARN = allow(
    "sns:Publish",
    condition={"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:us-east-2:*:alarm:*"}},
)
NOT_DEPARTMENT = allow(
    "s3:GetObject",
    condition={"StringNotEquals": {"aws:PrincipalTag/department": ["HR", "Finance"]}},
)
BUCKET = "arn:aws:s3:::amzn-s3-demo-bucket"


@pytest.mark.parametrize(
    ("doc", "action", "resource", "context", "allowed"),
    [
        (
            DATE_RANGE,
            "service-prefix:action-name",
            "*",
            {"aws:CurrentTime": "2020-05-01T12:00:00Z"},
            True,
        ),
        (
            DATE_RANGE,
            "service-prefix:action-name",
            "*",
            {"aws:CurrentTime": "2020-07-01T00:00:00Z"},
            False,
        ),
        (
            DATE_RANGE,
            "service-prefix:action-name",
            "*",
            {"aws:CurrentTime": "2020-03-31T23:59:59Z"},
            False,
        ),
        (DATE_RANGE, "service-prefix:action-name", "*", {"aws:CurrentTime": "1588334400"}, True),
        (DATE_RANGE, "service-prefix:action-name", "*", {}, False),
        # The Deny holds only outside the ranges and when not called by a service.
        (
            DENY_OUTSIDE_IPS,
            "s3:GetObject",
            "*",
            {"aws:SourceIp": "192.0.2.7", "aws:ViaAWSService": "false"},
            True,
        ),
        (
            DENY_OUTSIDE_IPS,
            "s3:GetObject",
            "*",
            {"aws:SourceIp": "198.51.100.1", "aws:ViaAWSService": "false"},
            False,
        ),
        (
            DENY_OUTSIDE_IPS,
            "s3:GetObject",
            "*",
            {"aws:SourceIp": "198.51.100.1", "aws:ViaAWSService": "true"},
            True,
        ),
        # BoolIfExists: absent counts as true, so the Deny holds without MFA information.
        (DENY_WITHOUT_MFA, "ec2:StopInstances", "*", {}, False),
        (
            DENY_WITHOUT_MFA,
            "ec2:StopInstances",
            "*",
            {"aws:MultiFactorAuthPresent": "false"},
            False,
        ),
        (DENY_WITHOUT_MFA, "ec2:StopInstances", "*", {"aws:MultiFactorAuthPresent": "true"}, True),
        (DENY_WITHOUT_MFA, "ec2:DescribeInstances", "*", {}, True),
        # Null: true means the key is absent.
        (ONLY_LONG_TERM_CREDENTIALS, "ec2:RunInstances", "*", {}, True),
        (
            ONLY_LONG_TERM_CREDENTIALS,
            "ec2:RunInstances",
            "*",
            {"aws:TokenIssueTime": "2020-01-01T00:00:00Z"},
            False,
        ),
        # Policy variables.
        (
            HOME_FOLDER,
            "s3:GetObject",
            f"{BUCKET}/home/alice/notes.txt",
            {"aws:username": "alice"},
            True,
        ),
        (
            HOME_FOLDER,
            "s3:GetObject",
            f"{BUCKET}/home/bob/notes.txt",
            {"aws:username": "alice"},
            False,
        ),
        (HOME_FOLDER, "s3:GetObject", f"{BUCKET}/home/alice/notes.txt", {}, False),
        (HOME_FOLDER, "s3:GetObject", f"{BUCKET}/home/alice/x", {"aws:username": "*"}, False),
        (
            LIST_OWN_PREFIX,
            "s3:ListBucket",
            BUCKET,
            {"s3:prefix": "home/alice/", "aws:username": "alice"},
            True,
        ),
        (
            LIST_OWN_PREFIX,
            "s3:ListBucket",
            BUCKET,
            {"s3:prefix": "", "aws:username": "alice"},
            True,
        ),
        (
            LIST_OWN_PREFIX,
            "s3:ListBucket",
            BUCKET,
            {"s3:prefix": "home/bob/", "aws:username": "alice"},
            False,
        ),
        # Set qualifiers over a multi-valued key.
        (ALL_TAG_KEYS_ALLOWED, "ec2:CreateTags", "*", {"aws:TagKeys": ["environment"]}, True),
        (
            ALL_TAG_KEYS_ALLOWED,
            "ec2:CreateTags",
            "*",
            {"aws:TagKeys": ["environment", "cost-center"]},
            True,
        ),
        (
            ALL_TAG_KEYS_ALLOWED,
            "ec2:CreateTags",
            "*",
            {"aws:TagKeys": ["environment", "owner"]},
            False,
        ),
        (ALL_TAG_KEYS_ALLOWED, "ec2:CreateTags", "*", {}, True),  # no keys: ForAllValues holds
        (ALL_TAG_KEYS_ALLOWED, "ec2:CreateTags", "*", {"aws:TagKeys": []}, True),
        (ANY_TAG_KEY, "ec2:CreateTags", "*", {"aws:TagKeys": ["owner", "environment"]}, True),
        (ANY_TAG_KEY, "ec2:CreateTags", "*", {"aws:TagKeys": ["owner"]}, False),
        (ANY_TAG_KEY, "ec2:CreateTags", "*", {}, False),  # no keys: ForAnyValue fails
        (NO_TAG_KEY_LIKE, "ec2:CreateTags", "*", {"aws:TagKeys": ["key2", "other"]}, True),
        (NO_TAG_KEY_LIKE, "ec2:CreateTags", "*", {"aws:TagKeys": ["key2", "key1-x"]}, False),
        (SOME_TAG_KEY_NOT, "ec2:CreateTags", "*", {"aws:TagKeys": ["a", "c"]}, True),
        (SOME_TAG_KEY_NOT, "ec2:CreateTags", "*", {"aws:TagKeys": ["a", "b"]}, False),
        # NotAction and NotResource.
        (NOT_ACTION_IAM, "s3:GetObject", "*", {}, True),
        (NOT_ACTION_IAM, "iam:CreateUser", "*", {}, False),
        (NOT_RESOURCE, "s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/2020.csv", {}, True),
        (NOT_RESOURCE, "s3:GetObject", "arn:aws:s3:::HRBucket/Other", {}, False),
        # Numbers, ARNs, negated operators on a missing key.
        (MAX_KEYS, "s3:ListBucket", BUCKET, {"s3:max-keys": "10"}, True),
        (MAX_KEYS, "s3:ListBucket", BUCKET, {"s3:max-keys": "11"}, False),
        (MAX_KEYS, "s3:ListBucket", BUCKET, {"s3:max-keys": "ten"}, False),
        (
            ALARM_ARN,
            "sns:Publish",
            "*",
            {"aws:SourceArn": "arn:aws:cloudwatch:us-east-2:111122223333:alarm:high"},
            True,
        ),
        (
            ALARM_ARN,
            "sns:Publish",
            "*",
            {"aws:SourceArn": "arn:aws:cloudwatch:us-west-2:111122223333:alarm:high"},
            False,
        ),
        (NOT_DEPARTMENT, "s3:GetObject", "*", {"aws:PrincipalTag/department": "IT"}, True),
        (NOT_DEPARTMENT, "s3:GetObject", "*", {"aws:PrincipalTag/department": "HR"}, False),
        (NOT_DEPARTMENT, "s3:GetObject", "*", {}, True),  # negated, key absent: true
    ],
)
def test_iam_user_guide_examples(doc, action, resource, context, allowed):
    assert decide([doc], action, resource, context).allowed is allowed


# -- operators, one by one ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("operator", "policy_value", "context_value", "expected"),
    [
        ("StringEquals", "prod", "prod", True),
        ("StringEquals", "prod", "Prod", False),
        ("StringNotEquals", "prod", "dev", True),
        ("StringNotEquals", ["prod", "stage"], "stage", False),  # NOR of the values
        ("StringEqualsIgnoreCase", "prod", "PROD", True),
        ("StringNotEqualsIgnoreCase", "prod", "PROD", False),
        ("StringLike", "web-*", "web-01", True),
        ("StringLike", "web-??", "web-1", False),
        ("StringLike", "web-*", "Web-01", False),
        ("StringNotLike", "web-*", "db-01", True),
        ("NumericEquals", "10", "10.0", True),
        ("NumericNotEquals", "10", "11", True),
        ("NumericLessThan", "10", "9", True),
        ("NumericLessThan", "10", "10", False),
        ("NumericLessThanEquals", "10", "10", True),
        ("NumericGreaterThan", "10", "10", False),
        ("NumericGreaterThanEquals", "10", "10", True),
        ("DateEquals", "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00", True),
        ("DateNotEquals", "2026-01-01", "2026-01-02", True),
        ("DateLessThan", "2026-01-01T00:00:00Z", "2025-12-31T23:59:59Z", True),
        ("DateLessThanEquals", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", True),
        ("DateGreaterThan", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", True),
        ("DateGreaterThanEquals", "2026-01-01T00:00:00Z", "2025-01-01T00:00:00Z", False),
        ("Bool", "true", "TRUE", True),
        ("Bool", True, "false", False),
        ("BinaryEquals", "QmluYXJ5", "QmluYXJ5", True),
        ("IpAddress", "10.0.0.0/8", "10.1.2.3", True),
        ("IpAddress", "10.0.0.0/8", "11.1.2.3", False),
        ("IpAddress", "2001:db8::/32", "2001:db8::1", True),
        ("IpAddress", "10.0.0.0/8", "2001:db8::1", False),
        ("IpAddress", "203.0.113.7", "203.0.113.7", True),
        ("NotIpAddress", "10.0.0.0/8", "11.1.2.3", True),
        ("ArnEquals", "frn:fleetrun:node/n-*", "frn:fleetrun:node/n-1", True),
        ("ArnLike", "arn:aws:iam::*:role/admin", "arn:aws:iam::123:role/admin", True),
        ("ArnNotLike", "arn:aws:iam::*:role/admin", "arn:aws:iam::123:role/other", True),
        ("StringEqualsIfExists", "prod", None, True),
        ("StringNotEqualsIfExists", "prod", None, True),
        ("NumericLessThanIfExists", "5", "6", False),
        ("StringEquals", "prod", None, False),
        ("StringNotLike", "x", None, True),
        ("NotIpAddress", "10.0.0.0/8", None, True),
        ("ForAnyValue:StringLikeIfExists", "a*", None, True),
        ("Null", "true", None, True),
        ("Null", "false", None, False),
        ("Null", "false", "x", True),
    ],
)
def test_each_operator(operator, policy_value, context_value, expected):
    doc = allow("svc:Do", condition={operator: {"svc:Key": policy_value}})
    context = {} if context_value is None else {"svc:key": context_value}
    assert decide([doc], "svc:Do", "*", context).allowed is expected


def test_every_operator_named_by_the_issue_is_known():
    names = set(operator_names())
    for base in ("String", "Numeric", "Date"):
        assert any(n.startswith(base) for n in names)
    for name in (
        "StringEquals",
        "StringNotEquals",
        "StringEqualsIgnoreCase",
        "StringNotEqualsIgnoreCase",
        "StringLike",
        "StringNotLike",
        "NumericEquals",
        "NumericNotEquals",
        "NumericLessThan",
        "NumericLessThanEquals",
        "NumericGreaterThan",
        "NumericGreaterThanEquals",
        "DateEquals",
        "DateNotEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "Bool",
        "IpAddress",
        "NotIpAddress",
        "Null",
        "StringLikeIfExists",
    ):
        assert name in names


# -- evaluation order --------------------------------------------------------------------


def test_explicit_deny_wins_over_any_allow_in_any_policy():
    granted = allow("fleetrun:*")
    refused = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "NoProd", "Effect": "Deny", "Action": "fleetrun:SendCommand", "Resource": "*"}
        ],
    }
    decision = decide([granted, refused], "fleetrun:SendCommand", "frn:fleetrun:node/n-1")
    assert not decision.allowed and decision.explicit
    assert decision.matched_statements() == [
        {"policy": "p1", "index": 1, "sid": "NoProd", "effect": "Deny"}
    ]
    assert "denies fleetrun:SendCommand" in decision.reason(
        "fleetrun:SendCommand", "frn:fleetrun:node/n-1"
    )


def test_nothing_allows_means_implicit_deny():
    decision = decide([allow("fleetrun:ListNodes")], "fleetrun:SendCommand", "*")
    assert not decision.allowed and not decision.explicit and decision.matched == ()
    assert decide([], "fleetrun:ListNodes", "*").allowed is False


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("frn:fleetrun:node/*", "frn:fleetrun:node/n-0123456789abcdef0", True),
        ("frn:fleetrun:node/n-01234567?9abcdef0", "frn:fleetrun:node/n-0123456789abcdef0", True),
        ("frn:fleetrun:document/*", "frn:fleetrun:node/n-1", False),
        ("frn:fleetrun:*", "frn:fleetrun:node/n-1", True),  # a final * crosses colons
        ("frn:*:node/n-1", "frn:fleetrun:node/n-1", True),
        ("frn:f*n:node/n-1", "frn:fleetrun:node/n-1", True),
        ("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c", True),
        ("arn:aws:ssm:*:*:document/*", "arn:aws:ssm:us-east-1:1:document/AWS-X", True),
        ("arn:aws:ssm:us*1:*:document/*", "arn:aws:ssm:us-east-1:1:document/AWS-X", True),
        ("frn:fleetrun:node/N-1", "frn:fleetrun:node/n-1", False),  # case-sensitive
    ],
)
def test_resource_patterns(pattern, resource, expected):
    assert decide([allow("x:Y", pattern)], "x:Y", resource).allowed is expected


def test_old_version_reads_variables_literally():
    doc = {
        "Version": "2008-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username}"}
        ],
    }
    assert decide(
        [doc], "s3:GetObject", "arn:aws:s3:::b/${aws:username}", {"aws:username": "a"}
    ).allowed
    assert not decide([doc], "s3:GetObject", "arn:aws:s3:::b/a", {"aws:username": "a"}).allowed


def test_variable_defaults_and_escapes():
    doc = allow("x:Y", "frn:fleetrun:document/${fleetrun:PrincipalName, 'shared'}-${*}")
    assert decide(
        [doc], "x:Y", "frn:fleetrun:document/ann-*", {"fleetrun:PrincipalName": "ann"}
    ).allowed
    assert not decide(
        [doc], "x:Y", "frn:fleetrun:document/ann-x", {"fleetrun:PrincipalName": "ann"}
    ).allowed
    assert decide([doc], "x:Y", "frn:fleetrun:document/shared-*").allowed


# -- partial evaluation ------------------------------------------------------------------


def known_globals(key):
    return key in ("fleetrun:sourceip", "fleetrun:principalname")


@pytest.mark.parametrize(
    ("doc", "context", "allowed", "undecided"),
    [
        (allow("fleetrun:SendCommand"), {}, True, False),
        (allow("fleetrun:ListNodes"), {}, False, False),
        (allow("fleetrun:SendCommand", "frn:fleetrun:node/*"), {}, True, True),
        (
            allow(
                "fleetrun:SendCommand",
                condition={"StringEquals": {"fleetrun:ResourceTag/env": "dev"}},
            ),
            {},
            True,
            True,
        ),
        (
            allow(
                "fleetrun:SendCommand", condition={"IpAddress": {"fleetrun:SourceIp": "10.0.0.0/8"}}
            ),
            {"fleetrun:SourceIp": "192.0.2.1"},
            False,
            False,
        ),
    ],
)
def test_partial_evaluation_refuses_early_only_what_nothing_could_allow(
    doc, context, allowed, undecided
):
    decision = decide([doc], "fleetrun:SendCommand", None, context, known=known_globals)
    assert (decision.allowed, decision.undecided) == (allowed, undecided)


def test_partial_evaluation_refuses_a_sure_deny_and_waits_on_a_conditional_one():
    sure = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "fleetrun:SendCommand", "Resource": "*"},
        ],
    }
    assert not decide([sure], "fleetrun:SendCommand", None, known=known_globals).allowed
    tagged = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "fleetrun:SendCommand",
                "Resource": "*",
                "Condition": {"StringEquals": {"fleetrun:ResourceTag/env": "prod"}},
            },
        ],
    }
    decision = decide([tagged], "fleetrun:SendCommand", None, known=known_globals)
    assert decision.allowed and decision.undecided


# -- malformed policies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "phrases"),
    [
        ('{"Version": "2012-10-17", "Statement": [', ["not valid JSON", "line 1"]),
        ("[1, 2]", ["must be a JSON object"]),
        ({"Version": "2012-10-17"}, ["no Statement"]),
        ({"Version": "2013-01-01", "Statement": []}, ["Version '2013-01-01'"]),
        ({"Version": "2012-10-17", "Statement": [], "Extra": 1}, ["'Extra' is unknown"]),
        (
            {
                "Version": "2012-10-17",
                "Statement": [{"Sid": "A", "Effect": "Permit", "Action": "*", "Resource": "*"}],
            },
            ["Statement 1 (Sid 'A')", "Effect 'Permit' is not Allow or Deny"],
        ),
        (
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"},
                    {
                        "Effect": "Allow",
                        "Action": "*",
                        "Resource": "*",
                        "Condition": {"StringEqual": {"a:b": "c"}},
                    },
                ],
            },
            ["Statement 2", "'StringEqual' is unknown", "did you mean StringEquals?"],
        ),
        (
            allow(condition={"IpAddress": {"fleetrun:SourceIp": "10.0.0.0/33"}}),
            [
                "Statement 1",
                "IpAddress on 'fleetrun:SourceIp'",
                "'10.0.0.0/33' is not an IP address or CIDR range",
            ],
        ),
        (allow(condition={"IpAddress": {"fleetrun:SourceIp": "300.1.1.1"}}), ["not an IP address"]),
        (allow(condition={"NumericLessThan": {"a:b": "ten"}}), ["'ten' is not a number"]),
        (allow(condition={"DateLessThan": {"a:b": "tomorrow"}}), ["'tomorrow' is not a date"]),
        (allow(condition={"Bool": {"a:b": "yes"}}), ["'yes' is not true or false"]),
        (allow(condition={"NullIfExists": {"a:b": "true"}}), ["Null takes no qualifier"]),
        (
            allow(condition={"ForEveryValue:StringLike": {"a:b": "x"}}),
            ["set qualifier 'ForEveryValue'"],
        ),
        (
            allow(condition={"StringLike": {"nocolon": "x"}}),
            ["condition key 'nocolon' is malformed"],
        ),
        (allow(condition={"StringLike": {"a:b": []}}), ["list of values is empty"]),
        (allow("SendCommand"), ["action 'SendCommand' is malformed"]),
        (allow(resource="node/n-1"), ["resource 'node/n-1' is not *"]),
        (
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]},
            ["exactly one of Action and NotAction"],
        ),
        (
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*"}]},
            ["exactly one of Resource and NotResource"],
        ),
        (allow(Principal={"AWS": "*"}), ["Principal has no meaning"]),
        (
            '{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}',
            ["'Version' appears twice"],
        ),
        (
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "S", "Effect": "Allow", "Action": "*", "Resource": "*"},
                    {"Sid": "S", "Effect": "Allow", "Action": "*", "Resource": "*"},
                ],
            },
            ["Statement 2 (Sid 'S')", "Sid is used twice"],
        ),
    ],
)
def test_malformed_policies_are_refused_with_the_fault_and_its_place(document, phrases):
    with pytest.raises(PolicyError) as caught:
        parse_policy(document, "ops")
    message = caught.value.message
    for phrase in phrases:
        assert phrase in message, message
    assert message.endswith((".", "?")) and "\n" not in message
