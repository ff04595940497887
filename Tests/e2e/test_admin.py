"""The admin API (--admin-listen) and uturnctl against the real uturnd.

One uturnd of its own with two extra users and the admin API on a free
loopback port. turnutils_uclient relays for alice and for bob at once; the
API must list both users' sessions with their 5-tuples, channels and
packet/byte counters (uclient's payloads are 100 bytes, so bytes are exactly
100 x packets each way). `uturnctl disconnect alice` must end alice's
allocations only: her own next Refresh gets 437, her uclient stops getting
echoes, a TCP client of hers is disconnected, and bob's uclient relays every
message to the end. Without the token, or with another one, every endpoint
answers 401; a server started without --admin-listen listens on no other
TCP port. Last, `uturnctl reload` and `uturnctl drain` act as SIGHUP and
SIGTERM (the process exits). With --admin-cert/--admin-pkey the API is
HTTPS only (uturnctl checks the certificate; 401 still without the token).
As root, a second server with `--offload tc`
shows that traffic the kernel relayed is in the session counters at once.

The session, counter, disconnect, drain and offload tests are not marked
backend_independent (they go through the data path); the token, default-off
and HTTPS checks are (the admin listener is NIO, not a worker backend).
About 25 s (the uclient run is 20 of them).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import stun
from conftest import _stop, free_port, require_tool, server_binary, server_kind, write_self_signed

TOKEN = "e2e-admin-token-0123456789"
PAYLOAD = 100
MESSAGES = 600  # at -z 10 ms: about 6 s of relaying per client
USERS = {"alice": "alice-pw", "bob": "bob-pw"}


def start_admin_server(server_factory, tmp_path_factory, name: str, args: str = ""):
    if server_kind() != "uturnd":
        pytest.skip("the admin API is uturnd's")
    token_file = tmp_path_factory.mktemp(name) / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = free_port(span=1, hosts=["127.0.0.1"])
    users = " ".join(f"--user {u}:{p}" for u, p in USERS.items())
    extra = os.environ.get("UTURN_E2E_EXTRA_ARGS", "")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTURN_E2E_EXTRA_ARGS",
                  f"{extra} {users} {args} --admin-listen 127.0.0.1:{port} --admin-token-file {token_file}")
        srv = server_factory(name)
    srv.extra.update(admin_port=port, token_file=token_file)
    return srv


@pytest.fixture(scope="module")
def admin_server(server_factory, tmp_path_factory):
    return start_admin_server(server_factory, tmp_path_factory, "turn-admin")


def uturnctl_binary() -> str:
    path = os.environ.get("UTURNCTL") or str(Path(server_binary("uturnd")).parent / "uturnctl")
    if not os.access(path, os.X_OK):
        pytest.fail(f"uturnctl not found at {path} (built with uturnd; set $UTURNCTL)", pytrace=False)
    return path


def ctl(srv, *args: str, token_file=None, url=None) -> subprocess.CompletedProcess:
    argv = [uturnctl_binary(), *args, "--url", url or f"http://127.0.0.1:{srv.extra['admin_port']}",
            "--token-file", str(token_file or srv.extra["token_file"])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=15,
                          env={k: v for k, v in os.environ.items() if not k.startswith("UTURN_ADMIN")})


def ctl_json(srv, *args: str):
    r = ctl(srv, *args, "--json")
    assert r.returncode == 0, f"uturnctl {' '.join(args)}: {r.stderr}\n{srv.output_tail(20)}"
    return json.loads(r.stdout)


def call(srv, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.extra["admin_port"], timeout=5)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def by_user(sessions: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for s in sessions:
        out.setdefault(s["user"], []).append(s)
    return out


def totals(sessions: list[dict]) -> tuple[int, int, int, int]:
    return (sum(s["to_peer"]["packets"] for s in sessions), sum(s["to_peer"]["bytes"] for s in sessions),
            sum(s["to_client"]["packets"] for s in sessions), sum(s["to_client"]["bytes"] for s in sessions))


def start_uclient(srv, peer, user: str) -> subprocess.Popen:
    argv = [require_tool("turnutils_uclient"), "-c", "-n", str(MESSAGES), "-m", "1", "-l", str(PAYLOAD),
            "-z", "10", "-e", "127.0.0.1", "-r", str(peer.port), "-p", str(srv.port),
            "-u", user, "-w", USERS[user], "-X", "127.0.0.1"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def uclient_totals(proc: subprocess.Popen) -> tuple[int, int, str]:
    try:
        out = proc.communicate(timeout=40)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        _stop(proc)
        pytest.fail("turnutils_uclient ran over 40 s", pytrace=False)
    found = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", out)
    assert found, f"no uclient summary:\n{out[-2000:]}"
    sent, recv = map(int, found[-1])
    return sent, recv, out[-1500:]


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its socket inodes in /proc/net/tcp{,6})."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.backend_independent
def test_token_required(admin_server):
    for method, path in [("GET", "/v1/info"), ("GET", "/v1/sessions"), ("DELETE", "/v1/sessions?user=bob"),
                         ("DELETE", "/v1/sessions/0.0.0"), ("POST", "/v1/drain"), ("POST", "/v1/reload"),
                         ("GET", "/nothing")]:
        for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
                        {"Authorization": TOKEN}]:
            status, body = call(admin_server, method, path, headers)
            assert status == 401, (method, path, headers, status, body)
    status, body = call(admin_server, "GET", "/v1/info", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body)["workers"] >= 1
    wrong = admin_server.extra["token_file"].parent / "wrong"
    wrong.write_text("not-the-token\n")
    r = ctl(admin_server, "sessions", token_file=wrong)
    assert r.returncode != 0 and "401" in r.stderr
    assert admin_server.proc.poll() is None


@pytest.mark.backend_independent
def test_off_unless_configured(turn_server, admin_server):
    # The positive control: the configured server does listen on its admin port.
    assert admin_server.extra["admin_port"] in listening_tcp_ports(admin_server.proc.pid)
    plain = listening_tcp_ports(turn_server.proc.pid)
    assert plain <= {turn_server.port}, f"a server without --admin-listen listens on TCP {sorted(plain)}"
    assert "admin API" not in turn_server.output()


def test_sessions_counters_and_disconnect(admin_server, udp_peer):
    srv = admin_server
    info = ctl_json(srv, "info")
    assert info["draining"] is False and info["realm"] == "uturn.e2e"
    assert any("admin API" in line for line in info["config"])

    alice, bob = start_uclient(srv, udp_peer, "alice"), start_uclient(srv, udp_peer, "bob")
    try:
        # Both relaying, as the API sees it (bounded wait: allocation takes a moment).
        deadline = time.monotonic() + 10
        while True:
            users = by_user(ctl_json(srv, "sessions")["sessions"])
            if all(totals(users.get(u, []))[2] > 20 for u in USERS):
                break
            assert time.monotonic() < deadline, f"never both relaying: {users}\n{srv.output_tail(20)}"
            time.sleep(0.3)
        listing = ctl_json(srv, "sessions")
        assert listing["workers_missing"] == []
        users = by_user(listing["sessions"])
        for user in USERS:
            sessions = users[user]
            for s in sessions:
                assert s["transport"] == "udp" and s["realm"] == "uturn.e2e"
                assert s["client"].startswith("127.0.0.1:") and s["server"] == f"127.0.0.1:{srv.port}"
                assert len(s["relayed"]) == 1 and s["relayed"][0].startswith("127.0.0.1:")
            relaying = [s for s in sessions if s["to_client"]["packets"] > 0]
            assert relaying, sessions
            assert any(c["peer"] == f"127.0.0.1:{udp_peer.port}" for s in relaying for c in s["channels"])
            pkts_peer, bytes_peer, pkts_client, bytes_client = totals(sessions)
            assert bytes_peer == PAYLOAD * pkts_peer and bytes_client == PAYLOAD * pkts_client
            assert pkts_peer >= pkts_client > 0
        only_bob = ctl_json(srv, "sessions", "bob")["sessions"]
        assert only_bob and {s["user"] for s in only_bob} == {"bob"}
        table = ctl(srv, "sessions", "alice")
        assert table.returncode == 0 and "alice" in table.stdout and "bob" not in table.stdout

        # A client of alice's own, over UDP and over TCP, to see her next request fail.
        own = stun.TurnClient(("127.0.0.1", srv.port), "alice", USERS["alice"])
        tcp = stun.StreamTurnClient(("127.0.0.1", srv.port), "alice", USERS["alice"])
        try:
            assert own.allocate().cls == stun.SUCCESS
            assert tcp.allocate().cls == stun.SUCCESS
            before_alice = len(ctl_json(srv, "sessions", "alice")["sessions"])

            ended = ctl_json(srv, "disconnect", "alice")["ended"]
            assert len(ended) == before_alice and {s["user"] for s in ended} == {"alice"}
            assert ctl_json(srv, "sessions", "alice")["sessions"] == []
            resp = own.refresh(600)
            assert resp.cls == stun.ERROR and resp.error_code == 437, resp.error_code
            # The TCP connection it was made over is closed by the server.
            tcp.sock.settimeout(3)
            assert tcp.sock.recv(100) == b""
        finally:
            own.close()
            tcp.close()

        # bob keeps relaying after alice is gone.
        before = totals(by_user(ctl_json(srv, "sessions", "bob")["sessions"])["bob"])[2]
        assert stun.wait_until(
            lambda: totals(ctl_json(srv, "sessions", "bob")["sessions"])[2] > before + 20, timeout=5, step=0.3)
    finally:
        alice_sent, alice_recv, alice_out = uclient_totals(alice)
        bob_sent, bob_recv, bob_out = uclient_totals(bob)
    assert bob_sent == MESSAGES and bob_recv == bob_sent, bob_out
    assert alice_recv < alice_sent, alice_out


def test_reload_and_drain(admin_server):
    srv = admin_server
    r = ctl(srv, "reload")
    assert r.returncode == 0 and "reload" in r.stdout
    assert stun.wait_until(lambda: "SIGHUP: configuration reloaded" in srv.output(), timeout=5), srv.output_tail(10)
    assert ctl_json(srv, "info")["draining"] is False
    r = ctl(srv, "drain")
    assert r.returncode == 0 and "drain" in r.stdout
    try:
        srv.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"uturnd still running 10 s after uturnctl drain\n{srv.output_tail(20)}")
    assert srv.proc.returncode == 0
    assert "SIGTERM: stopping new allocations" in srv.output()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for BPF and tc")
def test_offloaded_traffic_is_counted(server_factory, tmp_path_factory):
    """With the kernel fast path relaying the channel, the session's counters
    include the kernel's packets as soon as they are asked for."""
    srv = start_admin_server(server_factory, tmp_path_factory, "turn-admin-offload",
                             "--offload tc --offload-interface lo")
    try:
        assert "offload: kernel fast path on lo" in srv.output(), srv.output_tail(20)
        channel, n = 0x4001, 50
        c = stun.TurnClient(("127.0.0.1", srv.port), "bob", USERS["bob"])
        peer = stun.udp_socket("127.0.0.1")
        try:
            assert c.allocate().cls == stun.SUCCESS
            assert c.channel_bind(channel, peer.getsockname()[:2]).cls == stun.SUCCESS
            peer.settimeout(2)
            for i in range(n):
                payload = bytes([i]) * 120  # a multiple of 4: no padding, so the kernel takes it
                c.send_channel_data(channel, payload)
                data, source = peer.recvfrom(2048)
                assert data == payload
                peer.sendto(payload[:60], source)
                assert c.recv_channel_data(timeout=2) == (channel, payload[:60])
            sessions = ctl_json(srv, "sessions", "bob")["sessions"]
        finally:
            peer.close()
            c.close()
        assert len(sessions) == 1, sessions
        s = sessions[0]
        assert s["to_peer"] == {"packets": n, "bytes": 120 * n}, (s, srv.output_tail(20))
        assert s["to_client"] == {"packets": n, "bytes": 60 * n}, (s, srv.output_tail(20))
        assert [ch["number"] for ch in s["channels"]] == [channel]
    finally:
        _stop(srv.proc)


@pytest.mark.backend_independent
def test_https(server_factory, tmp_path_factory):
    """--admin-cert/--admin-pkey: HTTPS only; uturnctl verifies the certificate."""
    cert, key = write_self_signed(tmp_path_factory.mktemp("admin-cert"))  # CN=localhost
    srv = start_admin_server(server_factory, tmp_path_factory, "turn-admin-https",
                             f"--admin-cert {cert} --admin-pkey {key}")
    try:
        port = srv.extra["admin_port"]
        url = f"https://localhost:{port}"
        r = ctl(srv, "info", "--json", "--cacert", str(cert), url=url)
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert any(line.startswith(f"admin API: https://127.0.0.1:{port}/v1/") for line in info["config"])
        # Not trusted without --cacert; not served as plain HTTP.
        r = ctl(srv, "info", url=url)
        assert r.returncode != 0 and "certificate" in r.stderr, r.stderr
        r = ctl(srv, "info", url=f"http://127.0.0.1:{port}")
        assert r.returncode != 0, r.stdout
        import ssl
        ctx = ssl.create_default_context(cafile=str(cert))
        for headers, want in [({}, 401), ({"Authorization": "Bearer nope"}, 401),
                              ({"Authorization": f"Bearer {TOKEN}"}, 200)]:
            conn = http.client.HTTPSConnection("localhost", port, timeout=5, context=ctx)
            try:
                conn.request("GET", "/v1/sessions", headers=headers)
                resp = conn.getresponse()
                body = resp.read().decode()
                assert resp.status == want, (headers, resp.status, body)
            finally:
                conn.close()
        assert json.loads(body) == {"sessions": [], "workers_missing": []}
    finally:
        _stop(srv.proc)
