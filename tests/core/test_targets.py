from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError
from fleetrun.core.targets import Candidate, Target, check, parse_target, select

NODES = [
    Candidate("n-00000000000000001", {"env": "prod", "role": "web"}),
    Candidate("n-00000000000000002", {"env": "prod", "role": "db"}),
    Candidate("n-00000000000000003", {"env": "dev", "role": "web"}),
    Candidate("n-00000000000000004", {}),
]


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        ([Target(key="all", values=["*"])], [1, 2, 3, 4]),
        ([Target(key="tag:env", values=["prod"])], [1, 2]),
        ([Target(key="tag:env", values=["prod", "dev"])], [1, 2, 3]),  # values ORed
        (
            [Target(key="tag:env", values=["prod"]), Target(key="tag:role", values=["web"])],
            [1],
        ),  # ANDed
        ([Target(key="tag-key", values=["role"])], [1, 2, 3]),
        ([Target(key="NodeIds", values=["n-00000000000000004", "n-00000000000000002"])], [2, 4]),
        (
            [
                Target(key="NodeIds", values=["n-00000000000000002"]),
                Target(key="tag:env", values=["dev"]),
            ],
            [],
        ),
        ([Target(key="tag:env", values=["staging"])], []),
    ],
)
def test_select(targets, expected):
    assert select(check(targets), NODES) == [f"n-{i:017d}" for i in expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tag:env=prod", Target(key="tag:env", values=["prod"])),
        ("tag:env=prod,dev", Target(key="tag:env", values=["prod", "dev"])),
        ("tag-key:role", Target(key="tag-key", values=["role"])),
        ("group:web", Target(key="group", values=["web"])),
        ("all", Target(key="all", values=["*"])),
    ],
)
def test_parse_target(text, expected):
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text", ["tag:env", "tag:=x", "env=prod", "tag-key:", "nodes:x", "tag:env="]
)
def test_parse_target_refuses_malformed(text):
    with pytest.raises(ValidationError) as err:
        parse_target(text)
    assert "Target" in err.value.message or "tag" in err.value.message


@pytest.mark.parametrize(
    "targets",
    [
        [],
        [Target(key="NodeIds", values=["i-123"])],
        [Target(key="bogus", values=["x"])],
        [Target(key="group", values=["a", "b"])],
    ],
)
def test_check_refuses_meaningless_targets(targets):
    with pytest.raises(ValidationError):
        check(targets)
