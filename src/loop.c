/*
 * loop.c: the order of work in a loop turn. Each turn ends by writing what
 * handlers queued (one writev per connection) and freeing the connections
 * closed during the turn, so no callback ever sees freed memory. Room
 * messages may be held a little longer under load, so that one write
 * carries several.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"

_Static_assert(offsetof(struct loop, conns) == 0, "loop_of casts the conn context to its loop");

static void
bulk_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;

	(void)fd;
	(void)what;
	l->bulk_due = 1;	/* the end of this turn flushes */
}

int
loop_init(struct loop *l, struct event_base *base, const struct config *cfg)
{
	memset(l, 0, sizeof(*l));
	l->base = base;
	l->cfg = cfg;
	if (getrandom(l->rng, sizeof(l->rng), 0) != sizeof(l->rng))
		return -1;
	l->rng[0] |= 1;
	if (conn_ctx_init(&l->conns, base, 64 * 1024) == -1)
		return -1;
	if ((l->bulk_timer = evtimer_new(base, bulk_timer_cb, l)) == NULL) {
		conn_ctx_free(&l->conns);
		return -1;
	}
	return 0;
}

void
loop_free(struct loop *l)
{
	conn_ctx_free(&l->conns);
	if (l->bulk_timer != NULL)
		event_free(l->bulk_timer);
	l->bulk_timer = NULL;
}

uint64_t
loop_random(struct loop *l)
{
	uint64_t s1 = l->rng[0], s0 = l->rng[1];

	l->rng[0] = s0;
	s1 ^= s1 << 23;
	l->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return l->rng[1] + s0;
}

int
loop_ready(struct loop *l, char *why, size_t len)
{
	if (l->stopping) {
		snprintf(why, len, "draining");
		return 0;
	}
	return l->ready == NULL || l->ready(l->ready_arg, why, len);
}

/*
 * Write the queued room messages, unless the last such flush was costly and
 * recent. Writing to N sockets costs about N syscalls whatever each carries,
 * so pausing for as long as the last flush took keeps the worker's time in
 * them at most half while each write takes more messages. A member waits
 * at most one flush's time more, which is also the spread between the first
 * and the last member of a flush. Sub-millisecond flushes never pause: the
 * loop's timers are not finer than that.
 */
static void
flush_broadcasts(struct loop *l)
{
	uint64_t now = clock_us(), took, cap;

	if (!l->bulk_due && now - l->bulk_last < l->bulk_pause) {
		if (!evtimer_pending(l->bulk_timer, NULL)) {
			uint64_t left = l->bulk_last + l->bulk_pause - now;
			struct timeval tv = { (time_t)(left / 1000000u), (suseconds_t)(left % 1000000u) };

			if (evtimer_add(l->bulk_timer, &tv) == 0) {
				metrics_add(MET_BCAST_PAUSES, 1);
				return;
			}
			log_error("cannot arm the broadcast timer: flushing now");
		} else
			return;
	}
	if (evtimer_pending(l->bulk_timer, NULL))
		evtimer_del(l->bulk_timer);
	l->bulk_due = 0;
	conn_flush_broadcasts(&l->conns);
	l->bulk_last = clock_us();
	took = l->bulk_last - now;
	cap = (uint64_t)l->cfg->broadcast_coalesce * 1000u;
	l->bulk_pause = took < 1000 ? 0 : took < cap ? took : cap;
	if (l->conns.bpending != NULL) {
		/* Queued by a handler during the flush: not left for whatever event comes next. */
		struct timeval tv = { (time_t)(l->bulk_pause / 1000000u), (suseconds_t)(l->bulk_pause % 1000000u) };

		if (evtimer_add(l->bulk_timer, &tv) == -1)
			log_error("cannot arm the broadcast timer");
	}
}

void
loop_end_turn(struct loop *l)
{
	conn_flush_pending(&l->conns);
	if (l->conns.bpending != NULL)
		flush_broadcasts(l);
	conn_free_dead(&l->conns);
}

void
loop_tick(struct loop *l, uint64_t now)
{
	conn_tick_all(&l->conns, now);
}
