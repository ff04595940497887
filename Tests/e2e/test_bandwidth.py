"""Traffic limits (issue #15): --max-bps per allocation over UDP, TCP and
TLS clients and RFC 6062 TCP relay pairs, --bps-capacity with its refuse
and share policies, and the uturn_policy_dropped_total and
uturn_policy_paused_total counters.

Byte streams are paused, not dropped: what a TCP or TLS client sends, and
both directions of an RFC 6062 data pair, arrive whole and in order, only
late (the server stops reading while the allocation's bucket is empty).

Each session offers a known rate with our own client (stun.py) in both
directions at once: ChannelData client -> server -> a UDP peer socket, and
datagrams peer -> relayed address -> client. What arrives is counted at the
far side over the whole sending window (5 s), and must be within 10 % of
the limit. The server's token bucket holds a tenth of a second, so the
first burst adds about 2 % over 5 s.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

import stun
from conftest import server_kind
from test_metrics import parse, scrape_until, start_metrics_server

# Datagrams are limited the same way on both backends; byte streams are
# paused by not arming receives, which each backend does its own way, so
# the stream tests run on the epoll pass too.
backend_independent = pytest.mark.backend_independent

MAX_BPS = 100_000          # bytes per second per direction
SIZE = 1000                # payload bytes per packet
SECONDS = 5.0


@pytest.fixture(scope="module", autouse=True)
def only_uturnd():
    if server_kind() != "uturnd":
        pytest.skip("these options' semantics are uturnd's (see docs/migrating-from-coturn.md)")


@pytest.fixture(scope="module")
def limited(server_factory):
    """uturnd with --max-bps, TLS and metrics."""
    return start_metrics_server(server_factory, "turn-maxbps", f"--max-bps {MAX_BPS}", tls=True)


class Session:
    """One allocation with a channel to a UDP peer socket of its own, and
    counters of what each side received."""

    def __init__(self, srv, transport: str = "udp"):
        if transport == "udp":
            self.client = stun.TurnClient(srv.addr(), srv.user, srv.password)
        elif transport == "tcp":
            self.client = stun.StreamTurnClient(srv.addr(), srv.user, srv.password)
        else:
            self.client = stun.StreamTurnClient(("127.0.0.1", srv.extra["tls_port"]), srv.user, srv.password,
                                                tls=True)
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind(("127.0.0.1", 0))
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.peer.settimeout(0.2)
        self.response = self.client.allocate()
        self.relay = None
        if self.response.cls == stun.SUCCESS:
            self.relay = self.response.xor_address(stun.XOR_RELAYED_ADDRESS)
            bound = self.client.channel_bind(0x4000, self.peer.getsockname())
            assert bound.cls == stun.SUCCESS, bound.error_code
        self.at_peer = 0
        self.at_client = 0
        # What had arrived when the sending stopped (see `offer`).
        self.window_at_peer = 0
        self.window_at_client = 0
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def _client_rx(self):
        while not self.stop.is_set():
            try:
                _, data = self.client.recv_channel_data(0.2)
                self.at_client += len(data)
            except (TimeoutError, socket.timeout):
                pass
            except OSError:
                return

    def _peer_rx(self):
        while not self.stop.is_set():
            try:
                data, _ = self.peer.recvfrom(65535)
                self.at_peer += len(data)
            except (TimeoutError, socket.timeout):
                pass
            except OSError:
                return

    def start(self):
        self.threads = [threading.Thread(target=self._client_rx, daemon=True),
                        threading.Thread(target=self._peer_rx, daemon=True)]
        for t in self.threads:
            t.start()

    def finish(self):
        time.sleep(0.3)  # what is in flight arrives
        self.stop.set()
        for t in self.threads:
            t.join(2)

    def close(self):
        self.stop.set()
        self.client.close()
        self.peer.close()


def offer(sessions: list[tuple[Session, float, bool]], seconds: float = SECONDS) -> list[int]:
    """Paces each (session, bytes per second, both directions) for `seconds`;
    returns the packets each sent (in each direction)."""
    payload = bytes(SIZE)
    for s, _, _ in sessions:
        s.start()
    t0 = time.monotonic()
    sent = [0] * len(sessions)
    while (t := time.monotonic() - t0) < seconds:
        for i, (s, rate, both) in enumerate(sessions):
            due = int(t * rate / SIZE) + 1
            while sent[i] < due:
                s.client.send_channel_data(0x4000, payload)
                if both:
                    s.peer.sendto(payload, s.relay)
                sent[i] += 1
        time.sleep(0.002)
    for s, _, _ in sessions:
        # Bytes paused on a stream go on arriving after the window: what
        # the window holds is what arrived within it.
        s.window_at_peer, s.window_at_client = s.at_peer, s.at_client
    for s, _, _ in sessions:
        s.finish()
    return sent


def settled_rates(sessions: list[Session], rate: float, settle: float = 2.0) -> list[float]:
    """Each session offers `rate` client -> peer for `settle` + SECONDS; the
    rate each peer received over the last SECONDS."""
    payload = bytes(SIZE)
    for s in sessions:
        s.start()
    t0 = time.monotonic()
    sent = [0] * len(sessions)
    marks: dict[int, int] = {}
    while (t := time.monotonic() - t0) < settle + SECONDS:
        if t >= settle and not marks:
            marks = {i: s.at_peer for i, s in enumerate(sessions)}
        for i, s in enumerate(sessions):
            due = int(t * rate / SIZE) + 1
            while sent[i] < due:
                s.client.send_channel_data(0x4000, payload)
                sent[i] += 1
        time.sleep(0.002)
    for s in sessions:
        s.finish()
    return [(s.at_peer - marks[i]) / SECONDS for i, s in enumerate(sessions)]


def within(measured: float, expected: float, tolerance: float = 0.10) -> bool:
    return abs(measured - expected) <= tolerance * expected


@pytest.mark.parametrize("transport", [pytest.param("udp", marks=backend_independent), "tcp", "tls"])
def test_max_bps_holds_a_session_at_twice_the_rate(limited, transport):
    hog = Session(limited, transport)
    # Another session, under the limit, must get all it sends.
    calm = Session(limited, "udp") if transport == "udp" else None
    try:
        runs = [(hog, 2 * MAX_BPS, True)]
        if calm:
            runs.append((calm, MAX_BPS / 2, True))
        sent = offer(runs)
        to_peer, to_client = hog.window_at_peer / SECONDS, hog.window_at_client / SECONDS
        out = limited.output_tail()
        assert within(to_peer, MAX_BPS), f"client->peer {to_peer:.0f} B/s, want {MAX_BPS} ±10 %\n{out}"
        assert within(to_client, MAX_BPS), f"peer->client {to_client:.0f} B/s, want {MAX_BPS} ±10 %\n{out}"
        if calm:
            sent = int(SECONDS * (MAX_BPS / 2) / SIZE + 1) * SIZE
            assert calm.at_peer >= 0.98 * sent and calm.at_client >= 0.98 * sent, \
                f"the session under the limit lost traffic: {calm.at_peer}, {calm.at_client} of {sent}"
        if transport == "udp":
            samples = scrape_until(limited.extra["metrics_port"],
                                   lambda s: s.get('uturn_policy_dropped_total{reason="bps"}', 0) > 0)
            dropped = samples.get('uturn_policy_dropped_total{reason="bps"}', 0)
            # About half of the 2 x 5 s x 200 packets offered in each direction.
            assert 700 <= dropped <= 1300, samples
            # The allocation's log line carries its drops.
            assert hog.client.refresh(0).cls == stun.SUCCESS
            assert stun.wait_until(lambda: "limited bps" in limited.output(), 3), limited.output_tail()
        else:
            # Over TCP or TLS the client's connection was paused, not its
            # ChannelData dropped: every byte reaches the peer, late.
            hog.stop.clear()
            hog.threads = [threading.Thread(target=hog._peer_rx, daemon=True)]
            hog.threads[0].start()
            total = sent[0] * SIZE
            assert stun.wait_until(lambda: hog.at_peer >= total, 10), f"{hog.at_peer} of {total} bytes reached the peer"
            hog.finish()
            assert hog.at_peer == total
            samples = scrape_until(limited.extra["metrics_port"],
                                   lambda s: s.get('uturn_policy_paused_total{direction="to_peer"}', 0) > 0)
            assert samples.get('uturn_policy_paused_total{direction="to_peer"}', 0) > 0, samples
    finally:
        hog.close()
        if calm:
            calm.close()


@backend_independent
def test_capacity_refuse_gives_486(server_factory):
    # Two allocations reserve 2 x 100 kB/s of 250 kB/s; a third would overbook it.
    srv = start_metrics_server(
        server_factory, "turn-refuse", f"--max-bps {MAX_BPS} --bps-capacity {int(2.5 * MAX_BPS)} --bps-capacity-policy refuse")
    sessions = [Session(srv) for _ in range(3)]
    try:
        assert [s.response.cls == stun.SUCCESS for s in sessions] == [True, True, False]
        assert sessions[2].response.error_code == 486
        # Released capacity is available again.
        assert sessions[0].client.refresh(0).cls == stun.SUCCESS
        again = Session(srv)
        try:
            assert again.response.cls == stun.SUCCESS, again.response.error_code
        finally:
            again.close()
    finally:
        for s in sessions:
            s.close()


@backend_independent
def test_capacity_share_splits_it_evenly(server_factory):
    capacity = 3 * MAX_BPS
    srv = start_metrics_server(server_factory, "turn-share", f"--bps-capacity {capacity} --bps-capacity-policy share")
    n = 3
    sessions = [Session(srv) for _ in range(n)]
    try:
        for s in sessions:
            assert s.response.cls == stun.SUCCESS, s.response.error_code
        # Each offers twice its share client -> peer. Workers recount active
        # allocations once a second: measured after 2 s of settling.
        rates = settled_rates(sessions, 2 * capacity / n)
        out = srv.output_tail()
        assert within(sum(rates), capacity), f"total {sum(rates):.0f} B/s, capacity {capacity}: {rates}\n{out}"
        for r in rates:
            assert within(r, capacity / n, 0.15), f"shares {rates}, want {capacity / n:.0f} each\n{out}"
        samples = scrape_until(srv.extra["metrics_port"],
                               lambda s: s.get('uturn_policy_dropped_total{reason="capacity"}', 0) > 0)
        assert samples.get('uturn_policy_dropped_total{reason="capacity"}', 0) > 0, samples
    finally:
        for s in sessions:
            s.close()


@backend_independent
def test_packet_rate_and_new_peer_rate(server_factory):
    srv = start_metrics_server(server_factory, "turn-pps", "--max-pps 100 --max-new-peers-per-second 2")
    s = Session(srv)  # its ChannelBind added one new peer
    try:
        assert s.response.cls == stun.SUCCESS, s.response.error_code
        # Permissions are per IP: two new peer IPs in the same second, the second over the rate (1 left after the bind).
        assert s.client.create_permission(("127.0.0.2", 40001)).cls == stun.SUCCESS
        refused = s.client.create_permission(("127.0.0.3", 40002))
        assert refused.cls == stun.ERROR and refused.error_code == 508
        # A peer already permitted costs nothing.
        assert s.client.create_permission(("127.0.0.2", 40001)).cls == stun.SUCCESS
        time.sleep(1.1)
        assert s.client.create_permission(("127.0.0.3", 40002)).cls == stun.SUCCESS
        # 200 small packets a second client -> peer against 100 a second.
        seconds = 3.0
        offer([(s, 200 * SIZE, False)], seconds)
        pps = s.at_peer / SIZE / seconds
        assert within(pps, 100), f"{pps:.0f} packets/s reached the peer, want 100 ±10 %\n{srv.output_tail()}"
        samples = scrape_until(srv.extra["metrics_port"],
                               lambda x: x.get('uturn_policy_dropped_total{reason="pps"}', 0) > 0
                               and x.get('uturn_policy_dropped_total{reason="peer_rate"}', 0) > 0)
        assert samples.get('uturn_policy_dropped_total{reason="pps"}', 0) >= 200, samples
        assert samples.get('uturn_policy_dropped_total{reason="peer_rate"}', 0) == 1, samples
    finally:
        s.close()


@backend_independent
def test_user_max_bps_is_split_between_the_users_allocations(server_factory):
    srv = start_metrics_server(server_factory, "turn-user-bps", f"--user-max-bps {MAX_BPS}")
    sessions = [Session(srv) for _ in range(2)]  # the same user, demo
    try:
        for s in sessions:
            assert s.response.cls == stun.SUCCESS, s.response.error_code
        rates = settled_rates(sessions, MAX_BPS)
        out = srv.output_tail()
        assert within(sum(rates), MAX_BPS), f"user total {sum(rates):.0f} B/s, want {MAX_BPS}: {rates}\n{out}"
        for r in rates:
            assert within(r, MAX_BPS / 2, 0.15), f"{rates}, want {MAX_BPS / 2:.0f} each\n{out}"
        samples = scrape_until(srv.extra["metrics_port"],
                               lambda x: x.get('uturn_policy_dropped_total{reason="user_bps"}', 0) > 0)
        assert samples.get('uturn_policy_dropped_total{reason="user_bps"}', 0) > 0, samples
    finally:
        for s in sessions:
            s.close()


# RFC 6062 TCP relay pairs: byte streams under the same limits, paused
# rather than dropped.

RELAY_SECONDS = 4.0


class RelayPair:
    """A TCP allocation, Connect to a TCP peer listener of our own, and the
    ConnectionBind data connection: `client` and `peer` are the two ends
    of the byte pipe through the server."""

    def __init__(self, srv):
        from test_tcp_relay import data_connection, tcp_allocation
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(5)
        self.control = tcp_allocation(srv)
        addr = self.listener.getsockname()[:2]
        resp = self.control.request(stun.CONNECT, lambda txid: [(stun.XOR_PEER_ADDRESS,
                                                                 stun.encode_xor_address(addr, txid))])
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason())
        self.peer, _ = self.listener.accept()
        self.data = data_connection(srv, self.control, resp.get(stun.CONNECTION_ID))
        self.client = self.data.sock

    def close(self):
        for s in (self.peer, self.listener):
            s.close()
        self.data.close()
        self.control.close()


class Stream:
    """Sends `payload` on `src` at `rate` bytes/s from `t0` (blocking when
    the server holds back) while reading it at `dst`, noting when each
    byte arrived."""

    def __init__(self, src, dst, payload: bytes, rate: float, t0: float):
        self.src, self.dst, self.payload, self.rate, self.t0 = src, dst, payload, rate, t0
        self.got = bytearray()
        self.arrivals: list[tuple[float, int]] = []
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._recv, daemon=True)]
        for t in self.threads:
            t.start()

    def _send(self):
        chunk = 4096
        for off in range(0, len(self.payload), chunk):
            delay = self.t0 + off / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                self.src.sendall(self.payload[off:off + chunk])
            except OSError:
                return

    def _recv(self):
        self.dst.settimeout(0.5)
        deadline = self.t0 + 30
        while len(self.got) < len(self.payload) and time.monotonic() < deadline:
            try:
                data = self.dst.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            if not data:
                return
            self.got += data
            self.arrivals.append((time.monotonic() - self.t0, len(data)))

    def by(self, t: float) -> int:
        """Bytes that arrived within `t` seconds of the start."""
        return sum(n for at, n in self.arrivals if at <= t)

    def wait(self, timeout: float) -> bool:
        for t in self.threads:
            t.join(max(0.0, self.t0 + timeout - time.monotonic()))
        return len(self.got) == len(self.payload)


def test_max_bps_holds_a_tcp_relay_pair_without_loss(limited):
    """A data pair offered twice --max-bps in each direction is held to it
    (±10 % over 4 s), and every byte arrives, in order; a second pair of
    another allocation, under the limit, is not slowed."""
    import os
    hog, calm = RelayPair(limited), RelayPair(limited)
    try:
        t0 = time.monotonic() + 0.2
        size = int(2 * MAX_BPS * RELAY_SECONDS)
        up = Stream(hog.client, hog.peer, os.urandom(size), 2 * MAX_BPS, t0)
        down = Stream(hog.peer, hog.client, os.urandom(size), 2 * MAX_BPS, t0)
        quiet = Stream(calm.client, calm.peer, os.urandom(int(MAX_BPS / 2 * RELAY_SECONDS)), MAX_BPS / 2, t0)
        # All of it arrives: twice the window at the limit, and some slack.
        for s in (up, down, quiet):
            assert s.wait(2 * RELAY_SECONDS + 8), f"{len(s.got)} of {len(s.payload)} bytes arrived"
            assert bytes(s.got) == s.payload, "bytes lost or out of order"
        out = limited.output_tail()
        for name, s in (("client->peer", up), ("peer->client", down)):
            rate = s.by(RELAY_SECONDS) / RELAY_SECONDS
            assert within(rate, MAX_BPS), f"{name} {rate:.0f} B/s over {RELAY_SECONDS} s, want {MAX_BPS} ±10 %\n{out}"
        # The other allocation's pair got through as it was sent.
        assert quiet.by(RELAY_SECONDS + 0.5) >= 0.95 * len(quiet.payload), \
            f"the pair under the limit was slowed: {quiet.by(RELAY_SECONDS + 0.5)} of {len(quiet.payload)}"
        samples = scrape_until(limited.extra["metrics_port"],
                               lambda s: s.get('uturn_policy_paused_total{direction="to_client"}', 0) > 0)
        assert samples.get('uturn_policy_paused_total{direction="to_client"}', 0) > 0, samples
        assert samples.get('uturn_policy_paused_total{direction="to_peer"}', 0) > 0, samples
    finally:
        hog.close()
        calm.close()


def test_a_paused_tcp_relay_pair_closes_cleanly(limited):
    """A peer blasting into a data pair gets its connection paused; the
    client then closes its data connection: the server closes the paused
    peer connection too (nothing left waiting on the pause), and once every
    connection of the test is closed the server's accepted and closed
    counts agree."""
    port = limited.extra["metrics_port"]
    paused = 'uturn_policy_paused_total{direction="to_client"}'
    before = scrape_until(port, lambda s: True, timeout=0).get(paused, 0)
    pair = RelayPair(limited)
    try:
        pair.peer.setblocking(False)
        blob = bytes(65536)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                pair.peer.send(blob)
            except BlockingIOError:
                time.sleep(0.01)
        samples = scrape_until(port, lambda s: s.get(paused, 0) > before)
        assert samples.get(paused, 0) > before, samples
        pair.data.close()
        pair.peer.setblocking(True)
        pair.peer.settimeout(5)
        ended = False
        deadline = time.monotonic() + 5
        while not ended and time.monotonic() < deadline:
            try:
                ended = pair.peer.recv(65536) == b""
            except (ConnectionResetError, BrokenPipeError):
                ended = True
            except (TimeoutError, socket.timeout):
                break
        assert ended, "the server kept the paused peer connection open"
    finally:
        pair.close()
    # A new pair works (the slots came back), and nothing stays open.
    other = RelayPair(limited)
    try:
        other.client.sendall(b"after the pause")
        other.peer.settimeout(5)
        assert other.peer.recv(100) == b"after the pause"
    finally:
        other.close()
    closed_all = scrape_until(
        port, lambda s: s.get('uturn_stream_connections_total{event="accepted"}', 0)
        == s.get('uturn_stream_connections_total{event="closed"}', 0))
    accepted = closed_all.get('uturn_stream_connections_total{event="accepted"}', 0)
    assert accepted >= 6 and accepted == closed_all.get('uturn_stream_connections_total{event="closed"}', 0), \
        closed_all
