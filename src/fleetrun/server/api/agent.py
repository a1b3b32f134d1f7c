"""The agent's side of the API: registration (authenticated by an activation) and the
session WebSocket (authenticated by the node's key). No operator token is taken here."""

from __future__ import annotations

from fastapi import APIRouter, Request, WebSocket, status
from fastapi.responses import PlainTextResponse

from fleetrun.core.errors import NotFoundError
from fleetrun.schemas.agent import RegisterRequest, RegisterResponse
from fleetrun.server.api.deps import audit_entry, state_of
from fleetrun.server.api.runcommands import admit
from fleetrun.server.db import Tx
from fleetrun.server.store import activations as activation_store
from fleetrun.server.store import group_runcommands as group_run_command_store
from fleetrun.server.store import nodes as node_store

router = APIRouter(prefix="/v1/agent", tags=["agent"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(request: Request, body: RegisterRequest) -> RegisterResponse:
    entry = audit_entry(request)
    if entry is not None:
        entry.action = "agent:Register"
        entry.resource = f"frn:fleetrun:activation/{body.activation_id}"

    now = state_of(request).clock.now()

    def register_node(tx: Tx) -> RegisterResponse:
        activation = activation_store.consume_activation(
            tx.session, body.activation_id, body.activation_code, now
        )
        node = node_store.create_node(tx.session, activation, body)
        if entry is not None:
            entry.detail["node_id"] = node.id
        # Its tags may make it a member of groups with run commands: it gets them now
        # (a node's tags, so its groups, are fixed when it registers), each decided
        # as the run command's author.
        if group_run_command_store.sync(tx.session, admit(state_of(request))):
            state_of(request).wake_dispatcher(tx)
        return RegisterResponse(node_id=node.id, name=node.name)

    return await state_of(request).db.write(register_node)


@router.get("/ca", response_class=PlainTextResponse, include_in_schema=False)
async def ca_certificate(request: Request) -> PlainTextResponse:
    """The server's private CA certificate (public by nature), for agents that pin its
    fingerprint at registration. Only when the server made its own CA."""
    settings = state_of(request).settings
    ca = settings.data_dir / "tls" / "ca.pem"
    if not settings.tls_self_signed or not ca.exists():
        raise NotFoundError(
            "This server has no private CA of its own: register agents with --ca-file."
        )
    return PlainTextResponse(ca.read_text(), media_type="application/x-pem-file")


@router.websocket("/connect")
async def connect(ws: WebSocket) -> None:
    state = ws.app.state.fleet
    await state.gateway.serve(ws)
