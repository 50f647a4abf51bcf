"""Scale-out node (issue 6, item 5): ``court-hub run`` + two ``court-hub worker`` processes on
PostgreSQL and a three-server NATS JetStream cluster, with the four agency simulators — every piece
a real process started here. Under load, one NATS server (the job stream's leader) and one worker
are SIGKILLed: no job is lost, none is settled twice, no agency request id takes effect twice, and
everything settles. Throughput is not asserted; ``court-hub bench scaleout`` prints it.

Then the node is restarted while another server is down and serves on the remaining two.

Bounded: about 350 jobs; the jobs the dead worker held come back after the consumer's 30 s
``ack_wait``, so a run takes roughly a minute.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from hub.bench.scaleout import COURT, ScaleOut, check, fault_phase
from hub.config import Home
from hub.errors import InvalidInput
from hub.jobs import jobs_stream
from hub.natsserver import nats_servers


def _stream_replicas(url: str) -> tuple[int, list[bool]]:
    """The job stream's configured replicas and, per replica, whether it is current."""

    async def ask() -> tuple[int, list[bool]]:
        nc = await nats.connect(nats_servers(url), connect_timeout=2)
        try:
            info = await nc.jetstream().stream_info(jobs_stream(COURT))
            peers = info.cluster.replicas if info.cluster and info.cluster.replicas else []
            return int(info.config.num_replicas or 1), [bool(p.current) for p in peers]
        finally:
            await nc.close()

    return asyncio.run(ask())


def test_node_and_two_workers_survive_a_nats_server_and_a_worker_killed(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    with ScaleOut(tmp_path / "scaleout", fresh_postgres_url) as deployment:
        config = Home(deployment.home).load()
        assert config.store.url.startswith("postgresql")
        assert config.bus.nats_url == deployment.nats.url and config.bus.nats_url.count(",") == 2
        assert config.agency.node_worker is False  # every agency call below is made by a worker process
        # The node uses the cluster, not a nats-server of its own (start() checks `embedded` too).
        assert not (deployment.home / "nats").exists()

        filed, recovery = fault_phase(deployment, 40, kill_at=0.25, timeout=240)
        rows = deployment.jobs(filed)
        figures, violations = check(deployment, filed, rows)

        assert violations == []
        assert figures["jobs_submitted"] == 300 and figures["jobs_lost"] == 0
        assert figures["by_status"] == {"answered": 300}
        assert figures["settled_twice"] == 0 and figures["effect_more_than_once"] == 0
        # The kills really happened mid-run: some jobs were answered before, the rest after.
        assert 0 < recovery["jobs_answered_at_kill"] < 300
        assert all(s.running for s in deployment.nats.servers)  # the killed server was restarted
        # Three copies of the job stream; the restarted server caught up (checked after restart).
        replicas, current = _stream_replicas(deployment.nats.url)
        assert replicas == 3
        deployment.wait(lambda: all(_stream_replicas(deployment.nats.url)[1]), 60, "replicas current")
        assert len(current) == 2  # the leader plus two followers

        # The node restarts while a server of the cluster is down (killed just before: its streams
        # may still be electing a leader) and serves on the other two: new cases all settle.
        deployment.tree.stop(COURT)
        deployment.nats.kill(deployment.job_stream_leader())
        deployment.tree.start(COURT, timeout=120)
        deployment.start_worker("c")
        later = deployment.file(10)
        rows = deployment.wait_settled([later], 120)
        figures, violations = check(deployment, [later], rows)
        assert violations == [] and figures["by_status"] == {"answered": 50}


def test_cluster_url_lists_are_split_and_bad_entries_named() -> None:
    assert nats_servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223 127.0.0.1:4224") == [
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4223",
        "nats://127.0.0.1:4224",
    ]
    with pytest.raises(InvalidInput, match="'http://x:1'"):
        nats_servers("nats://127.0.0.1:4222,http://x:1")
    with pytest.raises(InvalidInput, match="empty"):
        nats_servers(" , ")
