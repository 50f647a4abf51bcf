"""The throwaway PostgreSQL cluster from conftest.py answers queries through SQLAlchemy."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.postgres


def test_postgres_url_answers_queries(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://courthub@127.0.0.1:")
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select current_database(), current_user")).one() == ("courthub", "courthub")
            version = conn.execute(text("show server_version_num")).scalar_one()
            assert int(version) >= 150000
            assert conn.execute(text("select 1 + 1")).scalar_one() == 2
    finally:
        engine.dispose()


def test_fresh_database_is_empty_and_separate(postgres_url: str, fresh_postgres_url: str) -> None:
    assert fresh_postgres_url != postgres_url
    engine = create_engine(fresh_postgres_url)
    try:
        with engine.begin() as conn:
            tables = conn.execute(text("select count(*) from pg_tables where schemaname = 'public'")).scalar_one()
            assert tables == 0
            conn.execute(text("create table t (id int primary key, name text)"))
            conn.execute(text("insert into t values (1, '豫1402')"))
        with engine.connect() as conn:
            assert conn.execute(text("select name from t")).scalar_one() == "豫1402"
    finally:
        engine.dispose()
