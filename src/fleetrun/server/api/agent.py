"""The agent's side of the API: registration (authenticated by an activation). The
session WebSocket (`/v1/agent/connect`, authenticated by the node's key) is taken by
`app.FleetApp` before routing and served by the gateway. No operator token is taken
here."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import PlainTextResponse

from fleetrun.core.errors import NotFoundError
from fleetrun.schemas.agent import RegisterRequest, RegisterResponse
from fleetrun.server.api.deps import audit_entry, state_of

router = APIRouter(prefix="/v1/agent", tags=["agent"])


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(request: Request, body: RegisterRequest) -> RegisterResponse:
    entry = audit_entry(request)
    if entry is not None:
        entry.action = "agent:Register"
        entry.resource = f"frn:fleetrun:activation/{body.activation_id}"

    node = await state_of(request).registrations.register(body, state_of(request).clock.now())
    if entry is not None:
        entry.detail["node_id"] = node.node_id
    return RegisterResponse(node_id=node.node_id, name=node.name)


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
