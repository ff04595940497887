"""A WebRTC session through the server under test: two aiortc peers (PyPI,
see requirements-test.txt) with iceTransportPolicy="relay", so every ICE
candidate is a TURN relayed address and the only way the peers can reach
each other is through the relay. Offer and answer are exchanged in-process;
a data channel carries messages both ways; then the test checks that the
nominated ICE pairs are relay-to-relay and that the server logged the
allocations.

The same session runs again against a uturnd with the kernel fast path
(`--offload tc`, root only), whose metrics must show the kernel carried the
channel data both ways.

Loopback only: the relayed candidates are 127.0.0.1 addresses, which the
turn_server fixture allows (--allow-loopback-peers)."""

from __future__ import annotations

import asyncio
import re

import pytest

aiortc = pytest.importorskip("aiortc", reason="pip install -r requirements-test.txt")

MESSAGES = 20
DEADLINE = 30.0  # seconds for the whole session, gathering to teardown


def _nominated_pairs(pc) -> list:
    """The nominated ICE candidate pairs of a peer connection's (bundled)
    transport: RTCSctpTransport -> RTCDtlsTransport -> RTCIceTransport ->
    aioice Connection."""
    connection = pc.sctp.transport.transport._connection
    return list(connection._nominated.values())


async def _session(turn_url: str, username: str, password: str) -> dict:
    config = aiortc.RTCConfiguration(
        iceServers=[aiortc.RTCIceServer(urls=turn_url, username=username, credential=password)],
        iceTransportPolicy=aiortc.RTCIceTransportPolicy.RELAY)
    caller = aiortc.RTCPeerConnection(configuration=config)
    callee = aiortc.RTCPeerConnection(configuration=config)
    got_by_callee: list[str] = []
    got_by_caller: list[str] = []
    callee_done = asyncio.Event()
    caller_done = asyncio.Event()
    try:
        channel = caller.createDataChannel("chat", ordered=True)

        @channel.on("open")
        def _caller_open():
            for i in range(MESSAGES):
                channel.send(f"caller->callee {i}")

        @channel.on("message")
        def _caller_message(message):
            got_by_caller.append(message)
            if len(got_by_caller) >= MESSAGES:
                caller_done.set()

        @callee.on("datachannel")
        def _callee_channel(remote):
            @remote.on("message")
            def _callee_message(message):
                got_by_callee.append(message)
                if len(got_by_callee) >= MESSAGES:
                    callee_done.set()

            for i in range(MESSAGES):
                remote.send(f"callee->caller {i}")

        # setLocalDescription gathers candidates (TURN allocations) before it returns.
        await caller.setLocalDescription(await caller.createOffer())
        await callee.setRemoteDescription(caller.localDescription)
        await callee.setLocalDescription(await callee.createAnswer())
        await caller.setRemoteDescription(callee.localDescription)

        await asyncio.gather(callee_done.wait(), caller_done.wait())
        return {
            "offer": caller.localDescription.sdp,
            "answer": callee.localDescription.sdp,
            "to_callee": list(got_by_callee),
            "to_caller": list(got_by_caller),
            "caller_pairs": _nominated_pairs(caller),
            "callee_pairs": _nominated_pairs(callee),
        }
    finally:
        await caller.close()
        await callee.close()


def test_data_channel_between_relay_only_peers(turn_server):
    _relay_only_session(turn_server)


@pytest.fixture(scope="module")
def webrtc_offload_server(server_factory):
    import os
    from conftest import server_kind
    from test_metrics import start_metrics_server
    if server_kind() != "uturnd":
        pytest.skip("--offload is uturnd's")
    if os.geteuid() != 0:
        pytest.skip("the fast path needs root (CAP_BPF and CAP_NET_ADMIN)")
    srv = start_metrics_server(server_factory, "turn-webrtc-offload", "--offload tc --offload-interface lo")
    assert "offload: kernel fast path on lo (tc" in srv.output(), srv.output_tail()
    return srv


def test_data_channel_through_the_kernel_fast_path(webrtc_offload_server):
    """The same session with --offload tc: aiortc's channel data (DTLS and
    SCTP in ChannelData once aioice has bound its channels) is carried by the
    kernel both ways, both hops of this same-server relay-to-relay session."""
    from test_metrics import scrape_until
    srv = webrtc_offload_server
    port = srv.extra["metrics_port"]

    def offloaded(samples):
        return {d: samples.get(f'uturn_offload_packets_total{{direction="{d}"}}', 0.0)
                for d in ("client_to_peer", "peer_to_client")}

    before = offloaded(scrape_until(port, lambda s: True, timeout=0))
    _relay_only_session(srv)
    after = scrape_until(port, lambda s: min(offloaded(s)[d] - before[d] for d in before) >= MESSAGES)
    moved = {d: offloaded(after)[d] - before[d] for d in before}
    assert min(moved.values()) >= MESSAGES, (moved, srv.output_tail())


def _relay_only_session(turn_server):
    url = f"turn:127.0.0.1:{turn_server.port}?transport=udp"
    before = turn_server.output().count("allocation created")

    async def bounded():
        return await asyncio.wait_for(_session(url, turn_server.user, turn_server.password), DEADLINE)

    try:
        result = asyncio.run(bounded())
    except asyncio.TimeoutError:
        pytest.fail(f"no data channel session within {DEADLINE:.0f}s\nserver output:\n"
                    f"{turn_server.output_tail()}", pytrace=False)

    # Relay policy: the only candidates offered are relayed ones.
    for sdp in (result["offer"], result["answer"]):
        types = re.findall(r"^a=candidate:.* typ (\w+)", sdp, re.M)
        assert types and set(types) == {"relay"}, sdp

    # Every message arrived, in order, both ways.
    assert result["to_callee"] == [f"caller->callee {i}" for i in range(MESSAGES)]
    assert result["to_caller"] == [f"callee->caller {i}" for i in range(MESSAGES)]

    # ICE nominated a relay-to-relay pair on both sides, and the relayed
    # addresses are this server's (127.0.0.1, a port in its relay range).
    lo, hi = turn_server.relay_range
    for side in ("caller_pairs", "callee_pairs"):
        pairs = result[side]
        assert pairs, f"{side}: no nominated pair"
        for pair in pairs:
            for cand in (pair.local_candidate, pair.remote_candidate):
                assert cand.type == "relay", f"{side}: {pair}"
                assert cand.host == "127.0.0.1" and lo <= cand.port <= hi, f"{side}: {pair}"

    # The server saw both allocations (one per peer) and authenticated them as demo.
    created = [line for line in turn_server.output().splitlines() if "allocation created" in line][before:]
    assert len(created) >= 2, turn_server.output_tail()
    assert all(f"user {turn_server.user}" in line for line in created), created
