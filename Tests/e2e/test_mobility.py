"""RFC 8016 mobility against the real daemon: a UDP client allocates with an
empty MOBILITY-TICKET, relays over a channel to an echo peer, then moves to a
new local port and refreshes with its ticket. Relaying goes on from the new
port with the same relayed address and channel, the old port's ChannelData
is no longer relayed, and forged or replayed tickets are refused.

The first test runs uturnd with --workers 1; the last with --workers 2,
where SO_REUSEPORT hands some new 5-tuples to the worker that does not own
the allocation, which hands the Refresh over to the owner (a socket
connected to the client then brings its datagrams there).
"""

from __future__ import annotations

import os
import re
import struct
import time
import urllib.request

import pytest

import stun
from conftest import PASSWORD, USER, _stop, free_port, server_kind
from test_service_options import start

pytestmark = [
    pytest.mark.skipif(server_kind() != "uturnd", reason="uturnd's --mobility (coturn has its own tests)"),
]

MOBILITY_TICKET = 0x8030
CHANNEL = 0x4001


@pytest.fixture(scope="module", params=["user-space", "offload"])
def mobile_server(request, tmp_path_factory):
    """The move in user space, and with the kernel fast path relaying the
    channel (its routes name the client 5-tuple, so they must move too)."""
    extra = ["--mobility", "--workers", "1"]
    if request.param == "offload":
        if os.geteuid() != 0:
            pytest.skip("needs root for BPF and tc")
        extra += ["--offload", "tc", "--offload-interface", "lo"]
    srv = start(tmp_path_factory.mktemp("mobility"), extra, lambda a: stun.binding(a, timeout=0.3) is not None)
    yield srv
    _stop(srv.proc)


def moved_client(c: stun.TurnClient) -> stun.TurnClient:
    """The same user on a new local port (same IP: the nonce stays valid)."""
    n = stun.TurnClient(c.server, USER, PASSWORD)
    n.realm, n.nonce, n.key = c.realm, c.nonce, c.key
    return n


def refresh_with(c: stun.TurnClient, ticket: bytes) -> stun.Message:
    return c.request(stun.REFRESH, [(stun.LIFETIME, struct.pack("!I", 600)), (MOBILITY_TICKET, ticket)])


def allocate_with_ticket(c: stun.TurnClient, peer: stun.EchoPeer) -> tuple[tuple[str, int], bytes]:
    """Allocates asking for mobility, binds CHANNEL to the echo peer and
    relays one message through it; returns the relayed address and ticket."""
    resp = c.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0])),
                                     (MOBILITY_TICKET, b"")])
    assert resp.cls == stun.SUCCESS, resp.error_reason()
    ticket = resp.get(MOBILITY_TICKET)
    assert ticket is not None and len(ticket) == 48
    assert c.channel_bind(CHANNEL, peer.addr).cls == stun.SUCCESS
    c.send_channel_data(CHANNEL, b"start")
    assert c.recv_channel_data() == (CHANNEL, b"start")
    return resp.xor_address(stun.XOR_RELAYED_ADDRESS), ticket


@pytest.mark.backend_independent
def test_allocation_moves_to_a_new_port_with_its_ticket(mobile_server):
    addr = mobile_server.addr()
    peer = stun.EchoPeer("127.0.0.1", max_seconds=30)
    clients: list[stun.TurnClient] = []
    try:
        a = stun.TurnClient(addr, USER, PASSWORD)
        clients.append(a)
        relayed, first = allocate_with_ticket(a, peer)
        if "--offload" in mobile_server.argv:
            assert "offload: kernel fast path on lo" in mobile_server.output(), mobile_server.output_tail()

        # A plain Refresh on the old port hands out a newer ticket; the first is then spent.
        r = refresh_with(a, first)
        assert r.cls == stun.SUCCESS
        ticket = r.get(MOBILITY_TICKET)
        assert ticket is not None and ticket != first

        b = moved_client(a)
        clients.append(b)
        # A forged ticket (one bit flipped) and a replayed older one are refused.
        forged = bytearray(ticket)
        forged[30] ^= 0x01
        assert refresh_with(b, bytes(forged)).error_code == 400
        assert refresh_with(b, first).error_code == 400

        moved = refresh_with(b, ticket)
        assert moved.cls == stun.SUCCESS, moved.error_reason()
        assert moved.get(MOBILITY_TICKET) not in (None, ticket)

        # Same channel, same relayed address, from the new port.
        b.send_channel_data(CHANNEL, b"after")
        assert b.recv_channel_data() == (CHANNEL, b"after")
        assert peer.sources == {relayed}

        # The old port's ChannelData is dropped; its requests get 437.
        before = peer.received
        a.send_channel_data(CHANNEL, b"stale")
        time.sleep(0.5)
        assert peer.received == before
        assert a.refresh(600).error_code == 437
        # The spent ticket cannot pull the allocation back.
        c = moved_client(a)
        clients.append(c)
        assert refresh_with(c, ticket).error_code == 400
        for i in range(20):
            b.send_channel_data(CHANNEL, b"still %d" % i)
            assert b.recv_channel_data() == (CHANNEL, b"still %d" % i)
        # Nothing the peer echoed went to the old port.
        assert stun.recv_nowait(a.sock) is None
    finally:
        for c in clients:
            c.close()
        peer.close()


@pytest.mark.backend_independent
def test_mobility_ticket_without_mobility_gets_405(turn_server):
    a = stun.TurnClient(turn_server.addr(), USER, PASSWORD)
    try:
        resp = a.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0])),
                                         (MOBILITY_TICKET, b"")])
        assert resp.error_code == 405
    finally:
        a.close()


def sockets_on_port(port: int) -> int:
    """UDP sockets bound to `port` (IPv4 and IPv6), from /proc/net."""
    n = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                n += sum(1 for line in f if int(line.split()[1].rsplit(":", 1)[1], 16) == port)
        except FileNotFoundError:
            pass
    return n


def scrape(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("mode", ["user-space", "offload"])
def test_moves_across_workers(tmp_path_factory, mode):
    """16 moves with 2 workers: about half land on the worker that does not
    own the allocation (all on the same one has odds 2^-16). Every move
    relays on the same channel from the new port; the old ports are dropped;
    clients that never moved keep working; the sockets opened for moves are
    closed when the allocation moves on and when it is deleted. With the
    kernel fast path, its routes move with the allocation as within a worker."""
    metrics = free_port(span=1, hosts=["127.0.0.1"])
    extra = ["--mobility", "--workers", "2", "--metrics-listen", f"127.0.0.1:{metrics}"]
    if mode == "offload":
        if os.geteuid() != 0:
            pytest.skip("needs root for BPF and tc")
        extra += ["--offload", "tc", "--offload-interface", "lo"]
    srv = start(tmp_path_factory.mktemp("mobility-workers"), extra,
                lambda a: stun.binding(a, timeout=0.3) is not None)
    addr = srv.addr()
    peer = stun.EchoPeer("127.0.0.1", max_seconds=60)
    clients: list[stun.TurnClient] = []
    try:
        baseline = sockets_on_port(addr[1])
        a = stun.TurnClient(addr, USER, PASSWORD)
        clients.append(a)
        relayed, ticket = allocate_with_ticket(a, peer)
        if mode == "offload":
            assert "offload: kernel fast path on lo" in srv.output(), srv.output_tail()
        # Clients that stay put while sockets for the moves open and close:
        # the kernel must keep hashing them to the same worker.
        bystanders = []
        for k in range(6):
            n = stun.TurnClient(addr, USER, PASSWORD)
            clients.append(n)
            assert n.allocate().cls == stun.SUCCESS
            assert n.channel_bind(CHANNEL, peer.addr).cls == stun.SUCCESS
            bystanders.append(n)

        current = a
        for i in range(16):
            b = moved_client(current)
            clients.append(b)
            moved = refresh_with(b, ticket)
            assert moved.cls == stun.SUCCESS, (i, moved.error_code, moved.error_reason, srv.output_tail())
            ticket = moved.get(MOBILITY_TICKET)
            for j in range(3):
                b.send_channel_data(CHANNEL, b"move %d %d" % (i, j))
                assert b.recv_channel_data() == (CHANNEL, b"move %d %d" % (i, j)), (i, srv.output_tail())
            # A plain Refresh from the new port reaches the owner too (and
            # hands out the next ticket).
            plain = b.refresh(600)
            assert plain.cls == stun.SUCCESS
            ticket = plain.get(MOBILITY_TICKET)
            # The old port has no allocation any more, whichever worker gets it.
            assert current.refresh(600).error_code == 437
            # At most the one socket connected to the current 5-tuple.
            assert sockets_on_port(addr[1]) <= baseline + 1
            for k, n in enumerate(bystanders):
                n.send_channel_data(CHANNEL, b"stay %d %d" % (i, k))
                assert n.recv_channel_data() == (CHANNEL, b"stay %d %d" % (i, k)), (i, k)
            current = b
        assert relayed in peer.sources
        for n in bystanders:
            assert n.refresh(0).cls == stun.SUCCESS

        # Old ports' ChannelData goes nowhere; nothing came back to them.
        before = peer.received
        for c in clients[:-1]:
            c.send_channel_data(CHANNEL, b"stale")
        time.sleep(0.5)
        assert peer.received == before
        for c in clients[:-1]:
            assert stun.recv_nowait(c.sock) is None

        # Clients that never moved still reach the right worker.
        for k in range(6):
            n = stun.TurnClient(addr, USER, PASSWORD)
            clients.append(n)
            r = n.allocate()
            assert r.cls == stun.SUCCESS, r.error_reason()
            assert n.channel_bind(CHANNEL, peer.addr).cls == stun.SUCCESS
            n.send_channel_data(CHANNEL, b"other %d" % k)
            assert n.recv_channel_data() == (CHANNEL, b"other %d" % k)
            assert n.refresh(0).cls == stun.SUCCESS

        # Deleting the allocation closes the socket opened for it.
        assert current.refresh(0).cls == stun.SUCCESS
        time.sleep(0.2)
        assert sockets_on_port(addr[1]) == baseline

        out = srv.output()
        across = len(re.findall(r"moved across workers: handed over by worker", out))
        print(f"moves across workers: {across} of 16")
        assert across >= 1, srv.output_tail()
        assert len(re.findall(r"allocation moved: ", out)) == 16
        deadline = time.monotonic() + 5
        while scrape(metrics, "uturn_allocations_moved_across_workers_total") != across:
            assert time.monotonic() < deadline, "metric never matched the log"
            time.sleep(0.3)
        assert scrape(metrics, "uturn_allocations_moved_total") == 16
    finally:
        for c in clients:
            c.close()
        peer.close()
        _stop(srv.proc)
