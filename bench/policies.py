"""Policy decisions per node: what deciding SendCommand on each target node costs, with
fleetrun's own policies and with policies written for SSM (decided under both names).

    python bench/policies.py [--nodes 10000]

Pure CPU, no server: decides `fleetrun:SendCommand` on N nodes, each with its tags, as a
command to N nodes does, and prints CPU microseconds per node (best of five rounds).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import _common  # puts the repository on sys.path; ROOT finds the policies

from fleetrun.core import access
from fleetrun.core.policy import parse_policy

TAGS = {"tag_key1": "tag_value1", "tag_key2": "tag_value2", "role": "web", "env": "prod"}
FLEETRUN = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "fleetrun:SendCommand",
            "Resource": "frn:fleetrun:node/*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/role": "web"}},
        },
        {
            "Effect": "Deny",
            "Action": "fleetrun:SendCommand",
            "Resource": "*",
            "Condition": {"StringEquals": {"fleetrun:ResourceTag/env": "lab"}},
        },
    ],
}


def per_node_us(policies: list, nodes: int) -> float:
    ids = [access.frn("node", f"n-{i:017x}") for i in range(nodes)]
    context = access.request_context("bench", "10.0.0.1", datetime(2026, 1, 1, tzinfo=UTC))
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        names = access.foreign(policies)  # once per request, as the server's Caller does
        for resource in ids:
            keys = {**context, **access.node_context(TAGS)}
            access.decide(policies, "SendCommand", resource, keys, names=names)
        best = min(best, time.process_time() - started)
    return best / nodes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10000)
    args = parser.parse_args()
    seeds = _common.ROOT / "tests" / "policies"
    cases = {
        "fleetrun policy": [parse_policy(FLEETRUN, "fleetrun")],
        "SSM seed policy (both tags)": [
            parse_policy(json.loads((seeds / "ssm-tag-both-keys.json").read_text()), "ssm")
        ],
        "SSM + fleetrun policies": [
            parse_policy(FLEETRUN, "fleetrun"),
            parse_policy(json.loads((seeds / "ssm-tag-either-key.json").read_text()), "ssm"),
        ],
    }
    for name, policies in cases.items():
        figure = per_node_us(policies, args.nodes)
        print(f"  {name:30s} {figure:6.1f} us CPU per node decision ({args.nodes} nodes)")


if __name__ == "__main__":
    main()
