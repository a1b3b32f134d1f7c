"""SSM-compatible API latency: boto3 send_command -> command_executed waiter done, for
`echo hi` on one local agent, beside the native SDK's send -> wait from the same run.

    python bench/ssm.py [--runs 100] [--delay 0.01]

Starts a real server (SQLite, or PostgreSQL with FLEETRUN_TEST_DATABASE_URL) and one
real agent on loopback; makes an access key (`tokens create --aws`); then alternates a
native run and an SSM run, so both see the same machine. boto3's waiter polls
GetCommandInvocation every `--delay` seconds (its default is 5 s; the native SDK's wait
is a long-poll that answers when the command ends). Prints p50, p90 and max of each in
milliseconds, and the ratio of the p50s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import boto3
from _common import SERVER_ENV, percentile
from botocore.config import Config
from tests.harness import fleet


def _native(client: Any, node_id: str) -> float:
    started = time.perf_counter()
    command = client.send_command(script="echo hi", node_ids=[node_id])
    done = client.wait(command.id, timeout_s=30)
    elapsed = (time.perf_counter() - started) * 1000
    if done.status != "Success":
        raise SystemExit(f"native run: {done.status}")
    return elapsed


def _ssm(ssm: Any, node_id: str, delay_s: float) -> float:
    started = time.perf_counter()
    sent = ssm.send_command(
        InstanceIds=[node_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["echo hi"]},
    )["Command"]
    ssm.get_waiter("command_executed").wait(
        CommandId=sent["CommandId"],
        InstanceId=node_id,
        WaiterConfig={"Delay": delay_s, "MaxAttempts": int(30 / delay_s)},
    )
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--delay", type=float, default=0.01, help="the waiter's poll interval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=SERVER_ENV) as f:
        [agent] = f.add_agents(1)
        node_id = agent.node_id
        assert node_id is not None
        key = f.client.create_token(aws=True)
        ssm = boto3.client(
            "ssm",
            endpoint_url=f.server.url,
            region_name="us-east-1",
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
        )
        native: list[float] = []
        aws: list[float] = []
        for n in range(args.warmup + args.runs):
            one, other = _native(f.client, node_id), _ssm(ssm, node_id, args.delay)
            if n >= args.warmup:
                native.append(one)
                aws.append(other)
        db = f.server.db.kind if f.server.db else "?"
    print(f"ssm: {args.runs} runs each of `echo hi` on 1 agent ({db}), interleaved")
    for name, samples in (("native SDK send -> wait", native), ("boto3 send -> waiter", aws)):
        print(
            f"  {name:<24} p50 {percentile(samples, 50):7.1f} ms   "
            f"p90 {percentile(samples, 90):7.1f} ms   max {max(samples):7.1f} ms"
        )
    ratio = percentile(aws, 50) / percentile(native, 50)
    print(f"  boto3 / native p50: {ratio:.2f}x (waiter polling every {args.delay * 1000:g} ms)")


if __name__ == "__main__":
    main()
