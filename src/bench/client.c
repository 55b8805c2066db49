/*
 * client.c: the I/O layer of roomd-bench. It owns every socket: non-blocking
 * connect with a bounded number of handshakes in flight, the verified
 * upgrade, reads fed to the frame decoder, output queued per connection and
 * written once per loop turn, ping/pong and close, and permessage-deflate
 * where agreed (messages compressed on the way out, inflated on the way in,
 * with the thread's zlib streams). Modes see only typed calls on whole
 * plain messages: on_open, on_message, on_close.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../http.h"
#include "bench.h"

#define RBUF_SIZE	(256 * 1024)
#define HS_MAX		4096		/* longest response head accepted */
#define READS_PER_EVENT	4		/* reads per readiness before serving others */
#define WAKE_TOKEN	UINT64_MAX	/* epoll data of the eventfd */

/* Remember the first failure of this thread for the report. */
static void
note_error(struct bthread *t, const char *what, int err)
{
	if (t->first_error[0] != '\0')
		return;
	if (err)
		(void)snprintf(t->first_error, sizeof(t->first_error), "%s (%d: %s)", what, err,
		    strerror(err));
	else
		(void)snprintf(t->first_error, sizeof(t->first_error), "%s", what);
}

int
cl_thread_init(struct bthread *t)
{
	struct epoll_event ev;
	uint64_t seed;

	t->epfd = t->evfd = -1;
	if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
		fprintf(stderr, "roomd-bench: getrandom() failed (%d: %s)\n", errno, strerror(errno));
		return -1;
	}
	t->rng = seed | 1;
	t->rcap = RBUF_SIZE;
	if ((t->rbuf = malloc(t->rcap)) == NULL) {
		fprintf(stderr, "roomd-bench: out of memory\n");
		return -1;
	}
	if ((t->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
		fprintf(stderr, "roomd-bench: epoll_create1() failed (%d: %s)\n", errno, strerror(errno));
		return -1;
	}
	if ((t->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		fprintf(stderr, "roomd-bench: eventfd() failed (%d: %s)\n", errno, strerror(errno));
		return -1;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = WAKE_TOKEN;
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &ev) < 0) {
		fprintf(stderr, "roomd-bench: epoll_ctl(eventfd) failed (%d: %s)\n", errno, strerror(errno));
		return -1;
	}
	t->conc = (uint32_t)(bench.o.conc / bench.nth);
	if (t->conc == 0)
		t->conc = 1;
	t->next_conn = (uint32_t)t->id;
	return 0;
}

void
cl_thread_fini(struct bthread *t)
{
	if (t->epfd >= 0 && close(t->epfd) < 0)
		perror("roomd-bench: close(epoll)");
	if (t->evfd >= 0 && close(t->evfd) < 0)
		perror("roomd-bench: close(eventfd)");
	t->epfd = t->evfd = -1;
	free(t->rbuf);
	t->rbuf = NULL;
	free(t->flushq);
	t->flushq = NULL;
	wsc_pmd_free(&t->pmd);
}

/* Release what a connection holds besides its slot. */
static void
conn_release(struct bconn *c)
{
	free(c->hs);
	c->hs = NULL;
	free(c->out.p);
	memset(&c->out, 0, sizeof(c->out));
	wsc_decoder_free(&c->dec);
}

/* Close the socket of a connection that is not (or no longer) usable. */
static void
conn_drop(struct bthread *t, struct bconn *c)
{
	if (c->fd >= 0) {
		/* close() also takes the fd out of the epoll set: the fd is never dup()ed. */
		if (close(c->fd) < 0)
			note_error(t, "close() failed", errno);
		c->fd = -1;
	}
	if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE)
		t->inflight--;
	if (c->closing == 2)
		t->closing--;
	c->state = CS_CLOSED;
	conn_release(c);
}

/* A connection that never opened. */
static void
conn_fail(struct bthread *t, struct bconn *c, const char *why, int err)
{
	note_error(t, why, err);
	stat_add(&t->st.failed, 1);
	conn_drop(t, c);
}

/* Change the epoll interest of a connection. Returns 0 or -1. */
static int
conn_watch(struct bthread *t, struct bconn *c, int op, int want_out)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0);
	ev.data.u64 = c->idx;
	if (epoll_ctl(t->epfd, op, c->fd, &ev) < 0) {
		note_error(t, "epoll_ctl() failed", errno);
		return -1;
	}
	c->epout = (uint8_t)want_out;
	return 0;
}

/* Make room for n more bytes at the end of the output buffer. */
static uint8_t *
obuf_reserve(struct obuf *o, size_t n)
{
	if (o->off == o->len)
		o->off = o->len = 0;
	if (o->len + n > o->cap && o->off > 0) {
		memmove(o->p, o->p + o->off, o->len - o->off);
		o->len -= o->off;
		o->off = 0;
	}
	if (o->len + n > o->cap) {
		size_t cap = o->cap ? o->cap : 512;
		uint8_t *np;

		while (cap < o->len + n)
			cap *= 2;
		if ((np = realloc(o->p, cap)) == NULL)
			return NULL;
		o->p = np;
		o->cap = cap;
	}
	return o->p + o->len;
}

/* Put a connection on its thread's list of output to write this turn. */
static int
conn_queue(struct bthread *t, struct bconn *c)
{
	if (c->queued)
		return 0;
	if (t->nflush == t->flushcap) {
		size_t cap = t->flushcap ? t->flushcap * 2 : 256;
		uint32_t *nq = realloc(t->flushq, cap * sizeof(*nq));

		if (nq == NULL)
			return -1;
		t->flushq = nq;
		t->flushcap = cap;
	}
	t->flushq[t->nflush++] = c->idx;
	c->queued = 1;
	return 0;
}

/* Open connection number c->idx. */
static void
conn_start(struct bthread *t, struct bconn *c)
{
	int one = 1;

	c->t_start = now_ns();
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		conn_fail(t, c, "socket() failed", errno);
		return;
	}
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
		conn_fail(t, c, "setsockopt(TCP_NODELAY) failed", errno);
		return;
	}
	c->state = CS_CONNECTING;
	t->inflight++;
	if (connect(c->fd, (const struct sockaddr *)&bench.o.addr, sizeof(bench.o.addr)) < 0 &&
	    errno != EINPROGRESS) {
		conn_fail(t, c, "connect() failed", errno);
		return;
	}
	if (conn_watch(t, c, EPOLL_CTL_ADD, 1) < 0)
		conn_fail(t, c, "epoll_ctl(ADD) failed", 0);
}

void
cl_start_connects(struct bthread *t)
{
	if (run_phase() != PH_CONNECT || atomic_load(&bench.connect_expired))
		return;
	while (t->inflight < t->conc && t->next_conn < (uint32_t)bench.o.conns) {
		struct bconn *c = &bench.conns[t->next_conn];

		t->next_conn += (uint32_t)bench.nth;
		conn_start(t, c);
	}
}

void
cl_expire_pending(struct bthread *t)
{
	for (uint32_t i = (uint32_t)t->id; i < (uint32_t)bench.o.conns; i += (uint32_t)bench.nth) {
		struct bconn *c = &bench.conns[i];

		if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE)
			conn_fail(t, c, "handshake timed out", ETIMEDOUT);
		else if (c->state == CS_IDLE) {
			note_error(t, "not started before the connect timeout", 0);
			stat_add(&t->st.failed, 1);
			c->state = CS_CLOSED;
		}
	}
	t->next_conn = (uint32_t)bench.o.conns;
}

/* Write what is queued; arm EPOLLOUT when the socket is full. */
static void
conn_flush(struct bthread *t, struct bconn *c)
{
	struct obuf *o = &c->out;
	ssize_t n;

	while (o->off < o->len) {
		n = send(c->fd, o->p + o->off, o->len - o->off, MSG_NOSIGNAL);
		if (n > 0) {
			o->off += (size_t)n;
			stat_add(&t->st.bytes_out, (uint64_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!c->epout && conn_watch(t, c, EPOLL_CTL_MOD, 1) < 0)
				cl_close(t, c, 0);
			return;
		}
		if (c->state == CS_OPEN) {
			if (!c->closing && run_phase() != PH_DONE)
				stat_add(&t->st.closed_by_peer, 1);
			cl_close(t, c, 0);
		} else
			conn_fail(t, c, "send() failed", errno);
		return;
	}
	o->off = o->len = 0;
	if (o->cap > (1u << 20)) {
		free(o->p);
		memset(o, 0, sizeof(*o));
	}
	if (c->epout && c->state != CS_CONNECTING && conn_watch(t, c, EPOLL_CTL_MOD, 0) < 0)
		cl_close(t, c, 0);
}

void
cl_flush(struct bthread *t, struct bconn *c)
{
	if (c->state == CS_OPEN && cl_pending(c) > 0)
		conn_flush(t, c);
}

void
cl_flush_all(struct bthread *t)
{
	/* A flush may close a connection, never queue one: the list is stable. */
	for (size_t i = 0; i < t->nflush; i++) {
		struct bconn *c = &bench.conns[t->flushq[i]];

		c->queued = 0;
		if (c->state == CS_OPEN || c->state == CS_HANDSHAKE)
			conn_flush(t, c);
	}
	t->nflush = 0;
}

size_t
cl_pending(const struct bconn *c)
{
	return c->out.len - c->out.off;
}

/* Queue a frame on any connection that has a socket; data is compressed if agreed. */
static int
conn_put_frame(struct bthread *t, struct bconn *c, int opcode, const void *p, size_t len)
{
	int rsv1 = 0;
	uint8_t *dst;

	if (c->dec.pmd && opcode < 0x8) {
		if ((p = wsc_pmd_deflate(&t->pmd, p, len, &len)) == NULL) {
			note_error(t, "out of memory for compression", ENOMEM);
			return -1;
		}
		rsv1 = 1;
	}
	if ((dst = obuf_reserve(&c->out, wsc_frame_size(len))) == NULL) {
		note_error(t, "out of memory for output", ENOMEM);
		return -1;
	}
	c->out.len += wsc_frame(dst, opcode, rsv1, p, len, (uint32_t)bench_rand(t));
	return conn_queue(t, c);
}

int
cl_send(struct bthread *t, struct bconn *c, int opcode, const void *p, size_t len)
{
	if (c->state != CS_OPEN || c->closing)
		return -1;
	if (conn_put_frame(t, c, opcode, p, len) < 0) {
		cl_close(t, c, 0);
		return -1;
	}
	return 0;
}

void
cl_close(struct bthread *t, struct bconn *c, int send_close)
{
	int was_open = c->state == CS_OPEN;

	if (c->state == CS_CLOSED || c->state == CS_IDLE)
		return;
	if (send_close && was_open && !c->closing) {
		/* Best effort: one write of what is queued plus a close frame (1000). */
		static const uint8_t code[2] = { 0x03, 0xe8 };
		uint8_t *dst = obuf_reserve(&c->out, wsc_frame_size(2));

		if (dst != NULL) {
			c->out.len += wsc_frame(dst, 0x8, 0, code, 2, (uint32_t)bench_rand(t));
			if (send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off,
			    MSG_NOSIGNAL | MSG_DONTWAIT) > 0 && shutdown(c->fd, SHUT_WR) < 0 &&
			    errno != ENOTCONN)
				note_error(t, "shutdown() failed", errno);
		}
	}
	conn_drop(t, c);
	if (was_open && bench.mode->on_close != NULL)
		bench.mode->on_close(t, c);
}

int
cl_begin_close(struct bthread *t, struct bconn *c)
{
	static const uint8_t code[2] = { 0x03, 0xe8 };	/* 1000 */
	uint8_t *dst;

	if (c->state != CS_OPEN) {
		cl_close(t, c, 0);
		return 0;
	}
	if (c->closing)
		return 0;
	if ((dst = obuf_reserve(&c->out, wsc_frame_size(2))) == NULL) {
		cl_close(t, c, 0);
		return 0;
	}
	c->out.len += wsc_frame(dst, 0x8, 0, code, 2, (uint32_t)bench_rand(t));
	c->closing = 2;		/* waiting for the server to end the connection */
	t->closing++;
	conn_flush(t, c);
	return c->state == CS_OPEN;
}

/* The server's control frames. */
static void
conn_control(struct bthread *t, struct bconn *c, const struct wsc_ev *ev)
{
	if (ev->opcode == 0x9) {
		stat_add(&t->st.pings, 1);
		if (conn_put_frame(t, c, 0xa, ev->data, ev->len) < 0)
			cl_close(t, c, 0);
	} else if (ev->opcode == 0x8) {
		/* Answer with the same code and go: the server ends the TCP connection. */
		stat_add(&t->st.close_frames, 1);
		if (run_phase() != PH_DONE)
			stat_add(&t->st.closed_by_peer, 1);
		if (!c->closing) {
			uint8_t *dst = obuf_reserve(&c->out, wsc_frame_size(2));

			if (dst != NULL) {
				c->out.len += wsc_frame(dst, 0x8, 0, ev->data, ev->len >= 2 ? 2 : 0,
				    (uint32_t)bench_rand(t));
				if (send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off,
				    MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
					note_error(t, "send(close) failed", errno);
			}
			c->closing = 1;
		}
		cl_close(t, c, 0);
	}
}

/* The server's stream cannot be followed: count it and close. */
static void
conn_bad_stream(struct bthread *t, struct bconn *c, const char *why)
{
	note_error(t, why, 0);
	c->dec.proto_errors++;
	stat_add(&t->st.closed_by_peer, 1);
	cl_close(t, c, 1);
}

/* Feed received bytes of an open connection to its decoder. */
static void
conn_feed(struct bthread *t, struct bconn *c, uint8_t *buf, size_t len)
{
	struct wsc_ev ev;
	size_t off = 0;

	for (;;) {
		off += wsc_decode(&c->dec, buf + off, len - off, &ev);
		switch (ev.type) {
		case WSC_NEED:
			return;
		case WSC_MESSAGE:
			if (ev.compressed && (ev.data = wsc_pmd_inflate(&t->pmd, ev.data, ev.len,
			    c->dec.max_message, &ev.len, &ev.error)) == NULL) {
				conn_bad_stream(t, c, ev.error);
				return;
			}
			bench.mode->on_message(t, c, ev.opcode, ev.data, ev.len);
			break;
		case WSC_CONTROL:
			conn_control(t, c, &ev);
			break;
		case WSC_ERROR:
			conn_bad_stream(t, c, ev.error);
			return;
		}
		if (c->state != CS_OPEN)
			return;
	}
}

/* Bytes of the upgrade response; on the blank line verify it and open. */
static void
conn_handshake_read(struct bthread *t, struct bconn *c)
{
	size_t end, scanned;
	ssize_t n;
	const char *why;
	int deflate;

	if (c->hs == NULL && (c->hs = malloc(HS_MAX)) == NULL) {
		conn_fail(t, c, "out of memory", ENOMEM);
		return;
	}
	n = read(c->fd, c->hs + c->hs_len, HS_MAX - c->hs_len);
	if (n == 0) {
		conn_fail(t, c, "server closed during the handshake", 0);
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_fail(t, c, "read() failed during the handshake", errno);
		return;
	}
	stat_add(&t->st.bytes_in, (uint64_t)n);
	scanned = c->hs_len > 3 ? c->hs_len - 3 : 0;
	c->hs_len += (size_t)n;
	end = http_head_end(c->hs, c->hs_len, scanned);
	if (end == 0) {
		if (c->hs_len == HS_MAX)
			conn_fail(t, c, "response head too long", 0);
		return;
	}
	if (wsc_response_check(c->hs, end, c->key, bench.o.deflate, &deflate, &why) < 0) {
		conn_fail(t, c, why, 0);
		return;
	}
	c->dec.pmd = (uint8_t)deflate;
	stat_add(&t->st.deflated, (uint64_t)deflate);
	c->state = CS_OPEN;
	c->t_open = now_ns();
	t->inflight--;
	stat_add(&t->st.opened, 1);
	if (c->t_open > stat_get(&t->st.last_open_ns))
		atomic_store_explicit(&t->st.last_open_ns, c->t_open, memory_order_relaxed);
	hist_add(&t->handshake, c->t_open - c->t_start);
	/* Frames may follow the head in the same read. */
	size_t rest = c->hs_len - end;
	if (rest > 0)
		memcpy(t->rbuf, c->hs + end, rest);
	free(c->hs);
	c->hs = NULL;
	c->hs_len = 0;
	t->now = c->t_open;
	bench.mode->on_open(t, c);
	if (rest > 0 && c->state == CS_OPEN)
		conn_feed(t, c, t->rbuf, rest);
}

/* The socket of a connecting connection became writable: send the upgrade. */
static void
conn_connected(struct bthread *t, struct bconn *c)
{
	int err = 0, n;
	socklen_t elen = sizeof(err);
	uint8_t nonce[16];
	char req[1024];
	uint64_t r0 = bench_rand(t), r1 = bench_rand(t);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
		conn_fail(t, c, "connect() failed", err ? err : errno);
		return;
	}
	memcpy(nonce, &r0, 8);
	memcpy(nonce + 8, &r1, 8);
	wsc_make_key(nonce, c->key);
	n = wsc_request(req, sizeof(req), bench.o.host, bench.o.port, bench.o.path, c->key,
	    bench.o.deflate);
	if (n < 0) {
		conn_fail(t, c, "request too long", 0);
		return;
	}
	uint8_t *dst = obuf_reserve(&c->out, (size_t)n);
	if (dst == NULL) {
		conn_fail(t, c, "out of memory", ENOMEM);
		return;
	}
	memcpy(dst, req, (size_t)n);
	c->out.len += (size_t)n;
	c->state = CS_HANDSHAKE;
	if (conn_watch(t, c, EPOLL_CTL_MOD, 0) < 0) {
		conn_fail(t, c, "epoll_ctl(MOD) failed", 0);
		return;
	}
	conn_flush(t, c);
}

/* Read what an open connection has. */
static void
conn_read(struct bthread *t, struct bconn *c)
{
	for (int i = 0; i < READS_PER_EVENT && c->state == CS_OPEN; i++) {
		ssize_t n = read(c->fd, t->rbuf, t->rcap);

		if (n > 0) {
			t->now = now_ns();	/* receive time: once per read() */
			stat_add(&t->st.bytes_in, (uint64_t)n);
			if (c->closing == 2)
				continue;	/* the run is over: wait for EOF only */
			conn_feed(t, c, t->rbuf, (size_t)n);
			if ((size_t)n < t->rcap)
				return;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n < 0)
			note_error(t, "read() failed", errno);
		if (!c->closing && run_phase() != PH_DONE)
			stat_add(&t->st.closed_by_peer, 1);
		cl_close(t, c, 0);
		return;
	}
}

void
cl_event(struct bthread *t, uint32_t idx, uint32_t events)
{
	struct bconn *c = &bench.conns[idx];

	switch (c->state) {
	case CS_CONNECTING:
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			conn_connected(t, c);
		break;
	case CS_HANDSHAKE:
		if (events & EPOLLOUT)
			conn_flush(t, c);
		if (c->state == CS_HANDSHAKE && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
			conn_handshake_read(t, c);
		break;
	case CS_OPEN:
		if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
			conn_read(t, c);
		if (c->state == CS_OPEN && (events & EPOLLOUT))
			conn_flush(t, c);
		break;
	default:
		break;
	}
}

void
cl_wake(struct bthread *t)
{
	uint64_t one = 1;

	/* Called from other threads: report here, never touch t's state. */
	if (write(t->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		fprintf(stderr, "roomd-bench: write(eventfd) failed (%d: %s)\n", errno, strerror(errno));
}

void
cl_drain_wake(struct bthread *t)
{
	uint64_t v;

	if (read(t->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		note_error(t, "read(eventfd) failed", errno);
}
