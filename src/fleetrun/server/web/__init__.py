"""The web console, served by the server at /ui/ (docs/console.md).

Server-rendered pages (Jinja2) with htmx and its server-sent-events extension, both
vendored under static/vendor/ (scripts/vendor_console_assets.py fetched them once; the
package ships them, nothing is fetched at run time and no Node.js is needed). Every page
and action is authorized by the API's own dependencies and decisions, as the principal
signed in with its API token (session.py).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import RedirectResponse

from fleetrun.server.secretbox import SecretBox
from fleetrun.server.web import (
    access,
    commands,
    events,
    output,
    pages,
    records,
    rules,
    runcommands,
    session,
)

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI, box: SecretBox) -> None:
    """Add the console's routes, its static files and its middleware to the app."""
    app.include_router(pages.router)
    app.include_router(commands.router)
    app.include_router(output.router)
    app.include_router(runcommands.router)
    app.include_router(records.router)
    app.include_router(events.router)
    app.include_router(access.router)
    app.include_router(rules.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_api_route("/", _root, include_in_schema=False)
    app.add_middleware(session.ConsoleMiddleware, box=box)


async def _root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


def is_console(path: str) -> bool:
    return path == "/ui" or path.startswith("/ui/")
