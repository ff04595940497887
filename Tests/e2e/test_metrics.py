"""--metrics-listen: the real uturnd serves Prometheus metrics over HTTP.

A server of its own (so its counters start at zero) with --metrics-listen on a
free loopback port; a client relays ChannelData both ways through it, and
/metrics must show those packets and the open allocation. Workers publish
their counters once a second, so each check waits 1.2 s, then polls (bounded).
"""

from __future__ import annotations

import http.client
import os
import socket
import time

import pytest

import stun
from conftest import free_port, server_kind

WORKERS = int(os.environ.get("UTURN_E2E_WORKERS", "2"))


def start_metrics_server(server_factory, name: str, args: str = "", **kw):
    """A uturnd of its own with `args` and --metrics-listen on a free port
    (srv.extra["metrics_port"]), checked to be listening. kw goes to
    server_factory (tls=True)."""
    port = free_port(span=1, hosts=["127.0.0.1"])
    extra = os.environ.get("UTURN_E2E_EXTRA_ARGS", "")
    with pytest.MonkeyPatch.context() as mp:
        # conftest appends UTURN_E2E_EXTRA_ARGS to the server's command line.
        mp.setenv("UTURN_E2E_EXTRA_ARGS", f"{extra} {args} --metrics-listen 127.0.0.1:{port}")
        srv = server_factory(name, **kw)
    srv.extra["metrics_port"] = port
    # The daemon binds the metrics port before it reports ready; a refused
    # connection here means it is not there at all, so say why.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError as e:
        alive = srv.proc is not None and srv.proc.poll() is None
        pytest.fail(f"metrics port {port}: {e}; uturnd {'running' if alive else 'exited'}\n{srv.output_tail()}")
    return srv


@pytest.fixture(scope="module")
def metrics_server(server_factory):
    if server_kind() != "uturnd":
        pytest.skip("--metrics-listen is uturnd's (coturn has its own Prometheus option)")
    return start_metrics_server(server_factory, "turn-metrics")


def http_get(port: int, path: str) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def parse(text: str) -> dict[str, float]:
    """Samples by series as written: 'name' or 'name{label="v"}'."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        samples[series] = float(value)
    return samples


def scrape_until(port: int, ok, timeout: float = 6.0) -> dict[str, float]:
    """Waits 1.2 s (one publication), then scrapes until ok(samples) or the timeout."""
    time.sleep(1.2)
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http_get(port, "/metrics")
        assert status == 200
        samples = parse(body)
        if ok(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.3)


def test_metrics_reflect_relayed_traffic(metrics_server):
    port = metrics_server.extra["metrics_port"]
    status, headers, body = http_get(port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE uturn_relayed_packets_total counter" in body
    assert "# HELP uturn_allocations_active " in body
    assert parse(body)["uturn_allocations_active"] == 0

    channel = 0x4001
    payloads = [b"metrics-%d-" % i + bytes(range(i + 1)) for i in range(5)]
    c = stun.TurnClient(metrics_server.addr(), metrics_server.user, metrics_server.password)
    peer = stun.udp_socket("127.0.0.1")
    try:
        resp = c.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        relayed = resp.xor_address(stun.XOR_RELAYED_ADDRESS)
        bound = c.channel_bind(channel, peer.getsockname()[:2])
        assert bound.cls == stun.SUCCESS, (bound.error_code, bound.error_reason)
        peer.settimeout(2)
        for payload in payloads:
            c.send_channel_data(channel, payload)
            data, _ = peer.recvfrom(65535)
            assert data == payload
            peer.sendto(b"back-" + data, relayed)
            assert c.recv_channel_data() == (channel, b"back-" + payload)

        to_peer = 'uturn_relayed_packets_total{direction="client_to_peer"}'
        to_client = 'uturn_relayed_packets_total{direction="peer_to_client"}'
        s = scrape_until(port, lambda s: s.get(to_peer) == 5 and s.get(to_client) == 5
                         and s.get("uturn_allocations_active") == 1)
        assert s[to_peer] == 5, metrics_server.output_tail()
        assert s[to_client] == 5
        assert s['uturn_relayed_bytes_total{direction="client_to_peer"}'] == sum(map(len, payloads))
        # To the client: 4-byte ChannelData header, padded to 4 bytes over UDP
        # only when the server pads; at least header + payload.
        assert s['uturn_relayed_bytes_total{direction="peer_to_client"}'] >= \
            sum(4 + len(b"back-") + len(p) for p in payloads)
        assert s['uturn_received_packets_total{source="peer"}'] == 5
        assert s["uturn_allocations_active"] == 1
        assert s["uturn_allocations_created_total"] == 1
        assert s["uturn_stun_requests_total"] >= 2  # Allocate (twice with the 401) and ChannelBind
        # The ring counters, one series per worker.
        for w in range(WORKERS):
            assert f'uturn_ring_completions_total{{worker="{w}"}}' in s
            assert f'uturn_sent_datagrams_total{{worker="{w}"}}' in s
        assert sum(v for k, v in s.items() if k.startswith("uturn_sent_datagrams_total")) >= 10
        assert any(k.startswith("uturn_build_info{version=") for k in s)

        assert c.refresh(0).cls == stun.SUCCESS
        s = scrape_until(port, lambda s: s.get("uturn_allocations_active") == 0)
        assert s["uturn_allocations_active"] == 0
        assert s["uturn_allocations_deleted_total"] == 1
    finally:
        peer.close()
        c.close()


def test_other_paths_are_404(metrics_server):
    status, _, _ = http_get(metrics_server.extra["metrics_port"], "/nope")
    assert status == 404
