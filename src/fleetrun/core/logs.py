"""One log format for every logger of a process (the server's, uvicorn's, the agent's):
`text` for people, or `json` (one object per line) for a log pipeline. Either carries
the context of the work at hand as fields: `request_id`, `principal`, `node_id`,
`command_id`, where they apply.

The context lives in a context variable holding a dict. `scope(...)` starts a fresh
one for a unit of work (an HTTP request, an agent session, an invocation); `bind(...)`
adds to the current one in place, so what a route learns late (its principal, the id
of the command it made) is seen by whoever logs for that request afterwards, the
middleware included. A record may also name a field itself: `log.info(..., extra={"node_id": n})`.

Only these fields are ever added: a message that could carry a secret is not built
here, and the caller never logs one (parameters and tokens stay out of messages).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

FIELDS = ("request_id", "principal", "node_id", "command_id", "invocation_id")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_context: ContextVar[dict[str, str] | None] = ContextVar("fleetrun_log_context", default=None)


def scope(**fields: str | None) -> Token[dict[str, str] | None]:
    """Start a fresh context (the enclosing one's fields, plus these) for a unit of
    work; `reset(token)` ends it."""
    current = _context.get() or {}
    return _context.set({**current, **{k: v for k, v in fields.items() if v}})


def reset(token: Token[dict[str, str] | None]) -> None:
    _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add fields to the current context, in place."""
    current = _context.get()
    if current is None:
        _context.set({k: v for k, v in fields.items() if v})
        return
    current.update({k: v for k, v in fields.items() if v})


def context_of(record: logging.LogRecord) -> dict[str, str]:
    """The record's context fields: its own (`extra=`) over the current context's."""
    found = dict(_context.get() or {})
    for name in FIELDS:
        value = getattr(record, name, None)
        if value:
            found[name] = str(value)
    return {name: found[name] for name in FIELDS if name in found}


class TextFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: message [request_id=... principal=...]`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = context_of(record)
        if not fields:
            return line
        suffix = " ".join(f"{k}={v}" for k, v in fields.items())
        head, sep, rest = line.partition("\n")  # a traceback goes after the fields
        return f"{head} [{suffix}]{sep}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the
    context fields, and `exception` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **context_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def config(level: str, fmt: str, *, quiet: tuple[str, ...] = ()) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: every record, uvicorn's included, goes to
    standard error in format `fmt`. Loggers in `quiet` speak from WARNING up."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    formatter = JsonFormatter if fmt == "json" else TextFormatter
    level = level.upper()
    loggers: dict[str, Any] = {
        # uvicorn's own handlers go: its records reach the root's, in this format
        name: {"handlers": [], "propagate": True}
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
    }
    for name in quiet:
        loggers[name] = {"level": max(logging.WARNING, logging.getLevelName(level))}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"fleetrun": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "fleetrun",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": loggers,
    }


def configure(level: str, fmt: str, *, quiet: tuple[str, ...] = ()) -> dict[str, Any]:
    """Set up logging for this process (see `config`); the dict, to hand to uvicorn."""
    import logging.config

    settings = config(level, fmt, quiet=quiet)
    logging.config.dictConfig(settings)
    return settings
