"""SigV4 against the worked example of the S3 documentation (GET Object with a Range),
the SigV4 test suite, and what botocore signs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fleetrun.core.sigv4 import (
    SignatureFormatError,
    parse_amz_date,
    parse_authorization,
    signature,
)

# -- checking a signature ------------------------------------------------------------

VANILLA = {  # the get-vanilla case of AWS's SigV4 test suite
    "method": "GET",
    "path": "/",
    "query": "",
    "headers": {"host": "example.amazonaws.com", "x-amz-date": "20150830T123600Z"},
    "payload_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "amz_date": "20150830T123600Z",
    "region": "us-east-1",
    "service": "service",
    "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}


def test_the_test_suites_vanilla_request_has_its_documented_signature():
    assert signature(**VANILLA) == (
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


def test_a_request_botocore_signed_checks_out():
    """What boto3 sends to the SSM-compatible API: signed by botocore, checked here."""
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:8080/",
        data=b'{"InstanceIds": ["n-0123456789abcdef0"]}',
        headers={
            "X-Amz-Target": "AmazonSSM.SendCommand",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials("FRKEXAMPLE", "secret/Key+1"), "ssm", "eu-west-3").add_auth(request)
    auth = parse_authorization(request.headers["Authorization"])
    assert (auth.access_key, auth.region, auth.service) == ("FRKEXAMPLE", "eu-west-3", "ssm")
    headers = {"host": "127.0.0.1:8080"} | {
        k.lower(): v for k, v in request.headers.items() if k.lower() in auth.signed_headers
    }
    check = {
        "method": "POST",
        "path": "/",
        "query": "",
        "headers": headers,
        "payload_hash": hashlib.sha256(request.body).hexdigest(),
        "amz_date": request.headers["X-Amz-Date"],
        "region": auth.region,
        "service": auth.service,
    }
    assert signature(**check, secret_key="secret/Key+1") == auth.signature
    assert signature(**check, secret_key="another") != auth.signature


@pytest.mark.parametrize(
    ("header", "phrase"),
    [
        ("AWS4-HMAC-SHA1 Credential=a/b/c/d/aws4_request", "algorithm"),
        ("AWS4-HMAC-SHA256 Credential=K/20150830/us-east-1/ssm/aws4_request", "SignedHeaders"),
        (
            "AWS4-HMAC-SHA256 Credential=K/20150830/ssm, SignedHeaders=host, Signature=ab",
            "Credential must",
        ),
        ("AWS4-HMAC-SHA256 Nonsense", "is not a Credential"),
    ],
)
def test_malformed_authorization_headers_say_what_is_wrong(header, phrase):
    with pytest.raises(SignatureFormatError, match=phrase):
        parse_authorization(header)


def test_amz_dates_are_read_as_utc():
    assert parse_amz_date("20150830T123600Z") == datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
    with pytest.raises(ValueError, match="does not match format"):
        parse_amz_date("2015-08-30")
