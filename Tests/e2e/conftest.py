"""Fixtures for the end-to-end TURN tests.

Server under test, chosen by UTURN_E2E_SERVER:
  uturnd (default)  $UTURND, else .build/release/uturnd, else .build/debug/uturnd.
                    Missing binary -> every server test is skipped.
  coturn            Debian's /usr/bin/turnserver (4.6.1) as a stand-in
                    ($TURNSERVER overrides the path).

Other knobs: UTURN_E2E_WORKERS (uturnd --workers, default 2),
UTURN_E2E_EXTRA_ARGS (appended to the server command line, shell-split),
UTURN_E2E_START_TIMEOUT (seconds to wait for readiness, default 10).

Everything listens on 127.0.0.1 (and ::1 when the machine has it) on ports
picked at random; 3478/5349 are never used. Servers and peers are started by
these fixtures and stopped by their own PID at teardown.

coturn 4.6.1 quirks handled here (see also test_uclient.py):
  * With --use-auth-secret it rejects the static users given by -u ("ERROR:
    Cannot complete Allocation"), so the REST server is a separate instance
    without -u.
  * An unknown option makes it exit (status 255), but a bad value does not:
    `--max-port abc` or an unusable `-L 127.0.0.9.9` ("ERROR: Cannot add a
    listener address") leave it running. So readiness is "answers a STUN
    Binding on every listening address", not "process still alive".
  * It binds an RFC 5780 alternate port (listening port + 1) unless
    --no-rfc5780 is given; it writes /var/run/turnserver.pid and opens the
    SQLite DB /var/lib/turn/turndb unless --pidfile/--db point elsewhere
    (shared paths between parallel instances), and needs -n to ignore
    /etc/turnserver.conf.
  * It refuses loopback peers (403 Forbidden IP) without --allow-loopback-peers.
  * --user-quota/--total-quota default to 0 (unlimited) in 4.6.1, so `-m 5`
    needs no quota flags; we pass none.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import stun

REPO = Path(__file__).resolve().parents[2]
REALM = "uturn.e2e"
USER, PASSWORD = "demo", "secret"
REST_SECRET = "e2e-rest-secret"
FORBIDDEN_PORTS = {3478, 3479, 5349, 5350}

_handed_out: set[int] = set()


# --------------------------------------------------------------------------
# ports

def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


HAS_IPV6 = has_ipv6()
LOOPBACKS = ["127.0.0.1"] + (["::1"] if HAS_IPV6 else [])


def _can_bind(host: str, port: int, kind: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port(span: int = 2, hosts: list[str] | None = None) -> int:
    """A port P such that P..P+span-1 are free for UDP and TCP on every loopback
    host. P is drawn from 10000-19999: below the relay ranges (20000-32000,
    free_port_range) and below the kernel's ephemeral range (32768+), so no
    client socket opened between this check and the server's bind can be
    handed the same port (a metrics port once lost that race in CI).
    The span covers helpers that also bind P+1 (turnutils_peer, coturn's
    RFC 5780 alternate port)."""
    hosts = hosts or LOOPBACKS
    for _ in range(200):
        port = random.randrange(10000, 20000 - span)
        ports = range(port, port + span)
        if port + span > 65535 or _handed_out & set(ports) or FORBIDDEN_PORTS & set(ports):
            continue
        if all(_can_bind(h, p, k) for h in hosts for p in ports
               for k in (socket.SOCK_DGRAM, socket.SOCK_STREAM)):
            _handed_out.update(ports)
            return port
    raise RuntimeError("no free loopback port found")


def free_port_range(count: int = 200) -> tuple[int, int]:
    """A relay port range below the Linux ephemeral range (32768+), so relay
    sockets do not collide with ports the kernel hands to clients. Ranges are
    whole blocks of `count` ports tried in order from a random one, so a
    session with many servers still finds room (random ranges collided)."""
    lo_min, hi_max = 20000, 32000
    blocks = (hi_max - lo_min) // count
    first = random.randrange(blocks)
    # First pass: blocks never handed out. Second pass (a long session has
    # handed out every block): blocks whose ports are free again, since
    # the servers that had them have stopped; should one still run, a
    # server skips relay ports that are taken, so sharing is harmless.
    for fresh_only in (True, False):
        for k in range(blocks):
            lo = lo_min + ((first + k) % blocks) * count
            ports = set(range(lo, lo + count))
            if fresh_only and _handed_out & ports:
                continue
            # Sample: a server skips individual busy ports, we only avoid busy areas.
            if all(_can_bind("127.0.0.1", p, socket.SOCK_DGRAM) for p in range(lo, lo + count, 7)):
                _handed_out.update(ports)
                return lo, lo + count - 1
    raise RuntimeError("no free relay port range found")


# --------------------------------------------------------------------------
# processes

def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Stop a process we started, by its PID only."""
    if proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass


def server_kind() -> str:
    kind = os.environ.get("UTURN_E2E_SERVER", "uturnd").strip().lower()
    if kind not in ("uturnd", "coturn"):
        raise pytest.UsageError(f"UTURN_E2E_SERVER must be uturnd or coturn, not {kind!r}")
    return kind


def server_binary(kind: str) -> str | None:
    if kind == "coturn":
        path = os.environ.get("TURNSERVER") or shutil.which("turnserver") or "/usr/bin/turnserver"
        return path if os.access(path, os.X_OK) else None
    candidates = [os.environ["UTURND"]] if os.environ.get("UTURND") else [
        str(REPO / ".build/release/uturnd"), str(REPO / ".build/debug/uturnd")]
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package coturn)")
    return path


@dataclass
class TurnServer:
    kind: str
    port: int
    hosts: list[str]
    relay_range: tuple[int, int]
    auth: str                      # "lt" (demo:secret) or "rest" (shared secret)
    allow_loopback: bool
    argv: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    realm: str = REALM
    user: str = USER
    password: str = PASSWORD
    secret: str = REST_SECRET
    extra: dict = field(default_factory=dict)

    def addr(self, host: str = "127.0.0.1") -> tuple[str, int]:
        return host, self.port

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def output_tail(self, n: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-n:])


def write_self_signed(workdir: Path) -> tuple[Path, Path]:
    """A throwaway EC P-256 certificate for CN=localhost, valid one day."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    workdir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def build_argv(kind: str, binary: str, port: int, hosts: list[str], relay: tuple[int, int],
               auth: str, allow_loopback: bool, workdir: Path,
               tls: tuple[Path, Path, int] | None = None) -> list[str]:
    if kind == "coturn":
        argv = [binary, "-n", "--no-cli", "--no-dtls", "--no-rfc5780",
                "-p", str(port), "--min-port", str(relay[0]), "--max-port", str(relay[1]),
                "-r", REALM, "--lt-cred-mech",
                "--log-file", "stdout", "--simple-log",
                "--pidfile", str(workdir / "turnserver.pid"), "--db", str(workdir / "turndb")]
        for h in hosts:
            argv += ["-L", h, "-E", h]
        if auth == "rest":
            # quirk: with --use-auth-secret coturn 4.6.1 refuses -u users, so none.
            argv += ["--use-auth-secret", "--static-auth-secret", REST_SECRET]
        else:
            argv += ["-u", f"{USER}:{PASSWORD}"]
        if allow_loopback:
            argv.append("--allow-loopback-peers")
        if tls is None:
            argv.append("--no-tls")
        else:
            argv += ["--cert", str(tls[0]), "--pkey", str(tls[1]), "--tls-listening-port", str(tls[2])]
    else:
        argv = [binary]
        for h in hosts:
            argv += ["--listening-ip", h]
        argv += ["--listening-port", str(port)]
        for h in hosts:
            argv += ["--relay-ip", h]
        argv += ["--min-port", str(relay[0]), "--max-port", str(relay[1]),
                 "--realm", REALM, "--lt-cred-mech", "--user", f"{USER}:{PASSWORD}",
                 "--workers", os.environ.get("UTURN_E2E_WORKERS", "2")]
        if auth == "rest":
            argv += ["--use-auth-secret", "--static-auth-secret", REST_SECRET]
        if allow_loopback:
            argv.append("--allow-loopback-peers")
        if tls is not None:
            argv += ["--cert", str(tls[0]), "--pkey", str(tls[1]), "--tls-listening-port", str(tls[2])]
    argv += shlex.split(os.environ.get("UTURN_E2E_EXTRA_ARGS", ""))
    return with_backend(argv) if kind == "uturnd" else argv


def with_backend(argv: list[str]) -> list[str]:
    """uturnd's command line for UTURN_E2E_BACKEND: io_uring or epoll
    (--backend), or blocked-eperm / blocked-enosys: the default --backend
    auto under a seccomp filter that refuses io_uring as Docker (EPERM) or
    Podman (ENOSYS) does, so auto must fall back to epoll (seccomp_launcher.py)."""
    backend = os.environ.get("UTURN_E2E_BACKEND", "")
    if "--backend" in argv:
        return argv  # a test that names its backend keeps it
    if backend in ("io_uring", "epoll", "auto"):
        return argv + ["--backend", backend]
    if backend.startswith("blocked-"):
        return seccomp_launcher_argv(backend.removeprefix("blocked-").upper()) + argv
    if backend:
        raise ValueError(f"UTURN_E2E_BACKEND={backend}: want io_uring, epoll, auto, blocked-eperm or blocked-enosys")
    return argv


def seccomp_launcher_argv(errno_name: str) -> list[str]:
    """The prefix that runs a command with io_uring refused with `errno_name`."""
    import sys
    return [sys.executable, str(Path(__file__).resolve().parent / "seccomp_launcher.py"),
            "--errno", errno_name, "--"]


def start_server(workdir: Path, *, auth: str = "lt", allow_loopback: bool = True,
                 tls: bool = False) -> TurnServer:
    kind = server_kind()
    binary = server_binary(kind)
    if binary is None:
        if kind == "uturnd":
            pytest.skip("uturnd not built (no $UTURND, .build/release/uturnd or "
                        ".build/debug/uturnd); run `swift build -c release` or set "
                        "UTURN_E2E_SERVER=coturn")
        pytest.skip("coturn's turnserver not installed (apt-get install coturn)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(span=2)
    relay = free_port_range()
    tls_args = None
    if tls:
        cert, key = write_self_signed(workdir)
        tls_args = (cert, key, free_port(span=1))
    argv = build_argv(kind, binary, port, LOOPBACKS, relay, auth, allow_loopback, workdir, tls_args)
    log = workdir / "server.log"
    srv = TurnServer(kind, port, list(LOOPBACKS), relay, auth, allow_loopback, argv, log)
    if tls_args:
        srv.extra.update(cert=tls_args[0], key=tls_args[1], tls_port=tls_args[2])
    with open(log, "wb") as out:
        srv.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=workdir)
    timeout = float(os.environ.get("UTURN_E2E_START_TIMEOUT", "10"))
    deadline = time.monotonic() + timeout
    pending = list(srv.hosts)
    while pending:
        if srv.proc.poll() is not None:
            pytest.fail(f"{kind} exited with status {srv.proc.returncode} before it was "
                        f"ready\ncommand: {shlex.join(argv)}\noutput:\n{srv.output_tail()}",
                        pytrace=False)
        if time.monotonic() > deadline:
            _stop(srv.proc)
            pytest.fail(f"{kind} did not answer a STUN Binding on {pending[0]} port {port} "
                        f"within {timeout:.0f}s\ncommand: {shlex.join(argv)}\n"
                        f"output:\n{srv.output_tail()}", pytrace=False)
        if stun.binding((pending[0], port), timeout=0.3) is not None:
            pending.pop(0)
    return srv


@pytest.fixture(scope="session")
def server_factory(tmp_path_factory):
    """Start extra servers with other settings; all are stopped at session end."""
    started: list[TurnServer] = []

    def make(name: str, **kw) -> TurnServer:
        srv = start_server(tmp_path_factory.mktemp(name), **kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        _stop(srv.proc)


@pytest.fixture(scope="session")
def turn_server(server_factory) -> TurnServer:
    """Long-term credentials demo:secret, loopback peers allowed."""
    return server_factory("turn-lt")


@pytest.fixture(scope="session")
def rest_server(server_factory) -> TurnServer:
    """TURN REST API shared secret (time-limited usernames), loopback peers allowed."""
    return server_factory("turn-rest", auth="rest")


@pytest.fixture(scope="session")
def closed_server(server_factory) -> TurnServer:
    """Like turn_server but WITHOUT --allow-loopback-peers: 127.0.0.1 peers are denied."""
    return server_factory("turn-closed", allow_loopback=False)


@dataclass
class Peer:
    port: int
    hosts: list[str]
    proc: subprocess.Popen
    log: Path


@pytest.fixture(scope="session")
def udp_peer(tmp_path_factory) -> Peer:
    """turnutils_peer: a UDP echo peer on 127.0.0.1 (and ::1). It binds PORT and
    PORT+1 (uclient's "RTCP" peer), hence a span of 2."""
    binary = require_tool("turnutils_peer")
    port = free_port(span=2)
    workdir = tmp_path_factory.mktemp("peer")
    argv = [binary, "-p", str(port)]
    for h in LOOPBACKS:
        argv += ["-L", h]
    log = workdir / "peer.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir)
    # Ready when it echoes a datagram.
    deadline = time.monotonic() + 5
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                pytest.fail(f"turnutils_peer did not start:\n{log.read_text(errors='replace')}",
                            pytrace=False)
            s.sendto(b"ping", ("127.0.0.1", port))
            try:
                if s.recvfrom(100)[0] == b"ping":
                    break
            except OSError:
                time.sleep(0.05)
    yield Peer(port, list(LOOPBACKS), proc, log)
    _stop(proc)


def pytest_configure(config):
    # Tests that do not depend on which completion backend uturnd runs
    # (stores, admin API, configuration parsing, datagrams the kernel fast
    # path carries) carry this marker; the
    # second e2e pass in scripts/test (epoll, io_uring refused) skips them.
    config.addinivalue_line(
        "markers", "backend_independent: the result cannot depend on io_uring vs epoll, or "
                   "its backend-dependent part is covered by a test run on both passes; "
                   "run once, not again on the epoll pass")
