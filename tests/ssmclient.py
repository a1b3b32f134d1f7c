"""boto3's own `ssm` client, unmodified, talking to the in-process app.

botocore signs each request (SigV4, as for AWS), then emits `before-send`; a handler
that answers there is the response botocore parses. This one hands the signed request,
headers and body as they are, to the app's `TestClient` and gives the answer back: the
client's serializer, signer, error parser, modelled exceptions, paginators and waiters
all run for real, only the socket is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from tests.inprocess import BASE_URL, App


class _Raw:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


def access_key(app: App, token: str | None = None, **options: Any) -> tuple[str, str]:
    """A new access key (id, secret) through the real route; the administrator's by
    default, or that of the principal behind `token`."""
    client = app.client if token is None else app.client_for(token)
    created = client.create_token(aws=True, **options)
    assert created.access_key_id and created.secret_access_key
    return created.access_key_id, created.secret_access_key


def ssm_client(
    app: App, key: tuple[str, str] | None = None, *, region: str = "eu-west-3", **config: Any
) -> Any:
    """boto3's `ssm` client for this app (with the administrator's new key by
    default); no retries, so an error is the server's first answer."""
    key_id, secret = key or access_key(app)
    client = boto3.client(
        "ssm",
        endpoint_url=BASE_URL,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, **config),
    )

    def forward(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        assert app.http is not None, "start() the app first"
        body = request.body or b""
        answer = app.http.request(
            request.method,
            request.url,
            headers=dict(request.headers.items()),
            content=body if isinstance(body, bytes) else body.encode(),
        )
        return AWSResponse(
            request.url, answer.status_code, dict(answer.headers), _Raw(answer.content)
        )

    client.meta.events.register("before-send.ssm", forward)
    return client
