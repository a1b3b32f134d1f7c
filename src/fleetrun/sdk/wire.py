"""The SDK without I/O: what a request is, what an answer means, when to try again.

Every operation of the API is written once, in `fleetrun.sdk.fleet`,
`fleetrun.sdk.runcommands` and `fleetrun.sdk.admin`, as a generator (an `Op`): it
yields the requests it needs (`Call`, or a `Sleep` between polls), receives each
answer's JSON, and returns the result model. Two drivers run them: `Client` with a
blocking `httpx.Client`, `AsyncClient` with an `httpx.AsyncClient`. The few operations
whose answer is a stream (output, the audit export, the event stream) are a `Stream`
request plus a parser here, read by each driver in its own way. (The same split as httpx's
`BaseClient` and h11: decisions here, sockets there.)

Errors are those of `fleetrun.core.errors`; an answer of 400 and more becomes the class
its `error.type` names (`raise_for`).
"""

from __future__ import annotations

import inspect
import json as jsonlib
import random
import ssl
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Generic, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from fleetrun.core.errors import ConnectionError_, LimitExceededError, ValidationError, error_for
from fleetrun.schemas.events import Event

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Call:
    """One request; the driver sends it (with retries) and sends back its JSON."""

    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    timeout_s: float | None = None  # None: the client's timeout


@dataclass(frozen=True)
class Sleep:
    """Wait this long before the next request (polling); the driver sends back None."""

    seconds: float


Op: TypeAlias = Generator[Call | Sleep, Any, T]


@dataclass(frozen=True)
class Listing(Generic[M]):
    """A paged listing: every item of `model` at `path`, page after page (`paginate`)."""

    model: type[M]
    path: str
    params: Mapping[str, Any] = field(default_factory=dict)


def paginate(listing: Listing[M], limit: int | None = None) -> Op[list[M]]:
    """Every item of a listing (the first `limit` when given), following cursors."""
    found: list[M] = []
    params = dict(listing.params)
    while True:
        page = yield Call("GET", listing.path, params=params)
        for item in page["items"]:
            found.append(listing.model.model_validate(item))
            if limit is not None and len(found) >= limit:
                return found
        if not page.get("next_cursor"):
            return found
        params["cursor"] = page["next_cursor"]


def model(kind: type[M], method: str, path: str, **kw: Any) -> Op[M]:
    """One request whose answer is one `kind`."""
    return kind.model_validate((yield Call(method, path, **kw)))


def raw(call: Call) -> Op[Any]:
    """One request whose answer is its JSON, as it is."""
    return (yield call)


def nothing(method: str, path: str, **kw: Any) -> Op[None]:
    """One request whose answer is not needed (a delete)."""
    yield Call(method, path, **kw)


@dataclass(frozen=True)
class Stream:
    """A request whose answer is read as it comes (bytes or lines), not as one JSON."""

    path: str
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    read_timeout_s: float | None = -1.0  # -1: the client's timeout; None: no limit


# -- the streams' parsers -----------------------------------------------------------------


def ndjson(line: str) -> dict[str, Any] | None:
    """One object of an export (one JSON per line); None for a blank line."""
    return jsonlib.loads(line) if line.strip() else None


class EventFrames:
    """Server-sent events, line by line, into `Event`s: feed a line, get an event when
    a frame ends. An `error` frame (the server closes the stream, and says why) is
    raised as the error it names; the frame's `id:` is the event's `seq`."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._kind, self._seq = "event", ""

    def feed(self, line: str) -> Event | None:
        if line.startswith("event:"):
            self._kind = line[6:].strip()
        elif line.startswith("id:"):
            self._seq = line[3:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].strip())
        elif not line and self._data:
            payload = jsonlib.loads("\n".join(self._data))
            kind, seq = self._kind, self._seq
            self._data, self._kind, self._seq = [], "event", ""
            if kind == "error":
                body = payload.get("error") or {}
                raise error_for(str(body.get("type")), 0, str(body.get("message")))
            if seq.isdigit():
                payload["seq"] = int(seq)
            return Event.model_validate(payload)
        return None


# -- answers -----------------------------------------------------------------------------


def answer(response: httpx.Response) -> Any:
    """The JSON of an answer that was read whole (None for none); an error raised."""
    raise_for(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()["error"]
        type_, message = str(body["type"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        raise error_for(
            "",
            response.status_code,
            f"The server answered {response.status_code} {response.reason_phrase}.",
        ) from None
    error = error_for(type_, response.status_code, message)
    if isinstance(error, LimitExceededError):
        error.retry_after_s = retry_after_s(response.headers.get("retry-after", ""))
    raise error


RETRIED = frozenset({429, 503})


@dataclass(frozen=True)
class Retry:
    """When to send a request again: on 429 and 503 only (the server did not act on
    it), at most `retries` times, after Retry-After or a jittered, doubling backoff."""

    retries: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def wait_s(self, response: httpx.Response, attempt: int) -> float | None:
        """How long to wait before try `attempt + 1`; None: do not try again."""
        if response.status_code not in RETRIED or attempt > self.retries:
            return None
        after = retry_after_s(response.headers.get("retry-after", ""))
        if after is None:  # "full jitter": spread many clients over the whole backoff
            after = random.uniform(0, self.backoff_s * 2.0 ** (attempt - 1))
        return after if after <= self.max_wait_s else None


def retry_after_s(value: str) -> float | None:
    """Retry-After's seconds: a number of seconds or an HTTP date (RFC 9110 10.2.3)."""
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def unreachable(server: str, exc: httpx.TransportError) -> ConnectionError_:
    """One sentence for a request that got no answer; a certificate that is not trusted
    says where to give the CA that signed it."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or "not trusted"
        return ConnectionError_(
            f"The certificate of the fleetrun server at {server} is not trusted ({reason}): "
            "give the CA certificate that signed it with --ca-file or FLEETRUN_CA_FILE (SDK: "
            "verify=PATH), or check that --server names the right host."
        )
    text = str(exc) or type(exc).__name__
    return ConnectionError_(
        f"Cannot reach the fleetrun server at {server} ({text.split('] ')[-1]}): check "
        "--server (or FLEETRUN_SERVER) and that the server is running."
    )


# -- building requests -------------------------------------------------------------------


def path(*segments: str) -> str:
    """The API path of these segments, each quoted as exactly one segment: a name or an
    id never adds a level, climbs one (`../groups/x`, `..`) or addresses a listing (an
    empty one). Every operation that puts a caller's value in a path goes through here."""
    quoted = []
    for segment in segments:
        if segment == "":
            raise ValidationError("A name or id is empty: give the name or id of one resource.")
        # quote() leaves dots alone, and a URL would read "." and ".." as a move.
        quoted.append("%2E" * len(segment) if segment in (".", "..") else quote(segment, safe=""))
    return "/v1/" + "/".join(quoted)


def clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None and v != []}


def ca_context(file: Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(file))
    except ssl.SSLError as exc:
        raise ValidationError(
            f"The CA file {file} holds no certificate that can be read ({exc.reason or exc}): "
            "give the server's CA certificate in PEM."
        ) from None
    except OSError as exc:
        raise ValidationError(
            f"Cannot read the CA file {file}: {(exc.strerror or str(exc)).lower()}."
        ) from None


def method_of(op: Callable[..., Any], method: F, name: str | None = None) -> F:
    """`method` (a client's driver of `op`) named and documented as `op`, with its
    signature (after `self`) for help() and editors."""
    method.__name__ = name or op.__name__
    method.__qualname__ = method.__name__
    method.__doc__ = op.__doc__
    signature = inspect.signature(op)
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    setattr(  # noqa: B010 (a function has no declared __signature__)
        method,
        "__signature__",
        signature.replace(
            parameters=[this, *signature.parameters.values()],
            return_annotation=inspect.Signature.empty,
        ),
    )
    return method
