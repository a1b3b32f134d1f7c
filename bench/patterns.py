"""Event patterns: compile time, and events matched per second, one operator at a time.

    python bench/patterns.py [--events 20000]

Pure CPU, no server: matches an invocation-status event of about 1 KB against one pattern
per operator, then against all of them as a rule set, and prints microseconds per match.
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts the repository on sys.path)

from fleetrun.core.patterns import compile_pattern

EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "Invocation Status Change",
    "source": "fleetrun",
    "time": "2026-11-21T18:43:48Z",
    "resources": [f"frn:fleetrun:node/n-{i:017x}" for i in range(8)],
    "detail": {
        "command-id": "c-0123456789abcdef0",
        "node-id": "n-0123456789abcdef0",
        "status": "Failed",
        "status-detail": "Failed",
        "exit-code": 2,
        "document": "RunShellScript",
        "source-ip": "10.0.3.17",
        "tags": [{"key": k, "value": f"value-{k}"} for k in ("env", "role", "team", "zone")],
        "comment": "nightly maintenance of the web tier, run by the scheduler",
    },
}

PATTERNS = {
    "exact": {"source": ["fleetrun"], "detail": {"status": ["Failed", "TimedOut"]}},
    "prefix": {"detail": {"document": [{"prefix": "Run"}]}},
    "suffix": {"detail": {"document": [{"suffix": {"equals-ignore-case": "script"}}]}},
    "equals-ignore-case": {"detail-type": [{"equals-ignore-case": "invocation status change"}]},
    "wildcard": {"detail": {"comment": [{"wildcard": "*maintenance*web*"}]}},
    "anything-but": {"detail": {"status": [{"anything-but": ["Success", "Pending"]}]}},
    "numeric": {"detail": {"exit-code": [{"numeric": [">", 0, "<=", 255]}]}},
    "cidr": {"detail": {"source-ip": [{"cidr": "10.0.0.0/16"}]}},
    "exists": {"detail": {"parameters": [{"exists": False}]}},
    "array of objects": {"detail": {"tags": {"key": ["team"], "value": [{"prefix": "value-"}]}}},
    "$or": {"$or": [{"detail": {"exit-code": [0]}}, {"resources": [{"suffix": "07"}]}]},
}


def per_match_us(pattern: dict, events: int) -> float:
    compiled = compile_pattern(pattern)
    assert compiled.matches(EVENT), pattern
    started = time.perf_counter()
    for _ in range(events):
        compiled.matches(EVENT)
    return (time.perf_counter() - started) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    started = time.perf_counter()
    for _ in range(1000):
        for pattern in PATTERNS.values():
            compile_pattern(pattern)
    compile_us = (time.perf_counter() - started) / (1000 * len(PATTERNS)) * 1e6
    print(f"patterns: compile {compile_us:.1f} us per pattern (mean of {len(PATTERNS)} kinds)")
    for name, pattern in PATTERNS.items():
        print(f"  {name:<20} {per_match_us(pattern, args.events):6.2f} us per match")
    rules = [compile_pattern(p) for p in PATTERNS.values()] * 10
    started = time.perf_counter()
    for _ in range(args.events // 10):
        sum(rule.matches(EVENT) for rule in rules)
    per_event = (time.perf_counter() - started) / (args.events // 10)
    print(
        f"  {len(rules)} rules per event     {per_event * 1e6:6.1f} us per event "
        f"({1 / per_event:,.0f} events/s on one core)"
    )


if __name__ == "__main__":
    main()
