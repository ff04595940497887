"""Several --relay-ip addresses of one family: new allocations take them in
turn, and each relays both ways from its own address. One uturnd of its own
on 127.0.0.1 relaying from 127.0.0.1 and 127.0.0.2, one worker (so the turn
order is one worker's). About 3 s.
"""

from __future__ import annotations

import pytest

import stun
from conftest import PASSWORD, USER, _stop, server_kind
from test_alternate_server import Node

pytestmark = [
    pytest.mark.backend_independent,
    pytest.mark.skipif(server_kind() != "uturnd", reason="uturnd's --relay-ip list"),
]


def test_allocations_spread_over_relay_addresses(tmp_path):
    node = Node(tmp_path, "127.0.0.1", relays=["127.0.0.1", "127.0.0.2"])
    peer = stun.EchoPeer("127.0.0.1")
    clients: list[stun.TurnClient] = []
    try:
        relayed = []
        for i in range(4):
            c = stun.TurnClient(node.addr, USER, PASSWORD)
            clients.append(c)
            resp = c.allocate()
            assert resp.cls == stun.SUCCESS, (resp.error_code, resp.error_reason, node.output())
            relayed.append(resp.xor_address(stun.XOR_RELAYED_ADDRESS))
            assert c.channel_bind(0x4001, peer.addr).cls == stun.SUCCESS
            c.send_channel_data(0x4001, b"hello-%d" % i)
            assert c.recv_channel_data() == (0x4001, b"hello-%d" % i)
        hosts = [r[0] for r in relayed]
        assert sorted(set(hosts)) == ["127.0.0.1", "127.0.0.2"], relayed
        assert hosts[0] != hosts[1] and hosts[0] == hosts[2], relayed
        # The peer saw each allocation from its relayed address.
        assert peer.sources == set(relayed), (peer.sources, relayed)
        for c in clients:
            assert c.refresh(0).cls == stun.SUCCESS
    finally:
        for c in clients:
            c.close()
        peer.close()
        _stop(node.proc)
