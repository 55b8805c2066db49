/*
 * metrics.c: the shared counters. Writers use relaxed atomic stores to their
 * own slot (no lock, no contention); readers sum every slot with relaxed
 * loads. When a worker dies the master adds its counters to the archive slot
 * and clears the slot, so totals never go backwards and gauges never keep a
 * dead worker's values; a sequence number around that move lets a reader
 * that raced it read again instead of counting the dead worker twice.
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "addrlimit.h"
#include "metrics.h"
#include "jbuf.h"

static const unsigned close_codes[] = {
	1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1013, 4000, 4001,
};
#define NCLOSE (sizeof(close_codes) / sizeof(close_codes[0]))

/* Latency histogram buckets, microseconds. */
static const uint64_t rtt_le[] = { 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000 };
#define NRTT (sizeof(rtt_le) / sizeof(rtt_le[0]))

struct hist {
	uint64_t	b[NRTT + 1];
	uint64_t	count, sum_us;
};

enum { HIST_REDIS_RTT, HIST_CANARY_RTT, HIST__N };

static const char *const refusal_names[REFUSE__N] = {
	"bad_request", "method", "not_found", "version", "too_large", "timeout", "draining",
	"capacity", "proxy_protocol", "origin", "auth", "ip_limit",
};

static const char *const api_names[MAPI__N] = {
	"publish", "broadcast", "disconnect", "rooms", "room", "history", "info", "other",
};

struct mslot {
	uint64_t	used;
	uint64_t	c[MET__COUNTERS];
	int64_t		g[GAUGE__N];
	uint64_t	refused[REFUSE__N];
	uint64_t	api_calls[MAPI__N];
	uint64_t	api_errors[MAPI__N];
	uint64_t	close[NCLOSE + 1];
	struct hist	h[HIST__N];
	uint64_t	beat;		/* ms: the worker's last tick, for the master's watchdog */
};

_Static_assert(sizeof(struct mslot) % sizeof(uint64_t) == 0, "mslot is cleared word by word");

struct mshm {
	uint64_t	seq;		/* odd while the master moves a dead worker's counts */
	uint64_t	worker_restarts;
	int		nslots;
	struct mslot	archive;
	struct mslot	slot[];
};

static struct mshm *shm;
static struct mslot scratch;		/* before metrics_bind: counts go nowhere */
static struct mslot *self = &scratch;

#define LOAD(p)		__atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define BUMP(p, n)	STORE((p), LOAD(p) + (n))

int
metrics_init(int slots)
{
	size_t sz = sizeof(struct mshm) + (size_t)slots * sizeof(struct mslot);
	void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	shm = p;
	shm->nslots = slots;
	return 0;
}

int
metrics_slot_alloc(void)
{
	for (int i = 0; shm != NULL && i < shm->nslots; i++) {
		if (!LOAD(&shm->slot[i].used)) {
			memset(&shm->slot[i], 0, sizeof(shm->slot[i]));
			STORE(&shm->slot[i].used, 1);
			return i;
		}
	}
	return -1;
}

void
metrics_slot_release(int i)
{
	struct mslot *s, *a;

	if (shm == NULL || i < 0 || i >= shm->nslots)
		return;
	s = &shm->slot[i];
	a = &shm->archive;
	STORE(&shm->seq, LOAD(&shm->seq) + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (int k = 0; k < MET__COUNTERS; k++)
		BUMP(&a->c[k], LOAD(&s->c[k]));
	for (int k = 0; k < REFUSE__N; k++)
		BUMP(&a->refused[k], LOAD(&s->refused[k]));
	for (int k = 0; k < MAPI__N; k++) {
		BUMP(&a->api_calls[k], LOAD(&s->api_calls[k]));
		BUMP(&a->api_errors[k], LOAD(&s->api_errors[k]));
	}
	for (size_t k = 0; k <= NCLOSE; k++)
		BUMP(&a->close[k], LOAD(&s->close[k]));
	for (int k = 0; k < HIST__N; k++) {
		for (size_t j = 0; j <= NRTT; j++)
			BUMP(&a->h[k].b[j], LOAD(&s->h[k].b[j]));
		BUMP(&a->h[k].count, LOAD(&s->h[k].count));
		BUMP(&a->h[k].sum_us, LOAD(&s->h[k].sum_us));
	}
	for (size_t k = 0; k < sizeof(*s) / sizeof(uint64_t); k++)
		STORE(&((uint64_t *)s)[k], 0);	/* gauges of a dead worker are gone with it */
	__atomic_store_n(&shm->seq, LOAD(&shm->seq) + 1, __ATOMIC_RELEASE);
	addrlimit_slot_release(i);
}

void
metrics_worker_restart(void)
{
	if (shm != NULL)
		BUMP(&shm->worker_restarts, 1);
}

void
metrics_bind(int i)
{
	if (shm != NULL && i >= 0 && i < shm->nslots)
		self = &shm->slot[i];
}

void
metrics_add(enum metric m, uint64_t n)
{
	BUMP(&self->c[m], n);
}

void
metrics_gauge(enum gauge g, int64_t d)
{
	BUMP(&self->g[g], d);
}

int64_t
metrics_gauge_total(enum gauge g)
{
	int64_t v = 0;

	if (shm == NULL)
		return LOAD(&self->g[g]);
	for (int k = 0; k < shm->nslots; k++)
		v += (int64_t)LOAD(&shm->slot[k].g[g]);
	return v;
}

int
metrics_gauge_claim(enum gauge g, int64_t limit)
{
	/* Add first, then look: a store, a full fence, then the loads (Dekker). */
	BUMP(&self->g[g], 1);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (metrics_gauge_total(g) <= limit)
		return 0;
	BUMP(&self->g[g], -1);
	return -1;
}

void
metrics_refused(enum refusal r)
{
	BUMP(&self->refused[r], 1);
}

void
metrics_api_call(enum api_metric m)
{
	BUMP(&self->api_calls[m], 1);
}

void
metrics_api_error(enum api_metric m)
{
	BUMP(&self->api_errors[m], 1);
}

void
metrics_close_code(unsigned code)
{
	size_t i;

	for (i = 0; i < NCLOSE && close_codes[i] != code; i++)
		;
	BUMP(&self->close[i], 1);
}

void
metrics_beat(uint64_t now_ms)
{
	STORE(&self->beat, now_ms);
}

uint64_t
metrics_slot_beat(int i)
{
	if (shm == NULL || i < 0 || i >= shm->nslots)
		return 0;
	return LOAD(&shm->slot[i].beat);
}

int64_t
metrics_slot_gauge(int i, enum gauge g)
{
	if (shm == NULL || i < 0 || i >= shm->nslots)
		return 0;
	return (int64_t)LOAD(&shm->slot[i].g[g]);
}

static void
observe(struct hist *h, uint64_t us)
{
	size_t i;

	for (i = 0; i < NRTT && us > rtt_le[i]; i++)
		;
	BUMP(&h->b[i], 1);
	BUMP(&h->count, 1);
	BUMP(&h->sum_us, us);
}

void
metrics_redis_rtt(uint64_t us)
{
	observe(&self->h[HIST_REDIS_RTT], us);
}

void
metrics_canary_rtt(uint64_t us)
{
	observe(&self->h[HIST_CANARY_RTT], us);
}

/* Sum one field over the archive and every slot. */
#define SUM(field) ({							\
	uint64_t s_ = LOAD(&shm->archive.field);			\
	for (int i_ = 0; i_ < shm->nslots; i_++)			\
		s_ += LOAD(&shm->slot[i_].field);			\
	s_;								\
})

static void
line(struct jbuf *o, const char *name, const char *type, const char *help)
{
	jbuf_str(o, "# HELP ");
	jbuf_str(o, name);
	jbuf_str(o, " ");
	jbuf_str(o, help);
	jbuf_str(o, "\n# TYPE ");
	jbuf_str(o, name);
	jbuf_str(o, " ");
	jbuf_str(o, type);
	jbuf_str(o, "\n");
}

static void
sample(struct jbuf *o, const char *name, const char *labels, long long v)
{
	jbuf_str(o, name);
	if (labels != NULL)
		jbuf_str(o, labels);
	jbuf_str(o, " ");
	jbuf_int(o, v);
	jbuf_str(o, "\n");
}

static void render_once(struct jbuf *);

static void
histogram(struct jbuf *o, int k, const char *name, const char *help)
{
	char lab[64], v[160];
	uint64_t cum = 0;

	line(o, name, "histogram", help);
	for (size_t j = 0; j <= NRTT; j++) {
		cum += SUM(h[k].b[j]);
		if (j < NRTT)
			snprintf(lab, sizeof(lab), "{le=\"%g\"}", (double)rtt_le[j] / 1e6);
		else
			snprintf(lab, sizeof(lab), "{le=\"+Inf\"}");
		snprintf(v, sizeof(v), "%s_bucket", name);
		sample(o, v, lab, (long long)cum);
	}
	snprintf(v, sizeof(v), "%s_sum %.6f\n", name, (double)SUM(h[k].sum_us) / 1e6);
	jbuf_str(o, v);
	snprintf(v, sizeof(v), "%s_count", name);
	sample(o, v, NULL, (long long)SUM(h[k].count));
}

void
metrics_render(struct jbuf *o)
{
	uint64_t s1, s2;

	jbuf_reset(o);
	if (shm == NULL)
		return;
	/* The master's move takes microseconds and happens when a worker dies. */
	for (int tries = 0; tries < 1000; tries++) {
		s1 = __atomic_load_n(&shm->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		render_once(o);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = LOAD(&shm->seq);
		if (s1 == s2)
			return;
	}
	render_once(o);		/* a master stuck mid-move: better approximate than nothing */
}

static void
render_once(struct jbuf *o)
{
	static const struct { enum metric m; const char *name, *help; } counters[] = {
		{ MET_CONN_TOTAL, "roomd_connections_total", "Client connections accepted." },
		{ MET_UPGRADES, "roomd_websocket_sessions_total", "WebSocket sessions opened." },
		{ MET_MSG_IN, "roomd_messages_received_total", "WebSocket messages received from clients." },
		{ MET_MSG_OUT, "roomd_messages_sent_total", "WebSocket messages queued to clients." },
		{ MET_BYTES_IN, "roomd_received_bytes_total", "Bytes read from client sockets." },
		{ MET_BYTES_OUT, "roomd_sent_bytes_total", "Bytes written to client sockets." },
		{ MET_PUBLISHED, "roomd_broadcasts_published_total", "Room broadcasts published to Redis." },
		{ MET_DELIVERED, "roomd_broadcast_deliveries_total", "Room broadcasts delivered to local members." },
		{ MET_REDIS_RECONNECTS, "roomd_redis_reconnects_total", "Times a worker's Redis link came back after a loss." },
		{ MET_SLOW_DROPPED, "roomd_slow_clients_dropped_total", "Clients closed because they did not read what they were sent." },
		{ MET_RATE_LIMITED, "roomd_messages_rate_limited_total", "Client messages refused by the per-connection rate limit." },
		{ MET_SLOW_DROPPED_MSGS, "roomd_slow_client_messages_dropped_total", "Room messages dropped for readers over max_outbuf (slow_client drop)." },
		{ MET_WRITES, "roomd_socket_writes_total", "Write system calls on client sockets (several messages may share one)." },
		{ MET_BCAST_PAUSES, "roomd_broadcast_pauses_total", "Times a worker held room messages back to write more per call (broadcast_coalesce)." },
		{ MET_GAPS_REPAIRED, "roomd_gaps_repaired_total", "Gaps in a room's messages (pub/sub loss, a lost link) filled from its history." },
		{ MET_GAPS_LOST, "roomd_gaps_unrecoverable_total", "Gaps that could not be filled; the members were told (recovered false)." },
		{ MET_DUPLICATES_DROPPED, "roomd_duplicate_messages_dropped_total", "Messages that reached a worker twice and were delivered once." },
		{ MET_RECOVERED, "roomd_client_recoveries_total", "Clients that asked to catch up and got every message they missed." },
		{ MET_NOT_RECOVERED, "roomd_client_recoveries_failed_total", "Clients that asked to catch up and were told they have a gap." },
		{ MET_REENROLLED, "roomd_members_reregistered_total", "Times Redis had forgotten a worker's members (a stall past presence_ttl, lost data) and the worker registered them again." },
	};
	static const struct { enum gauge g; const char *name, *help; } gauges[] = {
		{ GAUGE_CONN_OPEN, "roomd_connections_open", "Client connections open now." },
		{ GAUGE_SESSIONS, "roomd_websocket_sessions_open", "WebSocket sessions open now." },
		{ GAUGE_ROOMS, "roomd_rooms", "Rooms with local members, counted once per worker." },
		{ GAUGE_REDIS_UP, "roomd_redis_links_up", "Workers whose Redis link is up." },
		{ GAUGE_DRAINING, "roomd_workers_draining", "Workers draining before exit." },
	};
	char lab[64];

	jbuf_reset(o);
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		line(o, counters[i].name, "counter", counters[i].help);
		sample(o, counters[i].name, NULL, (long long)SUM(c[counters[i].m]));
	}
	for (size_t i = 0; i < sizeof(gauges) / sizeof(gauges[0]); i++) {
		int64_t v = 0;

		for (int k = 0; k < shm->nslots; k++)
			v += (int64_t)LOAD(&shm->slot[k].g[gauges[i].g]);
		line(o, gauges[i].name, "gauge", gauges[i].help);
		sample(o, gauges[i].name, NULL, (long long)v);
	}
	line(o, "roomd_upgrades_refused_total", "counter", "HTTP requests on WebSocket routes refused, by reason.");
	for (int r = 0; r < REFUSE__N; r++) {
		snprintf(lab, sizeof(lab), "{reason=\"%s\"}", refusal_names[r]);
		sample(o, "roomd_upgrades_refused_total", lab, (long long)SUM(refused[r]));
	}
	line(o, "roomd_close_codes_sent_total", "counter", "WebSocket close frames sent, by code.");
	for (size_t k = 0; k <= NCLOSE; k++) {
		if (k < NCLOSE)
			snprintf(lab, sizeof(lab), "{code=\"%u\"}", close_codes[k]);
		else
			snprintf(lab, sizeof(lab), "{code=\"other\"}");
		sample(o, "roomd_close_codes_sent_total", lab, (long long)SUM(close[k]));
	}
	line(o, "roomd_api_requests_total", "counter", "HTTP API requests, by method (other: no such method).");
	for (int k = 0; k < MAPI__N; k++) {
		snprintf(lab, sizeof(lab), "{method=\"%s\"}", api_names[k]);
		sample(o, "roomd_api_requests_total", lab, (long long)SUM(api_calls[k]));
	}
	line(o, "roomd_api_errors_total", "counter", "HTTP API requests answered with an error status (4xx, 5xx), by method.");
	for (int k = 0; k < MAPI__N; k++) {
		snprintf(lab, sizeof(lab), "{method=\"%s\"}", api_names[k]);
		sample(o, "roomd_api_errors_total", lab, (long long)SUM(api_errors[k]));
	}
	histogram(o, HIST_REDIS_RTT, "roomd_redis_rtt_seconds", "Round-trip time of Redis commands (PING).");
	histogram(o, HIST_CANARY_RTT, "roomd_redis_canary_rtt_seconds",
	    "Time a worker's readiness canary took through Redis and back (publish to delivery).");
	line(o, "roomd_worker_restarts_total", "counter", "Workers that died unexpectedly and were replaced.");
	sample(o, "roomd_worker_restarts_total", NULL, (long long)LOAD(&shm->worker_restarts));
}
