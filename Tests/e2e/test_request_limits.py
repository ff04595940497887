"""--failed-request-rate, --binding-request-rate: a junk flood from one
address is dropped unanswered past its budget, while a live session from
the same address relays without loss, and the drops show in /metrics.

One server of its own with small limits (5 refusals/s and 5 Bindings/s per
source, bursts of 10) and two workers. A source's buckets are shared by
the workers, so a source spread over many ports (which SO_REUSEPORT hands
to both workers) gets one budget. About 10 s in all, the server start
included.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest

import stun
from conftest import server_kind
from test_metrics import scrape_until, start_metrics_server

pytestmark = pytest.mark.backend_independent

RATE = 5  # per second; burst is twice it


@pytest.fixture(scope="module")
def limited_server(server_factory):
    if server_kind() != "uturnd":
        pytest.skip("the request limits are uturnd's")
    return start_metrics_server(
        server_factory, "turn-limits",
        # The user-space limiter alone: its drop counts are what this checks
        # (test_kernel_source_filter.py has the kernel filter in front of it).
        f"--failed-request-rate {RATE} --binding-request-rate {RATE} --failed-request-rate-total 0 "
        "--kernel-source-filter off")


def unsigned_allocate() -> bytes:
    m = stun.Message(stun.ALLOCATE)
    m.add(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0]))
    return m.encode()


def drain(sock: socket.socket) -> int:
    n = 0
    while stun.recv_nowait(sock) is not None:
        n += 1
    return n


def test_junk_flood_is_limited_and_the_live_session_loses_nothing(limited_server):
    srv = limited_server
    port = srv.extra["metrics_port"]
    peer = stun.EchoPeer("127.0.0.1")
    live = stun.TurnClient(srv.addr(), srv.user, srv.password)
    liar = stun.TurnClient(srv.addr(), srv.user, "not-the-password")
    junk = stun.udp_socket("127.0.0.1")
    try:
        resp = live.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        assert live.channel_bind(0x4001, peer.addr).cls == stun.SUCCESS
        # The liar learns a nonce (one challenge), then signs with a wrong key.
        assert liar.allocate().error_code == 401

        sent = {"unauthenticated": 0, "credentials": 0, "binding": 0}
        answered = 0
        echoed = 0
        start = time.monotonic()
        rounds = 100  # 2 s at 50 packets/s for the live session
        for i in range(rounds):
            for _ in range(20):
                junk.sendto(unsigned_allocate(), srv.addr())
                sent["unauthenticated"] += 1
            for _ in range(5):
                bad = liar.signed(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))])
                liar.sock.sendto(bad.raw, srv.addr())
                sent["credentials"] += 1
                junk.sendto(stun.Message(stun.BINDING).encode(), srv.addr())
                sent["binding"] += 1
            payload = b"live-%d" % i
            live.send_channel_data(0x4001, payload)
            assert live.recv_channel_data(timeout=2.0) == (0x4001, payload), f"live packet {i} lost"
            echoed += 1
            answered += drain(junk) + drain(liar.sock)
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        time.sleep(0.2)
        answered += drain(junk) + drain(liar.sock)
        assert echoed == rounds

        # Budget: the address's refusal bucket and its Binding bucket, each a
        # burst of 2*RATE then RATE/s, whichever worker the liar's socket
        # hashes to.
        budget = 2 * (2 * RATE + RATE * (elapsed + 0.5))
        junk_total = sum(sent.values())
        assert 2 * RATE <= answered <= budget, (answered, budget, junk_total)

        # The allocation's own requests are answered even now.
        assert live.refresh(600).cls == stun.SUCCESS
        # Another address is a source of its own.
        other = stun.TurnClient(srv.addr(), srv.user, srv.password)
        other.sock.close()
        other.sock = stun.udp_socket("127.0.0.2")
        assert other.allocate().cls == stun.SUCCESS
        assert other.refresh(0).cls == stun.SUCCESS
        other.close()

        def key(r):
            return f'uturn_rate_limited_requests_total{{reason="{r}"}}'
        s = scrape_until(port, lambda s: s.get(key("unauthenticated"), 0) + s.get(key("credentials"), 0)
                         + s.get(key("binding"), 0) >= junk_total - budget)
        dropped = {r: s.get(key(r), 0) for r in ("unauthenticated", "credentials", "malformed", "binding")}
        assert sum(dropped.values()) >= junk_total - budget, (dropped, s)
        assert dropped["unauthenticated"] >= sent["unauthenticated"] - budget
        assert dropped["credentials"] >= sent["credentials"] - budget
        assert dropped["binding"] >= sent["binding"] - budget
        assert dropped["malformed"] == 0
        assert live.refresh(0).cls == stun.SUCCESS
    finally:
        junk.close()
        liar.close()
        live.close()
        peer.close()


def test_bucket_refills(limited_server):
    """After a pause, a limited source is answered again."""
    sock = stun.udp_socket("127.0.0.1")
    try:
        for _ in range(3 * RATE):
            sock.sendto(unsigned_allocate(), limited_server.addr())
        time.sleep(0.3)
        drain(sock)
        time.sleep(3 / RATE)  # a few tokens refilled
        m = stun.Message(stun.ALLOCATE).add(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
        resp = stun.transact(sock, limited_server.addr(), m.encode(), m.txid, timeout=1.0)
        assert resp is not None and resp.error_code == 401
    finally:
        sock.close()


def test_a_source_spread_over_many_ports_gets_one_budget(limited_server):
    """40 sockets of one address (their ports spread over both workers)
    send unauthenticated Allocates: together they get the refusals one
    source may get, not one budget per worker."""
    srv = limited_server
    socks = [stun.udp_socket("127.0.0.3") for _ in range(40)]
    try:
        request = unsigned_allocate()
        answered = 0
        start = time.monotonic()
        for _ in range(5):
            for s in socks:
                s.sendto(request, srv.addr())
            time.sleep(0.05)
            answered += sum(drain(s) for s in socks)
        elapsed = time.monotonic() - start
        time.sleep(0.2)
        answered += sum(drain(s) for s in socks)
        assert 2 * RATE <= answered <= 2 * RATE + RATE * (elapsed + 0.5), (answered, elapsed)
    finally:
        for s in socks:
            s.close()
