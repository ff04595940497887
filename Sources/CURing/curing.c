// Intentionally small: see include/CURing.h. SwiftPM needs one source file
// per C target; the layout checks below guard what Swift relies on.
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>

#include "CURing.h"

int curing_pin_current_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int curing_name_current_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int curing_recvmmsg(int fd, struct curing_mmsghdr *messages, unsigned int count, int flags) {
    int r = recvmmsg(fd, (struct mmsghdr *)messages, count, flags, NULL);
    return r < 0 ? -errno : r;
}

int curing_sendmmsg(int fd, struct curing_mmsghdr *messages, unsigned int count, int flags) {
    int r = sendmmsg(fd, (struct mmsghdr *)messages, count, flags);
    return r < 0 ? -errno : r;
}

int curing_accept4(int fd) {
    int r = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    return r < 0 ? -errno : r;
}

int curing_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return -errno;
    return 0;
}

int curing_epoll_create(void) {
    int r = epoll_create1(EPOLL_CLOEXEC);
    return r < 0 ? -errno : r;
}

int curing_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event e = {.events = events, .data.u64 = data};
    return epoll_ctl(epfd, op, fd, &e) < 0 ? -errno : 0;
}

int curing_epoll_wait(int epfd, uint64_t *data, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event e[1024];
    if (max > 1024) max = 1024;
    int n = epoll_wait(epfd, e, max, timeout_ms);
    if (n < 0) return -errno;
    for (int i = 0; i < n; i++) {
        data[i] = e[i].data.u64;
        events[i] = e[i].events;
    }
    return n;
}

_Static_assert(sizeof(struct curing_mmsghdr) == sizeof(struct mmsghdr), "mmsghdr layout");
_Static_assert(EPOLLIN == 0x001 && EPOLLOUT == 0x004 && EPOLLERR == 0x008 && EPOLLHUP == 0x010, "epoll event bits");
_Static_assert(EPOLL_CTL_ADD == 1 && EPOLL_CTL_DEL == 2 && EPOLL_CTL_MOD == 3, "epoll_ctl ops");
_Static_assert(sizeof(struct io_uring_cqe) == 16, "plain 16-byte CQEs expected (no CQE32)");
_Static_assert(sizeof(struct io_uring_buf) == 16, "provided-buffer ring entry layout");
_Static_assert(sizeof(struct io_uring_recvmsg_out) == 16, "multishot RECVMSG header layout (see ReceivedMessage.swift)");
_Static_assert(sizeof(struct io_uring_getevents_arg) == 24, "IORING_ENTER_EXT_ARG argument layout");
_Static_assert(sizeof(struct __kernel_timespec) == 16, "kernel timespec is two 64-bit fields");
#include <stddef.h>
_Static_assert(offsetof(struct io_uring_probe, ops) == 16, "probe ops follow a 16-byte header (KernelFeatures.swift)");
_Static_assert(sizeof(struct io_uring_probe_op) == 8, "probe op entry layout");
