"""uturn-bench cross-checked against an independent client (issue 6).

The same server and the same echo peer (turnutils_peer) get M clients x N
ChannelData messages, first from coturn's turnutils_uclient
(`-c -n N -m M -z 0`: Debian's 4.6.1 has no flood mode, -z 0 sends as fast
as its event loop goes), then from `uturn-bench flood --sessions M --count N`.
Each client's delivered count must equal what it says it sent, and the two
must agree. No timing is asserted. scripts/bench/uclient-crosscheck.sh does
the same by hand, with larger counts.

uturn-bench: $UTURN_BENCH, else .build/release/uturn-bench, else
.build/debug/uturn-bench; the test is skipped when none is built. With
UTURN_E2E_SERVER=coturn it runs against coturn's turnserver like the rest of
the suite.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import REPO, require_tool
from test_uclient import UCLIENT_TIMEOUT, parse_uclient

N, M, LENGTH = 200, 5, 120
# Messages in flight per uturn-bench session: turnutils_peer reads one
# datagram per syscall from a default-sized socket buffer, which a deeper
# flood overflows (that loss would be the peer's, not the relay's).
WINDOW = 8


def uturn_bench_binary() -> str:
    env = os.environ.get("UTURN_BENCH")
    candidates = [env] if env else [str(REPO / ".build/release/uturn-bench"), str(REPO / ".build/debug/uturn-bench")]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            usage = subprocess.run([path, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=10).stdout.decode(errors="replace")
            if "--count" not in usage:
                pytest.skip(f"{path} predates --count; rebuild it (swift build --product uturn-bench)")
            return path
    pytest.skip("uturn-bench not built (no $UTURN_BENCH, .build/release/uturn-bench or "
                ".build/debug/uturn-bench); run `swift build --product uturn-bench`")


@pytest.mark.backend_independent  # a check of the load generator, not of the relay's backend
def test_uclient_and_uturn_bench_deliver_the_same(turn_server, udp_peer, tmp_path):
    bench = uturn_bench_binary()
    uclient = require_tool("turnutils_uclient")
    total = N * M

    argv = [uclient, "-c", "-n", str(N), "-m", str(M), "-l", str(LENGTH), "-z", "0",
            "-e", "127.0.0.1", "-r", str(udp_peer.port), "-p", str(turn_server.port),
            "-u", turn_server.user, "-w", turn_server.password, "-X", "127.0.0.1"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=UCLIENT_TIMEOUT)
    u = parse_uclient(proc.stdout.decode(errors="replace"))
    where = f"$ {' '.join(argv)}\n" + "\n".join(u.output.splitlines()[-15:]) + \
        f"\n--- server log tail ---\n{turn_server.output_tail(20)}"
    assert u.sent == total, where
    assert u.recv == u.sent, where
    assert u.lost == 0, where

    summary_path = tmp_path / "bench.json"
    argv = [bench, "flood", "--server", f"127.0.0.1:{turn_server.port}", "--user", turn_server.user,
            "--password", turn_server.password, "--sessions", str(M), "--count", str(N),
            "--window", str(WINDOW), "--payload", str(LENGTH), "--peer", f"127.0.0.1:{udp_peer.port}",
            "--duration", "60", "--json", str(summary_path)]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, timeout=90)
    out = proc.stdout.decode(errors="replace")
    where = f"$ {' '.join(argv)}\n{out}\n--- server log tail ---\n{turn_server.output_tail(20)}"
    assert proc.returncode == 0, where
    b = json.loads(summary_path.read_text())
    assert b["sent"] == total, where
    assert b["received"] == b["sent"], where
    assert b["malformed"] == 0, where

    # The independent client and ours agree on what the server delivered.
    assert u.recv == b["received"], (u.recv, b["received"])
