"""Who may do what: the seam every route and service asks.

Each route names the action it performs (`fleetrun:SendCommand`, ...). The foundation
lets every valid token act; the access-control layer decides per action, resource
and condition keys behind this same call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Caller:
    principal: str
    token_id: str | None = None
    source_ip: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


class Authorizer:
    async def allowed(
        self,
        caller: Caller,
        action: str,
        resource: str = "*",
        context: dict[str, Any] | None = None,
    ) -> bool:
        return True
