"""The kernel fast path across a topology this test builds: three network
namespaces (client, relay, peer) joined by veth pairs, addresses private to
them (10.203.1.0/24 and fd03:1::/64 client side, 10.203.2.0/24 and
fd03:2::/64 peer side). uturnd runs in the relay namespace with `--offload
tc` or `--offload xdp` on both of its veths; coturn's turnutils_uclient runs
in the client namespace and turnutils_peer (echo) in the peer namespace, over
IPv4, IPv6, and each mix of the two (RFC 6156: an IPv6 client with an IPv4
relay and peer, and the other way round). Here the program sends rewritten
datagrams out of the other veth, as it would on a NIC: TC with
bpf_redirect_neigh, XDP (native on veth) with bpf_fib_lookup and
bpf_redirect, which needs forwarding enabled in the relay namespace and, for
a veth, GRO on the receiving end (what a deployment on veths needs too; see
docs/deployment.md).

The client and peer veths send with full UDP checksums (tx checksum offload
off, as datagrams arrive from a real network): datagrams that a socket on the
relay host itself sent are left to user space when they must leave through a
device (see is_partial in fastpath.bpf.c).

Root only; the namespaces (and with them the veths, addresses and the
program's attachments) are deleted at the end, also when the test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time

import pytest

from conftest import server_binary, server_kind, REALM, USER, PASSWORD
from test_metrics import parse

# backend_independent: the kernel carries these datagrams; the user-space
# side of offloaded channels on epoll is covered by test_offload.py, which
# runs on both passes.
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces, BPF and tc"),
              pytest.mark.backend_independent]

CLIENT_IP, RELAY_C_IP, RELAY_P_IP, PEER_IP = "10.203.1.2", "10.203.1.1", "10.203.2.1", "10.203.2.2"
CLIENT_IP6, RELAY_C_IP6, RELAY_P_IP6, PEER_IP6 = "fd03:1::2", "fd03:1::1", "fd03:2::1", "fd03:2::2"


def sh(*argv: str, ns: str | None = None, check: bool = True, **kw) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


@pytest.fixture
def topology():
    if server_kind() != "uturnd":
        pytest.skip("--offload is uturnd's")
    for tool in ("ip", "ethtool", "turnutils_uclient", "turnutils_peer"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    tag = secrets.token_hex(3)
    names = {"c": f"utc-{tag}", "r": f"utr-{tag}", "p": f"utp-{tag}"}
    try:
        for ns in names.values():
            sh("ip", "netns", "add", ns)
        # client <-> relay, relay <-> peer
        sh("ip", "link", "add", "vc", "netns", names["c"], "type", "veth", "peer", "name", "rc", "netns", names["r"])
        sh("ip", "link", "add", "vp", "netns", names["p"], "type", "veth", "peer", "name", "rp", "netns", names["r"])
        for ns, dev, addr, addr6 in ((names["c"], "vc", CLIENT_IP, CLIENT_IP6), (names["r"], "rc", RELAY_C_IP, RELAY_C_IP6),
                                     (names["r"], "rp", RELAY_P_IP, RELAY_P_IP6), (names["p"], "vp", PEER_IP, PEER_IP6)):
            sh("ip", "addr", "add", f"{addr}/24", "dev", dev, ns=ns)
            sh("ip", "-6", "addr", "add", f"{addr6}/64", "dev", dev, "nodad", ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "route", "add", "default", "via", RELAY_C_IP, ns=names["c"])
        sh("ip", "route", "add", "default", "via", RELAY_P_IP, ns=names["p"])
        sh("ip", "-6", "route", "add", "default", "via", RELAY_C_IP6, ns=names["c"])
        sh("ip", "-6", "route", "add", "default", "via", RELAY_P_IP6, ns=names["p"])
        # Full UDP checksums from the endpoints, as from a real network; GRO
        # on, so that a native XDP redirect into these veths is received.
        sh("ethtool", "-K", "vc", "tx", "off", "gro", "on", ns=names["c"])
        sh("ethtool", "-K", "vp", "tx", "off", "gro", "on", ns=names["p"])
        # XDP's bpf_fib_lookup answers only where forwarding is on (this
        # namespace's own settings, gone with it).
        sh("sysctl", "-q", "-w", "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1", ns=names["r"])
        yield names
    finally:
        for ns in names.values():
            sh("ip", "netns", "delete", ns, check=False)


FAMILIES = {
    # name: (client's address of the server, relay family flag, peer address)
    "ipv4": (RELAY_C_IP, "-X", PEER_IP),
    "ipv6": (RELAY_C_IP6, "-x", PEER_IP6),
    "ipv6-client-ipv4-peer": (RELAY_C_IP6, "-X", PEER_IP),
    "ipv4-client-ipv6-peer": (RELAY_C_IP, "-x", PEER_IP6),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("hook", ["tc", "xdp"])
def test_uclient_across_namespaces_through_the_kernel(topology, tmp_path, hook, family):
    server_addr, relay_flag, peer_addr = FAMILIES[family]
    uturnd = server_binary("uturnd")
    metrics = 19641
    log = open(tmp_path / "uturnd.log", "wb")
    server = subprocess.Popen(
        ["ip", "netns", "exec", topology["r"], uturnd, "--listening-ip", RELAY_C_IP, "--listening-ip", RELAY_C_IP6,
         "--listening-port", "3490", "--relay-ip", RELAY_P_IP, "--relay-ip", RELAY_P_IP6,
         "--min-port", "40000", "--max-port", "40099", "--realm", REALM,
         "--user", f"{USER}:{PASSWORD}", "--workers", "2", "--offload", hook, "--no-tcp",
         "--offload-interface", "rc", "--offload-interface", "rp",
         "--allowed-peer-ip", "10.203.2.0/24", "--allowed-peer-ip", "fd03:2::/64",
         "--metrics-listen", f"{RELAY_C_IP}:{metrics}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    peer = subprocess.Popen(["ip", "netns", "exec", topology["p"], "turnutils_peer", "-L", peer_addr, "-p", "5000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and server.poll() is None:
            out = (tmp_path / "uturnd.log").read_text(errors="replace")
            if " running;" in out:
                break
            time.sleep(0.1)
        out = (tmp_path / "uturnd.log").read_text(errors="replace")
        assert server.poll() is None and " running;" in out, out
        attached = "(tcx)" if hook == "tc" else "(xdp native)"
        assert f"offload: kernel fast path on rc {attached}, rp {attached}" in out, out
        r = sh("turnutils_uclient", "-c", "-n", "100", "-m", "4", "-l", "120", "-z", "5", "-e", peer_addr,
               "-r", "5000", "-p", "3490", "-u", USER, "-w", PASSWORD, relay_flag, server_addr,
               ns=topology["c"], check=False, timeout=60)
        text = r.stdout.decode(errors="replace")
        assert "tot_send_msgs=400, tot_recv_msgs=400" in text, text[-3000:]
        assert "Total lost packets 0 " in text, text[-3000:]
        time.sleep(1.5)  # one publication of the counters
        scrape = sh("python3", "-c",
                    f"import urllib.request;print(urllib.request.urlopen('http://{RELAY_C_IP}:{metrics}/metrics').read().decode())",
                    ns=topology["r"])
        samples = parse(scrape.stdout.decode())
        to_peer = samples.get('uturn_offload_packets_total{direction="client_to_peer"}', 0)
        to_client = samples.get('uturn_offload_packets_total{direction="peer_to_client"}', 0)
        relayed = sum(samples.get(f'uturn_relayed_packets_total{{direction="{d}"}}', 0)
                      for d in ("client_to_peer", "peer_to_client"))
        passed = sum(v for k, v in samples.items() if k.startswith("uturn_offload_passed_total"))
        summary = json.dumps({k: v for k, v in samples.items() if "offload" in k or "relayed" in k}, indent=1)
        # The kernel carried the data; the few it left to user space were
        # relayed there, each counted with its reason: XDP's first datagram
        # to a peer the relay never sent to (no neighbour entry yet: user
        # space's send resolves it), and a full checksum that happens to
        # equal the pseudo-header sum (1 in 65,536, taken for local origin).
        assert relayed == 800 and to_peer + to_client + passed == relayed, summary
        assert passed <= 8, summary
    finally:
        for p in (peer, server):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
