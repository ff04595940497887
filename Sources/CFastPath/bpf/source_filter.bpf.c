// uturn's kernel source filter: a socket filter (SO_ATTACH_BPF) on every
// plain-UDP listening socket, dropping datagrams from the sources the
// per-source request limits are refusing, before they are queued on the
// socket: no wake-up, no receive, no parsing in user space.
//
// The workers write the blocks (sf_blocked): when the limiter drops a
// request from a client transport address (one that has no allocation:
// only those are limited), the worker blocks that exact address and port on
// that listening port until the source's bucket holds a token again. Live
// allocations are never blocked: their 5-tuples are never limited, and
// another port of the same host is another key.
//
// A source that sends only datagrams no one answers (ChannelData with no
// allocation, bytes that parse as nothing) is blocked for those alone
// (SF_SCOPE_NOT_STUN): its STUN requests pass, so its client can allocate
// again, and those requests meet the request limits in user space.
//
// A socket filter is removed by the kernel when its socket closes; nothing
// is attached to an interface and nothing outlives uturnd.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "source_filter_maps.h"

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, SF_MAX_ENTRIES);
    __type(key, struct sf_key);
    __type(value, struct sf_value);
} sf_blocked SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, SF_COUNTERS);
    __type(key, __u32);
    __type(value, __u64);
} sf_counters SEC(".maps");

// A socket filter's verdict: 0 drops the datagram; a length at least the
// datagram's keeps it whole.
#define SF_KEEP 0xffffffffu
#define SF_DROP 0u

// Whether the datagram after the UDP header could be a STUN message: at
// least a 20-byte header, the two top bits clear, the magic cookie in
// bytes 4-7 (RFC 8489 §5). SourceFilterPart.startsWithSTUNHeader (Swift)
// is the same test.
static __always_inline int starts_with_stun_header(struct __sk_buff *skb) {
    if (skb->len < sizeof(struct udphdr) + 20) return 0;
    __u32 head[2];
    if (bpf_skb_load_bytes(skb, sizeof(struct udphdr), head, sizeof(head)) < 0) return 0;
    return (bpf_ntohl(head[0]) & 0xC0000000u) == 0 && head[1] == bpf_htonl(0x2112A442u);
}

SEC("socket")
int uturn_source_filter(struct __sk_buff *skb) {
    struct sf_key key;
    __builtin_memset(&key, 0, sizeof(key));
    // On a UDP socket the filter runs with skb->data at the UDP header (the
    // IP header has been pulled); the IP header is read relative to the
    // network header. skb->protocol is the IP version of the datagram (an
    // IPv4 datagram to a dual-stack IPv6 socket is ETH_P_IP).
    struct udphdr udp;
    if (bpf_skb_load_bytes(skb, 0, &udp, sizeof(udp)) < 0) return SF_KEEP;
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        if (bpf_skb_load_bytes_relative(skb, offsetof(struct iphdr, saddr), &key.source_ip[0], 4, BPF_HDR_START_NET) < 0)
            return SF_KEEP;
        key.family = FP_FAMILY_V4;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        if (bpf_skb_load_bytes_relative(skb, offsetof(struct ipv6hdr, saddr), key.source_ip, 16, BPF_HDR_START_NET) < 0)
            return SF_KEEP;
        key.family = FP_FAMILY_V6;
    } else {
        return SF_KEEP;
    }
    key.source_port = udp.source;
    key.listen_port = udp.dest;
    struct sf_value *blocked = bpf_map_lookup_elem(&sf_blocked, &key);
    if (!blocked) return SF_KEEP;
    if (bpf_ktime_get_ns() >= blocked->until) {
        bpf_map_delete_elem(&sf_blocked, &key);
        return SF_KEEP;
    }
    if (blocked->scope == SF_SCOPE_NOT_STUN && starts_with_stun_header(skb)) return SF_KEEP;
    __u32 slot = SF_DROPPED;
    __u64 *dropped = bpf_map_lookup_elem(&sf_counters, &slot);
    if (dropped) *dropped += 1;
    return SF_DROP;
}

char LICENSE[] SEC("license") = "GPL";
