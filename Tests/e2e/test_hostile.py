"""Hostile input against the real uturnd.

One daemon ("hostile") carries a victim session made before any attack: an
allocation with channel 0x4001 bound to a Python UDP echo peer. After every
case the session must still relay (ChannelData out, echo back) and the
daemon's VmRSS must stay within RSS_BOUND_KIB of what it was before the
first attack. Cases that need other server settings (no loopback peers,
a 2 s nonce lifetime) run on their own daemons, but are followed by the same
check of the victim session.

Every answer asserted here is one the RFCs allow; the section is named at
each assertion. Figures (cases, packets, RSS) are collected in FIGURES and
written to $UTURN_E2E_FIGURES (JSON) when that is set.
"""

from __future__ import annotations

import json
import os
import random
import select
import shlex
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import stun
from conftest import with_backend, HAS_IPV6, LOOPBACKS, REALM, server_binary, server_kind, free_port, \
    free_port_range

RSS_BOUND_KIB = 8 * 1024
VICTIM_CHANNEL = 0x4001
QUOTA_USER, QUOTA_PASSWORD = "quota", "quota-secret"
REST_SECRET = "hostile-rest-secret"

FIGURES: dict = {}


def record(section: str, **values) -> None:
    """Add figures for docs/robustness.md; written out if $UTURN_E2E_FIGURES is set."""
    FIGURES.setdefault(section, {}).update(values)
    path = os.environ.get("UTURN_E2E_FIGURES")
    if path:
        try:
            old = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            old = {}
        old.setdefault(section, {}).update(values)
        Path(path).write_text(json.dumps(old, indent=2, sort_keys=True))


# --------------------------------------------------------------------------
# a uturnd with test-chosen options (shared by test_faults.py and test_soak.py)

@dataclass
class Daemon:
    proc: subprocess.Popen
    port: int
    relay: tuple[int, int]
    argv: list[str]
    log: Path
    hosts: list[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def addr(self, host: str = "127.0.0.1") -> tuple[str, int]:
        return host, self.port

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM by PID, SIGKILL after `grace` seconds; returns the status."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=grace)
            except ProcessLookupError:
                pass
        return self.proc.returncode


def uturnd_binary() -> str:
    if server_kind() != "uturnd":
        pytest.skip("uturnd-specific options (UTURN_E2E_SERVER=coturn)")
    binary = server_binary("uturnd")
    if binary is None:
        pytest.skip("uturnd not built (swift build --product uturnd)")
    return binary


def uturnd_argv(binary: str, port: int, relay: tuple[int, int], *, workers: int = 1,
                allow_loopback: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
    argv = [binary]
    for h in LOOPBACKS:
        argv += ["--listening-ip", h]
    argv += ["--listening-port", str(port)]
    for h in LOOPBACKS:
        argv += ["--relay-ip", h]
    argv += ["--min-port", str(relay[0]), "--max-port", str(relay[1]), "--realm", REALM,
             "--lt-cred-mech", "--user", "demo:secret", "--workers", str(workers)]
    if allow_loopback:
        argv.append("--allow-loopback-peers")
    return with_backend(argv + list(extra))


def launch(workdir: Path, *, workers: int = 1, allow_loopback: bool = True,
           extra: tuple[str, ...] = (), relay: tuple[int, int] | None = None,
           timeout: float = 10.0) -> Daemon:
    binary = uturnd_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(span=2)
    relay = relay or free_port_range()
    argv = uturnd_argv(binary, port, relay, workers=workers, allow_loopback=allow_loopback,
                       extra=extra)
    log = workdir / "uturnd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir)
    d = Daemon(proc, port, relay, argv, log, list(LOOPBACKS))
    why = stun.wait_ready(proc, [d.addr(h) for h in d.hosts], timeout)
    if why is not None:
        d.stop()
        pytest.fail(f"uturnd {why}\ncommand: {shlex.join(argv)}\noutput:\n{d.output()[-4000:]}",
                    pytrace=False)
    return d


def quiet(sock: socket.socket, seconds: float) -> list[bytes]:
    """Everything that arrives on sock within `seconds` (bounded: 10,000 datagrams)."""
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while len(got) < 10_000 and (left := deadline - time.monotonic()) > 0:
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            break
        try:
            got.append(sock.recv(65535))
        except OSError:  # ICMP errors surface here; they are not answers
            continue
    return got


def allocations_created(d: Daemon) -> int:
    return sum(1 for line in d.output().splitlines() if "allocation created" in line.lower()
               or " allocated " in line.lower())


# --------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = launch(tmp_path_factory.mktemp("hostile"), workers=2, extra=(
        "--user", f"{QUOTA_USER}:{QUOTA_PASSWORD}", "--user-quota", "2",
        "--use-auth-secret", "--static-auth-secret", REST_SECRET))
    yield d
    status = d.stop()
    assert status == 0, f"uturnd exited {status} at the end of the attack\n{d.output()[-3000:]}"


@dataclass
class Victim:
    client: stun.TurnClient
    peer: stun.EchoPeer
    relayed: tuple[str, int]
    rss_before: int
    seq: int = 0


@pytest.fixture(scope="module")
def victim(hostile):
    c = stun.TurnClient(hostile.addr(), "demo", "secret")
    peer = stun.EchoPeer("127.0.0.1")
    try:
        resp = c.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        bound = c.channel_bind(VICTIM_CHANNEL, peer.addr)
        assert bound.cls == stun.SUCCESS, (bound.error_code, bound.error_reason)
        v = Victim(c, peer, resp.xor_address(stun.XOR_RELAYED_ADDRESS), 0)
        assert_relays(v)
        rss_cold = stun.rss_kib(hostile.pid)
        warm_up(hostile)
        assert_relays(v)
        v.rss_before = stun.rss_kib(hostile.pid)
        record("hostile", rss_cold_kib=rss_cold, rss_before_kib=v.rss_before)
        yield v
        rss_after = stun.rss_kib(hostile.pid)
        record("hostile", rss_after_kib=rss_after, peer_datagrams=peer.received)
        c.refresh(0)
    finally:
        peer.close()
        c.close()


def warm_up(d: Daemon, buffers: int = 4096, workers: int = 2) -> None:
    """Touch every provided receive buffer once before the RSS baseline.

    The buffer ring (--buffers x --buffer-size per worker, 8 MiB each by
    default) is allocated at start but its pages only become resident when
    the kernel first writes a datagram into them, which would read as
    growth. Three times the ring's size in 1-byte datagrams (dropped as
    malformed), from 16 sockets so that SO_REUSEPORT spreads them over the
    workers, and paced so that few are lost in the socket queue."""
    socks = [stun.udp_socket("127.0.0.1") for _ in range(16)]
    try:
        for i in range(3 * buffers * workers):
            socks[i % 16].sendto(b"\0", d.addr())
            if i % 512 == 511:
                time.sleep(0.01)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)


def drain(sock: socket.socket) -> None:
    """Discard what is queued on sock (bounded)."""
    for _ in range(10_000):
        try:
            if stun.recv_nowait(sock) is None:
                return
        except OSError:
            continue


def assert_relays(v: Victim, rounds: int = 3) -> None:
    """The victim session still relays: ChannelData to the echo peer and back."""
    drain(v.client.sock)
    for _ in range(rounds):
        v.seq += 1
        payload = b"victim-%06d" % v.seq
        got = None
        for _attempt in range(3):  # UDP: a loss under load is not a failure
            v.client.send_channel_data(VICTIM_CHANNEL, payload)
            try:
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:
                    ch, data = v.client.recv_channel_data(timeout=max(0.01, deadline - time.monotonic()))
                    if data == payload:
                        got = (ch, data)
                        break
            except (TimeoutError, OSError):
                pass
            if got:
                break
        assert got == (VICTIM_CHANNEL, payload), "the victim session stopped relaying"


def check_after(d: Daemon, v: Victim, case: str) -> None:
    assert d.proc.poll() is None, f"uturnd died during {case}:\n{d.output()[-3000:]}"
    assert_relays(v)
    rss = stun.rss_kib(d.pid)
    assert rss - v.rss_before <= RSS_BOUND_KIB, \
        f"{case}: VmRSS grew {rss - v.rss_before} KiB (bound {RSS_BOUND_KIB})"
    record("hostile_cases", **{case: {"rss_kib": rss}})


def stun_header(method: int, cls: int, length: int, txid: bytes) -> bytes:
    return struct.pack("!HHI", stun._encode_type(method, cls), length, stun.MAGIC_COOKIE) + txid


def answers(sock: socket.socket, server, datagrams: list[bytes], wait: float = 0.3) -> list[stun.Message]:
    """Send datagrams, collect whatever comes back, parsed (unparsable answers fail)."""
    for dgram in datagrams:
        sock.sendto(dgram, server)
    out = []
    for raw in quiet(sock, wait):
        out.append(stun.parse(raw))  # raises: the server must only send well-formed STUN
    return out


# --------------------------------------------------------------------------
# malformed datagrams

def test_truncated_datagrams(hostile, victim):
    """0..19-byte datagrams (shorter than a STUN header, RFC 8489 §5): random
    bytes, prefixes of a valid Binding request, and prefixes of ChannelData
    headers, from a stranger and from the victim's own 5-tuple: no answer."""
    rng = random.Random(0x7E57)
    full = stun.Message(stun.BINDING).encode()
    sent = 0
    with stun.udp_socket("127.0.0.1") as s:
        for n in range(20):
            batch = [bytes(rng.randrange(256) for _ in range(n)), full[:n],
                     struct.pack("!HH", VICTIM_CHANNEL, 64)[:n]]
            got = answers(s, hostile.addr(), batch, wait=0.02)
            assert got == [], f"answer to a {n}-byte datagram: {got}"
            sent += len(batch)
            victim.client.sock.sendto(full[:n], hostile.addr())
            victim.client.sock.sendto(struct.pack("!HH", VICTIM_CHANNEL, 64)[:n], hostile.addr())
            sent += 2
        assert quiet(s, 0.3) == []
    record("hostile", truncated_sent=sent)
    check_after(hostile, victim, "truncated")


def test_oversize_datagrams(hostile, victim):
    """Datagrams up to 65,000 bytes (more than --buffer-size): a Binding padded
    with a comprehension-optional attribute, and ChannelData on the victim's
    channel claiming the full length. The server either answers a well-formed
    STUN response or drops; it must not stall or leak."""
    sizes = [1400, 1800, 2048, 4096, 9000, 16384, 32768, 50000, 65000]
    answered = 0
    with stun.udp_socket("127.0.0.1") as s:
        for size in sizes:
            m = stun.Message(stun.BINDING)
            pad = size - 20 - 4
            m.add(0xC0DE, b"x" * pad)
            got = answers(s, hostile.addr(), [m.encode()], wait=0.1)
            for r in got:
                assert r.txid == m.txid and r.cls in (stun.SUCCESS, stun.ERROR)
            answered += len(got)
            payload = os.urandom(size - 4)
            victim.client.sock.sendto(struct.pack("!HH", VICTIM_CHANNEL, len(payload)) + payload,
                                      hostile.addr())
    record("hostile", oversize_sent=2 * len(sizes), oversize_answered=answered)
    check_after(hostile, victim, "oversize")


def test_random_bytes(hostile, victim):
    """3,000 seeded random datagrams (1..1,500 bytes) plus 1,000 that start
    like STUN (type 0x0001/0x0003, magic cookie) with random bodies: any answer
    must be a well-formed STUN message for the same transaction (400 per
    RFC 8489 §6.3.1 for broken requests)."""
    rng = random.Random(20261126)
    stats = {"sent": 0, "answered": 0}
    socks = [stun.udp_socket("127.0.0.1") for _ in range(4)]
    try:
        for i in range(4000):
            n = rng.randrange(1, 1501)
            body = rng.randbytes(n)
            if i >= 3000:
                body = struct.pack("!HHI", rng.choice([0x0001, 0x0003, 0x0004, 0x0009, 0x0016]),
                                   rng.randrange(0, 1500) & ~3, stun.MAGIC_COOKIE) \
                    + rng.randbytes(12) + rng.randbytes(rng.randrange(0, 200))
            socks[i % 4].sendto(body, hostile.addr())
            stats["sent"] += 1
            if i % 200 == 199:  # pace a little and collect answers
                for s in socks:
                    for raw in quiet(s, 0.005):
                        stun.parse(raw)
                        stats["answered"] += 1
        for s in socks:
            for raw in quiet(s, 0.3):
                stun.parse(raw)
                stats["answered"] += 1
    finally:
        for s in socks:
            s.close()
    record("hostile", random_sent=stats["sent"], random_answered=stats["answered"])
    check_after(hostile, victim, "random")


def test_bad_length_fields(hostile, victim):
    """Binding requests whose header length or attribute lengths lie. RFC 8489
    §6.3 lets a server drop a malformed message or answer a request with 400;
    nothing else is acceptable, and never a success."""
    cases = {}
    txid = os.urandom(12)
    attr = struct.pack("!HH", stun.SOFTWARE, 4) + b"abcd"
    cases["length not multiple of 4"] = stun_header(stun.BINDING, stun.REQUEST, 6, txid) + attr[:6]
    cases["length beyond datagram"] = stun_header(stun.BINDING, stun.REQUEST, 400, txid) + attr
    cases["length short of attributes"] = stun_header(stun.BINDING, stun.REQUEST, 4, txid) + attr
    cases["length 0 with attributes"] = stun_header(stun.BINDING, stun.REQUEST, 0, txid) + attr
    cases["length 0xFFFC"] = stun_header(stun.BINDING, stun.REQUEST, 0xFFFC, txid) + attr
    cases["attribute overruns"] = stun_header(stun.BINDING, stun.REQUEST, 8, txid) \
        + struct.pack("!HH", stun.SOFTWARE, 200) + b"abcd"
    cases["attribute length 0xFFFF"] = stun_header(stun.BINDING, stun.REQUEST, 8, txid) \
        + struct.pack("!HH", stun.SOFTWARE, 0xFFFF) + b"abcd"
    cases["allocate, attribute overruns"] = stun_header(stun.ALLOCATE, stun.REQUEST, 8, txid) \
        + struct.pack("!HH", stun.REQUESTED_TRANSPORT, 12) + b"\x11\0\0\0"
    cases["channeldata length beyond datagram"] = struct.pack("!HH", VICTIM_CHANNEL, 900) + b"x" * 10
    seen = {}
    with stun.udp_socket("127.0.0.1") as s:
        for name, dgram in cases.items():
            got = answers(s, hostile.addr(), [dgram], wait=0.15)
            codes = [r.error_code if r.cls == stun.ERROR else "success" for r in got]
            seen[name] = codes or ["dropped"]
            for r in got:
                if name == "length 0 with attributes" and r.cls == stun.SUCCESS:
                    # A complete 20-byte Binding followed by trailing bytes:
                    # answering the message the header describes is sensible
                    # (RFC 8489 §6.3 asks only that the length be sensible).
                    continue
                assert r.cls == stun.ERROR and r.error_code == 400, (name, codes)
    # ChannelData that lies about its length from the victim's own 5-tuple
    victim.client.sock.sendto(struct.pack("!HH", VICTIM_CHANNEL, 900) + b"y" * 10, hostile.addr())
    record("hostile", bad_length={k: v for k, v in seen.items()})
    check_after(hostile, victim, "bad-length")


def test_wrong_fingerprint_is_discarded(hostile, victim):
    """A Binding request with FINGERPRINT 0xDEADBEEF (wrong CRC) must be dropped."""
    m = stun.Message(stun.BINDING)
    raw = m.encode(fingerprint=True)
    raw = raw[:-4] + struct.pack("!I", 0xDEADBEEF)
    try:
        with stun.udp_socket("127.0.0.1") as s:
            got = answers(s, hostile.addr(), [raw], wait=0.5)
    finally:
        check_after(hostile, victim, "wrong-fingerprint")
    assert got == [], f"answered: cls={got[0].cls} code={got[0].error_code}"


# --------------------------------------------------------------------------
# authentication

def test_bad_message_integrity(hostile, victim):
    """A Refresh(LIFETIME 0) from the victim's own 5-tuple, with valid
    USERNAME/REALM/NONCE but one bit of MESSAGE-INTEGRITY flipped: RFC 8489
    §9.2.4 says reject with 401 (a server may also drop). Either way the
    allocation must survive."""
    victim.client.refresh(600)  # fresh nonce
    msg = victim.client.signed(stun.REFRESH, [(stun.LIFETIME, struct.pack("!I", 0))],
                               tamper_integrity=True)
    resp = stun.transact(victim.client.sock, hostile.addr(), msg.raw, msg.txid, timeout=1.5)
    outcome = "dropped" if resp is None else resp.error_code
    assert resp is None or (resp.cls == stun.ERROR and resp.error_code == 401), \
        (resp.cls, resp.error_code)
    if resp is not None:
        assert resp.get(stun.MESSAGE_INTEGRITY) is None, "401 must not be signed (RFC 8489 §9.2.4)"
    record("hostile", bad_integrity_answer=outcome)
    check_after(hostile, victim, "bad-integrity")


def test_unknown_comprehension_required_attributes(hostile, victim):
    """Two unknown comprehension-required attributes (0x0031, 0x7ABC) in an
    authenticated Refresh: 420 with UNKNOWN-ATTRIBUTES listing both (RFC 8489
    §6.3.1.1, §14.9); an unknown comprehension-optional one (0xC0DE) is ignored."""
    victim.client.refresh(600)
    msg = victim.client.signed(stun.REFRESH, [(stun.LIFETIME, struct.pack("!I", 600)),
                                              (0x0031, b"abcd"), (0x7ABC, b"")])
    resp = stun.transact(victim.client.sock, hostile.addr(), msg.raw, msg.txid)
    assert resp is not None and resp.cls == stun.ERROR and resp.error_code == 420, \
        None if resp is None else (resp.error_code, resp.error_reason)
    listed = resp.get(stun.UNKNOWN_ATTRIBUTES) or b""
    types = {struct.unpack("!H", listed[i:i + 2])[0] for i in range(0, len(listed) - 1, 2)}
    assert types == {0x0031, 0x7ABC}, [hex(t) for t in types]
    ok = victim.client.request(stun.REFRESH, [(stun.LIFETIME, struct.pack("!I", 600)),
                                              (0xC0DE, b"optional")])
    assert ok.cls == stun.SUCCESS, (ok.error_code, ok.error_reason)
    check_after(hostile, victim, "unknown-attributes")


@pytest.mark.parametrize("user,password", [("demo", "wrong"), ("nobody", "secret"),
                                           (QUOTA_USER, "secret")])
def test_wrong_password(hostile, victim, user, password):
    """MESSAGE-INTEGRITY under a wrong password or an unknown user: 401
    (RFC 8489 §9.2.4), unsigned, with a fresh NONCE."""
    c = stun.TurnClient(hostile.addr(), user, password)
    try:
        resp = c.allocate()
        assert c.key is not None, "never challenged"
        assert resp.cls == stun.ERROR and resp.error_code == 401, (resp.error_code, resp.error_reason)
        assert resp.get(stun.NONCE) and resp.get(stun.MESSAGE_INTEGRITY) is None
    finally:
        c.close()
    check_after(hostile, victim, f"wrong-password-{user}")


@pytest.mark.parametrize("ttl", [-1, -60, -86400 * 365])
def test_expired_rest_username(hostile, victim, ttl):
    """TURN REST usernames whose expiry has passed (correctly signed): 401."""
    username, password = stun.rest_credentials(REST_SECRET, "demo", ttl=ttl)
    c = stun.TurnClient(hostile.addr(), username, password)
    try:
        resp = c.allocate()
        assert resp.cls == stun.ERROR and resp.error_code == 401, (resp.error_code, resp.error_reason)
    finally:
        c.close()
    # control: the same secret with a future expiry works
    username, password = stun.rest_credentials(REST_SECRET, "demo", ttl=600)
    c = stun.TurnClient(hostile.addr(), username, password)
    try:
        resp = c.allocate()
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        assert c.refresh(0).cls == stun.SUCCESS
    finally:
        c.close()
    check_after(hostile, victim, f"expired-rest{ttl}")


@pytest.fixture(scope="module")
def short_nonce(tmp_path_factory):
    d = launch(tmp_path_factory.mktemp("nonce"), extra=("--stale-nonce", "2"))
    yield d
    d.stop()


@pytest.mark.backend_independent  # nonce checks live in TURN, the same on both backends
def test_stale_forged_and_replayed_nonces(short_nonce, hostile, victim):
    """RFC 8489 §9.2.4: a NONCE that is no longer valid gets 438 with a new
    NONCE. Three spellings: a nonce past --stale-nonce 2; a forged one; and a
    valid nonce replayed from another address (uturnd binds nonces to the
    client's IP address; not to its port, since an RFC 6062 ConnectionBind
    comes from a new connection with the control connection's nonce). The
    client recovers with the new nonce."""
    c = stun.TurnClient(short_nonce.addr(), "demo", "secret")
    other = stun.TurnClient(short_nonce.addr(), "demo", "secret")
    other.sock.close()
    other.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.sock.bind(("127.0.0.2", 0))  # another loopback address
    try:
        assert c.allocate().cls == stun.SUCCESS
        codes = {}
        forged = c.signed(stun.REFRESH, [(stun.LIFETIME, struct.pack("!I", 600))],
                          nonce=b"obMatJos2AAABforgedforgedforged00")
        resp = stun.transact(c.sock, short_nonce.addr(), forged.raw, forged.txid)
        codes["forged"] = resp.error_code
        assert resp.cls == stun.ERROR and resp.error_code == 438 and resp.get(stun.NONCE)

        # another socket presents c's (valid) nonce with valid integrity
        other.realm, other.nonce = c.realm, c.nonce
        other.key = c.key
        replay = other.signed(stun.ALLOCATE, [(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))])
        resp = stun.transact(other.sock, short_nonce.addr(), replay.raw, replay.txid)
        codes["replayed-elsewhere"] = resp.error_code
        assert resp.cls == stun.ERROR and resp.error_code == 438, (resp.error_code, resp.error_reason)

        c.refresh(600)  # fresh nonce, then let it go stale
        time.sleep(3.2)
        stale = c.signed(stun.REFRESH, [(stun.LIFETIME, struct.pack("!I", 600))])
        resp = stun.transact(c.sock, short_nonce.addr(), stale.raw, stale.txid)
        codes["stale"] = resp.error_code
        assert resp.cls == stun.ERROR and resp.error_code == 438, (resp.error_code, resp.error_reason)
        new_nonce = resp.get(stun.NONCE)
        assert new_nonce and new_nonce != c.nonce
        c.nonce = new_nonce
        again = c.signed(stun.REFRESH, [(stun.LIFETIME, struct.pack("!I", 0))])
        resp = stun.transact(c.sock, short_nonce.addr(), again.raw, again.txid)
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        record("hostile", nonce_answers=codes)
    finally:
        c.close()
        other.close()
    check_after(hostile, victim, "nonces")


# --------------------------------------------------------------------------
# permissions and channels

def test_no_permission_is_dropped(hostile, victim):
    """RFC 8656 §11.4/§12: a Send indication to a peer without permission and
    ChannelData on an unbound channel are dropped; a peer without permission
    sending to the relayed address reaches nobody. (Permissions are per IP
    address, so the stranger peer sits on 127.0.0.2.)"""
    try:
        stranger = stun.EchoPeer("127.0.0.2", echo=False)
    except OSError:
        pytest.skip("cannot bind 127.0.0.2")
    try:
        before = victim.peer.received
        drain(victim.client.sock)
        for i in range(50):
            victim.client.send_indication(stranger.addr, b"no-permission-%d" % i)
            victim.client.send_channel_data(0x4ABC, b"unbound-channel-%d" % i)
            victim.client.send_channel_data(0x3FFF, b"invalid-channel-%d" % i)
            stranger.sock.sendto(b"unsolicited-%d" % i, victim.relayed)
        time.sleep(0.5)
        assert stranger.received == 0, "a peer without permission got data"
        assert victim.peer.received == before, "ChannelData on an unbound channel was relayed"
        leaked = [d for d in quiet(victim.client.sock, 0.3) if b"unsolicited" in d]
        assert leaked == [], "data from a peer without permission reached the client"
        record("hostile", no_permission_sent=200)
    finally:
        stranger.close()
    check_after(hostile, victim, "no-permission")


@pytest.mark.parametrize("channel", [0x0000, 0x3FFF, 0x8000, 0xFFFF])
def test_channel_number_out_of_range(hostile, victim, channel):
    """ChannelBind with a number outside 0x4000-0x7FFF: 400 (RFC 8656 §11.2)."""
    resp = victim.client.channel_bind(channel, victim.peer.addr)
    assert resp.cls == stun.ERROR and resp.error_code == 400, (resp.error_code, resp.error_reason)
    check_after(hostile, victim, f"channel-{channel:#06x}")


def test_channel_rebinding_conflicts(hostile, victim):
    """RFC 8656 §11.2: the bound channel to another peer -> 400; the bound
    peer on another channel -> 400; the same binding again refreshes it."""
    other_peer = ("127.0.0.1", victim.peer.addr[1] ^ 1 or 9)
    r = victim.client.channel_bind(VICTIM_CHANNEL, other_peer)
    assert r.cls == stun.ERROR and r.error_code == 400, (r.error_code, r.error_reason)
    r = victim.client.channel_bind(0x4002, victim.peer.addr)
    assert r.cls == stun.ERROR and r.error_code == 400, (r.error_code, r.error_reason)
    r = victim.client.channel_bind(VICTIM_CHANNEL, victim.peer.addr)
    assert r.cls == stun.SUCCESS, (r.error_code, r.error_reason)
    check_after(hostile, victim, "rebinding")


@pytest.fixture(scope="module")
def closed(tmp_path_factory):
    """No --allow-loopback-peers: loopback and the other defaults are denied."""
    d = launch(tmp_path_factory.mktemp("closed"), allow_loopback=False)
    yield d
    d.stop()


DENIED_V4 = ["127.0.0.1", "127.1.2.3", "0.0.0.0", "169.254.1.1", "224.0.0.1", "255.255.255.255",
             "10.0.0.1", "172.16.0.1", "192.168.1.1", "100.64.0.1"]
DENIED_V6 = ["::", "::1", "::ffff:127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "fe80::1",
             "ff02::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:7f00:1::1", "fc00::1",
             "::ffff:0.0.0.0", "::ffff:169.254.1.1"]


@pytest.mark.skipif(not HAS_IPV6, reason="no ::1 on this machine")
def test_denied_peer_spellings(closed, hostile, victim):
    """Every spelling of a denied peer gets 403 on CreatePermission and
    ChannelBind (RFC 8656 §10.2 / §21.5 leaves the policy to the server; 403
    is the code). The allocation is dual (IPv4 + IPv6, RFC 8656 §7.2) so that
    no family mismatch (443) hides the policy. Includes the server's own
    listening and relayed addresses. A public address is the control."""
    c = stun.TurnClient(closed.addr(), "demo", "secret")
    try:
        resp = c.allocate(additional_family=2)
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        relays = [stun.decode_xor_address(v, resp.txid) for t, v in resp.attrs
                  if t == stun.XOR_RELAYED_ADDRESS]
        assert {ip for ip, _ in relays} == {"127.0.0.1", "::1"}, relays
        peers = [(ip, 4000) for ip in DENIED_V4 + DENIED_V6]
        peers += [closed.addr("127.0.0.1"), closed.addr("::1")] + relays
        wrong = {}
        for peer in peers:
            r = c.create_permission(peer)
            if not (r.cls == stun.ERROR and r.error_code == 403):
                wrong[f"CreatePermission {peer}"] = (r.cls, r.error_code)
        for n, peer in enumerate([("127.0.0.1", 5), ("::ffff:127.0.0.1", 5), ("10.0.0.1", 5)]):
            r = c.channel_bind(0x4000 + n, peer)
            if not (r.cls == stun.ERROR and r.error_code == 403):
                wrong[f"ChannelBind {peer}"] = (r.cls, r.error_code)
        assert wrong == {}, wrong
        ok = c.create_permission(("8.8.8.8", 4000))  # installs state only; nothing is sent
        assert ok.cls == stun.SUCCESS, (ok.error_code, ok.error_reason)
        record("hostile", denied_spellings=len(peers) + 3)
        c.refresh(0)
    finally:
        c.close()

    # An IPv4-only allocation and an IPv6 peer: 443 (RFC 8656 §10.2); the
    # IPv4 denied peers still 403.
    c = stun.TurnClient(closed.addr(), "demo", "secret")
    try:
        assert c.allocate().cls == stun.SUCCESS
        r = c.create_permission(("::1", 4000))
        assert r.cls == stun.ERROR and r.error_code == 443, (r.error_code, r.error_reason)
        r = c.create_permission(("127.0.0.1", 4000))
        assert r.cls == stun.ERROR and r.error_code == 403, (r.error_code, r.error_reason)
        c.refresh(0)
    finally:
        c.close()
    check_after(hostile, victim, "denied-peers")


# --------------------------------------------------------------------------
# quotas and floods

def test_user_quota(hostile, victim):
    """--user-quota 2: the third concurrent allocation of one user gets 486
    (RFC 8656 §7.2); after one is deleted the next succeeds."""
    clients = [stun.TurnClient(hostile.addr(), QUOTA_USER, QUOTA_PASSWORD) for _ in range(3)]
    try:
        codes = []
        for c in clients:
            r = c.allocate()
            codes.append("success" if r.cls == stun.SUCCESS else r.error_code)
        assert codes == ["success", "success", 486], codes
        assert clients[0].refresh(0).cls == stun.SUCCESS
        r = clients[2].allocate()
        assert r.cls == stun.SUCCESS, (r.error_code, r.error_reason)
        for c in clients[1:]:
            assert c.refresh(0).cls == stun.SUCCESS
    finally:
        for c in clients:
            c.close()
    check_after(hostile, victim, "quota")


def test_unauthenticated_allocate_flood(hostile, victim):
    """2,000 unauthenticated Allocates from 200 sockets (different source
    ports, as a spoofing attacker would look): each gets 401 with a NONCE
    (RFC 8656 §7.2 / RFC 8489 §9.2.4), the daemon keeps no per-packet state
    (RSS bound; no allocation appears in the log) and a real Allocate still
    succeeds afterwards."""
    created_before = allocations_created(hostile)
    assert created_before > 0, "the log shows no 'allocation created' line (format changed?)"
    rss0 = stun.rss_kib(hostile.pid)
    socks = [stun.udp_socket("127.0.0.1") for _ in range(200)]
    pending: dict[bytes, tuple[socket.socket, bytes]] = {}
    got401 = 0
    other = []
    try:
        for s in socks:
            for _ in range(10):
                m = stun.Message(stun.ALLOCATE).add(stun.REQUESTED_TRANSPORT, bytes([17, 0, 0, 0]))
                pending[m.txid] = (s, m.encode())
        deadline = time.monotonic() + 30
        rounds = 0
        while pending and rounds < 5 and time.monotonic() < deadline:
            rounds += 1
            for n, (txid, (s, raw)) in enumerate(list(pending.items())):
                s.sendto(raw, hostile.addr())
                if n % 100 == 99:
                    time.sleep(0.002)  # a fast attacker, not a lossy one
            until = time.monotonic() + 3
            while pending and time.monotonic() < until:
                r, _, _ = select.select(socks, [], [], 0.2)
                for s in r:
                    for _ in range(64):
                        try:
                            raw = stun.recv_nowait(s)
                        except OSError:
                            continue
                        if raw is None:
                            break
                        m = stun.parse(raw)
                        if pending.pop(m.txid, None) is None:
                            continue
                        if m.cls == stun.ERROR and m.error_code == 401 and m.get(stun.NONCE):
                            got401 += 1
                        else:
                            other.append((m.cls, m.error_code))
    finally:
        for s in socks:
            s.close()
    rss1 = stun.rss_kib(hostile.pid)
    record("hostile", flood_allocates=2000, flood_401=got401, flood_other=len(other),
           flood_unanswered=len(pending), flood_rss_before_kib=rss0, flood_rss_after_kib=rss1)
    assert other == [], other[:5]
    assert pending == {}, f"{len(pending)} of 2000 unauthenticated Allocates never answered"
    assert got401 == 2000
    assert rss1 - rss0 <= RSS_BOUND_KIB
    assert allocations_created(hostile) == created_before
    c = stun.TurnClient(hostile.addr(), "demo", "secret")
    try:
        r = c.allocate()
        assert r.cls == stun.SUCCESS, (r.error_code, r.error_reason)
        assert stun.wait_until(lambda: allocations_created(hostile) == created_before + 1, 2)
        assert c.refresh(0).cls == stun.SUCCESS
    finally:
        c.close()
    check_after(hostile, victim, "unauth-flood")


def test_rss_over_whole_attack(hostile, victim):
    """Last: the whole file's attack left VmRSS within the bound and the victim working."""
    check_after(hostile, victim, "end")
    rss = stun.rss_kib(hostile.pid)
    record("hostile", rss_end_kib=rss, rss_growth_kib=rss - victim.rss_before,
           fds_end=stun.fd_count(hostile.pid))
