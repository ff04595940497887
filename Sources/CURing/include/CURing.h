// CURing: the part of liburing (and of the socket API around it) that Swift
// cannot import by itself. liburing's `static inline` helpers (io_uring_get_sqe,
// io_uring_prep_*, io_uring_cqe_seen, io_uring_buf_ring_add, ...) import and are
// called straight from Swift; only function-like macros and struct-layout
// assumptions live here. Every symbol is prefixed `curing_`.
#ifndef UTURN_CURING_H
#define UTURN_CURING_H

// System headers first, before <liburing.h>: liburing 2.3 defines
// _XOPEN_SOURCE/_GNU_SOURCE itself, and a system header first seen under
// those macros gets a different `fd_set` than Swift's Glibc module has, which
// clang's module checker rejects when both are imported.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include <liburing.h>

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
static inline size_t curing_cmsg_align(size_t len) { return CMSG_ALIGN(len); }

// IOSQE_* are defined as (1U << IOSQE_*_BIT) with the bit taken from an enum;
// Swift's macro importer gives up on the enum reference, so these come back
// as functions (inlined, so they cost nothing).
static inline unsigned char curing_iosqe_fixed_file(void) { return IOSQE_FIXED_FILE; }
static inline unsigned char curing_iosqe_io_link(void) { return IOSQE_IO_LINK; }
static inline unsigned char curing_iosqe_async(void) { return IOSQE_ASYNC; }
static inline unsigned char curing_iosqe_buffer_select(void) { return IOSQE_BUFFER_SELECT; }
static inline unsigned char curing_iosqe_cqe_skip_success(void) { return IOSQE_CQE_SKIP_SUCCESS; }

// EFD_* are defined through an enum in glibc's <bits/eventfd.h> that Swift's
// Glibc module does not surface.
static inline int curing_efd_cloexec(void) { return EFD_CLOEXEC; }
static inline int curing_efd_nonblock(void) { return EFD_NONBLOCK; }

// Thread placement and naming are GNU extensions that Swift's Glibc module
// hides; implemented in curing.c under _GNU_SOURCE. 0 on success, else errno.
int curing_pin_current_thread(int cpu);
int curing_name_current_thread(const char *name);

// The epoll backend (where io_uring is refused). recvmmsg, sendmmsg and
// accept4 are GNU extensions Swift's Glibc module hides, and struct
// epoll_event is packed on x86-64; curing.c wraps them. Each returns the
// call's result, or -errno on failure.
struct curing_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};
int curing_recvmmsg(int fd, struct curing_mmsghdr *messages, unsigned int count, int flags);
int curing_sendmmsg(int fd, struct curing_mmsghdr *messages, unsigned int count, int flags);
int curing_accept4(int fd);
int curing_set_nonblocking(int fd);
int curing_epoll_create(void);
int curing_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);
// Waits up to `timeout_ms` for at most `max` (<= 1024) events; fills `data`
// and `events` (parallel arrays) and returns how many, or -errno.
int curing_epoll_wait(int epfd, uint64_t *data, uint32_t *events, int max, int timeout_ms);
static inline uint32_t curing_epoll_in(void) { return 0x001; }    // EPOLLIN
static inline uint32_t curing_epoll_out(void) { return 0x004; }   // EPOLLOUT
static inline uint32_t curing_epoll_err(void) { return 0x008; }   // EPOLLERR
static inline uint32_t curing_epoll_hup(void) { return 0x010; }   // EPOLLHUP

#endif
