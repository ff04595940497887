// The TC ingress hook's rewrite: on an sk_buff, through the kernel's
// helpers, which keep its checksum state (CHECKSUM_PARTIAL, _COMPLETE)
// right. Included once, by fastpath.bpf.c.
#ifndef UTURN_FASTPATH_TC_H
#define UTURN_FASTPATH_TC_H

// A packet this program does not relay goes on to whatever would have seen
// it next: the next program on the interface (tcx: TCX_NEXT; a clsact
// filter chain: TC_ACT_UNSPEC, the same value), then the stack. TC_ACT_OK
// would end the chain and hide the packet from programs attached after this
// one (another uturnd, a CNI's program).
#define TC_PASS TC_ACT_UNSPEC

// Every byte written below the Ethernet header also updates skb->csum when
// the device gave a CHECKSUM_COMPLETE sum (a no-op otherwise).
#define STORE_L3 BPF_F_RECOMPUTE_CSUM

// Relays the datagram `pk` as `pl` says. Returns the TC verdict.
static __always_inline int tc_relay(struct __sk_buff *skb, const struct packet *pk, const struct plan *pl) {
    int partial = is_partial(pk);
    // A partial IPv6 checksum that shrinks would be checked on delivery
    // (csum_start is then behind the UDP header) against the partial sum.
    int reason = left_to_user_space(pk, pl, partial, !(pl->to_peer && pl->family == FP_FAMILY_V6));
    if (reason >= 0) {
        count_passed(reason);
        return TC_PASS;
    }
    int grow = size_change(pk, pl);
    if (grow > 0 && pl->ifindex) {
        __u32 mtu = 0;
        if (bpf_check_mtu(skb, pl->ifindex, &mtu, grow, 0) != BPF_MTU_CHK_RET_SUCCESS) {
            count_passed(FP_PASSED_UNFIT);
            return TC_PASS;
        }
    }

    // 1. The UDP checksum, where it sits now. None (IPv4's 0) stays none; a
    // partial one leaving as IPv4 loses it (0 too): the kernel would check
    // the partial sum once csum_start is behind the moved header.
    __u16 check = 0;
    if (pk->check != 0 && !(partial && pl->family == FP_FAMILY_V4)) {
        __u32 pseudo, rest;
        if (checksum_diffs(pk, pl, &pseudo, &rest)) return TC_ACT_SHOT;
        __u32 at = ETH_HLEN + pk->l3_len + offsetof(struct udphdr, check);
        // With BPF_F_PSEUDO_HDR the kernel updates a partial checksum only
        // by the pseudo-header's change, a full one by both; one that comes
        // out 0 is written as 0xffff (BPF_F_MARK_MANGLED_0).
        if (bpf_l4_csum_replace(skb, at, 0, pseudo, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0) ||
            bpf_l4_csum_replace(skb, at, 0, rest, BPF_F_MARK_MANGLED_0))
            return TC_ACT_SHOT;
        // The second change is matched by the header bytes stored below,
        // which STORE_L3 adds to a CHECKSUM_COMPLETE sum: take it back once.
        bpf_csum_update(skb, ~rest);
        if (bpf_skb_load_bytes(skb, at, &check, sizeof(check))) return TC_ACT_SHOT;
    }

    // 2. Room: another IP version (20 bytes more or fewer after the MAC
    // header), then the ChannelData header's 4 bytes. The payload stays
    // where it is at the end; everything in front of it is written anew.
    if (pl->family != pk->family) {
        __u16 proto = bpf_htons(pl->family == FP_FAMILY_V6 ? ETH_P_IPV6 : ETH_P_IP);
        if (bpf_skb_change_proto(skb, proto, 0) ||
            bpf_skb_store_bytes(skb, offsetof(struct ethhdr, h_proto), &proto, sizeof(proto), 0))
            return TC_ACT_SHOT;
    }
    if (bpf_skb_adjust_room(skb, pl->to_peer ? -4 : 4, BPF_ADJ_ROOM_MAC, 0)) return TC_ACT_SHOT;

    // 3. The headers.
    union l3_header l3;
    build_l3(&l3, pk, pl);
    struct udphdr udp = {
        .source = pl->sport, .dest = pl->dport, .len = bpf_htons(pl->udp_len), .check = check,
    };
    int rc;
    __u32 l4;
    if (pl->family == FP_FAMILY_V4) {
        rc = bpf_skb_store_bytes(skb, ETH_HLEN, &l3, sizeof(struct iphdr), STORE_L3);
        l4 = ETH_HLEN + sizeof(struct iphdr);
    } else {
        rc = bpf_skb_store_bytes(skb, ETH_HLEN, &l3, sizeof(struct ipv6hdr), STORE_L3);
        l4 = ETH_HLEN + sizeof(struct ipv6hdr);
    }
    if (rc || bpf_skb_store_bytes(skb, l4, &udp, sizeof(udp), STORE_L3)) return TC_ACT_SHOT;
    if (!pl->to_peer && bpf_skb_store_bytes(skb, l4 + sizeof(udp), pl->cd_new, sizeof(pl->cd_new), STORE_L3))
        return TC_ACT_SHOT;

    count(pl->counter, pl->to_peer, pl->length);
    // Out of the interface user space found for the destination
    // (bpf_redirect_neigh resolves the next hop), or up this host's stack.
    return pl->ifindex ? bpf_redirect_neigh(pl->ifindex, 0, 0, 0) : TC_ACT_OK;
}

#endif
