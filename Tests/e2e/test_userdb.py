"""Users, REST secrets and peer ranges from a credential database: coturn's
SQLite file (`--userdb`), Redis (`--redis-userdb`) and PostgreSQL
(`--psql-userdb`), written both by uturnadmin and by coturn's own turnadmin.

uturnd's credential thread polls the database once a second and hands the
workers a new configuration when it changed, so additions, password changes
and deletions take effect without SIGHUP (every wait here is bounded at a
few seconds). A name the workers do not know is looked up on its own while
the request waits, so a user added just before connecting logs in at once. A database that stops keeps the users last read working and
a relaying session relaying; it is logged once, and a restarted database
is picked up again without a restart of uturnd.

Real servers only: redis-server and PostgreSQL from Debian's packages run in
temporary directories on free loopback ports and are stopped by PID.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pwd
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import stun
from conftest import _stop, free_port, require_tool, server_binary, server_kind
from test_daemon import REALM, allocate, allocate_code, config_text, daemons, start_daemon, wait_for_code  # noqa: F401
from test_metrics import scrape_until
from test_uclient import assert_all_echoed, run_uclient

pytestmark = [
    pytest.mark.backend_independent,
    pytest.mark.skipif(server_kind() != "uturnd", reason="uturnd's user databases"),
]

# The credential thread polls once a second; allow for a slow machine.
CHANGE_TIMEOUT = 5.0


def uturnadmin() -> str:
    uturnd = server_binary("uturnd")
    if uturnd is None:
        pytest.skip("uturnd not built")
    path = Path(uturnd).parent / "uturnadmin"
    if not path.exists():
        pytest.skip(f"{path} not built")
    return str(path)


def admin(*args: str) -> str:
    r = subprocess.run([uturnadmin(), *args], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"uturnadmin {' '.join(args)}: {r.stderr}"
    return r.stdout


def coturn_admin(*args: str) -> None:
    binary = require_tool("turnadmin")
    r = subprocess.run([binary, *args], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"turnadmin {' '.join(args)}: {r.stdout}{r.stderr}"


def rest_password(secret: str, username: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()


class Uclient:
    """What run_uclient needs from a server."""

    def __init__(self, port: int, user: str, password: str, d):
        self.port, self.user, self.password, self.secret = port, user, password, ""
        self.d = d

    def output_tail(self, n: int = 40) -> str:
        return "\n".join(self.d.output().splitlines()[-n:])


# --------------------------------------------------------------------------
# SQLite

def test_sqlite_users_from_turnadmin_and_uturnadmin(tmp_path, daemons, udp_peer):
    db = tmp_path / "turndb"
    # coturn's own tool creates the file and one user; ours adds another and a secret.
    coturn_admin("-a", "-b", str(db), "-u", "cot", "-r", REALM, "-p", "cot-pw")
    admin("-a", "-b", str(db), "-u", "ut", "-r", REALM, "-p", "ut-pw")
    admin("-a", "-b", str(db), "-u", "elsewhere", "-r", "other.realm", "-p", "x")
    admin("-s", "db-secret", "-b", str(db), "-r", REALM)
    assert admin("-l", "-b", str(db), "-r", REALM).split() == ["cot[uturn.daemon]", "ut[uturn.daemon]"]

    d = start_daemon(tmp_path, config_text(), "--userdb", str(db), "--use-auth-secret")
    daemons.append(d)
    assert "user database SQLite" in d.output()
    for user, pw in (("cot", "cot-pw"), ("ut", "ut-pw")):
        r = run_uclient(Uclient(d.port, user, pw, d), udp_peer, n=10)
        assert_all_echoed(r, 10)
    assert allocate_code(d, "elsewhere", "x") == 401      # another realm's user
    rest_user = f"{int(time.time()) + 600}:app"
    assert allocate_code(d, rest_user, rest_password("db-secret", rest_user)) == 0

    # Changes, no SIGHUP: add, new password, delete, secret rotation.
    admin("-a", "-b", str(db), "-u", "late", "-r", REALM, "-p", "late-pw")
    wait_for_code(d, "late", "late-pw", 0, timeout=CHANGE_TIMEOUT)
    coturn_admin("-a", "-b", str(db), "-u", "ut", "-r", REALM, "-p", "ut-pw2")
    wait_for_code(d, "ut", "ut-pw", 401, timeout=CHANGE_TIMEOUT)
    assert allocate_code(d, "ut", "ut-pw2") == 0
    coturn_admin("-d", "-b", str(db), "-u", "cot", "-r", REALM)
    wait_for_code(d, "cot", "cot-pw", 401, timeout=CHANGE_TIMEOUT)
    admin("-X", "db-secret", "-b", str(db), "-r", REALM)
    admin("-s", "db-secret-2", "-b", str(db), "-r", REALM)
    wait_for_code(d, rest_user, rest_password("db-secret", rest_user), 401, timeout=CHANGE_TIMEOUT)
    assert allocate_code(d, rest_user, rest_password("db-secret-2", rest_user)) == 0
    # SIGHUP keeps the database part: a new static user joins the database's.
    d.config.write_text(config_text("st:st-pw"))
    mark = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_for_log("SIGHUP: configuration reloaded", after=mark)
    wait_for_code(d, "st", "st-pw", 0)
    assert allocate_code(d, "late", "late-pw") == 0
    assert "users 2 → 3 (+late)" in d.output()
    assert "ut-pw" not in d.output() and "db-secret" not in d.output()


def test_sqlite_user_added_just_before_connecting_is_looked_up(tmp_path, daemons):
    db = tmp_path / "turndb"
    admin("-a", "-b", str(db), "-u", "first", "-r", REALM, "-p", "pw")
    metrics_port = free_port(span=1, hosts=["127.0.0.1"])
    d = start_daemon(tmp_path, config_text(), "--userdb", str(db), "--metrics-listen", f"127.0.0.1:{metrics_port}")
    daemons.append(d)
    # No wait between adding and connecting: the first Allocate must succeed
    # (the poll is a second apart; the on-miss lookup answers at once).
    users = [f"fresh{i}" for i in range(3)]
    for user in users:
        admin("-a", "-b", str(db), "-u", user, "-r", REALM, "-p", f"{user}-pw")
        assert allocate_code(d, user, f"{user}-pw") == 0, d.output()
    # Unknown: 401 after the lookup, and again (same client, so the same
    # worker) from that worker's short memory of unknown names.
    c = stun.TurnClient(d.addr, "nobody", "x")
    try:
        for _ in range(2):
            r = c.allocate()
            assert r.cls != stun.SUCCESS and r.error_code == 401
    finally:
        c.close()
    # A known user with a wrong password is refused without a lookup.
    assert allocate_code(d, "first", "wrong") == 401

    def series(samples, result):
        return samples.get(f'uturn_credential_lookups_total{{result="{result}"}}', 0.0)

    samples = scrape_until(metrics_port, lambda s: series(s, "unknown") >= 1 and series(s, "found") >= 1)
    # The poll may find a user first now and then (it runs once a second); not all three.
    assert 1 <= series(samples, "found") <= 3, samples
    assert series(samples, "unknown") == 1, samples      # the second "nobody" was remembered
    assert series(samples, "timeout") == 0 and series(samples, "refused") == 0, samples


def test_sqlite_denied_peer_range_from_the_database(tmp_path, daemons):
    db = tmp_path / "turndb"
    admin("-a", "-b", str(db), "-u", "u", "-r", REALM, "-p", "pw")
    d = start_daemon(tmp_path, config_text(), "--userdb", str(db))
    daemons.append(d)
    c, resp = allocate(d, "u", "pw")
    try:
        assert resp.cls == stun.SUCCESS
        assert c.create_permission(("127.0.0.1", 9)).cls == stun.SUCCESS
        admin("--add-denied-peer=127.0.0.0/8", "-b", str(db), "-r", REALM)
        deadline = time.monotonic() + CHANGE_TIMEOUT
        while True:
            r = c.create_permission(("127.0.0.1", 9))
            if r.cls != stun.SUCCESS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.error_code == 403, d.output()
    finally:
        c.close()


def test_sqlite_realm_options_set_max_bps_at_start_and_quotas_while_running(tmp_path, daemons):
    """coturn's realm options (turn_realm_option, `uturnadmin -g` or
    `turnadmin -g`): max-bps and user-quota are taken at start and followed
    while uturnd runs; only turning max-bps off (a traffic limit on or off)
    waits for a restart, and the log says so."""
    db = tmp_path / "turndb"
    admin("-a", "-b", str(db), "-u", "u", "-r", REALM, "-p", "pw")
    admin("-g", "-b", str(db), "-r", REALM, "--user-quota", "1", "--max-bps", "2000")
    metrics_port = free_port(span=1, hosts=["127.0.0.1"])
    d = start_daemon(tmp_path, config_text(), "--userdb", str(db), "--metrics-listen", f"127.0.0.1:{metrics_port}")
    daemons.append(d)
    assert "realm options max-bps=2000 user-quota=1" in d.output(), d.output()
    peer = stun.EchoPeer("127.0.0.1")
    c, resp = allocate(d, "u", "pw")
    try:
        assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason)
        # user-quota 1 from the database: the user's second allocation gets 486.
        assert allocate_code(d, "u", "pw") == 486
        # max-bps 2,000 bytes/s from the database: 40 kB sent at once
        # cannot all pass (the flag's default is no limit).
        assert c.channel_bind(0x4000, peer.addr).cls == stun.SUCCESS
        for _ in range(40):
            c.send_channel_data(0x4000, bytes(1000))
        dropped = 'uturn_policy_dropped_total{reason="bps"}'
        s = scrape_until(metrics_port, lambda s: s.get(dropped, 0) > 0)
        assert s.get(dropped, 0) > 0, s
        # coturn's turnadmin writes the same table: a quota of 2 is followed
        # without a restart, and the first allocation is kept.
        coturn_admin("-g", "-b", str(db), "-r", REALM, "--user-quota", "2")
        wait_for_code(d, "u", "pw", 0, timeout=CHANGE_TIMEOUT)
        assert "quotas now 2 per user" in d.output(), d.output()
        assert c.refresh(600).cls == stun.SUCCESS
        # A new max-bps applies to the allocation already made: at 1 MB/s
        # (a burst of 100 kB) the same 40 kB all pass, both ways.
        admin("-g", "-b", str(db), "-r", REALM, "--max-bps", "1000000")
        assert stun.wait_until(lambda: "max-bps now 1000000 (was 2000)" in d.output(), timeout=CHANGE_TIMEOUT,
                               step=0.2), d.output()
        time.sleep(0.2)  # the workers take it at their next wake-up
        while stun.recv_nowait(c.sock) is not None:  # echoes of the first burst
            pass
        before = scrape_until(metrics_port, lambda s: True).get(dropped, 0)
        for i in range(40):
            c.send_channel_data(0x4000, bytes([i]) * 1000)
        got = [c.recv_channel_data(timeout=2.0) for _ in range(40)]
        assert sorted(p[1][0] for p in got if p) == list(range(40)), "not every packet came back"
        assert scrape_until(metrics_port, lambda s: True).get(dropped, 0) == before
        # Turning it off would change which limits are on: that waits for a restart.
        admin("-g", "-b", str(db), "-r", REALM, "--max-bps", "0")
        assert stun.wait_until(lambda: "stays until a restart" in d.output(), timeout=CHANGE_TIMEOUT, step=0.2), \
            d.output()
    finally:
        c.close()
        peer.close()


# --------------------------------------------------------------------------
# Redis

def start_redis(tmp: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed")
    port = free_port(span=1, hosts=["127.0.0.1"])
    return restart_redis(tmp, port), port


def restart_redis(tmp: Path, port: int) -> subprocess.Popen:
    # `save 3600 1`: a SIGTERM writes the data set, so a restart keeps it.
    argv = [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
            "--save", "3600 1", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"]
    with open(tmp / "redis.log", "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            return proc
        time.sleep(0.05)
    _stop(proc)
    pytest.fail(f"redis-server did not start:\n{(tmp / 'redis.log').read_text()}")


def test_redis_users_changes_and_outage(tmp_path, daemons):
    proc, port = start_redis(tmp_path)
    try:
        conn = f"ip=127.0.0.1 dbname=0 port={port}"
        coturn_admin("-a", "-N", conn, "-u", "cot", "-r", REALM, "-p", "cot-pw")
        admin("-a", "-N", conn, "-u", "ut", "-r", REALM, "-p", "ut-pw")
        # coturn's plain-password form is read too.
        subprocess.run(["redis-cli", "-p", str(port), "set", f"turn/realm/{REALM}/user/plain/password", "plain-pw"],
                       check=True, capture_output=True)
        d = start_daemon(tmp_path, config_text(), "--redis-userdb", conn)
        daemons.append(d)
        assert allocate_code(d, "cot", "cot-pw") == 0
        assert allocate_code(d, "ut", "ut-pw") == 0
        assert allocate_code(d, "plain", "plain-pw") == 0
        admin("-a", "-N", conn, "-u", "late", "-r", REALM, "-p", "late-pw")
        wait_for_code(d, "late", "late-pw", 0, timeout=CHANGE_TIMEOUT)
        admin("-d", "-N", conn, "-u", "cot", "-r", REALM)
        wait_for_code(d, "cot", "cot-pw", 401, timeout=CHANGE_TIMEOUT)
        # A realm option under coturn's Redis key: total-quota 1 holds the
        # server to one allocation until it is lifted (0: no quota).
        coturn_admin("-g", "-N", conn, "-r", REALM, "--total-quota", "1")
        hold, r = allocate(d, "ut", "ut-pw")
        try:
            assert r.cls == stun.SUCCESS
            wait_for_code(d, "late", "late-pw", 486, timeout=CHANGE_TIMEOUT)
            admin("-g", "-N", conn, "-r", REALM, "--total-quota", "0")
            wait_for_code(d, "late", "late-pw", 0, timeout=CHANGE_TIMEOUT)
            assert hold.refresh(0).cls == stun.SUCCESS
        finally:
            hold.close()

        # A relaying session across the outage.
        peer = stun.udp_socket("127.0.0.1")
        peer.settimeout(2)
        c, resp = allocate(d, "ut", "ut-pw")
        try:
            assert resp.cls == stun.SUCCESS
            assert c.channel_bind(0x4001, peer.getsockname()[:2]).cls == stun.SUCCESS
            _stop(proc)
            d.wait_for_log("unavailable", timeout=CHANGE_TIMEOUT)
            for i in range(5):
                c.send_channel_data(0x4001, f"during-outage-{i}".encode())
                data, _ = peer.recvfrom(2048)
                assert data == f"during-outage-{i}".encode()
            assert allocate_code(d, "ut", "ut-pw") == 0          # known: still works
            assert allocate_code(d, "nobody", "x") == 401         # unknown: refused
            time.sleep(2)
            assert d.output().count("unavailable") == 1, d.output()   # logged once per outage

            proc = restart_redis(tmp_path, port)
            d.wait_for_log("reachable again", timeout=CHANGE_TIMEOUT)
            admin("-a", "-N", conn, "-u", "after", "-r", REALM, "-p", "after-pw")
            wait_for_code(d, "after", "after-pw", 0, timeout=CHANGE_TIMEOUT)
            c.send_channel_data(0x4001, b"after-outage")
            assert peer.recvfrom(2048)[0] == b"after-outage"
        finally:
            c.close()
            peer.close()
    finally:
        _stop(proc)


def test_redis_hung_store_answers_unknown_users_401_after_timeout(tmp_path, daemons):
    """A database that accepts but does not answer (a stopped redis-server;
    uturnd gives up on a Redis reply after 2 s): two unknown names asked at
    once are both answered 401 late, not never; the second waits behind the
    first one's 2 s query, so its worker times it out (2 s, on the 1 s tick)
    before the database could answer. Known users keep working meanwhile."""
    proc, port = start_redis(tmp_path)
    stopped = False
    try:
        conn = f"ip=127.0.0.1 dbname=0 port={port}"
        admin("-a", "-N", conn, "-u", "known", "-r", REALM, "-p", "known-pw")
        metrics_port = free_port(span=1, hosts=["127.0.0.1"])
        d = start_daemon(tmp_path, config_text(), "--redis-userdb", conn,
                         "--metrics-listen", f"127.0.0.1:{metrics_port}")
        daemons.append(d)
        proc.send_signal(signal.SIGSTOP)
        stopped = True

        def ask(name):
            c = stun.TurnClient(d.addr, name, "x")
            try:
                attrs = [(stun.REQUESTED_TRANSPORT, bytes([stun.UDP_TRANSPORT, 0, 0, 0]))]
                started = time.monotonic()
                r = c.request(stun.ALLOCATE, attrs, timeout=10)
                return r.error_code, time.monotonic() - started
            finally:
                c.close()

        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(ask, ["ghost1", "ghost2"]))
        for code, waited in results:
            assert code == 401 and waited >= 1.5, results   # answered late, after the wait
        assert allocate_code(d, "known", "known-pw") == 0

        def series(samples, result):
            return samples.get(f'uturn_credential_lookups_total{{result="{result}"}}', 0.0)

        samples = scrape_until(metrics_port, lambda s: series(s, "timeout") >= 1)
        assert series(samples, "timeout") >= 1, {k: v for k, v in samples.items() if "lookup" in k}
        assert series(samples, "timeout") + series(samples, "error") == 2, samples
    finally:
        if stopped:
            proc.send_signal(signal.SIGCONT)
        _stop(proc)


# --------------------------------------------------------------------------
# PostgreSQL

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture
def pg_dir():
    """A directory outside pytest's root-only tree, so `nobody` can reach it."""
    import tempfile
    path = Path(tempfile.mkdtemp(prefix="uturn-pg-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_postgres_users_and_changes(tmp_path, pg_dir, daemons):
    if not (PG_BIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 server binaries not installed")
    # postgres refuses to run as root: run it as nobody (set by Popen itself, so
    # the PID we signal is postgres's own) in a directory nobody owns.
    as_user: dict = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        as_user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    data = pg_dir / "pgdata"
    data.mkdir()
    if as_user:
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
    r = subprocess.run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "turn", "--auth=trust", "-E", "UTF8"],
                       capture_output=True, text=True, timeout=60, cwd=pg_dir, **as_user)
    assert r.returncode == 0, r.stdout + r.stderr
    port = free_port(span=1, hosts=["127.0.0.1"])
    conn = f"host=127.0.0.1 port={port} dbname=postgres user=turn"

    def start_postgres() -> subprocess.Popen:
        with open(pg_dir / "pg.log", "ab") as out:
            p = subprocess.Popen([str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port),
                                  "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}"],
                                 stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=pg_dir,
                                 **as_user)
        deadline = time.monotonic() + 15
        while True:
            r = subprocess.run([uturnadmin(), "-l", "-e", conn], capture_output=True, text=True)
            if r.returncode == 0:
                return p
            if time.monotonic() > deadline:
                stop_postgres(p)
                pytest.fail((pg_dir / "pg.log").read_text() + r.stderr)
            time.sleep(0.2)

    def stop_postgres(p: subprocess.Popen) -> None:
        p.send_signal(signal.SIGINT)   # postgres's fast shutdown, by PID
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _stop(p)

    proc = start_postgres()
    try:
        admin("-a", "-e", conn, "-u", "pgu", "-r", REALM, "-p", "pgu-pw")
        admin("-s", "pg-secret", "-e", conn, "-r", REALM)
        d = start_daemon(tmp_path, config_text(), "--psql-userdb", conn + " password=unused", "--use-auth-secret")
        daemons.append(d)
        assert "password=unused" not in d.output()
        assert allocate_code(d, "pgu", "pgu-pw") == 0
        rest_user = f"{int(time.time()) + 600}:app"
        assert allocate_code(d, rest_user, rest_password("pg-secret", rest_user)) == 0
        admin("-a", "-e", conn, "-u", "pgu", "-r", REALM, "-p", "pgu-pw2")
        wait_for_code(d, "pgu", "pgu-pw2", 0, timeout=CHANGE_TIMEOUT)
        admin("-d", "-e", conn, "-u", "pgu", "-r", REALM)
        wait_for_code(d, "pgu", "pgu-pw2", 401, timeout=CHANGE_TIMEOUT)
        # A realm option (turn_realm_option): total-quota 1 with an
        # allocation held refuses the next with 486; 0 lifts it.
        hold, r = allocate(d, rest_user, rest_password("pg-secret", rest_user))
        try:
            assert r.cls == stun.SUCCESS
            admin("-g", "-e", conn, "-r", REALM, "--total-quota", "1")
            wait_for_code(d, rest_user, rest_password("pg-secret", rest_user), 486, timeout=CHANGE_TIMEOUT)
            admin("-g", "-e", conn, "-r", REALM, "--total-quota", "0")
            wait_for_code(d, rest_user, rest_password("pg-secret", rest_user), 0, timeout=CHANGE_TIMEOUT)
            assert hold.refresh(0).cls == stun.SUCCESS
        finally:
            hold.close()

        # Down: known users keep working, the rest get 401; back: changes flow again.
        admin("-a", "-e", conn, "-u", "kept", "-r", REALM, "-p", "kept-pw")
        wait_for_code(d, "kept", "kept-pw", 0, timeout=CHANGE_TIMEOUT)
        stop_postgres(proc)
        d.wait_for_log("unavailable", timeout=CHANGE_TIMEOUT)
        assert allocate_code(d, "kept", "kept-pw") == 0
        assert allocate_code(d, "nobody", "x") == 401
        proc = start_postgres()
        d.wait_for_log("reachable again", timeout=CHANGE_TIMEOUT)
        admin("-a", "-e", conn, "-u", "after", "-r", REALM, "-p", "after-pw")
        wait_for_code(d, "after", "after-pw", 0, timeout=CHANGE_TIMEOUT)
        assert d.output().count("unavailable") == 1, d.output()
    finally:
        stop_postgres(proc)
