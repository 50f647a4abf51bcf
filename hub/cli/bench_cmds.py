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
