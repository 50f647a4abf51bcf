"""Several processes of one node (``court-hub run`` and its workers) migrating one empty
PostgreSQL database at the same moment: the advisory lock lets one migrate and the others find
nothing left to do (without it, two would race to create the same tables)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

pytestmark = pytest.mark.postgres

MIGRATE = "import sys; from hub.store import Store; s = Store(sys.argv[1]); s.migrate(); print('migrated')"


def test_concurrent_migrations_of_an_empty_database(fresh_postgres_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, fresh_postgres_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip() == "migrated"
    engine = create_engine(fresh_postgres_url, poolclass=NullPool)
    with engine.connect() as conn:
        heads = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        tables = conn.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_name = 'outbox'")
        ).scalar()
    engine.dispose()
    assert len(heads) == len(set(heads)) >= 1
    assert tables == 1
