/*
 * worker.h: a worker process: one libevent loop that accepts on its slot's
 * listening sockets and runs every session it accepted. Signals: TERM drains,
 * QUIT stops at once, USR1 reopens the log.
 */
#ifndef ROOMD_WORKER_H
#define ROOMD_WORKER_H

#include <stdint.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"
#include "conn.h"

struct worker {
	int			 index;
	int			 generation;
	struct event_base	*base;
	const struct config	*cfg;
	int			 nlisten;
	int			 lfd[CFG_MAX_LISTEN];
	struct event		*lev[CFG_MAX_LISTEN];
	struct event		*sig[4];
	struct event		*tick;
	struct event		*stop_timer;
	struct event		*accept_retry;
	struct conn		*all;		/* every open or lingering conn */
	struct conn		*wpending;	/* conns with queued output */
	struct conn		*bpending;	/* conns with queued room messages */
	struct event		*bulk_timer;	/* ends a coalescing pause */
	uint64_t		 bulk_last;	/* µs (monotonic): end of the last broadcast flush */
	uint64_t		 bulk_pause;	/* µs to hold the next broadcasts for */
	int			 bulk_due;	/* the pause is over: flush this turn */
	struct conn		*dead;		/* closed, to free after this turn */
	int			 nconns;
	int			 full_logged;	/* "limit reached" said once per episode */
	uint32_t		 next_id;
	int			 stopping;	/* draining: no new sessions */
	uint64_t		 stop_started;
	int			 drain_total;	/* connections open when the drain began */
	int			 drained;	/* of those, told to go */
	int			 drain_done;
	int			 retiring;	/* a successor accepts on our listening sockets */
	int			 quit;
	uint8_t			*rbuf;		/* scratch for reads */
	size_t			 rbuflen;
	uint8_t			*tlsbuf;	/* scratch for coalescing TLS writes */
	SSL_CTX			*tls;		/* for listeners marked ssl */
	uint64_t		 rng[2];	/* xorshift128+ state for uuids and masks */
};

/* The worker of this process (NULL in the master). */
extern struct worker *worker_self;

/*
 * Run worker `index` on fds[nfds] until it stops; returns the exit status.
 * instance names this roomd in Redis; the worker is "<instance>.<pid>" there.
 */
int worker_run(const struct config *, int index, int generation, const char *instance,
    const int *fds, int nfds);
/* Monotonic milliseconds (coarse clock: cheap enough for every read). */
uint64_t worker_now(void);
/* Wall-clock milliseconds since the epoch (for timestamps clients see). */
uint64_t worker_wallclock_ms(void);
/* 64 random bits from the worker's generator. */
uint64_t worker_random(struct worker *);
/* The scratch buffer for one TLS record's worth of output (NULL on OOM). */
uint8_t *worker_tls_buffer(struct worker *);
/* Put c on the list of conns to flush at the end of this loop turn. */
void worker_want_flush(struct worker *, struct conn *);
/*
 * The same for room messages, whose flushes may be coalesced: after a
 * broadcast flush that took F >= 1 ms, the next waits F (at most
 * broadcast_coalesce), so that under load each member gets several
 * messages per write.
 */
void worker_want_flush_bulk(struct worker *, struct conn *);

#endif
