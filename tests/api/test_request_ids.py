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
