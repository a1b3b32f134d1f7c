"""Running the server process: logging and uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from fleetrun.server.app import create_app
from fleetrun.server.settings import Settings


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws="websockets-sansio",
        ws_ping_interval=None,  # the agent channel has its own heartbeat
        ws_max_size=16 * 1024 * 1024,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
