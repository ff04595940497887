"""--alternate-server and --alternate-server-policy: a fleet of three uturnd
on 127.0.0.1, 127.0.0.2 and 127.0.0.3. The first is over its threshold
(allocations:1, one allocation held), so new Allocates get 300 with the
others as ALTERNATE-SERVER, in turn; turnutils_uclient follows the redirect
and relays through the alternate; a SIGHUP with a new list in the config
file takes effect. (aioice, up to 0.13, has no ALTERNATE-SERVER handling,
so it does not follow 300 and is not driven here; Chromium's TURN client
does, test_browser.py::test_browser_follows_alternate_server.) About 10 s.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

import stun
from conftest import PASSWORD, REALM, USER, _stop, free_port, free_port_range, require_tool, server_binary, server_kind

pytestmark = [
    pytest.mark.backend_independent,
    pytest.mark.skipif(server_kind() != "uturnd", reason="uturnd's alternate-server policies"),
]

HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]


class Node:
    def __init__(self, tmp: Path, host: str, config: str = "", relays: list[str] | None = None):
        binary = server_binary("uturnd")
        if binary is None:
            pytest.skip("uturnd not built")
        self.host = host
        self.port = free_port(span=1, hosts=[host])
        relay = free_port_range(60)
        self.relay_range = relay
        self.conf = tmp / f"{host}.conf"
        self.conf.write_text(config)
        self.log = tmp / f"{host}.log"
        argv = [binary, "-c", str(self.conf), "--listening-ip", host, "--listening-port", str(self.port)]
        for r in relays or [host]:
            argv += ["--relay-ip", r]
        argv += ["--min-port", str(relay[0]), "--max-port", str(relay[1]),
                "--realm", REALM, "--user", f"{USER}:{PASSWORD}", "--allow-loopback-peers",
                "--workers", "1", "--no-tcp"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=tmp)
        deadline = time.monotonic() + float(os.environ.get("UTURN_E2E_START_TIMEOUT", "10"))
        while stun.binding(self.addr, timeout=0.3) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                _stop(self.proc)
                pytest.fail(f"uturnd on {host} did not start:\n{self.output()}", pytrace=False)

    @property
    def addr(self) -> tuple[str, int]:
        return self.host, self.port

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def fleet_config(*alternates: Node) -> str:
    lines = [f"alternate-server={n.host}:{n.port}" for n in alternates]
    return "\n".join(lines + ["alternate-server-policy=allocations:1"]) + "\n"


def redirected_to(server: tuple[str, int]) -> tuple[str, int] | None:
    """One Allocate from a fresh client: the ALTERNATE-SERVER of a 300, or None on success."""
    c = stun.TurnClient(server, USER, PASSWORD)
    try:
        resp = c.allocate()
        if resp.cls == stun.SUCCESS:
            c.refresh(0)
            return None
        assert resp.error_code == 300, (resp.error_code, resp.error_reason)
        value = resp.get(0x8023)
        assert value is not None and value[1] == 1
        port, = struct.unpack("!H", value[2:4])
        return ".".join(str(b) for b in value[4:8]), port
    finally:
        c.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    nodes: list[Node] = []
    try:
        b = Node(tmp, HOSTS[1])
        nodes.append(b)
        c = Node(tmp, HOSTS[2])
        nodes.append(c)
        a = Node(tmp, HOSTS[0], fleet_config(b, c))
        nodes.append(a)
        yield a, b, c
    finally:
        for n in nodes:
            _stop(n.proc)


def test_over_threshold_redirects_in_turn_and_sighup_changes_the_list(fleet):
    a, b, c = fleet
    # Under the threshold: served here.
    holder = stun.TurnClient(a.addr, USER, PASSWORD)
    try:
        assert holder.allocate().cls == stun.SUCCESS
        # Over it (one allocation held): redirected, the two alternates in turn.
        got = [redirected_to(a.addr) for _ in range(4)]
        assert sorted(got) == sorted([b.addr, c.addr, b.addr, c.addr]), got
        assert got[0] != got[1] and got[0] == got[2]
        # The alternate serves the client.
        client = stun.TurnClient(got[0], USER, PASSWORD)
        assert client.allocate().cls == stun.SUCCESS
        assert client.refresh(0).cls == stun.SUCCESS
        client.close()

        # SIGHUP with only the third server listed.
        mark = len(a.output())
        a.conf.write_text(fleet_config(c))
        os.kill(a.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "SIGHUP: configuration reloaded" not in a.output()[mark:]:
            assert time.monotonic() < deadline, a.output()
            time.sleep(0.05)
        assert f"alternate servers (allocations:1): {c.host}:{c.port}" in a.output()[mark:]
        assert [redirected_to(a.addr) for _ in range(3)] == [c.addr] * 3

        # Back under the threshold: served here again.
        assert holder.refresh(0).cls == stun.SUCCESS
        assert redirected_to(a.addr) is None
    finally:
        holder.close()


def test_turnutils_uclient_follows_the_redirect(fleet, udp_peer):
    a, b, c = fleet
    binary = require_tool("turnutils_uclient")
    holder = stun.TurnClient(a.addr, USER, PASSWORD)
    try:
        assert holder.allocate().cls == stun.SUCCESS  # a over its threshold
        before = {n.host: n.output().count("allocation created") for n in (a, b, c)}
        argv = [binary, "-c", "-n", "20", "-m", "1", "-l", "100", "-z", "5", "-e", "127.0.0.1",
                "-r", str(udp_peer.port), "-p", str(a.port), "-u", USER, "-w", PASSWORD, "-X", a.host]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=30)
        out = proc.stdout.decode(errors="replace")
        totals = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", out)
        assert totals and totals[-1] == ("20", "20"), out[-3000:]
        after = {n.host: n.output().count("allocation created") for n in (a, b, c)}
        # The relaying allocation was made on an alternate, none on the first server.
        assert after[a.host] == before[a.host], (before, after, out[-2000:])
        assert after[b.host] + after[c.host] > before[b.host] + before[c.host], (before, after, out[-2000:])
    finally:
        holder.refresh(0)
        holder.close()


def test_fleet_nonce_secret_lets_a_redirected_client_keep_its_nonce(tmp_path):
    """--nonce-secret-file: a client redirected by 300 sends the same signed
    Allocate (same REALM and NONCE) to the alternate, as Chromium does
    (it gives up on a 438 there). The alternate sharing the file serves
    it; a server without the file answers 438 Stale Nonce."""
    secret = tmp_path / "fleet.secret"
    secret.write_text(os.urandom(32).hex() + "\n")
    secret.chmod(0o600)
    nodes: list[Node] = []
    try:
        b = Node(tmp_path, HOSTS[1], f"nonce-secret-file={secret}\n")
        nodes.append(b)
        lone = Node(tmp_path, HOSTS[2])
        nodes.append(lone)
        a = Node(tmp_path, HOSTS[0], f"nonce-secret-file={secret}\nalternate-server={b.host}:{b.port}\n"
                                     "alternate-server-policy=always\n")
        nodes.append(a)
        assert "nonces: shared with a fleet" in a.output(), a.output()
        c = stun.TurnClient(a.addr, USER, PASSWORD)
        try:
            assert c.allocate().error_code == 300  # after the 401 challenge: signed, then redirected
            attrs = [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0]))]
            for server, expected in ((lone.addr, 438), (b.addr, None)):
                m = c.signed(stun.ALLOCATE, attrs)
                resp = stun.transact(c.sock, server, m.raw, m.txid)
                assert resp is not None, server
                if expected is None:
                    assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason(), b.output()[-2000:])
                else:
                    assert resp.error_code == expected, (server, resp.error_code)
        finally:
            c.close()
    finally:
        for n in nodes:
            _stop(n.proc)
