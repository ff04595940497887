"""RFC 5780 (NAT behaviour discovery) against the real uturnd, listening on
127.0.0.1 and 127.0.0.2: Debian's turnutils_natdiscovery (coturn's) runs its
mapping and filtering tests (CHANGE-REQUEST for another IP, another port,
both; OTHER-ADDRESS and RESPONSE-ORIGIN read back) and reaches a verdict;
with --no-rfc5780 it gets none. The attribute codecs and each server rule
are unit-tested (Tests/TURNTests/NATDiscoveryTests.swift).
"""

from __future__ import annotations

import subprocess
import time

import pytest

import stun
from conftest import _stop, free_port, free_port_range, require_tool, server_binary, server_kind

pytestmark = pytest.mark.backend_independent

HOSTS = ["127.0.0.1", "127.0.0.2"]


def _can_use_127_0_0_2() -> bool:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.2", 0))
            return True
        except OSError:
            return False


@pytest.fixture
def launch(tmp_path):
    if server_kind() != "uturnd":
        pytest.skip("RFC 5780 is checked against uturnd (the coturn stand-in runs with --no-rfc5780)")
    if not _can_use_127_0_0_2():
        pytest.skip("127.0.0.2 is not usable on this machine")
    binary = server_binary("uturnd")
    if binary is None:
        pytest.skip("uturnd not built")
    procs = []

    def start(*extra: str) -> int:
        port = free_port(span=2, hosts=HOSTS)
        lo, hi = free_port_range()
        argv = [binary, "--listening-ip", HOSTS[0], "--listening-ip", HOSTS[1], "--listening-port", str(port),
                "--relay-ip", "127.0.0.1", "--min-port", str(lo), "--max-port", str(hi),
                "--user", "demo:secret", "--workers", "2", "--no-tcp", *extra]
        log = open(tmp_path / f"uturnd-{port}.log", "wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while stun.binding((HOSTS[1], port), timeout=0.3) is None:
            assert proc.poll() is None, (tmp_path / f"uturnd-{port}.log").read_text()
            assert time.monotonic() < deadline, "uturnd did not answer"
        return port

    yield start
    for p in procs:
        _stop(p)


def natdiscovery(port: int, *flags: str) -> str:
    binary = require_tool("turnutils_natdiscovery")
    proc = subprocess.run([binary, *flags, "-p", str(port), HOSTS[0]], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=30)
    return proc.stdout.decode(errors="replace")


def test_natdiscovery_mapping_and_filtering(launch):
    port = launch()
    out = natdiscovery(port, "-m", "-f")
    # Loopback has no NAT: both behaviours come out endpoint independent.
    assert "NAT with Endpoint Independent Mapping!" in out, out
    assert "NAT with Endpoint Independent Filtering!" in out, out
    # Every answer named where it came from and the other address.
    assert out.count("Response origin:") >= 4, out
    assert f"Other addr: : {HOSTS[1]}:{port + 1}" in out, out
    assert f"Response origin: : {HOSTS[1]}:{port + 1}" in out, out  # change IP and port


def test_natdiscovery_with_padding(launch):
    port = launch()
    out = natdiscovery(port, "-m", "-f", "-P")
    assert "NAT with Endpoint Independent Mapping!" in out, out
    assert "NAT with Endpoint Independent Filtering!" in out, out


def test_alternate_port_option(launch):
    alt = free_port(span=1, hosts=HOSTS)
    port = launch("--alt-listening-port", str(alt))
    out = natdiscovery(port, "-m")
    assert "NAT with Endpoint Independent Mapping!" in out, out
    assert f"Other addr: : {HOSTS[1]}:{alt}" in out, out


def test_no_rfc5780(launch):
    port = launch("--no-rfc5780")
    out = natdiscovery(port, "-m", "-f")
    assert "Endpoint Independent" not in out, out
    assert "Response origin" not in out, out
