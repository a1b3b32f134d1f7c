"""Running the server process: logging and uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from fleetrun.core import protocol
from fleetrun.core.errors import ValidationError
from fleetrun.server.app import create_app
from fleetrun.server.settings import Settings
from fleetrun.server.tls import TLSFiles, fingerprint, self_signed


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def tls_files(settings: Settings) -> TLSFiles | None:
    """The certificate to serve, or None for plain HTTP; a ValidationError if the flags
    do not make sense together."""
    if settings.tls_self_signed:
        if settings.tls_cert or settings.tls_key:
            raise ValidationError("Give --tls-self-signed or --tls-cert/--tls-key, not both.")
        names = [n.strip() for n in settings.tls_san.split(",") if n.strip()]
        return self_signed(settings.data_dir, names)
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ValidationError("--tls-cert and --tls-key go together: give both.")
    if settings.tls_cert and settings.tls_key:
        for path in (settings.tls_cert, settings.tls_key):
            if not path.is_file():
                raise ValidationError(f"{path} does not exist or is not a file.")
        return TLSFiles(settings.tls_cert, settings.tls_key, None)
    return None


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    files = tls_files(settings)
    if files is not None and files.ca is not None:
        digest = fingerprint(files.ca.read_bytes())
        line = f"TLS: private CA {files.ca}, fingerprint sha256:{digest}"
        print(line, flush=True)
        logging.getLogger(__name__).info("%s", line)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws="websockets-sansio",
        ws_ping_interval=None,  # the agent channel has its own heartbeat
        ws_max_size=protocol.MAX_FRAME_BYTES,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=5,
        ssl_certfile=str(files.cert) if files else None,
        ssl_keyfile=str(files.key) if files else None,
    )
    uvicorn.Server(config).run()
