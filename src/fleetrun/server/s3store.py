"""Writing objects to the server's own S3-compatible store (FLEETRUN_S3_*): path-style
URLs, `{endpoint}/{bucket}/{key}`, signed with SigV4 by the server's credentials. Used
by run commands' s3:// destinations (server/sinks.py) and SSM SendCommand's
OutputS3BucketName (server/ssm/s3output.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from fleetrun.core import sigv4

if TYPE_CHECKING:
    from fleetrun.server.settings import Settings


def object_url(settings: Settings, bucket: str, key: str) -> str:
    return f"{settings.s3_base_url}/{quote(bucket)}/{quote(key, safe='/')}"


def put_headers(
    settings: Settings, url: str, data: bytes, extra_headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers of a PUT of `data` to `url`, signed now."""
    return sigv4.sign(
        "PUT",
        url,
        region=settings.s3_region,
        access_key=settings.s3_access_key_id,
        secret_key=settings.s3_secret_access_key,
        payload=data,
        now=datetime.now(UTC),
        extra_headers=extra_headers,
    )
