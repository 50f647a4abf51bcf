"""Shared pytest fixtures for court-hub.

Put a fixture here only when more than one test module needs it; give each concern its own section
(banner comment), a docstring saying what the fixture yields and what it costs, and keep helpers
private (``_name``). Network ports come from :func:`hub.netutil.free_port`.

Sections:

* Hypothesis settings.
* PostgreSQL: ``postgres_url`` (session: one throwaway cluster) and ``fresh_postgres_url``
  (function: an empty database of its own in that cluster).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from hub.pgserver import PostgresError, TempPostgres

# --------------------------------------------------------------------------- Hypothesis

# Two shared cores and other suites running beside ours: wall-clock deadlines only cause flakes.
settings.register_profile("courthub", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
# HYPOTHESIS_PROFILE=long: every property (tests/test_fuzz.py: each decoder) tries >= 10,000 inputs.
settings.register_profile("long", parent=settings.get_profile("courthub"), max_examples=10_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "courthub"))


# --------------------------------------------------------------------------- PostgreSQL

PG_DATABASE = "courthub"


@pytest.fixture(scope="session")
def _postgres_cluster() -> Iterator[TempPostgres]:
    """The session's throwaway cluster (hub.pgserver, also used by `court-hub bench scaleout`)."""
    cluster = TempPostgres()
    try:
        cluster.start()
        cluster.create_database(PG_DATABASE)
        yield cluster
    except PostgresError as exc:
        pytest.fail(f"{exc.message} (the PostgreSQL tests need the server binaries)", pytrace=False)
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(_postgres_cluster: TempPostgres) -> str:
    """SQLAlchemy URL of the ``courthub`` database in a throwaway PostgreSQL cluster.

    One cluster per test session (started on first use, about 2 s; stopped and deleted at the end),
    trust auth on 127.0.0.1 as superuser ``courthub``. The database is shared by every test that uses
    this fixture: prefer ``fresh_postgres_url`` for tests that create schema. Fails (never skips)
    when the PostgreSQL binaries are missing.
    """
    return _postgres_cluster.url(PG_DATABASE)


@pytest.fixture
def fresh_postgres_url(_postgres_cluster: TempPostgres) -> str:
    """SQLAlchemy URL of a new, empty database in the session's cluster (one per test, left behind)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    _postgres_cluster.create_database(name)
    return _postgres_cluster.url(name)
