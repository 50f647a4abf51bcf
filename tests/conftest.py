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
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from hub.netutil import free_port
from hub.pgserver import PostgresError
from hub.pgserver import binary as pg_binary

# --------------------------------------------------------------------------- Hypothesis

# Two shared cores and other suites running beside ours: wall-clock deadlines only cause flakes.
settings.register_profile("courthub", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
# HYPOTHESIS_PROFILE=long: every property (tests/test_fuzz.py: each decoder) tries >= 10,000 inputs.
settings.register_profile("long", parent=settings.get_profile("courthub"), max_examples=10_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "courthub"))


# --------------------------------------------------------------------------- PostgreSQL

PG_USER = "courthub"
PG_DATABASE = "courthub"
_PG_OS_USER = "postgres"  # initdb refuses to run as root (DESIGN.md §7)


def _pg_binary(name: str) -> str:
    """``initdb``/``pg_ctl`` from PATH, else from Debian's versioned directory; fail if absent."""
    try:
        return pg_binary(name)
    except PostgresError as exc:
        pytest.fail(f"{exc.message}: the PostgreSQL tests need the server binaries", pytrace=False)


def _as_pg_user(cmd: list[str]) -> list[str]:
    """Run ``cmd`` as the ``postgres`` OS user when we are root; as ourselves otherwise."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        pytest.fail("running as root but 'runuser' is missing: cannot run initdb as postgres", pytrace=False)
    return ["runuser", "-u", _PG_OS_USER, "--", *cmd]


def _run_pg(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_pg_user(cmd), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def _fail_pg(what: str, cmd: list[str], done: subprocess.CompletedProcess[str], log: Path | None = None) -> None:
    tail = ""
    if log is not None and log.exists():
        tail = "\n--- server log (tail) ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    pytest.fail(
        f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stdout}{done.stderr}{tail}",
        pytrace=False,
    )


class _PostgresCluster:
    """A throwaway cluster under a fresh temp directory owned by the ``postgres`` OS user."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="courthub-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.port = 0
        self.sock.mkdir()
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam(_PG_OS_USER)
            except KeyError:
                pytest.fail(f"running as root but there is no '{_PG_OS_USER}' OS user for initdb", pytrace=False)
            for path in (self.base, self.sock):
                os.chown(path, pg.pw_uid, pg.pw_gid)

    def start(self) -> None:
        initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
        cmd = [initdb, "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8", "--locale=C", "--no-sync"]
        done = _run_pg(cmd, self.base)
        if done.returncode != 0:
            _fail_pg("initdb", cmd, done)
        for attempt in range(3):  # another process may take the free port before postgres binds it
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c full_page_writes=off"  # throwaway data: speed over crash safety
            )
            cmd = [pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"]
            done = _run_pg(cmd, self.base)
            if done.returncode == 0:
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "could not bind" not in log or attempt == 2:
                _fail_pg("pg_ctl start", cmd, done, self.log)

    def create_database(self, name: str) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name is ours, not input

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.data.exists() and self.port:
            _run_pg([_pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], self.base)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def _postgres_cluster() -> Iterator[_PostgresCluster]:
    cluster = _PostgresCluster()
    try:
        cluster.start()
        cluster.create_database(PG_DATABASE)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(_postgres_cluster: _PostgresCluster) -> str:
    """SQLAlchemy URL of the ``courthub`` database in a throwaway PostgreSQL cluster.

    One cluster per test session (started on first use, about 2 s; stopped and deleted at the end),
    trust auth on 127.0.0.1 as superuser ``courthub``. The database is shared by every test that uses
    this fixture: prefer ``fresh_postgres_url`` for tests that create schema. Fails (never skips)
    when the PostgreSQL binaries are missing.
    """
    return _postgres_cluster.url(PG_DATABASE)


@pytest.fixture
def fresh_postgres_url(_postgres_cluster: _PostgresCluster) -> str:
    """SQLAlchemy URL of a new, empty database in the session's cluster (one per test, left behind)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    _postgres_cluster.create_database(name)
    return _postgres_cluster.url(name)
