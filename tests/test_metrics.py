"""Prometheus metrics of a running node, scraped over HTTP like a monitoring system would."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from hub.config import Home
from hub.localtree import LocalTree, NodeSpec
from hub.netutil import free_port

pytestmark = pytest.mark.slow


def _value(text: str, metric: str, labels: str) -> float:
    m = re.search(rf"^{re.escape(metric)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    assert m, f"{metric}{{{labels}}} not in:\n{text}"
    return float(m.group(1))


def test_metrics_count_envelopes_and_show_link_state(tmp_path: Path) -> None:
    specs = [NodeSpec("豫", "河南省高级人民法院"), NodeSpec("豫14", "商丘市中级人民法院", "豫")]
    with LocalTree(tmp_path, specs) as tree:
        tree.provision()
        home = Home(tree.homes["豫"])
        config = home.load()
        port = free_port()
        config.admin.metrics_listen = f"127.0.0.1:{port}"
        home.save(config)
        tree.start_all()
        assert all(r.ok for r in tree.ping("豫14", "豫", count=3))

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                return str(resp.read().decode())

        tree.wait_until(lambda: 'courthub_link_up{link="豫14",role="child"} 1.0' in scrape(), 20, "link gauge")
        text = scrape()
        assert _value(text, "courthub_envelopes_received_total", 'link="豫14"') >= 3
        assert _value(text, "courthub_envelopes_sent_total", 'link="豫14"') >= 3
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert b'"ok": true' in resp.read()
