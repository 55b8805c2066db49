/*
 * metrics.h: server-wide counters for /metrics. The master maps one shared
 * memory region before forking; each worker writes only its own slot, any
 * worker renders the sum in Prometheus text format without a round trip.
 */
#ifndef ROOMD_METRICS_H
#define ROOMD_METRICS_H

#include <stdint.h>

#include "log.h"

struct jbuf;

enum metric {
	MET_CONN_TOTAL,		/* connections accepted */
	MET_UPGRADES,		/* WebSocket sessions opened */
	MET_MSG_IN,		/* WebSocket messages received */
	MET_MSG_OUT,		/* WebSocket messages queued to clients */
	MET_BYTES_IN,		/* bytes read from sockets */
	MET_BYTES_OUT,		/* bytes written to sockets */
	MET_PUBLISHED,		/* broadcasts published to Redis */
	MET_DELIVERED,		/* broadcast deliveries to local members */
	MET_REDIS_RECONNECTS,
	MET_SLOW_DROPPED,	/* clients closed for not reading */
	MET_RATE_LIMITED,	/* messages refused by the rate limit */
	MET_SLOW_DROPPED_MSGS,	/* room messages a slow reader lost (slow_client drop) */
	MET_WRITES,		/* writev/sendfile calls on client sockets */
	MET_BCAST_PAUSES,	/* broadcast flushes held back (broadcast_coalesce) */
	MET_GAPS_REPAIRED,	/* gaps in a room's messages filled from its history */
	MET_GAPS_LOST,		/* gaps that could not be filled: members told recovered false */
	MET_DUPLICATES_DROPPED,	/* messages that arrived twice, delivered once */
	MET_RECOVERED,		/* clients that caught up completely (recovered true) */
	MET_NOT_RECOVERED,	/* clients told they have a gap (recovered false) */
	MET_REENROLLED,		/* times Redis forgot this worker's members and it registered them again */
	MET__COUNTERS
};

enum gauge {
	GAUGE_CONN_OPEN,	/* open client connections */
	GAUGE_SESSIONS,		/* open WebSocket sessions */
	GAUGE_ROOMS,		/* rooms with local members, summed over workers */
	GAUGE_REDIS_UP,		/* workers whose Redis link is up */
	GAUGE_DRAINING,		/* workers draining */
	GAUGE__N
};

enum refusal {
	REFUSE_BAD_REQUEST, REFUSE_METHOD, REFUSE_NOT_FOUND, REFUSE_VERSION, REFUSE_TOO_LARGE,
	REFUSE_TIMEOUT, REFUSE_DRAINING, REFUSE_CAPACITY, REFUSE_PROXY, REFUSE_ORIGIN, REFUSE_AUTH,
	REFUSE_IP_LIMIT, REFUSE__N
};

/* The HTTP API's methods, counted apart (in the order of apiproto.h's enum api_call). */
enum api_metric {
	MAPI_PUBLISH, MAPI_BROADCAST, MAPI_DISCONNECT, MAPI_ROOMS, MAPI_ROOM, MAPI_HISTORY, MAPI_INFO,
	MAPI_OTHER,		/* a path that is no method */
	MAPI__N
};

/* Master, before forking: room for `slots` live workers. -1 on failure. */
int metrics_init(int slots) MUST_CHECK;
/* Master: a slot for a new worker, or -1 if none is free. */
int metrics_slot_alloc(void);
/* Master: a worker is gone; keep its counters, drop its gauges, free the slot. */
void metrics_slot_release(int slot);
/* Master: count a worker restart. */
void metrics_worker_restart(void);
/* Worker: write into this slot from now on. */
void metrics_bind(int slot);
/* Worker: it is alive at now_ms (clock_ms()); once per tick, for the master's watchdog. */
void metrics_beat(uint64_t now_ms);
/* Master: when the worker in this slot last beat (ms; 0: not yet). */
uint64_t metrics_slot_beat(int slot);
/* Master: one worker's value of a gauge. */
int64_t metrics_slot_gauge(int slot, enum gauge);

void metrics_add(enum metric, uint64_t n);
void metrics_gauge(enum gauge, int64_t delta);
void metrics_refused(enum refusal);
void metrics_close_code(unsigned code);
/* An API request for a method arrived / was answered with an error (4xx, 5xx). */
void metrics_api_call(enum api_metric);
void metrics_api_error(enum api_metric);
/* A gauge summed over every worker. */
int64_t metrics_gauge_total(enum gauge);
/*
 * Add one to a gauge unless that takes the sum over every worker past
 * limit: 0 if added, -1 if not. Workers racing for the last unit never
 * both get it (one may be refused while the other backs off).
 */
int metrics_gauge_claim(enum gauge, int64_t limit) MUST_CHECK;
/* A Redis round trip of `us` microseconds (PING). */
void metrics_redis_rtt(uint64_t us);
/* A readiness canary's trip through Redis and back, in microseconds. */
void metrics_canary_rtt(uint64_t us);
/* Render the sum over every worker into out (Prometheus text format 0.0.4). */
void metrics_render(struct jbuf *out);

#endif
