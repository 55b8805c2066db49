/*
 * worker.c: the worker process. It owns an event_base, its slot's listening
 * sockets and every connection it accepted; a periodic tick drives timeouts.
 * Each loop turn ends by flushing queued output (one writev per connection)
 * and freeing the connections closed during the turn. Room messages may be
 * held a little longer under load, so that one write carries several.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "conn.h"
#include "deflate.h"
#include "bus.h"
#include "log.h"
#include "http.h"
#include "metrics.h"
#include "proto.h"
#include "room.h"
#include "tls.h"
#include "worker.h"
#include "ws.h"

#define ACCEPT_BATCH	64
#define RBUF_SIZE	(64 * 1024)

struct worker *worker_self;

uint64_t
worker_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
worker_wallclock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
worker_random(struct worker *w)
{
	uint64_t s1 = w->rng[0], s0 = w->rng[1];

	w->rng[0] = s0;
	s1 ^= s1 << 23;
	w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
	return w->rng[1] + s0;
}

uint8_t *
worker_tls_buffer(struct worker *w)
{
	if (w->tlsbuf == NULL)
		w->tlsbuf = malloc(16384);
	return w->tlsbuf;
}

void
worker_want_flush(struct worker *w, struct conn *c)
{
	if (c->flags & CONN_F_WPENDING)
		return;
	c->flags |= CONN_F_WPENDING;
	c->wnext = w->wpending;
	w->wpending = c;
}

void
worker_want_flush_bulk(struct worker *w, struct conn *c)
{
	if (c->flags & CONN_F_BPENDING)
		return;
	c->flags |= CONN_F_BPENDING;
	c->bnext = w->bpending;
	w->bpending = c;
}

static uint64_t
mono_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
bulk_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	(void)fd;
	(void)what;
	w->bulk_due = 1;	/* the end of this turn flushes */
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
flush_broadcasts(struct worker *w)
{
	uint64_t now = mono_us(), took, cap;
	struct conn *c, *next;

	if (!w->bulk_due && now - w->bulk_last < w->bulk_pause) {
		if (!evtimer_pending(w->bulk_timer, NULL)) {
			uint64_t left = w->bulk_last + w->bulk_pause - now;
			struct timeval tv = { (time_t)(left / 1000000u), (suseconds_t)(left % 1000000u) };

			if (evtimer_add(w->bulk_timer, &tv) == 0) {
				metrics_add(MET_BCAST_PAUSES, 1);
				return;
			}
			log_error("cannot arm the broadcast timer: flushing now");
		} else
			return;
	}
	if (evtimer_pending(w->bulk_timer, NULL))
		evtimer_del(w->bulk_timer);
	w->bulk_due = 0;
	c = w->bpending;
	w->bpending = NULL;
	for (; c != NULL; c = next) {
		next = c->bnext;
		c->bnext = NULL;
		c->flags &= ~CONN_F_BPENDING;
		if (!(c->flags & CONN_F_CLOSED) && c->out.count > 0)
			conn_flush(c);
	}
	w->bulk_last = mono_us();
	took = w->bulk_last - now;
	cap = (uint64_t)w->cfg->broadcast_coalesce * 1000u;
	w->bulk_pause = took < 1000 ? 0 : took < cap ? took : cap;
	if (w->bpending != NULL) {
		/* Queued by a handler during the flush: not left for whatever event comes next. */
		struct timeval tv = { (time_t)(w->bulk_pause / 1000000u), (suseconds_t)(w->bulk_pause % 1000000u) };

		if (evtimer_add(w->bulk_timer, &tv) == -1)
			log_error("cannot arm the broadcast timer");
	}
}

/* Take closed conns off the broadcast list before they are freed. */
static void
unlink_closed_broadcasts(struct worker *w)
{
	struct conn **pp = &w->bpending, *c;

	while ((c = *pp) != NULL) {
		if (c->flags & CONN_F_CLOSED) {
			*pp = c->bnext;
			c->bnext = NULL;
			c->flags &= ~CONN_F_BPENDING;
		} else
			pp = &c->bnext;
	}
}

/* End of a loop turn: write queued output, then free what was closed. */
static void
worker_end_turn(struct worker *w)
{
	struct conn *c, *next;

	while ((c = w->wpending) != NULL) {
		w->wpending = NULL;
		for (; c != NULL; c = next) {
			next = c->wnext;
			c->wnext = NULL;
			c->flags &= ~CONN_F_WPENDING;
			if (!(c->flags & CONN_F_CLOSED))
				conn_flush(c);
		}
	}
	if (w->bpending != NULL)
		flush_broadcasts(w);
	for (c = w->dead; c != NULL; c = c->next)
		if (c->flags & CONN_F_BPENDING) {
			unlink_closed_broadcasts(w);
			break;
		}
	while ((c = w->dead) != NULL) {
		w->dead = c->next;
		c->h->on_free(c);
	}
}

static void
worker_stop_listening(struct worker *w)
{
	for (int i = 0; i < w->nlisten; i++) {
		if (w->lev[i] != NULL) {
			event_free(w->lev[i]);
			w->lev[i] = NULL;
		}
		if (w->lfd[i] >= 0) {
			close(w->lfd[i]);
			w->lfd[i] = -1;
		}
	}
	if (w->accept_retry != NULL)
		event_del(w->accept_retry);
}

/* Refuse a connection over the limit with a one-shot 503; never blocks. */
static void
refuse_full(int fd)
{
	static const char resp[] = "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: text/plain\r\nContent-Length: 21\r\nConnection: close\r\n"
	    "Retry-After: 1\r\n\r\nserver is at capacity";

	if (write(fd, resp, sizeof(resp) - 1) < 0)
		(void)0;	/* the peer is being refused anyway */
	close(fd);
}

static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < w->nlisten; i++)
		if (w->lev[i] != NULL && event_add(w->lev[i], NULL) == -1)
			log_error("event_add(listener) failed");
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct worker *w = arg;
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1, proxy = 0;
	SSL_CTX *tls = NULL;

	for (int i = 0; i < w->nlisten; i++) {
		if (w->lfd[i] == lfd) {
			proxy = w->cfg->listen[i].proxy_protocol;
			tls = w->cfg->listen[i].ssl ? w->tls : NULL;
		}
	}

	for (int i = 0; i < ACCEPT_BATCH; i++) {
		sl = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				struct timeval tv = { 0, 100000 };

				log_errno(LOG_LVL_WARNING, "accept4() failed; pausing accepts for 100ms");
				for (int j = 0; j < w->nlisten; j++)
					if (w->lev[j] != NULL)
						event_del(w->lev[j]);
				evtimer_add(w->accept_retry, &tv);
				return;
			}
			log_errno(LOG_LVL_ERROR, "accept4() failed");
			return;
		}
		/* max_connections counts every worker (shared gauges); worker_connections this one. */
		if ((w->cfg->worker_connections > 0 && w->nconns >= w->cfg->worker_connections) ||
		    metrics_gauge_claim(GAUGE_CONN_OPEN, w->cfg->max_connections) == -1) {
			metrics_refused(REFUSE_CAPACITY);
			if (!w->full_logged)
				log_warn("connection limit reached (%d here, max_connections %d, worker_connections %d): "
				    "refusing clients with 503", w->nconns, w->cfg->max_connections,
				    w->cfg->worker_connections);
			w->full_logged = 1;
			refuse_full(fd);
			continue;
		}
		w->full_logged = 0;
		if (ss.ss_family != AF_UNIX &&
		    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
			log_errno(LOG_LVL_DEBUG, "setsockopt(TCP_NODELAY) failed");
		if (ws_accept(w, fd, (struct sockaddr *)&ss, proxy, tls) == -1) {
			log_error("no memory for a new connection: refusing it");
			metrics_gauge(GAUGE_CONN_OPEN, -1);
			close(fd);
		}
	}
}

/* Tell one connection to go (close 1001 for a session). */
static void
send_away(struct conn *c)
{
	c->flags |= CONN_F_SHUTDOWN;
	c->h->on_shutdown(c);
}

/*
 * Draining: close the connections that were open when the drain began a
 * fraction at a time, so that over drain_time they reconnect elsewhere
 * without a thundering herd; at its end stop listening and close the rest.
 */
static void
drain_step(struct worker *w, uint64_t now)
{
	uint64_t elapsed = now - w->stop_started, span = (uint64_t)w->cfg->drain_time;
	struct conn *c, *next;
	int target;

	if (elapsed >= span) {
		w->drain_done = 1;
		worker_stop_listening(w);
		for (c = w->all; c != NULL; c = next) {
			next = c->next;
			if (!(c->flags & (CONN_F_SHUTDOWN | CONN_F_LINGER | CONN_F_CLOSED)))
				send_away(c);
		}
		return;
	}
	target = (int)((uint64_t)w->drain_total * elapsed / span);
	for (c = w->all; c != NULL && w->drained < target; c = next) {
		next = c->next;
		/* Only those open when the drain began; later ones are health checks and refusals. */
		if (!(c->flags & CONN_F_DRAIN) ||
		    (c->flags & (CONN_F_SHUTDOWN | CONN_F_LINGER | CONN_F_CLOSED)))
			continue;
		send_away(c);
		w->drained++;
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	uint64_t now = worker_now();
	struct conn *c, *next;

	for (c = w->all; c != NULL; c = next) {
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
	room_tick(now);
	if (w->stopping && !w->drain_done)
		drain_step(w, now);
}

/* A stopping worker exits once its clients are gone and Redis has its last words. */
static int
done_stopping(struct worker *w)
{
	return w->stopping && w->nconns == 0 &&
	    (bus_idle() || worker_now() - w->stop_started > 2000);
}

static void
stop_now(struct worker *w, const char *why)
{
	struct conn *c;

	log_notice("%s: closing %d connection(s) and exiting", why, w->nconns);
	worker_stop_listening(w);
	while ((c = w->all) != NULL)
		conn_close(c);
	w->quit = 1;
}

static void
stop_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	stop_now(arg, "shutdown_timeout passed");
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;
	struct conn *c, *next;

	switch (sig) {
	case SIGUSR2:
		/*
		 * Replaced by workers that share our listening sockets (reload,
		 * binary upgrade): they accept from now on, we only drain.
		 */
		if (!w->stopping) {
			w->retiring = 1;
			worker_stop_listening(w);
		}
		/* FALLTHROUGH */
	case SIGTERM:
		if (w->stopping)
			return;
		w->stopping = 1;
		w->stop_started = worker_now();
		w->drain_total = 0;
		for (c = w->all; c != NULL; c = c->next)
			if (!(c->flags & (CONN_F_SHUTDOWN | CONN_F_LINGER | CONN_F_CLOSED))) {
				c->flags |= CONN_F_DRAIN;
				w->drain_total++;
			}
		metrics_gauge(GAUGE_DRAINING, 1);
		if (w->cfg->drain_time > 0) {
			log_notice("draining: not ready, refusing new sessions, closing %d client(s) with 1001 over %dms",
			    w->nconns, w->cfg->drain_time);
		} else {
			log_notice("graceful stop: no new connections, closing %d client(s) with 1001",
			    w->nconns);
			w->drain_done = 1;
			worker_stop_listening(w);
			for (c = w->all; c != NULL; c = next) {
				next = c->next;
				send_away(c);
			}
		}
		{
			struct timeval tv = { w->cfg->shutdown_timeout / 1000,
			    (w->cfg->shutdown_timeout % 1000) * 1000 };
			evtimer_add(w->stop_timer, &tv);
		}
		break;
	case SIGQUIT:
		stop_now(w, "immediate stop");
		break;
	case SIGUSR1:
		if (log_reopen() == -1)
			log_errno(LOG_LVL_ERROR, "reopening the log file failed");
		break;
	}
}

/* Tick often enough for the shortest timeout, but not more than 20 times a second. */
static int
tick_interval_ms(const struct config *cfg)
{
	int m = cfg->handshake_timeout;

	if (cfg->ping_interval < m)
		m = cfg->ping_interval;
	if (cfg->close_timeout < m)
		m = cfg->close_timeout;
	if (cfg->drain_time > 0 && cfg->drain_time / 10 < m)
		m = cfg->drain_time / 10;
	if (cfg->heartbeat_interval > 0 && cfg->heartbeat_interval < m)
		m = cfg->heartbeat_interval;
	m /= 5;
	if (m < 50)
		m = 50;
	if (m > 1000)
		m = 1000;
	return m;
}

static void
worker_free(struct worker *w)
{
	struct conn *c;

	worker_stop_listening(w);
	while ((c = w->all) != NULL)
		conn_close(c);
	worker_end_turn(w);
	room_shutdown();
	for (int i = 0; i < 4; i++)
		if (w->sig[i] != NULL)
			event_free(w->sig[i]);
	if (w->tick != NULL)
		event_free(w->tick);
	if (w->stop_timer != NULL)
		event_free(w->stop_timer);
	if (w->bulk_timer != NULL)
		event_free(w->bulk_timer);
	if (w->accept_retry != NULL)
		event_free(w->accept_retry);
	if (w->base != NULL)
		event_base_free(w->base);
	if (w->tls != NULL)
		SSL_CTX_free(w->tls);
	free(w->tlsbuf);
	free(w->rbuf);
	pmd_free();
	sbuf_cache_clear();
	http_cleanup();
	free(w);
}

int
worker_run(const struct config *cfg, int index, int generation, const char *instance,
    const int *fds, int nfds)
{
	char wid[96];
	static const int sigs[] = { SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2 };
	struct worker *w;
	struct timeval tv;
	int ms;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		fatalx("worker %d: out of memory", index);
	worker_self = w;
	w->index = index;
	w->generation = generation;
	w->cfg = cfg;
	w->rbuflen = RBUF_SIZE;
	if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
		fatal("getrandom() failed");
	w->rng[0] |= 1;
	if ((w->rbuf = malloc(w->rbuflen)) == NULL)
		fatalx("worker %d: out of memory", index);
	if ((w->base = event_base_new()) == NULL)
		fatalx("worker %d: event_base_new() failed", index);
	if (cfg->deflate && pmd_init(cfg->deflate_level, cfg->deflate_window_bits) == -1)
		fatalx("worker %d: out of memory for zlib", index);
	if (tls_wanted(cfg)) {
		char err[CFG_ERR_LEN];

		/* Built here, not inherited: a reload's new workers read renewed certificates. */
		if ((w->tls = tls_ctx_new(cfg, err, sizeof(err))) == NULL)
			fatalx("worker %d: %s", index, err);
	}
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		w->sig[i] = evsignal_new(w->base, sigs[i], signal_cb, w);
		if (w->sig[i] == NULL || evsignal_add(w->sig[i], NULL) == -1)
			fatalx("worker %d: evsignal_add(%d) failed", index, sigs[i]);
	}
	w->nlisten = nfds;
	for (int i = 0; i < nfds; i++) {
		w->lfd[i] = fds[i];
		w->lev[i] = event_new(w->base, fds[i], EV_READ | EV_PERSIST, accept_cb, w);
		if (w->lev[i] == NULL || event_add(w->lev[i], NULL) == -1)
			fatalx("worker %d: cannot watch listening socket %d", index, fds[i]);
	}
	w->accept_retry = evtimer_new(w->base, accept_resume, w);
	w->stop_timer = evtimer_new(w->base, stop_timer_cb, w);
	w->tick = event_new(w->base, -1, EV_PERSIST, tick_cb, w);
	w->bulk_timer = evtimer_new(w->base, bulk_timer_cb, w);
	ms = tick_interval_ms(cfg);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (w->accept_retry == NULL || w->stop_timer == NULL || w->tick == NULL || w->bulk_timer == NULL ||
	    event_add(w->tick, &tv) == -1)
		fatalx("worker %d: cannot create timers", index);

	/*
	 * Page in what the first client would otherwise pay for (SHA-1 and
	 * base64 from libcrypto for the handshake, json-c for the chat
	 * protocol): once here, instead of as page faults on a live request.
	 */
	{
		static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";
		static const char js[] = "{\"event\":\"heartbeat\",\"message\":\"pong\"}";
		struct proto_limits lim = { 64, 128 };
		struct proto *pp = proto_new();
		struct chat_req req;
		const char *code;
		char accept[29], why[64];

		http_accept_key(key, sizeof(key) - 1, accept);
		if (pp != NULL) {
			(void)proto_parse(pp, js, sizeof(js) - 1, &lim, &req, &code, why, sizeof(why));
			proto_free(pp);
		}
	}
	snprintf(wid, sizeof(wid), "%s.%d", instance, (int)getpid());
	if (room_init(w->base, wid) == -1)
		fatalx("worker %d: cannot set up rooms", index);
	log_info("started (generation %d, %s backend)", generation, event_base_get_method(w->base));
	while (!w->quit) {
		if (event_base_loop(w->base, EVLOOP_ONCE) == -1) {
			log_error("event_base_loop() failed");
			break;
		}
		worker_end_turn(w);
		if (done_stopping(w))
			w->quit = 1;
	}
	log_info("exiting");
	worker_free(w);
	worker_self = NULL;
	return 0;
}
