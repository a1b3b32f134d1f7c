"""Fixtures for the server's parts on a real database of their own."""

from __future__ import annotations

import pytest

from fleetrun.server.db import Database
from tests import harness


@pytest.fixture
async def db(tmp_path):
    """A migrated database of this test's own (SQLite, or PostgreSQL when configured)."""
    test_db = harness.TestDatabase(tmp_path)
    database = Database(test_db.url)
    database.migrate()
    try:
        yield database
    finally:
        await database.close()
        test_db.drop()
