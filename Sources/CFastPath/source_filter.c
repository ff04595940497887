// libbpf glue for the kernel source filter; see include/source_filter.h.
#include "source_filter.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct uturn_source_filter {
    struct bpf_object *object;
    int program_fd, blocked_fd, counters_fd;
};

// libbpf's own messages are not kept here (fastpath.c keeps them for the
// fast path's verifier log); the error names the step and the errno.
static int silent(enum libbpf_print_level level, const char *format, va_list args) {
    (void)level;
    (void)format;
    (void)args;
    return 0;
}

static int fail(int rc, char *err, size_t errlen, const char *what) {
    if (err && errlen) snprintf(err, errlen, "%s: %s", what, strerror(rc < 0 ? -rc : rc));
    return rc < 0 ? rc : -rc;
}

int uturn_source_filter_load(const void *object, size_t size, struct uturn_source_filter **out, char *err, size_t errlen) {
    libbpf_print_fn_t previous = libbpf_set_print(silent);
    struct uturn_source_filter *sf = calloc(1, sizeof(*sf));
    int rc = 0;
    if (!sf) {
        rc = fail(-ENOMEM, err, errlen, "source filter");
        goto done;
    }
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "uturn_source_filter");
    sf->object = bpf_object__open_mem(object, size, &opts);
    long open_error = libbpf_get_error(sf->object);
    if (open_error) {
        free(sf);
        rc = fail((int)open_error, err, errlen, "opening the BPF object");
        goto done;
    }
    rc = bpf_object__load(sf->object);
    if (rc) {
        bpf_object__close(sf->object);
        free(sf);
        rc = fail(rc, err, errlen, "loading the BPF socket filter (needs CAP_BPF, or root)");
        goto done;
    }
    struct bpf_program *program = bpf_object__find_program_by_name(sf->object, "uturn_source_filter");
    sf->program_fd = program ? bpf_program__fd(program) : -1;
    sf->blocked_fd = bpf_object__find_map_fd_by_name(sf->object, "sf_blocked");
    sf->counters_fd = bpf_object__find_map_fd_by_name(sf->object, "sf_counters");
    if (sf->program_fd < 0 || sf->blocked_fd < 0 || sf->counters_fd < 0) {
        bpf_object__close(sf->object);
        free(sf);
        rc = fail(-ENOENT, err, errlen, "the BPF object lacks its program or a map");
        goto done;
    }
    *out = sf;
done:
    libbpf_set_print(previous);
    return rc;
}

void uturn_source_filter_close(struct uturn_source_filter *sf) {
    if (!sf) return;
    bpf_object__close(sf->object);
    free(sf);
}

int uturn_source_filter_program_fd(const struct uturn_source_filter *sf) { return sf->program_fd; }
int uturn_source_filter_blocked_fd(const struct uturn_source_filter *sf) { return sf->blocked_fd; }
int uturn_source_filter_counters_fd(const struct uturn_source_filter *sf) { return sf->counters_fd; }

int uturn_source_filter_attach(int socket_fd, int program_fd) {
    return setsockopt(socket_fd, SOL_SOCKET, SO_ATTACH_BPF, &program_fd, sizeof(program_fd)) < 0 ? -errno : 0;
}

int uturn_source_filter_detach(int socket_fd) {
    int unused = 0;
    if (setsockopt(socket_fd, SOL_SOCKET, SO_DETACH_BPF, &unused, sizeof(unused)) == 0 || errno == ENOENT) return 0;
    return -errno;
}

int uturn_source_filter_block(int blocked_fd, const struct sf_key *key, uint64_t until, uint32_t scope) {
    struct sf_value value = {.until = until, .scope = scope};
    return bpf_map_update_elem(blocked_fd, key, &value, BPF_ANY) < 0 ? -errno : 0;
}

int uturn_source_filter_unblock(int blocked_fd, const struct sf_key *key) {
    if (bpf_map_delete_elem(blocked_fd, key) == 0 || errno == ENOENT) return 0;
    return -errno;
}
