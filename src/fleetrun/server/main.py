"""Running the server process: logging and uvicorn."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from sqlalchemy.engine import make_url

from fleetrun.core import logs, protocol
from fleetrun.core.errors import ValidationError
from fleetrun.core.transport import is_loopback_host
from fleetrun.server.app import create_app
from fleetrun.server.db import sync_url
from fleetrun.server.settings import Settings
from fleetrun.server.tls import TLSFiles, fingerprint, self_signed

if TYPE_CHECKING:
    from types import FrameType

    from fleetrun.server.state import ServerState


def configure_logging(level: str, fmt: str = "text") -> dict[str, Any]:
    """Every logger of the process, uvicorn's included, in one format (docs/monitoring.md);
    the dict is uvicorn's log_config too, so it keeps this set-up when it starts."""
    return logs.configure(level, fmt, quiet=("alembic",))


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


def check_listen(settings: Settings) -> None:
    """Refuse plain HTTP off loopback (tokens and node traffic would cross the network
    in clear) unless --insecure-http says it is meant."""
    if settings.serves_tls or is_loopback_host(settings.host):
        return
    if not settings.insecure_http:
        raise ValidationError(
            f"Listening on {settings.host} without TLS would send API tokens and node "
            "traffic in clear: add --tls-self-signed (or --tls-cert and --tls-key), keep "
            "--host 127.0.0.1 behind a TLS proxy, or pass --insecure-http if this network "
            "is private and you mean it."
        )
    logging.getLogger(__name__).warning(
        "serving plain HTTP on %s (--insecure-http): API tokens and node traffic cross the "
        "network unencrypted",
        settings.host,
    )


def private_files() -> None:
    """Whatever the server process creates from now on (the database and SQLite's -wal
    and -shm files, output, keys, tokens) is its user's alone."""
    os.umask(0o077)


def secure_data_dir(settings: Settings) -> None:
    """Make the data directory 0700, and tighten files an older version left readable
    to others (the SQLite database and its -wal/-shm files, tokens, keys)."""
    root = settings.data_dir
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    secret_files = [settings.admin_token_path, settings.secret_key_path]
    url = make_url(sync_url(settings.effective_database_url))
    if url.drivername == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        secret_files += [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    for path in secret_files:
        with contextlib.suppress(FileNotFoundError):
            _tighten(path)


def _tighten(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        path.chmod(mode & 0o700)


def serve(settings: Settings) -> None:
    log_config = configure_logging(settings.log_level, settings.log_format)
    check_listen(settings)
    private_files()
    secure_data_dir(settings)
    files = tls_files(settings)
    if files is not None and files.ca is not None:
        digest = fingerprint(files.ca.read_bytes())
        line = f"TLS: private CA {files.ca}, fingerprint sha256:{digest}"
        if settings.log_format == "text":  # JSON logs stay JSON: the log line says it
            print(line, flush=True)
        logging.getLogger(__name__).info("%s", line)
    if settings.workers > 1:
        _supervise(settings, files)
        return
    app = create_app(settings)
    _Server(_config(app, settings, files, log_config), app.state.fleet).run()


def _config(
    app: Any, settings: Settings, files: TLSFiles | None, log_config: dict[str, Any] | None
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=log_config,
        ws="websockets-sansio",
        ws_ping_interval=None,  # the agent channel has its own heartbeat
        ws_max_size=protocol.MAX_FRAME_BYTES,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=5,
        ssl_certfile=str(files.cert) if files else None,
        ssl_keyfile=str(files.key) if files else None,
    )


class _Server(uvicorn.Server):
    """uvicorn, telling the app when it is asked to stop: open event streams then end
    within a poll (their clients reconnect to another replica or to this one restarted),
    where uvicorn would wait for them until its graceful timeout and then cancel them,
    logging a traceback for each. `started` is set once it serves (--workers)."""

    def __init__(
        self, config: uvicorn.Config, state: ServerState, started: Any | None = None
    ) -> None:
        super().__init__(config)
        self._state = state
        self._started = started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self._started is not None and not self.should_exit:
            self._started.set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.stopping = True  # a plain flag: safe to set from a signal handler
        super().handle_exit(sig, frame)


# -- --workers N: replicas of one machine ---------------------------------------------

RESTART_WAIT_S = 1.0  # before a worker that ended is started again
STOP_WAIT_S = 30.0  # for the workers to stop, then they are killed


def _supervise(settings: Settings, files: TLSFiles | None) -> None:
    """Run `settings.workers` replicas of the server on one listening socket, each a
    process of its own (its own event loop, on its own core), sharing the PostgreSQL
    database like replicas on several machines (docs/scale-out.md). The first starts
    alone (it migrates the schema and makes the administrator's token and the secret
    key on a first start), then the others; a worker that ends is started again, and
    SIGTERM or Ctrl-C stops them all."""
    log = logging.getLogger(__name__)
    sock = _config(None, settings, files, None).bind_socket()
    spawn = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())

    def start(n: int) -> multiprocessing.process.BaseProcess:
        started = spawn.Event()
        proc = spawn.Process(
            target=_worker, args=(settings, files, sock, started), name=f"fleetrun-worker-{n}"
        )
        proc.start()
        while not (started.wait(0.2) or stopping.is_set()):
            if not proc.is_alive():
                break
        log.info("worker %d of %d serving (pid %s)", n, settings.workers, proc.pid)
        return proc

    workers = [start(1)]
    if not workers[0].is_alive():
        raise SystemExit(workers[0].exitcode or 1)  # it said why in its log
    workers += [start(n) for n in range(2, settings.workers + 1) if not stopping.is_set()]
    while not stopping.wait(RESTART_WAIT_S):
        for i, proc in enumerate(workers):
            if not proc.is_alive():
                log.warning(
                    "worker %d (pid %s) ended with exit code %s; starting it again",
                    i + 1,
                    proc.pid,
                    proc.exitcode,
                )
                workers[i] = start(i + 1)
    for proc in workers:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for proc in workers:
        proc.join(max(deadline - time.monotonic(), 0))
        if proc.is_alive():
            proc.kill()
            proc.join()
    sock.close()


def _worker(settings: Settings, files: TLSFiles | None, sock: socket.socket, started: Any) -> None:
    """One worker of `_supervise`, in a process of its own."""
    log_config = configure_logging(settings.log_level, settings.log_format)
    private_files()
    app = create_app(settings)
    server = _Server(_config(app, settings, files, log_config), app.state.fleet, started)
    server.run(sockets=[sock])
