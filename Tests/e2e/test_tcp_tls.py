"""TURN over TCP and TLS (RFC 8656 §3.1) against the real server.

Relaying to the peer stays UDP (REQUESTED-TRANSPORT UDP); only the client's
leg is a stream. Checked with independent clients (coturn's
turnutils_uclient -t and -S -t, aioice over TCP and TLS), and with our own
stream client (stun.StreamTurnClient) for framing edge cases: a message split
byte by byte, many messages in one write, ChannelData padding; a client that
stops reading; a TLS handshake that never finishes; a peer that closes.

The server with short timeouts is uturnd's own flags; those tests skip for
coturn (UTURN_E2E_SERVER=coturn runs the rest against coturn as a check).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import time

import pytest

import stun
from conftest import server_kind
from test_python_clients import relay_echo
from test_uclient import assert_all_echoed, run_uclient


@pytest.fixture(scope="module")
def tls_server(server_factory):
    """Long-term credentials, loopback peers allowed, TCP on the listening
    port and TLS on its own port (a fresh self-signed certificate)."""
    return server_factory("turn-tls", tls=True)


@pytest.fixture(scope="module")
def strict_stream_server(server_factory):
    """uturnd with 2-second stream timeouts and a small send queue."""
    if server_kind() != "uturnd":
        pytest.skip("stream timeouts are uturnd's flags")
    extra = os.environ.get("UTURN_E2E_EXTRA_ARGS", "")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTURN_E2E_EXTRA_ARGS",
                  f"{extra} --tcp-stall-timeout 2 --tls-handshake-timeout 2 --tcp-idle-timeout 3 "
                  f"--tcp-send-queue 16384")
        return server_factory("turn-stream-strict", tls=True)


def tls_addr(server) -> tuple[str, int]:
    return "127.0.0.1", server.extra["tls_port"]


def allocated_client(server, *, tls: bool = False, alpn=None) -> stun.StreamTurnClient:
    addr = tls_addr(server) if tls else server.addr()
    c = stun.StreamTurnClient(addr, server.user, server.password, tls=tls, alpn=alpn)
    resp = c.allocate()
    assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason())
    return c


# --------------------------------------------------------------------------
# Independent clients

def test_uclient_tcp(tls_server, udp_peer):
    """turnutils_uclient -t: Allocate and ChannelData over TCP, all echoed."""
    r = run_uclient(tls_server, udp_peer, n=50, extra=["-t"])
    assert_all_echoed(r, 50)


def test_uclient_tcp_send_indications(tls_server, udp_peer):
    """-t -s: Send and Data indications over TCP."""
    r = run_uclient(tls_server, udp_peer, n=30, extra=["-t", "-s"])
    assert_all_echoed(r, 30)


def test_uclient_tls(tls_server, udp_peer):
    """turnutils_uclient -S -t: the same over TLS on --tls-listening-port."""
    r = run_uclient(tls_server, udp_peer, n=50, extra=["-t", "-S"], port=tls_server.extra["tls_port"])
    assert_all_echoed(r, 50)


def test_uclient_tcp_many_clients(tls_server, udp_peer):
    """-t -m 5: five connections, each with its allocation."""
    r = run_uclient(tls_server, udp_peer, n=30, m=5, extra=["-t"])
    assert_all_echoed(r, 150)


def test_aioice_over_tcp(tls_server):
    pytest.importorskip("aioice.turn")
    relayed, sources = asyncio.run(relay_echo(
        tls_server.addr(), tls_server.user, tls_server.password, transport="tcp"))
    assert sources == {relayed}


def test_aioice_over_tls(tls_server):
    pytest.importorskip("aioice.turn")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    relayed, sources = asyncio.run(relay_echo(
        tls_addr(tls_server), tls_server.user, tls_server.password, transport="tcp", ssl=ctx))
    assert sources == {relayed}


# --------------------------------------------------------------------------
# Framing

def test_binding_split_byte_by_byte(tls_server):
    """A Binding request written one byte at a time is answered once whole."""
    req = stun.Message(stun.BINDING)
    data = req.encode(fingerprint=True)
    with socket.create_connection(tls_server.addr(), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in data:
            s.sendall(bytes([b]))
            time.sleep(0.002)
        c = stun.StreamTurnClient.__new__(stun.StreamTurnClient)
        c.sock, c.buffer = s, b""
        msg = stun.parse(c.read_frame(3))
    assert msg.txid == req.txid and msg.cls == stun.SUCCESS
    host, port = msg.xor_address(stun.XOR_MAPPED_ADDRESS)
    assert host == "127.0.0.1"


def test_many_messages_in_one_write(tls_server):
    """Forty Binding requests in one write: forty answers, in order."""
    reqs = [stun.Message(stun.BINDING) for _ in range(40)]
    c = stun.StreamTurnClient(tls_server.addr(), "x", "y")
    try:
        c.sock.sendall(b"".join(r.encode() for r in reqs))
        got = [stun.parse(c.read_frame(3)).txid for _ in reqs]
    finally:
        c.close()
    assert got == [r.txid for r in reqs]


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_channel_data_padding_both_ways(tls_server, tls):
    """Payloads of every length mod 4 go out padded and come back padded
    (RFC 8656 §12.5), through a channel to a UDP echo peer."""
    peer = stun.EchoPeer(max_seconds=30)
    c = allocated_client(tls_server, tls=tls)
    try:
        resp = c.channel_bind(0x4001, peer.addr)
        assert resp.cls == stun.SUCCESS, resp.error_code
        for n in (1, 2, 3, 4, 5, 63, 1000):
            payload = bytes((i * 7 + n) & 0xFF for i in range(n))
            c.send_channel_data(0x4001, payload)
            channel, back = c.recv_channel_data(3)
            assert (channel, back) == (0x4001, payload)
    finally:
        c.close()
        peer.close()


def test_split_channel_data_and_back_to_back_frames(tls_server):
    """ChannelData frames cut at odd places across writes, and several in
    one write, all reach the peer whole and in order."""
    peer = stun.EchoPeer(max_seconds=30)
    c = allocated_client(tls_server)
    try:
        assert c.channel_bind(0x4002, peer.addr).cls == stun.SUCCESS
        payloads = [bytes([i]) * (50 + i) for i in range(12)]
        stream = b"".join(struct.pack("!HH", 0x4002, len(p)) + p + b"\0" * stun._pad4(len(p))
                          for p in payloads)
        for start in range(0, len(stream), 37):  # 37: cuts inside headers and payloads
            c.sock.sendall(stream[start:start + 37])
            time.sleep(0.003)
        echoed = [c.recv_channel_data(3)[1] for _ in payloads]
    finally:
        c.close()
        peer.close()
    assert echoed == payloads


def test_garbage_closes_only_that_connection(tls_server):
    """A first byte that is neither STUN nor ChannelData ends the connection;
    the server goes on serving others."""
    if server_kind() != "uturnd":
        pytest.skip("uturnd's policy (coturn keeps such a connection open)")
    with socket.create_connection(tls_server.addr(), timeout=5) as s:
        s.sendall(b"\xff" * 64)
        s.settimeout(3)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
    assert stun.binding(tls_server.addr()) is not None
    c = allocated_client(tls_server)
    c.close()


def test_connection_close_deletes_allocation(tls_server):
    """The allocation lives as long as its connection: after the client
    closes, the relay port no longer forwards to anyone."""
    c = allocated_client(tls_server)
    peer = stun.EchoPeer(echo=False, max_seconds=30)
    try:
        assert c.create_permission(peer.addr).cls == stun.SUCCESS
        c.send_indication(peer.addr, b"hello")
        assert stun.wait_until(lambda: peer.received == 1, 3)
        relayed = next(iter(peer.sources))
        c.sock.close()
        # The relay port is closed with the allocation: a datagram to it is refused.
        assert stun.relay_port_closed(relayed, 3), "relay port still open after the connection closed"
    finally:
        peer.close()


# --------------------------------------------------------------------------
# Limits and timeouts (uturnd's flags)

def test_slow_reader_is_closed_and_others_go_on(strict_stream_server):
    """A client that stops reading while its peer floods: the server queues
    at most --tcp-send-queue bytes, then drops, and closes the connection
    after --tcp-stall-timeout. Its memory stays bounded and other clients
    are served meanwhile."""
    srv = strict_stream_server
    c = allocated_client(srv)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    flooder = stun.udp_socket("127.0.0.1")
    try:
        assert c.create_permission(flooder.getsockname()[:2]).cls == stun.SUCCESS
        c.send_indication(flooder.getsockname()[:2], b"open")
        flooder.settimeout(3)
        _, relayed = flooder.recvfrom(100)
        flooder.connect(relayed)  # so the closed relay port shows as ECONNREFUSED
        rss_before = stun.rss_kib(srv.proc.pid)
        payload = b"z" * 1000
        closed = False
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and not closed:
            for _ in range(200):
                try:
                    flooder.sendto(payload, relayed)
                except ConnectionRefusedError:
                    closed = True  # the relay port went away with the connection
                    break
            time.sleep(0.02)
            # Others are served while the slow reader is stuck.
            assert stun.binding(srv.addr(), timeout=2) is not None
        assert closed, "the stalled connection was not closed within 12 s\n" + srv.output_tail(20)
        assert stun.rss_kib(srv.proc.pid) - rss_before < 20_000
        assert stun.wait_until(lambda: "reads nothing" in srv.output(), 2)
    finally:
        flooder.close()
        c.close()


def seconds_until_closed(sock: socket.socket, limit: float = 10.0) -> float:
    """Waits (at most `limit` seconds: a timeout fails the test) for the
    server to close `sock` without sending anything; returns how long it took."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        data = sock.recv(100)
    except ConnectionResetError:
        data = b""
    assert data == b"", data
    return time.monotonic() - start


def test_tls_handshake_that_never_finishes(strict_stream_server):
    """A TLS client that connects and sends half a ClientHello is closed by
    --tls-handshake-timeout (2 s here), not at once."""
    with socket.create_connection(tls_addr(strict_stream_server), timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a record header and a few bytes
        assert seconds_until_closed(s) >= 1.5
    assert stun.wait_until(lambda: "handshake not finished" in strict_stream_server.output(), 2)


def test_silent_connection_without_allocation_is_closed(strict_stream_server):
    """A TCP connection that never sends anything is closed by
    --tcp-idle-timeout (3 s here), not at once."""
    with socket.create_connection(strict_stream_server.addr(), timeout=10) as s:
        assert seconds_until_closed(s) >= 2.5
    assert stun.wait_until(lambda: "idle for 3 s without an allocation" in strict_stream_server.output(), 2)


def test_tls_alpn_stun_turn(tls_server):
    """RFC 7443: a client offering "stun.turn" gets it; one offering only
    another protocol still connects, without ALPN."""
    if server_kind() != "uturnd":
        pytest.skip("checks uturnd's ALPN choice")
    c = stun.StreamTurnClient(tls_addr(tls_server), "x", "y", tls=True, alpn=["stun.turn"])
    assert c.sock.selected_alpn_protocol() == "stun.turn"
    c.close()
    c = stun.StreamTurnClient(tls_addr(tls_server), "x", "y", tls=True, alpn=["h2"])
    assert c.sock.selected_alpn_protocol() is None
    req = stun.Message(stun.BINDING)
    resp = c._transact(req.encode(), req.txid, 3)
    c.close()
    assert resp is not None and resp.cls == stun.SUCCESS


def test_sighup_reloads_the_certificate(server_factory):
    """SIGHUP re-reads --cert/--pkey: connections made afterwards get the new
    certificate, and an allocation made over TLS before the reload keeps working."""
    if server_kind() != "uturnd":
        pytest.skip("uturnd's reload")
    import signal
    from conftest import write_self_signed
    srv = server_factory("turn-tls-reload", tls=True)
    addr = tls_addr(srv)

    def served_certificate() -> bytes:
        c = stun.StreamTurnClient(addr, "x", "y", tls=True)
        try:
            return c.sock.getpeercert(binary_form=True)
        finally:
            c.close()

    before = served_certificate()
    assert before == ssl.PEM_cert_to_DER_cert(srv.extra["cert"].read_text())
    peer = stun.EchoPeer(max_seconds=30)
    old = allocated_client(srv, tls=True)
    try:
        assert old.channel_bind(0x4003, peer.addr).cls == stun.SUCCESS
        # A new pair written over the old files, as a certificate renewal does.
        new_cert, new_key = write_self_signed(srv.extra["cert"].parent / "renewed")
        srv.extra["cert"].write_bytes(new_cert.read_bytes())
        srv.extra["key"].write_bytes(new_key.read_bytes())
        os.kill(srv.proc.pid, signal.SIGHUP)
        assert stun.wait_until(lambda: "TLS certificate reloaded" in srv.output(), 5), srv.output_tail(10)
        assert stun.wait_until(lambda: served_certificate() != before, 5)
        assert served_certificate() == ssl.PEM_cert_to_DER_cert(new_cert.read_text())
        old.send_channel_data(0x4003, b"still here")
        assert old.recv_channel_data(3) == (0x4003, b"still here")
    finally:
        old.close()
        peer.close()


def test_random_frames_over_tcp_and_tls(tls_server):
    """Hostile streams: well-framed STUN and ChannelData with random bodies,
    random lengths up to 64 KiB split at random places, on several TCP and
    TLS connections (bounded: 400 frames in all). The server closes what it
    must, stays up with bounded memory, and a real client is served after."""
    if server_kind() != "uturnd":
        pytest.skip("uturnd's RSS and log")
    import random
    rng = random.Random(6062)
    rss_before = stun.rss_kib(tls_server.proc.pid)
    for n in range(8):
        tls = n % 2 == 1
        try:
            c = stun.StreamTurnClient(tls_addr(tls_server) if tls else tls_server.addr(), "x", "y", tls=tls)
        except OSError:
            continue
        stream = bytearray()
        for _ in range(50):
            if rng.random() < 0.5:   # STUN header, random type, cookie, body
                length = rng.choice([0, 4, 8, rng.randrange(0, 2048, 4), 65532])
                body = bytes(rng.getrandbits(8) for _ in range(min(length, 4096)))
                body += b"\0" * (length - len(body))
                stream += struct.pack("!HHI", rng.randrange(0, 0x4000), length, 0x2112A442)
                stream += os.urandom(12) + body
            else:                    # ChannelData, any channel, padded
                length = rng.choice([0, 1, 3, rng.randrange(0, 1500), 65535])
                stream += struct.pack("!HH", rng.randrange(0x4000, 0x8000), length)
                stream += os.urandom(length) + b"\0" * stun._pad4(length)
        try:
            pos = 0
            while pos < len(stream):
                cut = rng.randrange(1, 9000)
                c.sock.sendall(bytes(stream[pos:pos + cut]))
                pos += cut
        except OSError:
            pass  # closed by the server: allowed
        c.close()
    assert stun.binding(tls_server.addr(), timeout=2) is not None
    good = allocated_client(tls_server)
    good.close()
    assert tls_server.proc.poll() is None
    assert stun.rss_kib(tls_server.proc.pid) - rss_before < 50_000
