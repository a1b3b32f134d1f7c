"""Who may do what: the caller behind a request, and every decision about it.

A route names its action (`authorize("SendCommand")`); the caller's effective policies
are read afresh for each request and decided by `fleetrun.core.access.decide` (under
every name of the action and the resource, fleetrun's and SSM's):

- before the route runs, on what is known then (the resource named in the path, the
  global keys): what no statement could allow is refused there (403);
- in the route, per resource once it is loaded (a node and its tags, a command and its
  document): `caller.require(...)` refuses, `caller.allows(...)` filters a listing, and
  `caller.denied_nodes(...)` says which targets of a command get AccessDenied.

Every denial passes through `deny`, the one place it is recorded (log and audit log);
whoever wants to react to denials (an event, an alert) hooks in there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from fleetrun.core import access
from fleetrun.core.errors import AccessDeniedError
from fleetrun.core.policy import Decision, Policy
from fleetrun.core.targets import Candidate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Denial:
    """A denied decision: who, what, on what, and the statement that decided it."""

    principal: str
    action: str
    resource: str
    reason: str
    matched_statements: list[dict[str, Any]]
    request_id: str | None
    source_ip: str | None
    fails_request: bool  # the request answered 403 (rather than one target skipped)


@dataclass(frozen=True)
class Caller:
    principal: str
    token_id: str | None = None
    source_ip: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    policies: tuple[Policy, ...] = ()
    request_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    on_denied: Callable[[Denial], None] | None = field(default=None, repr=False, compare=False)
    on_allowed: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def names(self) -> access.Foreign:
        """What of SSM's vocabulary the caller's policies name: worked out once per
        request, not once per decision (a command to N nodes makes N of them)."""
        return access.foreign(self.policies)

    def context(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The request's condition keys: the global ones, and `extra`."""
        return {**access.request_context(self.principal, self.source_ip, self.at), **(extra or {})}

    def decide(
        self, action: str, resource: str, context: Mapping[str, Any] | None = None
    ) -> Decision:
        """Decide under every name of the action and the resource (fleetrun's, SSM's)."""
        return access.decide(
            self.policies, action, resource, self.context(context), names=self.names
        )

    def allows(self, action: str, resource: str, context: Mapping[str, Any] | None = None) -> bool:
        return self.decide(action, resource, context).allowed

    def require(self, action: str, resource: str, context: Mapping[str, Any] | None = None) -> None:
        """Go on if the caller may, else raise AccessDeniedError (recorded)."""
        decision = self.decide(action, resource, context)
        if not decision.allowed:
            raise deny(self, access.action_name(action), resource, decision)
        if self.on_allowed is not None:
            self.on_allowed(resource)

    def denied_nodes(
        self, action: str, nodes: Iterable[Candidate], context: Mapping[str, Any] | None = None
    ) -> set[str]:
        """The nodes the caller may not act on (each decided with its own tags); every
        one is recorded as a denial that does not fail the request."""
        full = access.action_name(action)
        base = self.context(context)
        denied = set()
        for node in nodes:
            resource = access.frn("node", node.id)
            keys = {**base, **access.node_context(node.tags)}
            decision = access.decide(self.policies, full, resource, keys, names=self.names)
            if not decision.allowed:
                deny(self, full, resource, decision, fails_request=False)
                denied.add(node.id)
        return denied


def deny(
    caller: Caller,
    action: str,
    resource: str,
    decision: Decision,
    *,
    fails_request: bool = True,
) -> AccessDeniedError:
    """Record a denied decision (the one place: log, audit log, and whatever hooks in)
    and return the error to raise when the request fails with it."""
    reason = decision.reason(action, resource if resource != "*" else None)
    denial = Denial(
        principal=caller.principal,
        action=action,
        resource=resource,
        reason=reason,
        matched_statements=decision.matched_statements() if decision.explicit else [],
        request_id=caller.request_id,
        source_ip=caller.source_ip,
        fails_request=fails_request,
    )
    level = logging.INFO if fails_request else logging.DEBUG  # per-node ones: audit log
    log.log(level, "denied %s %s on %s: %s", caller.principal, action, resource, reason)
    if caller.on_denied is not None:
        caller.on_denied(denial)
    on = f" on {resource}" if resource != "*" else ""
    return AccessDeniedError(
        f"{caller.principal} may not perform {action}{on} ({decision.why()}): ask an "
        "administrator for a policy that allows it."
    )


def gate(caller: Caller, action: str, resource: str | None) -> Decision:
    """The decision before the route runs: full when the resource is named in the path
    and needs nothing loaded; otherwise partial (resource unknown, only the global keys
    known), so that only what nothing could allow is refused here."""
    if resource is not None:
        return access.decide(
            caller.policies, action, resource, caller.context(), names=caller.names
        )
    return access.decide(
        caller.policies, action, None, caller.context(), known=_known_at_gate, names=caller.names
    )


def _known_at_gate(key: str) -> bool:
    return access.is_global_key(key)
