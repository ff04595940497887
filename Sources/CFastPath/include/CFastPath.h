// CFastPath: loads uturn's kernel fast path (bpf/fastpath.bpf.c, compiled
// with clang -target bpf at build time and embedded in the binary) through
// libbpf, attaches it at TC ingress, and reads and writes its maps. Every
// function returns 0 or a negative errno, and writes what went wrong into
// `err` (NUL-terminated, at most `errlen` bytes).
#ifndef UTURN_CFASTPATH_H
#define UTURN_CFASTPATH_H

#include <stddef.h>
#include <stdint.h>
#include "fastpath_maps.h"
#include "source_filter.h"  // the kernel source filter (--kernel-source-filter)

struct uturn_fastpath;

// Opens and loads the object (`size` bytes at `object`): verifies the
// program and creates its maps. Needs CAP_BPF (or root) and, to attach, CAP_NET_ADMIN.
int uturn_fastpath_load(const void *object, size_t size, struct uturn_fastpath **out, char *err, size_t errlen);

// Attaches the program at TC ingress of interface `ifindex`: as a tcx link
// (kernel 6.6+; detached by the kernel when uturnd exits, even by a crash),
// else as a filter on a clsact qdisc (detached by uturn_fastpath_close).
// *how is set to "tcx" or "tc".
int uturn_fastpath_attach_tc(struct uturn_fastpath *fp, int ifindex, const char **how, char *err, size_t errlen);

// Attaches the program at XDP of interface `ifindex` as a bpf_link (native
// where the driver supports it, else generic). *how is set to "xdp native",
// "xdp generic" or "xdp".
int uturn_fastpath_attach_xdp(struct uturn_fastpath *fp, int ifindex, const char **how, char *err, size_t errlen);

// Detaches from every interface and frees everything.
void uturn_fastpath_close(struct uturn_fastpath *fp);

// The maps' descriptors (for the map calls below; valid until close).
int uturn_fastpath_clients_fd(const struct uturn_fastpath *fp);
int uturn_fastpath_peers_fd(const struct uturn_fastpath *fp);
int uturn_fastpath_counters_fd(const struct uturn_fastpath *fp);
int uturn_fastpath_passed_fd(const struct uturn_fastpath *fp);

int uturn_fastpath_put_client(int fd, const struct fp_client_key *key, const struct fp_client_value *value);
int uturn_fastpath_delete_client(int fd, const struct fp_client_key *key);
int uturn_fastpath_put_peer(int fd, const struct fp_peer_key *key, const struct fp_peer_value *value);
int uturn_fastpath_delete_peer(int fd, const struct fp_peer_key *key);

// Counters of entry pair `index`, summed over CPUs; zeroing them.
int uturn_fastpath_read_counters(int fd, uint32_t index, struct fp_counters *sum);
int uturn_fastpath_zero_counters(int fd, uint32_t index);
// Slot `key` of a per-CPU array of 64-bit counters, summed over CPUs; 0 if
// unreadable. The fast path's fp_passed (key: fp_passed_reason) and the
// source filter's sf_counters (key: sf_counter).
uint64_t uturn_bpf_percpu_sum(int fd, uint32_t key);

// Where this host sends a datagram from `source` to `destination` (family
// 4 or 6, addresses as in the maps: network byte order, IPv4 in word 0):
// *ifindex gets the outgoing interface, or 0 when the destination is this
// host. Asks the routing table over rtnetlink (RTM_GETROUTE, as `ip route
// get DST from SRC` does). 0 or a negative errno.
int uturn_fastpath_route(int family, const uint32_t source[4], const uint32_t destination[4], uint32_t *ifindex);

// Interface index of `name`, or 0.
unsigned uturn_fastpath_ifindex(const char *name);

#endif
