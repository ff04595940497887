"""coturn's own test clients (turnutils_uclient, turnutils_stunclient) against
the server under test.

turnutils_uclient 4.6.1, as used here:
  -u USER -w PASSWORD    long-term credentials; -W SECRET instead of -w makes
                         it build REST API credentials ("<expiry>:<user>",
                         base64 HMAC-SHA1) itself
  -e HOST -r PORT        the peer (turnutils_peer, which echoes; uclient also
                         uses PORT+1 as an "RTCP" peer)
  -p PORT                server port; the last argument is the server address
  -n N -m M -l LEN       N messages per client, M clients, LEN-byte payloads
  -z MS                  interval between sends (default 20 ms)
  -c                     no RTCP allocation (one allocation per client)
  -X / -x                ask for an IPv4 / IPv6 relay address
  -s                     Send/Data indications (CreatePermission) instead of channels
Without -s each client sends ChannelBind twice for peer PORT+1 with a random
channel number, then twice for peer PORT with another random one. The number
is drawn from 0x4000..0x7FFF (coturn's STUN_VALID_CHANNEL, the RFC 5766
range), so about 3 runs in 4 use a number above RFC 8656's 0x4FFF; coturn
accepts them. A server that answers 400 to 0x5000+ fails these tests.

uclient exits 0 even when allocation or binding fails ("ERROR: Cannot complete
Allocation", "channel bind: error 403 (Forbidden IP)"), so the verdict comes
from its summary, printed (twice) at the end:
  N: : start_mclient: tot_send_msgs=150, tot_recv_msgs=150
  N: : Total lost packets 0 (0.000000%), total send dropped 0 (0.000000%)
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest

from conftest import HAS_IPV6, require_tool

UCLIENT_TIMEOUT = 40


@dataclass
class UclientResult:
    sent: int | None
    recv: int | None
    lost: int | None
    dropped: int | None
    output: str


def parse_uclient(output: str) -> UclientResult:
    # The final summary line has no "msz=" (the per-second progress lines do).
    totals = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", output)
    lost = re.findall(r"Total lost packets (\d+) \([^)]*\), total send dropped (\d+)", output)
    sent, recv = map(int, totals[-1]) if totals else (None, None)
    lost_n, dropped = map(int, lost[-1]) if lost else (None, None)
    return UclientResult(sent, recv, lost_n, dropped, output)


def run_uclient(server, peer, *, n=50, m=1, length=120, family=4, rest=False,
                extra=(), port=None) -> UclientResult:
    binary = require_tool("turnutils_uclient")
    host = "::1" if family == 6 else "127.0.0.1"
    argv = [binary, "-c", "-n", str(n), "-m", str(m), "-l", str(length), "-z", "5"]
    if peer is not None:  # -T (RFC 6062, client to client) takes no peer
        argv += ["-e", host, "-r", str(peer.port)]
    argv += ["-p", str(port or server.port), "-u", server.user]
    argv += ["-W", server.secret] if rest else ["-w", server.password]
    argv += ["-x" if family == 6 else "-X", *extra, host]
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=UCLIENT_TIMEOUT)
        out = proc.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:  # run() kills the child it started
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"turnutils_uclient ran over {UCLIENT_TIMEOUT}s\n{' '.join(argv)}\n"
                    f"{_tail(out)}\nserver:\n{server.output_tail()}", pytrace=False)
    result = parse_uclient(out)
    result.output = f"$ {' '.join(argv)}\n{_tail(out)}\n--- server log tail ---\n" \
                    f"{server.output_tail(30)}"
    return result


def _tail(text: str, n: int = 25) -> str:
    return "\n".join(text.splitlines()[-n:])


def assert_all_echoed(r: UclientResult, expected: int) -> None:
    assert "ERROR" not in r.output.split("--- server log tail ---")[0], r.output
    assert r.sent == expected, r.output
    assert r.recv == r.sent, r.output
    assert r.lost == 0, r.output
    assert r.dropped == 0, r.output


def test_uclient_channels(turn_server, udp_peer):
    """Allocate, ChannelBind, 50 ChannelData messages out and 50 echoes back."""
    r = run_uclient(turn_server, udp_peer, n=50)
    assert_all_echoed(r, 50)


def test_uclient_send_indications(turn_server, udp_peer):
    """-s: CreatePermission, Send indications out, Data indications back."""
    r = run_uclient(turn_server, udp_peer, n=50, extra=["-s"])
    assert_all_echoed(r, 50)


@pytest.mark.backend_independent  # REST credentials are checked in TURN; the relay path is the channel test's
def test_uclient_rest_api_credentials(rest_server, udp_peer):
    """-W: time-limited username + HMAC password against --static-auth-secret."""
    r = run_uclient(rest_server, udp_peer, n=30, rest=True)
    assert_all_echoed(r, 30)


def test_uclient_many_clients(turn_server, udp_peer):
    """-m 5: five concurrent allocations by the same user, 30 messages each."""
    r = run_uclient(turn_server, udp_peer, n=30, m=5)
    assert_all_echoed(r, 150)


@pytest.mark.skipif(not HAS_IPV6, reason="no ::1 on this machine")
def test_uclient_ipv6(turn_server, udp_peer):
    """Client, relay (-x: REQUESTED-ADDRESS-FAMILY IPv6) and peer all on ::1."""
    r = run_uclient(turn_server, udp_peer, n=30, family=6)
    assert_all_echoed(r, 30)


def test_uclient_denied_loopback_peer(closed_server, udp_peer):
    """Without --allow-loopback-peers the channel bind to 127.0.0.1 is refused
    (coturn: "channel bind: error 403 (Forbidden IP)") and nothing is relayed."""
    r = run_uclient(closed_server, udp_peer, n=10)
    assert not r.recv, r.output   # None (aborted before the summary) or 0
    assert "403" in r.output, r.output


def test_uclient_denied_loopback_peer_send(closed_server, udp_peer):
    """Same with -s: CreatePermission for 127.0.0.1 gets 403."""
    r = run_uclient(closed_server, udp_peer, n=10, extra=["-s"])
    assert not r.recv, r.output
    assert "403" in r.output, r.output


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_stunclient_binding(turn_server, host):
    """turnutils_stunclient gets its reflexive (mapped) address:
    "IPv4. UDP reflexive addr: 127.0.0.1:PORT" / "IPv6. UDP reflexive addr: ::1:PORT"."""
    if host == "::1" and not HAS_IPV6:
        pytest.skip("no ::1 on this machine")
    binary = require_tool("turnutils_stunclient")
    proc = subprocess.run([binary, "-p", str(turn_server.port), host],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    out = proc.stdout.decode(errors="replace")
    m = re.search(r"UDP reflexive addr: \[?([0-9a-fA-F.:]+?)\]?:(\d+)\s*$", out, re.M)
    assert m, out
    assert m.group(1) == host, out
    assert 0 < int(m.group(2)) < 65536, out
