"""The SSM-compatible API over the network, with a real agent: boto3 and the `aws`
command line, unmodified, pointed at a fleetrun server with `endpoint_url` /
`--endpoint-url` and an access key from `fleetrun tokens create --aws`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.harness import Fleet

REGION = "eu-west-3"
FAST = {"Delay": 0.2, "MaxAttempts": 150}
AWS = str(Path(sys.executable).with_name("aws"))


@pytest.fixture(scope="module")
def ssm_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str, str]]:
    """One server, one agent, and an access key made by the CLI."""
    f = Fleet(tmp_path_factory.mktemp("ssm")).start()
    try:
        (agent,) = f.add_agents(1, tags={"env": "test"}, prefix="ssm")
        assert agent.node_id is not None
        done = subprocess.run(
            [sys.executable, "-m", "fleetrun", "tokens", "create", "--aws", "-o", "json"],
            env={**os.environ, "FLEETRUN_SERVER": f.server.url, "FLEETRUN_TOKEN": f.server.token},
            capture_output=True,
            text=True,
            check=True,
        )
        created = json.loads(done.stdout)
        assert created["token"] is None and created["access_key_id"].startswith("FRK")
        yield f, created["access_key_id"], created["secret_access_key"]
    finally:
        f.close()


def _boto3(f: Fleet, key_id: str, secret: str) -> Any:
    return boto3.client(
        "ssm",
        endpoint_url=f.server.url,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


def _aws(f: Fleet, key_id: str, secret: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(f.root),
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
    }
    return subprocess.run(
        [AWS, "ssm", *args, "--endpoint-url", f.server.url, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_boto3_runs_a_script_on_a_real_agent(ssm_fleet: tuple[Fleet, str, str]) -> None:
    f, key_id, secret = ssm_fleet
    node = f.agents[0].node_id
    ssm = _boto3(f, key_id, secret)
    sent = ssm.send_command(
        Targets=[{"Key": "tag:env", "Values": ["test"]}],
        DocumentName="AWS-RunShellScript",
        Parameters={
            "commands": ["echo out; echo err >&2; pwd; exit 3"],
            "workingDirectory": ["/tmp"],
        },
    )["Command"]
    waiter = ssm.get_waiter("command_executed")
    with pytest.raises(Exception, match="Failed"):
        waiter.wait(CommandId=sent["CommandId"], InstanceId=node, WaiterConfig=FAST)
    got = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=node)
    assert got["StandardOutputContent"] == "out\n/tmp\n"
    assert got["StandardErrorContent"] == "err\n"
    assert (got["Status"], got["ResponseCode"]) == ("Failed", 3)
    (inv,) = ssm.list_command_invocations(CommandId=sent["CommandId"], Details=True)[
        "CommandInvocations"
    ]
    assert inv["CommandPlugins"][0]["Output"] == "out\n/tmp\n\n----------ERROR-------\nerr\n"


def test_the_aws_command_line_sends_and_reads(ssm_fleet: tuple[Fleet, str, str]) -> None:
    f, key_id, secret = ssm_fleet
    node = f.agents[0].node_id
    assert node is not None
    sent = _aws(
        f,
        key_id,
        secret,
        "send-command",
        "--instance-ids",
        node,
        "--document-name",
        "AWS-RunShellScript",
        "--parameters",
        'commands=["echo from the aws cli"]',
        "--comment",
        "cli",
    )
    assert sent.returncode == 0, sent.stderr
    command_id = json.loads(sent.stdout)["Command"]["CommandId"]
    _boto3(f, key_id, secret).get_waiter("command_executed").wait(
        CommandId=command_id, InstanceId=node, WaiterConfig=FAST
    )
    got = _aws(
        f,
        key_id,
        secret,
        "get-command-invocation",
        "--command-id",
        command_id,
        "--instance-id",
        node,
    )
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert answer["StandardOutputContent"] == "from the aws cli\n"
    assert (answer["Status"], answer["StatusDetails"]) == ("Success", "Success")


def test_the_aws_command_line_with_a_wrong_secret_is_refused(
    ssm_fleet: tuple[Fleet, str, str],
) -> None:
    f, key_id, _ = ssm_fleet
    refused = _aws(f, key_id, "wrong-secret", "list-commands")
    assert refused.returncode != 0
    assert "InvalidSignatureException" in refused.stderr
    assert "does not match the signature you provided" in refused.stderr
    unknown = _aws(f, "FRKAAAAAAAAAAAAAAAAA", "x", "list-commands")
    assert "UnrecognizedClientException" in unknown.stderr
