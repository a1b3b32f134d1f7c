"""The two log formats and the context fields they carry (fleetrun.core.logs)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from fleetrun.core import logs


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    r = logging.LogRecord("fleetrun.test", logging.INFO, __file__, 1, message, args or ("x",), None)
    for key, value in extra.items():
        setattr(r, key, value)
    return r


def test_text_without_context_is_the_plain_line():
    line = logs.TextFormatter().format(record())
    assert line.endswith(" INFO fleetrun.test: hello x")
    assert "[" not in line


def test_text_puts_the_context_after_the_message():
    token = logs.scope(request_id="r1", principal="alice")
    try:
        line = logs.TextFormatter().format(record())
    finally:
        logs.reset(token)
    assert line.endswith("fleetrun.test: hello x [request_id=r1 principal=alice]")


def test_json_is_one_object_with_the_fields_that_apply():
    token = logs.scope(request_id="r1")
    try:
        logs.bind(command_id="c1", node_id=None)  # None: not set
        entry = json.loads(logs.JsonFormatter().format(record(node_id="n1")))
    finally:
        logs.reset(token)
    assert entry["message"] == "hello x"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "fleetrun.test"
    assert entry["time"].endswith("+00:00")
    assert (entry["request_id"], entry["command_id"], entry["node_id"]) == ("r1", "c1", "n1")
    assert "principal" not in entry


def test_json_keeps_a_traceback_in_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        r = record()
        r.exc_info = sys.exc_info()
    text = logs.JsonFormatter().format(r)
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exception"]


def test_a_scope_ends_with_its_reset_and_tasks_keep_their_own():
    async def work(name: str) -> dict[str, str]:
        logs.scope(command_id=name)
        await asyncio.sleep(0)
        return logs.context_of(record())

    async def both() -> list[dict[str, str]]:
        return list(await asyncio.gather(work("a"), work("b")))

    assert asyncio.run(both()) == [{"command_id": "a"}, {"command_id": "b"}]
    assert logs.context_of(record()) == {}


def test_bind_in_a_copied_context_reaches_the_scope_that_was_copied():
    """What a route binds on a database thread (run in a copy of the request's context,
    as Database does) is seen by the request's later lines."""
    token = logs.scope(request_id="r1")
    try:
        copied = contextvars.copy_context()
        with ThreadPoolExecutor(1) as pool:
            pool.submit(copied.run, logs.bind, command_id="c1").result()
        assert logs.context_of(record()) == {"request_id": "r1", "command_id": "c1"}
    finally:
        logs.reset(token)


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="text or json"):
        logs.config("info", "xml")


def test_uvicorn_loggers_propagate_to_the_one_handler():
    config = logs.config("warning", "json", quiet=("alembic",))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert config["loggers"][name] == {"handlers": [], "propagate": True}
    assert config["root"] == {"level": "WARNING", "handlers": ["stderr"]}
    assert config["formatters"]["fleetrun"]["()"].endswith("JsonFormatter")
