"""The HTTP client of server-side requests (output destinations, webhooks), which
connects only where `fleetrun.core.destinations` allows.

httpcore, under httpx, opens every connection through a network backend; this one
resolves the name once, decides each address, and connects to the first allowed
address itself: the address decided is the address connected to, whatever the name
resolves to a moment later. TLS still verifies the certificate against the name in
the URL. Proxies from the environment are not used (the proxy, not the server, would
pick the address); redirects are not followed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from fleetrun.core.destinations import (
    ALLOW_HINT,
    Address,
    DestinationPolicy,
    parse_address,
    parse_networks,
)
from fleetrun.core.errors import ValidationError


class DestinationRefusedError(ValidationError):
    """The server would not connect to where a destination's name led."""


class GuardedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        refused = None
        for address in await _resolve(host, port, timeout):
            reason = self.policy.refusal(address)
            if reason is None:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            refused = refused or f"{host} is {address}, {reason}"
        raise DestinationRefusedError(
            f"The server does not connect there: {refused}; {ALLOW_HINT}."
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefusedError("The server does not connect to local sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, timeout_s: float | None) -> list[Address]:
    literal = parse_address(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
        )
    except (OSError, TimeoutError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    found: list[Address] = []
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address is not None and address not in found:
            found.append(address)
    return found


def own_addresses(host: str) -> frozenset[Address]:
    """This server's addresses, as far as its names tell (loopback and private ones are
    refused anyway): its host name's, its FQDN's, and the one it listens on."""
    found: set[Address] = set()
    for name in {socket.gethostname(), socket.getfqdn(), host}:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except OSError:
            continue
        for info in infos:
            address = parse_address(str(info[4][0]))
            if address is not None:
                found.add(address)
    return frozenset(a for a in found if not a.is_unspecified)


def policy_for(allowed_cidrs: str, host: str) -> DestinationPolicy:
    return DestinationPolicy(parse_networks(allowed_cidrs.split(",")), own_addresses(host))


def guarded_client(policy: DestinationPolicy, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for server-side requests: connects only where `policy` allows."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx takes no network backend of its own: its pool is replaced by one that has
    # ours (the same pool httpx builds, with verification on).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl.create_default_context(), network_backend=GuardedBackend(policy)
    )
    return httpx.AsyncClient(transport=transport, trust_env=False, follow_redirects=False, **kwargs)
