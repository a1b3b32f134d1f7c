"""The SSM-compatible API's protocol, as boto3 speaks it: SigV4 with fleetrun's access
keys, AWS's error bodies (so boto3 raises its modelled exceptions), SendCommand and
GetCommandInvocation, against the real app in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy
from botocore.exceptions import ClientError

from tests.inprocess import App
from tests.ssmclient import access_key, ssm_client


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_boto3_sends_a_command_and_reads_its_invocation(app: App) -> None:
    """SendCommand with AWS-RunShellScript runs fleetrun's built-in; the node's output
    and exit code come back in GetCommandInvocation's shape."""
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    with app.connect(node) as session:
        sent = ssm.send_command(
            InstanceIds=[node.node_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["echo hello"]},
            Comment="first",
        )["Command"]
        assert sent["DocumentName"] == "AWS-RunShellScript"
        assert sent["InstanceIds"] == [node.node_id] and sent["Targets"] == []
        assert sent["Status"] in ("Pending", "InProgress") and sent["Comment"] == "first"
        assert sent["MaxConcurrency"] == "50" and sent["MaxErrors"] == "0"
        assert sent["TimeoutSeconds"] == 3600
        assert (sent["ExpiresAfter"] - sent["RequestedDateTime"]).total_seconds() == 7200
        session.answer([b"hello\n"], command_id=sent["CommandId"])
        ssm.get_waiter("command_executed").wait(
            CommandId=sent["CommandId"],
            InstanceId=node.node_id,
            WaiterConfig={"Delay": 0.05, "MaxAttempts": 200},
        )
    got = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=node.node_id)
    assert got["Status"] == "Success" and got["StatusDetails"] == "Success"
    assert got["StandardOutputContent"] == "hello\n" and got["ResponseCode"] == 0
    assert got["PluginName"] == "aws:runShellScript"
    assert got["ExecutionElapsedTime"].startswith("PT")
    assert got["ExecutionStartDateTime"].endswith("Z")
    named = ssm.get_command_invocation(
        CommandId=sent["CommandId"], InstanceId=node.node_id, PluginName="aws:runShellScript"
    )
    assert named["StandardOutputContent"] == "hello\n"


def test_modelled_exceptions_for_what_does_not_exist(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.send_command(
            InstanceIds=["i-0123456789abcdef0"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
        )
    with pytest.raises(ssm.exceptions.InvalidInstanceId):
        ssm.send_command(
            InstanceIds=["n-0123456789abcdef0"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
        )
    with pytest.raises(ssm.exceptions.DuplicateInstanceId):
        ssm.send_command(
            InstanceIds=[node.node_id, node.node_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
        )
    with pytest.raises(ssm.exceptions.InvalidDocument):
        ssm.send_command(InstanceIds=[node.node_id], DocumentName="NoSuchDocument")
    with pytest.raises(ssm.exceptions.InvalidDocumentVersion):
        ssm.send_command(
            InstanceIds=[node.node_id], DocumentName="AWS-RunShellScript", DocumentVersion="7"
        )
    with pytest.raises(ssm.exceptions.InvalidParameters) as bad:
        ssm.send_command(
            InstanceIds=[node.node_id],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"], "nosuch": ["x"]},
        )
    assert "nosuch" in bad.value.response["Error"]["Message"]
    with pytest.raises(ssm.exceptions.InvalidParameters):
        ssm.send_command(InstanceIds=[node.node_id], DocumentName="AWS-RunShellScript")
    with pytest.raises(ssm.exceptions.InvocationDoesNotExist):
        ssm.get_command_invocation(
            CommandId="00000000-0000-4000-8000-000000000000", InstanceId=node.node_id
        )
    assert list(app.client.list_commands()) == []  # nothing refused was stored


def test_an_unknown_plugin_name_is_invalid(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    sent = ssm.send_command(
        InstanceIds=[node.node_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"]},
    )["Command"]
    with pytest.raises(ssm.exceptions.InvalidPluginName) as bad:
        ssm.get_command_invocation(
            CommandId=sent["CommandId"], InstanceId=node.node_id, PluginName="aws:nothing"
        )
    assert "aws:runShellScript" in bad.value.response["Error"]["Message"]
    pending = ssm.get_command_invocation(CommandId=sent["CommandId"], InstanceId=node.node_id)
    assert pending["Status"] in ("Pending", "Delayed") and pending["ResponseCode"] == -1
    assert pending["ExecutionStartDateTime"] == "" and pending["ExecutionElapsedTime"] == ""


def test_a_wrong_secret_key_is_an_invalid_signature(app: App) -> None:
    key_id, _ = access_key(app)
    ssm = ssm_client(app, (key_id, "not-the-secret"))
    with pytest.raises(ClientError) as refused:
        ssm.list_commands()
    assert _code(refused) == "InvalidSignatureException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_an_unknown_key_is_unrecognized(app: App) -> None:
    ssm = ssm_client(app, ("FRKAAAAAAAAAAAAAAAAA", "whatever"))
    with pytest.raises(ClientError) as refused:
        ssm.send_command(InstanceIds=["n-0123456789abcdef0"], DocumentName="AWS-RunShellScript")
    assert _code(refused) == "UnrecognizedClientException"


def test_an_expired_key_answers_expired_token(app: App) -> None:
    key = access_key(app, expires_in_s=60)
    ssm = ssm_client(app, key)
    ssm.get_command_invocation  # noqa: B018 - the client is made while the key is valid
    app.advance(61)
    with pytest.raises(ClientError) as refused:
        ssm.send_command(InstanceIds=["n-0123456789abcdef0"], DocumentName="AWS-RunShellScript")
    assert _code(refused) == "ExpiredTokenException"


def test_a_revoked_key_is_unrecognized(app: App) -> None:
    created = app.client.create_token(aws=True)
    assert created.access_key_id and created.secret_access_key
    ssm = ssm_client(app, (created.access_key_id, created.secret_access_key))
    with pytest.raises(ssm.exceptions.InvocationDoesNotExist):  # the key works
        ssm.get_command_invocation(
            CommandId="00000000-0000-4000-8000-000000000000", InstanceId="n-0123456789abcdef0"
        )
    app.client.revoke_token(created.id)
    with pytest.raises(ClientError) as refused:
        ssm.get_command_invocation(
            CommandId="00000000-0000-4000-8000-000000000000", InstanceId="n-0123456789abcdef0"
        )
    assert _code(refused) == "UnrecognizedClientException"


def test_a_clock_too_far_off_is_a_signature_expired(app: App) -> None:
    ssm = ssm_client(app)
    app.advance(6 * 60)  # the server's clock runs six minutes ahead of the client's
    with pytest.raises(ClientError) as refused:
        ssm.list_commands()
    assert _code(refused) == "InvalidSignatureException"
    assert "Signature expired" in refused.value.response["Error"]["Message"]


def test_a_signature_for_another_service_is_refused(app: App) -> None:
    """A request signed for `ec2` (botocore's signing name override) is not for ssm."""
    ssm = ssm_client(app)
    ssm.meta.events.register(
        "choose-signer.ssm", lambda **kw: None, unique_id="keep-default"
    )  # default signer; only the name changes below
    ssm._request_signer._signing_name = "ec2"
    with pytest.raises(ClientError) as refused:
        ssm.list_commands()
    assert _code(refused) == "InvalidSignatureException"
    assert "'ssm'" in refused.value.response["Error"]["Message"]


def test_raw_requests_get_aws_error_bodies(app: App) -> None:
    """No signature, or an operation fleetrun does not serve: AWS's shapes and codes."""
    assert app.http is not None
    headers = {
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "AmazonSSM.ListCommands",
    }
    answer = app.http.post("/", content=b"{}", headers=headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/x-amz-json-1.1"
    assert json.loads(answer.content)["__type"] == "MissingAuthenticationTokenException"
    assert answer.headers["x-amzn-requestid"]
    broken = app.http.post(
        "/", content=b"{}", headers={**headers, "authorization": "AWS4-HMAC-SHA256 nonsense"}
    )
    assert json.loads(broken.content)["__type"] == "IncompleteSignatureException"


def test_an_operation_not_served_is_unknown(app: App) -> None:
    ssm = ssm_client(app)
    with pytest.raises(ClientError) as refused:
        ssm.get_parameter(Name="x")
    assert _code(refused) == "UnknownOperationException"


def test_every_ssm_call_is_audited_as_the_principal(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    ssm.send_command(
        InstanceIds=[node.node_id],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["true"]},
    )
    records = app.client.request("GET", "/v1/audit", params={"action": "fleetrun:SendCommand"})
    sent = [r for r in records["items"] if r.get("path") == "/"]
    assert sent and sent[0]["principal"] == "admin" and sent[0]["status"] == 200


def test_tokens_create_aws_prints_a_key_whose_secret_is_stored_sealed(app: App) -> None:
    app.client.create_principal("ci", kind="service")
    made = app.cli("tokens", "create", "--principal", "ci", "--aws")
    assert made.exit_code == 0, made.stderr
    lines = dict(line.split(" = ") for line in made.stdout.strip().splitlines())
    key_id, secret = lines["aws_access_key_id"], lines["aws_secret_access_key"]
    assert key_id.startswith("FRK") and len(key_id) == 20 and len(secret) == 40
    assert "not shown again" in made.stderr and secret not in made.stderr
    listed = json.loads(app.cli("tokens", "list", "--principal", "ci", "-o", "json").stdout)
    assert [t["access_key_id"] for t in listed] == [key_id]
    assert secret not in json.dumps(listed)
    table = app.cli("tokens", "list", "--principal", "ci").stdout
    assert "ACCESS KEY" in table and key_id in table and secret not in table
    # the row holds the secret sealed with the server's key, never in clear
    engine = sqlalchemy.create_engine(app.db.url)
    try:
        with engine.connect() as db:
            row = db.execute(
                sqlalchemy.text(
                    "SELECT secret_sealed, token_hash FROM api_tokens WHERE access_key_id = :k"
                ),
                {"k": key_id},
            ).one()
    finally:
        engine.dispose()  # a pooled PostgreSQL connection left open warns when collected
    assert row[0].startswith("sk1.") and secret not in row[0]
    ssm = ssm_client(app, (key_id, secret))
    with pytest.raises(ClientError) as refused:  # ci has no policy: authenticated, denied
        ssm.list_commands()
    assert _code(refused) == "AccessDeniedException"
    assert "ci may not perform fleetrun:ListCommands" in refused.value.response["Error"]["Message"]


def test_an_access_key_is_no_bearer_token(app: App) -> None:
    key_id, secret = access_key(app)
    for token in (key_id, secret):
        assert app.cli("nodes", "list", token=token).exit_code != 0


def test_tokens_create_defaults_to_the_callers_own_principal(app: App) -> None:
    made = app.cli("tokens", "create", "--aws", "-o", "json")
    assert made.exit_code == 0, made.stderr
    assert json.loads(made.stdout)["principal"] == "admin"


def test_a_document_hash_must_match(app: App) -> None:
    (node,) = app.enrol(1)
    ssm = ssm_client(app)
    with pytest.raises(ssm.exceptions.InvalidDocument) as stale:
        ssm.send_command(
            InstanceIds=[node.node_id],
            DocumentName="AWS-RunShellScript",
            DocumentHash="0" * 64,
            Parameters={"commands": ["true"]},
        )
    assert "DescribeDocument" in stale.value.response["Error"]["Message"]
    current = app.client.get_document("RunShellScript").hash
    sent = ssm.send_command(
        InstanceIds=[node.node_id],
        DocumentName="AWS-RunShellScript",
        DocumentHash=current.upper(),
        DocumentHashType="Sha256",
        Parameters={"commands": ["true"]},
    )
    assert sent["Command"]["DocumentName"] == "AWS-RunShellScript"
    with pytest.raises(ClientError) as sha1:
        ssm.send_command(
            InstanceIds=[node.node_id],
            DocumentName="AWS-RunShellScript",
            DocumentHash="0" * 40,
            DocumentHashType="Sha1",
        )
    assert _code(sha1) == "ValidationException"


def test_bad_signatures_are_summed_up_in_the_audit_log_and_held_back(tmp_path: Path) -> None:
    """A flood of wrong signatures is counted per address like wrong bearer tokens:
    summed up in the audit log, then ThrottlingException before the key is read."""
    app = App(
        tmp_path,
        unauthenticated_rate_per_s=1.0,
        unauthenticated_burst=20,
        audit_failure_window_s=3.0,
    ).start()
    try:
        key_id, _ = access_key(app)
        ssm = ssm_client(app, (key_id, "wrong"))
        codes: list[str] = []
        for _ in range(40):
            with pytest.raises(ClientError) as refused:
                ssm.list_commands()
            codes.append(_code(refused))
        assert set(codes) == {"InvalidSignatureException", "ThrottlingException"}, codes
        app.advance(3.0)  # the failure window ends: its summary is written
        records = [
            r
            for r in app.client.list_audit_records(limit=1000)
            if r.principal is None and r.source_ip == "127.0.0.1" and r.kind == "request"
        ]
    finally:
        app.close()
    assert sum(r.detail.get("repeated", 1) for r in records) == 40
    assert len(records) <= 8  # not one per request
    assert any(r.path == "/" and r.status == 400 for r in records)


def test_a_principal_over_its_request_rate_is_throttled_as_aws_does(tmp_path: Path) -> None:
    app = App(tmp_path, rate_limit_per_s=0.001, rate_limit_burst=3).start()
    try:
        key = access_key(app)  # the administrator's third request or so: the key itself
        ssm = ssm_client(app, key)
        codes = []
        for _ in range(4):
            try:
                ssm.list_commands()
                codes.append("ok")
            except ClientError as exc:
                codes.append(str(exc.response["Error"]["Code"]))
                message = exc.response["Error"]["Message"]
    finally:
        app.close()
    assert codes[-1] == "ThrottlingException" and "request rate" in message
