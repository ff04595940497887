"""--offload: the kernel fast path with the real uturnd on loopback.

A server of its own with `--offload tc --offload-interface lo` and metrics;
coturn's turnutils_uclient relays ChannelData through it to turnutils_peer
(which echoes), and /metrics must show that the kernel carried the data
(uturn_offload_packets_total) while every message still arrived intact.
Then the capability checks: without CAP_BPF/CAP_NET_ADMIN, `--offload auto`
falls back to user space with one log line and `--offload tc` refuses to
start, naming the cause and the fix.

Needs root (BPF, tc) and capsh; skipped otherwise. The program is attached
as a tcx link owned by uturnd: it goes away with the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

import stun
from conftest import free_port, server_kind, server_binary, free_port_range, REALM, USER, PASSWORD
from test_metrics import scrape_until, start_metrics_server
from test_uclient import assert_all_echoed, run_uclient

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for BPF and tc")


@pytest.fixture(scope="module")
def offload_server(server_factory):
    if server_kind() != "uturnd":
        pytest.skip("--offload is uturnd's")
    return start_metrics_server(server_factory, "turn-offload", "--offload tc --offload-interface lo")


def offloaded(samples: dict[str, float], direction: str) -> float:
    return samples.get(f'uturn_offload_packets_total{{direction="{direction}"}}', 0)


def test_uclient_through_the_kernel(offload_server, udp_peer):
    """4 clients x 100 channel messages out and back; the kernel relays them."""
    assert "offload: kernel fast path on lo (tcx)" in offload_server.output()
    # 120-byte payloads: ChannelData with no padding, which the program takes.
    r = run_uclient(offload_server, udp_peer, n=100, m=4, length=120)
    assert_all_echoed(r, 400)
    port = offload_server.extra["metrics_port"]
    samples = scrape_until(port, lambda s: offloaded(s, "peer_to_client") >= 400)
    to_peer, to_client = offloaded(samples, "client_to_peer"), offloaded(samples, "peer_to_client")
    # Every data message went through the kernel both ways (the peer's
    # echoes too); user space relayed none of them.
    assert to_peer >= 400 and to_client >= 400, (to_peer, to_client, offload_server.output_tail())
    relayed = samples['uturn_relayed_packets_total{direction="client_to_peer"}']
    assert relayed == to_peer, (relayed, to_peer)
    assert samples['uturn_offload_entries_total{event="written"}'] >= 4


def test_own_client_byte_for_byte(offload_server):
    """Our own client: payloads of every length 1..64 arrive exactly, both ways."""
    channel = 0x4005
    c = stun.TurnClient(offload_server.addr(), offload_server.user, offload_server.password)
    peer = stun.udp_socket("127.0.0.1")
    try:
        resp = c.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        relayed = resp.xor_address(stun.XOR_RELAYED_ADDRESS)
        assert c.channel_bind(channel, peer.getsockname()[:2]).cls == stun.SUCCESS
        peer.settimeout(2)
        for n in range(1, 65):
            payload = bytes((i * 13 + n) & 0xFF for i in range(n))
            c.send_channel_data(channel, payload)
            data, source = peer.recvfrom(2048)
            assert data == payload and source[:2] == tuple(relayed), (n, data, source)
            peer.sendto(payload[::-1], source)
            got = c.recv_channel_data(timeout=2)
            assert got == (channel, payload[::-1]), (n, got)
    finally:
        peer.close()
        c.close()


def _capsh() -> str:
    path = shutil.which("capsh")
    if path is None:
        pytest.skip("capsh not installed (libcap2-bin)")
    return path


def _run_without_caps(mode: str, timeout: float = 10.0) -> tuple[subprocess.Popen, str]:
    """uturnd with --offload MODE but without CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON."""
    binary = server_binary("uturnd")
    port = free_port(span=2)
    low, high = free_port_range()
    argv = [binary, "--listening-ip", "127.0.0.1", "--listening-port", str(port), "--relay-ip", "127.0.0.1",
            "--min-port", str(low), "--max-port", str(high), "--realm", REALM, "--user", f"{USER}:{PASSWORD}",
            "--workers", "1", "--offload", mode, "--offload-interface", "lo", "--allow-loopback-peers"]
    cmd = [_capsh(), "--drop=cap_bpf,cap_net_admin,cap_sys_admin,cap_perfmon", "--", "-c",
           "exec " + " ".join(argv)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if stun.binding(("127.0.0.1", port), timeout=0.3) is not None:
            break
    return proc, str(port)


def test_auto_without_capabilities_falls_back():
    if server_kind() != "uturnd":
        pytest.skip("--offload is uturnd's")
    proc, port = _run_without_caps("auto")
    try:
        assert proc.poll() is None, "uturnd exited"
        assert stun.binding(("127.0.0.1", int(port)), timeout=1) is not None
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0].decode(errors="replace")
    assert "offload: off, relaying in user space only" in out, out
    assert "Permission denied" in out or "Operation not permitted" in out, out


def test_tc_without_capabilities_refuses_to_start():
    if server_kind() != "uturnd":
        pytest.skip("--offload is uturnd's")
    proc, _ = _run_without_caps("tc")
    try:
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.communicate(timeout=5)[0].decode(errors="replace")
    assert code != 0, out
    assert "--offload tc:" in out and "CAP_BPF and CAP_NET_ADMIN" in out, out


def test_aioice_through_the_kernel(offload_server):
    """aioice's TURN client (channels) through the fast path: every echo back,
    and the kernel carried the data both ways."""
    import asyncio
    pytest.importorskip("aioice.turn", reason="pip install -r requirements-test.txt")
    from test_python_clients import relay_echo
    port = offload_server.extra["metrics_port"]
    before = scrape_until(port, lambda s: True, timeout=0)
    relayed, sources = asyncio.run(
        relay_echo(offload_server.addr(), offload_server.user, offload_server.password, count=50))
    assert sources == {relayed}
    samples = scrape_until(
        port, lambda s: offloaded(s, "peer_to_client") - offloaded(before, "peer_to_client") >= 49)
    # The first datagram may go out before the channel is bound (aioice
    # sends it as a Send indication while its ChannelBind is in flight).
    assert offloaded(samples, "client_to_peer") - offloaded(before, "client_to_peer") >= 49, samples
    assert offloaded(samples, "peer_to_client") - offloaded(before, "peer_to_client") >= 49, samples
