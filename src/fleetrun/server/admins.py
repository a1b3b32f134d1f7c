"""Someone can always administer: no API change may leave the server without an
administrator who holds a working token.

An administrator is a principal whose effective policies allow everything
(`core.access.allows_everything`), such as one with the built-in Administrator role.
Revoking a token, deleting a principal, or detaching a policy or role checks, in its
own transaction, that an administrator credential existing before the change still
exists after it, and is refused (409) otherwise. Access lost anyway (a token file
deleted, a database restored) comes back with `fleetrun server reset-admin-token`,
run on the server's machine.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fleetrun.core import access
from fleetrun.core.errors import ConflictError
from fleetrun.server.db import Database, Tx
from fleetrun.server.settings import Settings
from fleetrun.server.store import audit as audit_store
from fleetrun.server.store import principals as principal_store
from fleetrun.server.store import tokens as token_store
from fleetrun.server.store.tables import ApiToken, Principal, utcnow

T = TypeVar("T")


def administrator_credential_exists(session: Session) -> bool:
    """Whether some principal that may do everything holds a working token."""
    holders = session.execute(
        select(ApiToken.principal)
        .join(Principal, Principal.name == ApiToken.principal)
        .where(
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
        )
        .distinct()
    ).scalars()
    names = sorted(holders, key=lambda name: name != access.ADMIN_PRINCIPAL)  # likeliest first
    return any(
        access.allows_everything(principal_store.effective_policies(session, name))
        for name in names
    )


def keeping_an_administrator(session: Session, change: Callable[[], T], what: str) -> T:
    """Make `change` in the caller's transaction, or raise ConflictError (and so roll it
    back) when it would take away the last administrator credential. `what` completes
    "... would leave no administrator with a working token"."""
    # Changes of this kind take turns (PostgreSQL runs writers in parallel): two
    # administrators revoking each other's last token at once must not both succeed.
    session.execute(
        select(Principal.name).where(Principal.name == access.ADMIN_PRINCIPAL).with_for_update()
    )
    before = administrator_credential_exists(session)
    result = change()
    session.flush()
    if before and not administrator_credential_exists(session):
        raise ConflictError(
            f"{what} would leave no administrator with a working token: create another "
            "administrator token first (`fleetrun tokens create admin`), then try again."
        )
    return result


def reset_admin_token(settings: Settings) -> str:
    """A new token for the built-in administrator (given back its Administrator role),
    written to admin.token (0600) and recorded in the audit log; the way back in when
    no administrator can sign in. Run on the server's machine, beside a running server
    or not."""
    return asyncio.run(_reset(settings))


async def _reset(settings: Settings) -> str:
    db = Database(settings.effective_database_url)
    try:
        await asyncio.to_thread(db.migrate)

        def reset(tx: Tx) -> str:
            principal_store.ensure_admin(tx.session)
            _, token = token_store.create_token(
                tx.session, access.ADMIN_PRINCIPAL, description="administrator (reset)"
            )
            audit_store.append_records(
                tx.session,
                [
                    {
                        "at": datetime.now(UTC),
                        "kind": "local",
                        "principal": access.ADMIN_PRINCIPAL,
                        "action": access.action_name("ResetAdminToken"),
                        "resource": access.frn("principal", access.ADMIN_PRINCIPAL),
                        "decision": "allow",
                        "detail": {"by": getpass.getuser(), "host": socket.gethostname()},
                    }
                ],
            )
            # Written before the commit: a token the file does not hold helps nobody.
            write_private(settings.admin_token_path, token + "\n")
            return token

        return await db.write(reset)
    finally:
        await db.close()


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a file only its owner may read."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
