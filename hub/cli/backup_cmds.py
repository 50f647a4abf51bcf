"""``court-hub backup`` and ``court-hub restore`` (hub.backup)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hub import backup as backups
from hub.cli.node_cmds import HomeOpt, JsonOpt
from hub.cli.output import console, emit_json
from hub.clock import iso
from hub.config import Home


def backup(
    home: HomeOpt,
    out: Annotated[Path, typer.Option("--out", help="Archive to write (tar.gz, created 0600: it holds the keys).")],
    json_out: JsonOpt = False,
) -> None:
    """Back up the node (online: the running node keeps serving) to one archive."""
    manifest = backups.backup(Home(home), out)
    result = {**backups.describe(manifest), "archive": str(out), "bytes": out.stat().st_size}
    if json_out:
        emit_json(result)
        return
    when = iso(manifest.created_at_ms)
    console.print(f"[green]备份完成[/] {manifest.court} → {out} ({result['bytes']} bytes, snapshot {when})")
    console.print("The archive holds the court's private keys: keep it as safe as the node itself.")


def restore(
    home: HomeOpt,
    archive: Annotated[Path, typer.Argument(help="Archive from `court-hub backup`.", exists=True, dir_okay=False)],
    json_out: JsonOpt = False,
) -> None:
    """Restore a stopped node from a backup; on its next start its neighbours resend what it missed."""
    manifest, peers = backups.restore(Home(home), archive)
    result = {**backups.describe(manifest), "home": str(home), "resend_from": peers}
    if json_out:
        emit_json(result)
        return
    console.print(f"[green]恢复完成[/] {manifest.court} from the snapshot of {iso(manifest.created_at_ms)}")
    if peers:
        console.print(f"On start, these neighbours will resend what they delivered since then: {', '.join(peers)}")


def register(app: typer.Typer) -> None:
    app.command()(backup)
    app.command()(restore)
