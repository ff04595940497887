// The XDP hook's rewrite: on the raw frame, before an sk_buff exists (in
// native mode), so the checksum is updated by hand and the frame is sent
// with XDP_TX or bpf_redirect after bpf_fib_lookup found the next hop.
// Included once, by fastpath.bpf.c.
#ifndef UTURN_FASTPATH_XDP_H
#define UTURN_FASTPATH_XDP_H

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

// Relays the datagram `pk` as `pl` says. Returns the XDP action, and sets
// *relayed when the frame was rewritten (XDP_PASS is also the answer for a
// frame left to user space untouched).
static __always_inline int xdp_relay(struct xdp_md *ctx, const struct packet *pk, const struct plan *pl, int *relayed) {
    // A datagram sent by a socket on this host (generic XDP on loopback or
    // a veth): only an IPv4 one can drop its partial checksum, so the rest
    // goes to user space. (A full checksum that happens to equal the
    // pseudo-header sum lands here too, 1 in 65,536: it is relayed by user
    // space, never corrupted.)
    int partial = is_partial(pk);
    int reason = left_to_user_space(pk, pl, partial, pl->family == FP_FAMILY_V4);
    if (reason >= 0) {
        count_passed(reason);
        return XDP_PASS;
    }

    // The next hop, before anything is changed: without a neighbour entry
    // the frame goes to user space untouched (whose send resolves it).
    struct bpf_fib_lookup fib;
    int action = XDP_PASS;
    if (pl->ifindex) {
        __builtin_memset(&fib, 0, sizeof(fib));
        fib.l4_protocol = IPPROTO_UDP;
        fib.sport = pl->sport;
        fib.dport = pl->dport;
        fib.ifindex = ctx->ingress_ifindex;
        if (pl->family == FP_FAMILY_V4) {
            fib.family = AF_INET;
            fib.tos = pk->tos;
            fib.tot_len = sizeof(struct iphdr) + pl->udp_len;
            fib.ipv4_src = pl->src[0];
            fib.ipv4_dst = pl->dst[0];
        } else {
            fib.family = AF_INET6;
            fib.tot_len = sizeof(struct ipv6hdr) + pl->udp_len;
            __builtin_memcpy(fib.ipv6_src, pl->src, 16);
            __builtin_memcpy(fib.ipv6_dst, pl->dst, 16);
        }
        int rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
        if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
            count_passed(FP_PASSED_UNFIT);
            return XDP_PASS;
        }
        if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
            count_passed(FP_PASSED_NO_NEXT_HOP);
            return XDP_PASS;
        }
        action = fib.ifindex == ctx->ingress_ifindex ? XDP_TX : (int)bpf_redirect(fib.ifindex, 0);
    }

    // The checksum: ~(~old + changes), by hand. None stays none (IPv4); a
    // partial one leaving as IPv4 is dropped to none (see is_partial).
    __u16 check = 0;
    if (pk->check != 0 && !partial) {
        __u32 pseudo, rest;
        if (checksum_diffs(pk, pl, &pseudo, &rest)) return XDP_ABORTED;
        check = ~fold((__u64)(__u16)~pk->check + pseudo + rest);
        if (check == 0) check = 0xffff;
    }

    // The Ethernet header is kept (local delivery, or the route's MACs).
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr eth;
    if (data + sizeof(eth) > end) return XDP_PASS;
    __builtin_memcpy(&eth, data, sizeof(eth));
    if (pl->ifindex) {
        __builtin_memcpy(eth.h_dest, fib.dmac, ETH_ALEN);
        __builtin_memcpy(eth.h_source, fib.smac, ETH_ALEN);
    }
    eth.h_proto = bpf_htons(pl->family == FP_FAMILY_V6 ? ETH_P_IPV6 : ETH_P_IP);
    union l3_header l3;
    build_l3(&l3, pk, pl);
    struct udphdr udp = {
        .source = pl->sport, .dest = pl->dport, .len = bpf_htons(pl->udp_len), .check = check,
    };

    // Everything in front of the payload is written anew, starting where
    // the frame now starts (earlier when it grew, later when it shrank).
    if (bpf_xdp_adjust_head(ctx, -size_change(pk, pl))) return XDP_ABORTED;
    // The new frame holds exactly these headers and the payload, so the
    // bounds checks below are for the verifier; none fails in practice.
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    void *l4;
    if (pl->family == FP_FAMILY_V4) {
        l4 = data + sizeof(eth) + sizeof(struct iphdr);
        if (l4 + sizeof(udp) > end) return XDP_ABORTED;
        __builtin_memcpy(data + sizeof(eth), &l3.v4, sizeof(struct iphdr));
    } else {
        l4 = data + sizeof(eth) + sizeof(struct ipv6hdr);
        if (l4 + sizeof(udp) > end) return XDP_ABORTED;
        __builtin_memcpy(data + sizeof(eth), &l3.v6, sizeof(struct ipv6hdr));
    }
    __builtin_memcpy(data, &eth, sizeof(eth));
    __builtin_memcpy(l4, &udp, sizeof(udp));
    if (!pl->to_peer) {
        if (l4 + sizeof(udp) + sizeof(pl->cd_new) > end) return XDP_ABORTED;
        __builtin_memcpy(l4 + sizeof(udp), pl->cd_new, sizeof(pl->cd_new));
    }

    count(pl->counter, pl->to_peer, pl->length);
    *relayed = 1;
    return action;
}

#endif
