"""--kernel-source-filter: a source over the per-source request limits is
dropped in the kernel (a BPF socket filter on the UDP listeners) before its
datagrams reach uturnd, while a live session from the same address, on
another port, relays every packet; a 5-tuple with no allocation that sends
ChannelData past the rate loses only what is not STUN, and allocates again.

Servers of their own with a small refusal limit (5/s per source, burst 10).
The filter is attached by each backend's listener setup, so this runs in the
io_uring and the epoll pass. Needs CAP_BPF (root) for the kernel part; in
`auto` a server that cannot load the program starts anyway, and the kernel
assertions are skipped with the reason it logged; without CAP_BPF (capsh)
`auto` starts with one warning and `on` refuses to start. About 10 s in all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

import stun
from conftest import PASSWORD, REALM, USER, free_port, free_port_range, server_binary, server_kind
from test_metrics import http_get, parse, scrape_until, start_metrics_server
from test_request_limits import drain, unsigned_allocate

RATE = 5  # refusals per second per source; burst is twice it
DROPS = "uturn_rate_limited_kernel_drops_total"
BLOCKS = 'uturn_rate_limited_kernel_blocks_total{result="written"}'


def limited(server_factory, name: str, mode: str):
    if server_kind() != "uturnd":
        pytest.skip("the kernel source filter is uturnd's")
    return start_metrics_server(
        server_factory, name,
        f"--failed-request-rate {RATE} --binding-request-rate 0 --failed-request-rate-total 0 "
        f"--kernel-source-filter {mode}")


def flood(srv, junk_packets: int):
    """A live allocation on 127.0.0.1 relaying to a local peer at 50
    packets/s while a junk socket on 127.0.0.1 (another port) sends
    `junk_packets` unauthenticated Allocates. Returns (answers to the junk,
    seconds the flood took); asserts every live packet came back."""
    peer = stun.EchoPeer("127.0.0.1")
    live = stun.TurnClient(srv.addr(), srv.user, srv.password)
    junk = stun.udp_socket("127.0.0.1")
    try:
        resp = live.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        assert live.channel_bind(0x4001, peer.addr).cls == stun.SUCCESS
        request = unsigned_allocate()
        answered = 0
        rounds = 40
        per_round = junk_packets // rounds
        start = time.monotonic()
        for i in range(rounds):
            for _ in range(per_round):
                junk.sendto(request, srv.addr())
            payload = b"live-%d" % i
            live.send_channel_data(0x4001, payload)
            assert live.recv_channel_data(timeout=2.0) == (0x4001, payload), f"live packet {i} lost"
            answered += drain(junk)
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        # After the flood the session goes on as before.
        for i in range(10):
            payload = b"after-%d" % i
            live.send_channel_data(0x4001, payload)
            assert live.recv_channel_data(timeout=2.0) == (0x4001, payload), f"packet {i} after the flood lost"
        assert live.refresh(0).cls == stun.SUCCESS
        time.sleep(0.2)
        answered += drain(junk)
        return answered, elapsed
    finally:
        junk.close()
        live.close()
        peer.close()


def test_junk_is_dropped_in_the_kernel_and_the_live_session_loses_nothing(server_factory):
    srv = limited(server_factory, "ksf-auto", "auto")
    port = srv.extra["metrics_port"]
    if "kernel source filter: on" not in srv.output():
        pytest.skip("the kernel source filter did not load here: " + srv.output_tail(5))
    answered, elapsed = flood(srv, 2000)
    # What the user-space limiter alone would allow: the burst, then RATE/s.
    budget = 2 * RATE + RATE * (elapsed + 1)
    assert 2 * RATE <= answered <= budget, (answered, budget)
    s = scrape_until(port, lambda s: s.get(DROPS, 0) > 0)
    assert s.get(DROPS, 0) > 0, s
    # One block per bucket refill at most, never one per junk packet.
    assert 0 < s.get(BLOCKS, 0) <= RATE * (elapsed + 2) + 2, s
    # Most of the junk never reached user space.
    user_space = s.get('uturn_rate_limited_requests_total{reason="unauthenticated"}', 0)
    assert s[DROPS] + user_space + answered >= 2000 * 0.99, s
    assert s[DROPS] > user_space, s


def test_media_after_the_allocation_is_gone_is_dropped_in_the_kernel_and_it_allocates_again(server_factory):
    """A client keeps sending ChannelData after its allocation is gone (as
    after a server restart): past the source's rate that 5-tuple's
    datagrams that are not STUN are dropped in the kernel, but its requests
    still pass, so it allocates again at once; the allocation lifts the
    block and its ChannelData is relayed."""
    srv = limited(server_factory, "ksf-stray", "auto")
    port = srv.extra["metrics_port"]
    if "kernel source filter: on" not in srv.output():
        pytest.skip("the kernel source filter did not load here: " + srv.output_tail(5))
    peer = stun.EchoPeer("127.0.0.1")
    client = stun.TurnClient(srv.addr(), srv.user, srv.password)
    try:
        assert client.allocate().cls == stun.SUCCESS
        assert client.channel_bind(0x4002, peer.addr).cls == stun.SUCCESS
        client.send_channel_data(0x4002, b"before")
        assert client.recv_channel_data(timeout=2.0) == (0x4002, b"before")
        assert client.refresh(0).cls == stun.SUCCESS
        # 50 packets every 20 ms (2,500/s) to no allocation.
        for _ in range(20):
            for _ in range(50):
                client.send_channel_data(0x4002, b"stray")
            time.sleep(0.02)
        s = scrape_until(port, lambda s: s.get(DROPS, 0) > 0)
        assert s.get(DROPS, 0) > 0, s
        # Another burst renews the block (it lasts until the bucket holds a
        # token: 200 ms at 5/s); the Allocate goes through it, and so does
        # the relayed data after it.
        for _ in range(50):
            client.send_channel_data(0x4002, b"stray")
        time.sleep(0.01)
        resp = client.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        assert client.channel_bind(0x4002, peer.addr).cls == stun.SUCCESS
        for i in range(5):
            payload = b"again-%d" % i
            client.send_channel_data(0x4002, payload)
            assert client.recv_channel_data(timeout=2.0) == (0x4002, payload), f"packet {i} after the new allocation lost"
    finally:
        client.close()
        peer.close()


@pytest.mark.backend_independent  # loading and modes: the same on both backends
def test_off_drops_only_in_user_space(server_factory):
    srv = limited(server_factory, "ksf-off", "off")
    port = srv.extra["metrics_port"]
    assert "kernel source filter: " not in srv.output()
    answered, elapsed = flood(srv, 400)
    assert answered <= 2 * RATE + RATE * (elapsed + 1)
    s = scrape_until(port, lambda s: s.get('uturn_rate_limited_requests_total{reason="unauthenticated"}', 0) > 0)
    assert s.get(DROPS, 0) == 0 and s.get(BLOCKS, 0) == 0, s
    assert s.get('uturn_rate_limited_requests_total{reason="unauthenticated"}', 0) > 0, s


LIMITS_OFF = "failed-request-rate=0\nbinding-request-rate=0\nfailed-request-rate-total=0\n"
LIMITS_ON = f"failed-request-rate={RATE}\nbinding-request-rate=0\nfailed-request-rate-total=0\n"


@pytest.mark.backend_independent  # the listeners' attach and detach: shared by both backends
def test_auto_follows_a_reload_that_turns_the_limits_on_and_off(server_factory, tmp_path):
    """In `auto` with every limit off the program is loaded but attached to
    nothing, so nothing is dropped in the kernel; a SIGHUP whose file turns
    a limit on attaches it (a flood is dropped in the kernel), and one that
    turns them off again detaches it (every junk request is answered)."""
    if server_kind() != "uturnd":
        pytest.skip("the kernel source filter is uturnd's")
    conf = tmp_path / "limits.conf"
    conf.write_text(LIMITS_OFF)
    srv = start_metrics_server(server_factory, "ksf-reload", f"-c {conf} --kernel-source-filter auto")
    port = srv.extra["metrics_port"]
    if "kernel source filter: loaded, attached when a reload turns a per-source limit on" not in srv.output():
        pytest.skip("the kernel source filter did not load here: " + srv.output_tail(5))
    # Far more answers than the limit's budget (RATE/s after a burst of 2*RATE).
    answered, _ = flood(srv, 400)
    assert answered > 300, answered
    assert scrape_until(port, lambda s: True).get(DROPS, 0) == 0

    conf.write_text(LIMITS_ON)
    srv.proc.send_signal(signal.SIGHUP)
    assert stun.wait_until(lambda: "kernel source filter: on (a per-source limit was turned on)" in srv.output(),
                           timeout=10), srv.output_tail()
    answered, elapsed = flood(srv, 2000)
    assert answered <= 2 * RATE + RATE * (elapsed + 1), answered
    s = scrape_until(port, lambda s: s.get(DROPS, 0) > 0)
    assert s.get(DROPS, 0) > 0, s

    conf.write_text(LIMITS_OFF)
    srv.proc.send_signal(signal.SIGHUP)
    assert stun.wait_until(lambda: "kernel source filter: detached (every per-source limit is off)" in srv.output(),
                           timeout=10), srv.output_tail()
    # The workers take the configuration at their next wake-up; wait until
    # every one of them has it before the last flood.
    assert stun.wait_until(lambda: srv.output().count("new configuration in force") >= 4, timeout=10), \
        srv.output_tail()
    drops = scrape_until(port, lambda s: True).get(DROPS, 0)
    answered, _ = flood(srv, 400)
    assert answered > 300, answered
    assert scrape_until(port, lambda s: True).get(DROPS, 0) == drops


def _without_cap_bpf(mode: str, timeout: float = 10.0) -> tuple[subprocess.Popen, int]:
    """uturnd with the default limits and --kernel-source-filter MODE, with
    CAP_BPF, CAP_SYS_ADMIN and CAP_PERFMON dropped (capsh)."""
    if server_kind() != "uturnd":
        pytest.skip("the kernel source filter is uturnd's")
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities with capsh")
    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.skip("capsh not installed (libcap2-bin)")
    port = free_port(span=2)
    low, high = free_port_range()
    argv = [server_binary("uturnd"), "--listening-ip", "127.0.0.1", "--listening-port", str(port),
            "--relay-ip", "127.0.0.1", "--min-port", str(low), "--max-port", str(high), "--realm", REALM,
            "--user", f"{USER}:{PASSWORD}", "--workers", "1", "--kernel-source-filter", mode]
    cmd = [capsh, "--drop=cap_bpf,cap_sys_admin,cap_perfmon", "--", "-c", "exec " + " ".join(argv)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if stun.binding(("127.0.0.1", port), timeout=0.3) is not None:
            break
    return proc, port


@pytest.mark.backend_independent  # loading and modes: the same on both backends
def test_auto_without_cap_bpf_starts_and_limits_in_user_space():
    proc, port = _without_cap_bpf("auto")
    try:
        assert proc.poll() is None, "uturnd exited"
        assert stun.binding(("127.0.0.1", port), timeout=1) is not None
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert "kernel source filter: off, the per-source limits drop in user space only" in out, out
    assert out.count("kernel source filter: off") == 1, out


@pytest.mark.backend_independent  # loading and modes: the same on both backends
def test_on_without_cap_bpf_refuses_to_start():
    proc, _ = _without_cap_bpf("on")
    try:
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.terminate()
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert proc.returncode != 0, out
    assert "--kernel-source-filter on:" in out and "CAP_BPF" in out, out
