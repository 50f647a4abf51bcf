"""``court-hub``: the command line of a hub node.

Every command takes ``--home`` (default ``$COURTHUB_HOME``) and, where it prints data, ``--json``.
Errors exit non-zero with one line naming the cause; no traceback reaches the user.
"""

from __future__ import annotations

import contextlib

import typer

import hub.agency.routing  # noqa: F401 - registers the agency.* envelope kinds (audit verify opens them)
from hub.cli import agency_cmds, backup_cmds, case_mgmt_cmds, command_cmds, entrust_cmds, node_cmds, supervise_cmds
from hub.cli.output import fail_from
from hub.cli.record_cmds import audit_app, case_app, directive_app
from hub.errors import CourtHubError

app = typer.Typer(
    name="court-hub",
    help="Hub node of a court enforcement command center (执行指挥中心).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(node_cmds.init)
app.command()(node_cmds.token)
app.command()(node_cmds.join)
app.command()(node_cmds.run)
app.command("status")(agency_cmds.status)  # node_cmds.status plus the agency section
app.command()(node_cmds.ping)
app.command()(node_cmds.revoke)
app.add_typer(directive_app, name="directive")
app.add_typer(audit_app, name="audit")
app.add_typer(case_app, name="case")
agency_cmds.register(app)
entrust_cmds.register(app)
command_cmds.register(app)
supervise_cmds.register(app)
case_mgmt_cmds.register(app)
backup_cmds.register(app)


def _register_optional() -> None:
    """Commands whose modules pull in heavier dependencies are imported lazily."""
    from hub.cli.bench_cmds import bench_app
    from hub.cli.chaos_cmd import chaos
    from hub.cli.demo_cmd import demo

    app.add_typer(bench_app, name="bench")
    app.command()(demo)
    app.command()(chaos)


def main() -> None:
    with contextlib.suppress(ImportError):
        _register_optional()
    try:
        app()
    except CourtHubError as exc:
        try:
            fail_from(exc)
        except typer.Exit as done:  # outside typer's own handling: exit quietly, no traceback
            raise SystemExit(done.exit_code) from None
