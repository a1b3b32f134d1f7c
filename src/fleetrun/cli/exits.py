"""The exit codes of `fleetrun`: one per kind of failure, so that a script can tell a
node that failed from a typo, a refused token, a server that is down or a wait that ran
out (docs/cli.md has the table).

    0    OK                everything asked for happened (every node succeeded)
    1    FAILED            the command failed on a node (a script, a time-out, a cancel,
                           AccessDenied, Undeliverable, Terminated); a check said no
    2    USAGE             bad usage: an unknown option, a malformed value, a file that
                           cannot be read, a name or id that does not exist, a target
                           that matches no node, a request the server refused as given
    3    ACCESS            authentication or authorization refused (401, 403)
    4    NO_SERVER         the server could not be reached (connection, TLS)
    5    WAIT_TIMEOUT      --wait-timeout passed while nodes still ran (they go on)
    6    NODES_UNREACHABLE nodes still Delayed after --unreachable-after (queued, not
                           cancelled), and no node failed
    7    SERVER            the server failed or throttled (5xx, 429): try again later
    130  INTERRUPTED       Ctrl-C
"""

from __future__ import annotations

from enum import IntEnum

from fleetrun.core.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConflictError,
    ConnectionError_,
    FleetrunError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)


class Exit(IntEnum):
    OK = 0  # everything asked for happened
    FAILED = 1  # the command failed on at least one node
    USAGE = 2  # the request was wrong as given: change it
    ACCESS = 3  # the token is missing, wrong or not allowed this
    NO_SERVER = 4  # no answer from the server (connection refused, DNS, TLS)
    WAIT_TIMEOUT = 5  # the wait ended before the command did
    NODES_UNREACHABLE = 6  # some nodes never got it while we waited
    SERVER = 7  # the server failed or is throttling: the same request may work later
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


def for_error(exc: FleetrunError) -> Exit:
    """The exit code for an error the CLI shows as its one sentence."""
    if isinstance(exc, AuthenticationError | AccessDeniedError):
        return Exit.ACCESS
    if isinstance(exc, ConnectionError_):
        return Exit.NO_SERVER
    if isinstance(exc, ValidationError | NotFoundError | ConflictError | PayloadTooLargeError):
        return Exit.USAGE
    return Exit.SERVER
