"""The app factory: routers, the server's lifecycle, the API's description
(/openapi.json, and /docs with its assets served from here, not from a CDN), and the
one place where errors become HTTP responses."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from swagger_ui_bundle import swagger_ui_path

from fleetrun import __version__
from fleetrun.core import access, logs, protocol
from fleetrun.core.clock import Clock, SystemClock
from fleetrun.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    FleetrunError,
    LimitExceededError,
    NotFoundError,
    ValidationError,
)
from fleetrun.schemas.base import ErrorResponse, describe
from fleetrun.server.api import (
    activations,
    agent,
    alarms,
    audit,
    commands,
    documents,
    events,
    groups,
    identity,
    nodes,
    output,
    policies,
    principals,
    roles,
    rules,
    runcommands,
    tokens,
)
from fleetrun.server.api.deps import authenticate, bearer
from fleetrun.server.api.runcommands import admit
from fleetrun.server.audit import AuditMiddleware
from fleetrun.server.db import Database, Tx
from fleetrun.server.limits import BodyLimitMiddleware
from fleetrun.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fleetrun.server.metrics import (
    Metrics,
    MetricsMiddleware,
    scrape_allowed_by_address,
    scrape_token_matches,
)
from fleetrun.server.output import LocalOutputStore, OutputStore, S3OutputStore
from fleetrun.server.registrations import Registrations
from fleetrun.server.s3store import S3
from fleetrun.server.settings import Settings
from fleetrun.server.ssm import protocol as ssm_protocol
from fleetrun.server.state import ServerState
from fleetrun.server.store import group_runcommands as group_run_command_store
from fleetrun.server.store import migrate
from fleetrun.server.store import principals as principal_store
from fleetrun.server.store import replicas as replica_store
from fleetrun.server.store import tokens as token_store
from fleetrun.server.store.tables import utcnow
from fleetrun.server.web import install as install_console
from fleetrun.server.web import is_console
from fleetrun.server.web.render import error_page

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
    alarms.router,
    alarms.outputs_router,
    output.router,
)

DOCS_ASSETS = "/docs/assets"
READY_TIMEOUT_S = 5.0  # a database slower than this to say `SELECT 1` is not ready
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

# Every route may answer these, always with an ErrorResponse. "4XX" also keeps FastAPI from
# describing a 422 this server never sends (a bad request is a 400).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "The request is not valid: the message names the field and what to send."),
        (401, "No API token, or one that is unknown, expired or revoked."),
        (403, "No policy allows this action on this resource (or one denies it)."),
        (404, "No such resource (or no route)."),
        (409, "The request conflicts with the resource's current state."),
        (429, "Over a rate or size limit: retry after the Retry-After header's seconds."),
        ("4XX", "Another client error, such as 405 (with an Allow header)."),
    )
}


class FleetApp(FastAPI):
    """The application, with one short path: an agent's WebSocket goes straight to the
    gateway. Every middleware and FastAPI's routing pass WebSockets through untouched,
    but each keeps its frames for the whole life of the connection, about 14 KB per
    session (docs/benchmarks.md): 140 MB at 10,000 agents, for nothing. The gateway
    authenticates the agent (its signed hello), audits the session and handles its
    own errors."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == protocol.CONNECT_PATH:
            await self.state.fleet.gateway.serve(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    """The server, composed. `clock` (default: the system's) is what delivery deadlines,
    expiry and delivery backoff are measured by."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    metrics = Metrics()
    state = ServerState(
        settings=settings,
        db=Database(settings.effective_database_url, metrics=metrics),
        output=output_store(settings),
        clock=clock or SystemClock(),
        metrics=metrics,
    )
    # Nodes that register join their groups' run commands, decided as each one's author.
    state.registrations = Registrations(state, admit(state))
    app = FleetApp(
        title="fleetrun",
        version=__version__,
        description="Run Command for hybrid fleets. "
        "Every route needs `Authorization: Bearer TOKEN`.",
        lifespan=_lifespan,
        dependencies=[Depends(_log_path_ids)],
        openapi_url="/openapi.json",
        docs_url=None,  # served below with local assets
        redoc_url=None,
    )
    app.state.fleet = state
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    # AWS Systems Manager's protocol (boto3, aws-cli): POST / with X-Amz-Target.
    app.add_api_route("/", ssm_protocol.handle, methods=["POST"], include_in_schema=False)
    app.add_api_route("/healthz", _healthz, include_in_schema=False)
    app.add_api_route("/metrics", _metrics, include_in_schema=False)
    app.add_api_route("/version", _version, include_in_schema=False)
    app.add_api_route("/readyz", _readyz, include_in_schema=False)
    app.add_api_route("/docs", _docs, include_in_schema=False)
    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")
    install_console(app, state.secrets)  # /ui/: the web console
    _install_error_handlers(app)
    # Innermost of the three: a refused body is still audited and carries a request id.
    app.add_middleware(BodyLimitMiddleware, max_bytes=protocol.MAX_REQUEST_BYTES)
    app.add_middleware(AuditMiddleware, audit=state.audit)
    app.add_middleware(RequestIdMiddleware)  # the audit entry carries its id
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts every answer
    return app


def output_store(settings: Settings) -> OutputStore:
    """The data directory's output/, or the s3:// store that `output_store` names."""
    where = settings.output_bucket
    if where is None:
        return LocalOutputStore(settings.output_dir)
    return S3OutputStore(S3(settings), *where)


async def _healthz() -> dict[str, str]:
    """Liveness for process supervisors: says nothing but that the server answers."""
    return {"status": "ok"}


async def _metrics(request: Request) -> Response:
    """Prometheus metrics, for an allowed scraper (docs/monitoring.md)."""
    state: ServerState = request.app.state.fleet
    settings = state.settings
    source = request.client.host if request.client else None
    if not (
        scrape_allowed_by_address(settings.metrics_allow_cidrs, source)
        or scrape_token_matches(settings.metrics_token, bearer(request))
    ):
        caller = await authenticate(request)
        if not access.allows_everything(caller.policies):
            raise AccessDeniedError(
                f"{caller.principal} may not read /metrics: use an administrator's token, "
                "the server's metrics token (FLEETRUN_METRICS_TOKEN), or scrape from an "
                "address in FLEETRUN_METRICS_ALLOW_CIDRS."
            )
    return Response(await state.metrics.scrape(state), media_type=METRICS_CONTENT_TYPE)


async def _log_path_ids(connection: HTTPConnection) -> None:
    """Every route: the command and node its path names go into its log lines."""
    params = connection.path_params
    logs.bind(command_id=params.get("command_id"), node_id=params.get("node_id"))


async def _readyz(request: Request) -> JSONResponse:
    """Readiness for balancers and container health checks: 200 once the server has
    started (schema migrated, services running) and while its database answers; 503,
    with the reason, before that, when the database does not answer, and from the moment
    the server begins to stop."""
    state: ServerState = request.app.state.fleet
    if not state.ready:
        return _not_ready("the server is starting or stopping")
    try:
        schema = await asyncio.wait_for(state.db.read(migrate.current), READY_TIMEOUT_S)
    except Exception as exc:  # any failure to answer is "not ready"; the log keeps it
        log.warning("readiness: the database does not answer: %r", exc)
        return _not_ready("the database does not answer")
    if schema != migrate.head():  # another replica, of another version, migrated it
        return _not_ready(
            f"the database schema is at revision {schema}, this server's is "
            f"{migrate.head()}: run one version of fleetrun on every replica"
        )
    try:
        unready = await asyncio.wait_for(state.output.unready(), READY_TIMEOUT_S)
    except TimeoutError:
        unready = "the output store does not answer"
    if unready:
        log.warning("readiness: %s", unready)
        return _not_ready(unready)
    return JSONResponse({"status": "ready", "replica": state.replica_id})


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)


async def _version() -> dict[str, str | int]:
    """What this server is and which agents it takes, without a token: an agent or an
    operator checks it before an upgrade (docs/operations.md)."""
    return {
        "version": __version__,
        "protocol": protocol.PROTOCOL_VERSION,
        "min_protocol": protocol.MIN_PROTOCOL_VERSION,
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with every error answer described as what it is: JSON, also
    on the routes whose success is a stream (FastAPI gives the route's media type)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        for operations in schema["paths"].values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status.startswith("4"):
                        response["content"] = error
        app.openapi_schema = schema
    return app.openapi_schema


async def _docs() -> HTMLResponse:
    """The interactive API page; its script and style come from this server, so it works
    on a network without access to the internet."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="fleetrun API",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServerState = app.state.fleet
    await asyncio.to_thread(state.db.migrate)
    await ensure_admin_token(state)
    unready = await state.output.unready()
    if unready:  # /readyz says so too, until it answers
        log.warning("%s: output cannot be stored until it answers", unready)

    def join(tx: Tx) -> str | None:
        now = utcnow()
        lease_s = state.settings.replica_lease_s
        replica_store.join(tx.session, state.replica_id, now, lease_s, alone=state.db.is_sqlite)
        return replica_store.leader(tx.session, now)

    joined = time.monotonic()
    state.lead(await state.db.write(join) == state.replica_id, joined)
    await state.db.write(lambda tx: group_run_command_store.sync(tx.session, admit(state)))
    state.bus.start()
    state.audit.start()
    state.dispatcher.start()
    state.gateway.start()
    state.registrations.start()
    state.outbox.start()
    state.sinks.start()
    state.alarms.start()
    await state.forwarding.start()
    state.retention.start()
    await state.indexer.start()
    log.info("fleetrun %s serving; data in %s", __version__, state.settings.data_dir)
    state.ready = True
    try:
        yield
    finally:
        state.ready = False
        await state.bus.stop()
        await state.outbox.stop()
        await state.sinks.stop()
        await state.retention.stop()
        await state.alarms.stop()
        await state.forwarding.stop()
        await state.registrations.stop()
        await state.gateway.stop()
        await state.indexer.stop()
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
        request_id = _request_id(headers.get(b"x-request-id", b""))
        scope.setdefault("state", {})["request_id"] = request_id
        context = logs.scope(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)
        # Not on an exception: the handler that logs a 500 runs outside this middleware
        # (Starlette's ServerErrorMiddleware) and its line must still name the request.
        # Each request is a task of its own, so the context ends with it anyway.
        logs.reset(context)


def _request_id(given: bytes) -> str:
    """The caller's X-Request-Id when it is a sane token (it goes into logs and the
    audit log), else a new one."""
    text = given.decode("latin-1")
    if 0 < len(text) <= 128 and all(c.isascii() and (c.isalnum() or c in "-_.:") for c in text):
        return text
    return uuid.uuid4().hex


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


NUL_REFUSED = "cannot contain NUL (0x00) bytes"  # psycopg, before PostgreSQL sees the query


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FleetrunError)
    async def fleetrun_error(request: Request, exc: FleetrunError) -> Response:
        if is_console(request.url.path):
            return error_page(request, exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if is_console(request.url.path):
            return error_page(request, _validation_error(exc))
        refused = await _unauthenticated(request)
        return error_response(refused or _validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and is_console(request.url.path):
            return error_page(request, NotFoundError(f"No console page {request.url.path}."))
        if exc.status_code == 400 and (refused := await _unauthenticated(request)):
            return error_response(refused)
        kinds = {404: "NotFound", 405: "MethodNotAllowed", 400: "ValidationError"}
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        if exc.status_code == 404:
            message = (
                f"No route {request.method} {request.url.path}: see /openapi.json for the API."
            )
        elif exc.status_code == 405:
            allowed = _allowed_methods(request)
            headers["allow"] = ", ".join(allowed)
            message = (
                f"{request.method} is not allowed on {request.url.path}: use "
                f"{', '.join(allowed)} (see /openapi.json for the API)."
            )
        else:
            message = _unreadable_body(exc)
        return JSONResponse(
            {"error": {"type": kinds.get(exc.status_code, "Error"), "message": message}},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.exception_handler(DBAPIError)
    async def database_error(request: Request, exc: DBAPIError) -> Response:
        if NUL_REFUSED in str(exc.orig):  # PostgreSQL stores and compares no NUL in text
            refused = ValidationError(
                "A value in the request holds a NUL character (\\x00 or %00), which no "
                "name, id, filter or field accepts; remove it and send the request again."
            )
            return await fleetrun_error(request, refused)
        return await server_error(request, exc)

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


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path. Starlette's own Allow header names
    only the first route that matched the path, and FastAPI makes one route per method:
    ask every route (through its public `matches`) about each method instead."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


def _validation_error(exc: RequestValidationError) -> FleetrunError:
    return ValidationError(describe(exc.errors()))


async def _unauthenticated(request: Request) -> FleetrunError | None:
    """FastAPI reads a route's body before it runs the route's dependencies, so a body
    it cannot parse would be refused before the token is checked. On an operator route
    whose caller is not yet known, authenticate first: without a valid token the answer
    is 401 whatever was sent, and a bad body is told only to a caller who may send one."""
    route = request.scope.get("route")
    extra = getattr(route, "openapi_extra", None) or {}
    if "x-fleetrun-action" not in extra or getattr(request.state, "caller", None) is not None:
        return None
    try:
        await authenticate(request)
    except FleetrunError as exc:
        return exc
    return None


def _unreadable_body(exc: StarletteHTTPException) -> str:
    """Say what was wrong with a body FastAPI could not read (it says only that it
    could not)."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return (
            f"The request body is not valid UTF-8 (byte 0x{cause.object[cause.start]:02x} at "
            f"position {cause.start}): send JSON text encoded as UTF-8."
        )
    if exc.status_code == 400 and cause is not None:
        return f"The request body could not be read ({cause}): send a JSON object."
    return str(exc.detail)
