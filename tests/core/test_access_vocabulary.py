"""fleetrun's vocabulary: built-in roles, name and key checks, rate buckets."""

from __future__ import annotations

import pytest

from fleetrun.core import access
from fleetrun.core.errors import ValidationError
from fleetrun.core.policy import PolicyError, evaluate, parse_policy
from fleetrun.core.throttle import TokenBuckets


def role_allows(role, action, resource="*"):
    policies = [access.BUILTIN_POLICIES[p] for p in access.BUILTIN_ROLES[role]]
    return evaluate(policies, action, resource, {}).allowed


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        ("Reader", "fleetrun:ListNodes", True),
        ("Reader", "fleetrun:GetCommandInvocation", True),
        ("Reader", "fleetrun:VerifyAuditLog", True),
        ("Reader", "fleetrun:SendCommand", False),
        ("Reader", "fleetrun:CreateToken", False),
        ("Reader", "fleetrun:PutPolicy", False),
        ("Operator", "fleetrun:SendCommand", True),
        ("Operator", "fleetrun:CancelCommand", True),
        ("Operator", "fleetrun:CreateRunCommand", True),
        ("Operator", "fleetrun:DeleteRunCommand", True),
        ("Operator", "fleetrun:GetNode", True),
        ("Operator", "fleetrun:CreateActivation", False),
        ("Operator", "fleetrun:AttachPrincipalRole", False),
        ("Administrator", "fleetrun:AttachPrincipalRole", True),
        ("Administrator", "fleetrun:DeleteNode", True),
    ],
)
def test_builtin_roles(role, action, allowed):
    assert role_allows(role, action, "frn:fleetrun:node/n-0123456789abcdef0") is allowed


def test_every_action_of_the_table_is_covered_by_administrator_and_reads_by_reader():
    for name, spec in access.ACTIONS.items():
        assert role_allows("Administrator", f"fleetrun:{name}")
        assert role_allows("Reader", f"fleetrun:{name}") is (spec.access == "read"), name


@pytest.mark.parametrize("name", ["ok", "a.b-c_d@e+f=g,h", "x" * 64])
def test_good_names(name):
    assert access.check_name("principal", name, max_length=64) == name


@pytest.mark.parametrize("name", ["", "has space", "sl/ash", "x" * 65, "co:lon"])
def test_bad_names(name):
    with pytest.raises(ValidationError):
        access.check_name("principal", name, max_length=64)


def test_vocabulary_check_refuses_unknown_fleetrun_actions_and_keys_only():
    ok = parse_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["fleetrun:Send*", "ssm:Whatever", "fleetrun:ListNodes"],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            "fleetrun:ResourceTag/env": "prod",
                            "FLEETRUN:documentname": "x",
                            "aws:Anything": "y",
                            "fleetrun:Parameter/commands": "z",
                        }
                    },
                }
            ],
        },
        "ok",
    )
    access.check_vocabulary(ok, access.ACTIONS)
    bad = parse_policy(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "fleetrun:Sned*", "Resource": "*"}],
        },
        "bad",
    )
    with pytest.raises(PolicyError, match="'fleetrun:Sned\\*' names no fleetrun action"):
        access.check_vocabulary(bad, access.ACTIONS)


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([0, 0, 0], [None, None, None]),  # the burst
        ([0, 0, 0, 0], [None, None, None, 0.5]),  # over it: wait half a second
        ([0, 0, 0, 0, 0.5], [None, None, None, 0.5, None]),  # after the wait: one more
        ([0, 0, 0, 10, 10, 10], [None, None, None, None, None, None]),  # refilled
    ],
)
def test_token_buckets(times, expected):
    buckets = TokenBuckets(rate_per_s=2, burst=3)
    assert [buckets.take("ann", t) for t in times] == expected


def test_token_buckets_are_per_key_and_can_be_off():
    buckets = TokenBuckets(rate_per_s=1, burst=1)
    assert buckets.take("ann", 0) is None and buckets.take("bob", 0) is None
    assert buckets.take("ann", 0) == 1.0
    off = TokenBuckets(rate_per_s=0, burst=0)
    assert all(off.take("ann", 0) is None for _ in range(100))


def test_the_operators_guide_lists_every_action():
    import re
    from pathlib import Path

    guide = Path(__file__).resolve().parents[2] / "docs" / "access-control.md"
    listed = set(re.findall(r"^\| `fleetrun:(\w+)` \|", guide.read_text(), re.M))
    missing = sorted(set(access.ACTIONS) - listed)
    assert not missing, f"docs/access-control.md lacks rows for {missing}"
