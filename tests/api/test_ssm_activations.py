"""SSM's hybrid activations through boto3, in process: created with SSM's members,
used by the real registration route, described with filters and pages, deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tests.inprocess import App, _raw_public
from tests.ssmclient import ssm_client


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _register(app: App, activation_id: str, code: str) -> dict:
    """What `fleetrun-agent register` sends, through the real route."""
    return app.client.request(
        "POST",
        "/v1/agent/register",
        json={
            "activation_id": activation_id,
            "activation_code": code,
            "public_key": _raw_public(Ed25519PrivateKey.generate()),
            "seal_public_key": _raw_public(X25519PrivateKey.generate()),
            "tags": {},
            "facts": {"platform": "Linux", "hostname": "h1"},
            "agent_version": "0.1.0",
        },
    )


def test_an_activation_enrols_nodes_with_its_name_tags_and_role(app: App) -> None:
    ssm = ssm_client(app)
    made = ssm.create_activation(
        Description="web tier",
        DefaultInstanceName="web",
        IamRole="SSMServiceRole",
        RegistrationLimit=2,
        Tags=[{"Key": "env", "Value": "prod"}],
        RegistrationMetadata=[{"Key": "k", "Value": "v"}],
    )
    assert len(made["ActivationCode"]) >= 20 and len(made["ActivationId"]) == 36
    node = _register(app, made["ActivationId"], made["ActivationCode"])
    (info,) = ssm.describe_instance_information()["InstanceInformationList"]
    assert info["InstanceId"] == node["node_id"] and info["Name"] == "web"
    assert info["ActivationId"] == made["ActivationId"] and info["IamRole"] == "SSMServiceRole"
    role = ssm.describe_instance_information(
        Filters=[{"Key": "IamRole", "Values": ["SSMServiceRole"]}]
    )
    assert len(role["InstanceInformationList"]) == 1
    assert app.client.get_node(node["node_id"]).tags == {"env": "prod"}
    (listed,) = ssm.describe_activations()["ActivationList"]
    assert listed["ActivationId"] == made["ActivationId"]
    assert (listed["Description"], listed["DefaultInstanceName"], listed["IamRole"]) == (
        "web tier",
        "web",
        "SSMServiceRole",
    )
    assert (listed["RegistrationLimit"], listed["RegistrationsCount"]) == (2, 1)
    assert listed["Expired"] is False and listed["Tags"] == [{"Key": "env", "Value": "prod"}]
    lifetime = listed["ExpirationDate"] - listed["CreatedDate"]
    assert lifetime == timedelta(hours=24)
    ssm.delete_activation(ActivationId=made["ActivationId"])
    assert ssm.describe_activations()["ActivationList"] == []
    assert [
        i["InstanceId"] for i in ssm.describe_instance_information()["InstanceInformationList"]
    ] == [node["node_id"]]  # deleting an activation does not deregister its nodes
    with pytest.raises(ssm.exceptions.InvalidActivation):
        ssm.delete_activation(ActivationId=made["ActivationId"])
    with pytest.raises(ssm.exceptions.InvalidActivationId):
        ssm.delete_activation(ActivationId="not-an-id")


def test_expiration_date_and_bad_members_are_invalid_parameters(app: App) -> None:
    ssm = ssm_client(app)
    soon = datetime.now(UTC) + timedelta(days=3)
    made = ssm.create_activation(IamRole="r", ExpirationDate=soon)
    (listed,) = ssm.describe_activations()["ActivationList"]
    assert abs((listed["ExpirationDate"] - soon).total_seconds()) < 1
    assert listed["ActivationId"] == made["ActivationId"]
    for bad in (
        {"ExpirationDate": datetime.now(UTC) - timedelta(hours=1)},
        {"ExpirationDate": datetime.now(UTC) + timedelta(days=31)},
        {"RegistrationLimit": 1001},
        {"Tags": [{"Key": "bad<key>", "Value": "v"}]},
        {"DefaultInstanceName": "x" * 257},
    ):
        with pytest.raises(ssm.exceptions.InvalidParameters):
            ssm.create_activation(IamRole="r", **bad)
    assert len(ssm.describe_activations()["ActivationList"]) == 1


def test_describe_filters_and_pages(app: App) -> None:
    ssm = ssm_client(app)
    made = [
        ssm.create_activation(IamRole=f"role{i % 2}", DefaultInstanceName=f"n{i}")["ActivationId"]
        for i in range(5)
    ]

    def ids(**kwargs: object) -> list[str]:
        return [a["ActivationId"] for a in ssm.describe_activations(**kwargs)["ActivationList"]]

    assert ids(Filters=[{"FilterKey": "ActivationIds", "FilterValues": made[:2]}]) == made[1::-1]
    assert set(ids(Filters=[{"FilterKey": "IamRole", "FilterValues": ["role1"]}])) == {
        made[1],
        made[3],
    }
    assert ids(Filters=[{"FilterKey": "DefaultInstanceName", "FilterValues": ["n4"]}]) == [made[4]]
    pages = list(
        ssm.get_paginator("describe_activations").paginate(PaginationConfig={"PageSize": 2})
    )
    assert [len(p["ActivationList"]) for p in pages] == [2, 2, 1]
    listed = [a["ActivationId"] for p in pages for a in p["ActivationList"]]
    assert sorted(listed) == sorted(made) and len(set(listed)) == 5
    with pytest.raises(ssm.exceptions.InvalidFilter):
        ids(Filters=[{"FilterKey": "Colour", "FilterValues": ["blue"]}])
    with pytest.raises(ssm.exceptions.InvalidNextToken):
        ids(NextToken="nope")


def test_activations_are_decided_as_the_native_routes_decide(app: App) -> None:
    ssm = ssm_client(app)
    theirs = ssm.create_activation(IamRole="r")["ActivationId"]
    admin = app.client
    admin.create_principal("reader")
    statement = {"Effect": "Allow", "Action": "fleetrun:List*", "Resource": "*"}
    admin.create_policy("reader-p", {"Version": "2012-10-17", "Statement": [statement]})
    admin.attach("reader", policy="reader-p")
    created = admin.create_token("reader", aws=True)
    reader = ssm_client(app, (str(created.access_key_id), str(created.secret_access_key)))
    assert [a["ActivationId"] for a in reader.describe_activations()["ActivationList"]] == [theirs]
    for call in (
        lambda: reader.create_activation(IamRole="r"),
        lambda: reader.delete_activation(ActivationId=theirs),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert _code(refused) == "AccessDeniedException"
    assert len(ssm.describe_activations()["ActivationList"]) == 1
