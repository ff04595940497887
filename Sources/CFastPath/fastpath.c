// libbpf glue for the kernel fast path; see include/CFastPath.h.
#include "CFastPath.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// enum bpf_attach_type values from kernel 6.6 (older uapi headers lack them).
#define UTURN_BPF_TCX_INGRESS 46

#define MAX_ATTACHMENTS 16

struct attachment {
    int ifindex;
    int link_fd;          // tcx or XDP link, or -1
    int legacy;           // attached through a clsact qdisc filter
    int created_qdisc;    // the clsact qdisc was ours
};

struct uturn_fastpath {
    struct bpf_object *object;
    int tc_fd, xdp_fd;
    int clients_fd, peers_fd, counters_fd, passed_fd;
    int attached;
    struct attachment attachments[MAX_ATTACHMENTS];
};

// libbpf's messages while loading (the verifier's log among them), kept so
// a failure can say why. Loading happens once, on one thread.
static char libbpf_messages[2048];

static int keep_message(enum libbpf_print_level level, const char *format, va_list args) {
    if (level == LIBBPF_DEBUG) return 0;
    size_t used = strlen(libbpf_messages);
    if (used + 1 < sizeof(libbpf_messages))
        vsnprintf(libbpf_messages + used, sizeof(libbpf_messages) - used, format, args);
    return 0;
}

static int fail(int rc, char *err, size_t errlen, const char *what) {
    if (err && errlen) {
        const char *extra = libbpf_messages[0] ? libbpf_messages : "";
        snprintf(err, errlen, "%s: %s%s%s", what, strerror(rc < 0 ? -rc : rc), extra[0] ? "; libbpf: " : "", extra);
        // One line: libbpf's messages end in newlines.
        for (char *c = err; *c; c++) if (*c == '\n') *c = ' ';
    }
    return rc < 0 ? rc : -rc;
}

int uturn_fastpath_load(const void *object, size_t size, struct uturn_fastpath **out, char *err, size_t errlen) {
    libbpf_messages[0] = 0;
    libbpf_set_print(keep_message);
    struct uturn_fastpath *fp = calloc(1, sizeof(*fp));
    if (!fp) return fail(-ENOMEM, err, errlen, "fast path");
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "uturn_fastpath");
    fp->object = bpf_object__open_mem(object, size, &opts);
    long open_error = libbpf_get_error(fp->object);
    if (open_error) {
        free(fp);
        return fail((int)open_error, err, errlen, "opening the BPF object");
    }
    int rc = bpf_object__load(fp->object);
    if (rc) {
        bpf_object__close(fp->object);
        free(fp);
        return fail(rc, err, errlen, "loading the BPF program (needs CAP_BPF and CAP_NET_ADMIN, or root)");
    }
    struct bpf_program *tc = bpf_object__find_program_by_name(fp->object, "uturn_fastpath_tc");
    struct bpf_program *xdp = bpf_object__find_program_by_name(fp->object, "uturn_fastpath_xdp");
    fp->tc_fd = tc ? bpf_program__fd(tc) : -1;
    fp->xdp_fd = xdp ? bpf_program__fd(xdp) : -1;
    fp->clients_fd = bpf_object__find_map_fd_by_name(fp->object, "fp_clients");
    fp->peers_fd = bpf_object__find_map_fd_by_name(fp->object, "fp_peers");
    fp->counters_fd = bpf_object__find_map_fd_by_name(fp->object, "fp_counters");
    fp->passed_fd = bpf_object__find_map_fd_by_name(fp->object, "fp_passed");
    if (fp->tc_fd < 0 || fp->xdp_fd < 0 || fp->clients_fd < 0 || fp->peers_fd < 0 || fp->counters_fd < 0 || fp->passed_fd < 0) {
        bpf_object__close(fp->object);
        free(fp);
        return fail(-ENOENT, err, errlen, "the BPF object lacks a program or map");
    }
    *out = fp;
    return 0;
}

int uturn_fastpath_attach_tc(struct uturn_fastpath *fp, int ifindex, const char **how, char *err, size_t errlen) {
    libbpf_messages[0] = 0;
    if (fp->attached == MAX_ATTACHMENTS) return fail(-ENOSPC, err, errlen, "too many interfaces");
    struct attachment *a = &fp->attachments[fp->attached];
    memset(a, 0, sizeof(*a));
    a->ifindex = ifindex;
    a->link_fd = bpf_link_create(fp->tc_fd, ifindex, UTURN_BPF_TCX_INGRESS, NULL);
    if (a->link_fd >= 0) {
        fp->attached++;
        *how = "tcx";
        return 0;
    }
    int link_error = errno;
    // Kernels before 6.6: a filter on the interface's clsact qdisc.
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    int rc = bpf_tc_hook_create(&hook);
    if (rc && rc != -EEXIST) return fail(rc, err, errlen, "creating the clsact qdisc");
    a->created_qdisc = rc == 0;
    LIBBPF_OPTS(bpf_tc_opts, tc, .prog_fd = fp->tc_fd, .handle = 0x7475, .priority = 1);
    rc = bpf_tc_attach(&hook, &tc);
    if (rc) {
        if (a->created_qdisc) {
            hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
            bpf_tc_hook_destroy(&hook);
        }
        char what[96];
        snprintf(what, sizeof(what), "attaching at TC ingress (tcx link: %s)", strerror(link_error));
        return fail(rc, err, errlen, what);
    }
    a->link_fd = -1;
    a->legacy = 1;
    fp->attached++;
    *how = "tc";
    return 0;
}

int uturn_fastpath_attach_xdp(struct uturn_fastpath *fp, int ifindex, const char **how, char *err, size_t errlen) {
    libbpf_messages[0] = 0;
    if (fp->attached == MAX_ATTACHMENTS) return fail(-ENOSPC, err, errlen, "too many interfaces");
    struct attachment *a = &fp->attachments[fp->attached];
    memset(a, 0, sizeof(*a));
    a->ifindex = ifindex;
    // No mode flag: the kernel attaches natively where the driver can, else
    // generically. A driver that has XDP but refuses this program (MTU,
    // LRO, ...) gets generic mode asked for explicitly.
    a->link_fd = bpf_link_create(fp->xdp_fd, ifindex, BPF_XDP, NULL);
    if (a->link_fd < 0) {
        int native_error = errno;
        LIBBPF_OPTS(bpf_link_create_opts, generic, .flags = XDP_FLAGS_SKB_MODE);
        a->link_fd = bpf_link_create(fp->xdp_fd, ifindex, BPF_XDP, &generic);
        if (a->link_fd < 0) {
            int generic_error = errno;
            char what[96];
            snprintf(what, sizeof(what), "attaching XDP (native: %s; generic)", strerror(native_error));
            return fail(-generic_error, err, errlen, what);
        }
    }
    LIBBPF_OPTS(bpf_xdp_query_opts, query);
    *how = "xdp";
    if (bpf_xdp_query(ifindex, 0, &query) == 0) {
        if (query.attach_mode == XDP_ATTACHED_DRV) *how = "xdp native";
        else if (query.attach_mode == XDP_ATTACHED_SKB) *how = "xdp generic";
        else if (query.attach_mode == XDP_ATTACHED_HW) *how = "xdp offloaded";
    }
    fp->attached++;
    return 0;
}

void uturn_fastpath_close(struct uturn_fastpath *fp) {
    if (!fp) return;
    for (int i = 0; i < fp->attached; i++) {
        struct attachment *a = &fp->attachments[i];
        if (a->link_fd >= 0) close(a->link_fd);
        if (a->legacy) {
            LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = a->ifindex, .attach_point = BPF_TC_INGRESS);
            LIBBPF_OPTS(bpf_tc_opts, tc, .handle = 0x7475, .priority = 1);
            bpf_tc_detach(&hook, &tc);
            if (a->created_qdisc) {
                hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
                bpf_tc_hook_destroy(&hook);
            }
        }
    }
    bpf_object__close(fp->object);
    free(fp);
}

int uturn_fastpath_clients_fd(const struct uturn_fastpath *fp) { return fp->clients_fd; }
int uturn_fastpath_peers_fd(const struct uturn_fastpath *fp) { return fp->peers_fd; }
int uturn_fastpath_counters_fd(const struct uturn_fastpath *fp) { return fp->counters_fd; }
int uturn_fastpath_passed_fd(const struct uturn_fastpath *fp) { return fp->passed_fd; }

static int result(int rc) { return rc < 0 ? -errno : 0; }

int uturn_fastpath_put_client(int fd, const struct fp_client_key *key, const struct fp_client_value *value) {
    return result(bpf_map_update_elem(fd, key, value, BPF_ANY));
}

int uturn_fastpath_delete_client(int fd, const struct fp_client_key *key) {
    return result(bpf_map_delete_elem(fd, key));
}

int uturn_fastpath_put_peer(int fd, const struct fp_peer_key *key, const struct fp_peer_value *value) {
    return result(bpf_map_update_elem(fd, key, value, BPF_ANY));
}

int uturn_fastpath_delete_peer(int fd, const struct fp_peer_key *key) {
    return result(bpf_map_delete_elem(fd, key));
}

// Per-CPU values come back one per possible CPU.
#define MAX_CPUS 1024

int uturn_fastpath_read_counters(int fd, uint32_t index, struct fp_counters *sum) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0 || cpus > MAX_CPUS) return -EINVAL;
    struct fp_counters values[cpus];
    if (bpf_map_lookup_elem(fd, &index, values) < 0) return -errno;
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < cpus; i++) {
        sum->packets_to_peer += values[i].packets_to_peer;
        sum->bytes_to_peer += values[i].bytes_to_peer;
        sum->packets_to_client += values[i].packets_to_client;
        sum->bytes_to_client += values[i].bytes_to_client;
    }
    return 0;
}

int uturn_fastpath_zero_counters(int fd, uint32_t index) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0 || cpus > MAX_CPUS) return -EINVAL;
    struct fp_counters values[cpus];
    memset(values, 0, sizeof(values));
    return result(bpf_map_update_elem(fd, &index, values, BPF_ANY));
}

uint64_t uturn_bpf_percpu_sum(int fd, uint32_t key) {
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0 || cpus > MAX_CPUS) return 0;
    uint64_t values[cpus];
    if (bpf_map_lookup_elem(fd, &key, values) < 0) return 0;
    uint64_t n = 0;
    for (int i = 0; i < cpus; i++) n += values[i];
    return n;
}

unsigned uturn_fastpath_ifindex(const char *name) { return if_nametoindex(name); }

int uturn_fastpath_route(int family, const uint32_t source[4], const uint32_t destination[4], uint32_t *ifindex) {
    if (family != 4 && family != 6) return -EAFNOSUPPORT;
    size_t size = family == 4 ? 4 : 16;
    struct {
        struct nlmsghdr header;
        struct rtmsg route;
        char attributes[64];
    } request;
    memset(&request, 0, sizeof(request));
    request.header.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
    request.header.nlmsg_type = RTM_GETROUTE;
    request.header.nlmsg_flags = NLM_F_REQUEST;
    request.header.nlmsg_seq = 1;
    request.route.rtm_family = family == 4 ? AF_INET : AF_INET6;
    request.route.rtm_dst_len = (unsigned char)(size * 8);
    request.route.rtm_src_len = (unsigned char)(size * 8);
    const struct { unsigned short type; const uint32_t *value; } attributes[2] = {{RTA_DST, destination}, {RTA_SRC, source}};
    for (int i = 0; i < 2; i++) {
        struct rtattr *a = (struct rtattr *)((char *)&request + NLMSG_ALIGN(request.header.nlmsg_len));
        a->rta_type = attributes[i].type;
        a->rta_len = RTA_LENGTH(size);
        memcpy(RTA_DATA(a), attributes[i].value, size);
        request.header.nlmsg_len = NLMSG_ALIGN(request.header.nlmsg_len) + RTA_ALIGN(a->rta_len);
    }
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -errno;
    int rc = -EIO;
    if (send(fd, &request, request.header.nlmsg_len, 0) < 0) {
        rc = -errno;
        goto done;
    }
    char answer[4096];
    ssize_t n = recv(fd, answer, sizeof(answer), 0);
    if (n < 0) {
        rc = -errno;
        goto done;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)answer; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_ERROR) {
            struct nlmsgerr *e = NLMSG_DATA(h);
            rc = e->error ? e->error : -EIO;
            goto done;
        }
        if (h->nlmsg_type != RTM_NEWROUTE) continue;
        struct rtmsg *r = NLMSG_DATA(h);
        if (r->rtm_type == RTN_LOCAL) {
            *ifindex = 0;
            rc = 0;
            goto done;
        }
        int length = RTM_PAYLOAD(h);
        for (struct rtattr *a = RTM_RTA(r); RTA_OK(a, length); a = RTA_NEXT(a, length)) {
            if (a->rta_type == RTA_OIF) {
                memcpy(ifindex, RTA_DATA(a), sizeof(uint32_t));
                rc = 0;
                goto done;
            }
        }
    }
done:
    close(fd);
    return rc;
}
