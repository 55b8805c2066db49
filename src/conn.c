/*
 * conn.c: the I/O layer under every protocol. A conn sits in its context's
 * epoll set (read, plus write only while the kernel buffer is full; the set
 * is one libevent event, so an idle conn costs libevent nothing), an output queue of
 * shared blocks written with writev once per loop turn, and is freed only at
 * the end of the loop turn in which it was closed, so no callback ever sees
 * freed memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <openssl/err.h>

#include "clock.h"
#include "conn.h"
#include "metrics.h"

#define CONN_IOV_MAX	64
#define TLS_CHUNK	16384	/* one TLS record's worth per SSL_write */
#define CONN_EPOLL_BATCH 1024	/* socket events taken per epoll_wait */

_Static_assert(TLS_CHUNK <= UINT16_MAX, "struct conn keeps a TLS retry length in 16 bits");

static inline void conn_event(struct conn *, short);
static void ctx_event(evutil_socket_t, short, void *);

/* Put c on the list of conns to flush at the end of this loop turn. */
static void
want_flush(struct conn *c)
{
	if (c->flags & CONN_F_WPENDING)
		return;
	c->flags |= CONN_F_WPENDING;
	c->wnext = c->ctx->wpending;
	c->ctx->wpending = c;
}

/* The same for room messages, which the loop may flush later (coalescing). */
static void
want_flush_bulk(struct conn *c)
{
	if (c->flags & CONN_F_BPENDING)
		return;
	c->flags |= CONN_F_BPENDING;
	c->bnext = c->ctx->bpending;
	c->ctx->bpending = c;
}

/* Have the context's epoll set watch what the conn now needs. */
static void
conn_arm(struct conn *c)
{
	struct epoll_event e;
	uint8_t what = 0;
	int op;

	if (c->flags & CONN_F_CLOSED)
		return;
	if (!(c->flags & CONN_F_PAUSED) || (c->flags & (CONN_F_LINGER | CONN_F_TLS_HS | CONN_F_TLS_WR)))
		what |= EV_READ;
	if (c->flags & (CONN_F_WANTWRITE | CONN_F_TLS_RW))
		what |= EV_WRITE;
	if (what == c->evmask)
		return;
	/* Paused with nothing to write: out of the set (it would still report a hang-up). */
	op = what == 0 ? EPOLL_CTL_DEL : c->evmask == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	e.events = ((what & EV_READ) ? EPOLLIN : 0u) | ((what & EV_WRITE) ? EPOLLOUT : 0u);
	e.data.ptr = c;
	if (epoll_ctl(c->ctx->epfd, op, c->fd, &e) == -1) {
		log_error("conn %u: epoll_ctl(%d) failed", c->id, op);
		conn_close(c);
		return;
	}
	c->evmask = what;
}

/* Run c as readable from the loop soon, without a socket event (input held elsewhere). */
static void
conn_kick(struct conn *c)
{
	struct conn_ctx *x = c->ctx;

	if (c->flags & (CONN_F_KICK | CONN_F_CLOSED))
		return;
	if (x->nkick == x->kickcap) {
		uint32_t ncap = x->kickcap ? 2 * x->kickcap : 16;
		struct conn **nk = realloc(x->kick, ncap * sizeof(*nk));

		if (nk == NULL) {
			log_error("conn %u: out of memory: closing", c->id);
			conn_close(c);
			return;
		}
		x->kick = nk;
		x->kickcap = ncap;
	}
	x->kick[x->nkick++] = c;
	c->flags |= CONN_F_KICK;
	event_active(x->epev, EV_READ, 0);
}

/* Take a closing conn off the kick list (order there does not matter). */
static void
conn_unkick(struct conn *c)
{
	struct conn_ctx *x = c->ctx;

	for (uint32_t i = 0; i < x->nkick; i++)
		if (x->kick[i] == c) {
			x->kick[i] = x->kick[--x->nkick];
			break;
		}
	c->flags &= ~CONN_F_KICK;
}

int
conn_init(struct conn *c, struct conn_ctx *x, int fd, const struct sockaddr *sa,
    const struct conn_handler *h, SSL_CTX *tls)
{
	memset(c, 0, sizeof(*c));
	if (tls != NULL) {
		if ((c->ssl = SSL_new(tls)) == NULL || SSL_set_fd(c->ssl, fd) != 1) {
			SSL_free(c->ssl);
			return -1;
		}
		SSL_set_accept_state(c->ssl);
		c->flags |= CONN_F_TLS_HS;
	}
	c->fd = fd;
	c->ctx = x;
	c->h = h;
	c->id = ++x->next_id;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		c->family = AF_INET;
		memcpy(c->ip, &s4->sin_addr, 4);
		c->port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		c->port = ntohs(s6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			c->family = AF_INET;
			memcpy(c->ip, &s6->sin6_addr.s6_addr[12], 4);
		} else {
			c->family = AF_INET6;
			memcpy(c->ip, &s6->sin6_addr, 16);
		}
	} else
		c->family = AF_UNSPEC;
	{
		struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };

		if (epoll_ctl(x->epfd, EPOLL_CTL_ADD, fd, &e) == -1) {
			SSL_free(c->ssl);
			c->ssl = NULL;
			return -1;
		}
		c->evmask = EV_READ;
	}
	c->next = x->all;
	if (x->all != NULL)
		x->all->prev = c;
	x->all = c;
	x->nconns++;
	metrics_add(MET_CONN_TOTAL, 1);	/* the open gauge was claimed at accept */
	return 0;
}

const char *
conn_addr(const struct conn *c, char *buf, size_t len)
{
	if (c->family == AF_INET || c->family == AF_INET6) {
		if (inet_ntop(c->family, c->ip, buf, (socklen_t)len) != NULL)
			return buf;
	}
	snprintf(buf, len, "unknown");
	return buf;
}

/* Inlined into each caller: it is on the path of every delivery. */
static inline __attribute__((always_inline)) int
queue(struct conn *c, struct sbuf *b, uint32_t off, uint32_t len, int bulk)
{
	if (c->flags & (CONN_F_CLOSED | CONN_F_LINGER))
		return 0;
	if (outq_push(&c->out, b, off, len) == -1)
		return -1;
	if (bulk)
		want_flush_bulk(c);
	else
		want_flush(c);
	return 0;
}

int
conn_send(struct conn *c, struct sbuf *b, uint32_t off, uint32_t len)
{
	return queue(c, b, off, len, 0);
}

int
conn_send_bulk(struct conn *c, struct sbuf *b, uint32_t off, uint32_t len)
{
	return queue(c, b, off, len, 1);
}

int
conn_send_copy(struct conn *c, const void *p, size_t n)
{
	struct sbuf *b;
	ssize_t w = 0;
	int rc;

	/*
	 * Nothing queued on a plain socket: write now. A handshake's 101 or a
	 * pong then needs no block and no queue, so an idle connection never
	 * allocated either (the leftovers of a burst of handshakes would
	 * otherwise stay in the heap as holes).
	 */
	if (outq_count(&c->out) == 0 && c->ssl == NULL && !(c->flags & (CONN_F_CLOSED | CONN_F_LINGER))) {
		do
			w = write(c->fd, p, n);
		while (w < 0 && errno == EINTR);
		metrics_add(MET_WRITES, 1);
		if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			if (c->h->on_eof != NULL)
				c->h->on_eof(c, strerror(errno));
			conn_close(c);
			return 0;
		}
		if (w < 0)
			w = 0;
		metrics_add(MET_BYTES_OUT, (uint64_t)w);
		if ((size_t)w == n) {
			if (c->flags & CONN_F_FINISH)
				want_flush(c);	/* let the flush start the linger */
			return 0;
		}
		p = (const uint8_t *)p + w;
		n -= (size_t)w;
	}

	if ((b = sbuf_new(n, 0)) == NULL)
		return -1;
	memcpy(sbuf_ptr(b), p, n);
	b->len = (uint32_t)n;
	rc = conn_send(c, b, b->off, b->len);
	sbuf_unref(b);
	return rc;
}

int
conn_send_file(struct conn *c, int fd, uint64_t off, uint32_t len)
{
	if (c->flags & (CONN_F_CLOSED | CONN_F_LINGER)) {
		close(fd);
		return 0;
	}
	if (outq_push_file(&c->out, fd, off, len) == -1)
		return -1;	/* outq_push_file closed it */
	want_flush(c);
	return 0;
}

void
conn_close(struct conn *c)
{
	struct conn_ctx *x = c->ctx;

	if (c->flags & CONN_F_CLOSED)
		return;
	if (c->evmask != 0)
		(void)epoll_ctl(x->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	c->evmask = 0;
	if (c->flags & CONN_F_KICK)
		conn_unkick(c);
	c->flags |= CONN_F_CLOSED;
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
	outq_clear(&c->out);
	/* Unlink from the list of live conns; queue for the free. */
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		x->all = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = x->dead;
	x->dead = c;
	x->nconns--;
	metrics_gauge(GAUGE_CONN_OPEN, -1);
}

/* Queue drained during a finish: shut the write side and linger. */
static void
conn_start_linger(struct conn *c)
{
	c->flags |= CONN_F_LINGER;
	c->flags &= ~(CONN_F_FINISH | CONN_F_PAUSED | CONN_F_AUTORESUME | CONN_F_HELD | CONN_F_TLS_RW |
	    CONN_F_TLS_WR);
	if (c->ssl != NULL && !(c->flags & CONN_F_TLS_HS))
		(void)SSL_shutdown(c->ssl);	/* close_notify, best effort */
	if (shutdown(c->fd, SHUT_WR) == -1) {
		conn_close(c);
		return;
	}
	conn_arm(c);
}

void
conn_finish(struct conn *c, int linger_ms)
{
	if (c->flags & (CONN_F_CLOSED | CONN_F_FINISH | CONN_F_LINGER))
		return;
	c->linger_until = clock_ms() + (uint64_t)linger_ms;
	c->flags |= CONN_F_FINISH;
	if (outq_count(&c->out) == 0)
		conn_start_linger(c);
	else
		want_flush(c);
}

void
conn_pause(struct conn *c, int paused)
{
	if (paused)
		c->flags |= CONN_F_PAUSED;
	else
		c->flags &= ~CONN_F_PAUSED;
	conn_arm(c);
	/* Bytes OpenSSL already holds will not make the socket readable again. */
	if (!paused && c->ssl != NULL && SSL_has_pending(c->ssl) && !(c->flags & CONN_F_CLOSED))
		conn_kick(c);
}

void
conn_pause_until_drained(struct conn *c)
{
	c->flags |= CONN_F_AUTORESUME;
	conn_pause(c, 1);
}

void
conn_hold_until_drained(struct conn *c)
{
	c->flags |= CONN_F_HELD;
	conn_pause_until_drained(c);
}

/* The queue drained under backpressure: read again, first what the handler held. */
static void
conn_resume(struct conn *c)
{
	c->flags &= ~CONN_F_AUTORESUME;
	conn_pause(c, 0);
	/* No socket event may come for held input: run the read callback anyway. */
	if ((c->flags & CONN_F_HELD) && !(c->flags & CONN_F_CLOSED))
		conn_kick(c);
}

/* Give the handler the input it held, if it did; 1 if it was called. */
static int
give_held(struct conn *c)
{
	if (!(c->flags & CONN_F_HELD))
		return 0;
	c->flags &= ~CONN_F_HELD;
	c->h->on_read(c, c->ctx->rbuf, 0);
	return 1;
}

/* Copy up to n queued bytes (files included) into buf; returns how many, -1 on error. */
static ssize_t
gather(struct conn *c, uint8_t *buf, size_t n)
{
	const struct outq_ring *q = c->out.r;
	size_t o = 0;

	for (uint32_t i = 0; q != NULL && i < q->count && o < n; i++) {
		const struct outq_ent *e = &q->ent[(q->head + i) & (q->cap - 1)];
		size_t k = e->len < n - o ? e->len : n - o;

		if (e->b != NULL)
			memcpy(buf + o, e->b->data + e->off, k);
		else if (pread(e->fd, buf + o, k, (off_t)e->foff) != (ssize_t)k)
			return -1;
		o += k;
	}
	return (ssize_t)o;
}

/* The TLS write path: coalesce up to a record, SSL_write, retry with the same length. */
static void
tls_flush(struct conn *c)
{
	uint8_t *buf = c->ctx->tlsbuf != NULL ? c->ctx->tlsbuf : (c->ctx->tlsbuf = malloc(TLS_CHUNK));
	ssize_t n;
	int r;

	while (!(c->flags & CONN_F_CLOSED) && outq_count(&c->out) > 0) {
		size_t want = c->tls_retry != 0 ? c->tls_retry : outq_bytes(&c->out) < TLS_CHUNK ? outq_bytes(&c->out) : TLS_CHUNK;

		if (buf == NULL || (n = gather(c, buf, want)) != (ssize_t)want) {
			conn_close(c);
			return;
		}
		ERR_clear_error();
		r = SSL_write(c->ssl, buf, (int)want);
		metrics_add(MET_WRITES, 1);
		if (r > 0) {
			c->tls_retry = 0;
			metrics_add(MET_BYTES_OUT, (uint64_t)r);
			outq_consume(&c->out, (size_t)r);
			continue;
		}
		c->tls_retry = (uint16_t)want;	/* want <= TLS_CHUNK */
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_WRITE:
			if (!(c->flags & CONN_F_WANTWRITE)) {
				c->flags |= CONN_F_WANTWRITE;
				conn_arm(c);
			}
			return;
		case SSL_ERROR_WANT_READ:
			c->flags |= CONN_F_TLS_WR;
			conn_arm(c);
			return;
		default:
			if (c->h->on_eof != NULL)
				c->h->on_eof(c, "TLS write failed");
			conn_close(c);
			return;
		}
	}
}

/*
 * Several small pieces (room messages queued in one turn) go out as one
 * write from a copy: the kernel's cost per iovec segment exceeds the copy's
 * (pinned to one core, a worker delivered 1.87M messages/s into a room of
 * 1,000 this way against 1.51M with writev). One message, which may be a
 * header and a payload, goes as it is.
 */
#define GATHER_MIN	3
static ssize_t
gather_write(int fd, const struct iovec *iov, int cnt)
{
	static char gbuf[16 * 1024];
	size_t len = 0;

	for (int i = 0; i < cnt; i++) {
		if (iov[i].iov_len > sizeof(gbuf) - len)
			return writev(fd, iov, cnt);
		memcpy(gbuf + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	return write(fd, gbuf, len);
}

/* Write what can be written now. */
static void
conn_flush(struct conn *c)
{
	struct iovec iov[CONN_IOV_MAX];
	struct outq_ring *r;
	ssize_t n;
	int cnt;

	if (c->ssl != NULL) {
		if (c->flags & CONN_F_TLS_HS)
			return;		/* nothing is sent before the handshake */
		tls_flush(c);
		goto done;
	}
	while (!(c->flags & CONN_F_CLOSED) && (r = c->out.r) != NULL && r->count > 0) {
		if (r->ent[r->head].b == NULL) {
			/* The kernel copies file pages to the socket: no trip through user space. */
			struct outq_ent *e = &r->ent[r->head];
			off_t foff = (off_t)e->foff;

			n = sendfile(c->fd, e->fd, &foff, e->len);
			if (n == 0) {
				/* The file shrank under us: the promised length cannot be sent. */
				conn_close(c);
				return;
			}
		} else {
			cnt = outq_iov(&c->out, iov, CONN_IOV_MAX);
			n = cnt < GATHER_MIN ? writev(c->fd, iov, cnt) : gather_write(c->fd, iov, cnt);
		}
		metrics_add(MET_WRITES, 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!(c->flags & CONN_F_WANTWRITE)) {
					c->flags |= CONN_F_WANTWRITE;
					conn_arm(c);
				}
				return;
			}
			if (c->h->on_eof != NULL)
				c->h->on_eof(c, strerror(errno));
			conn_close(c);
			return;
		}
		metrics_add(MET_BYTES_OUT, (uint64_t)n);
		outq_consume(&c->out, (size_t)n);
	}
done:
	if ((c->flags & CONN_F_CLOSED) || ((r = c->out.r) != NULL && r->count > 0))
		return;
	if (c->flags & (CONN_F_WANTWRITE | CONN_F_AUTORESUME)) {
		c->flags &= ~CONN_F_WANTWRITE;
		if (c->flags & CONN_F_AUTORESUME)
			conn_resume(c);
		else
			conn_arm(c);
	}
	if (c->flags & CONN_F_FINISH)
		conn_start_linger(c);
}

/* Lingering: read and drop until EOF. */
static void
conn_drain_input(struct conn *c)
{
	ssize_t n = read(c->fd, c->ctx->rbuf, c->ctx->rbuflen);

	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	conn_close(c);
}

/* Drive the TLS handshake; 1 when it is done. */
static int
tls_handshake(struct conn *c)
{
	char why[160];
	int r;

	ERR_clear_error();
	if ((r = SSL_accept(c->ssl)) == 1) {
		c->flags &= ~(CONN_F_TLS_HS | CONN_F_WANTWRITE);
		conn_arm(c);
		return 1;
	}
	switch (SSL_get_error(c->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		if (c->flags & CONN_F_WANTWRITE) {
			c->flags &= ~CONN_F_WANTWRITE;
			conn_arm(c);
		}
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->flags |= CONN_F_WANTWRITE;
		conn_arm(c);
		return 0;
	default:
		ERR_error_string_n(ERR_get_error(), why, sizeof(why));
		log_debug("conn %u: TLS handshake failed: %s", c->id, why);
		ERR_clear_error();
		conn_close(c);
		return 0;
	}
}

/* The TLS read path: everything OpenSSL can give us now. */
static void
tls_read(struct conn *c)
{
	struct conn_ctx *x = c->ctx;
	int r;

	c->flags &= ~CONN_F_TLS_RW;
	while (!(c->flags & (CONN_F_CLOSED | CONN_F_PAUSED | CONN_F_LINGER))) {
		if (give_held(c))
			continue;
		ERR_clear_error();
		r = SSL_read(c->ssl, x->rbuf, (int)x->rbuflen);
		if (r > 0) {
			metrics_add(MET_BYTES_IN, (uint64_t)r);
			c->h->on_read(c, x->rbuf, (size_t)r);
			continue;
		}
		switch (SSL_get_error(c->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			conn_arm(c);
			return;
		case SSL_ERROR_WANT_WRITE:
			c->flags |= CONN_F_TLS_RW;
			conn_arm(c);
			return;
		case SSL_ERROR_ZERO_RETURN:
			if (c->h->on_eof != NULL)
				c->h->on_eof(c, "eof");
			conn_close(c);
			return;
		default:
			if (c->h->on_eof != NULL)
				c->h->on_eof(c, "TLS read failed");
			ERR_clear_error();
			conn_close(c);
			return;
		}
	}
}

/* Inlined into the batch loop: it runs for every socket event. */
static inline __attribute__((always_inline)) void
conn_event(struct conn *c, short what)
{
	struct conn_ctx *x = c->ctx;
	int fd = c->fd;
	ssize_t n;

	if (c->ssl != NULL && !(c->flags & CONN_F_LINGER)) {
		if ((c->flags & CONN_F_TLS_HS) && !tls_handshake(c))
			return;
		if ((what & EV_WRITE) || ((what & EV_READ) && (c->flags & CONN_F_TLS_WR))) {
			c->flags &= ~CONN_F_TLS_WR;
			conn_flush(c);
		}
		if (((what & EV_READ) || (c->flags & CONN_F_TLS_RW)) && !(c->flags & CONN_F_CLOSED))
			tls_read(c);
		return;
	}
	if ((what & EV_WRITE) && !(c->flags & CONN_F_CLOSED))
		conn_flush(c);
	if (!(what & EV_READ) || (c->flags & CONN_F_CLOSED))
		return;
	if (c->flags & CONN_F_LINGER) {
		conn_drain_input(c);
		return;
	}
	if ((c->flags & CONN_F_PAUSED) || give_held(c))
		return;		/* after held input, the socket's bytes come on its next event */
	n = read(fd, x->rbuf, x->rbuflen);
	if (n > 0) {
		metrics_add(MET_BYTES_IN, (uint64_t)n);
		c->h->on_read(c, x->rbuf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (c->h->on_eof != NULL)
		c->h->on_eof(c, n == 0 ? "eof" : strerror(errno));
	conn_close(c);
}

/* ---- the context ---- */

/* Run the kicked conns: only as many as there were, as a handler may kick again. */
static void
run_kicks(struct conn_ctx *x)
{
	uint32_t budget = x->nkick;

	while (budget-- > 0 && x->nkick > 0) {
		struct conn *c = x->kick[--x->nkick];

		c->flags &= ~CONN_F_KICK;
		conn_event(c, EV_READ);
	}
	if (x->nkick > 0)
		event_active(x->epev, EV_READ, 0);
}

/*
 * The epoll set is readable, or conns were kicked: run the kicked ones, then
 * one batch of socket events. A conn closed earlier in the batch is still
 * memory (freed at the end of the turn) and is skipped.
 */
static void
ctx_event(evutil_socket_t fd, short what, void *arg)
{
	struct conn_ctx *x = arg;
	struct epoll_event *e;
	int n;

	(void)what;
	if (x->nkick > 0)
		run_kicks(x);
	while ((n = epoll_wait(fd, x->evs, CONN_EPOLL_BATCH, 0)) == -1 && errno == EINTR)
		;
	for (e = x->evs; n > 0; n--, e++) {
		struct conn *c = e->data.ptr;
		short ev;

		if (c->flags & CONN_F_CLOSED)
			continue;
		/* As libevent's epoll backend: an error or hang-up wakes both directions. */
		ev = (e->events & (EPOLLERR | EPOLLHUP)) ? EV_READ | EV_WRITE :
		    (short)(((e->events & EPOLLIN) ? EV_READ : 0) | ((e->events & EPOLLOUT) ? EV_WRITE : 0));
		if ((ev &= (short)c->evmask) != 0)
			conn_event(c, ev);
	}
	if (n == -1)
		log_error("epoll_wait() failed");
}

int
conn_ctx_init(struct conn_ctx *x, struct event_base *base, size_t rbuflen)
{
	memset(x, 0, sizeof(*x));
	x->base = base;
	x->rbuflen = rbuflen;
	x->epfd = -1;
	if ((x->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		log_error("epoll_create1() failed");
		return -1;
	}
	if ((x->rbuf = malloc(rbuflen)) == NULL || (x->evs = calloc(CONN_EPOLL_BATCH, sizeof(*x->evs))) == NULL ||
	    (x->epev = event_new(base, x->epfd, EV_READ | EV_PERSIST, ctx_event, x)) == NULL ||
	    event_add(x->epev, NULL) == -1) {
		conn_ctx_free(x);
		return -1;
	}
	return 0;
}

void
conn_ctx_free(struct conn_ctx *x)
{
	struct conn *c;

	while ((c = x->all) != NULL)
		conn_close(c);
	conn_flush_pending(x);
	x->bpending = NULL;	/* every one of them is closed */
	conn_free_dead(x);
	free(x->tlsbuf);
	free(x->rbuf);
	x->tlsbuf = x->rbuf = NULL;
	free(x->evs);
	x->evs = NULL;
	free(x->kick);
	x->kick = NULL;
	x->nkick = x->kickcap = 0;
	if (x->epev != NULL)
		event_free(x->epev);
	x->epev = NULL;
	if (x->epfd >= 0)
		close(x->epfd);
	x->epfd = -1;
}

void
conn_flush_pending(struct conn_ctx *x)
{
	struct conn *c, *next;

	/* A flush may queue more (a handler answering an EOF): loop until quiet. */
	while ((c = x->wpending) != NULL) {
		x->wpending = NULL;
		for (; c != NULL; c = next) {
			next = c->wnext;
			c->wnext = NULL;
			c->flags &= ~CONN_F_WPENDING;
			if (!(c->flags & CONN_F_CLOSED))
				conn_flush(c);
		}
	}
}

void
conn_flush_broadcasts(struct conn_ctx *x)
{
	struct conn *c = x->bpending, *next;

	x->bpending = NULL;
	for (; c != NULL; c = next) {
		next = c->bnext;
		c->bnext = NULL;
		c->flags &= ~CONN_F_BPENDING;
		if (!(c->flags & CONN_F_CLOSED) && outq_count(&c->out) > 0)
			conn_flush(c);
	}
}

/* Take closed conns off the broadcast list before they are freed. */
static void
unlink_closed_broadcasts(struct conn_ctx *x)
{
	struct conn **pp = &x->bpending, *c;

	while ((c = *pp) != NULL) {
		if (c->flags & CONN_F_CLOSED) {
			*pp = c->bnext;
			c->bnext = NULL;
			c->flags &= ~CONN_F_BPENDING;
		} else
			pp = &c->bnext;
	}
}

void
conn_free_dead(struct conn_ctx *x)
{
	struct conn *c;

	for (c = x->dead; c != NULL; c = c->next)
		if (c->flags & CONN_F_BPENDING) {
			unlink_closed_broadcasts(x);
			break;
		}
	while ((c = x->dead) != NULL) {
		x->dead = c->next;
		c->h->on_free(c);
	}
}

void
conn_tick_all(struct conn_ctx *x, uint64_t now)
{
	struct conn *c, *next;

	for (c = x->all; c != NULL; c = next) {
		next = c->next;
		if (c->flags & (CONN_F_LINGER | CONN_F_FINISH)) {
			/* A finishing conn whose peer stops reading must not wait forever for its queue. */
			if (now >= c->linger_until)
				conn_close(c);
			continue;
		}
		c->h->on_tick(c, now);
		outq_trim(&c->out);	/* idle connections hold no queue memory */
	}
}
