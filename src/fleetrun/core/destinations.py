"""Where the server itself may send: the addresses of server-side requests.

An API caller names URLs the *server* connects to (a run command's `outputUri` and
`errorUri`, a rule's or a channel's `webhook:` target). Left alone, that lets a caller
reach what only the server can: its own admin ports on loopback, a cloud metadata
service on 169.254.169.254, the private network behind it. So every such address is
decided here, by `DestinationPolicy.refusal`:

    in an allowed network (the operator's --allow-destination-cidr)   allowed
    loopback, link-local, private, multicast, or any other non-public refused
    one of the server's own (public) addresses                        refused
    otherwise (a public address)                                      allowed

Pure logic: the server checks a literal address when the URL is written (400), and
the address each connection actually goes to (a name is resolved once, checked, and
that very address is connected to), so a name that resolves elsewhere later (DNS
rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fleetrun.core.errors import ValidationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_HINT = (
    "give a public address, or ask the server's operator to allow that network "
    "(--allow-destination-cidr, FLEETRUN_ALLOW_DESTINATION_CIDRS)"
)


def parse_address(text: str) -> Address | None:
    """An IP address written as one (`[::1]`, `fe80::1%eth0` too), else None (a name)."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def parse_networks(
    values: Iterable[str], setting: str = "allow_destination_cidrs"
) -> tuple[Network, ...]:
    """CIDRs such as `10.0.0.0/8` or `fd00::/8` (a bare address is one host); an error
    names the `setting` they came from."""
    networks = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValidationError(
                f"Setting {setting}: {text!r} is not a network: give CIDRs "
                "such as 10.0.0.0/8 or fd00::/8, comma-separated."
            ) from exc
    return tuple(networks)


@dataclass(frozen=True)
class DestinationPolicy:
    allowed: tuple[Network, ...] = ()
    own: frozenset[Address] = field(default_factory=frozenset)  # the server's addresses

    def refusal(self, address: Address) -> str | None:
        """Why the server may not connect to `address` (a phrase), or None."""
        if any(address.version == n.version and address in n for n in self.allowed):
            return None
        if address.is_unspecified:
            return "the unspecified address (it reaches this machine)"
        if address.is_loopback:
            return "a loopback address"
        if address.is_link_local:
            return "a link-local address (where cloud metadata services answer)"
        if address.is_multicast:
            return "a multicast address"
        if address.is_private:
            return "a private address"
        if not address.is_global:
            return "not a public address"
        if address in self.own:
            return "one of this server's own addresses"
        return None

    def check_url(self, url: str, what: str) -> None:
        """When a URL is written: refuse one whose host is a literal address the server
        may not send to (a name is decided when it is connected to)."""
        host = urlsplit(url).hostname or ""
        address = parse_address(host)
        reason = self.refusal(address) if address is not None else None
        if reason is not None:
            raise ValidationError(
                f"{what} points to {address}, {reason}, and the server does not send there: "
                f"{ALLOW_HINT}."
            )
