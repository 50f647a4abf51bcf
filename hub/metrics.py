"""Prometheus metrics of a node, served over HTTP when ``[admin] metrics_listen`` is set.

Counters move where things happen (the exchange's commit hook, link sessions); gauges that need the
store (backlog, oldest unacked age) are refreshed by a small loop rather than on every scrape, so a
scraper can never load the store. Each node has its own registry (several nodes can live in one
process in tests).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from hub.node import Node

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.envelopes_received = Counter(
            "courthub_envelopes_received_total", "Envelopes committed from links", ["link"], registry=r
        )
        self.envelopes_sent = Counter(
            "courthub_envelopes_sent_total", "Envelopes written to links", ["link"], registry=r
        )
        self.envelopes_rejected = Counter(
            "courthub_envelopes_rejected_total", "Envelopes refused, by reason", ["reason"], registry=r
        )
        self.duplicates = Counter(
            "courthub_envelopes_duplicate_total", "Resent envelopes already committed", registry=r
        )
        self.link_up = Gauge("courthub_link_up", "1 when the link to a neighbour is up", ["link", "role"], registry=r)
        self.backlog = Gauge("courthub_outbox_pending", "Envelopes waiting for a next hop's ack", ["link"], registry=r)
        self.oldest = Gauge(
            "courthub_outbox_oldest_unacked_seconds", "Age of the oldest unacked envelope", ["link"], registry=r
        )
        self.events = Counter("courthub_events_total", "Events published on the bus", ["event"], registry=r)
        self.link_throttled = Counter(
            "courthub_link_throttled_seconds_total",
            "Seconds a link's reads were paused by its rate limit (backpressure on a flooding child)",
            ["link"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def refresh_loop(node: Node, interval_s: float = 5.0) -> None:
    while True:
        try:
            status = await node.status()
            for hop, b in status["backlog"]["by_hop"].items():
                node.metrics.backlog.labels(hop).set(b["pending"])
                node.metrics.oldest.labels(hop).set(b["oldest_age_s"])
            if status["parent"]:
                node.metrics.link_up.labels(status["parent"]["court"], "parent").set(status["parent"]["state"] == "up")
            for child in status["children"]:
                node.metrics.link_up.labels(child["court"], "child").set(child["state"] == "up")
        except Exception as exc:
            log.debug("metrics refresh failed: %s", exc)
        await asyncio.sleep(interval_s)


async def serve(node: Node, listen: str) -> web.AppRunner:
    """``/metrics`` (Prometheus text format) and ``/healthz`` on ``listen``."""

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=node.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"court": str(node.me), "ok": node.started.is_set() and not node.stopping.is_set()})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    await web.TCPSite(runner, host, int(port)).start()
    return runner
