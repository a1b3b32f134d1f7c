"""The API keeps the promises of its own OpenAPI document.

A bounded schemathesis run against the app's own /openapi.json (in process: the real
app and lifespan, each generated request sent through the app's client), as the
administrator, with no token, and with a token whose principal has no policy: no
5xx, no status, content type, header or body the document does not describe, and a
405 that names the allowed methods. The document itself declares the error body,
the bearer scheme (the /docs page's Authorize button) and the real content types,
and the /docs page loads nothing from outside the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.inprocess import App

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    unsupported_method,
    allow_header_conformance,
]
# Server-sent event streams that end only when what they follow ends: a generated request
# for a command that never finishes (the fixture's nodes never connect) holds its example
# forever. Their shapes are checked in test_events and test_output_stream.
SKIPPED_PATHS = [
    "/v1/events/stream",
    "/v1/commands/{command_id}/invocations/{node_id}/output/stream",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    # No rate limit: the run sends a few hundred requests in seconds, as one principal.
    app = App(tmp_path_factory.mktemp("openapi"), rate_limit_per_s=0.0).start()
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(scope="module")
def tokens(server: App) -> dict[str, dict[str, str]]:
    client = server.client
    client.create_principal("nobody", kind="service")
    nobody = client.create_token("nobody").token
    return {
        "admin": {"authorization": f"Bearer {server.token}"},
        "none": {},
        "no-policy": {"authorization": f"Bearer {nobody}"},
    }


def test_every_operation_keeps_to_the_document(server, tokens):
    """Each generated request (valid and invalid ones) is sent as each caller; every
    operation is tried, and every broken promise reported at the end."""
    schema = schemathesis.openapi.from_dict(_get(server, "/openapi.json").json())
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED_PATHS:
            continue
        tried += 1
        for mode, examples in ((GenerationMode.POSITIVE, 3), (GenerationMode.NEGATIVE, 2)):
            try:
                _fuzz(server, operation.as_strategy(mode), examples, tokens)
            except (AssertionError, BaseExceptionGroup) as exc:  # reported all together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert tried > 50
    assert not failures, "\n\n".join(failures)


def _fuzz(app: App, strategy: Any, examples: int, tokens: dict[str, dict[str, str]]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        for headers in tokens.values():
            case.validate_response(_send(app, case, headers), checks=CHECKS, headers=headers)

    run()


def _send(app: App, case: Any, headers: dict[str, str]) -> Any:
    """The request schemathesis would send over the network (prepared by `requests`, as
    its own transport prepares it: URL quoting, body serialization, headers), sent to
    the app through its client instead."""
    kwargs = case.as_transport_kwargs(base_url=app.url, headers=headers)
    prepared = requests.Request(**kwargs).prepare()
    assert app.http is not None
    return app.http.request(
        prepared.method or "GET",
        prepared.url or "",
        headers=dict(prepared.headers),
        content=prepared.body,
    )


def _get(app: App, path: str, **kw: Any) -> Any:
    assert app.http is not None
    return app.http.get(path, **kw)


def test_the_document_declares_errors_bearer_auth_and_real_content_types(server):
    spec = _get(server, "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            responses = op["responses"]
            assert "422" not in responses, (method, path)  # a bad request is a 400
            for status in ("400", "401", "403", "404", "409", "429", "4XX"):
                assert responses[status]["content"]["application/json"]["schema"] == error
            if "x-fleetrun-action" in op:
                assert op["security"] == [{"HTTPBearer": []}], (method, path)
    export = spec["paths"]["/v1/audit/export"]["get"]["responses"]["200"]["content"]
    assert list(export) == ["application/x-ndjson"]
    output = "/v1/commands/{command_id}/invocations/{node_id}/output"
    assert list(spec["paths"][output]["get"]["responses"]["200"]["content"]) == [
        "application/octet-stream"
    ]


def test_a_wrong_method_is_a_405_naming_every_allowed_method(server):
    assert server.http is not None
    response = server.http.patch("/v1/documents/x", headers={"authorization": "Bearer x"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PUT, DELETE"
    assert response.json()["error"] == {
        "type": "MethodNotAllowed",
        "message": "PATCH is not allowed on /v1/documents/x: use GET, PUT, DELETE "
        "(see /openapi.json for the API).",
    }


def test_the_docs_page_loads_its_assets_from_the_server_itself(server):
    page = _get(server, "/docs")
    assert page.status_code == 200
    assert not re.search(r"https?://", page.text), "the page must not load from outside"
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert {Path(a).name for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        response = _get(server, asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 100, asset
