"""The SDK's `Client`: with no arguments it finds the server and the token as the CLI
does (one reader, fleetrun.sdk.config); it sends a request again after a 429 or a 503,
honouring Retry-After, within a bound. Rate limits come from the real app's limiter; the
503s from a small real HTTP server, as the app answers 503 on no API route."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetrun.core.errors import AccessDeniedError, FleetrunError, LimitExceededError
from fleetrun.sdk import Client
from fleetrun.sdk.config import Profile, write_file
from tests.inprocess import BASE_URL, App

# -- Client() finds its server and token as the CLI does --------------------------------


@pytest.fixture
def no_settings(monkeypatch, tmp_path):
    for name in ("FLEETRUN_SERVER", "FLEETRUN_TOKEN", "FLEETRUN_CA_FILE", "FLEETRUN_INSECURE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEETRUN_CONFIG", str(tmp_path / "config.toml"))
    return tmp_path / "config.toml"


def test_client_with_no_arguments_reads_fleetrun_server_and_fleetrun_token(
    app, no_settings, monkeypatch
):
    monkeypatch.setenv("FLEETRUN_SERVER", BASE_URL)
    monkeypatch.setenv("FLEETRUN_TOKEN", app.token)
    client = Client(http=app.http)
    assert client.server == BASE_URL
    assert client.whoami().principal == "admin"


def test_client_with_no_arguments_reads_the_file_fleetrun_login_writes(app, no_settings):
    write_file(Profile(server=BASE_URL, token=app.token), no_settings)
    assert Client(http=app.http).whoami().principal == "admin"


def test_the_environment_wins_over_the_login_file_and_a_token_given_wins_over_both(
    app, no_settings, monkeypatch
):
    app.client.create_principal("script")
    script_token = app.client.create_token("script").token
    write_file(Profile(server="http://127.0.0.9:1", token="not-a-token"), no_settings)
    monkeypatch.setenv("FLEETRUN_SERVER", BASE_URL)
    monkeypatch.setenv("FLEETRUN_TOKEN", app.token)
    assert Client(http=app.http).whoami().principal == "admin"
    with pytest.raises(AccessDeniedError, match=r"^script may not"):  # the script's token
        Client(token=script_token, http=app.http).whoami()


def test_a_server_given_takes_no_token_from_the_environment(app, no_settings, monkeypatch):
    monkeypatch.setenv("FLEETRUN_TOKEN", app.token)
    with pytest.raises(FleetrunError, match="token"):
        Client(BASE_URL, http=app.http).whoami()


# -- 429: the real rate limiter ---------------------------------------------------------


@pytest.fixture
def limited(tmp_path):
    a = App(tmp_path, rate_limit_per_s=1.0, rate_limit_burst=2).start()
    try:
        yield a
    finally:
        a.close()


def _script_token(app) -> str:
    app.client.create_principal("script")
    app.client.attach("script", role="Reader")
    return app.client.create_token("script").token


def _calls(client, count: int) -> None:
    for _ in range(count):
        client.list_nodes()


def test_calls_over_the_rate_limit_wait_for_retry_after_and_succeed(limited):
    token = _script_token(limited)
    client = Client(BASE_URL, token, http=limited.http)
    for _ in range(5):  # a burst of 2 at 1 per second: the later calls get 429 first
        client.list_nodes()
    statuses = [r.status for r in limited.client.list_audit_records(principal="script")]
    assert 429 in statuses  # they were refused, and then answered


def test_without_retries_the_429_is_raised_with_its_retry_after(limited):
    client = Client(BASE_URL, _script_token(limited), http=limited.http, retries=0)
    with pytest.raises(LimitExceededError) as caught:
        _calls(client, 5)
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1


def test_a_retry_after_longer_than_max_wait_s_is_raised_at_once(tmp_path):
    # a burst of 3 for the administrator's three calls of set-up; then 1 every 5 s
    app = App(tmp_path, rate_limit_per_s=0.2, rate_limit_burst=3).start()
    try:
        client = Client(BASE_URL, _script_token(app), http=app.http, max_wait_s=2)
        with pytest.raises(LimitExceededError) as caught:
            _calls(client, 5)
        assert caught.value.retry_after_s is not None and caught.value.retry_after_s > 2
    finally:
        app.close()


# -- 503: a real HTTP server that is unavailable for a while ---------------------------


class Unavailable(ThreadingHTTPServer):
    """Answers 503 to the first `failures` requests (with `retry_after` when given),
    then 200 with a JSON body; remembers what it answered."""

    def __init__(self, failures: int, retry_after: str | None = None) -> None:
        self.failures, self.retry_after = failures, retry_after
        self.answered: list[int] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Unavailable

    def do_GET(self) -> None:
        failing = len(self.server.answered) < self.server.failures
        status = 503 if failing else 200
        self.server.answered.append(status)
        body = json.dumps({"ok": True}).encode() if status == 200 else b"down"
        self.send_response(status)
        if failing and self.server.retry_after is not None:
            self.send_header("Retry-After", self.server.retry_after)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unavailable(request):
    server = Unavailable(*request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.parametrize(
    "unavailable",
    [
        (2, None),  # jittered backoff
        (2, "0"),  # Retry-After in seconds
        (1, format_datetime(datetime.now(UTC) - timedelta(seconds=5), usegmt=True)),  # a date
    ],
    indirect=True,
)
def test_a_503_is_tried_again_until_the_server_answers(unavailable):
    with Client(unavailable.url, None, backoff_s=0.05) as client:
        assert client.request("GET", "/anything") == {"ok": True}
    assert unavailable.answered[-1] == 200 and unavailable.answered.count(503) >= 1


@pytest.mark.parametrize("unavailable", [(100, None)], indirect=True)
def test_retries_are_bounded_and_the_last_503_is_raised(unavailable):
    client = Client(unavailable.url, None, retries=2, backoff_s=0.01)
    with client, pytest.raises(FleetrunError, match="503"):
        client.request("GET", "/anything")
    assert unavailable.answered == [503, 503, 503]  # the first try and two more


def test_negative_retry_settings_are_refused_in_one_sentence():
    with pytest.raises(FleetrunError, match="cannot be negative"):
        Client("http://127.0.0.1:1", None, retries=-1)
