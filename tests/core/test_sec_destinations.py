"""Which addresses the server itself may send to (`fleetrun.core.destinations`)."""

from __future__ import annotations

import ipaddress

import pytest

from fleetrun.core.destinations import DestinationPolicy, parse_address, parse_networks
from fleetrun.core.errors import ValidationError

OWN = frozenset({ipaddress.ip_address("203.0.113.7"), ipaddress.ip_address("8.8.4.4")})
NONE = DestinationPolicy(own=OWN)
LOOPBACK_ALLOWED = DestinationPolicy(parse_networks(["127.0.0.0/8", "fd00::/8"]), OWN)


@pytest.mark.parametrize(
    ("policy", "address", "refused"),
    [
        (NONE, "93.184.216.34", None),
        (NONE, "2606:4700::1111", None),
        (NONE, "127.0.0.1", "a loopback address"),
        (NONE, "127.8.9.10", "a loopback address"),
        (NONE, "::1", "a loopback address"),
        (NONE, "::ffff:127.0.0.1", "a loopback address"),
        (NONE, "169.254.169.254", "a link-local address (where cloud metadata services answer)"),
        (NONE, "fe80::1%eth0", "a link-local address (where cloud metadata services answer)"),
        (NONE, "10.0.0.1", "a private address"),
        (NONE, "172.16.5.4", "a private address"),
        (NONE, "192.168.0.1", "a private address"),
        (NONE, "fd12::1", "a private address"),
        (NONE, "0.0.0.0", "the unspecified address (it reaches this machine)"),
        (NONE, "::", "the unspecified address (it reaches this machine)"),
        (NONE, "100.64.0.1", "not a public address"),
        (NONE, "224.0.0.1", "a multicast address"),
        (NONE, "8.8.4.4", "one of this server's own addresses"),
        (LOOPBACK_ALLOWED, "127.0.0.1", None),
        (LOOPBACK_ALLOWED, "::ffff:127.0.0.1", None),
        (LOOPBACK_ALLOWED, "fd00::5", None),
        (LOOPBACK_ALLOWED, "::1", "a loopback address"),
        (LOOPBACK_ALLOWED, "10.0.0.1", "a private address"),
        (LOOPBACK_ALLOWED, "8.8.4.4", "one of this server's own addresses"),
    ],
)
def test_refusal(policy, address, refused):
    parsed = parse_address(address)
    assert parsed is not None
    assert policy.refusal(parsed) == refused


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://hooks.example.com/x", False),  # a name: decided when connecting
        ("http://localhost:8080/x", False),  # a name too
        ("http://93.184.216.34/x", False),
        ("http://127.0.0.1:8470/internal", True),
        ("http://[::1]/x", True),
        ("http://169.254.169.254/latest/meta-data/", True),
        ("s3://bucket/key", False),
    ],
)
def test_check_url_refuses_literal_internal_addresses_only(url, refused):
    if refused:
        with pytest.raises(ValidationError, match="--allow-destination-cidr"):
            NONE.check_url(url, "outputUri")
    else:
        NONE.check_url(url, "outputUri")


def test_a_bad_network_is_named():
    with pytest.raises(ValidationError, match=r"'10\.0\.0\.0/33' is not a network"):
        parse_networks(["10.0.0.0/8", "10.0.0.0/33"])
    assert parse_networks(["", " 10.0.0.1 "]) == (ipaddress.ip_network("10.0.0.1/32"),)
