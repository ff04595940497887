/*
 * udpbatch.h: UDP_GRO receive batches and UDP_SEGMENT (GSO) send batches for
 * the benchmark tools (turnflood.c, cdreflect.c). Header-only, Linux.
 *
 * Receive: struct rxbatch holds RX_MSGS receive buffers of RX_BUF bytes, each
 * with room for a UDP_GRO cmsg. With UDP_GRO on the socket, one received
 * message may hold several datagrams of seg bytes each (the last may be
 * shorter); rx_seg() gives seg.
 *
 * Send: struct txbatch collects datagrams (one or two iovecs each: an
 * optional 4-byte header plus data) into sendmmsg messages. With gso on,
 * consecutive datagrams to the same address with the same length join one
 * message with a UDP_SEGMENT cmsg, up to train datagrams and TX_GSO_BYTES
 * bytes; without gso, each datagram is its own message. tx_flush() sends
 * everything queued and returns the number of datagrams the kernel took.
 */
#ifndef UDPBATCH_H
#define UDPBATCH_H

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef SOL_UDP
#define SOL_UDP 17
#endif

#define RX_MSGS 64        /* messages per recvmmsg */
#define RX_BUF 65536      /* bytes per receive buffer: a whole GRO train */
#define TX_MAX_SEGS 64    /* datagrams per GSO send, at most */
#define TX_GSO_BYTES 65000 /* bytes per GSO send, at most (64 KiB UDP limit) */
#define TX_MAX_DG 8192    /* datagrams queued per flush */

static int set_udp_gro(int fd)
{
	int one = 1;
	return setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
}

/* ------------------------------------------------------------- receive */

union rx_ctrl {
	char buf[CMSG_SPACE(sizeof(int)) + 64];
	struct cmsghdr align;
};

struct rxbatch {
	uint8_t buf[RX_MSGS][RX_BUF];
	struct iovec iov[RX_MSGS];
	struct sockaddr_in from[RX_MSGS];
	struct mmsghdr mm[RX_MSGS];
	union rx_ctrl ctrl[RX_MSGS];
};

/* recvmmsg into b; want_gro: pass control buffers for the UDP_GRO cmsg. */
static int rx_recv(int fd, struct rxbatch *b, int flags, int want_gro)
{
	for (int i = 0; i < RX_MSGS; i++) {
		b->iov[i] = (struct iovec){ b->buf[i], RX_BUF };
		b->mm[i].msg_len = 0;
		b->mm[i].msg_hdr = (struct msghdr){ .msg_name = &b->from[i], .msg_namelen = sizeof b->from[i],
						    .msg_iov = &b->iov[i], .msg_iovlen = 1 };
		if (want_gro) {
			b->mm[i].msg_hdr.msg_control = b->ctrl[i].buf;
			b->mm[i].msg_hdr.msg_controllen = sizeof b->ctrl[i].buf;
		}
	}
	return recvmmsg(fd, b->mm, RX_MSGS, flags, NULL);
}

/* Segment size of received message i: the UDP_GRO cmsg value, else its length. */
static unsigned rx_seg(const struct rxbatch *b, int i)
{
	struct msghdr *m = (struct msghdr *)&b->mm[i].msg_hdr;
	unsigned len = b->mm[i].msg_len;
	if (m->msg_control && m->msg_controllen) {
		for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
			if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
			    c->cmsg_len >= CMSG_LEN(sizeof(int))) {
				int v;
				memcpy(&v, CMSG_DATA(c), sizeof v);
				if (v > 0 && (unsigned)v < len)
					return (unsigned)v;
			}
		}
	}
	return len;
}

/* ---------------------------------------------------------------- send */

union tx_ctrl {
	char buf[CMSG_SPACE(sizeof(uint16_t))];
	struct cmsghdr align;
};

struct txbatch {
	int gso, train;
	int nmsg, niov, ndg;
	struct mmsghdr mm[TX_MAX_DG];
	struct iovec iov[2 * TX_MAX_DG];
	union tx_ctrl ctrl[TX_MAX_DG];
	struct sockaddr_in to[TX_MAX_DG];
	unsigned count[TX_MAX_DG]; /* datagrams in message */
	unsigned seg[TX_MAX_DG];   /* their length */
	unsigned bytes[TX_MAX_DG];
	uint8_t hdr[TX_MAX_DG][4]; /* per-message copy of a 4-byte header (same for the run) */
	unsigned long long msgs_sent, dg_sent, gso_msgs;
};

static void tx_init(struct txbatch *t, int gso, int train)
{
	memset(t, 0, sizeof *t);
	t->gso = gso;
	t->train = train < 1 ? 1 : train > TX_MAX_SEGS ? TX_MAX_SEGS : train;
}

static int tx_full(const struct txbatch *t)
{
	return t->ndg >= TX_MAX_DG;
}

/* Queue one datagram: optional 4-byte header hdr (copied) + data[0, len). */
static void tx_add(struct txbatch *t, const struct sockaddr_in *to, const uint8_t *hdr, const void *data,
		   unsigned len)
{
	unsigned total = len + (hdr ? 4 : 0);
	int m = t->nmsg - 1;
	int join = t->gso && m >= 0 && t->seg[m] == total && (int)t->count[m] < t->train &&
		   t->bytes[m] + total <= TX_GSO_BYTES && t->to[m].sin_port == to->sin_port &&
		   t->to[m].sin_addr.s_addr == to->sin_addr.s_addr &&
		   (!hdr || !memcmp(t->hdr[m], hdr, 4));
	if (!join) {
		m = t->nmsg++;
		t->to[m] = *to;
		t->count[m] = 0;
		t->seg[m] = total;
		t->bytes[m] = 0;
		if (hdr)
			memcpy(t->hdr[m], hdr, 4);
		t->mm[m].msg_len = 0;
		t->mm[m].msg_hdr = (struct msghdr){ .msg_name = &t->to[m], .msg_namelen = sizeof t->to[m],
						    .msg_iov = &t->iov[t->niov], .msg_iovlen = 0 };
	}
	struct msghdr *mh = &t->mm[m].msg_hdr;
	if (hdr) {
		t->iov[t->niov++] = (struct iovec){ t->hdr[m], 4 };
		mh->msg_iovlen++;
	}
	if (len) {
		/* extend the previous iovec when the data is contiguous (a whole train) */
		struct iovec *last = mh->msg_iovlen ? &t->iov[t->niov - 1] : NULL;
		if (!hdr && last && (const uint8_t *)last->iov_base + last->iov_len == (const uint8_t *)data)
			last->iov_len += len;
		else {
			t->iov[t->niov++] = (struct iovec){ (void *)data, len };
			mh->msg_iovlen++;
		}
	}
	t->count[m]++;
	t->bytes[m] += total;
	t->ndg++;
}

/*
 * Send all queued messages. Returns datagrams the kernel accepted; messages
 * it refused (full buffer, EAGAIN) are dropped: the load generator writes
 * them off like any loss.
 */
static int tx_flush(struct txbatch *t, int fd)
{
	for (int m = 0; m < t->nmsg; m++) {
		if (t->count[m] > 1) {
			struct msghdr *mh = &t->mm[m].msg_hdr;
			mh->msg_control = t->ctrl[m].buf;
			mh->msg_controllen = sizeof t->ctrl[m].buf;
			struct cmsghdr *c = CMSG_FIRSTHDR(mh);
			c->cmsg_level = SOL_UDP;
			c->cmsg_type = UDP_SEGMENT;
			c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
			uint16_t gso = (uint16_t)t->seg[m];
			memcpy(CMSG_DATA(c), &gso, sizeof gso);
			t->gso_msgs++;
		}
	}
	int done = 0, dg = 0;
	while (done < t->nmsg) {
		int s = sendmmsg(fd, t->mm + done, (unsigned)(t->nmsg - done), 0);
		if (s < 0 && errno == EINTR)
			continue;
		if (s <= 0) {
			done++; /* skip the refused message, try the rest */
			continue;
		}
		for (int k = 0; k < s; k++)
			dg += (int)t->count[done + k];
		t->msgs_sent += (unsigned)s;
		done += s;
	}
	t->dg_sent += (unsigned)dg;
	t->nmsg = t->niov = t->ndg = 0;
	return dg;
}

#endif
