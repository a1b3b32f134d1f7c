"""The agent channel: frames exchanged over one WebSocket per agent.

Both ends import this module, so a frame is defined exactly once. Parsing is separate
from the socket loops (sans-I/O): `parse` turns text into a typed frame, `dump` turns a
frame into text.

Session:

    agent                                   server
      │ ◄──────────── challenge{nonce} ─────── │
      │ ── hello{node_id, time, signature} ──► │  signature over (nonce, node id, time)
      │ ◄──────────── welcome{heartbeat_s} ─── │
      │ ◄──────────── invoke{...} ──────────── │  re-sent until acked; the agent's journal
      │ ── ack{accepted | rejected} ─────────► │  makes a repeat harmless
      │ ── output{seq, bytes} / state{seq} ──► │  re-sent until received; the server's
      │ ◄──────────── received{seq} ────────── │  store makes a repeat harmless
      │ ◄──────────── cancel{invocation} ───── │
      │ ── ping ─► / ◄─ pong ──                │  liveness

Every output and state frame of an invocation carries the next number of one sequence
(`seq`, from 1), so the server applies them in order and acknowledges cumulatively:
the final state of an invocation is stored only after all its output.

Frames ignore unknown fields and the receiver ignores unknown frame types, so that an
agent of version N keeps working with a server of version N+1. Each hello carries the
agent's protocol version; the server refuses one older than MIN_PROTOCOL_VERSION.

Frames are msgspec structs, not pydantic models: one small library decodes and checks a
frame in one pass, several times faster than pydantic on the server's hot path, and the
agent, which needs nothing else of pydantic, stays about 20 MB lighter. Every field goes
on the wire, None as null, so that no peer depends on the other's defaults.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal, TypeVar, get_args

import msgspec
from msgspec import Meta, Struct, field

from fleetrun.core.errors import PayloadTooLargeError
from fleetrun.core.inputs import INT64_MAX, INT64_MIN

# The protocol this code speaks, and the oldest an agent may speak to this server: a
# server refuses an older agent at the hello (CLOSE_PROTOCOL_TOO_OLD), with a reason
# that says to upgrade it. Raise MIN_PROTOCOL_VERSION only with a CHANGELOG entry.
PROTOCOL_VERSION = 1
MIN_PROTOCOL_VERSION = 1
CONNECT_PATH = "/v1/agent/connect"  # the session WebSocket, on the server's address

# Sizes. Every size limit of fleetrun derives from MAX_FRAME_BYTES, the largest frame
# either end of the agent channel accepts (both pass it to their WebSocket library):
# a script travels to the node inside one `invoke` frame, where it appears twice (the
# step and the command's parameters) and JSON may escape it, so a script (with its
# parameters) may be a quarter of a frame and an API request body half of one. The
# server checks each encoded `invoke` too: one that still does not fit ends
# Undeliverable (detail TooLarge) instead of being sent.
MIB = 1024 * 1024
MAX_FRAME_BYTES = 16 * MIB
MAX_SCRIPT_BYTES = MAX_FRAME_BYTES // 4
MAX_REQUEST_BYTES = MAX_FRAME_BYTES // 2
# Numbers a peer sends must fit the 64-bit columns they are stored in, and times must be
# ones a datetime can hold (up to the end of the year 9999): a frame out of range is
# unreadable, not a failure of the store.
Int64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Meta(ge=0, le=INT64_MAX)]
Epoch = Annotated[float, Meta(ge=0, le=253402300799)]

# WebSocket close codes the server uses; the agent decides from them whether to retry.
CLOSE_AUTH_FAILED = 4401  # bad signature, stale time, replayed nonce: retry later
CLOSE_NODE_UNKNOWN = 4404  # the node is unknown or deregistered: stop, register again
CLOSE_REPLACED = 4409  # another session of the same node took over
CLOSE_PROTOCOL = 4400  # a frame the server could not read
CLOSE_PROTOCOL_TOO_OLD = 4426  # the agent's protocol is older than the server supports: stop
CLOSE_SHUTDOWN = 1001  # the server is going away: reconnect


class _Part(Struct, frozen=True, kw_only=True):
    """A part of a frame. Unknown fields are ignored on purpose: a newer peer may send
    more. Building one in code checks nothing; `parse` and `convert` check."""


class _Frame(_Part, tag_field="type", frozen=True, kw_only=True):
    """A frame: its class's tag is its `type` on the wire."""

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class Challenge(_Frame, tag="challenge", frozen=True, kw_only=True):
    nonce: str
    server_time: float
    protocol: int = PROTOCOL_VERSION


class Hello(_Frame, tag="hello", frozen=True, kw_only=True):
    protocol: int = PROTOCOL_VERSION
    node_id: str
    time_ms: Count
    signature: str  # base64 Ed25519 signature of hello_message(nonce, node_id, time_ms)
    agent_version: str
    facts: dict[str, str] = field(default_factory=dict)
    local_config: dict[str, Any] = field(default_factory=dict)
    running: list[str] = field(default_factory=list)  # invocation ids the agent still runs


class Welcome(_Frame, tag="welcome", frozen=True, kw_only=True):
    session_id: str
    heartbeat_s: float


class Step(_Part, frozen=True, kw_only=True):
    """One step of a document, resolved for one node: what the agent runs."""

    name: str
    action: str  # runShellScript | runPythonScript | runPowerShellScript
    script: str
    args: list[str] = field(default_factory=list)  # positional arguments, passed as argv
    env: dict[str, str] = field(default_factory=dict)  # named parameters
    working_directory: str | None = None
    timeout_s: float | None = None
    on_failure: Literal["exit", "continue"] = "exit"
    run_as: str | None = None
    precondition: dict[str, Any] | None = None
    # Instead of `script`: an http(s) URL the agent downloads the script from (a run
    # command's scriptUri), and the hex sha256 the download must match.
    script_uri: str | None = None
    script_sha256: str | None = None


class DocumentRef(_Part, frozen=True, kw_only=True):
    """The document an invocation runs, with its publishers' signatures, so a node that
    requires signed documents can verify it and make the steps itself."""

    name: str
    version: str | None = None
    content: dict[str, Any]
    signatures: list[dict[str, str]] = field(default_factory=list)


class Invoke(_Frame, tag="invoke", frozen=True, kw_only=True):
    invocation_id: str
    command_id: str
    document_name: str
    document_version: str | None = None
    steps: list[Step]
    execution_timeout_s: float
    run_as: str | None = None
    principal: str | None = None
    # Secrets sealed to this node (fleetrun.core.sealing): named ones become environment
    # variables of every step (context "NODE:NAME"), positional ones follow the public
    # arguments (context "NODE:arg:INDEX"). The agent opens them in memory only and
    # masks them as *** in the output it sends.
    secrets: dict[str, str] = field(default_factory=dict)
    secret_args: list[str] = field(default_factory=list)
    document: DocumentRef | None = None
    parameters: dict[str, list[str]] = field(default_factory=dict)  # as the command gave them
    arguments: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Ack(_Frame, tag="ack", frozen=True, kw_only=True):
    invocation_id: str
    accepted: bool
    reason: str | None = None  # why it was rejected: names the local rule
    detail: str | None = None  # StatusDetail for a rejection


class Output(_Frame, tag="output", frozen=True, kw_only=True):
    invocation_id: str
    seq: Count
    step: Count
    stream: Literal["stdout", "stderr"]
    data: str  # base64

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.data)


class State(_Frame, tag="state", frozen=True, kw_only=True):
    """A change of a step's or (with `step` None) the whole invocation's status."""

    invocation_id: str
    seq: Count
    step: Count | None = None
    status: str
    detail: str | None = None
    exit_code: Int64 | None = None
    started_at: Epoch | None = None
    ended_at: Epoch | None = None
    message: str | None = None


class Config(_Frame, tag="config", frozen=True, kw_only=True):
    """The agent's effective local configuration, sent when it changes (read-only)."""

    local_config: dict[str, Any]


class Rotate(_Frame, tag="rotate", frozen=True, kw_only=True):
    """The agent asks to replace its identity key (over its authenticated session),
    proving it holds the new one."""

    public_key: str
    proof: str  # base64 signature by the new key of rotate_message(node_id, public_key)


class Rotated(_Frame, tag="rotated", frozen=True, kw_only=True):
    public_key: str


class Cancel(_Frame, tag="cancel", frozen=True, kw_only=True):
    invocation_id: str


class Received(_Frame, tag="received", frozen=True, kw_only=True):
    invocation_id: str
    seq: int  # highest contiguous sequence number stored


class Ping(_Frame, tag="ping", frozen=True, kw_only=True):
    time: float


class Pong(_Frame, tag="pong", frozen=True, kw_only=True):
    time: float


Frame = (
    Challenge
    | Hello
    | Welcome
    | Invoke
    | Ack
    | Output
    | State
    | Config
    | Rotate
    | Rotated
    | Cancel
    | Received
    | Ping
    | Pong
)
KNOWN_TYPES = frozenset(str(f.__struct_config__.tag) for f in get_args(Frame))
_DECODER = msgspec.json.Decoder(Frame)
_ENCODER = msgspec.json.Encoder()
_ANY = msgspec.json.Decoder()
P = TypeVar("P", bound=_Part)


class ProtocolError(ValueError):
    """A frame that cannot be read."""


def parse(text: str | bytes) -> Frame | None:
    """The frame in `text`, or None for a well-formed frame of a type this side does not
    know (a newer peer's); raises ProtocolError for anything unreadable."""
    try:
        return _DECODER.decode(text)
    except msgspec.ValidationError as exc:
        error = exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    # Only the slow path reads the frame twice: to tell a newer peer's frame type from
    # a broken frame.
    raw = _ANY.decode(text)
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ProtocolError("frame has no type") from error
    if raw["type"] not in KNOWN_TYPES:
        return None
    raise ProtocolError(f"bad {raw['type']} frame: {error}") from error


def dump(frame: _Frame) -> str:
    return _ENCODER.encode(frame).decode()


def convert(data: Any, kind: type[P]) -> P:
    """`data` (plain dicts and lists, as stored) checked and read as `kind`; unknown
    fields are ignored. Raises ProtocolError for data that does not fit."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"bad {kind.__name__}: {exc}") from exc


def as_dict(part: _Part) -> dict[str, Any]:
    """A part as plain JSON-ready data, without the fields that are None."""
    data: dict[str, Any] = msgspec.to_builtins(part)
    return {k: v for k, v in data.items() if v is not None}


def replace(part: P, **changes: Any) -> P:
    """A copy of `part` with some fields changed (parts are frozen)."""
    return msgspec.structs.replace(part, **changes)


def hello_message(nonce: str, node_id: str, time_ms: int) -> bytes:
    """The bytes an agent signs to open a session."""
    return f"fleetrun-hello\n{nonce}\n{node_id}\n{time_ms}".encode()


def rotate_message(node_id: str, public_key: str) -> bytes:
    """The bytes a new identity key signs to prove the agent holds it."""
    return f"fleetrun-rotate\n{node_id}\n{public_key}".encode()


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def mib(size: int) -> str:
    """A size as people read it: 9.2 MiB."""
    return f"{size / MIB:.1f} MiB"


def check_script_size(size: int, what: str) -> None:
    """Refuse a script (with its parameters) that could not travel to a node."""
    if size > MAX_SCRIPT_BYTES:
        raise PayloadTooLargeError(
            f"{what} is {mib(size)}, over the {mib(MAX_SCRIPT_BYTES)} a command can carry to a "
            "node: keep the script small and let it fetch what it needs (a run command's "
            "source.scriptUri is downloaded by the node itself)."
        )
