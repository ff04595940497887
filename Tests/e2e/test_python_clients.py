"""Independent clients against the server under test: aioice's TURN client
(PyPI, see requirements-test.txt) and the hand-built requests of stun.py."""

from __future__ import annotations

import asyncio
import struct

import pytest

import stun
from conftest import HAS_IPV6

aioice_turn = pytest.importorskip("aioice.turn", reason="pip install -r requirements-test.txt")
aioice_stun = pytest.importorskip("aioice.stun")


# --------------------------------------------------------------------------
# aioice

class EchoPeer(asyncio.DatagramProtocol):
    """Plain asyncio UDP echo peer; remembers who sent to it."""

    def __init__(self):
        self.sources: set[tuple[str, int]] = set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.sources.add(addr[:2])
        self.transport.sendto(data, addr)


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.queue.put_nowait((data, addr[:2]))

    def error_received(self, exc):
        self.queue.put_nowait((exc, None))


async def relay_echo(server_addr, username, password, peer_host="127.0.0.1", count=20,
                     transport="udp", ssl=None):
    """transport "tcp" (with ssl an SSLContext for TLS): aioice talks to the
    server over a stream; relaying to the peer is UDP either way."""
    loop = asyncio.get_running_loop()
    peer_t, peer = await loop.create_datagram_endpoint(EchoPeer, local_addr=(peer_host, 0))
    peer_addr = peer_t.get_extra_info("sockname")[:2]
    turn_t, client = await asyncio.wait_for(
        aioice_turn.create_turn_endpoint(Collector, server_addr, username, password,
                                         transport=transport, ssl=ssl), 10)
    try:
        relayed = turn_t.get_extra_info("sockname")
        sent = {b"uturn-e2e-%03d-" % i + bytes(range(64)) for i in range(count)}
        for payload in sorted(sent):
            turn_t.sendto(payload, peer_addr)
            await asyncio.sleep(0.002)
        got = set()
        while got != sent:
            data, addr = await asyncio.wait_for(client.queue.get(), 5)
            assert not isinstance(data, Exception), f"send failed: {data!r}"
            assert addr == peer_addr
            got.add(data)
        return tuple(relayed), peer.sources
    finally:
        turn_t.close()
        await asyncio.sleep(0.1)  # let the Refresh(lifetime=0) go out
        peer_t.close()


def test_aioice_relay_echo(turn_server):
    """aioice allocates with demo:secret, binds a channel and gets every echo
    back from a 127.0.0.1 peer; the peer sees the XOR-RELAYED-ADDRESS as source."""
    relayed, sources = asyncio.run(
        relay_echo(turn_server.addr(), turn_server.user, turn_server.password))
    assert relayed[0] == "127.0.0.1"
    assert turn_server.relay_range[0] <= relayed[1] <= turn_server.relay_range[1]
    assert sources == {relayed}


@pytest.mark.skipif(not HAS_IPV6, reason="no ::1 on this machine")
def test_aioice_ipv6_client_gets_ipv4_relay(turn_server):
    """Client talks to the server over ::1. aioice sends no
    REQUESTED-ADDRESS-FAMILY, so the relay is IPv4 (RFC 8656 §7.2 default; a
    ::1 peer would get 443 Peer Address Family Mismatch), and a 127.0.0.1 peer
    is reachable through it."""
    relayed, sources = asyncio.run(
        relay_echo(turn_server.addr("::1"), turn_server.user, turn_server.password))
    assert relayed[0] == "127.0.0.1"
    assert sources == {relayed}


def test_aioice_rest_credentials(rest_server):
    username, password = stun.rest_credentials(rest_server.secret, "demo")
    relayed, sources = asyncio.run(relay_echo(rest_server.addr(), username, password, count=5))
    assert sources == {relayed}


def test_aioice_wrong_password(turn_server):
    async def attempt():
        await asyncio.wait_for(aioice_turn.create_turn_endpoint(
            asyncio.DatagramProtocol, turn_server.addr(), turn_server.user, "wrong"), 10)

    with pytest.raises(aioice_stun.TransactionFailed) as exc:
        asyncio.run(attempt())
    assert exc.value.response.error_code == 401


# --------------------------------------------------------------------------
# stun.py

def test_binding_maps_to_own_address(turn_server):
    for host in turn_server.hosts:
        with stun.udp_socket(host) as s:
            mapped = stun.binding(turn_server.addr(host), timeout=3, sock=s)
            assert mapped == s.getsockname()[:2]


def test_allocate_needs_credentials(turn_server):
    """Unauthenticated Allocate -> 401 with REALM and NONCE."""
    with stun.udp_socket("127.0.0.1") as s:
        req = stun.Message(stun.ALLOCATE).add(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
        resp = stun.transact(s, turn_server.addr(), req.encode(), req.txid)
    assert resp is not None and resp.cls == stun.ERROR
    assert resp.error_code == 401
    assert resp.get(stun.REALM) == turn_server.realm.encode()
    assert resp.get(stun.NONCE)


@pytest.mark.parametrize("user,password", [("demo", "wrong"), ("nobody", "secret")])
def test_allocate_wrong_credentials(turn_server, user, password):
    """An Allocate with MESSAGE-INTEGRITY under a wrong password/unknown user
    is refused with 401 (RFC 8489 §9.2.4)."""
    c = stun.TurnClient(turn_server.addr(), user, password)
    try:
        resp = c.allocate()
        assert c.key is not None, "server never challenged"
        assert resp.cls == stun.ERROR and resp.error_code == 401, (resp.error_code,
                                                                    resp.error_reason)
    finally:
        c.close()


def test_allocate_success_and_delete(turn_server):
    """Allocate with demo:secret: success response carries XOR-RELAYED-ADDRESS,
    XOR-MAPPED-ADDRESS, LIFETIME and a MESSAGE-INTEGRITY valid under our key;
    Refresh(0) deletes it."""
    c = stun.TurnClient(turn_server.addr(), turn_server.user, turn_server.password)
    try:
        resp = c.allocate(lifetime=300)
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        assert stun.verify_integrity(resp, c.key)
        relayed = resp.xor_address(stun.XOR_RELAYED_ADDRESS)
        assert relayed[0] == "127.0.0.1"
        assert turn_server.relay_range[0] <= relayed[1] <= turn_server.relay_range[1]
        assert resp.xor_address(stun.XOR_MAPPED_ADDRESS) == c.sock.getsockname()[:2]
        (lifetime,) = struct.unpack("!I", resp.get(stun.LIFETIME))
        assert 0 < lifetime <= 3600
        gone = c.refresh(0)
        assert gone.cls == stun.SUCCESS, (gone.error_code, gone.error_reason)
    finally:
        c.close()


def test_create_permission_loopback_denied(closed_server):
    """Without --allow-loopback-peers, CreatePermission for 127.0.0.1 -> 403."""
    c = stun.TurnClient(closed_server.addr(), closed_server.user, closed_server.password)
    try:
        resp = c.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        perm = c.create_permission(("127.0.0.1", 9))
        assert perm.cls == stun.ERROR and perm.error_code == 403, (perm.error_code,
                                                                    perm.error_reason)
        c.refresh(0)
    finally:
        c.close()


def test_create_permission_loopback_allowed(turn_server):
    c = stun.TurnClient(turn_server.addr(), turn_server.user, turn_server.password)
    try:
        assert c.allocate().cls == stun.SUCCESS
        perm = c.create_permission(("127.0.0.1", 9))
        assert perm.cls == stun.SUCCESS, (perm.error_code, perm.error_reason)
        c.refresh(0)
    finally:
        c.close()


def test_rest_credentials_expired(rest_server):
    """A REST username whose timestamp has passed is refused with 401."""
    username, password = stun.rest_credentials(rest_server.secret, "demo", ttl=-60)
    c = stun.TurnClient(rest_server.addr(), username, password)
    try:
        resp = c.allocate()
        assert resp.cls == stun.ERROR and resp.error_code == 401, (resp.error_code,
                                                                    resp.error_reason)
    finally:
        c.close()


@pytest.mark.parametrize("channel", [0x4000, 0x4FFF, 0x5000, 0x7FFF])
def test_channel_data_roundtrip(turn_server, channel):
    """ChannelBind + ChannelData both ways for a given channel number.

    0x5000..0x7FFF are outside RFC 8656's 0x4000..0x4FFF but inside RFC 5766's,
    and turnutils_uclient picks from 0x4000..0x7FFF at random; coturn accepts
    them. A server that accepts the bind must also relay the frames (a bind that
    succeeds followed by dropped ChannelData is the failure this catches)."""
    c = stun.TurnClient(turn_server.addr(), turn_server.user, turn_server.password)
    peer = stun.udp_socket("127.0.0.1")
    try:
        resp = c.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        relayed = resp.xor_address(stun.XOR_RELAYED_ADDRESS)
        bound = c.channel_bind(channel, peer.getsockname()[:2])
        assert bound.cls == stun.SUCCESS, (bound.error_code, bound.error_reason)
        peer.settimeout(2)
        for i in range(3):
            payload = b"to-peer-%d-" % i + bytes(range(i + 1))  # odd lengths: no padding
            c.send_channel_data(channel, payload)
            data, src = peer.recvfrom(65535)
            assert (data, src[:2]) == (payload, relayed)
            peer.sendto(b"back-" + data, relayed)
            assert c.recv_channel_data() == (channel, b"back-" + payload)
        c.refresh(0)
    finally:
        peer.close()
        c.close()
