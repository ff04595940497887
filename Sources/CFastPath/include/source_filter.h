// CFastPath: the kernel source filter (bpf/source_filter.bpf.c, compiled
// and embedded at build time): loads it through libbpf, attaches it to
// listening sockets, writes blocks and reads its counter. Functions that can
// fail return 0 or a negative errno.
#ifndef UTURN_SOURCE_FILTER_H
#define UTURN_SOURCE_FILTER_H

#include <stddef.h>
#include <stdint.h>
#include "source_filter_maps.h"

struct uturn_source_filter;

// Opens and loads the object (`size` bytes at `object`): verifies the
// program and creates its maps. Needs CAP_BPF (or root); nothing is
// attached yet. On failure `err` says why (NUL-terminated, at most `errlen`).
int uturn_source_filter_load(const void *object, size_t size, struct uturn_source_filter **out, char *err, size_t errlen);

// Frees the program and maps (sockets it is attached to keep their copy
// until they close).
void uturn_source_filter_close(struct uturn_source_filter *sf);

int uturn_source_filter_program_fd(const struct uturn_source_filter *sf);
int uturn_source_filter_blocked_fd(const struct uturn_source_filter *sf);
int uturn_source_filter_counters_fd(const struct uturn_source_filter *sf);

// Attaches program `program_fd` to socket `socket_fd` (SO_ATTACH_BPF). The
// kernel detaches it when the socket closes.
int uturn_source_filter_attach(int socket_fd, int program_fd);

// Detaches whatever filter `socket_fd` has (SO_DETACH_BPF); none attached
// is not an error.
int uturn_source_filter_detach(int socket_fd);

// Blocks `key` until `until` (CLOCK_MONOTONIC ns), dropping what `scope`
// (enum sf_scope) names: one bpf() syscall.
int uturn_source_filter_block(int blocked_fd, const struct sf_key *key, uint64_t until, uint32_t scope);

// Lifts any block of `key` (none is not an error): one bpf() syscall.
int uturn_source_filter_unblock(int blocked_fd, const struct sf_key *key);

// Its counters are read with uturn_bpf_percpu_sum (CFastPath.h).

#endif
