/*
 * conn.h: one client socket under a protocol. conn owns the fd, its place
 * in the context's epoll set, the output queue, lingering close and deferred free, and
 * calls its handler on READ, TICK and FREE. The conns of one loop share a
 * context: the lists of conns to flush and to free, and scratch buffers.
 */
#ifndef ROOMD_CONN_H
#define ROOMD_CONN_H

#include <stdint.h>
#include <event2/event.h>
#include <sys/epoll.h>
#include <openssl/ssl.h>

#include "sbuf.h"

struct conn;

/*
 * What the conns of one event loop share. conn.c keeps the lists; the loop
 * that owns the context flushes and frees them once per turn.
 */
struct conn_ctx {
	struct event_base	*base;
	struct conn		*all;		/* every open or lingering conn */
	struct conn		*wpending;	/* conns with queued output */
	struct conn		*bpending;	/* conns with queued room messages */
	struct conn		*dead;		/* closed, to free after this turn */
	/*
	 * The conns' sockets sit in one epoll set of the context's, watched by a
	 * single libevent event: an idle conn then holds no struct event and
	 * libevent keeps no per-fd state for it.
	 */
	int			 epfd;
	struct event		*epev;
	struct epoll_event	*evs;		/* one epoll_wait's batch */
	struct conn		**kick;		/* conns to run as readable without a socket event */
	uint32_t		 nkick, kickcap;
	int			 nconns;
	uint32_t		 next_id;
	uint8_t			*rbuf;		/* scratch for reads */
	size_t			 rbuflen;
	uint8_t			*tlsbuf;	/* scratch for coalescing TLS writes */
};

struct conn_handler {
	/*
	 * Bytes arrived (in a worker scratch buffer the handler may modify);
	 * len 0: none, go on with the input held (conn_hold_until_drained).
	 */
	void	(*on_read)(struct conn *, uint8_t *data, size_t len);
	/* The peer closed or reset; the conn is being closed. why: "eof", errno text. */
	void	(*on_eof)(struct conn *, const char *why);
	/* Periodic check of timeouts; now in ms (monotonic). */
	void	(*on_tick)(struct conn *, uint64_t now);
	/* Graceful stop of the worker: end the session politely. */
	void	(*on_shutdown)(struct conn *);
	/* The conn is unlinked and its fd closed: free everything it holds. */
	void	(*on_free)(struct conn *);
};

#define CONN_F_CLOSED		0x01	/* fd closed, free pending */
#define CONN_F_WPENDING		0x02	/* on the context's write list */
#define CONN_F_WANTWRITE	0x04	/* EV_WRITE armed */
#define CONN_F_PAUSED		0x08	/* not reading (backpressure) */
#define CONN_F_FINISH		0x10	/* close after the queue drains */
#define CONN_F_LINGER		0x20	/* write side shut; discarding input until EOF */
#define CONN_F_AUTORESUME	0x40	/* resume reading once the queue drains */
#define CONN_F_SHUTDOWN		0x80	/* told to go by a draining worker */
#define CONN_F_TLS_HS		0x100	/* TLS handshake in progress */
#define CONN_F_TLS_RW		0x200	/* an SSL_read wants the socket writable */
#define CONN_F_TLS_WR		0x400	/* an SSL_write wants the socket readable */
#define CONN_F_DRAIN		0x800	/* open when the drain began: closed during it */
#define CONN_F_BPENDING		0x1000	/* on the context's broadcast-flush list */
#define CONN_F_HELD		0x2000	/* the handler holds input to go on with once drained */
#define CONN_F_KICK		0x4000	/* on the context's list to run as readable */

struct conn {
	int			 fd;
	uint32_t		 id;		/* per worker, for logs */
	uint16_t		 flags;
	uint8_t			 family;	/* AF_INET or AF_INET6 (mapped v4 shown as v4) */
	uint8_t			 evmask;	/* EV_READ, EV_WRITE: what the epoll set watches (0: not in it) */
	uint16_t		 port;
	uint16_t		 tls_retry;	/* bytes (<= one TLS chunk) an unfinished SSL_write must be retried with */
	uint8_t			 ip[16];
	uint64_t		 linger_until;	/* ms, while CONN_F_LINGER */
	struct conn		*prev, *next;	/* the context's list of all conns */
	struct conn		*wnext;		/* the context's pending-write list */
	struct conn		*bnext;		/* the context's broadcast-flush list */
	struct outq		 out;
	const struct conn_handler *h;
	struct conn_ctx		*ctx;
	SSL			*ssl;		/* NULL: plain TCP */
};

/*
 * Adopt an accepted, non-blocking fd; registers for reading. With tls, a TLS
 * handshake comes first. -1 on failure (fd not closed). The caller has
 * claimed the connection in the open-connections gauge; closing releases it.
 */
int conn_init(struct conn *, struct conn_ctx *, int fd, const struct sockaddr *, const struct conn_handler *,
    SSL_CTX *tls) MUST_CHECK;
/* Queue b[off, off+len) for sending (takes a reference). -1 if the queue is full or OOM. */
int conn_send(struct conn *, struct sbuf *, uint32_t off, uint32_t len) MUST_CHECK;
/* Queue len bytes of file fd from off, sent with sendfile(2); takes ownership of fd. */
int conn_send_file(struct conn *, int fd, uint64_t off, uint32_t len) MUST_CHECK;
/* The same for a room message: its flush may be coalesced with the next ones. */
int conn_send_bulk(struct conn *, struct sbuf *, uint32_t off, uint32_t len) MUST_CHECK;
/* Queue a copy of bytes; for small, rare replies. */
int conn_send_copy(struct conn *, const void *, size_t) MUST_CHECK;
/* Flush what is queued, shut the write side, discard input until EOF or timeout, then close. */
void conn_finish(struct conn *, int linger_ms);
/* Close the socket now; the memory is freed at the end of the loop turn. */
void conn_close(struct conn *);
/* Stop or resume reading. */
void conn_pause(struct conn *, int paused);
/* Stop reading until everything queued has been written (backpressure). */
void conn_pause_until_drained(struct conn *);
/*
 * The same for a handler that keeps input it has not handled yet (requests
 * read but not answered): once the queue drains, on_read is called with
 * len 0, from the event loop, to go on with it before reading more.
 */
void conn_hold_until_drained(struct conn *);
/* The peer address as text ("1.2.3.4" or "::1"); buf >= 46 bytes. */
const char *conn_addr(const struct conn *, char *buf, size_t len);
static inline int conn_closed(const struct conn *c) { return (c->flags & CONN_F_CLOSED) != 0; }
static inline size_t conn_pending(const struct conn *c) { return outq_bytes(&c->out); }
static inline uint32_t conn_queued(const struct conn *c) { return outq_count(&c->out); }
/* The frame just queued may be dropped for a slow reader (a room broadcast). */
static inline void conn_mark_droppable(struct conn *c) { outq_mark_droppable(&c->out); }
/* Drop the oldest droppable frames not yet started until need bytes are freed; how many. */
static inline uint32_t conn_drop_oldest(struct conn *c, size_t need) { return outq_drop_oldest(&c->out, need); }

/* Set up a context on base (rbuflen: the read scratch size). -1 when out of memory. */
int conn_ctx_init(struct conn_ctx *, struct event_base *, size_t rbuflen) MUST_CHECK;
/* Close every conn and free what the context holds (the conns too). */
void conn_ctx_free(struct conn_ctx *);
/* Write every conn with queued replies (the end of a loop turn). */
void conn_flush_pending(struct conn_ctx *);
/* Write every conn with queued room messages. */
void conn_flush_broadcasts(struct conn_ctx *);
/* Free the conns closed during this turn. */
void conn_free_dead(struct conn_ctx *);
/* Once per tick: end lingering closes that ran out of time, then on_tick every other conn. */
void conn_tick_all(struct conn_ctx *, uint64_t now);

#endif
