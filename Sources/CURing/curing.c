// Intentionally small: see include/CURing.h. SwiftPM needs one source file
// per C target; the layout checks below guard what Swift relies on.
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>

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

_Static_assert(sizeof(struct io_uring_cqe) == 16, "plain 16-byte CQEs expected (no CQE32)");
_Static_assert(sizeof(struct io_uring_buf) == 16, "provided-buffer ring entry layout");
_Static_assert(sizeof(struct io_uring_recvmsg_out) == 16, "multishot RECVMSG header layout (see ReceivedMessage.swift)");
_Static_assert(sizeof(struct io_uring_getevents_arg) == 24, "IORING_ENTER_EXT_ARG argument layout");
_Static_assert(sizeof(struct __kernel_timespec) == 16, "kernel timespec is two 64-bit fields");
#include <stddef.h>
_Static_assert(offsetof(struct io_uring_probe, ops) == 16, "probe ops follow a 16-byte header (KernelFeatures.swift)");
_Static_assert(sizeof(struct io_uring_probe_op) == 8, "probe op entry layout");
