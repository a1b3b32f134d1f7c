"""Roles: named sets of policies, built-in (Reader, Operator, Administrator) or custom."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import ConflictError, NotFoundError
from fleetrun.schemas import access as schemas
from fleetrun.server.store import policies as policy_store
from fleetrun.server.store.tables import Attachment, Role, RolePolicy, utcnow


def _check_policies(session: Session, names: list[str]) -> list[str]:
    names = list(dict.fromkeys(names))
    for name in names:
        if not policy_store.policy_exists(session, name):
            raise NotFoundError(
                f"No policy {name!r} exists; create it with `fleetrun policies create {name} "
                "--file FILE` first."
            )
    return names


def create_role(
    session: Session, name: str, policies: list[str], *, description: str | None
) -> Role:
    access.check_name("role", name)
    if name in access.BUILTIN_ROLES or session.get(Role, name) is not None:
        raise ConflictError(f"A role named {name!r} exists already: pick another name.")
    names = _check_policies(session, policies)
    now = utcnow()
    row = Role(name=name, description=description, created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    session.add_all(RolePolicy(role=name, policy=p, position=i) for i, p in enumerate(names))
    return row


def put_role(
    session: Session, name: str, policies: list[str], *, description: str | None
) -> tuple[Role, bool]:
    """Create or replace a custom role's policies; (row, created)."""
    access.check_name("role", name)
    _not_builtin(name, "changed")
    row = session.get(Role, name, with_for_update=True)
    if row is None:
        return create_role(session, name, policies, description=description), True
    names = _check_policies(session, policies)
    session.execute(delete(RolePolicy).where(RolePolicy.role == name))
    session.add_all(RolePolicy(role=name, policy=p, position=i) for i, p in enumerate(names))
    row.description = description if description is not None else row.description
    row.updated_at = utcnow()
    return row, False


def _not_builtin(name: str, verb: str) -> None:
    if name in access.BUILTIN_ROLES:
        raise ConflictError(
            f"{name} is a built-in role and cannot be {verb}: create a role of your own."
        )


def role_exists(session: Session, name: str) -> bool:
    return name in access.BUILTIN_ROLES or session.get(Role, name) is not None


def role_policies(session: Session, names: list[str]) -> list[str]:
    """The policy names of these roles, in order (built-in roles resolved in code)."""
    out: list[str] = []
    custom = [n for n in names if n not in access.BUILTIN_ROLES]
    rows: dict[str, list[str]] = {}
    if custom:
        query = (
            select(RolePolicy.role, RolePolicy.policy)
            .where(RolePolicy.role.in_(custom))
            .order_by(RolePolicy.role, RolePolicy.position)
        )
        for role, policy in session.execute(query):
            rows.setdefault(role, []).append(policy)
    for name in names:
        out += list(access.BUILTIN_ROLES.get(name, ())) or rows.get(name, [])
    return out


def read_role(session: Session, name: str) -> schemas.Role:
    if name in access.BUILTIN_ROLES:
        return _builtin_schema(name)
    row = session.get(Role, name)
    if row is None:
        raise NotFoundError(f"No role {name!r} exists; see `fleetrun roles list`.")
    return to_schema(row, role_policies(session, [name]))


def read_roles(session: Session) -> list[schemas.Role]:
    rows = list(session.execute(select(Role).order_by(Role.name)).scalars())
    custom = [to_schema(r, role_policies(session, [r.name])) for r in rows]
    return [_builtin_schema(n) for n in access.BUILTIN_ROLES] + custom


def delete_role(session: Session, name: str) -> None:
    _not_builtin(name, "deleted")
    row = session.get(Role, name)
    if row is None:
        raise NotFoundError(f"No role {name!r} exists; see `fleetrun roles list`.")
    holders = list(
        session.execute(
            select(Attachment.principal).where(Attachment.kind == "role", Attachment.name == name)
        ).scalars()
    )
    if holders:
        raise ConflictError(
            f"Role {name!r} is still attached to {', '.join(holders)}: detach it first."
        )
    session.delete(row)


def to_schema(row: Role, policies: list[str]) -> schemas.Role:
    return schemas.Role(
        name=row.name,
        description=row.description,
        policies=policies,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _builtin_schema(name: str) -> schemas.Role:
    return schemas.Role(
        name=name,
        description=access.BUILTIN_ROLE_DESCRIPTIONS[name],
        policies=list(access.BUILTIN_ROLES[name]),
        builtin=True,
    )
