// CURing: the part of liburing (and of the socket API around it) that Swift
// cannot import by itself. liburing's `static inline` helpers (io_uring_get_sqe,
// io_uring_prep_*, io_uring_cqe_seen, io_uring_buf_ring_add, ...) import and are
// called straight from Swift; only function-like macros and struct-layout
// assumptions live here. Every symbol is prefixed `curing_`.
#ifndef UTURN_CURING_H
#define UTURN_CURING_H

#include <liburing.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

static inline int curing_udp_segment(void) { return UDP_SEGMENT; }
static inline int curing_udp_gro(void) { return UDP_GRO; }

// CMSG_* are macros; Swift sees none of them.
static inline struct cmsghdr *curing_cmsg_firsthdr(struct msghdr *m) { return CMSG_FIRSTHDR(m); }
static inline struct cmsghdr *curing_cmsg_nxthdr(struct msghdr *m, struct cmsghdr *c) { return CMSG_NXTHDR(m, c); }
static inline unsigned char *curing_cmsg_data(struct cmsghdr *c) { return CMSG_DATA(c); }
static inline size_t curing_cmsg_space(size_t len) { return CMSG_SPACE(len); }
static inline size_t curing_cmsg_len(size_t len) { return CMSG_LEN(len); }

#endif
