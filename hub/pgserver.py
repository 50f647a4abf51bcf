"""A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) for benches and demos outside pytest.

The scale-out bench (``court-hub bench scaleout``) runs a node and its workers on PostgreSQL, as a
court's real deployment would; this starts one under a temp directory and removes it afterwards::

    with TempPostgres() as pg:
        url = pg.create_database("courthub")   # postgresql+psycopg://courthub@127.0.0.1:PORT/courthub

Same recipe as the test fixtures (tests/conftest.py, DESIGN.md §7): binaries from PATH or Debian's
``/usr/lib/postgresql/*/bin``; as root, ``initdb`` and ``pg_ctl`` run as the ``postgres`` OS user
(``initdb`` refuses root); loopback only, trust authentication, fsync off — throwaway data, never a
court's store.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg

from hub.errors import Unavailable
from hub.netutil import free_port

__all__ = ["PostgresError", "TempPostgres"]

PG_USER = "courthub"
_PG_OS_USER = "postgres"


class PostgresError(Unavailable):
    """The throwaway PostgreSQL cluster could not be created, started or used."""


def binary(name: str) -> str:
    """A PostgreSQL server binary from PATH, else from Debian's versioned directory (newest)."""
    found = shutil.which(name)
    if found:
        return found
    versioned = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else -1,
        reverse=True,
    )
    if versioned:
        return str(versioned[0])
    raise PostgresError(
        f"PostgreSQL's {name!r} is not on PATH nor in /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql)"
    )


class TempPostgres:
    """One PostgreSQL server on a free loopback port, its data under a fresh temp directory."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="courthub-pg-"))
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.log = self.base / "postgres.log"
        self.port = 0
        self._started = False

    def _as_pg_user(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        if shutil.which("runuser") is None:
            raise PostgresError("running as root but 'runuser' is missing: cannot run initdb as postgres")
        return ["runuser", "-u", _PG_OS_USER, "--", *cmd]

    def _run(self, cmd: list[str], what: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self._as_pg_user(cmd), cwd=self.base, capture_output=True, text=True, timeout=120, check=False
        )
        if check and done.returncode != 0:
            tail = ""
            if self.log.exists():
                tail = "\n" + "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise PostgresError(f"{what} failed (exit {done.returncode}): {done.stdout}{done.stderr}{tail}")
        return done

    def start(self) -> Self:
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam(_PG_OS_USER)
            except KeyError:
                raise PostgresError(f"running as root but there is no {_PG_OS_USER!r} OS user for initdb") from None
            for path in (self.base, self.sock):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        initdb, pg_ctl = binary("initdb"), binary("pg_ctl")
        self._run(
            [initdb, "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8", "--locale=C", "--no-sync"],
            "initdb",
        )
        for attempt in range(3):  # another process may take the free port before postgres binds it
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=200 "
                "-c fsync=off -c full_page_writes=off"
            )
            cmd = [pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"]
            done = self._run(cmd, "pg_ctl start", check=False)
            if done.returncode == 0:
                self._started = True
                return self
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "could not bind" not in log or attempt == 2:
                self._run(cmd, "pg_ctl start")  # raises with the log
        raise PostgresError("PostgreSQL did not start")  # pragma: no cover

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, underscores) and return its SQLAlchemy URL."""
        if not name.replace("_", "").isalnum():
            raise PostgresError(f"database name {name!r} must be letters, digits and underscores")
        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if self._started:
            self._run([binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], "pg_ctl stop", check=False)
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
