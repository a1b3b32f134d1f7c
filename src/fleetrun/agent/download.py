"""Fetching a run command's script from its scriptUri, with the standard library only.

Each failure says which it is, because the operator's fix differs: an expired or
refused pre-signed URL (HTTP 401/403/410), a URL that is not there (other HTTP
errors), a server that cannot be reached, or content that does not match scriptSha256.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request

from fleetrun.core.protocol import MAX_SCRIPT_BYTES

TIMEOUT_S = 30.0


class DownloadError(Exception):
    """The script could not be had: the message says why, in one sentence."""


def fetch_script(uri: str, sha256: str | None = None, *, timeout_s: float = TIMEOUT_S) -> str:
    try:
        with urllib.request.urlopen(uri, timeout=timeout_s) as response:  # noqa: S310
            data: bytes = response.read(MAX_SCRIPT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 410):
            raise DownloadError(
                f"The scriptUri was refused with HTTP {exc.code}: the link has expired or "
                "is not allowed (a pre-signed URL past its expiry?); give a fresh URL."
            ) from exc
        raise DownloadError(
            f"The scriptUri answered HTTP {exc.code}: check that the URL points to the script."
        ) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"The scriptUri could not be reached ({reason}): check the URL and that this "
            "node can reach its host."
        ) from exc
    if len(data) > MAX_SCRIPT_BYTES:
        raise DownloadError(
            f"The script at scriptUri is larger than {MAX_SCRIPT_BYTES // (1024 * 1024)} MiB."
        )
    if sha256:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256.lower():
            raise DownloadError(
                f"The script downloaded from scriptUri does not match scriptSha256 (its "
                f"sha256 is {digest}): the file changed, or the digest is wrong."
            )
    try:
        return data.decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise DownloadError("The script at scriptUri is not UTF-8 text.") from exc
