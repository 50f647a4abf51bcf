"""``court-hub chaos``: a fault campaign against a local real-process tree (see :mod:`hub.chaos.runner`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hub.chaos.runner import Campaign, render


def chaos(
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fault schedule and of the load mix.")] = 1,
    duration: Annotated[float, typer.Option("--duration", help="Seconds of load under faults (at least 20).")] = 120.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    quiesce: Annotated[
        float, typer.Option("--quiesce", help="At most this many seconds to converge after the load.")
    ] = 300.0,
    rate: Annotated[float, typer.Option("--rate", help="Extra faults per minute beyond one of each kind.")] = 10.0,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to put node homes (kept); default: a temporary directory, removed."),
    ] = None,
    schedule_only: Annotated[
        bool, typer.Option("--schedule-only", help="Print the fault schedule of the seed and stop.")
    ] = False,
) -> None:
    """Run the tree under generated load while a seeded schedule injects faults; check every invariant.

    Exits 1 on any violation (each named: rule, court, envelope / item / request)."""
    if duration < 20:
        raise typer.BadParameter("a campaign needs at least 20 s of load", param_hint="--duration")
    campaign = Campaign(seed, duration, directory, quiesce_s=quiesce, rate_per_min=rate)
    if schedule_only:
        if json_out:
            print(json.dumps([f.as_json() for f in campaign.schedule], ensure_ascii=False, indent=2))
        else:
            for f in campaign.schedule:
                print(f.describe())
        campaign.remove()
        return
    try:
        report = campaign.run()  # stops every process it started, also on failure or Ctrl-C
    except KeyboardInterrupt:
        print(f"interrupted: every node and simulator stopped; homes and logs in {campaign.base}", file=sys.stderr)
        raise typer.Exit(130) from None
    if json_out:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        render(report, sys.stdout)
    if report.ok:
        campaign.remove()
    else:
        print(f"node homes and logs kept in {campaign.base}", file=sys.stderr)
        raise typer.Exit(1)
