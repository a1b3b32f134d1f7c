"""Rendering console pages: the templates, what every page is given, and the one place a
console request's error becomes a page (or, for a caller without a session, the way to
sign in)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from fleetrun import __version__
from fleetrun.core import access
from fleetrun.core.errors import AuthenticationError, FleetrunError
from fleetrun.server.authz import Caller, gate
from fleetrun.server.state import ServerState
from fleetrun.server.web.session import csrf_token, form

__all__ = ["field", "form", "page", "refusal"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
# What the navigation offers, each shown only to a principal the API's gate would let
# through: with the resource its route names ("*"), or any resource (None).
NAV: tuple[tuple[str, str, str, str | None], ...] = (
    ("Fleet", "/ui/nodes", "ListNodes", None),
    ("Run", "/ui/run", "SendCommand", None),
    ("Commands", "/ui/commands", "ListCommands", None),
    ("Groups", "/ui/groups", "ListGroups", None),
    ("Documents", "/ui/documents", "ListDocuments", None),
    ("Rules", "/ui/rules", "ListRules", None),
    ("Events", "/ui/events", "ListEvents", "*"),
    ("Audit", "/ui/audit", "ListAuditRecords", "*"),
    ("Access", "/ui/access", "ListPrincipals", None),
)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "—"


templates.env.filters["when"] = _when


def may(caller: Caller | None, action: str, resource: str | None = None) -> bool:
    """Whether to offer an action: the API's own decision before a route runs (full on a
    named resource, else whether any statement could allow it)."""
    if caller is None:
        return False
    full = access.action_name(action)
    return gate(caller, full, resource).allowed


def page(
    request: Request,
    name: str,
    caller: Caller | None,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    cookie = request.scope.get("state", {}).get("console_cookie")
    state: ServerState = request.app.state.fleet
    nav = [(label, href) for label, href, action, on in NAV if may(caller, action, on)]
    return templates.TemplateResponse(
        request,
        name,
        {
            "caller": caller,
            "csrf": csrf_token(state.secrets, cookie) if cookie else "",
            "nav": nav,
            "path": request.url.path,
            "version": __version__,
            "may": lambda action, resource=None: may(caller, action, resource),
            **(context or {}),
        },
        status_code=status_code,
    )


def error_page(request: Request, error: FleetrunError) -> Response:
    """A console request that failed: to sign-in when there is no valid session, else a
    page saying why, with the API's sentence and status."""
    if isinstance(error, AuthenticationError) and request.method == "GET":
        target = "/ui/sign-in?next=" + quote(request.url.path, safe="/")
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"hx-redirect": target})
        return RedirectResponse(target, status_code=303)
    caller = getattr(request.state, "caller", None)
    titles = {401: "Not signed in", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    context = {"title": titles.get(error.status_code, "Not done"), "message": error.message}
    name = "fragment_error.html" if request.headers.get("hx-request") else "error.html"
    return page(request, name, caller, context, status_code=error.status_code)


@dataclass
class Refusal:
    message: str | None = None


@contextmanager
def refusal() -> Iterator[Refusal]:
    """A block whose refusal is shown in the fragment it fills (a check, a preview), not
    as an error page: the API's sentence, kept as `message`."""
    said = Refusal()
    try:
        yield said
    except FleetrunError as exc:
        said.message = exc.message


def field(fields: Mapping[str, list[str]], name: str, default: str = "") -> str:
    values = fields.get(name)
    return values[0].strip() if values else default
