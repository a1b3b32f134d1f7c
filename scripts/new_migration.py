"""Write a new Alembic revision from the difference between the tables and the
migrations so far:  python scripts/new_migration.py "what changed" 0002

Review what it writes: autogenerate misses renames and data moves."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from fleetrun.server.store.migrate import config


def main() -> None:
    message, rev_id = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/schema.db")
        with engine.connect() as conn:
            command.upgrade(config(conn), "head")
            conn.commit()
            command.revision(config(conn), message=message, autogenerate=True, rev_id=rev_id)
    versions = Path(__file__).resolve().parents[1] / "src/fleetrun/server/store/migrations/versions"
    for path in versions.glob(f"{rev_id}_*.py"):
        text = path.read_text()
        # Migrations must not depend on today's tables module: UTCDateTime is a DateTime.
        text = re.sub(
            r"fleetrun\.server\.store\.tables\.UTCDateTime\(timezone=True\)",
            "sa.DateTime(timezone=True)",
            text,
        )
        text = text.replace("import fleetrun.server.store.tables\n", "")
        path.write_text(text)
        print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
