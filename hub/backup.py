"""Backup and restore of a node, and the resync a restored node asks of its neighbours.

**Backup** (online): ``VACUUM INTO`` copies the SQLite store inside one read transaction, so the
copy is a consistent snapshot while the node keeps writing (WAL mode never blocks the reader).
The archive (tar.gz, 0600: it holds the court key) carries the snapshot, the node's home files and
a manifest with the court and the snapshot time.

**Restore** (node stopped): puts the files back and records a *resync marker*: the snapshot time
and every neighbour (parent and children). Everything the node received after the snapshot is gone
from its store, but its neighbours still have it, marked delivered. On the next link handshake
(protocol version 2) the restored node asks each neighbour to "resend what you delivered to me
since T" (``Hello.resend_since_ms`` towards the parent, ``Welcome.resend_since_ms`` towards a
child); the neighbour turns those outbox rows back to pending and the link resends them in order.
What the restored node still has is deduped by its inbox, so nothing arrives twice; what it lost
is committed again, so nothing is missing. A neighbour is crossed off the marker only once it has
answered, so a crash in between just asks again.

Limits: a neighbour keeps delivered rows for ``delivered_retention_days``; a backup older than
that cannot be fully replayed (the neighbour audits how far back it could go). Envelopes the node
itself originated after the snapshot are not recovered into its own store (its neighbours have them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.config import Home
from hub.errors import ConfigError, InvalidInput
from hub.natsserver import pid_alive

FORMAT = 1
MANIFEST = "manifest.json"
SNAPSHOT = "store.db"
MARKER = "resync.json"
# Outbox rows delivered up to this long before the snapshot are resent too: the neighbour's clock
# may differ from the restored node's; anything resent twice is deduped by the receiver's inbox.
SKEW_MARGIN_MS = 10 * 60_000
# Home files that make up a node besides its store (paths relative to the home).
_HOME_FILES = ("config.toml", "keys/court.key", "keys/tls.key", "tls.crt", "parent.crt", "approvals.toml")


@dataclass(frozen=True)
class Manifest:
    court: str
    created_at_ms: int
    format: int = FORMAT

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, ensure_ascii=False).encode()

    @classmethod
    def parse(cls, raw: bytes, source: str) -> Manifest:
        try:
            data = json.loads(raw)
            manifest = cls(str(data["court"]), int(data["created_at_ms"]), int(data["format"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"{source}: {MANIFEST} is not a court-hub backup manifest ({exc})") from None
        if manifest.format != FORMAT:
            raise InvalidInput(
                f"{source}: backup format {manifest.format} is not supported (this version reads {FORMAT})"
            )
        return manifest


def backup(home: Home, out: Path, now_ms: int | None = None) -> Manifest:
    """Write a consistent backup of the node at ``home`` to ``out`` (running or not)."""
    config = home.load()
    if config.store.url and not config.store.url.startswith("sqlite"):
        raise ConfigError(
            "court-hub backup copies SQLite stores; this node's store is "
            f"{config.store.url.split(':', 1)[0]}: back it up with that database's own tools (pg_dump)"
        )
    if not home.database.exists():
        raise InvalidInput(f"{home.database} does not exist: nothing to back up")
    manifest = Manifest(str(config.court), now_ms if now_ms is not None else int(time.time() * 1000))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".backup-") as tmp:
        snapshot = Path(tmp) / SNAPSHOT
        conn = sqlite3.connect(home.database, timeout=30)
        try:
            conn.execute("VACUUM INTO ?", (str(snapshot),))
        finally:
            conn.close()
        partial = out.with_name(out.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            _add_bytes(tar, MANIFEST, manifest.to_json())
            tar.add(snapshot, SNAPSHOT)
            for rel in _HOME_FILES:
                if (home.path / rel).exists():
                    tar.add(home.path / rel, f"home/{rel}")
        partial.replace(out)
    return manifest


def restore(home: Home, archive: Path, neighbours: Iterable[str] | None = None) -> tuple[Manifest, list[str]]:
    """Restore the node at ``home`` from ``archive`` (the node must be stopped).

    Returns the manifest and the neighbours that will be asked to resend."""
    if home.pid_file.exists() and _alive(home.pid_file):
        raise InvalidInput(f"the node at {home.path} is running (pid file {home.pid_file}): stop it before restoring")
    try:
        tar = tarfile.open(archive, "r:gz")  # noqa: SIM115 - closed by the `with tar` below
    except (OSError, tarfile.TarError) as exc:
        raise InvalidInput(f"{archive}: not a readable court-hub backup ({exc})") from None
    with tar:
        manifest = Manifest.parse(_read(tar, MANIFEST, archive), str(archive))
        if home.config_file.exists():
            court = str(home.load().court)
            if court != manifest.court:
                raise InvalidInput(f"{archive} is a backup of {manifest.court}; the node at {home.path} is {court}")
        members = {m.name: m for m in tar.getmembers()}
        snapshot = _read(tar, SNAPSHOT, archive)
        files: dict[str, bytes] = {}
        for rel in _HOME_FILES:
            member = members.get(f"home/{rel}")
            if member is not None:
                files[rel] = _read(tar, member.name, archive)
    _check_sqlite(snapshot, archive)
    home.path.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        _write_private(home.path / rel, data)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            (home.database.parent / (home.database.name + suffix)).unlink()
    _write_private(home.database, snapshot)
    peers = sorted(set(neighbours) if neighbours is not None else _neighbours(home))
    ResyncMarker(home).save(manifest.created_at_ms, peers)
    return manifest, peers


class ResyncMarker:
    """Which neighbours a restored node still has to ask to resend, and since when."""

    def __init__(self, home: Home) -> None:
        self.path = home.path / MARKER
        self.since_ms = 0
        self.peers: set[str] = set()
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text())
                self.since_ms = int(data["since_ms"])
                self.peers = {str(p) for p in data["peers"]}
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{self.path}: unreadable resync marker ({exc}); restore again") from None

    def since_for(self, peer: str) -> int:
        """The time to ask ``peer`` to resend from, or 0 when it need not."""
        return self.since_ms if peer in self.peers else 0

    def done(self, peer: str) -> None:
        if peer in self.peers:
            self.save(self.since_ms, sorted(self.peers - {peer}))

    def save(self, since_ms: int, peers: list[str]) -> None:
        self.since_ms, self.peers = since_ms, set(peers)
        if not peers:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"since_ms": since_ms, "peers": peers}, ensure_ascii=False))
        tmp.replace(self.path)


def _neighbours(home: Home) -> list[str]:
    config = home.load()
    peers = [config.parent.court] if config.parent else []
    conn = sqlite3.connect(f"file:{home.database}?mode=ro", uri=True)
    try:
        peers += [row[0] for row in conn.execute("SELECT court FROM children")]
    finally:
        conn.close()
    return peers


def _check_sqlite(data: bytes, archive: Path) -> None:
    if not data.startswith(b"SQLite format 3\x00"):
        raise InvalidInput(f"{archive}: {SNAPSHOT} is not an SQLite database")
    with tempfile.NamedTemporaryFile(suffix=".db") as tmp:
        tmp.write(data)
        tmp.flush()
        conn = sqlite3.connect(tmp.name)
        try:
            result = conn.execute("PRAGMA integrity_check").fetchone()
        finally:
            conn.close()
    if result is None or result[0] != "ok":
        raise InvalidInput(f"{archive}: {SNAPSHOT} fails SQLite's integrity check: {result}")


def _read(tar: tarfile.TarFile, name: str, archive: Path) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise InvalidInput(f"{archive}: no {name} in the archive") from None
    if not member.isfile():
        raise InvalidInput(f"{archive}: {name} is not a regular file")
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".restoring")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _alive(pid_file: Path) -> bool:
    try:
        return pid_alive(int(pid_file.read_text().strip()))
    except (ValueError, OSError):
        return False


def describe(manifest: Manifest) -> dict[str, Any]:
    return {"court": manifest.court, "created_at_ms": manifest.created_at_ms, "format": manifest.format}
