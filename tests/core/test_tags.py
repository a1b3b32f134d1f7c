"""`retagged`: a node's tags after a change, as a table of (before, set, remove) -> after
or the sentence that refuses it."""

from __future__ import annotations

import pytest

from fleetrun.core.errors import ValidationError
from fleetrun.core.tags import retagged


@pytest.mark.parametrize(
    ("before", "set_", "remove", "after"),
    [
        ({}, {"env": "prod"}, [], {"env": "prod"}),
        ({"env": "dev"}, {"env": "prod"}, [], {"env": "prod"}),
        ({"env": "dev", "role": "web"}, {}, ["env"], {"role": "web"}),
        ({"env": "dev", "role": "web"}, {"tier": "1"}, ["env"], {"role": "web", "tier": "1"}),
        ({"env": "dev"}, {}, [], {"env": "dev"}),
    ],
)
def test_the_tags_after_a_change(before, set_, remove, after):
    assert retagged(before, set_, remove) == after


@pytest.mark.parametrize(
    ("before", "set_", "remove", "message"),
    [
        ({"env": "dev"}, {}, ["role"], "The node has no tag role"),
        ({"env": "dev"}, {"env": "prod"}, ["env"], "both set and removed"),
        ({}, {"bad key!": "x"}, [], "Tag key 'bad key!' is not valid"),
        ({}, {f"k{i}": "v" for i in range(51)}, [], "at most 50 tags"),
    ],
)
def test_a_change_that_cannot_be_made_is_one_sentence(before, set_, remove, message):
    with pytest.raises(ValidationError, match=message):
        retagged(before, set_, remove)
