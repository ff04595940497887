"""coturn's service switches against the real daemon: --no-udp-relay,
--stun-only, --no-stun, --secure-stun, --no-udp and --no-software-attribute,
driven with coturn's turnutils_uclient and the stun.py client. Each server
is started here with its switch (the shared fixtures wait for an anonymous
Binding answer, which some of these switches turn off) on free loopback
ports, and stopped by its own PID.
"""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import time

import pytest

import stun
from conftest import (LOOPBACKS, TurnServer, _stop, build_argv, free_port, free_port_range,
                      server_binary, server_kind)
from test_uclient import assert_all_echoed, run_uclient

pytestmark = [
    pytest.mark.skipif(server_kind() != "uturnd", reason="uturnd's options (coturn has its own tests)"),
    # The switches act in the TURN state machine and in which listeners are
    # opened, both shared by the two backends: run once.
    pytest.mark.backend_independent,
]


def _allocate_challenged(addr) -> bool:
    """An unauthenticated Allocate gets 401: the TURN side is up."""
    c = stun.TurnClient(addr, "nobody", "x")
    try:
        msg = stun.Message(stun.ALLOCATE)
        msg.add(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0]))
        resp = stun.transact(c.sock, addr, msg.encode(), msg.txid, timeout=0.3)
        return resp is not None and resp.error_code == 401
    finally:
        c.close()


def _tcp_open(addr) -> bool:
    try:
        socket.create_connection(addr, timeout=0.3).close()
        return True
    except OSError:
        return False


def start(workdir, extra: list[str], ready) -> TurnServer:
    binary = server_binary("uturnd")
    if binary is None:
        pytest.skip("uturnd not built")
    workdir.mkdir(parents=True, exist_ok=True)
    port, relay = free_port(span=2), free_port_range()
    argv = build_argv("uturnd", binary, port, LOOPBACKS, relay, "lt", True, workdir) + extra
    srv = TurnServer("uturnd", port, list(LOOPBACKS), relay, "lt", True, argv, workdir / "server.log")
    with open(srv.log, "wb") as out:
        srv.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir)
    deadline = time.monotonic() + 10
    while not ready(srv.addr()):
        if srv.proc.poll() is not None or time.monotonic() > deadline:
            _stop(srv.proc)
            pytest.fail(f"uturnd not ready\n{shlex.join(argv)}\n{srv.output_tail()}", pytrace=False)
        time.sleep(0.05)
    return srv


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started: dict[str, TurnServer] = {}

    def make(name: str, extra: list[str], ready=lambda a: stun.binding(a, timeout=0.3) is not None):
        if name not in started:
            started[name] = start(tmp_path_factory.mktemp(name), extra, ready)
        return started[name]

    yield make
    for srv in started.values():
        _stop(srv.proc)


def test_no_udp_relay_refuses_udp_allocations_with_442(servers):
    srv = servers("no-udp-relay", ["--no-udp-relay"])
    c = stun.TurnClient(srv.addr(), srv.user, srv.password)
    try:
        resp = c.allocate()
        assert resp.cls == stun.ERROR and resp.error_code == 442, srv.output_tail()
    finally:
        c.close()
    # RFC 6062 TCP allocations are still made for a client over TCP.
    t = stun.StreamTurnClient(srv.addr(), srv.user, srv.password)
    try:
        resp = t.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.TCP_TRANSPORT, 0, 0, 0]))])
        assert resp.cls == stun.SUCCESS, (resp.error_code, srv.output_tail())
    finally:
        t.sock.close()


def test_stun_only_answers_binding_and_ignores_turn(servers):
    srv = servers("stun-only", ["--stun-only"])
    assert stun.binding(srv.addr()) is not None
    c = stun.TurnClient(srv.addr(), srv.user, srv.password)
    try:
        with pytest.raises(TimeoutError):
            c.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0]))],
                      timeout=1.0)
    finally:
        c.close()


def test_no_stun_ignores_binding_and_relays(servers, udp_peer):
    srv = servers("no-stun", ["--no-stun"], ready=_allocate_challenged)
    assert stun.binding(srv.addr(), timeout=1.0) is None
    assert_all_echoed(run_uclient(srv, udp_peer, n=20), 20)


def test_secure_stun_binding_needs_credentials(servers):
    srv = servers("secure-stun", ["--secure-stun"], ready=_allocate_challenged)
    sock = stun.udp_socket("127.0.0.1")
    try:
        req = stun.Message(stun.BINDING)
        resp = stun.transact(sock, srv.addr(), req.encode(), req.txid)
        assert resp is not None and resp.error_code == 401 and resp.get(stun.NONCE) is not None
    finally:
        sock.close()
    c = stun.TurnClient(srv.addr(), srv.user, srv.password)
    try:
        resp = c.request(stun.BINDING, [])
        assert resp.cls == stun.SUCCESS
        assert resp.xor_address(stun.XOR_MAPPED_ADDRESS) == c.sock.getsockname()[:2]
        assert stun.verify_integrity(resp, c.key)
    finally:
        c.close()


def test_no_udp_serves_tcp_clients_only(servers, udp_peer):
    srv = servers("no-udp", ["--no-udp"], ready=_tcp_open)
    assert stun.binding(srv.addr(), timeout=1.0) is None
    assert_all_echoed(run_uclient(srv, udp_peer, n=20, extra=["-t"]), 20)


def test_no_software_attribute(servers, turn_server):
    sock = stun.udp_socket("127.0.0.1")
    try:
        for srv, has_software in ((turn_server, True), (servers("no-software", ["--no-software-attribute"]), False)):
            req = stun.Message(stun.BINDING)
            resp = stun.transact(sock, srv.addr(), req.encode(), req.txid)
            assert resp is not None and (resp.get(stun.SOFTWARE) is not None) == has_software
    finally:
        sock.close()


def test_check_config_shows_the_service(tmp_path):
    binary = server_binary("uturnd")
    if binary is None:
        pytest.skip("uturnd not built")
    conf = tmp_path / "turnserver.conf"
    conf.write_text("user=demo:secret\nsecure-stun\nno-udp-relay\nno-software-attribute\nserver-name=turn.example\n"
                    "permission-lifetime=30\nchannel-lifetime=60\n")
    out = subprocess.run([binary, "-c", str(conf), "--check-config"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    service = [line for line in out.stdout.splitlines() if line.startswith("service:")]
    assert service and "--secure-stun" in service[0] and "TURN allocations: TCP" in service[0], out.stdout
    assert "no SOFTWARE attribute" in service[0] and "permissions last 30 s, channels 60 s" in service[0]
    assert 'server name "turn.example"' in service[0]
    assert "for testing only" in out.stdout


ORIGIN = 0x802F


def test_check_origin_consistency(servers):
    srv = servers("check-origin", ["--check-origin-consistency"])
    c = stun.TurnClient(srv.addr(), srv.user, srv.password)
    try:
        resp = c.request(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0])),
                                         (ORIGIN, b"https://App.Example")])
        assert resp.cls == stun.SUCCESS, resp.error_code
        same = c.request(stun.REFRESH, [(stun.LIFETIME, (600).to_bytes(4, "big")),
                                        (ORIGIN, b"https://app.example:443/page")])
        assert same.cls == stun.SUCCESS, same.error_code
        other = c.request(stun.REFRESH, [(stun.LIFETIME, (600).to_bytes(4, "big")), (ORIGIN, b"https://evil.example")])
        assert other.cls == stun.ERROR and other.error_code == 441
        none = c.request(stun.REFRESH, [(stun.LIFETIME, (600).to_bytes(4, "big"))])
        assert none.cls == stun.ERROR and none.error_code == 441
    finally:
        c.close()


def test_sighup_applies_no_stun(tmp_path):
    conf = tmp_path / "uturnd.conf"
    conf.write_text("# service\n")
    srv = start(tmp_path / "srv", ["-c", str(conf)], ready=lambda a: stun.binding(a, timeout=0.3) is not None)
    try:
        conf.write_text("no-stun\n")
        srv.proc.send_signal(signal.SIGHUP)
        assert stun.wait_until(lambda: stun.binding(srv.addr(), timeout=0.3) is None, timeout=10), srv.output_tail()
        assert "--no-stun on" in srv.output()
        assert _allocate_challenged(srv.addr())
    finally:
        _stop(srv.proc)
