"""AWS Signature Version 4, with the standard library only: checking a request that
says it is signed (the SSM-compatible API). The server signs nothing itself: its
requests to S3-compatible storage go through AWS's own client (server/s3store.py).

The Authorization header is parsed (`parse_authorization`), and `signature` recomputes
what a client with the secret would have sent for the headers it says it signed. Pure:
the time is a parameter, and the caller compares.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE = "%Y%m%dT%H%M%SZ"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def canonical_query(query: str) -> str:
    """The query string as SigV4 signs it: pairs encoded and sorted."""
    return "&".join(
        sorted(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
            for k, _, v in (p.partition("=") for p in query.split("&") if p)
        )
    )


def signature(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload_hash: str,
    amz_date: str,
    region: str,
    service: str,
    secret_key: str,
) -> str:
    """The hex signature over a request whose signed headers (lowercase names) and
    values are `headers`."""
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            quote(path or "/", safe="/-_.~"),
            canonical_query(query),
            "".join(f"{n}:{' '.join(headers[n].split())}\n" for n in names),
            ";".join(names),
            payload_hash,
        ]
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# -- checking ------------------------------------------------------------------------


class SignatureFormatError(ValueError):
    """The Authorization header is not a SigV4 one, or misses a part."""


@dataclass(frozen=True, slots=True)
class Authorization:
    """What a SigV4 Authorization header says."""

    access_key: str
    day: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


_PART = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")


def parse_authorization(header: str) -> Authorization:
    """The parts of `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`,
    or SignatureFormatError saying which is missing or malformed."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureFormatError(f"the algorithm must be {ALGORITHM}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        found = _PART.fullmatch(item)
        if found is None:
            raise SignatureFormatError(
                f"{item.strip()!r} is not a Credential, SignedHeaders or Signature"
            )
        parts[found.group(1)] = found.group(2)
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(name):
            raise SignatureFormatError(f"the Authorization header has no {name}")
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise SignatureFormatError(
            "Credential must be ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request"
        )
    return Authorization(
        access_key=scope[0],
        day=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=tuple(parts["SignedHeaders"].lower().split(";")),
        signature=parts["Signature"].lower(),
    )


def parse_amz_date(value: str) -> datetime:
    """The time of an X-Amz-Date header (YYYYMMDDTHHMMSSZ), or ValueError."""
    return datetime.strptime(value, AMZ_DATE).replace(tzinfo=UTC)
