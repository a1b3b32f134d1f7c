"""Token buckets: looking does not take, and full buckets are forgotten."""

from __future__ import annotations

from fleetrun.core.throttle import TokenBuckets


def test_wait_s_looks_without_taking():
    buckets = TokenBuckets(rate_per_s=1, burst=2)
    assert [buckets.wait_s("a", 0.0), buckets.take("a", 0.0), buckets.take("a", 0.0)] == [
        None,
        None,
        None,
    ]
    assert buckets.wait_s("a", 0.0) == 1.0 and buckets.wait_s("a", 0.0) == 1.0
    assert buckets.wait_s("a", 0.5) == 0.5
    assert buckets.wait_s("a", 1.0) is None and buckets.take("a", 1.0) is None
    assert TokenBuckets(rate_per_s=0, burst=0).wait_s("a", 0.0) is None


def test_full_buckets_are_forgotten_past_max_keys():
    buckets = TokenBuckets(rate_per_s=1, burst=1, max_keys=3)
    for index, key in enumerate("abcd"):
        buckets.take(key, float(index))
    # at t=3, a b c have refilled; d was just taken from
    assert set(buckets._buckets) == {"d"}
    assert buckets.take("d", 3.0) is not None  # what it owes is kept
