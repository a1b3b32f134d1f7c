"""SendCommand's OutputS3BucketName with the server's S3-compatible store configured:
each invocation's output is copied to the bucket when it ends, under the SSM agent's
key layout, and the answers point at it. The store is a real S3-compatible server
(moto) on loopback; the app runs in process."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests.harness import wait_for
from tests.inprocess import App
from tests.ssmclient import ssm_client

S3_KEY = ("AKIDFLEETRUNTEST", "s3-secret-key-not-logged")


def test_output_is_copied_to_the_bucket_when_the_invocation_ends(tmp_path: Path, s3: str) -> None:
    app = App(
        tmp_path,
        s3_endpoint_url=s3,
        s3_access_key_id=S3_KEY[0],
        s3_secret_access_key=S3_KEY[1],
        sweep_interval_s=0.2,
    ).start()
    try:
        (node,) = app.enrol(1)
        ssm = ssm_client(app)
        with pytest.raises(ssm.exceptions.InvalidOutputFolder):
            ssm.send_command(
                InstanceIds=[node.node_id],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["true"]},
                OutputS3BucketName="Not_A_Bucket",
            )
        with app.connect(node) as session:
            sent = ssm.send_command(
                InstanceIds=[node.node_id],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["echo to s3"]},
                OutputS3BucketName="logs",
                OutputS3KeyPrefix="ssm/",
            )["Command"]
            assert (sent["OutputS3BucketName"], sent["OutputS3KeyPrefix"]) == ("logs", "ssm/")
            session.answer([b"to s3\n"], command_id=sent["CommandId"])
            ssm.get_waiter("command_executed").wait(
                CommandId=sent["CommandId"],
                InstanceId=node.node_id,
                WaiterConfig={"Delay": 0.05, "MaxAttempts": 200},
            )
        key = f"ssm/{sent['CommandId']}/{node.node_id}/awsrunShellScript/stdout"
        got = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=node.node_id)
        assert got["StandardOutputUrl"] == f"{s3}/logs/{key}"
        assert got["StandardErrorUrl"] == f"{s3}/logs/{key[: -len('stdout')]}stderr"
        store = boto3.client(
            "s3",
            endpoint_url=s3,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY[0],
            aws_secret_access_key=S3_KEY[1],
        )

        def copied() -> bytes | None:
            try:
                return bytes(store.get_object(Bucket="logs", Key=key)["Body"].read())
            except store.exceptions.NoSuchKey:
                return None

        wait_for(lambda: copied() is not None, what="the output in the bucket")
        assert copied() == b"to s3\n"
        (inv,) = ssm.list_command_invocations(CommandId=sent["CommandId"], Details=True)[
            "CommandInvocations"
        ]
        assert inv["StandardOutputUrl"] == got["StandardOutputUrl"]
        assert inv["CommandPlugins"][0]["OutputS3BucketName"] == "logs"
    finally:
        app.close()


def test_without_an_s3_store_output_to_s3_is_refused_clearly(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    with pytest.raises(ssm.exceptions.InvalidOutputFolder) as refused:
        ssm.send_command(
            InstanceIds=[node.node_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
            OutputS3BucketName="logs",
        )
    assert "no S3 store configured" in refused.value.response["Error"]["Message"]
