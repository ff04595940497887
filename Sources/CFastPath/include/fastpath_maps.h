// The maps the kernel fast path (bpf/fastpath.bpf.c) and uturnd share:
// their keys and values, byte for byte. Addresses and ports are in network
// byte order, as they sit in the packet; everything else in host order.
// Only the worker that owns an allocation writes its entries; the program
// only reads entries and bumps per-CPU counters.
#ifndef UTURN_FASTPATH_MAPS_H
#define UTURN_FASTPATH_MAPS_H

#ifdef __bpf__
#include <linux/types.h>
typedef __u8 fp_u8;
typedef __u16 fp_u16;
typedef __u32 fp_u32;
typedef __u64 fp_u64;
#else
#include <stdint.h>
typedef uint8_t fp_u8;
typedef uint16_t fp_u16;
typedef uint32_t fp_u32;
typedef uint64_t fp_u64;
#endif

// Addresses are held as the packet carries them, in four 32-bit words:
// IPv6 as its 16 bytes, IPv4 in the first word with the other three zero.
// `family` (4 or 6) tells them apart, so no IPv6 address can stand for an
// IPv4 one. Keys are zeroed whole before they are filled (the hash reads
// every byte, padding included).
#define FP_FAMILY_V4 4
#define FP_FAMILY_V6 6

// Client -> peer: a ChannelData datagram from `client` to a listening
// address `server`, on `channel`.
struct fp_client_key {
    fp_u32 client_ip[4];
    fp_u32 server_ip[4];
    fp_u16 client_port;
    fp_u16 server_port;
    fp_u16 channel;
    fp_u8 family;
    fp_u8 pad;
};

// ... leaves as a UDP datagram from the relayed address to the peer, in
// `family` (another family than the client's: RFC 6156 mixed families).
struct fp_client_value {
    fp_u32 relay_ip[4];
    fp_u32 peer_ip[4];
    fp_u16 relay_port;
    fp_u16 peer_port;
    fp_u8 family;
    fp_u8 pad[3];
    // Index into the counters map.
    fp_u32 counter;
    // Interface to send the result out of (TC: bpf_redirect_neigh; XDP:
    // bpf_fib_lookup then XDP_TX or bpf_redirect), or 0 to hand it to this
    // host's stack (the destination is local).
    fp_u32 egress_ifindex;
    fp_u32 pad2;
    // CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) after which the entry
    // forwards nothing: the channel, its permission or the allocation ended.
    fp_u64 expires_ns;
};

// Peer -> client: a UDP datagram from `peer` to a relayed address `relay`.
struct fp_peer_key {
    fp_u32 peer_ip[4];
    fp_u32 relay_ip[4];
    fp_u16 peer_port;
    fp_u16 relay_port;
    fp_u8 family;
    fp_u8 pad[3];
};

// ... leaves as ChannelData on `channel` from the listening address to the
// client, in `family`.
struct fp_peer_value {
    fp_u32 client_ip[4];
    fp_u32 server_ip[4];
    fp_u16 client_port;
    fp_u16 server_port;
    fp_u16 channel;
    fp_u8 family;
    fp_u8 pad;
    fp_u32 counter;
    // As in fp_client_value: 0 for local delivery.
    fp_u32 egress_ifindex;
    fp_u64 expires_ns;
};

// Per entry pair and per CPU: what the kernel relayed.
struct fp_counters {
    fp_u64 packets_to_peer;
    fp_u64 bytes_to_peer;
    fp_u64 packets_to_client;
    fp_u64 bytes_to_client;
};

// Per CPU: ChannelData that matched an entry but went to user space
// (length mismatch, padding, expired), by reason.
enum fp_passed_reason {
    FP_PASSED_LENGTH = 0,
    FP_PASSED_EXPIRED = 1,
    // Sent by a socket on this host and bound for another: relayed by user space.
    FP_PASSED_LOCAL_ORIGIN = 2,
    // An IPv4 datagram without a UDP checksum bound for IPv6 (where one is
    // required), one too big for the way out once rewritten, or one that
    // would change IP version on its way to a loopback address.
    FP_PASSED_UNFIT = 3,
    // XDP: bpf_fib_lookup gave no next hop (no neighbour entry yet, or
    // forwarding is off on the interface).
    FP_PASSED_NO_NEXT_HOP = 4,
    FP_PASSED_REASONS = 5,
};

#define FP_MAX_ENTRIES 65536

#endif
