"""Who counts as an administrator: policies that allow everything, whatever the
request. The server refuses a change that leaves no such principal with a token."""

from __future__ import annotations

import pytest

from fleetrun.core.access import BUILTIN_POLICIES, allows_everything
from fleetrun.core.policy import parse_policy


def _policy(*statements):
    return parse_policy({"Version": "2012-10-17", "Statement": list(statements)}, "p")


ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}
FROM_LAN = {"IpAddress": {"fleetrun:SourceIp": "10.0.0.0/8"}}


@pytest.mark.parametrize(
    ("policies", "expected"),
    [
        ([BUILTIN_POLICIES["AdministratorAccess"]], True),
        ([_policy(ALL)], True),
        ([_policy({"Effect": "Allow", "Action": "fleetrun:*", "Resource": "*"})], True),
        ([BUILTIN_POLICIES["OperatorAccess"]], False),
        ([BUILTIN_POLICIES["ReadOnlyAccess"]], False),
        ([], False),
        # every action, but only some resources
        ([_policy({"Effect": "Allow", "Action": "*", "Resource": "frn:fleetrun:node/*"})], False),
        # everything, but only from some addresses
        ([_policy({**ALL, "Condition": FROM_LAN})], False),
        # everything, less one action (even only sometimes)
        (
            [
                BUILTIN_POLICIES["AdministratorAccess"],
                _policy({"Effect": "Deny", "Action": "fleetrun:DeleteNode", "Resource": "*"}),
            ],
            False,
        ),
        (
            [
                BUILTIN_POLICIES["AdministratorAccess"],
                _policy({"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": FROM_LAN}),
            ],
            False,
        ),
    ],
)
def test_allows_everything(policies, expected):
    assert allows_everything(policies) is expected
