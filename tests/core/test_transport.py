"""Which hosts count as this machine, for plain HTTP."""

from __future__ import annotations

import pytest

from fleetrun.core.transport import is_loopback_host, plain_http_off_host


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),  # every interface
        ("::", False),
        ("10.0.0.5", False),
        ("fleet.example.com", False),  # names are not resolved
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host, expected):
    assert is_loopback_host(host) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8470", False),
        ("http://localhost:8470/v1", False),
        ("http://[::1]:8470", False),
        ("https://10.0.0.5:8470", False),
        ("HTTP://10.0.0.5:8470", True),
        ("http://10.0.0.5:8470", True),
        ("http://fleet.example.com", True),
        ("http://127.0.0.1.example.com:8470", True),
    ],
)
def test_plain_http_off_host(url, expected):
    assert plain_http_off_host(url) is expected
