/*
 * cdreflect: a bare ChannelData reflector, no TURN: the harness ceiling.
 *
 * Run it where a relay would run (taskset -c 1) and point
 * `turnflood --no-turn --port P` at it. Two modes:
 *
 *   forward (default, --peer-port Q): like a relay without TURN. A ChannelData
 *     frame from the client loses its 4-byte header and goes to the echo peer
 *     127.0.0.1:Q from a second socket (the "relayed" socket, --relay-port,
 *     default ephemeral); what the peer sends back gets a header for channel
 *     0x4000 and goes to the client that sent last. The load generator's CPU
 *     does exactly the work it does against a relay (client send + receive,
 *     echo receive + send), so this is the most turnflood can show.
 *   --straight: every frame from the client goes straight back to it, same
 *     bytes; the echo peer is idle. A looser ceiling (CPU 0 does half the
 *     work of a relay run): the client side alone.
 *
 * It is as cheap as it can be on its own CPU: UDP_GRO on both sockets (a GSO
 * train from the harness arrives as one receive) and GSO sends (runs of
 * equal-size datagrams to one address leave as one UDP_SEGMENT send), unless
 * --no-gro / --no-gso. recvmmsg / sendmmsg, 64 messages per call.
 *
 * One client (one flow), unless --tag-offset N: then every payload carries a
 * little-endian u32 client index at payload offset N (uturn-bench puts its
 * session index at 16), each client's address is remembered under its index,
 * and a reply from the peer goes to the client its payload names: many flows
 * through one forwarder, still without TURN. Loopback only. Stops on SIGTERM
 * / SIGINT and prints one line of counters.
 *
 * Build: cc -O2 -o .build-bench-c/cdreflect scripts/bench/cdreflect.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "udpbatch.h"

#define CHANNEL 0x4000
#define SOCK_BUF (4 << 20)
#define MAX_CLIENTS 16384

static struct sockaddr_in clients[MAX_CLIENTS];

/* The client index at offset tag of a payload of len bytes, or -1. */
static int tag_of(const uint8_t *payload, unsigned len, int tag)
{
	if (tag < 0 || (unsigned)tag + 4 > len)
		return -1;
	const uint8_t *t = payload + tag;
	uint32_t v = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
	return v < MAX_CLIENTS ? (int)v : -1;
}

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static int udp_socket(int port, int gro)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket");
	int sz = SOCK_BUF;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind");
	if (gro && set_udp_gro(fd) < 0)
		die("setsockopt UDP_GRO");
	return fd;
}

int main(int argc, char **argv)
{
	int port = 0, peer_port = 0, relay_port = 0, straight = 0, gso = 1, gro = 1, tag = -1;
	static const struct option lo[] = { { "port", 1, 0, 'p' },     { "peer-port", 1, 0, 'q' },
					    { "relay-port", 1, 0, 'r' }, { "straight", 0, 0, 's' },
					    { "no-gso", 0, 0, 'G' },     { "no-gro", 0, 0, 'R' },
					    { "tag-offset", 1, 0, 't' }, { 0, 0, 0, 0 } };
	int c;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'p': port = atoi(optarg); break;
		case 'q': peer_port = atoi(optarg); break;
		case 'r': relay_port = atoi(optarg); break;
		case 's': straight = 1; break;
		case 'G': gso = 0; break;
		case 'R': gro = 0; break;
		case 't': tag = atoi(optarg); break;
		default: goto usage;
		}
	}
	if (optind != argc || port <= 0 || (!straight && peer_port <= 0)) {
	usage:
		fprintf(stderr, "usage: cdreflect --port P (--peer-port Q [--relay-port R] | --straight)\n"
				"                 [--no-gso] [--no-gro] [--tag-offset N]\n");
		return 2;
	}
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int cfd = udp_socket(port, gro), rfd = straight ? -1 : udp_socket(relay_port, gro);
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons((uint16_t)peer_port),
				    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in client = { 0 };
	static struct rxbatch rb;
	static struct txbatch tb;
	tx_init(&tb, gso, TX_MAX_SEGS);
	unsigned long long c_in = 0, c_out = 0, p_in = 0, p_out = 0, bad = 0, rx_msgs = 0, rx_dg = 0;
	struct pollfd pfd[2] = { { .fd = cfd, .events = POLLIN }, { .fd = rfd, .events = POLLIN } };

	while (!stop) {
		int r = poll(pfd, straight ? 1 : 2, 200);
		if (r < 0 && errno != EINTR)
			die("poll");
		if (r <= 0)
			continue;
		/* client -> peer (or straight back) */
		if (pfd[0].revents & POLLIN) {
			for (;;) {
				int n = rx_recv(cfd, &rb, MSG_DONTWAIT, gro);
				if (n <= 0)
					break;
				rx_msgs += (unsigned)n;
				for (int i = 0; i < n; i++) {
					unsigned len = rb.mm[i].msg_len, seg = rx_seg(&rb, i);
					if (len == 0)
						continue;
					client = rb.from[i];
					for (unsigned off = 0; off < len; off += seg) {
						const uint8_t *f = rb.buf[i] + off;
						unsigned fl = len - off < seg ? len - off : seg;
						c_in++;
						rx_dg++;
						if (tx_full(&tb))
							straight ? (c_out += (unsigned)tx_flush(&tb, cfd))
								 : (p_out += (unsigned)tx_flush(&tb, rfd));
						if (straight) {
							tx_add(&tb, &client, NULL, f, fl);
							continue;
						}
						unsigned plen = fl >= 4 ? (unsigned)(f[2] << 8 | f[3]) : 0;
						if (fl < 4 || (f[0] & 0xC0) != 0x40 || plen > fl - 4) {
							bad++;
							continue;
						}
						int ci = tag_of(f + 4, plen, tag);
						if (ci >= 0)
							clients[ci] = rb.from[i];
						tx_add(&tb, &peer, NULL, f + 4, plen);
					}
				}
				if (straight)
					c_out += (unsigned)tx_flush(&tb, cfd);
				else
					p_out += (unsigned)tx_flush(&tb, rfd);
				if (n < RX_MSGS)
					break;
			}
		}
		/* peer -> client */
		if (!straight && (pfd[1].revents & POLLIN)) {
			for (;;) {
				int n = rx_recv(rfd, &rb, MSG_DONTWAIT, gro);
				if (n <= 0)
					break;
				rx_msgs += (unsigned)n;
				for (int i = 0; i < n; i++) {
					unsigned len = rb.mm[i].msg_len, seg = rx_seg(&rb, i);
					if (len == 0)
						continue;
					for (unsigned off = 0; off < len; off += seg) {
						unsigned fl = len - off < seg ? len - off : seg;
						uint8_t hdr[4] = { CHANNEL >> 8, CHANNEL & 0xff, (uint8_t)(fl >> 8), (uint8_t)fl };
						int ci = tag_of(rb.buf[i] + off, fl, tag);
						const struct sockaddr_in *to = ci >= 0 && clients[ci].sin_port ? &clients[ci] : &client;
						p_in++;
						rx_dg++;
						if (!to->sin_port) {
							bad++;
							continue;
						}
						if (tx_full(&tb))
							c_out += (unsigned)tx_flush(&tb, cfd);
						tx_add(&tb, to, hdr, rb.buf[i] + off, fl);
					}
				}
				c_out += (unsigned)tx_flush(&tb, cfd);
				if (n < RX_MSGS)
					break;
			}
		}
	}
	printf("cdreflect mode=%s gso=%d gro=%d client_in=%llu peer_out=%llu peer_in=%llu client_out=%llu "
	       "bad=%llu dg_per_rx_msg=%.2f dg_per_tx_msg=%.2f gso_sends=%llu\n",
	       straight ? "straight" : "forward", gso, gro, c_in, p_out, p_in, c_out, bad,
	       rx_msgs ? (double)rx_dg / (double)rx_msgs : 0,
	       tb.msgs_sent ? (double)tb.dg_sent / (double)tb.msgs_sent : 0, tb.gso_msgs);
	return 0;
}
