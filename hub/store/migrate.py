"""Apply the store's Alembic migrations programmatically (no alembic.ini needed on a node)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


# Key of the PostgreSQL advisory lock that serialises migrations of one database.
_LOCK_KEY = 0x636F757274687562  # "courthub"


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Upgrade to every head: workflow modules may add their tables as parallel branches.

    On PostgreSQL several processes of one node (``run`` and its ``worker`` processes) may start
    at once against an empty database; an advisory lock makes the second wait for the first and
    then find nothing left to do."""
    cfg = config()
    with engine.connect() as conn:
        locked = conn.dialect.name == "postgresql"
        if locked:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if locked:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()
