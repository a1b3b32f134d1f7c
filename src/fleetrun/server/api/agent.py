"""The agent's side of the API: registration (authenticated by an activation) and the
session WebSocket (authenticated by the node's key). No operator token is taken here."""

from __future__ import annotations

from fastapi import APIRouter, Request, WebSocket, status

from fleetrun.schemas.agent import RegisterRequest, RegisterResponse
from fleetrun.server.api.deps import state_of
from fleetrun.server.db import Tx
from fleetrun.server.store import activations as activation_store
from fleetrun.server.store import nodes as node_store

router = APIRouter(prefix="/v1/agent", tags=["agent"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(request: Request, body: RegisterRequest) -> RegisterResponse:
    def register_node(tx: Tx) -> RegisterResponse:
        activation = activation_store.consume_activation(
            tx.session, body.activation_id, body.activation_code
        )
        node = node_store.create_node(tx.session, activation, body)
        return RegisterResponse(node_id=node.id, name=node.name)

    return await state_of(request).db.write(register_node)


@router.websocket("/connect")
async def connect(ws: WebSocket) -> None:
    state = ws.app.state.fleet
    await state.gateway.serve(ws)
