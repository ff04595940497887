"""TURN over DTLS (RFC 8656 §3.1, DTLS 1.2 on UDP) against the real uturnd.

The DTLS listener is on --dtls-listening-port, by default the TLS port
number (coturn serves TLS and DTLS on one port number). Checked with coturn's
turnutils_uclient -S (no -t: DTLS) for channels and Send indications, with
hand-made ClientHellos for what no ordinary client does (the stateless
cookie exchange, a handshake left unfinished, a flood of spoofed
ClientHellos), with `openssl s_client -dtls1_2` for the certificate that
SIGHUP reloads, and through the metrics for what the server did.

uturnd only: the coturn stand-in runs with --no-dtls (conftest).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time

import pytest

import stun
from conftest import PASSWORD, USER, require_tool, server_kind
from test_metrics import scrape_until, start_metrics_server
from test_uclient import assert_all_echoed, run_uclient

HANDSHAKE_TIMEOUT = 2
# Receive buffers per worker: few enough that one flood has used each once
# (the kernel fills a buffer's pages the first time it writes into it, so
# RSS grows until every buffer has been used, whatever the traffic).
BUFFERS = 1024


@pytest.fixture(scope="module")
def dtls_server(server_factory):
    if server_kind() != "uturnd":
        pytest.skip("the coturn stand-in runs with --no-dtls")
    return start_metrics_server(
        server_factory, "turn-dtls", f"--tls-handshake-timeout {HANDSHAKE_TIMEOUT} --buffers {BUFFERS}", tls=True)


@pytest.fixture(scope="module")
def dtls_limited_server(server_factory):
    """One worker, one DTLS session per IP address."""
    if server_kind() != "uturnd":
        pytest.skip("the coturn stand-in runs with --no-dtls")
    return start_metrics_server(
        server_factory, "turn-dtls-limited", "--workers 1 --tcp-connections-per-ip 1", tls=True)


def dtls_port(server) -> int:
    return server.extra["tls_port"]


def metrics(server, ok=lambda s: True, timeout: float = 6.0) -> dict[str, float]:
    return scrape_until(server.extra["metrics_port"], ok, timeout)


def dtls_count(samples: dict[str, float], event: str) -> float:
    return samples.get(f'uturn_dtls_sessions_total{{event="{event}"}}', 0.0)


# --------------------------------------------------------------------------
# Hand-made DTLS 1.2 ClientHellos (RFC 6347 §4.2.1, RFC 5246 §7.4.1.2)

def _u24(n: int) -> bytes:
    return n.to_bytes(3, "big")


def client_hello(client_random: bytes, cookie: bytes = b"", message_seq: int = 0, record_seq: int = 0) -> bytes:
    suites = [0xC02B, 0xC02F, 0xC009, 0xC013]  # ECDHE with AES-GCM / AES-CBC
    exts = b""
    groups = struct.pack("!HHH", 4, 23, 29)  # secp256r1, x25519
    exts += struct.pack("!HH", 10, len(groups)) + groups
    exts += struct.pack("!HHBB", 11, 2, 1, 0)  # ec_point_formats: uncompressed
    algs = struct.pack("!HHHH", 6, 0x0403, 0x0804, 0x0401)
    exts += struct.pack("!HH", 13, len(algs)) + algs
    exts += struct.pack("!HH", 23, 0)  # extended_master_secret
    body = (b"\xfe\xfd" + client_random + b"\x00" + bytes([len(cookie)]) + cookie
            + struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    handshake = (b"\x01" + _u24(len(body)) + struct.pack("!H", message_seq) + _u24(0) + _u24(len(body))
                 + body)
    return (b"\x16\xfe\xfd" + struct.pack("!H", 0) + record_seq.to_bytes(6, "big")
            + struct.pack("!H", len(handshake)) + handshake)


def hello_verify_cookie(datagram: bytes) -> bytes | None:
    """The cookie of a HelloVerifyRequest (handshake type 3), else None."""
    if len(datagram) < 13 + 12 + 3 or datagram[0] != 22 or datagram[13] != 3:
        return None
    n = datagram[13 + 12 + 2]
    return datagram[13 + 12 + 3:13 + 12 + 3 + n]


def start_handshake(server, timeout: float = 3) -> socket.socket:
    """Runs the cookie exchange and sends the ClientHello with the cookie,
    then stops: the server has made a session and waits for the client's
    next flight, which never comes. Returns the socket (still open)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", dtls_port(server)))
    rnd = os.urandom(32)
    s.send(client_hello(rnd))
    cookie = hello_verify_cookie(s.recv(4096))
    assert cookie, "no HelloVerifyRequest for a ClientHello without a cookie"
    s.send(client_hello(rnd, cookie, message_seq=1, record_seq=1))
    flight = s.recv(4096)
    assert flight[0] == 22 and flight[13] == 2, "the answer to a ClientHello with its cookie is not a ServerHello"
    return s


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --------------------------------------------------------------------------

def test_uclient_dtls_channels(dtls_server, udp_peer):
    """turnutils_uclient -S (DTLS): Allocate, ChannelBind, ChannelData, all echoed."""
    r = run_uclient(dtls_server, udp_peer, n=50, extra=["-S"], port=dtls_port(dtls_server))
    assert_all_echoed(r, 50)


def test_uclient_dtls_send_indications(dtls_server, udp_peer):
    """-S -s with three clients: Send and Data indications inside DTLS records."""
    r = run_uclient(dtls_server, udp_peer, n=30, m=3, extra=["-S", "-s"], port=dtls_port(dtls_server))
    assert_all_echoed(r, 90)


@pytest.mark.backend_independent
def test_cookie_exchange_is_stateless(dtls_server):
    """A ClientHello without a cookie gets a HelloVerifyRequest and makes no
    session; the cookie is bound to the source address (another socket's
    ClientHello with it gets a new HelloVerifyRequest, not a ServerHello)."""
    before = metrics(dtls_server)
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for s in (a, b):
            s.settimeout(3)
            s.connect(("127.0.0.1", dtls_port(dtls_server)))
        rnd = os.urandom(32)
        a.send(client_hello(rnd))
        cookie = hello_verify_cookie(a.recv(4096))
        assert cookie and len(cookie) >= 8
        b.send(client_hello(rnd, cookie, message_seq=1, record_seq=1))
        again = b.recv(4096)
        assert hello_verify_cookie(again), "a cookie made for another address was accepted"
    finally:
        a.close()
        b.close()
    after = metrics(dtls_server, lambda s: dtls_count(s, "accepted") >= dtls_count(before, "accepted"))
    assert dtls_count(after, "accepted") == dtls_count(before, "accepted")
    assert after["uturn_dtls_cookies_total"] >= before.get("uturn_dtls_cookies_total", 0) + 2


@pytest.mark.backend_independent
def test_unfinished_handshake_times_out(dtls_server):
    """A client that stops after the ClientHello with its cookie: the session
    is made, then dropped after --tls-handshake-timeout."""
    before = metrics(dtls_server)
    s = start_handshake(dtls_server)
    try:
        after = metrics(dtls_server, lambda x: dtls_count(x, "timed_out") > dtls_count(before, "timed_out"),
                        timeout=HANDSHAKE_TIMEOUT + 4)
    finally:
        s.close()
    assert dtls_count(after, "accepted") == dtls_count(before, "accepted") + 1
    assert dtls_count(after, "timed_out") == dtls_count(before, "timed_out") + 1, after
    assert dtls_count(after, "closed") >= dtls_count(before, "closed") + 1


def _flood(server, ports: int = 250, rounds: int = 20) -> None:
    """`ports` × `rounds` ClientHellos without cookies, each from one of
    `ports` source ports, never reading the answers (as a spoofer cannot)."""
    socks = []
    try:
        for _ in range(ports):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect(("127.0.0.1", dtls_port(server)))
            socks.append(s)
        for round_ in range(rounds):
            for s in socks:
                try:
                    s.send(client_hello(os.urandom(32), record_seq=round_))
                except BlockingIOError:
                    pass
            time.sleep(0.01)
    finally:
        for s in socks:
            s.close()


def test_spoofed_client_hello_flood(dtls_server, udp_peer):
    """Floods of 5000 ClientHellos without cookies from 250 source ports:
    each is answered statelessly and no session is made. The first flood
    warms up what any traffic touches once (receive buffers the kernel
    fills for the first time, allocator arenas); across the second, the
    server's RSS stays flat. A real DTLS client is served right after."""
    pid = dtls_server.proc.pid
    base = metrics(dtls_server)
    _flood(dtls_server)
    cookies = base.get("uturn_dtls_cookies_total", 0) + 4000
    warm = metrics(dtls_server, lambda x: x.get("uturn_dtls_cookies_total", 0) >= cookies)
    rss0 = rss_kib(pid)
    _flood(dtls_server)
    cookies = warm.get("uturn_dtls_cookies_total", 0) + 4000
    after = metrics(dtls_server, lambda x: x.get("uturn_dtls_cookies_total", 0) >= cookies)
    assert after.get("uturn_dtls_cookies_total", 0) >= cookies, "the ClientHellos did not reach the server"
    assert dtls_count(after, "accepted") == dtls_count(base, "accepted")
    growth = rss_kib(pid) - rss0
    # A session costs tens of KiB inside OpenSSL: 5000 would be 100+ MiB.
    assert growth < 2048, f"RSS grew by {growth} KiB during the second flood"
    r = run_uclient(dtls_server, udp_peer, n=20, extra=["-S"], port=dtls_port(dtls_server))
    assert_all_echoed(r, 20)


def _served_certificate_subject(port: int) -> str:
    openssl = require_tool("openssl")
    proc = subprocess.run(
        [openssl, "s_client", "-dtls1_2", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    out = proc.stdout.decode(errors="replace")
    for line in out.splitlines():
        if line.startswith("subject="):
            return line
    raise AssertionError(f"no certificate in openssl s_client's output:\n{out[-2000:]}")


@pytest.mark.backend_independent
def test_sighup_reloads_dtls_certificate(dtls_server, udp_peer, tmp_path):
    """SIGHUP: a new certificate at the same paths is served to new DTLS sessions."""
    assert "localhost" in _served_certificate_subject(dtls_port(dtls_server))
    cert, key = dtls_server.extra["cert"], dtls_server.extra["key"]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=reloaded.example"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dtls_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    subject = ""
    while time.monotonic() < deadline:
        subject = _served_certificate_subject(dtls_port(dtls_server))
        if "reloaded.example" in subject:
            break
        time.sleep(0.3)
    assert "reloaded.example" in subject, dtls_server.output_tail()
    r = run_uclient(dtls_server, udp_peer, n=10, extra=["-S"], port=dtls_port(dtls_server))
    assert_all_echoed(r, 10)


@pytest.mark.backend_independent
def test_per_ip_limit(dtls_limited_server):
    """--tcp-connections-per-ip 1 holds for DTLS sessions: a second client
    from the same address passes the cookie exchange but gets no session
    (no ServerHello) while the first one lives."""
    srv = dtls_limited_server
    before = metrics(srv)
    first = start_handshake(srv)
    try:
        with pytest.raises(AssertionError, match="ServerHello|timed out"):
            try:
                start_handshake(srv, timeout=1).close()
            except socket.timeout as e:
                raise AssertionError("timed out") from e
        after = metrics(srv, lambda x: dtls_count(x, "refused") > dtls_count(before, "refused"))
    finally:
        first.close()
    assert dtls_count(after, "refused") == dtls_count(before, "refused") + 1
    assert dtls_count(after, "accepted") == dtls_count(before, "accepted") + 1


# --------------------------------------------------------------------------
# A TURN client over DTLS 1.2 of our own: pyOpenSSL's SSL with memory BIOs,
# datagrams on a UDP socket, the handshake's retransmissions driven by
# OpenSSL's timer. What turnutils_uclient cannot do: send close_notify,
# start over from the same source port, receive records of any size.

class DtlsTurnClient(stun.TurnClient):
    def __init__(self, server: tuple[str, int], *, port: int = 0, timeout: float = 5.0):
        from OpenSSL import SSL
        self.SSL = SSL
        self.server, self.username, self.password = server, USER, PASSWORD
        self.realm = self.nonce = None
        self.key = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.connect(server)
        self.port = self.sock.getsockname()[1]
        self.sent: list[bytes] = []  # every datagram sent, in order
        self.plain: list[bytes] = []  # decrypted records not taken yet
        ctx = SSL.Context(SSL.DTLS_CLIENT_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_ciphertext_mtu(1200)
        self.conn.set_connect_state()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.do_handshake()
                break
            except SSL.WantReadError:
                pass
            self._flush()
            if not self._receive(min(0.2, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"DTLS handshake from port {self.port} not finished in {timeout} s")
                self.conn.DTLSv1_handle_timeout()
        self._flush()

    def _flush(self) -> None:
        while True:
            try:
                data = self.conn.bio_read(65536)
            except self.SSL.WantReadError:
                return
            self.sent.append(data)
            self.sock.send(data)

    def _receive(self, timeout: float) -> bool:
        """One datagram from the server into the SSL; False on timeout."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ConnectionRefusedError):
            return False
        self.conn.bio_write(data)
        return True

    def _records(self, timeout: float) -> bytes | None:
        """The next decrypted record, or None (timeout; b"" after close_notify)."""
        deadline = time.monotonic() + timeout
        while not self.plain:
            try:
                self.plain.append(self.conn.recv(65536))
                continue
            except self.SSL.WantReadError:
                pass
            except self.SSL.ZeroReturnError:
                return b""
            self._flush()
            left = deadline - time.monotonic()
            if left <= 0 or not self._receive(left):
                return None
        return self.plain.pop(0)

    def _send(self, data: bytes) -> None:
        self.conn.write(data)
        self._flush()

    def _transact(self, data: bytes, txid: bytes, timeout: float) -> stun.Message | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._send(data)
            wait = time.monotonic() + 0.5
            while (left := min(wait, deadline) - time.monotonic()) > 0:
                record = self._records(left)
                if not record:
                    break
                if record[0] < 0x40:
                    msg = stun.parse(record)
                    if msg.txid == txid:
                        return msg
        return None

    def recv_channel_data(self, timeout: float = 2.0) -> tuple[int, bytes]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            record = self._records(left)
            if record is None:
                break
            if len(record) >= 4 and 0x40 <= record[0] <= 0x7F:
                channel, length = struct.unpack("!HH", record[:4])
                return channel, record[4:4 + length]
        raise TimeoutError("no ChannelData from the server")

    def close_notify(self) -> None:
        try:
            self.conn.shutdown()
        except self.SSL.Error:
            pass
        self._flush()

    def close(self) -> None:
        self.sock.close()


def allocated_dtls_client(server, **kw) -> DtlsTurnClient:
    c = DtlsTurnClient(("127.0.0.1", dtls_port(server)), **kw)
    r = c.allocate()
    assert r.cls == stun.SUCCESS, f"Allocate over DTLS: {r.error_code} {r.error_reason()}"
    return c


def relayed_address(c: DtlsTurnClient, peer: stun.EchoPeer) -> tuple[str, int]:
    """The client's relayed address, as the peer sees it (the peer's first source)."""
    assert c.create_permission(peer.addr).cls == stun.SUCCESS
    before = peer.received
    c.send_indication(peer.addr, b"hello")
    assert stun.wait_until(lambda: peer.received > before, 3), "the peer got nothing"
    return next(iter(peer.sources))




@pytest.mark.backend_independent
def test_close_notify_deletes_allocation(dtls_server):
    """RFC 8656 §3.1: over DTLS the allocation lives as long as the
    association. close_notify from the client ends the session and deletes
    its allocation: the relayed port stops relaying."""
    before = metrics(dtls_server)
    c = allocated_dtls_client(dtls_server)
    peer = stun.EchoPeer(echo=False, max_seconds=30)
    try:
        relayed = relayed_address(c, peer)
        c.close_notify()
        assert stun.relay_port_closed(relayed), "the relay port still accepts datagrams after close_notify"
        after = metrics(dtls_server, lambda x: x.get("uturn_allocations_deleted_total", 0)
                        > before.get("uturn_allocations_deleted_total", 0))
        assert after["uturn_allocations_deleted_total"] == before.get("uturn_allocations_deleted_total", 0) + 1
        assert dtls_count(after, "closed") >= dtls_count(before, "closed") + 1
    finally:
        peer.close()
        c.close()


@pytest.mark.backend_independent
def test_new_handshake_from_the_same_port_replaces_the_session(dtls_server):
    """A client that vanished without close_notify and comes back from the
    same address and port (a new socket on a reused port) with a new
    ClientHello: after the cookie exchange the new handshake replaces the
    old session (RFC 6347 §4.2.8), whose allocation is deleted, and the new
    Allocate succeeds. (turnutils_uclient with 100 clients hit this: the old
    session swallowed the new ClientHellos and the client never connected.)
    A copy of the old session's ClientHello, sent again while it is open,
    does not end it."""
    before = metrics(dtls_server)
    peer = stun.EchoPeer(echo=False, max_seconds=30)
    first = allocated_dtls_client(dtls_server)
    second = None
    try:
        relayed = relayed_address(first, peer)
        hello_with_cookie = next(d for d in first.sent if d[0] == 22 and d[13] == 1 and d[60 + d[59]] > 0)
        first.sock.send(hello_with_cookie)  # a late duplicate: ignored
        assert first.refresh(600).cls == stun.SUCCESS, "a duplicated ClientHello ended the session"
        port = first.port
        first.close()  # no close_notify
        second = allocated_dtls_client(dtls_server, port=port)
        assert stun.relay_port_closed(relayed), "the old session's relay port still accepts datagrams"
        after = metrics(dtls_server, lambda x: dtls_count(x, "replaced") > dtls_count(before, "replaced"))
        assert dtls_count(after, "replaced") == dtls_count(before, "replaced") + 1
        relayed_address(second, peer)  # the new allocation relays
    finally:
        peer.close()
        first.close()
        if second:
            second.close()


@pytest.fixture(scope="module")
def dtls_big_buffers_server(server_factory):
    """Receive buffers of 20 KiB: peer datagrams up to about 20,000 bytes
    reach the relay, more than one DTLS record can carry (16 KiB)."""
    if server_kind() != "uturnd":
        pytest.skip("the coturn stand-in runs with --no-dtls")
    return start_metrics_server(
        server_factory, "turn-dtls-big", "--workers 1 --buffer-size 20480 --buffers 256", tls=True)


def test_large_peer_datagrams_reach_a_dtls_client(dtls_big_buffers_server):
    """Peer datagrams of 4,000 and 12,000 bytes reach a DTLS client whole,
    each as one record (a Data indication, then ChannelData); one of 17,000
    bytes cannot fit a record (2^14 bytes of plaintext): it is dropped and
    counted as too_big, and the session goes on."""
    srv = dtls_big_buffers_server
    c = DtlsTurnClient(("127.0.0.1", dtls_port(srv)))
    peer = stun.udp_socket("127.0.0.1")
    try:
        r = c.allocate()
        assert r.cls == stun.SUCCESS, r.error_reason()
        relayed = r.xor_address(stun.XOR_RELAYED_ADDRESS)
        peer_addr = peer.getsockname()[:2]
        assert c.create_permission(peer_addr).cls == stun.SUCCESS
        big = os.urandom(12000)
        peer.sendto(big, relayed)
        deadline = time.monotonic() + 3
        data = None
        while data is None and (left := deadline - time.monotonic()) > 0:
            record = c._records(left)
            if record and record[0] < 0x40:
                msg = stun.parse(record)
                if msg.method == stun.DATA:
                    data = msg.get(stun.DATA_ATTR)
        assert data == big, "no Data indication with the 12,000-byte datagram"
        assert c.channel_bind(0x4001, peer_addr).cls == stun.SUCCESS
        for n in (4000, 12000):
            payload = os.urandom(n)
            peer.sendto(payload, relayed)
            assert c.recv_channel_data(3) == (0x4001, payload), f"the {n}-byte datagram did not arrive whole"
        before = metrics(srv)
        peer.sendto(os.urandom(17000), relayed)
        after = metrics(srv, lambda x: x.get('uturn_dropped_packets_total{reason="too_big"}', 0)
                        > before.get('uturn_dropped_packets_total{reason="too_big"}', 0))
        assert after['uturn_dropped_packets_total{reason="too_big"}'] == \
            before.get('uturn_dropped_packets_total{reason="too_big"}', 0) + 1
        peer.sendto(b"still there", relayed)
        assert c.recv_channel_data(3) == (0x4001, b"still there")
    finally:
        peer.close()
        c.close()


@pytest.mark.backend_independent
def test_admin_api_ending_the_allocation_closes_the_dtls_session(server_factory, tmp_path_factory):
    """DELETE /v1/sessions?user=… ends a DTLS client's allocation and its
    session: the client gets close_notify, the relay port closes."""
    if server_kind() != "uturnd":
        pytest.skip("the admin API is uturnd's")
    import http.client

    from test_admin import TOKEN
    from conftest import free_port
    token_file = tmp_path_factory.mktemp("dtls-admin") / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    admin = free_port(span=1, hosts=["127.0.0.1"])
    extra = os.environ.get("UTURN_E2E_EXTRA_ARGS", "")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTURN_E2E_EXTRA_ARGS",
                  f"{extra} --workers 1 --admin-listen 127.0.0.1:{admin} --admin-token-file {token_file}")
        srv = server_factory("turn-dtls-admin", tls=True)
    c = allocated_dtls_client(srv)
    peer = stun.EchoPeer(echo=False, max_seconds=30)
    try:
        relayed = relayed_address(c, peer)
        conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        conn.request("DELETE", f"/v1/sessions?user={USER}", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        body = resp.read().decode()
        conn.close()
        assert resp.status == 200, body
        assert c._records(3) == b"", "no close_notify from the server"
        assert stun.relay_port_closed(relayed), "the relay port still accepts datagrams"
    finally:
        peer.close()
        c.close()
