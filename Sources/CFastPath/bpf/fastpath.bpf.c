// uturn's kernel fast path: established UDP channels relayed below the
// socket layer, at TC ingress (uturn_fastpath_tc) or XDP (uturn_fastpath_xdp).
//
//   client -> peer: a ChannelData datagram to a listening address whose
//     (client, listening address, channel) has an entry becomes a UDP
//     datagram from the allocation's relayed address to the peer: the 4-byte
//     header removed, IP and UDP headers rewritten, the checksum updated.
//   peer -> client: a UDP datagram from a peer to a relayed address whose
//     (peer, relayed address) has an entry becomes ChannelData to the client.
//
// IPv4 and IPv6, and an allocation whose client and peer are of different
// families (RFC 6156): the IP header is replaced by the other version's.
// Every other packet passes on unchanged, to the next program and the
// stack: the program sees all traffic on the interface. ChannelData whose
// length field does not match the datagram (short, padded, trailing bytes)
// and entries past their expiry go to user space too, which relays or drops
// them as the TURN state says, and so do IPv4 options, IPv6 extension
// headers, fragments and GSO trains.
//
// The result is delivered locally (a peer or client on this host) or sent
// out of the interface the routing table named when user space wrote the
// entry. The maps are shared by both programs; fastpath_maps.h describes them.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <stddef.h>
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

#include "plan.h"
#include "tc.h"
#include "xdp.h"

// One relay step: parse, look up, rewrite. *hairpin is set when a client's
// datagram was relayed to a peer on this host, which may be another
// allocation's relayed address here (two clients of this server talking
// through their relays, as two browsers do): the stack would deliver it to
// that relay socket without another pass through this hook, so the caller
// runs the step once more for the second hop.
static __always_inline int tc_step(struct __sk_buff *skb, int *hairpin) {
    struct packet pk;
    struct plan pl;
    __u8 *payload;
    __builtin_memset(&pk, 0, sizeof(pk));
    __builtin_memset(&pl, 0, sizeof(pl));
    payload = 0;
    *hairpin = 0;
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    if (parse(data, end, &pk, &payload)) return TC_PASS;
    if (skb->gso_size != 0) return TC_PASS;  // a GSO train: user space walks it
    if (!plan_relay(&pk, payload, end, &pl)) return TC_PASS;
    int verdict = tc_relay(skb, &pk, &pl);
    *hairpin = verdict == TC_ACT_OK && pl.to_peer;
    return verdict;
}

SEC("tc")
int uturn_fastpath_tc(struct __sk_buff *skb) {
    int hairpin;
    int verdict = tc_step(skb, &hairpin);
    if (!hairpin) return verdict;
    // The rewritten datagram is this host's now: relayed further if it is
    // bound for one of our relayed addresses, else delivered as it is.
    verdict = tc_step(skb, &hairpin);
    return verdict == TC_PASS ? TC_ACT_OK : verdict;
}

// As tc_step, for XDP.
static __always_inline int xdp_step(struct xdp_md *ctx, int *hairpin) {
    struct packet pk;
    struct plan pl;
    __u8 *payload;
    __builtin_memset(&pk, 0, sizeof(pk));
    __builtin_memset(&pl, 0, sizeof(pl));
    payload = 0;
    *hairpin = 0;
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (parse(data, end, &pk, &payload)) return XDP_PASS;
    if (!plan_relay(&pk, payload, end, &pl)) return XDP_PASS;
    int relayed = 0;
    int action = xdp_relay(ctx, &pk, &pl, &relayed);
    *hairpin = relayed && action == XDP_PASS && pl.to_peer;
    return action;
}

SEC("xdp")
int uturn_fastpath_xdp(struct xdp_md *ctx) {
    int hairpin;
    int action = xdp_step(ctx, &hairpin);
    if (!hairpin) return action;
    return xdp_step(ctx, &hairpin);
}

char LICENSE[] SEC("license") = "GPL";
