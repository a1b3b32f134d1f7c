"""Whether a connection stays on this machine: plain HTTP is allowed only there.

A bearer token or a node's traffic sent over plain HTTP to another host can be read
and replayed by anyone on the path, so the server will not listen off loopback
without TLS, and the CLI, the SDK and the agent will not speak plain HTTP to another
host, unless told to in so many words (`--insecure-http`, `--insecure`).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOCALHOST_NAMES = ("localhost", "localhost.", "ip6-localhost")


def is_loopback_host(host: str) -> bool:
    """True for a loopback address or the name localhost. Other names are not
    resolved, so not assumed local; 0.0.0.0 and :: mean every interface."""
    host = host.strip().lower().removeprefix("[").removesuffix("]")
    if host in LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname or "")


def plain_http_off_host(url: str) -> bool:
    """True when `url` is plain HTTP to a host that may not be this machine."""
    return url.lower().startswith("http://") and not is_loopback_url(url)
