// uturn's kernel fast path: established UDP channels relayed by a TC
// ingress program, below the socket layer.
//
//   client -> peer: a ChannelData datagram to a listening address whose
//     (client, listening address, channel) has an entry becomes a UDP
//     datagram from the allocation's relayed address to the peer: the 4-byte
//     header removed, IP and UDP headers rewritten, checksums updated.
//   peer -> client: a UDP datagram from a peer to a relayed address whose
//     (peer, relayed address) has an entry becomes ChannelData to the client.
//
// Every other packet passes on unchanged (PASS, to the next program and the
// stack): the program sees all traffic on the interface. ChannelData whose length field does not match
// the datagram (short, padded, trailing bytes) and entries past their expiry
// go to user space too, which relays or drops them as the TURN state says.
// Only IPv4 without options or fragments, and no GSO trains, are handled
// here; IPv6 stays in user space in this version.
//
// The result is delivered locally (a peer or client on this host) or sent
// out of the interface the routing table named when user space wrote the
// entry (bpf_redirect_neigh: no forwarding sysctl needed). UDP
// checksums are updated field by field; see is_partial for datagrams that
// were sent on this host.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "fastpath_maps.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, FP_MAX_ENTRIES);
    __type(key, struct fp_client_key);
    __type(value, struct fp_client_value);
} fp_clients SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, FP_MAX_ENTRIES);
    __type(key, struct fp_peer_key);
    __type(value, struct fp_peer_value);
} fp_peers SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, FP_MAX_ENTRIES);
    __type(key, __u32);
    __type(value, struct fp_counters);
} fp_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, FP_PASSED_REASONS);
    __type(key, __u32);
    __type(value, __u64);
} fp_passed SEC(".maps");

// A packet this program does not relay goes on to whatever would have seen
// it next: the next program on the interface (tcx: TCX_NEXT; a clsact
// filter chain: TC_ACT_UNSPEC, the same value), then the stack. TC_ACT_OK
// would end the chain and hide the packet from programs attached after this
// one (another uturnd, a CNI's program).
#define PASS TC_ACT_UNSPEC

#define IP_OFF ETH_HLEN
#define UDP_OFF (ETH_HLEN + sizeof(struct iphdr))
#define UDP_CHECK_OFF (UDP_OFF + 6)
#define CSUM_UDP (BPF_F_MARK_MANGLED_0)

static __always_inline void count_passed(__u32 reason) {
    __u64 *n = bpf_map_lookup_elem(&fp_passed, &reason);
    if (n) *n += 1;
}

static __always_inline __u16 ip_checksum(struct iphdr *ip) {
    __u32 sum = 0;
    __u16 *w = (__u16 *)ip;
#pragma unroll
    for (int i = 0; i < 10; i++) sum += w[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

// Updates the UDP checksum for a 4-byte (pseudo-header) or 2-byte field
// change. With BPF_F_PSEUDO_HDR the kernel also keeps a CHECKSUM_PARTIAL
// packet right (its field holds only the pseudo-header sum); a zero UDP
// checksum (none, IPv4) stays zero (BPF_F_MARK_MANGLED_0).
static __always_inline int csum4(struct __sk_buff *skb, __u32 from, __u32 to) {
    return bpf_l4_csum_replace(skb, UDP_CHECK_OFF, from, to, BPF_F_PSEUDO_HDR | CSUM_UDP | 4);
}
static __always_inline int csum2(struct __sk_buff *skb, __u16 from, __u16 to, __u64 pseudo) {
    return bpf_l4_csum_replace(skb, UDP_CHECK_OFF, from, to, pseudo | CSUM_UDP | 2);
}

// Where the rewritten packet goes: out of the interface user space found
// for the destination when it wrote the entry (bpf_redirect_neigh resolves
// the next hop), or, for a destination on this host (0), up the stack.
static __always_inline int send_on(__u32 ifindex) {
    return ifindex ? bpf_redirect_neigh(ifindex, 0, 0, 0) : TC_ACT_OK;
}

// A datagram sent by a socket on this host (loopback, or a veth from
// another namespace) is CHECKSUM_PARTIAL: its UDP checksum field holds only
// the pseudo-header sum, and the kernel's record of where the UDP header
// starts does not follow the headers this program moves. Recognised by that
// field, such a datagram leaves with no UDP checksum (0, allowed for IPv4
// and accepted on local delivery) and is never sent out of a device, whose
// checksum offload would write at the stale place.
static __always_inline int is_partial(struct iphdr *ip, struct udphdr *udp) {
    __u32 sum = (ip->saddr & 0xffff) + (ip->saddr >> 16) + (ip->daddr & 0xffff) + (ip->daddr >> 16) +
                bpf_htons(IPPROTO_UDP) + udp->len;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return udp->check == (__u16)sum;
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

// The new 5-tuple and length of a relayed datagram, and the ChannelData
// header words that leave (client -> peer) or arrive (peer -> client).
struct rewrite {
    __u32 saddr, daddr;
    __u16 sport, dport;
    __u16 udp_len;      // network order
    __u16 cd_old[2];    // ChannelData header words removed (0 when none)
    __u16 cd_new[2];    // ChannelData header words added (0 when none)
    __u32 ifindex;      // where it leaves: 0 for this host
};

// Builds the new IP and UDP headers in `nip`/`nudp` (copies of the old
// ones), updating the UDP checksum where it sits now, field by field, or
// zeroing it for a datagram sent on this host. Returns REWRITTEN to relay,
// else the verdict (PASS: leave it to user space; TC_ACT_SHOT: a helper failed).
#define REWRITTEN 1000
static __always_inline int rewrite_headers(struct __sk_buff *skb, struct iphdr *nip, struct udphdr *nudp,
                                           const struct rewrite *r) {
    int partial = is_partial(nip, nudp);
    if (partial && r->ifindex) {
        count_passed(FP_PASSED_LOCAL_ORIGIN);
        return PASS;
    }
    if (partial) {
        nudp->check = 0;
    } else {
        if (csum4(skb, nip->saddr, r->saddr) || csum4(skb, nip->daddr, r->daddr) ||
            csum2(skb, nudp->len, r->udp_len, BPF_F_PSEUDO_HDR) || csum2(skb, nudp->len, r->udp_len, 0) ||
            csum2(skb, nudp->source, r->sport, 0) || csum2(skb, nudp->dest, r->dport, 0) ||
            csum2(skb, r->cd_old[0], r->cd_new[0], 0) || csum2(skb, r->cd_old[1], r->cd_new[1], 0))
            return TC_ACT_SHOT;
        if (bpf_skb_load_bytes(skb, UDP_CHECK_OFF, &nudp->check, sizeof(nudp->check))) return TC_ACT_SHOT;
    }
    nip->saddr = r->saddr;
    nip->daddr = r->daddr;
    nip->tot_len = bpf_htons(sizeof(struct iphdr) + bpf_ntohs(r->udp_len));
    nip->ttl = 64;
    nip->check = 0;
    nip->check = ip_checksum(nip);
    nudp->source = r->sport;
    nudp->dest = r->dport;
    nudp->len = r->udp_len;
    return REWRITTEN;
}

// ChannelData -> UDP to the peer. `length` is the ChannelData length field.
static __always_inline int to_peer(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
                                   struct fp_client_value *v, __u16 channel, __u16 length) {
    struct iphdr nip = *ip;
    struct udphdr nudp = *udp;
    struct rewrite r = {
        .saddr = v->relay_ip, .daddr = v->peer_ip, .sport = v->relay_port, .dport = v->peer_port,
        .udp_len = bpf_htons(sizeof(struct udphdr) + length),
        .cd_old = { bpf_htons(channel), bpf_htons(length) }, .ifindex = v->egress_ifindex,
    };
    int verdict = rewrite_headers(skb, &nip, &nudp, &r);
    if (verdict != REWRITTEN) return verdict;
    // New headers over the old ones moved 4 bytes on (covering the
    // ChannelData header), then the 4 bytes after the MAC header removed.
    if (bpf_skb_store_bytes(skb, IP_OFF + 4, &nip, sizeof(nip), 0) ||
        bpf_skb_store_bytes(skb, UDP_OFF + 4, &nudp, sizeof(nudp), 0) ||
        bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_MAC, 0))
        return TC_ACT_SHOT;
    count(v->counter, 1, length);
    return send_on(r.ifindex);
}

// UDP from a peer -> ChannelData to the client. `length` is the UDP payload length.
static __always_inline int to_client(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp,
                                     struct fp_peer_value *v, __u16 length) {
    struct iphdr nip = *ip;
    struct udphdr nudp = *udp;
    struct rewrite r = {
        .saddr = v->server_ip, .daddr = v->client_ip, .sport = v->server_port, .dport = v->client_port,
        .udp_len = bpf_htons(sizeof(struct udphdr) + 4 + length),
        .cd_new = { bpf_htons(v->channel), bpf_htons(length) }, .ifindex = v->egress_ifindex,
    };
    int verdict = rewrite_headers(skb, &nip, &nudp, &r);
    if (verdict != REWRITTEN) return verdict;
    // 4 bytes of room after the MAC header, then the headers and the
    // ChannelData header written in front of the payload.
    if (bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_MAC, 0) ||
        bpf_skb_store_bytes(skb, IP_OFF, &nip, sizeof(nip), 0) ||
        bpf_skb_store_bytes(skb, UDP_OFF, &nudp, sizeof(nudp), 0) ||
        bpf_skb_store_bytes(skb, UDP_OFF + sizeof(struct udphdr), r.cd_new, sizeof(r.cd_new), 0))
        return TC_ACT_SHOT;
    count(v->counter, 0, length);
    return send_on(r.ifindex);
}

SEC("tc")
int uturn_fastpath(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP)) return PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) return PASS;
    if (ip->frag_off & bpf_htons(0x3fff)) return PASS;  // a fragment: user space
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end) return PASS;
    if (skb->gso_size != 0) return PASS;  // a GSO train: user space walks it
    __u16 udp_len = bpf_ntohs(udp->len);
    if (udp_len < sizeof(struct udphdr) || bpf_ntohs(ip->tot_len) != sizeof(struct iphdr) + udp_len)
        return PASS;
    __u16 payload = udp_len - sizeof(struct udphdr);
    __u8 *p = (void *)(udp + 1);

    // ChannelData (first two bits 01) from a client with an entry?
    if (payload >= 4 && (void *)(p + 4) <= end && (p[0] & 0xc0) == 0x40) {
        struct fp_client_key k = {
            .client_ip = ip->saddr, .server_ip = ip->daddr,
            .client_port = udp->source, .server_port = udp->dest,
            .channel = ((__u16)p[0] << 8) | p[1],
        };
        struct fp_client_value *v = bpf_map_lookup_elem(&fp_clients, &k);
        if (v) {
            __u16 length = ((__u16)p[2] << 8) | p[3];
            if ((__u32)length + 4 != payload) {
                count_passed(FP_PASSED_LENGTH);
                return PASS;
            }
            if (v->expires_ns <= bpf_ktime_get_ns()) {
                count_passed(FP_PASSED_EXPIRED);
                return PASS;
            }
            return to_peer(skb, ip, udp, v, k.channel, length);
        }
    }
    // Data from a peer with an entry?
    struct fp_peer_key pk = {
        .peer_ip = ip->saddr, .relay_ip = ip->daddr, .peer_port = udp->source, .relay_port = udp->dest,
    };
    struct fp_peer_value *pv = bpf_map_lookup_elem(&fp_peers, &pk);
    if (!pv) return PASS;
    if (payload > 0xffff - 64) {
        count_passed(FP_PASSED_LENGTH);
        return PASS;
    }
    if (pv->expires_ns <= bpf_ktime_get_ns()) {
        count_passed(FP_PASSED_EXPIRED);
        return PASS;
    }
    return to_client(skb, ip, udp, pv, payload);
}

char LICENSE[] SEC("license") = "GPL";
