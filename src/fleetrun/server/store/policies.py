"""Policies: IAM-grammar documents, built-in (in code) or custom (here), attached to
principals directly or through roles.

A document is checked in full before anything is stored, and kept as the operator
wrote it. Parsed documents are remembered by their text, never by their name alone,
so an update is seen on the very next request.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import ConflictError, NotFoundError
from fleetrun.core.policy import Policy as ParsedPolicy
from fleetrun.core.policy import parse_policy
from fleetrun.schemas import access as schemas
from fleetrun.server.store.tables import Attachment, Policy, RolePolicy, utcnow


@lru_cache(maxsize=1024)
def parsed(name: str, document: str) -> ParsedPolicy:
    return parse_policy(document, name)


def _text(document: str | dict[str, Any]) -> str:
    return document if isinstance(document, str) else json.dumps(document, indent=2)


def check_document(name: str, document: str | dict[str, Any], known_actions: Iterable[str]) -> str:
    """The document's text once it is valid (or a PolicyError naming fault and place)."""
    text = _text(document)
    policy = parse_policy(text, name)
    access.check_vocabulary(policy, known_actions)
    return text


def create_policy(
    session: Session,
    name: str,
    document: str | dict[str, Any],
    *,
    description: str | None,
    known_actions: Iterable[str],
) -> Policy:
    access.check_name("policy", name)
    if name in access.BUILTIN_POLICIES or session.get(Policy, name) is not None:
        raise ConflictError(
            f"A policy named {name!r} exists already: change it with `fleetrun policies "
            f"update {name} --file FILE`, or pick another name."
        )
    text = check_document(name, document, known_actions)
    now = utcnow()
    row = Policy(
        name=name, description=description, document=text, version=1, created_at=now, updated_at=now
    )
    session.add(row)
    session.flush()
    return row


def put_policy(
    session: Session,
    name: str,
    document: str | dict[str, Any],
    *,
    description: str | None,
    known_actions: Iterable[str],
) -> tuple[Policy, bool]:
    """Create or replace a custom policy; (row, created)."""
    access.check_name("policy", name)
    _not_builtin(name, "replaced")
    text = check_document(name, document, known_actions)
    row = session.get(Policy, name, with_for_update=True)
    now = utcnow()
    if row is None:
        row = Policy(
            name=name,
            description=description,
            document=text,
            version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row, True
    row.document = text
    row.description = description if description is not None else row.description
    row.version += 1
    row.updated_at = now
    return row, False


def _not_builtin(name: str, verb: str) -> None:
    if name in access.BUILTIN_POLICIES:
        raise ConflictError(
            f"{name} is a built-in policy and cannot be {verb}: create a policy of your own."
        )


def read_policy(session: Session, name: str) -> schemas.Policy:
    if name in access.BUILTIN_POLICIES:
        return _builtin_schema(name)
    row = session.get(Policy, name)
    if row is None:
        raise NotFoundError(f"No policy {name!r} exists; see `fleetrun policies list`.")
    return to_schema(row)


def read_policies(session: Session) -> list[schemas.Policy]:
    rows = session.execute(select(Policy).order_by(Policy.name)).scalars()
    return [_builtin_schema(n) for n in access.BUILTIN_POLICIES] + [to_schema(r) for r in rows]


def policy_exists(session: Session, name: str) -> bool:
    return name in access.BUILTIN_POLICIES or session.get(Policy, name) is not None


def delete_policy(session: Session, name: str) -> None:
    _not_builtin(name, "deleted")
    row = session.get(Policy, name)
    if row is None:
        raise NotFoundError(f"No policy {name!r} exists; see `fleetrun policies list`.")
    roles = list(
        session.execute(select(RolePolicy.role).where(RolePolicy.policy == name)).scalars()
    )
    principals = list(
        session.execute(
            select(Attachment.principal).where(Attachment.kind == "policy", Attachment.name == name)
        ).scalars()
    )
    if roles or principals:
        users = [f"role {r}" for r in roles] + [f"principal {p}" for p in principals]
        raise ConflictError(
            f"Policy {name!r} is still used by {', '.join(users)}: detach it first."
        )
    session.delete(row)


def load(session: Session, names: Iterable[str]) -> list[ParsedPolicy]:
    """The parsed policies of these names, built-in or custom (unknown names skipped)."""
    wanted = list(dict.fromkeys(names))
    found: dict[str, ParsedPolicy] = {
        n: access.BUILTIN_POLICIES[n] for n in wanted if n in access.BUILTIN_POLICIES
    }
    custom = [n for n in wanted if n not in found]
    if custom:
        rows = session.execute(select(Policy.name, Policy.document).where(Policy.name.in_(custom)))
        for name, document in rows:
            found[name] = parsed(name, document)
    return [found[n] for n in wanted if n in found]


def to_schema(row: Policy) -> schemas.Policy:
    return schemas.Policy(
        name=row.name,
        description=row.description,
        document=json.loads(row.document),
        builtin=False,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _builtin_schema(name: str) -> schemas.Policy:
    return schemas.Policy(
        name=name,
        description="built-in",
        document=access.BUILTIN_POLICY_DOCUMENTS[name],
        builtin=True,
    )
