"""RFC 6062 TCP relaying against the real server: a client over TCP (or
TLS) allocates with REQUESTED-TRANSPORT TCP, then either asks the server to
connect to a TCP peer (Connect) or a TCP peer connects to the relayed address
(ConnectionAttempt); a second client connection does ConnectionBind and
becomes a raw byte pipe to the peer. Checked with coturn's
turnutils_uclient -T (client to client through the relay, over TCP and TLS)
and with our own client against a TCP echo peer, including a transfer far
larger than any buffer, in both directions, and the closing of both ends.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

import stun
from conftest import server_kind
from test_uclient import assert_all_echoed, run_uclient


@pytest.fixture(scope="module")
def relay_server(server_factory):
    return server_factory("turn-tcp-relay", tls=True)


class TcpEchoPeer:
    """A TCP echo server on 127.0.0.1 (a thread per connection), stopping by
    itself after max_seconds. `accepted` lists the source addresses seen."""

    def __init__(self, max_seconds: float = 60.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.addr = self.sock.getsockname()[:2]
        self.accepted: list[tuple[str, int]] = []
        self._deadline = time.monotonic() + max_seconds
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                conn, src = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted.append(src[:2])
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn):
        # A generous timeout: the relay holds back (TCP back-pressure) while
        # its other side is slow, and a short one here would end the echo.
        conn.settimeout(10)
        with conn:
            while not self._stop.is_set() and time.monotonic() < self._deadline:
                try:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
                except socket.timeout:
                    continue
                except OSError:
                    return

    def close(self):
        self._stop.set()
        self.sock.close()


def tcp_allocation(server, tls=False) -> stun.StreamTurnClient:
    addr = ("127.0.0.1", server.extra["tls_port"]) if tls else server.addr()
    c = stun.StreamTurnClient(addr, server.user, server.password, tls=tls)
    resp = c.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.TCP_TRANSPORT, 0, 0, 0]))])
    assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason())
    c.relayed = resp.xor_address(stun.XOR_RELAYED_ADDRESS)
    return c


def data_connection(server, control: stun.StreamTurnClient, connection_id: bytes, tls=False):
    """A new connection to the server with ConnectionBind for connection_id,
    answered with success: from then on a raw pipe to the peer."""
    d = stun.StreamTurnClient(control.server, server.user, server.password, tls=tls)
    d.realm, d.nonce, d.key = control.realm, control.nonce, control.key
    resp = d.request(stun.CONNECTION_BIND, [(stun.CONNECTION_ID, connection_id)])
    assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason())
    return d


def pump(sock, payload: bytes, timeout: float = 20.0) -> bytes:
    """Sends payload while reading as many bytes back, on one thread with
    non-blocking I/O (an SSL socket must not be read and written from two
    threads at once). Bounded by `timeout`."""
    import select
    import ssl
    sock.setblocking(False)
    sent, got = 0, bytearray()
    deadline = time.monotonic() + timeout
    try:
        while len(got) < len(payload) and time.monotonic() < deadline:
            writing = sent < len(payload)
            readable, writable, _ = select.select([sock], [sock] if writing else [], [], 0.2)
            if readable or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                while True:
                    try:
                        chunk = sock.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        break
                    if not chunk:
                        return bytes(got)  # the server closed
                    got += chunk
            if writable:
                try:
                    sent += sock.send(payload[sent:sent + 16384])
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    pass
    finally:
        sock.setblocking(True)
    return bytes(got)


def test_uclient_tcp_relay(relay_server):
    """turnutils_uclient -T: two clients each with a TCP allocation, one
    Connects to the other's relayed address, ConnectionAttempt and
    ConnectionBind on both sides, every message through."""
    r = run_uclient(relay_server, None, n=30, m=2, extra=["-T"])
    assert r.sent and r.sent >= 60, r.output
    assert_all_echoed(r, r.sent)


def test_uclient_tcp_relay_tls(relay_server):
    """-T -S: the same with the client connections over TLS."""
    r = run_uclient(relay_server, None, n=20, m=1, extra=["-T", "-S"], port=relay_server.extra["tls_port"])
    assert r.sent and r.sent >= 20, r.output
    assert_all_echoed(r, r.sent)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_connect_bind_and_a_large_transfer(relay_server, tls):
    """Connect to a TCP echo peer, ConnectionBind, then 1 MiB through and
    back intact: far more than the send queues, so back-pressure must hold
    it, never drop it."""
    peer = TcpEchoPeer()
    control = tcp_allocation(relay_server, tls=tls)
    try:
        resp = control.request(stun.CONNECT, lambda txid: [(stun.XOR_PEER_ADDRESS,
                                                            stun.encode_xor_address(peer.addr, txid))])
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason())
        cid = resp.get(stun.CONNECTION_ID)
        assert cid is not None and len(cid) == 4
        data = data_connection(relay_server, control, cid, tls=tls)
        payload = bytes((i * 31 + 7) & 0xFF for i in range(1 << 20))
        back = pump(data.sock, payload, timeout=20)
        assert len(back) == len(payload)
        assert back == payload
        assert len(peer.accepted) == 1
        data.close()
    finally:
        control.close()
        peer.close()


def test_connect_refused_peer_gets_447(relay_server):
    """A Connect to a port nobody listens on is answered 447."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[:2]   # bound, not listening: refused
        control = tcp_allocation(relay_server)
        try:
            resp = control.request(stun.CONNECT, lambda txid: [(stun.XOR_PEER_ADDRESS,
                                                                stun.encode_xor_address(dead, txid))])
            assert resp.cls == stun.ERROR and resp.error_code == 447, resp.error_code
        finally:
            control.close()


def test_peer_connects_in_connection_attempt(relay_server):
    """A peer with a permission connects to the relayed address: the client
    gets ConnectionAttempt with a CONNECTION-ID, binds it, and bytes flow both
    ways; a peer without permission is refused."""
    control = tcp_allocation(relay_server)
    try:
        relayed = control.relayed
        # No permission yet: the server closes the peer's connection (RFC 6062 §5.3).
        with socket.create_connection(relayed, timeout=5) as early:
            early.settimeout(5)
            try:
                assert early.recv(100) == b""
            except ConnectionResetError:
                pass
        assert control.create_permission(("127.0.0.1", 9)).cls == stun.SUCCESS
        peer = socket.create_connection(relayed, timeout=5)
        msg = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            frame = control.read_frame(5)
            if frame[0] < 0x40:
                m = stun.parse(frame)
                if m.method == stun.CONNECTION_ATTEMPT:
                    msg = m
                    break
        assert msg is not None, "no ConnectionAttempt"
        assert msg.xor_address(stun.XOR_PEER_ADDRESS) == peer.getsockname()[:2]
        data = data_connection(relay_server, control, msg.get(stun.CONNECTION_ID))
        peer.sendall(b"from the peer")
        data.sock.settimeout(5)
        assert data.sock.recv(100) == b"from the peer"
        data.sock.sendall(b"from the client")
        peer.settimeout(5)
        assert peer.recv(100) == b"from the client"
        # The client's data connection closes: the peer's follows.
        data.close()
        assert peer.recv(100) == b""
        peer.close()
    finally:
        control.close()


def test_udp_client_cannot_allocate_tcp(turn_server):
    """RFC 6062 §5.1: REQUESTED-TRANSPORT TCP over UDP is 400."""
    if server_kind() != "uturnd":
        pytest.skip("uturnd's answer")
    c = stun.TurnClient(turn_server.addr(), turn_server.user, turn_server.password)
    try:
        resp = c.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.TCP_TRANSPORT, 0, 0, 0]))])
        assert resp.cls == stun.ERROR and resp.error_code == 400
    finally:
        c.close()
