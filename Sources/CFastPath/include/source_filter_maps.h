// The map the kernel source filter (bpf/source_filter.bpf.c) and uturnd
// share: sources whose requests the per-source limits are dropping, which
// the filter drops before they are queued on a listening socket. Addresses
// and ports in network byte order, as in the packet; the expiry in host order.
#ifndef UTURN_SOURCE_FILTER_MAPS_H
#define UTURN_SOURCE_FILTER_MAPS_H

#include "fastpath_maps.h"

// Sources the filter can hold at once. An LRU hash: a flood from more
// sources than this evicts the oldest blocks, whose packets then reach
// user space again (and are dropped there by the limiter, as without the
// filter).
#define SF_MAX_ENTRIES 65536

// One client transport address on one listening port. `source_ip` as in
// fastpath_maps.h: IPv6 as its 16 bytes, IPv4 in word 0 (the other three
// zero), `family` 4 or 6. The key is zeroed whole before it is filled (the
// hash reads every byte, padding included).
struct sf_key {
    fp_u32 source_ip[4];
    fp_u16 source_port;
    fp_u16 listen_port;
    fp_u8 family;
    fp_u8 pad[3];
};

// What a block drops. A source over the request limits loses everything
// (SF_SCOPE_ALL). A source sending datagrams that get no answer (ChannelData
// with no allocation, unparsable bytes) loses only datagrams that do not
// start with a STUN header (SF_SCOPE_NOT_STUN): its requests still reach
// the worker, so a client whose allocation is gone can allocate again at
// once, and the worker lifts the block when it does.
enum sf_scope {
    SF_SCOPE_ALL = 0,
    SF_SCOPE_NOT_STUN = 1,
};

// The value: CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns, the clock the
// workers read) until which datagrams from the key are dropped, and the
// scope of the block. Past `until` the entry lets them through and the
// program deletes it.
struct sf_value {
    fp_u64 until;
    fp_u32 scope;
    fp_u32 pad;
};

// Slots of the per-CPU counter array.
enum sf_counter {
    SF_DROPPED = 0,  // datagrams dropped because their source was blocked
    SF_COUNTERS = 1,
};

#endif
