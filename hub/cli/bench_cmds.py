"""``court-hub bench …``: measurements that print figures and ratios measured side by side."""

from __future__ import annotations

from typing import Annotated

import typer

from hub.cli.output import console, emit_json, table

bench_app = typer.Typer(help="Benchmarks (figures and ratios measured side by side in one run).", no_args_is_help=True)


@bench_app.command("link")
def bench_link(
    messages: Annotated[int, typer.Option("--messages", "-n", min=100, max=1_000_000)] = 20_000,
    size: Annotated[int, typer.Option(min=16, max=65536, help="Message size in bytes.")] = 1024,
    rounds: Annotated[int, typer.Option(min=10, max=10_000, help="4-hop latency samples.")] = 200,
    repeats: Annotated[int, typer.Option(min=1, max=20, help="Alternating raw/relay throughput rounds.")] = 3,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Raw grpc.aio bidi vs the durable, sealed relay over one link; 4-hop latency."""
    from hub.bench.link import run

    result = run(messages, size, rounds, repeats=repeats)
    if json_out:
        emit_json(result)
        return
    table(
        "bench link",
        ["figure", "value"],
        [[k, v] for k, v in result.items()],
    )
    console.print(f"ratio relay/raw = {result['ratio']} (target ≥ {result['target_ratio']})")


@bench_app.command("outage")
def bench_outage(
    count: Annotated[int, typer.Option("--count", "-n", min=100, max=1_000_000, help="Envelopes queued.")] = 100_000,
    size: Annotated[int, typer.Option(min=16, max=65536, help="Envelope payload size in bytes.")] = 256,
    pings: Annotated[int, typer.Option(min=10, max=1000, help="Idle sibling pings (baseline).")] = 100,
    crash_at: Annotated[
        float, typer.Option("--crash-at", min=0.0, max=0.99, help="SIGKILL the child once this fraction arrived.")
    ] = 0.0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A child offline while COUNT envelopes queue for it; drain in order on reconnect; RSS; sibling latency."""
    from hub.bench.outage import run

    result = run(count, size, pings, crash_at=crash_at)
    if json_out:
        emit_json(result)
    else:
        table("bench outage", ["figure", "value"], [[k, v] for k, v in result.items()])
    if result["violations"]:
        for violation in result["violations"]:
            console.print(f"VIOLATION: {violation}")
        raise typer.Exit(1)


@bench_app.command("scaleout")
def bench_scaleout(
    jobs: Annotated[int, typer.Option("--jobs", "-n", min=50, max=100_000, help="Agency jobs per phase.")] = 1000,
    repeats: Annotated[int, typer.Option(min=1, max=20, help="Alternating 1-worker/2-worker phases (medians).")] = 1,
    store_url: Annotated[
        str, typer.Option("--store-url", help="An empty PostgreSQL database (default: a throwaway cluster via pg_ctl).")
    ] = "",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Node + 1 vs 2 `court-hub worker` on PostgreSQL and a 3-server NATS cluster; kill a server and a worker."""
    from hub.bench.scaleout import run

    result = run(jobs, repeats=repeats, store_url=store_url or None)
    if json_out:
        emit_json(result)
    else:
        console.print(result["configuration"])
        flat = {k: v for k, v in result.items() if not isinstance(v, dict | list) and k != "configuration"}
        table("bench scaleout", ["figure", "value"], [[k, v] for k, v in flat.items()])
        table("recovery (ms from the kills)", ["figure", "value"], [[k, v] for k, v in result["recovery"].items()])
        table("checks", ["figure", "value"], [[k, v] for k, v in result["checks"].items()])
    if result["violations"]:
        for violation in result["violations"]:
            console.print(f"VIOLATION: {violation}")
        raise typer.Exit(1)
