/*
 * worker.c: the worker process. It owns an event_base, its slot's listening
 * sockets and the loop its sessions run on; it accepts, drives the tick
 * (timeouts, room upkeep, the drain), handles its signals, and decides when
 * to exit.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "api.h"
#include "bus.h"
#include "clock.h"
#include "conn.h"
#include "deflate.h"
#include "front.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "proto.h"
#include "room.h"
#include "routes.h"
#include "sbuf.h"
#include "tls.h"
#include "worker.h"

#define ACCEPT_BATCH	64

struct worker {
	int			 index;
	int			 generation;
	struct event_base	*base;
	const struct config	*cfg;
	struct loop		 loop;		/* the sessions */
	int			 nlisten;
	int			 lfd[CFG_MAX_LISTEN];
	struct event		*lev[CFG_MAX_LISTEN];
	struct event		*sig[4];
	struct event		*tick;
	struct event		*stop_timer;
	struct event		*accept_retry;
	int			 full_logged;	/* "limit reached" said once per episode */
	uint64_t		 stop_started;
	int			 drain_total;	/* connections open when the drain began */
	int			 drained;	/* of those, told to go */
	int			 drain_done;
	int			 quit;
	uint64_t		 quit_by;	/* an immediate stop: ms by which to be gone */
	int			 farewell;	/* 1: our registration's removal sent */
	uint64_t		 wait_since;	/* ms since Redis's answers are awaited */
	SSL_CTX			*tls;		/* for listeners marked ssl */
};

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
	int fd, one = 1, flags = 0;
	SSL_CTX *tls = NULL;

	for (int i = 0; i < w->nlisten; i++) {
		if (w->lfd[i] == lfd) {
			const struct cfg_listen *l = &w->cfg->listen[i];

			flags = (l->proxy_protocol ? FRONT_PROXY : 0) | (l->api ? FRONT_API : 0) |
			    (l->api_only ? FRONT_API_ONLY : 0);
			tls = l->ssl ? w->tls : NULL;
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
		if ((w->cfg->worker_connections > 0 && w->loop.conns.nconns >= w->cfg->worker_connections) ||
		    metrics_gauge_claim(GAUGE_CONN_OPEN, w->cfg->max_connections) == -1) {
			metrics_refused(REFUSE_CAPACITY);
			if (!w->full_logged)
				log_warn("connection limit reached (%d here, max_connections %d, worker_connections %d): "
				    "refusing clients with 503", w->loop.conns.nconns, w->cfg->max_connections,
				    w->cfg->worker_connections);
			w->full_logged = 1;
			refuse_full(fd);
			continue;
		}
		w->full_logged = 0;
		if (ss.ss_family != AF_UNIX &&
		    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
			log_errno(LOG_LVL_DEBUG, "setsockopt(TCP_NODELAY) failed");
		if (front_accept(&w->loop, fd, (struct sockaddr *)&ss, flags, tls) == -1) {
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
		for (c = w->loop.conns.all; c != NULL; c = next) {
			next = c->next;
			if (!(c->flags & (CONN_F_SHUTDOWN | CONN_F_LINGER | CONN_F_CLOSED)))
				send_away(c);
		}
		return;
	}
	target = (int)((uint64_t)w->drain_total * elapsed / span);
	for (c = w->loop.conns.all; c != NULL && w->drained < target; c = next) {
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
	uint64_t now = clock_ms();

	loop_tick(&w->loop, now);
	room_tick(now);
	api_tick(now);
	if (w->loop.stopping && !w->drain_done)
		drain_step(w, now);
	metrics_beat(now);	/* for the master's systemd watchdog: this loop still turns */
}

/*
 * A stopping worker exits once its clients are gone and Redis has its last
 * words, but not before the drain ends: until then it answers /readyz and
 * upgrades with 503, so a balancer learns it is going. A worker with no
 * clients that left at once would leave its listening socket to the
 * master, where the kernel would queue connections nobody answers.
 *
 * The last words: once every member's leave is answered, the worker
 * removes its own registration (nobody has to bury it), and goes when that
 * is answered too. Redis gets two seconds for each (half a second in all
 * after an immediate stop); what it misses, a janitor does later.
 */
static int
done_stopping(struct worker *w)
{
	uint64_t now = clock_ms(), limit = w->quit_by != 0 ? 500 : 2000;

	if (w->quit_by != 0 && now >= w->quit_by)
		return 1;
	if (w->quit_by == 0 &&
	    !(w->loop.stopping && w->loop.conns.nconns == 0 && (w->drain_done || w->loop.retiring)))
		return 0;
	if (w->wait_since == 0)
		w->wait_since = now;
	if (!bus_idle() && now - w->wait_since <= limit)
		return 0;
	if (!w->farewell) {
		w->farewell = 1;
		w->wait_since = now;
		room_farewell();
		return bus_idle();
	}
	return 1;
}

static void
stop_now(struct worker *w, const char *why)
{
	struct conn *c;

	log_notice("%s: closing %d connection(s) and exiting", why, w->loop.conns.nconns);
	worker_stop_listening(w);
	while ((c = w->loop.conns.all) != NULL)
		conn_close(c);
	w->quit_by = clock_ms() + 500;
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
		if (!w->loop.stopping) {
			w->loop.retiring = 1;
			worker_stop_listening(w);
		}
		/* FALLTHROUGH */
	case SIGTERM:
		if (w->loop.stopping)
			return;
		w->loop.stopping = 1;
		w->stop_started = clock_ms();
		w->drain_total = 0;
		for (c = w->loop.conns.all; c != NULL; c = c->next)
			if (!(c->flags & (CONN_F_SHUTDOWN | CONN_F_LINGER | CONN_F_CLOSED))) {
				c->flags |= CONN_F_DRAIN;
				w->drain_total++;
			}
		metrics_gauge(GAUGE_DRAINING, 1);
		if (w->cfg->drain_time > 0) {
			log_notice("draining: not ready, refusing new sessions, closing %d client(s) with 1001 over %dms",
			    w->loop.conns.nconns, w->cfg->drain_time);
		} else {
			log_notice("graceful stop: no new connections, closing %d client(s) with 1001",
			    w->loop.conns.nconns);
			w->drain_done = 1;
			worker_stop_listening(w);
			for (c = w->loop.conns.all; c != NULL; c = next) {
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
	if (cfg_api_enabled(cfg) && cfg->api_keepalive_timeout < m)
		m = cfg->api_keepalive_timeout;
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
	worker_stop_listening(w);
	loop_free(&w->loop);
	room_shutdown();
	api_shutdown();
	for (int i = 0; i < 4; i++)
		if (w->sig[i] != NULL)
			event_free(w->sig[i]);
	if (w->tick != NULL)
		event_free(w->tick);
	if (w->stop_timer != NULL)
		event_free(w->stop_timer);
	if (w->accept_retry != NULL)
		event_free(w->accept_retry);
	if (w->base != NULL)
		event_base_free(w->base);
	if (w->tls != NULL)
		SSL_CTX_free(w->tls);
	deflate_free();
	sbuf_cache_clear();
	http_cleanup();
	free(w);
}

/* Ready while a round trip through Redis works (the loop adds the drain). */
static int
ready_check(void *arg, char *why, size_t len)
{
	return bus_healthy(why, len);
}

int
worker_run(const struct config *cfg, int index, int generation, const char *instance,
    const char *dead_wid, const int *fds, int nfds)
{
	char wid[96];
	static const int sigs[] = { SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2 };
	struct worker *w;
	struct timeval tv;
	int ms;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		fatalx("worker %d: out of memory", index);
	w->index = index;
	w->generation = generation;
	w->cfg = cfg;
	if ((w->base = event_base_new()) == NULL)
		fatalx("worker %d: event_base_new() failed", index);
	if (loop_init(&w->loop, w->base, cfg) == -1)
		fatalx("worker %d: out of memory", index);
	w->loop.routes = routes_table;
	w->loop.ready = ready_check;
	if (cfg->deflate && deflate_init(cfg->deflate_level, cfg->deflate_window_bits) == -1)
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
	ms = tick_interval_ms(cfg);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (w->accept_retry == NULL || w->stop_timer == NULL || w->tick == NULL ||
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
		struct proto_limits lim = { 64, 128, 4096, 100 };
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
	if (room_init(w->base, cfg, wid, dead_wid) == -1)
		fatalx("worker %d: cannot set up rooms", index);
	if (api_init(&w->loop, instance, wid) == -1)
		fatalx("worker %d: cannot set up the HTTP API", index);
	log_info("started (generation %d, %s backend)", generation, event_base_get_method(w->base));
	while (!w->quit) {
		if (event_base_loop(w->base, EVLOOP_ONCE) == -1) {
			log_error("event_base_loop() failed");
			break;
		}
		bus_push();
		loop_end_turn(&w->loop);
		if (done_stopping(w))
			w->quit = 1;
	}
	log_info("exiting");
	worker_free(w);
	return 0;
}
