"""Soak, bounded to about a minute: thousands of allocations created, used
(ChannelBind + ChannelData through an echo peer) and deleted (Refresh
LIFETIME 0) by a pool of pipelined clients, while one long-lived session
carries a steady load. Afterwards uturnd's VmRSS must be back within
RSS_BOUND_KIB of its baseline and its open file descriptors back to the
baseline exactly (every relay socket closed).

Expiry is not churned here: uturnd never grants less than the 600 s default
lifetime (a smaller LIFETIME is raised to it, RFC 8656 §7.2 leaves the floor to
the server), so allocations "left to expire" would outlive the test. Instead
a last set of allocations is left open and must be released at SIGTERM with
exit status 0.
"""

from __future__ import annotations

import os
import struct
import threading
import time

import stun
from conftest import free_port_range
from test_hostile import VICTIM_CHANNEL, assert_relays, launch, record, warm_up
from test_faults import session

SOAK_SECONDS = float(os.environ.get("UTURN_E2E_SOAK_SECONDS", "30"))
TARGET_ALLOCATIONS = int(os.environ.get("UTURN_E2E_SOAK_ALLOCATIONS", "100000"))
MIN_ALLOCATIONS = 2000
POOL = 50
RSS_BOUND_KIB = 8 * 1024
CHANNEL = 0x4000
PER_ALLOCATION_DATA = 3


def _ok(m: stun.Message | None) -> bool:
    return m is not None and m.cls == stun.SUCCESS


class Churn:
    """POOL clients, each reusing its socket (and so its nonce) for one
    allocation after another."""

    def __init__(self, d, peer: stun.EchoPeer):
        self.d, self.peer = d, peer
        self.clients = [stun.TurnClient(d.addr(), "demo", "secret") for _ in range(POOL)]
        self.created = self.deleted = self.data_sent = self.data_back = 0
        self.failures: list[str] = []
        for c in self.clients:  # learn REALM/NONCE (401) and delete the first allocation
            assert _ok(c.allocate()) and _ok(c.refresh(0))
            self.created += 1
            self.deleted += 1

    def _phase(self, method: int, attrs_for) -> int:
        """One request per client, pipelined; 438 (stale nonce) refreshes the
        nonce for the next round. Returns how many succeeded."""
        pending, owner = {}, {}
        for c in self.clients:
            m = c.signed(method, attrs_for(c))
            pending[m.txid] = (c.sock, m.raw)
            owner[m.txid] = c
        answers = stun.transact_many(pending, self.d.addr(), timeout=6)
        ok = 0
        for txid, c in owner.items():
            r = answers.get(txid)
            if _ok(r):
                ok += 1
                continue
            if r is not None and r.error_code in (401, 438) and r.get(stun.NONCE):
                c.nonce = r.get(stun.NONCE)
            self.failures.append(f"method {method:#x}: "
                                 + ("no answer" if r is None else f"{r.error_code} {r.error_reason}"))
        return ok

    def round(self) -> None:
        peer = self.peer.addr
        self.created += self._phase(stun.ALLOCATE, lambda c: [
            (stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])), (stun.LIFETIME, struct.pack("!I", 600))])
        self._phase(stun.CHANNEL_BIND, lambda c: [
            (stun.CHANNEL_NUMBER, struct.pack("!HH", CHANNEL, 0)),
            (stun.XOR_PEER_ADDRESS, stun.encode_xor_address(peer, b"\0" * 12))])
        for i in range(PER_ALLOCATION_DATA):
            for c in self.clients:
                c.send_channel_data(CHANNEL, b"churn-%d" % i)
                self.data_sent += 1
        self.data_back += self._drain_echoes()
        self.deleted += self._phase(stun.REFRESH, lambda c: [(stun.LIFETIME, struct.pack("!I", 0))])

    def _drain_echoes(self) -> int:
        import select
        got, deadline = 0, time.monotonic() + 0.3
        want = len(self.clients) * PER_ALLOCATION_DATA
        socks = [c.sock for c in self.clients]
        while got < want and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(socks, [], [], left)
            for s in ready:
                for _ in range(16):
                    try:
                        data = stun.recv_nowait(s)
                    except OSError:
                        continue
                    if data is None:
                        break
                    if len(data) >= 4 and 0x40 <= data[0] <= 0x7F:
                        got += 1
        return got

    def close(self) -> None:
        for c in self.clients:
            c.close()


def test_soak_churn(tmp_path):
    d = launch(tmp_path, workers=2, relay=free_port_range(400))
    peer = stun.EchoPeer("127.0.0.1", max_seconds=SOAK_SECONDS + 60)
    steady_peer = stun.EchoPeer("127.0.0.1", max_seconds=SOAK_SECONDS + 60)
    steady = session(d, steady_peer)
    stop = threading.Event()
    steady_sent = [0]

    def pump():  # about 500 datagrams/s on the long-lived session, bounded
        deadline = time.monotonic() + SOAK_SECONDS + 30
        while not stop.is_set() and time.monotonic() < deadline:
            steady.client.send_channel_data(VICTIM_CHANNEL, b"steady-load" * 10)
            steady_sent[0] += 1
            time.sleep(0.002)

    churn = None
    pump_thread = threading.Thread(target=pump, daemon=True)
    try:
        assert_relays(steady)
        rss_cold = stun.rss_kib(d.pid)
        warm_up(d)
        churn = Churn(d, peer)
        churn.round()  # first use of every code path before the baseline
        time.sleep(0.3)
        rss_base, fds_base = stun.rss_kib(d.pid), stun.fd_count(d.pid)
        pump_thread.start()

        t0 = time.monotonic()
        rounds = 0
        while churn.created < TARGET_ALLOCATIONS and time.monotonic() - t0 < SOAK_SECONDS:
            churn.round()
            rounds += 1
            assert d.proc.poll() is None, d.output()[-3000:]
            assert len(churn.failures) <= 50, churn.failures[:10]
        elapsed = time.monotonic() - t0
        rss_peak_during = stun.rss_kib(d.pid)

        stop.set()
        pump_thread.join(timeout=2)
        assert_relays(steady)
        steady_back = steady_peer.received
        fds_back = stun.wait_until(lambda: stun.fd_count(d.pid) == fds_base, 3)
        rss_after, fds_after = stun.rss_kib(d.pid), stun.fd_count(d.pid)

        # Left open: one relay socket each, released at SIGTERM.
        for c in churn.clients[:40]:
            assert _ok(c.allocate())
        fds_open = stun.fd_count(d.pid)
        record("soak", seconds=round(elapsed, 1), rounds=rounds, allocations=churn.created,
               deleted=churn.deleted, channel_data_sent=churn.data_sent,
               channel_data_echoed=churn.data_back, steady_sent=steady_sent[0],
               steady_echoed=steady_back, failures=len(churn.failures),
               rss_cold_kib=rss_cold, rss_base_kib=rss_base, rss_during_kib=rss_peak_during,
               rss_after_kib=rss_after, fds_base=fds_base, fds_after=fds_after,
               fds_with_40_open=fds_open)
        assert churn.created >= MIN_ALLOCATIONS, f"only {churn.created} allocations in {elapsed:.0f}s"
        assert churn.deleted >= churn.created - 50, (churn.created, churn.deleted)
        assert churn.data_back >= 0.9 * churn.data_sent, (churn.data_back, churn.data_sent)
        assert steady_back >= 0.9 * steady_sent[0], (steady_back, steady_sent[0])
        assert fds_back, f"open fds {fds_after}, baseline {fds_base}: relay sockets leaked"
        assert rss_after - rss_base <= RSS_BOUND_KIB, \
            f"VmRSS {rss_base} -> {rss_after} KiB after {churn.created} allocations"
        assert fds_open == fds_base + 40, (fds_base, fds_open)
    finally:
        stop.set()
        if churn:
            churn.close()
        steady.client.close()
        peer.close()
        steady_peer.close()
        status = d.stop()
    assert status == 0, d.output()[-3000:]
    created_logged = d.output().count("allocation created:")
    record("soak", allocations_logged=created_logged)
