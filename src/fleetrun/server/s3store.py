"""The server's own S3-compatible storage (FLEETRUN_S3_*), through AWS's own client
(botocore signs every request: any key, session tokens, retries). Used by the output
store when it is `s3://` (server/output.py), by run commands' s3:// destinations
(server/sinks.py) and by SSM SendCommand's OutputS3BucketName (server/ssm/s3output.py).

boto3 is synchronous and its clients are thread-safe: calls run in worker threads
(`asyncio.to_thread`), or directly on a database thread for the output store. The client
is made at the first call: it loads AWS's S3 model (about 14 MB resident, and boto3's
import about 0.14 s), which a server that writes nothing to S3 never needs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from fleetrun.server.settings import Settings

TIMEOUT_S = 30.0
DELETE_BATCH = 1000  # S3's limit per DeleteObjects


def object_url(settings: Settings, bucket: str, key: str) -> str:
    """Where an object is, path-style, as answers show it (StandardOutputUrl)."""
    return f"{settings.s3_base_url}/{quote(bucket)}/{quote(key, safe='/')}"


class S3Error(Exception):
    """A request to the S3 store failed: `status` is the HTTP status it answered, or
    None when it could not be reached."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class S3:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._making = threading.Lock()

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._making:
                if self._client is None:
                    self._client = _client(self._settings)
        return self._client

    # -- synchronous: on a worker or database thread ----------------------------------

    def put_now(
        self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> None:
        with _errors(bucket, key):
            self.client.put_object(Bucket=bucket, Key=key, Body=data, Metadata=dict(metadata or {}))

    def get_now(self, bucket: str, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object."""
        with _errors(bucket, key):
            answer = self.client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}"
            )
            return bytes(answer["Body"].read())

    def list_now(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under `prefix`, in key order."""
        found = []
        with _errors(bucket, prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix
            )
            for page in pages:
                found += [(o["Key"], int(o["Size"])) for o in page.get("Contents", [])]
        return found

    def delete_prefix_now(self, bucket: str, prefix: str) -> None:
        keys = [key for key, _ in self.list_now(bucket, prefix)]
        with _errors(bucket, prefix):
            for i in range(0, len(keys), DELETE_BATCH):
                objects = [{"Key": key} for key in keys[i : i + DELETE_BATCH]]
                self.client.delete_objects(
                    Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
                )

    def check_now(self, bucket: str) -> None:
        """The bucket answers to these credentials (or S3Error)."""
        with _errors(bucket, ""):
            self.client.head_bucket(Bucket=bucket)

    # -- from the event loop ----------------------------------------------------------

    async def put(
        self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> None:
        await asyncio.to_thread(self.put_now, bucket, key, data, metadata)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _client(settings: Settings) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id or None,
        aws_secret_access_key=settings.s3_secret_access_key or None,
        aws_session_token=settings.s3_session_token or None,
        config=Config(
            s3={"addressing_style": "path"},  # MinIO, Ceph, moto: no DNS per bucket
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=5,
            read_timeout=TIMEOUT_S,
            max_pool_connections=32,
        ),
    )


@contextmanager
def _errors(bucket: str, key: str) -> Iterator[None]:
    """botocore's errors as one S3Error that names the object."""
    where = f"s3://{bucket}/{key}"
    try:
        yield
    except ClientError as exc:
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        code = exc.response.get("Error", {}).get("Code", "")
        raise S3Error(f"{where} was refused (HTTP {status} {code})".strip(), status) from exc
    except BotoCoreError as exc:
        raise S3Error(f"{where} could not be reached ({type(exc).__name__})", None) from exc
