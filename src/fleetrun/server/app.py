"""The app factory: routers, the server's lifecycle, and the one place where errors
become HTTP responses."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetrun import __version__
from fleetrun.core.clock import Clock, SystemClock
from fleetrun.core.errors import (
    AuthenticationError,
    FleetrunError,
    LimitExceededError,
    ValidationError,
)
from fleetrun.schemas.base import describe
from fleetrun.server.api import (
    activations,
    agent,
    audit,
    commands,
    documents,
    events,
    groups,
    identity,
    nodes,
    policies,
    principals,
    roles,
    rules,
    runcommands,
    tokens,
)
from fleetrun.server.audit import AuditMiddleware
from fleetrun.server.db import Database, Tx
from fleetrun.server.output import LocalOutputStore
from fleetrun.server.settings import Settings
from fleetrun.server.state import ServerState
from fleetrun.server.store import group_runcommands as group_run_command_store
from fleetrun.server.store import nodes as node_store
from fleetrun.server.store import principals as principal_store
from fleetrun.server.store import tokens as token_store

log = logging.getLogger(__name__)

ROUTERS = (
    activations.router,
    agent.router,
    nodes.router,
    nodes.targets_router,
    groups.router,
    documents.router,
    commands.router,
    commands.invocations_router,
    runcommands.router,
    runcommands.groups_router,
    identity.router,
    principals.router,
    tokens.router,
    policies.router,
    roles.router,
    audit.router,
    events.router,
    rules.router,
    rules.channels_router,
)


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The server, composed. `clock` (default: the system's) is what delivery deadlines,
    expiry and delivery backoff are measured by."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    state = ServerState(
        settings=settings,
        db=Database(settings.effective_database_url),
        output=LocalOutputStore(settings.output_dir),
        clock=clock or SystemClock(),
    )
    app = FastAPI(
        title="fleetrun",
        version=__version__,
        description="Run Command for hybrid fleets. "
        "Every route needs `Authorization: Bearer TOKEN`.",
        lifespan=_lifespan,
        openapi_url="/openapi.json",
    )
    app.state.fleet = state
    for router in ROUTERS:
        app.include_router(router)
    app.add_api_route("/healthz", _healthz, include_in_schema=False)
    _install_error_handlers(app)
    app.add_middleware(AuditMiddleware, audit=state.audit)
    app.add_middleware(RequestIdMiddleware)  # outermost: the audit entry carries its id
    return app


async def _healthz() -> dict[str, str]:
    """Liveness for process supervisors: says nothing but that the server answers."""
    return {"status": "ok"}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.fleet
    await asyncio.to_thread(state.db.migrate)
    await ensure_admin_token(state)
    await state.db.write(lambda tx: node_store.mark_all_lost(tx.session))
    await state.db.write(lambda tx: group_run_command_store.sync(tx.session))
    state.audit.start()
    state.dispatcher.start()
    state.gateway.start()
    state.outbox.start()
    state.sinks.start()
    log.info("fleetrun %s serving; data in %s", __version__, state.settings.data_dir)
    try:
        yield
    finally:
        await state.outbox.stop()
        await state.sinks.stop()
        await state.gateway.stop()
        await state.dispatcher.stop()
        await state.audit.stop()
        await state.output.close()
        await state.db.close()


async def ensure_admin_token(state: ServerState) -> None:
    """On first start, make the administrator's token (of the built-in principal
    `admin`) and leave it in admin.token (mode 0600); later starts keep it."""
    path = state.settings.admin_token_path

    def ensure(tx: Tx) -> bool:
        principal_store.ensure_admin(tx.session)
        if path.exists():
            token = path.read_text().strip()
            if not token_store.token_exists(tx.session, token):
                token_store.create_token(
                    tx.session, "admin", token=token, description="administrator"
                )
            return False
        _, token = token_store.create_token(tx.session, "admin", description="administrator")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        return True

    if await state.db.write(ensure):
        log.info("administrator token written to %s", path)


class RequestIdMiddleware:
    """Give every HTTP request an id (the caller's x-request-id, or a new one), kept in
    `request.state.request_id` and echoed in the response. Plain ASGI: no extra task
    per request, unlike Starlette's BaseHTTPMiddleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


def error_response(error: FleetrunError) -> JSONResponse:
    headers = {}
    if isinstance(error, AuthenticationError):
        headers["www-authenticate"] = "Bearer"
    if isinstance(error, LimitExceededError) and error.retry_after_s is not None:
        headers["retry-after"] = str(max(1, round(error.retry_after_s)))
    return JSONResponse(
        {"error": {"type": error.type, "message": error.message}},
        status_code=error.status_code,
        headers=headers,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FleetrunError)
    async def fleetrun_error(request: Request, exc: FleetrunError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kinds = {404: "NotFound", 405: "MethodNotAllowed"}
        message = (
            f"No route {request.method} {request.url.path}: see /openapi.json for the API."
            if exc.status_code in (404, 405)
            else str(exc.detail)
        )
        return JSONResponse(
            {"error": {"type": kinds.get(exc.status_code, "Error"), "message": message}},
            status_code=exc.status_code,
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "-")
        log.exception("request %s failed", request_id)
        return JSONResponse(
            {
                "error": {
                    "type": "ServerError",
                    "message": f"The server failed on this request (id {request_id}); "
                    "its log has the details.",
                }
            },
            status_code=500,
        )


def _validation_error(exc: RequestValidationError) -> FleetrunError:
    return ValidationError(describe(exc.errors()))
