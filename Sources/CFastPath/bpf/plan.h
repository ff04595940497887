// What both hooks share: reading a packet's headers (`parse`), deciding
// from the maps whether and how to relay it (`plan_relay`), and the
// checksum arithmetic. Included once, by fastpath.bpf.c, after the maps.
#ifndef UTURN_FASTPATH_PLAN_H
#define UTURN_FASTPATH_PLAN_H

// A UDP datagram as read off the wire.
struct packet {
    __u32 src[4], dst[4];  // as in fp_*_key: IPv4 in word 0, the rest zero
    __u16 sport, dport;    // network order
    __u16 udp_len;         // host order, UDP header included
    __u16 check;           // the UDP checksum field as carried
    __u8 family;           // FP_FAMILY_V4 or FP_FAMILY_V6
    __u8 l3_len;           // 20 or 40: no IPv4 options, no IPv6 extension headers
    __u8 tos;              // IPv4 TOS or IPv6 traffic class, carried over
    __u8 df;               // IPv4 "don't fragment" (always set when leaving as IPv4 from IPv6)
};

// What the relayed datagram becomes.
struct plan {
    __u32 src[4], dst[4];
    __u16 sport, dport;    // network order
    __u16 udp_len;         // host order
    __u16 cd_old[2];       // ChannelData header words removed (network order; 0 when none)
    __u16 cd_new[2];       // ChannelData header words added
    __u8 family;
    __u8 to_peer;
    __u32 ifindex;         // 0: this host
    __u32 counter;
    __u32 length;          // application bytes, for the counters
};

static __always_inline void count_passed(__u32 reason) {
    __u64 *n = bpf_map_lookup_elem(&fp_passed, &reason);
    if (n) *n += 1;
}

static __always_inline void count(__u32 index, int to_peer, __u32 bytes) {
    struct fp_counters *c = bpf_map_lookup_elem(&fp_counters, &index);
    if (!c) return;
    if (to_peer) {
        c->packets_to_peer += 1;
        c->bytes_to_peer += bytes;
    } else {
        c->packets_to_client += 1;
        c->bytes_to_client += bytes;
    }
}

static __always_inline __u8 l3_length(__u8 family) { return family == FP_FAMILY_V6 ? 40 : 20; }

// Fills `pk` and points `*payload` at the UDP payload when `data` holds an
// Ethernet frame with a whole, unfragmented UDP datagram over IPv4 (no
// options) or IPv6 (no extension headers). Returns 0 then, else -1 (pass).
static __always_inline int parse(void *data, void *end, struct packet *pk, __u8 **payload) {
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end) return -1;
    struct udphdr *udp;
    __u16 l3_payload;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) return -1;
        if (ip->frag_off & bpf_htons(0x3fff)) return -1;  // a fragment: user space
        udp = (void *)(ip + 1);
        if ((void *)(udp + 1) > end) return -1;
        pk->family = FP_FAMILY_V4;
        pk->l3_len = sizeof(*ip);
        pk->src[0] = ip->saddr;
        pk->dst[0] = ip->daddr;
        pk->tos = ip->tos;
        pk->df = (ip->frag_off & bpf_htons(0x4000)) != 0;
        l3_payload = bpf_ntohs(ip->tot_len) - sizeof(*ip);
        if (bpf_ntohs(ip->tot_len) < sizeof(*ip)) return -1;
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP) return -1;
        udp = (void *)(ip6 + 1);
        if ((void *)(udp + 1) > end) return -1;
        pk->family = FP_FAMILY_V6;
        pk->l3_len = sizeof(*ip6);
        __builtin_memcpy(pk->src, &ip6->saddr, 16);
        __builtin_memcpy(pk->dst, &ip6->daddr, 16);
        pk->tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
        pk->df = 1;
        l3_payload = bpf_ntohs(ip6->payload_len);  // 0 (a jumbogram) fails below
    } else {
        return -1;
    }
    pk->udp_len = bpf_ntohs(udp->len);
    if (pk->udp_len < sizeof(struct udphdr) || pk->udp_len != l3_payload) return -1;
    pk->sport = udp->source;
    pk->dport = udp->dest;
    pk->check = udp->check;
    *payload = (void *)(udp + 1);
    return 0;
}

// Looks `pk` up. Returns 1 with `pl` filled when it is to be relayed: ChannelData
// from a client with an entry (its length field matching the datagram), or
// a datagram from a peer with an entry, neither expired. Else 0: pass it
// on (counted by reason when an entry matched).
static __always_inline int plan_relay(struct packet *pk, __u8 *p, void *end, struct plan *pl) {
    __u16 payload = pk->udp_len - sizeof(struct udphdr);

    // ChannelData (first two bits 01) from a client with an entry?
    if (payload >= 4 && (void *)(p + 4) <= end && (p[0] & 0xc0) == 0x40) {
        struct fp_client_key k;
        __builtin_memset(&k, 0, sizeof(k));
        __builtin_memcpy(k.client_ip, pk->src, 16);
        __builtin_memcpy(k.server_ip, pk->dst, 16);
        k.client_port = pk->sport;
        k.server_port = pk->dport;
        k.channel = ((__u16)p[0] << 8) | p[1];
        k.family = pk->family;
        struct fp_client_value *v = bpf_map_lookup_elem(&fp_clients, &k);
        if (v) {
            __u16 length = ((__u16)p[2] << 8) | p[3];
            if ((__u32)length + 4 != payload) {
                count_passed(FP_PASSED_LENGTH);
                return 0;
            }
            if (v->expires_ns <= bpf_ktime_get_ns()) {
                count_passed(FP_PASSED_EXPIRED);
                return 0;
            }
            __builtin_memcpy(pl->src, v->relay_ip, 16);
            __builtin_memcpy(pl->dst, v->peer_ip, 16);
            pl->sport = v->relay_port;
            pl->dport = v->peer_port;
            pl->udp_len = sizeof(struct udphdr) + length;
            pl->cd_old[0] = bpf_htons(k.channel);
            pl->cd_old[1] = bpf_htons(length);
            pl->cd_new[0] = pl->cd_new[1] = 0;
            pl->family = v->family;
            pl->to_peer = 1;
            pl->ifindex = v->egress_ifindex;
            pl->counter = v->counter;
            pl->length = length;
            return 1;
        }
    }
    // Data from a peer with an entry?
    struct fp_peer_key pk2;
    __builtin_memset(&pk2, 0, sizeof(pk2));
    __builtin_memcpy(pk2.peer_ip, pk->src, 16);
    __builtin_memcpy(pk2.relay_ip, pk->dst, 16);
    pk2.peer_port = pk->sport;
    pk2.relay_port = pk->dport;
    pk2.family = pk->family;
    struct fp_peer_value *pv = bpf_map_lookup_elem(&fp_peers, &pk2);
    if (!pv) return 0;
    if (payload > 0xffff - 64) {
        count_passed(FP_PASSED_LENGTH);
        return 0;
    }
    if (pv->expires_ns <= bpf_ktime_get_ns()) {
        count_passed(FP_PASSED_EXPIRED);
        return 0;
    }
    __builtin_memcpy(pl->src, pv->server_ip, 16);
    __builtin_memcpy(pl->dst, pv->client_ip, 16);
    pl->sport = pv->server_port;
    pl->dport = pv->client_port;
    pl->udp_len = sizeof(struct udphdr) + 4 + payload;
    pl->cd_old[0] = pl->cd_old[1] = 0;
    pl->cd_new[0] = bpf_htons(pv->channel);
    pl->cd_new[1] = bpf_htons(payload);
    pl->family = pv->family;
    pl->to_peer = 0;
    pl->ifindex = pv->egress_ifindex;
    pl->counter = pv->counter;
    pl->length = payload;
    return 1;
}

// Bytes the relayed frame has more (> 0) or fewer than the arriving one:
// another IP header size, and the ChannelData header added or removed.
static __always_inline int size_change(const struct packet *pk, const struct plan *pl) {
    return (int)l3_length(pl->family) - (int)pk->l3_len + (pl->to_peer ? -4 : 4);
}

// 127.0.0.0/8 or ::1. The kernel routes a datagram to such an address only
// if it sent it itself (route_localnet): one that changed IP version on
// the way is not that datagram any more, and would be dropped as martian.
static __always_inline int is_loopback(__u8 family, const __u32 *a) {
    if (family == FP_FAMILY_V4) return (bpf_ntohl(a[0]) >> 24) == 127;
    return a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == bpf_htonl(1);
}

// A relay to another IP version that this host would not deliver (see is_loopback).
static __always_inline int undeliverable(const struct packet *pk, const struct plan *pl) {
    return pl->family != pk->family && is_loopback(pl->family, pl->dst);
}

// Why a planned relay is left to user space after all, as an
// fp_passed_reason, or -1 to relay it. `partial`: see is_partial; such a
// datagram may not leave through a device once moved (the offload would
// write its checksum at the stale place), and only where `partial_ok` says
// the hook can keep its checksum valid. IPv4 without a UDP checksum cannot
// leave as IPv6, which requires one; a loopback address is not reached from
// the other IP version (undeliverable).
static __always_inline int left_to_user_space(const struct packet *pk, const struct plan *pl, int partial, int partial_ok) {
    if (partial && (pl->ifindex || !partial_ok)) return FP_PASSED_LOCAL_ORIGIN;
    if ((pk->check == 0 && pl->family == FP_FAMILY_V6) || undeliverable(pk, pl)) return FP_PASSED_UNFIT;
    return -1;
}

// ---- Checksums ----
//
// The UDP checksum is updated, never recomputed over the payload: by the
// one's-complement difference between the words that change. Those split
// in two, as the kernel's CHECKSUM_PARTIAL handling needs: the
// pseudo-header's (addresses and length) and the rest (ports, the length
// field, the ChannelData header). A length sits in a 32-bit word as
// bpf_htons(len): its bytes are the length's two then two zeros, so it
// counts once in the sum, as in both families' pseudo-headers.

struct pseudo_words {
    __u32 src[4], dst[4];
    __u32 len;
};

struct udp_words {
    __u16 sport, dport;
    __u32 len;
    __u16 cd[2];
};

static __always_inline __u16 fold(__u64 sum) {
    sum = (sum & 0xffffffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)sum;
}

// The two differences, or -1 if a helper failed.
static __always_inline int checksum_diffs(const struct packet *pk, const struct plan *pl, __u32 *pseudo, __u32 *rest) {
    struct pseudo_words pf, pt;
    __builtin_memcpy(pf.src, pk->src, 16);
    __builtin_memcpy(pf.dst, pk->dst, 16);
    pf.len = bpf_htons(pk->udp_len);
    __builtin_memcpy(pt.src, pl->src, 16);
    __builtin_memcpy(pt.dst, pl->dst, 16);
    pt.len = bpf_htons(pl->udp_len);
    struct udp_words uf = {
        .sport = pk->sport, .dport = pk->dport, .len = bpf_htons(pk->udp_len),
        .cd = { pl->cd_old[0], pl->cd_old[1] },
    };
    struct udp_words ut = {
        .sport = pl->sport, .dport = pl->dport, .len = bpf_htons(pl->udp_len),
        .cd = { pl->cd_new[0], pl->cd_new[1] },
    };
    __s64 a = bpf_csum_diff((__be32 *)&pf, sizeof(pf), (__be32 *)&pt, sizeof(pt), 0);
    __s64 b = bpf_csum_diff((__be32 *)&uf, sizeof(uf), (__be32 *)&ut, sizeof(ut), 0);
    if (a < 0 || b < 0) return -1;
    *pseudo = (__u32)a;
    *rest = (__u32)b;
    return 0;
}

// A datagram sent by a socket on this host (loopback, or a veth from
// another namespace) is CHECKSUM_PARTIAL: its UDP checksum field holds only
// the pseudo-header sum (the rest is added on the way out of a device, at a
// place the kernel recorded, csum_start, which does not follow the headers
// this program moves). Recognised here by that field. Such a datagram
// cannot leave through a device after the rewrite, and may lose its
// checksum (IPv4) where the kernel would otherwise check it; see the hooks.
static __always_inline int is_partial(const struct packet *pk) {
    __u64 sum = bpf_htons(IPPROTO_UDP) + bpf_htons(pk->udp_len);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        sum += (pk->src[i] & 0xffff) + (pk->src[i] >> 16);
        sum += (pk->dst[i] & 0xffff) + (pk->dst[i] >> 16);
    }
    return pk->check == fold(sum);
}

// ---- The new headers ----

union l3_header {
    struct iphdr v4;
    struct ipv6hdr v6;
};

static __always_inline __u16 ip_checksum(struct iphdr *ip) {
    __u32 sum = 0;
    __u16 *w = (__u16 *)ip;
#pragma unroll
    for (int i = 0; i < 10; i++) sum += w[i];
    return (__u16)~fold(sum);
}

// The IP header the relayed datagram leaves with: a new datagram from this
// relay (TTL/hop limit 64), keeping the arriving TOS / traffic class.
static __always_inline void build_l3(union l3_header *h, const struct packet *pk, const struct plan *pl) {
    __builtin_memset(h, 0, sizeof(*h));
    if (pl->family == FP_FAMILY_V4) {
        h->v4.version = 4;
        h->v4.ihl = 5;
        h->v4.tos = pk->tos;
        h->v4.tot_len = bpf_htons(sizeof(struct iphdr) + pl->udp_len);
        h->v4.frag_off = pk->df ? bpf_htons(0x4000) : 0;
        h->v4.ttl = 64;
        h->v4.protocol = IPPROTO_UDP;
        h->v4.saddr = pl->src[0];
        h->v4.daddr = pl->dst[0];
        h->v4.check = ip_checksum(&h->v4);
    } else {
        h->v6.version = 6;
        h->v6.priority = pk->tos >> 4;
        h->v6.flow_lbl[0] = (pk->tos & 0xf) << 4;
        h->v6.payload_len = bpf_htons(pl->udp_len);
        h->v6.nexthdr = IPPROTO_UDP;
        h->v6.hop_limit = 64;
        __builtin_memcpy(&h->v6.saddr, pl->src, 16);
        __builtin_memcpy(&h->v6.daddr, pl->dst, 16);
    }
}

#endif
