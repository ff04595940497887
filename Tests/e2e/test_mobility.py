"""RFC 8016 mobility against the real daemon: a UDP client allocates with an
empty MOBILITY-TICKET, relays over a channel to an echo peer, then moves to a
new local port and refreshes with its ticket. Relaying goes on from the new
port with the same relayed address and channel, the old port's ChannelData
is no longer relayed, and forged or replayed tickets are refused.

uturnd runs with --workers 1: moving an allocation to a 5-tuple that
SO_REUSEPORT hands to another worker is not supported yet (437).
"""

from __future__ import annotations

import os
import struct
import time

import pytest

import stun
from conftest import PASSWORD, USER, _stop, server_kind
from test_service_options import start

pytestmark = [
    pytest.mark.skipif(server_kind() != "uturnd", reason="uturnd's --mobility (coturn has its own tests)"),
    pytest.mark.backend_independent,
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


def test_allocation_moves_to_a_new_port_with_its_ticket(mobile_server):
    addr = mobile_server.addr()
    peer = stun.EchoPeer("127.0.0.1", max_seconds=30)
    clients: list[stun.TurnClient] = []
    try:
        a = stun.TurnClient(addr, USER, PASSWORD)
        clients.append(a)
        resp = a.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0])),
                                         (MOBILITY_TICKET, b"")])
        assert resp.cls == stun.SUCCESS, resp.error_reason()
        relayed = resp.xor_address(stun.XOR_RELAYED_ADDRESS)
        first = resp.get(MOBILITY_TICKET)
        assert first is not None and len(first) == 48
        assert a.channel_bind(CHANNEL, peer.addr).cls == stun.SUCCESS
        a.send_channel_data(CHANNEL, b"before")
        assert a.recv_channel_data() == (CHANNEL, b"before")
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


def test_mobility_ticket_without_mobility_gets_405(turn_server):
    a = stun.TurnClient(turn_server.addr(), USER, PASSWORD)
    try:
        resp = a.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0])),
                                         (MOBILITY_TICKET, b"")])
        assert resp.error_code == 405
    finally:
        a.close()
