"""uturnd as a daemon: SIGHUP reload of the config file, SIGTERM drain,
SIGINT, and the systemd readiness protocol (NOTIFY_SOCKET).

Each test starts its own uturnd (127.0.0.1 only, random ports, never
3478/5349) with `-c` pointing at a config file in the test's temp dir, and
stops it by its PID. Every wait is bounded. uturnd only: with
UTURN_E2E_SERVER=coturn these are skipped (coturn has no such reload).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import stun
from conftest import _stop, free_port, free_port_range, server_binary, server_kind

REALM = "uturn.daemon"

pytestmark = pytest.mark.skipif(server_kind() != "uturnd",
                                reason="daemon behaviour of uturnd (SIGHUP reload, sd_notify)")


@dataclass
class Daemon:
    proc: subprocess.Popen
    port: int
    relay_range: tuple[int, int]
    config: Path
    log: Path

    @property
    def addr(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc.poll() is None, f"uturnd already exited:\n{self.output()}"
        os.kill(self.proc.pid, sig)

    def wait_for_log(self, text: str, timeout: float = 5.0, after: int = 0) -> str:
        """Waits until `text` appears in the log past byte offset `after`; returns the line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()[after:]
            for line in out.splitlines():
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no log line with {text!r} within {timeout}s; log:\n{self.output()}", pytrace=False)

    def log_size(self) -> int:
        return len(self.output())


def config_text(*users: str, extra: str = "") -> str:
    lines = ["# written by test_daemon.py", f"realm={REALM}", "allow-loopback-peers"]
    lines += [f"user={u}" for u in users]
    return "\n".join(lines) + "\n" + extra


def start_daemon(tmp: Path, config: str, *args: str, env: dict | None = None,
                 ready: bool = True) -> Daemon:
    binary = server_binary("uturnd")
    if binary is None:
        pytest.skip("uturnd not built (set $UTURND or build .build/release/uturnd)")
    port = free_port(span=1, hosts=["127.0.0.1"])
    relay = free_port_range(100)
    conf = tmp / "uturnd.conf"
    conf.write_text(config)
    log = tmp / "uturnd.log"
    argv = [binary, "-c", str(conf), "--listening-ip", "127.0.0.1", "--listening-port", str(port),
            "--relay-ip", "127.0.0.1", "--min-port", str(relay[0]), "--max-port", str(relay[1]),
            "--workers", "2", *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=tmp, env={**os.environ, **(env or {})})
    d = Daemon(proc, port, relay, conf, log)
    if ready:
        deadline = time.monotonic() + float(os.environ.get("UTURN_E2E_START_TIMEOUT", "10"))
        while stun.binding(d.addr, timeout=0.3) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                pytest.fail(f"uturnd did not start ({argv}):\n{d.output()}", pytrace=False)
    return d


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for d in started:
        _stop(d.proc)


def allocate(d: Daemon, user: str, password: str, lifetime: int = 600) -> tuple[stun.TurnClient, stun.Message]:
    c = stun.TurnClient(d.addr, user, password)
    try:
        return c, c.allocate(lifetime=lifetime)
    except BaseException:
        c.close()
        raise


def allocate_code(d: Daemon, user: str, password: str) -> int | None:
    """0 for success (the allocation is released again), else the error code."""
    c, resp = allocate(d, user, password)
    try:
        if resp.cls == stun.SUCCESS:
            c.refresh(0)
            return 0
        return resp.error_code
    finally:
        c.close()


def wait_for_code(d: Daemon, user: str, password: str, code: int, timeout: float = 5.0) -> None:
    """Workers take a new configuration within milliseconds; poll, bounded."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = allocate_code(d, user, password)
        if got == code:
            return
        time.sleep(0.1)
    pytest.fail(f"{user}: Allocate gave {got}, expected {code} within {timeout}s\n{d.output()}",
                pytrace=False)


def exit_status(d: Daemon, timeout: float) -> tuple[int, float]:
    start = time.monotonic()
    try:
        rc = d.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"uturnd still running {timeout}s after the signal:\n{d.output()}", pytrace=False)
    return rc, time.monotonic() - start


def refresh_with_nonce(c: stun.TurnClient, lifetime: int = 600) -> stun.Message:
    """One signed Refresh with the nonce the client already holds (no retry on 438)."""
    msg = stun.Message(stun.REFRESH).add(stun.LIFETIME, struct.pack("!I", lifetime))
    msg.add(stun.USERNAME, c.username.encode()).add(stun.REALM, c.realm).add(stun.NONCE, c.nonce)
    resp = stun.transact(c.sock, c.server, msg.encode(c.key, fingerprint=True), msg.txid)
    assert resp is not None, "no answer to Refresh"
    return resp


# --------------------------------------------------------------------------
# SIGHUP

def test_sighup_reloads_users_keeping_allocations_and_nonces(tmp_path, daemons):
    d = start_daemon(tmp_path, config_text("alice:alice-pw", "carol:carol-pw"))
    daemons.append(d)
    assert allocate_code(d, "alice", "alice-pw") == 0
    assert allocate_code(d, "bob", "bob-pw") == 401

    # An allocation of alice's with a channel to a local peer, made before the reload.
    alice, resp = allocate(d, "alice", "alice-pw")
    peer = stun.udp_socket("127.0.0.1")
    peer.settimeout(2)
    try:
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        relayed = resp.xor_address(stun.XOR_RELAYED_ADDRESS)
        bound = alice.channel_bind(0x4001, peer.getsockname()[:2])
        assert bound.cls == stun.SUCCESS, (bound.error_code, bound.error_reason)
        # carol holds a nonce from before the reload.
        carol, cresp = allocate(d, "carol", "carol-pw")
        assert cresp.cls == stun.SUCCESS

        # alice out, bob in; carol stays.
        d.config.write_text(config_text("bob:bob-pw", "carol:carol-pw"))
        mark = d.log_size()
        d.signal(signal.SIGHUP)
        line = d.wait_for_log("SIGHUP: configuration reloaded", after=mark)
        assert "static users 2 → 2 (+bob, -alice)" in line
        assert "bob-pw" not in d.output() and "alice-pw" not in d.output()
        wait_for_code(d, "alice", "alice-pw", 401)
        assert allocate_code(d, "bob", "bob-pw") == 0

        # The nonce secret is the same: carol's old nonce still works (no 438).
        r = refresh_with_nonce(carol)
        assert r.cls == stun.SUCCESS, (r.error_code, r.error_reason)
        carol.refresh(0)
        carol.close()

        # alice's allocation survived the reload: ChannelData both ways.
        alice.send_channel_data(0x4001, b"after-reload")
        data, src = peer.recvfrom(2048)
        assert (data, src[:2]) == (b"after-reload", relayed)
        peer.sendto(b"back", relayed)
        assert alice.recv_channel_data() == (0x4001, b"back")
    finally:
        peer.close()
        alice.close()

    # A broken file: one error line, bob still works, alice still refused.
    d.config.write_text(config_text("bob") + "\n")
    mark = d.log_size()
    d.signal(signal.SIGHUP)
    line = d.wait_for_log("SIGHUP: reload failed", after=mark)
    assert " error " in line and "keeping the running configuration" in line and "--user 'bob'" in line
    assert allocate_code(d, "bob", "bob-pw") == 0
    assert allocate_code(d, "alice", "alice-pw") == 401

    # An unknown option names the file and line.
    d.config.write_text(config_text("bob:bob-pw", extra="no-such-option=1\n"))
    mark = d.log_size()
    d.signal(signal.SIGHUP)
    line = d.wait_for_log("SIGHUP: reload failed", after=mark)
    assert f"{d.config}:5: unknown option 'no-such-option'" in line

    # A restart-only change is warned about, the rest applied.
    d.config.write_text(config_text("bob:bob-pw", "dave:dave-pw", extra="workers=3\n"))
    mark = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_for_log("SIGHUP: configuration reloaded", after=mark)
    # --workers is on the command line (2), so the file's value is overridden: no warning.
    assert "--workers changed" not in d.output()[mark:]
    wait_for_code(d, "dave", "dave-pw", 0)

    d.config.write_text(config_text("bob:bob-pw", extra="sq-entries=2048\n"))
    d.signal(signal.SIGHUP)
    d.wait_for_log("--sq-entries changed in the config file: restart to apply", after=mark)
    assert d.proc.poll() is None

    # The quotas are followed: the next Allocate meets the new one, and the
    # allocation already made is kept.
    held, resp = allocate(d, "bob", "bob-pw")
    try:
        assert resp.cls == stun.SUCCESS
        assert allocate_code(d, "bob", "bob-pw") == 0
        mark = d.log_size()
        d.config.write_text(config_text("bob:bob-pw", extra="sq-entries=2048\nuser-quota=1\n"))
        d.signal(signal.SIGHUP)
        d.wait_for_log("--user-quota 0 → 1", after=mark)
        assert allocate_code(d, "bob", "bob-pw") == 486
        assert held.refresh(600).cls == stun.SUCCESS
        mark = d.log_size()
        d.config.write_text(config_text("bob:bob-pw", extra="sq-entries=2048\n"))
        d.signal(signal.SIGHUP)
        d.wait_for_log("--user-quota 1 → 0", after=mark)
        assert allocate_code(d, "bob", "bob-pw") == 0
    finally:
        held.close()


# --------------------------------------------------------------------------
# SIGTERM / SIGINT

def test_sigterm_drains_then_exits_zero(tmp_path, daemons):
    d = start_daemon(tmp_path, config_text("alice:alice-pw"), "--drain-timeout", "5")
    daemons.append(d)
    c, resp = allocate(d, "alice", "alice-pw")
    try:
        assert resp.cls == stun.SUCCESS
        started = time.monotonic()
        d.signal(signal.SIGTERM)
        d.wait_for_log("SIGTERM: stopping new allocations")
        # New Allocates: 508 while the drain runs.
        deadline = time.monotonic() + 3
        code = None
        while time.monotonic() < deadline and code != 508:
            code = allocate_code(d, "alice", "alice-pw")
        assert code == 508
        assert d.proc.poll() is None, "exited before the drain time with an allocation open"
        rc, _ = exit_status(d, timeout=5 + 5 - (time.monotonic() - started))
        assert rc == 0, d.output()
        assert time.monotonic() - started < 5 + 5
        assert "stopped" in d.output()
    finally:
        c.close()


def test_sigterm_without_allocations_exits_at_once(tmp_path, daemons):
    d = start_daemon(tmp_path, config_text("alice:alice-pw"), "--drain-timeout", "30")
    daemons.append(d)
    d.signal(signal.SIGTERM)
    rc, took = exit_status(d, timeout=5)
    assert rc == 0 and took < 5, d.output()


def test_sigint_exits_promptly(tmp_path, daemons):
    d = start_daemon(tmp_path, config_text("alice:alice-pw"), "--drain-timeout", "30")
    daemons.append(d)
    c, resp = allocate(d, "alice", "alice-pw")
    try:
        assert resp.cls == stun.SUCCESS
        d.signal(signal.SIGINT)
        rc, took = exit_status(d, timeout=3)
        assert rc == 0, d.output()
        assert took < 3
    finally:
        c.close()


# --------------------------------------------------------------------------
# systemd readiness (sd_notify without libsystemd)

def receive_states(sock: socket.socket, want: str, timeout: float) -> list[dict[str, str]]:
    """Datagrams until one carries `want` (KEY=value); all of them, parsed."""
    got: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        got.append(fields)
        key, value = want.split("=", 1)
        if fields.get(key) == value:
            return got
    pytest.fail(f"no {want} from uturnd within {timeout}s; got {got}", pytrace=False)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify(tmp_path, daemons, abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"uturn-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        notify = "@" + name
    else:
        notify = str(tmp_path / "notify.sock")
        sock.bind(notify)
    try:
        d = start_daemon(tmp_path, config_text("alice:alice-pw"), env={"NOTIFY_SOCKET": notify},
                         ready=False)
        daemons.append(d)
        states = receive_states(sock, "READY=1", timeout=10)
        assert not any("STOPPING" in s for s in states)
        # READY=1 comes after the engine started: it answers now.
        assert stun.binding(d.addr, timeout=2) is not None

        d.signal(signal.SIGHUP)
        states = receive_states(sock, "RELOADING=1", timeout=5)
        usec = int(states[-1]["MONOTONIC_USEC"])
        assert abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 10
        receive_states(sock, "READY=1", timeout=5)

        d.signal(signal.SIGTERM)
        receive_states(sock, "STOPPING=1", timeout=5)
        rc, _ = exit_status(d, timeout=5)
        assert rc == 0, d.output()
    finally:
        sock.close()
