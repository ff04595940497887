/*
 * turnflood: a closed-loop TURN/UDP load generator for relay benchmarks.
 *
 * For each of N flows: a UDP socket on 127.0.0.1 connected to the relay
 * Allocates with long-term credentials (401 -> REALM/NONCE -> Allocate with
 * USERNAME/REALM/NONCE/MESSAGE-INTEGRITY, key = MD5(user:realm:pass)), then
 * ChannelBinds channel 0x4000 to the echo peer 127.0.0.1:PEER_PORT. An echo
 * thread (same process) answers every datagram it gets on PEER_PORT to its
 * source, i.e. to the flow's relayed address. The main thread then keeps up
 * to WINDOW ChannelData datagrams in flight (round-robin over the flows, sent
 * with sendmmsg) and counts replies that come back: delivered round trips.
 *
 * If no reply arrives for --timeout-ms while datagrams are in flight, they are
 * written off as lost and a new "epoch" starts (every payload carries its
 * epoch, so late replies of an old epoch are counted but free no window).
 *
 * With --relay-pid PID it reads utime+stime of PID from /proc/PID/stat at the
 * start and end of the measured window and reports relay CPU per round trip
 * (and CPU 0 / CPU 1 busy from /proc/stat over the same window).
 *
 * Harness shapes (independent):
 *   --gso  the client sends its flood in trains: one sendmsg with a
 *          UDP_SEGMENT cmsg carries up to --train (default 32) equal-size
 *          ChannelData frames (segment size 4 + payload). The echo peer sets
 *          UDP_GRO, walks each received train by its segment size, and echoes
 *          runs of equal-size datagrams from one source as GSO trains too.
 *   --gro  the client sockets set UDP_GRO: a receive may hold a train of
 *          ChannelData frames (each with its own 4-byte header), walked by
 *          the UDP_GRO segment size; every frame counts as one round trip.
 * The window counts datagrams, whatever the shape. The summary says which
 * shape ran ("harness": "single" | "gso" | "gro" | "gso+gro").
 *
 * --no-turn skips Allocate/ChannelBind and sends ChannelData straight to
 * --port: for the bare reflector scripts/bench/cdreflect.c (harness ceiling).
 *
 * Output: "t=N rt=R sent=S" once per measured second, then one summary line
 * starting with "summary {" (JSON). Loopback only: the relay host must be
 * 127.0.0.1 (or another 127/8 address).
 *
 * Build: cc -O2 -o .build-bench-c/turnflood scripts/bench/turnflood.c -lcrypto -lpthread
 * (udpbatch.h, next to this file, holds the GRO receive / GSO send batching)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "udpbatch.h"

#define MAX_FLOWS 64
#define BATCH 64
#define MAX_PAYLOAD 1400
#define CHANNEL 0x4000
#define MAGIC 0x2112A442u
#define SOCK_BUF (4 << 20)

/* ---------------------------------------------------------------- options */

static struct {
	const char *host, *user, *pass, *realm;
	int port, peer_port, flows, window, payload, timeout_ms, relay_pid;
	double secs, warmup;
	int gso, gro, train, no_turn;
} opt = { "127.0.0.1", "bench", "bench", "bench.local", 0, 0, 1, 256, 120, 20, 0, 10, 2, 0, 0, 32, 0 };

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void fail(const char *msg)
{
	fprintf(stderr, "turnflood: %s\n", msg);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static struct sockaddr_in addr_of(const char *host, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		fail("bad IPv4 address");
	if ((ntohl(a.sin_addr.s_addr) >> 24) != 127)
		fail("loopback (127.0.0.0/8) only");
	return a;
}

static int udp_socket(int bind_port)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0)
		die("socket");
	int sz = SOCK_BUF;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	struct sockaddr_in a = addr_of("127.0.0.1", bind_port);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind");
	return fd;
}

/* ------------------------------------------------------------ STUN / TURN */

struct msg {
	uint8_t b[1024];
	size_t len;
};

static void put16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void msg_start(struct msg *m, uint16_t type)
{
	put16(m->b, type);
	put16(m->b + 2, 0);
	put32(m->b + 4, MAGIC);
	for (int i = 8; i < 20; i++)
		m->b[i] = (uint8_t)rand();
	m->len = 20;
}

static void msg_attr(struct msg *m, uint16_t type, const void *v, size_t n)
{
	put16(m->b + m->len, type);
	put16(m->b + m->len + 2, (uint16_t)n);
	memcpy(m->b + m->len + 4, v, n);
	size_t padded = (n + 3) & ~(size_t)3;
	memset(m->b + m->len + 4 + n, 0, padded - n);
	m->len += 4 + padded;
	put16(m->b + 2, (uint16_t)(m->len - 20));
}

/* XOR-PEER-ADDRESS value for an IPv4 address (network order in a). */
static void xor_addr(uint8_t v[8], const struct sockaddr_in *a)
{
	v[0] = 0;
	v[1] = 1; /* IPv4 */
	put16(v + 2, ntohs(a->sin_port) ^ (MAGIC >> 16));
	put32(v + 4, ntohl(a->sin_addr.s_addr) ^ MAGIC);
}

struct creds {
	char realm[256], nonce[256];
	uint8_t key[16];
};

/* USERNAME, REALM, NONCE and MESSAGE-INTEGRITY (HMAC-SHA1, long-term key). */
static void msg_auth(struct msg *m, const struct creds *c)
{
	msg_attr(m, 0x0006, opt.user, strlen(opt.user));
	msg_attr(m, 0x0014, c->realm, strlen(c->realm));
	msg_attr(m, 0x0015, c->nonce, strlen(c->nonce));
	put16(m->b + 2, (uint16_t)(m->len - 20 + 24)); /* length as if MI were there */
	uint8_t mac[20];
	unsigned maclen = 0;
	HMAC(EVP_sha1(), c->key, 16, m->b, m->len, mac, &maclen);
	msg_attr(m, 0x0008, mac, 20);
}

static void derive_key(struct creds *c)
{
	char s[768];
	int n = snprintf(s, sizeof s, "%s:%s:%s", opt.user, c->realm, opt.pass);
	unsigned len = 0;
	EVP_Digest(s, (size_t)n, c->key, &len, EVP_md5(), NULL);
}

/* Find attribute type in a response; returns its value and sets *n, or NULL. */
static const uint8_t *find_attr(const uint8_t *b, size_t len, uint16_t type, size_t *n)
{
	size_t off = 20, end = 20 + get16(b + 2);
	if (end > len)
		return NULL;
	while (off + 4 <= end) {
		uint16_t t = get16(b + off), l = get16(b + off + 2);
		if (off + 4 + l > end)
			return NULL;
		if (t == type) {
			*n = l;
			return b + off + 4;
		}
		off += 4 + (((size_t)l + 3) & ~(size_t)3);
	}
	return NULL;
}

/*
 * Send request type (with attributes from add(), then auth if we have a
 * nonce), retrying on timeout and on 401/438 with the new REALM/NONCE.
 * Returns the success response length in resp.
 */
static size_t transact(int fd, struct creds *c, uint16_t type,
		       void (*add)(struct msg *, void *), void *arg, uint8_t *resp, size_t cap)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		struct msg m;
		msg_start(&m, type);
		add(&m, arg);
		if (c->nonce[0])
			msg_auth(&m, c);
		if (send(fd, m.b, m.len, 0) < 0)
			die("send request");
		struct pollfd p = { .fd = fd, .events = POLLIN };
		for (;;) {
			int r = poll(&p, 1, 500);
			if (r < 0 && errno != EINTR)
				die("poll");
			if (r <= 0)
				break; /* timeout: resend */
			ssize_t n = recv(fd, resp, cap, 0);
			if (n < 20 || memcmp(resp + 8, m.b + 8, 12))
				continue; /* not our transaction */
			uint16_t rt = get16(resp);
			if (rt == (type | 0x0100))
				return (size_t)n;
			if (rt != (type | 0x0110))
				fail("unexpected response type");
			size_t l;
			const uint8_t *ec = find_attr(resp, (size_t)n, 0x0009, &l);
			int code = ec && l >= 4 ? ec[2] * 100 + ec[3] : 0;
			const uint8_t *realm = find_attr(resp, (size_t)n, 0x0014, &l);
			size_t rl = l;
			const uint8_t *nonce = find_attr(resp, (size_t)n, 0x0015, &l);
			if ((code == 401 || code == 438) && nonce && l < sizeof c->nonce) {
				memcpy(c->nonce, nonce, l);
				c->nonce[l] = 0;
				if (realm && rl < sizeof c->realm) {
					memcpy(c->realm, realm, rl);
					c->realm[rl] = 0;
				}
				derive_key(c);
				if (code == 401 && attempt > 2)
					fail("401 again: wrong user, password or realm?");
				break; /* retry with credentials */
			}
			fprintf(stderr, "turnflood: request 0x%04x failed with error %d\n", type, code);
			exit(1);
		}
	}
	fail("no response from relay");
	return 0;
}

static void add_allocate(struct msg *m, void *arg)
{
	(void)arg;
	uint8_t udp[4] = { 17, 0, 0, 0 };
	msg_attr(m, 0x0019, udp, 4); /* REQUESTED-TRANSPORT */
}

static void add_channel_bind(struct msg *m, void *arg)
{
	uint8_t ch[4] = { CHANNEL >> 8, CHANNEL & 0xff, 0, 0 }, pa[8];
	msg_attr(m, 0x000C, ch, 4); /* CHANNEL-NUMBER */
	xor_addr(pa, arg);
	msg_attr(m, 0x0012, pa, 8); /* XOR-PEER-ADDRESS */
}

/* ------------------------------------------------------------- echo peer */

static volatile int stop_echo;
static unsigned long long echoed, echo_rx_msgs, echo_rx_dg;
static struct txbatch echo_tb;

/*
 * Send every datagram back to its source. With --gso the socket has UDP_GRO
 * (a receive may be a train) and runs of equal-size datagrams from one
 * source go back as one UDP_SEGMENT send; without it, one send per datagram.
 */
static void *echo_main(void *arg)
{
	int fd = *(int *)arg;
	static struct rxbatch rb;
	struct txbatch *tb = &echo_tb;
	tx_init(tb, opt.gso, opt.gso ? TX_MAX_SEGS : 1);
	if (opt.gso && set_udp_gro(fd) < 0)
		die("setsockopt UDP_GRO (echo)");
	struct timeval tv = { 0, 100000 }; /* wake up now and then to see stop_echo */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	while (!stop_echo) {
		int n = rx_recv(fd, &rb, MSG_WAITFORONE, opt.gso);
		if (n <= 0)
			continue;
		echo_rx_msgs += (unsigned)n;
		for (int i = 0; i < n; i++) {
			unsigned len = rb.mm[i].msg_len, seg = rx_seg(&rb, i);
			if (rb.mm[i].msg_hdr.msg_flags & MSG_TRUNC)
				continue;
			if (len == 0)
				continue;
			for (unsigned off = 0; off < len; off += seg) {
				if (tx_full(tb))
					__atomic_fetch_add(&echoed, (unsigned long long)tx_flush(tb, fd), __ATOMIC_RELAXED);
				tx_add(tb, &rb.from[i], NULL, rb.buf[i] + off, len - off < seg ? len - off : seg);
				echo_rx_dg++;
			}
		}
		/* dropped sends: the client writes them off */
		__atomic_fetch_add(&echoed, (unsigned long long)tx_flush(tb, fd), __ATOMIC_RELAXED);
	}
	return NULL;
}

/* ------------------------------------------------------------ CPU probes */

static long long proc_ticks(int pid)
{
	char path[64], s[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(s, 1, sizeof s - 1, f);
	fclose(f);
	s[n] = 0;
	char *p = strrchr(s, ')'); /* comm may hold spaces */
	unsigned long long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (long long)(ut + st);
}

/* busy and total jiffies of CPU cpu from /proc/stat */
static void cpu_jiffies(int cpu, unsigned long long *busy, unsigned long long *total)
{
	char line[512], want[16];
	snprintf(want, sizeof want, "cpu%d ", cpu);
	*busy = *total = 0;
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, want, strlen(want)))
			continue;
		unsigned long long v[10] = { 0 };
		sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
		       &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
		for (int i = 0; i < 8; i++) /* guest time is already in user */
			*total += v[i];
		*busy = *total - v[3] - v[4]; /* minus idle and iowait */
	}
	fclose(f);
}

static int cmp_u64(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
	return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
	fprintf(stderr,
		"usage: turnflood --port P --peer-port Q [--host 127.0.0.1] [--user U] [--password W]\n"
		"                 [--realm R] [--seconds 10] [--warmup 2] [--payload 120] [--window 256]\n"
		"                 [--flows 1] [--timeout-ms 20] [--relay-pid PID]\n"
		"                 [--gso] [--gro] [--train 32] [--no-turn]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "user", 1, 0, 'u' },
		{ "password", 1, 0, 'w' }, { "realm", 1, 0, 'r' }, { "peer-port", 1, 0, 'q' },
		{ "seconds", 1, 0, 's' }, { "warmup", 1, 0, 'W' }, { "payload", 1, 0, 'b' },
		{ "window", 1, 0, 'n' }, { "flows", 1, 0, 'f' }, { "timeout-ms", 1, 0, 't' },
		{ "relay-pid", 1, 0, 'P' }, { "gso", 0, 0, 'G' }, { "gro", 0, 0, 'R' },
		{ "train", 1, 0, 'T' }, { "no-turn", 0, 0, 'N' }, { 0, 0, 0, 0 }
	};
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'h': opt.host = optarg; break;
		case 'p': opt.port = atoi(optarg); break;
		case 'u': opt.user = optarg; break;
		case 'w': opt.pass = optarg; break;
		case 'r': opt.realm = optarg; break;
		case 'q': opt.peer_port = atoi(optarg); break;
		case 's': opt.secs = atof(optarg); break;
		case 'W': opt.warmup = atof(optarg); break;
		case 'b': opt.payload = atoi(optarg); break;
		case 'n': opt.window = atoi(optarg); break;
		case 'f': opt.flows = atoi(optarg); break;
		case 't': opt.timeout_ms = atoi(optarg); break;
		case 'P': opt.relay_pid = atoi(optarg); break;
		case 'G': opt.gso = 1; break;
		case 'R': opt.gro = 1; break;
		case 'T': opt.train = atoi(optarg); break;
		case 'N': opt.no_turn = 1; break;
		default: usage();
		}
	}
	if (optind != argc || opt.port <= 0 || opt.peer_port <= 0 || opt.secs < 1 || opt.warmup < 0 ||
	    opt.payload < 12 || opt.payload > MAX_PAYLOAD || opt.window < 1 || opt.flows < 1 ||
	    opt.flows > MAX_FLOWS || opt.timeout_ms < 1 || opt.train < 1 || opt.train > TX_MAX_SEGS)
		usage();
	if ((size_t)opt.train * (4 + (size_t)opt.payload) > TX_GSO_BYTES)
		opt.train = (int)(TX_GSO_BYTES / (4 + (size_t)opt.payload));
	const char *harness = opt.gso && opt.gro ? "gso+gro" : opt.gso ? "gso" : opt.gro ? "gro" : "single";
	srand((unsigned)getpid() ^ (unsigned)time(NULL));

	struct sockaddr_in relay = addr_of(opt.host, opt.port), peer = addr_of("127.0.0.1", opt.peer_port);
	int peer_fd = udp_socket(opt.peer_port);
	pthread_t echo_thread;
	if (pthread_create(&echo_thread, NULL, echo_main, &peer_fd))
		fail("pthread_create");

	/* Allocate + ChannelBind on every flow. */
	int fds[MAX_FLOWS];
	for (int i = 0; i < opt.flows; i++) {
		fds[i] = udp_socket(0);
		if (connect(fds[i], (struct sockaddr *)&relay, sizeof relay) < 0)
			die("connect");
		if (opt.gro && set_udp_gro(fds[i]) < 0)
			die("setsockopt UDP_GRO (client)");
		if (opt.no_turn)
			continue; /* bare reflector: no Allocate, no ChannelBind */
		struct creds cr = { .nonce = "" };
		snprintf(cr.realm, sizeof cr.realm, "%s", opt.realm);
		uint8_t resp[2048];
		size_t n = transact(fds[i], &cr, 0x0003, add_allocate, NULL, resp, sizeof resp), l;
		const uint8_t *ra = find_attr(resp, n, 0x0016, &l); /* XOR-RELAYED-ADDRESS */
		if (!ra || l != 8 || ra[1] != 1)
			fail("Allocate success without an IPv4 XOR-RELAYED-ADDRESS");
		struct in_addr ia = { htonl(((uint32_t)ra[4] << 24 | ra[5] << 16 | ra[6] << 8 | ra[7]) ^ MAGIC) };
		fprintf(stderr, "flow %d: relayed address %s:%u\n", i, inet_ntoa(ia),
			(unsigned)(get16(ra + 2) ^ (MAGIC >> 16)));
		transact(fds[i], &cr, 0x0009, add_channel_bind, &peer, resp, sizeof resp);
	}

	/*
	 * BATCH ChannelData frames back to back in one buffer (so that a GSO
	 * train is one contiguous iovec): header, epoch (4 B), sequence (8 B),
	 * filler. Without --gso each frame is its own sendmmsg message.
	 */
	size_t dlen = 4 + (size_t)opt.payload; /* payload is sent unpadded (UDP: padding optional) */
	static uint8_t txbuf[BATCH * (4 + MAX_PAYLOAD)];
	static struct rxbatch rb;
	static struct txbatch tb;
	tx_init(&tb, opt.gso, opt.gso ? opt.train : 1);
	for (int i = 0; i < BATCH; i++) {
		uint8_t *f = txbuf + (size_t)i * dlen;
		put16(f, CHANNEL);
		put16(f + 2, (uint16_t)opt.payload);
		for (size_t k = 16; k < dlen; k++)
			f[k] = (uint8_t)k;
	}
	unsigned long long client_rx_msgs = 0, client_rx_dg = 0;

	uint32_t epoch = 1;
	uint64_t seq = 0;
	long inflight = 0;
	int rr = 0, nsamples = 0, max_samples = (int)opt.secs + 2;
	unsigned long long *samples = calloc((size_t)max_samples, sizeof *samples);
	unsigned long long sec_rt = 0, sec_sent = 0, sent = 0, received = 0, late = 0, lost = 0,
			   bad = 0, timeouts = 0, send_fail = 0;
	double t0 = now_s(), mstart = t0 + opt.warmup, mend = mstart + opt.secs, next_tick = mstart + 1;
	double last_rx = t0;
	int measuring = 0;
	long long relay_a = -1, relay_b = -1;
	unsigned long long b0a = 0, t0a = 0, b1a = 0, t1a = 0, b0b, t0b, b1b, t1b;
	struct pollfd pfd[MAX_FLOWS];
	for (int i = 0; i < opt.flows; i++)
		pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };

	for (;;) {
		double t = now_s();
		if (!measuring && t >= mstart) {
			measuring = 1;
			sec_rt = sec_sent = 0;
			if (opt.relay_pid)
				relay_a = proc_ticks(opt.relay_pid);
			cpu_jiffies(0, &b0a, &t0a);
			cpu_jiffies(1, &b1a, &t1a);
		}
		if (measuring && t >= next_tick) {
			printf("t=%d rt=%llu sent=%llu\n", nsamples + 1, sec_rt, sec_sent);
			fflush(stdout);
			samples[nsamples++] = sec_rt;
			sec_rt = sec_sent = 0;
			next_tick += 1;
		}
		if (t >= mend)
			break;

		/* Fill the window: up to BATCH datagrams per sendmmsg, next flow each time. */
		while (inflight < opt.window) {
			int k = (int)(opt.window - inflight);
			if (k > BATCH)
				k = BATCH;
			for (int i = 0; i < k; i++) {
				uint8_t *f = txbuf + (size_t)i * dlen;
				memcpy(f + 4, &epoch, 4);
				memcpy(f + 8, &seq, 8);
				seq++;
				tx_add(&tb, &relay, NULL, f, (unsigned)dlen);
			}
			int s = tx_flush(&tb, fds[rr]); /* datagrams, not messages */
			rr = (rr + 1) % opt.flows;
			if (s <= 0) {
				send_fail++;
				break;
			}
			inflight += s;
			if (measuring) {
				sent += (unsigned)s;
				sec_sent += (unsigned)s;
			}
		}

		/* Wait for replies; write off the window if none come for timeout_ms. */
		int r = poll(pfd, (nfds_t)opt.flows, opt.timeout_ms);
		if (r < 0 && errno != EINTR)
			die("poll");
		if (r <= 0) {
			if (now_s() - last_rx >= opt.timeout_ms * 1e-3 && inflight > 0) {
				lost += (unsigned long long)inflight;
				timeouts++;
				inflight = 0;
				epoch++;
			}
			continue;
		}
		for (int f = 0; f < opt.flows; f++) {
			if (!(pfd[f].revents & POLLIN))
				continue;
			for (;;) {
				int n = rx_recv(fds[f], &rb, MSG_DONTWAIT, opt.gro);
				if (n <= 0)
					break;
				client_rx_msgs += (unsigned)n;
				for (int i = 0; i < n; i++) {
					/* with --gro one receive may be a train: walk it frame by frame */
					unsigned len = rb.mm[i].msg_len, seg = rx_seg(&rb, i);
					if (len == 0) {
						bad++;
						continue;
					}
					for (unsigned off = 0; off < len; off += seg) {
						const uint8_t *fr = rb.buf[i] + off;
						unsigned fl = len - off < seg ? len - off : seg;
						uint32_t ep;
						client_rx_dg++;
						if (fl < dlen || get16(fr) != CHANNEL || get16(fr + 2) != opt.payload) {
							bad++;
							continue;
						}
						memcpy(&ep, fr + 4, 4);
						if (ep == epoch)
							inflight--;
						else
							late++;
						if (measuring) {
							received++;
							sec_rt++;
						}
					}
				}
				last_rx = now_s();
				if (n < RX_MSGS)
					break;
			}
		}
	}

	if (opt.relay_pid)
		relay_b = proc_ticks(opt.relay_pid);
	cpu_jiffies(0, &b0b, &t0b);
	cpu_jiffies(1, &b1b, &t1b);
	stop_echo = 1;
	pthread_join(echo_thread, NULL);

	unsigned long long sorted[64 + 1024];
	int ns = nsamples < 1024 ? nsamples : 1024;
	memcpy(sorted, samples, (size_t)ns * sizeof *samples);
	qsort(sorted, (size_t)ns, sizeof *sorted, cmp_u64);
	double median = ns == 0 ? 0 : ns % 2 ? (double)sorted[ns / 2] : (sorted[ns / 2 - 1] + sorted[ns / 2]) / 2.0;
	double hz = (double)sysconf(_SC_CLK_TCK);
	double relay_cpu_us = relay_a >= 0 && relay_b >= 0 ? (double)(relay_b - relay_a) / hz * 1e6 : -1;

	printf("summary {\"harness\": \"%s\", \"train\": %d, \"no_turn\": %s, \"rt_per_s_median\": %.0f, \"rt_per_s_mean\": %.0f, \"samples\": [", harness, opt.gso ? opt.train : 1,
	       opt.no_turn ? "true" : "false", median, received / opt.secs);
	for (int i = 0; i < nsamples; i++)
		printf("%s%llu", i ? ", " : "", samples[i]);
	printf("], \"seconds\": %g, \"flows\": %d, \"window\": %d, \"payload\": %d, \"sent\": %llu, "
	       "\"received\": %llu, \"late\": %llu, \"bad\": %llu, \"written_off\": %llu, \"timeouts\": %llu, "
	       "\"send_fail\": %llu, \"echoed_total\": %llu, \"cpu0_busy_pct\": %.1f, \"cpu1_busy_pct\": %.1f",
	       opt.secs, opt.flows, opt.window, opt.payload, sent, received, late, bad, lost, timeouts,
	       send_fail, echoed, t0b > t0a ? 100.0 * (double)(b0b - b0a) / (double)(t0b - t0a) : 0,
	       t1b > t1a ? 100.0 * (double)(b1b - b1a) / (double)(t1b - t1a) : 0);
	/* everything CPU 1 did (relay, softirq, ksoftirqd/1, ...) per round trip */
	double cpu1_busy_s = t1b > t1a ? (double)(b1b - b1a) / hz : 0;
	printf(", \"cpu1_us_per_rt\": %.3f", received ? cpu1_busy_s * 1e6 / (double)received : 0);
	/* how the shape really went: datagrams per syscall message on each path */
	printf(", \"client_dg_per_tx_msg\": %.2f, \"client_dg_per_rx_msg\": %.2f, "
	       "\"echo_dg_per_rx_msg\": %.2f, \"echo_dg_per_tx_msg\": %.2f",
	       tb.msgs_sent ? (double)tb.dg_sent / (double)tb.msgs_sent : 0,
	       client_rx_msgs ? (double)client_rx_dg / (double)client_rx_msgs : 0,
	       echo_rx_msgs ? (double)echo_rx_dg / (double)echo_rx_msgs : 0,
	       echo_tb.msgs_sent ? (double)echo_tb.dg_sent / (double)echo_tb.msgs_sent : 0);
	if (relay_cpu_us >= 0)
		printf(", \"relay_cpu_s\": %.2f, \"relay_cpu_pct\": %.1f, \"relay_cpu_us_per_rt\": %.3f",
		       relay_cpu_us / 1e6, relay_cpu_us / 1e4 / opt.secs,
		       received ? relay_cpu_us / (double)received : 0);
	printf("}\n");
	return received ? 0 : 1;
}
