"""The kernel fast path across a topology this test builds: three network
namespaces (client, relay, peer) joined by veth pairs, addresses private to
them (10.203.1.0/24 client side, 10.203.2.0/24 peer side). uturnd runs in the
relay namespace with `--offload tc` on both of its veths; coturn's
turnutils_uclient runs in the client namespace and turnutils_peer (echo) in
the peer namespace. Here the program redirects rewritten datagrams out of the
other veth (bpf_redirect_neigh), as it would on a NIC.

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

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces, BPF and tc")

CLIENT_IP, RELAY_C_IP, RELAY_P_IP, PEER_IP = "10.203.1.2", "10.203.1.1", "10.203.2.1", "10.203.2.2"


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
        for ns, dev, addr in ((names["c"], "vc", CLIENT_IP), (names["r"], "rc", RELAY_C_IP),
                              (names["r"], "rp", RELAY_P_IP), (names["p"], "vp", PEER_IP)):
            sh("ip", "addr", "add", f"{addr}/24", "dev", dev, ns=ns)
            sh("ip", "link", "set", dev, "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "route", "add", "default", "via", RELAY_C_IP, ns=names["c"])
        sh("ip", "route", "add", "default", "via", RELAY_P_IP, ns=names["p"])
        # Full UDP checksums from the endpoints, as from a real network.
        sh("ethtool", "-K", "vc", "tx", "off", ns=names["c"])
        sh("ethtool", "-K", "vp", "tx", "off", ns=names["p"])
        yield names
    finally:
        for ns in names.values():
            sh("ip", "netns", "delete", ns, check=False)


def test_uclient_across_namespaces_through_the_kernel(topology, tmp_path):
    uturnd = server_binary("uturnd")
    metrics = 19641
    log = open(tmp_path / "uturnd.log", "wb")
    server = subprocess.Popen(
        ["ip", "netns", "exec", topology["r"], uturnd, "--listening-ip", RELAY_C_IP, "--listening-port", "3490",
         "--relay-ip", RELAY_P_IP, "--min-port", "40000", "--max-port", "40099", "--realm", REALM,
         "--user", f"{USER}:{PASSWORD}", "--workers", "2", "--offload", "tc", "--no-tcp",
         "--allowed-peer-ip", "10.203.2.0/24",
         "--metrics-listen", f"{RELAY_C_IP}:{metrics}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    peer = subprocess.Popen(["ip", "netns", "exec", topology["p"], "turnutils_peer", "-L", PEER_IP, "-p", "5000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        out = (tmp_path / "uturnd.log").read_text(errors="replace")
        assert server.poll() is None, out
        assert "offload: kernel fast path (TC ingress) on" in out and "rc" in out and "rp" in out, out
        r = sh("turnutils_uclient", "-c", "-n", "100", "-m", "4", "-l", "120", "-z", "5", "-e", PEER_IP,
               "-r", "5000", "-p", "3490", "-u", USER, "-w", PASSWORD, "-X", RELAY_C_IP,
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
        assert to_peer >= 400 and to_client >= 400, json.dumps(
            {k: v for k, v in samples.items() if "offload" in k or "relayed" in k}, indent=1)
    finally:
        for p in (peer, server):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
