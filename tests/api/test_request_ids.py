"""X-Request-Id: a caller's id is echoed (and goes into logs and the audit log) only
when it is a plain token; anything else is replaced by a new id."""

from __future__ import annotations

import pytest


def test_a_plain_request_id_is_echoed(app):
    response = app.http.get("/healthz", headers={"x-request-id": "deploy-7.step:3_a"})
    assert response.headers["x-request-id"] == "deploy-7.step:3_a"


@pytest.mark.parametrize(
    "given",
    ['forged" "level": "INFO', "a b", "x" * 129, "caf\u00e9".encode("latin-1")],
)
def test_a_request_id_that_could_forge_a_log_line_is_replaced(app, given):
    response = app.http.get("/healthz", headers={"x-request-id": given})
    echoed = response.headers["x-request-id"]
    assert echoed not in (given, "caf\u00e9")
    assert len(echoed) == 32 and all(c in "0123456789abcdef" for c in echoed)


def test_without_one_each_request_gets_its_own(app):
    first, second = (app.http.get("/healthz").headers["x-request-id"] for _ in range(2))
    assert first != second


def test_a_server_error_is_logged_with_its_request_id_and_principal(app):
    """The line that keeps a 500's traceback is written outside the request-id
    middleware; it still carries the request's context fields."""
    import io
    import json
    import logging

    from sqlalchemy import text

    from fleetrun.core.logs import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("fleetrun.server.app")
    logger.addHandler(handler)
    try:
        db = app.http.app.state.fleet.db
        with db.engine.begin() as conn:  # a broken database: the route fails
            conn.execute(text("DROP TABLE rules" + ("" if db.is_sqlite else " CASCADE")))
        response = app.http.get(
            "/v1/rules",
            headers={"authorization": f"Bearer {app.token}", "x-request-id": "broken-1"},
        )
    finally:
        logger.removeHandler(handler)
    assert response.status_code == 500
    assert "broken-1" in response.json()["error"]["message"]
    [entry] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert entry["request_id"] == "broken-1"
    assert entry["principal"] == "admin"
    assert "exception" in entry
