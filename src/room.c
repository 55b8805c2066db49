/*
 * room.c: rooms on one worker.
 *
 * A room exists here while it has local members or a subscription being torn
 * down. Its subscription goes NONE -> PENDING (SUBSCRIBE sent) -> ACTIVE ->
 * LEAVING (UNSUBSCRIBE sent, after the room stayed empty for a tick) -> NONE.
 * A SUBSCRIBE is never sent while an UNSUBSCRIBE is in flight: a room
 * refilled meanwhile re-subscribes when the UNSUBSCRIBE is confirmed.
 *
 * A member is PENDING until its own enter event comes back on the channel;
 * from then on it receives everything published after its enter, which is
 * exactly the rule of the room: "in the room when it was published".
 * Messages a pending member sends are held in the room and published after
 * its enter, on the same Redis connection, so order is kept. A member that
 * asked to catch up (since an offset, or the last messages) is RECOVERING
 * from its enter until those are read: its live events wait for it.
 *
 * Positions. Every chat message carries its offset in the room's stream,
 * and every enter the room's position at the time. Pub/sub is at-most-once,
 * so a worker checks what arrives against the last offset it delivered: a
 * jump is read from the stream and delivered first (events arriving
 * meanwhile wait in order), an offset already seen is dropped, and what
 * cannot be read any more is said to the members ("recovered": false), as
 * is a new epoch. After the link comes back, each room first reads what was
 * published while it was away.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "bus.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "room.h"
#include "sbuf.h"
#include "store.h"
#include "ws.h"
#include "ws_frame.h"

enum sub_state { SUB_NONE, SUB_PENDING, SUB_ACTIVE, SUB_LEAVING };
enum mem_state { MEM_PENDING, MEM_RECOVERING, MEM_ACTIVE, MEM_LEAVING };

#define MAX_HELD	256	/* messages held per room while its subscription starts */
#define MAX_QUEUED	8192	/* events waiting per room while a gap is read */
#define MAX_CATCHUP	8192	/* live frames waiting for one member catching up */
#define WHO_CACHE_MS	1000	/* how long a room's who answer is served again */
#define MAX_WHO_WAITING	4096	/* sessions waiting for one room's who answer */
#define ENTER_GRACE_MS	1000	/* an enter waits this long for a lost link to come back */

/* A member catching up: what it asked, and its live frames meanwhile. */
struct catchup {
	struct room_catchup req;
	uint64_t	 upto;		/* the room's offset at the member's enter */
	char		 epoch[STORE_EPOCH_MAX + 1];
	uint32_t	 id;		/* matches the read's reply */
	struct sbuf	**frames;
	uint32_t	 n, cap;
	uint8_t		 overflow;	/* more live frames than it may hold: a gap */
};

struct member {
	struct member	*rnext, *rprev;	/* in the room */
	struct member	*snext;		/* in the session (owned by chat.c) */
	struct room	*room;
	struct session	*s;
	struct catchup	*cu;
	uint8_t		 state;
	uint8_t		 enter_sent;
	uint8_t		 enter_maybe;	/* an enter went out on a link that then died */
	uint16_t	 nlen;
	char		 mid[64];
	char		 name[];
};

/* A message from a member whose enter is not out yet. */
struct held {
	struct held	*next;
	const struct member *from;	/* the sender (see release_held) */
	struct session	*s;		/* referenced: hears if it is lost */
	uint8_t		 relay;		/* raw broadcast payload, else a chat message head */
	size_t		 len;
	char		 data[];
};

/* A session waiting for the room's who answer (one read serves them all). */
struct who_wait {
	struct who_wait	*next;
	struct session	*s;		/* referenced */
};

/* A channel payload waiting while the room reads a gap. */
struct queued {
	struct queued	*next;
	size_t		 len;
	char		 data[];
};

struct room {
	struct room	*hnext;
	uint32_t	 hash;
	uint8_t		 kind;
	uint8_t		 sub;
	uint8_t		 positioned;	/* epoch and last are known */
	uint8_t		 fetching;	/* a read fills a gap or catches up: events wait */
	uint32_t	 fetch_id;
	uint32_t	 nmembers;
	long		 num;
	uint64_t	 empty_since;
	uint64_t	 down_at;	/* ms its channel went down with a link; 0 if not down */
	uint64_t	 last;		/* offset of the last message delivered here */
	char		 epoch[STORE_EPOCH_MAX + 1];
	struct member	*members;
	struct held	*held, **held_tail;
	uint32_t	 nheld;
	struct queued	*q, **q_tail;
	uint32_t	 nq;
	char		*who;		/* the last who answer, while fresh */
	size_t		 wholen;
	uint64_t	 who_at;
	struct who_wait	*who_waiting;	/* while a read is in flight */
	uint32_t	 nwho_waiting;
	size_t		 klen;
	char		 key[];
};

struct pending_out {
	struct pending_out *next;
	int		 replay;	/* retried after a lost link: announce even if Redis forgot */
	size_t		 klen, nlen;
	char		 mid[64];
	char		 data[];	/* key then name */
};

static struct {
	struct room	**tab;
	size_t		 nbuckets, nrooms;
	const struct config *cfg;
	char		 wid[96];
	uint64_t	 seq;
	uint32_t	 ids;
	struct jbuf	 jb;
	struct pending_out *outs;	/* leaves to tell Redis once it is back */
	int		 up;
	uint64_t	 down_at;	/* ms the link went down; 0 while up */
	int		 some_down;	/* rooms down alone (on_lost) wait in room_tick */
	int		 control_down;	/* the control channel went with a lost node */
	int		 undone;	/* pending enters answered for this outage */
	room_control_fn	 control;	/* hears the control channel */
} R;

static void handle(struct room *, const char *, size_t);
static void catch_up(struct member *);
static void fetch(struct room *, uint64_t);
static void release_held(struct room *, const struct member *, int);
static int leave_redis(const struct room *, const struct member *);

static uint32_t
hash_key(const char *k, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)k[i]) * 16777619u;
	return h;
}

static struct room *
room_find(const char *key, size_t klen)
{
	uint32_t h = hash_key(key, klen);

	for (struct room *r = R.tab[h & (R.nbuckets - 1)]; r != NULL; r = r->hnext)
		if (r->hash == h && r->klen == klen && memcmp(r->key, key, klen) == 0)
			return r;
	return NULL;
}

static void
grow_table(void)
{
	size_t nb = R.nbuckets * 2;
	struct room **nt = calloc(nb, sizeof(*nt));

	if (nt == NULL)
		return;		/* keep the old table: chains get longer, nothing breaks */
	for (size_t i = 0; i < R.nbuckets; i++) {
		struct room *r, *next;

		for (r = R.tab[i]; r != NULL; r = next) {
			next = r->hnext;
			r->hnext = nt[r->hash & (nb - 1)];
			nt[r->hash & (nb - 1)] = r;
		}
	}
	free(R.tab);
	R.tab = nt;
	R.nbuckets = nb;
}

static struct room *
room_create(enum room_kind kind, const char *key, size_t klen)
{
	struct room *r = calloc(1, sizeof(*r) + klen + 1);

	if (r == NULL)
		return NULL;
	memcpy(r->key, key, klen);
	r->klen = klen;
	r->kind = (uint8_t)kind;
	r->hash = hash_key(key, klen);
	r->held_tail = &r->held;
	r->q_tail = &r->q;
	if (R.nrooms >= R.nbuckets)
		grow_table();
	r->hnext = R.tab[r->hash & (R.nbuckets - 1)];
	R.tab[r->hash & (R.nbuckets - 1)] = r;
	R.nrooms++;
	metrics_gauge(GAUGE_ROOMS, 1);
	return r;
}

/* Forget the held messages; their senders hear they were not delivered. */
static void
drop_held(struct room *r)
{
	static const char lost[] = "{\"event\":\"error\",\"code\":\"unavailable\","
	    "\"message\":\"message not delivered: room service unavailable; try again\"}";
	struct held *h;

	while ((h = r->held) != NULL) {
		r->held = h->next;
		ws_send_text(h->s, lost, sizeof(lost) - 1);
		ws_unref(h->s);
		free(h);
	}
	r->held_tail = &r->held;
	r->nheld = 0;
}

static void
drop_queued(struct room *r)
{
	struct queued *e;

	while ((e = r->q) != NULL) {
		r->q = e->next;
		free(e);
	}
	r->q_tail = &r->q;
	r->nq = 0;
}

/* The who answer no longer says who is here. */
static void
who_forget(struct room *r)
{
	free(r->who);
	r->who = NULL;
}

static void
room_destroy(struct room *r)
{
	struct room **pp = &R.tab[r->hash & (R.nbuckets - 1)];

	while (*pp != r)
		pp = &(*pp)->hnext;
	*pp = r->hnext;
	R.nrooms--;
	metrics_gauge(GAUGE_ROOMS, -1);
	drop_held(r);
	drop_queued(r);
	who_forget(r);
	while (r->who_waiting != NULL) {
		struct who_wait *w = r->who_waiting;

		r->who_waiting = w->next;
		ws_unref(w->s);
		free(w);
	}
	free(r);
}

/* ---- fan-out ---- */

/*
 * The frames of one broadcast: built on first need and shared by every
 * member that needs the same bytes (plain, or compressed with one window).
 */
struct variants {
	struct sbuf	*plain;
	struct sbuf	*z[16];
	uint16_t	 tried;
};

/* Inlined: it runs once per delivery, and a call would cost as much as the rest. */
static inline __attribute__((always_inline)) struct sbuf *
frame_for(struct variants *v, struct session *s, int opcode, const char *p, size_t n)
{
	int bits = ws_deflate_bits(s, n);

	if (bits != 0) {
		if (!(v->tried & (1u << bits))) {
			v->tried |= (uint16_t)(1u << bits);
			v->z[bits] = ws_frame_deflate(bits, opcode, p, n);
		}
		if (v->z[bits] != NULL)
			return v->z[bits];
	}
	if (v->plain == NULL)
		v->plain = ws_frame_new(opcode, p, n);
	return v->plain;
}

/* Keep a live frame for a member catching up; past the bound it has a gap. */
static void
hold_frame(struct member *m, struct sbuf *f)
{
	struct catchup *cu = m->cu;
	struct sbuf **nf;

	if (cu->overflow)
		return;
	if (cu->n == cu->cap) {
		uint32_t ncap = cu->cap == 0 ? 16 : cu->cap * 2;

		if (ncap > MAX_CATCHUP || (nf = realloc(cu->frames, ncap * sizeof(*nf))) == NULL) {
			cu->overflow = 1;
			return;
		}
		cu->frames = nf;
		cu->cap = ncap;
	}
	cu->frames[cu->n++] = sbuf_ref(f);
}

/* Send a message to every active member (and, for out events, the leaver). */
static void
fan_out(struct room *r, int opcode, const char *p, size_t n, const char *leaver_mid)
{
	struct variants v;
	struct member *m, *next;
	struct sbuf *f;
	uint64_t sent = 0;

	memset(&v, 0, sizeof(v));
	for (m = r->members; m != NULL; m = next) {
		next = m->rnext;
		/* An active member costs one test; the others are rare. */
		if (__builtin_expect(m->state != MEM_ACTIVE, 0)) {
			if (m->state == MEM_RECOVERING) {
				if ((f = frame_for(&v, m->s, opcode, p, n)) != NULL)
					hold_frame(m, f);
				continue;
			}
			if (m->state != MEM_LEAVING || leaver_mid == NULL || strcmp(m->mid, leaver_mid) != 0)
				continue;
		}
		if ((f = frame_for(&v, m->s, opcode, p, n)) == NULL) {
			log_error("no memory to frame an event for room %.*s", (int)r->klen, r->key);
			break;
		}
		sent += (uint64_t)ws_send_shared(m->s, f);
	}
	metrics_add(MET_DELIVERED, sent);
	metrics_add(MET_MSG_OUT, sent);
	sbuf_unref(v.plain);
	for (int b = 0; b < 16; b++)
		sbuf_unref(v.z[b]);
}

static void
fan_out_json(struct room *r, const char *leaver_mid)
{
	if (R.jb.oom) {
		log_error("no memory to build an event for room %.*s", (int)r->klen, r->key);
		return;
	}
	fan_out(r, WS_OP_TEXT, R.jb.p, R.jb.len, leaver_mid);
}

static void
unlink_member(struct member *m)
{
	struct room *r = m->room;

	if (m->rprev != NULL)
		m->rprev->rnext = m->rnext;
	else
		r->members = m->rnext;
	if (m->rnext != NULL)
		m->rnext->rprev = m->rprev;
	m->rnext = m->rprev = NULL;
	if (--r->nmembers == 0)
		r->empty_since = clock_ms();
}

static void
catchup_free(struct member *m)
{
	if (m->cu == NULL)
		return;
	for (uint32_t i = 0; i < m->cu->n; i++)
		sbuf_unref(m->cu->frames[i]);
	free(m->cu->frames);
	free(m->cu);
	m->cu = NULL;
}

/* Free a member room.c owns (one that was leaving). */
static void
member_free(struct member *m)
{
	if (m->room != NULL)
		unlink_member(m);
	catchup_free(m);
	if (m->s != NULL)
		ws_unref(m->s);
	free(m);
}

static struct member *
member_by_mid(struct room *r, const char *mid, size_t midlen)
{
	for (struct member *m = r->members; m != NULL; m = m->rnext)
		if (strlen(m->mid) == midlen && memcmp(m->mid, mid, midlen) == 0)
			return m;
	return NULL;
}

/* ---- positions ---- */

/* Parse a decimal offset; the end, or NULL. */
static const char *
parse_u64(const char *p, const char *end, uint64_t *v)
{
	uint64_t x = 0;
	const char *s = p;

	while (p < end && *p >= '0' && *p <= '9' && p - s < 20)
		x = x * 10 + (uint64_t)(*p++ - '0');
	if (p == s)
		return NULL;
	*v = x;
	return p;
}

/* Say to the room's members that messages were lost (a gap that cannot be read, a new epoch). */
static void
announce_lost(struct room *r, uint64_t offset, const char *epoch)
{
	metrics_add(MET_GAPS_LOST, 1);
	log_warn("room %.*s: messages up to offset %llu of epoch %s cannot be recovered; members told",
	    (int)(r->klen < 64 ? r->klen : 64), r->key, (unsigned long long)offset, epoch);
	proto_recovered(&R.jb, r->key, r->klen, 0, offset, epoch, 0, r->num);
	fan_out_json(r, NULL);
}

struct fetch_req {
	uint32_t	 id;
	uint64_t	 upto;		/* 0: catch up to now */
	size_t		 klen;
	char		 key[];
};

/* Queue a payload behind the read in flight (at the front: it came first). */
static int
enqueue(struct room *r, const char *p, size_t n, int front)
{
	struct queued *e;

	if (r->nq >= MAX_QUEUED || (e = malloc(sizeof(*e) + n)) == NULL)
		return -1;
	memcpy(e->data, p, n);
	e->len = n;
	if (front) {
		e->next = r->q;
		if (r->q == NULL)
			r->q_tail = &e->next;
		r->q = e;
	} else {
		e->next = NULL;
		*r->q_tail = e;
		r->q_tail = &e->next;
	}
	r->nq++;
	return 0;
}

/* The read came back (or the wait is over): deliver what waited, in order, until the next gap. */
static void
drain_queue(struct room *r)
{
	struct queued *e;

	while (!r->fetching && (e = r->q) != NULL) {
		r->q = e->next;
		if (r->q == NULL)
			r->q_tail = &r->q;
		r->nq--;
		handle(r, e->data, e->len);
		free(e);
	}
}

static void
fetched(void *arg, const struct store_range *got)
{
	struct fetch_req *fr = arg;
	struct room *r = R.tab != NULL ? room_find(fr->key, fr->klen) : NULL;
	uint64_t want;

	if (r == NULL || !r->fetching || r->fetch_id != fr->id) {
		free(fr);
		return;		/* the room went, or the link broke meanwhile */
	}
	want = fr->upto != 0 ? fr->upto : got->offset;
	if (got->ok && fr->upto == 0 && got->epoch[0] != '\0' && strcmp(got->epoch, r->epoch) != 0 &&
	    strlen(got->epoch) <= STORE_EPOCH_MAX) {
		/*
		 * The room restarted under us while we were away (Redis lost it,
		 * or a failover lost its tail): the old epoch's rest is gone,
		 * and everything of the new one is news to these members, read
		 * from its start.
		 */
		announce_lost(r, r->last, r->epoch);
		memcpy(r->epoch, got->epoch, strlen(got->epoch) + 1);
		r->last = 0;
		r->fetching = 0;
		free(fr);
		fetch(r, 0);
		return;
	}
	if (!got->ok || strcmp(got->epoch, r->epoch) != 0) {
		/* The room restarted under us: what the old epoch still had is gone. */
		announce_lost(r, r->last, r->epoch);
		r->positioned = 0;
	} else {
		size_t i = 0, delivered = 0;

		for (; i < got->n && got->off[i] <= r->last; i++)
			;	/* already here */
		for (; i < got->n && got->off[i] == r->last + 1 && r->last < want; i++, delivered++) {
			fan_out(r, WS_OP_TEXT, got->json[i], got->len[i], NULL);
			r->last = got->off[i];
		}
		if (delivered > 0)
			metrics_add(MET_GAPS_REPAIRED, 1);
		if (r->last < want) {
			announce_lost(r, want, r->epoch);
			r->last = want;
		}
	}
	r->fetching = 0;
	free(fr);
	drain_queue(r);
}

/* Read the room's messages after r->last up to upto (0: now); events wait meanwhile. */
static void
fetch(struct room *r, uint64_t upto)
{
	struct fetch_req *fr = malloc(sizeof(*fr) + r->klen);
	unsigned limit = R.cfg->history_size > 0 ? (unsigned)R.cfg->history_size : 1;

	r->fetching = 1;
	if (fr != NULL) {
		fr->id = r->fetch_id = ++R.ids;
		fr->upto = upto;
		fr->klen = r->klen;
		memcpy(fr->key, r->key, r->klen);
		if (R.cfg->history_size > 0 &&
		    store_read_after(r->key, r->klen, r->last, upto, limit, fetched, fr) == 0)
			return;
		free(fr);
	}
	/* Nothing to read it from: the members hear of the gap, then the rest flows. */
	r->fetching = 0;
	if (upto != 0) {
		announce_lost(r, upto, r->epoch);
		r->last = upto;
	}
	drain_queue(r);
}

/*
 * Whether a payload at offset off of epoch may be delivered now (1), or was
 * dropped or queued behind a read (0). A message moves the room to off; an
 * enter says where the room was then, and is delivered after everything
 * before it.
 */
static int
in_order(struct room *r, uint64_t off, const char *epoch, size_t elen, int message, const char *p, size_t n)
{
	if (elen > STORE_EPOCH_MAX)
		elen = STORE_EPOCH_MAX;
	if (!r->positioned) {
		/* A new subscription: its members get what comes from here on. */
		r->positioned = 1;
		memcpy(r->epoch, epoch, elen);
		r->epoch[elen] = '\0';
		r->last = message && off > 0 ? off - 1 : off;
	} else if (strlen(r->epoch) != elen || memcmp(r->epoch, epoch, elen) != 0) {
		/* The room restarted (Redis lost it): the old epoch's tail is gone, the new one's can be read. */
		announce_lost(r, r->last, r->epoch);
		memcpy(r->epoch, epoch, elen);
		r->epoch[elen] = '\0';
		r->last = 0;
	}
	if (message ? off <= r->last : off < r->last) {
		if (!message)
			return 1;
		metrics_add(MET_DUPLICATES_DROPPED, 1);
		return 0;
	}
	if (message ? off == r->last + 1 : off == r->last) {
		if (message)
			r->last = off;
		return 1;
	}
	/* A gap: what is missing is read and delivered first; this waits at the front of the queue. */
	if (enqueue(r, p, n, 1) == -1) {
		announce_lost(r, message ? off - 1 : off, r->epoch);
		r->last = off;
		return 1;
	}
	fetch(r, message ? off - 1 : off);
	return 0;
}

/* ---- channel events ---- */

/*
 * One channel payload, in order. Headers: "m OFF EPOCH\n", "e NUM MID OFF
 * EPOCH\n", "o NUM MID\n", "q NUM MID\n" (a quiet out), "n NUM\n", "t\n", "b\n".
 */
static void
handle(struct room *r, const char *p, size_t n)
{
	const char *nl = memchr(p, '\n', n), *q, *body, *mid = NULL, *ep;
	size_t blen, midlen = 0, elen;
	uint64_t off = 0, num64 = 0;

	if (nl == NULL || n < 2)
		return;
	body = nl + 1;
	blen = n - (size_t)(body - p);
	switch (p[0]) {
	case 'm':
		if ((q = parse_u64(p + 2, nl, &off)) == NULL || *q != ' ')
			return;
		ep = q + 1;
		elen = (size_t)(nl - ep);
		if (!in_order(r, off, ep, elen, 1, p, n))
			return;
		fan_out(r, WS_OP_TEXT, body, blen, NULL);
		return;
	case 't':
	case 'b':
		fan_out(r, p[0] == 't' ? WS_OP_TEXT : WS_OP_BINARY, body, blen, NULL);
		return;
	case 'n':
		if (parse_u64(p + 2, nl, &num64) != NULL)
			r->num = (long)num64;
		who_forget(r);
		return;
	case 'e':
	case 'o':
	case 'q':
		if ((q = parse_u64(p + 2, nl, &num64)) == NULL || *q != ' ')
			return;
		mid = q + 1;
		if ((q = memchr(mid, ' ', (size_t)(nl - mid))) == NULL)
			q = nl;
		midlen = (size_t)(q - mid);
		break;
	default:
		return;
	}
	who_forget(r);
	if (p[0] == 'e') {
		struct member *m;
		const char *e2;

		if (q == nl || (e2 = parse_u64(q + 1, nl, &off)) == NULL || *e2 != ' ')
			return;
		ep = e2 + 1;
		elen = (size_t)(nl - ep);
		if (!in_order(r, off, ep, elen, 0, p, n))
			return;
		r->num = (long)num64;
		if ((m = member_by_mid(r, mid, midlen)) != NULL && m->state != MEM_PENDING)
			m = NULL;
		if (m != NULL)
			m->state = MEM_ACTIVE;
		proto_enter(&R.jb, body, blen, r->key, r->klen, r->num);
		fan_out_json(r, NULL);
		/* It saw its own enter; now what it asked to catch up on, before anything live. */
		if (m != NULL && m->state == MEM_ACTIVE && m->cu != NULL) {
			m->state = MEM_RECOVERING;
			m->cu->upto = off;
			snprintf(m->cu->epoch, sizeof(m->cu->epoch), "%s", r->epoch);
			catch_up(m);
		}
		return;
	}
	/* out; a quiet one (the name is still in the room) only to the leaver itself */
	{
		char leaver[64];

		r->num = (long)num64;
		snprintf(leaver, sizeof(leaver), "%.*s", (int)(midlen < 63 ? midlen : 63), mid);
		proto_out(&R.jb, body, blen, r->key, r->klen, r->num);
		if (p[0] == 'o')
			fan_out_json(r, leaver);
		/* A member that asked to leave is done once it saw its own out. */
		for (struct member *m = r->members, *next; m != NULL; m = next) {
			next = m->rnext;
			if (m->state == MEM_LEAVING && strcmp(m->mid, leaver) == 0) {
				if (p[0] == 'q' && !R.jb.oom)
					ws_send_text(m->s, R.jb.p, R.jb.len);
				member_free(m);
				break;
			}
		}
	}
}

/* A payload arrived on a channel. */
static void
on_message(const char *ch, size_t chlen, const char *p, size_t n)
{
	size_t klen;
	const char *key = store_room_of(ch, chlen, &klen);
	struct room *r = key != NULL ? room_find(key, klen) : NULL;

	if (key == NULL && R.control != NULL && store_is_control(ch, chlen)) {
		R.control(p, n);
		return;
	}
	if (r == NULL || r->sub != SUB_ACTIVE || n < 2)
		return;
	if (r->fetching || r->q != NULL) {
		if (enqueue(r, p, n, 0) == -1) {
			/* Too far behind to keep order: say so, and carry on from here. */
			drop_queued(r);
			r->positioned = 0;
			announce_lost(r, r->last, r->epoch);
		}
		return;
	}
	handle(r, p, n);
}

/* ---- a member catching up ---- */

struct cu_req {
	uint32_t	 id;
	int		 fallback;	/* the since read failed: this is the history read */
	size_t		 klen;
	char		 mid[64];
	char		 key[];
};

/* Send what the member caught up on, the verdict, then its live frames: it is active. */
static void
catchup_done(struct member *m, int recovered, const struct store_range *got)
{
	struct room *r = m->room;
	struct catchup *cu = m->cu;
	size_t count = 0;

	for (size_t i = 0; got != NULL && i < got->n; i++)
		if (got->off[i] <= cu->upto) {
			ws_send_text(m->s, got->json[i], got->len[i]);
			count++;
		}
	if (cu->overflow)
		recovered = 0;
	proto_recovered(&R.jb, r->key, r->klen, recovered, cu->upto, cu->epoch, (long long)count, r->num);
	if (!R.jb.oom)
		ws_send_text(m->s, R.jb.p, R.jb.len);
	metrics_add(recovered ? MET_RECOVERED : MET_NOT_RECOVERED, 1);
	for (uint32_t i = 0; i < cu->n; i++)
		(void)ws_send_shared(m->s, cu->frames[i]);
	m->state = MEM_ACTIVE;
	catchup_free(m);
}

static struct member *
cu_member(const struct cu_req *q)
{
	struct room *r = R.tab != NULL ? room_find(q->key, q->klen) : NULL;
	struct member *m = r != NULL ? member_by_mid(r, q->mid, strlen(q->mid)) : NULL;

	return m != NULL && m->state == MEM_RECOVERING && m->cu != NULL && m->cu->id == q->id ? m : NULL;
}

static void catchup_read(void *, const struct store_range *);

/* Read the last `history` messages up to the member's enter (after a failed since, recovered stays false). */
static int
catchup_history(struct member *m, struct cu_req *q)
{
	q->fallback = 1;
	return store_read_before(m->room->key, m->room->klen, m->cu->upto + 1, m->cu->req.history,
	    catchup_read, q);
}

static void
catchup_read(void *arg, const struct store_range *got)
{
	struct cu_req *q = arg;
	struct member *m = cu_member(q);
	struct catchup *cu;
	int ok;

	if (m == NULL) {
		free(q);
		return;
	}
	cu = m->cu;
	ok = got->ok && strcmp(got->epoch, cu->epoch) == 0;
	if (q->fallback || !cu->req.since) {
		/* The last messages: complete as asked unless the epoch moved under us. */
		catchup_done(m, ok && !q->fallback, ok ? got : NULL);
		free(q);
		return;
	}
	/* since: every offset from since + 1 to upto, no more, no less. */
	if (ok) {
		uint64_t want = cu->req.offset + 1;

		for (size_t i = 0; i < got->n && ok; i++, want++)
			ok = got->off[i] == want;
		ok = ok && want == cu->upto + 1;
	}
	if (ok || cu->req.history == 0) {
		catchup_done(m, ok, ok ? got : NULL);
		free(q);
		return;
	}
	if (catchup_history(m, q) == -1) {
		catchup_done(m, 0, NULL);
		free(q);
	}
}

/* The member's enter came back at offset upto: read what it asked for. */
static void
catch_up(struct member *m)
{
	struct catchup *cu = m->cu;
	struct room *r = m->room;
	struct cu_req *q;
	int rc = -1;

	cu->id = ++R.ids;
	if (cu->req.since && strcmp(cu->req.epoch, cu->epoch) == 0 && cu->req.offset == cu->upto) {
		catchup_done(m, 1, NULL);	/* it missed nothing */
		return;
	}
	if ((q = malloc(sizeof(*q) + r->klen)) == NULL) {
		catchup_done(m, 0, NULL);
		return;
	}
	q->id = cu->id;
	q->fallback = 0;
	q->klen = r->klen;
	memcpy(q->key, r->key, r->klen);
	snprintf(q->mid, sizeof(q->mid), "%s", m->mid);
	if (cu->req.since && strcmp(cu->req.epoch, cu->epoch) == 0 && cu->req.offset < cu->upto &&
	    cu->upto - cu->req.offset <= (uint64_t)R.cfg->history_size)
		rc = store_read_after(r->key, r->klen, cu->req.offset, cu->upto, (unsigned)R.cfg->history_size,
		    catchup_read, q);
	else if (cu->req.history > 0)
		rc = cu->req.since ? catchup_history(m, q) :
		    store_read_before(r->key, r->klen, cu->upto + 1, cu->req.history, catchup_read, q);
	else {
		free(q);
		catchup_done(m, 0, NULL);	/* another epoch, or too far behind: a gap, said */
		return;
	}
	if (rc == -1) {
		free(q);
		catchup_done(m, 0, NULL);
	}
}

/* ---- subscriptions and the link ---- */

static void said(void *, int);
static void relayed(void *, long);

/* Publish a held message now. */
static void
release(struct room *r, struct held *h)
{
	int rc = h->relay ? store_relay(r->key, r->klen, h->data, h->len, relayed, h->s) :
	    store_say(r->key, r->klen, h->data, h->len, h->s);

	if (rc == -1)
		said(h->s, 0);	/* tells the sender, drops the reference */
}

/* Send what a newly confirmed subscription was waiting for. */
static void
flush_room(struct room *r)
{
	struct held *h;

	/* Back after a lost link: first what was published meanwhile. */
	if (r->kind == ROOM_CHAT && r->positioned && !r->fetching)
		fetch(r, 0);
	for (struct member *m = r->members; m != NULL; m = m->rnext) {
		if (r->kind == ROOM_BROADCAST) {
			m->state = MEM_ACTIVE;
			continue;
		}
		if (m->state == MEM_PENDING && !m->enter_sent) {
			if (store_enter(r->key, r->klen, m->mid, m->name, m->nlen) == 0)
				m->enter_sent = 1;
		} else if (m->state == MEM_ACTIVE)
			(void)store_resync(r->key, r->klen, m->mid, m->name, m->nlen);
	}
	while ((h = r->held) != NULL) {
		r->held = h->next;
		release(r, h);
		free(h);
	}
	r->held_tail = &r->held;
	r->nheld = 0;
}

static int
subscribe(struct room *r)
{
	char ch[1300];
	size_t cl = store_channel(ch, sizeof(ch), r->key, r->klen);

	return cl == 0 ? -1 : bus_subscribe(ch, cl);
}

static int
unsubscribe(struct room *r)
{
	char ch[1300];
	size_t cl = store_channel(ch, sizeof(ch), r->key, r->klen);

	return cl == 0 ? -1 : bus_unsubscribe(ch, cl);
}

static void
on_subscribed(const char *ch, size_t chlen)
{
	size_t klen;
	const char *key = store_room_of(ch, chlen, &klen);
	struct room *r = key != NULL ? room_find(key, klen) : NULL;

	if (r == NULL || r->sub != SUB_PENDING)
		return;
	r->sub = SUB_ACTIVE;
	flush_room(r);
}

static int
on_unsubscribed(const char *ch, size_t chlen)
{
	size_t klen;
	const char *key = store_room_of(ch, chlen, &klen);
	struct room *r = key != NULL ? room_find(key, klen) : NULL;

	if (key == NULL && R.control != NULL && store_is_control(ch, chlen))
		return 1;	/* never left: its slot moved, so it is wanted where it is now */
	if (r == NULL)
		return 0;
	if (r->sub != SUB_LEAVING) {
		/*
		 * Redis dropped it on its own (its Cluster slot moved). The bus
		 * subscribes again at the new owner; the confirmation catches up
		 * on what was published meanwhile, as after a lost link.
		 */
		if (r->nmembers == 0 || r->sub == SUB_NONE)
			return 0;
		r->sub = SUB_PENDING;
		return 1;
	}
	r->sub = SUB_NONE;
	if (r->nmembers == 0) {
		room_destroy(r);
		return 0;
	}
	/* Refilled while the unsubscribe was in flight. */
	r->positioned = 0;	/* nothing was delivered meanwhile: start afresh */
	if (subscribe(r) == 0)
		r->sub = SUB_PENDING;
	return 0;
}

/* A leave reached Redis (num >= 0) or must be retried when the link is back. */
static void
out_done(void *arg, long num)
{
	struct pending_out *o = arg;

	if (num >= 0 || R.tab == NULL) {
		free(o);
		return;
	}
	o->replay = 1;
	o->next = R.outs;
	R.outs = o;
}

static int
send_out(struct pending_out *o)
{
	return store_out(o->data, o->klen, o->mid, o->data + o->klen, o->nlen, o->replay, out_done, o);
}

static void
flush_pending_outs(void)
{
	struct pending_out *o;

	while ((o = R.outs) != NULL && bus_ready()) {
		R.outs = o->next;
		if (send_out(o) == -1) {
			o->next = R.outs;
			R.outs = o;
			return;
		}
	}
}

static void
on_up(void)
{
	R.up = 1;
	R.down_at = 0;
	R.control_down = 0;
	if (R.control != NULL && store_control_subscribe() == -1)
		log_warn("cannot subscribe to the control channel: /api/disconnect will not reach this worker");
	flush_pending_outs();
	for (size_t i = 0; i < R.nbuckets; i++) {
		for (struct room *r = R.tab[i], *next; r != NULL; r = next) {
			next = r->hnext;
			if (r->nmembers == 0) {
				room_destroy(r);
				continue;
			}
			if (subscribe(r) == 0) {
				r->sub = SUB_PENDING;
				r->down_at = 0;
			}
		}
	}
	R.some_down = 1;	/* any that could not subscribe are retried by room_tick */
}

/*
 * A chat member whose enter is not done while Redis stays away hears
 * "unavailable", as an enter sent during the outage would, and is no member:
 * its session drops it (room_member_gone), and Redis hears its out once back
 * in case the enter got there.
 */
static void
enter_undone(struct room *r, struct member *m)
{
	static const char lost[] = "{\"event\":\"error\",\"code\":\"unavailable\","
	    "\"message\":\"enter not done: room service unavailable; try again\"}";

	release_held(r, m, 0);
	catchup_free(m);
	/*
	 * Queued until the link is back; out announced only if the enter got
	 * there (others then heard it), not replayed like a member's whose
	 * registration Redis may have lost.
	 */
	if ((m->enter_sent || m->enter_maybe) && leave_redis(r, m) == -1 && R.outs != NULL &&
	    strcmp(R.outs->mid, m->mid) == 0)
		R.outs->replay = 0;
	ws_send_text(m->s, lost, sizeof(lost) - 1);
	unlink_member(m);
	m->room = NULL;
}

/* The room's channel is gone with its link: it waits, subscribed again when it can be. */
static void
room_down(struct room *r)
{
	r->sub = SUB_NONE;
	/* A read in flight answers NULL: it is forgotten; the catch-up at up reads again. */
	r->fetching = 0;
	r->fetch_id = 0;
	drop_queued(r);
	for (struct member *m = r->members, *next; m != NULL; m = next) {
		next = m->rnext;
		/*
		 * A pending member's enter is resent (idempotent) when
		 * the link is back; if it is not back within
		 * ENTER_GRACE_MS, room_tick answers it (enter_undone). An
		 * active one is re-registered by store_resync and keeps
		 * enter_sent: clearing it would hold its messages in
		 * publish_or_hold forever. One catching up cannot
		 * finish: it hears it has a gap, then gets what the
		 * room catches up on like the others.
		 */
		if (m->state == MEM_PENDING) {
			m->enter_maybe |= m->enter_sent;
			m->enter_sent = 0;
		}
		if (m->state == MEM_RECOVERING)
			catchup_done(m, 0, NULL);
		if (m->state == MEM_LEAVING) {
			/*
			 * Its own out event will never come back on this
			 * link: answer the leaver here (as room_leave does
			 * offline). Redis hears the out when out_done retries.
			 */
			proto_out(&R.jb, m->name, m->nlen, r->key, r->klen,
			    r->num > 0 ? r->num - 1 : 0);
			if (!R.jb.oom)
				ws_send_text(m->s, R.jb.p, R.jb.len);
			member_free(m);
		}
	}
	drop_held(r);
	r->down_at = clock_ms();
}

static void
on_down(void)
{
	R.up = 0;
	R.down_at = clock_ms();
	R.undone = 0;
	for (size_t i = 0; i < R.nbuckets; i++)
		for (struct room *r = R.tab[i]; r != NULL; r = r->hnext)
			room_down(r);
}

/*
 * Cluster: one node went away while the others stay up. Only the rooms it
 * served are down; room_tick subscribes them again once their slot has a
 * master that is up, and answers their pending enters after ENTER_GRACE_MS.
 */
static void
on_lost(void)
{
	char ch[1300];

	if (R.control != NULL && store_control_lost()) {
		R.control_down = 1;
		R.some_down = 1;
	}
	for (size_t i = 0; i < R.nbuckets; i++)
		for (struct room *r = R.tab[i]; r != NULL; r = r->hnext) {
			size_t cl = store_channel(ch, sizeof(ch), r->key, r->klen);

			if (r->sub != SUB_NONE && cl > 0 && bus_channel_lost(ch, cl)) {
				room_down(r);
				R.some_down = 1;
			}
		}
}

/* Redis forgot our members while the links stayed up: register every one it had again. */
static void
on_forgotten(void)
{
	for (size_t i = 0; i < R.nbuckets; i++)
		for (struct room *r = R.tab[i]; r != NULL; r = r->hnext)
			for (struct member *m = r->members; m != NULL; m = m->rnext)
				if (r->kind == ROOM_CHAT && m->state != MEM_LEAVING &&
				    (m->state != MEM_PENDING || m->enter_sent))
					(void)store_resync(r->key, r->klen, m->mid, m->name, m->nlen);
}

static const struct store_handlers handlers = {
	{ on_message, on_subscribed, on_unsubscribed, on_up, on_down, on_lost },
	said,
	on_forgotten,
};

/* Redis never took a message: its sender must not think it was delivered. */
static void
said(void *arg, int ok)
{
	static const char lost[] = "{\"event\":\"error\",\"code\":\"unavailable\","
	    "\"message\":\"message not delivered: room service unavailable; try again\"}";
	struct session *s = arg;

	if (!ok)
		ws_send_text(s, lost, sizeof(lost) - 1);
	ws_unref(s);
}

static void
relayed(void *arg, long num)
{
	said(arg, num >= 0);
}

int
room_init(struct event_base *base, const struct config *cfg, const char *wid, const char *dead_wid)
{
	memset(&R, 0, sizeof(R));
	R.nbuckets = 64;
	R.cfg = cfg;
	if ((R.tab = calloc(R.nbuckets, sizeof(*R.tab))) == NULL)
		return -1;
	snprintf(R.wid, sizeof(R.wid), "%s", wid);
	if (store_start(base, cfg, wid, &handlers) == -1)
		return -1;
	if (dead_wid != NULL)
		store_bury(dead_wid);	/* once up: nothing is sent before the loop runs */
	return 0;
}

void
room_farewell(void)
{
	/* A leave Redis never took keeps the registration: a janitor buries it, announced. */
	if (R.outs == NULL)
		store_farewell();
}

void
room_shutdown(void)
{
	struct pending_out *o;

	store_stop();
	for (size_t i = 0; R.tab != NULL && i < R.nbuckets; i++) {
		while (R.tab[i] != NULL) {
			struct room *r = R.tab[i];

			/* Only leaving members are left: sessions freed theirs already. */
			while (r->members != NULL)
				member_free(r->members);
			room_destroy(r);
		}
	}
	while ((o = R.outs) != NULL) {
		R.outs = o->next;
		free(o);
	}
	free(R.tab);
	R.tab = NULL;
	jbuf_free(&R.jb);
}

int
room_service_up(void)
{
	return bus_ready();
}

void
room_tick(uint64_t now)
{
	/* Rooms down alone (a Cluster node lost): back where their slot is now; else answer enters. */
	int still = 0;

	if (R.up && R.control_down) {
		if (store_control_subscribe() == 0)
			R.control_down = 0;
		still = R.control_down;
	}
	for (size_t i = 0; R.up && R.some_down && i < R.nbuckets; i++)
		for (struct room *r = R.tab[i]; r != NULL; r = r->hnext) {
			if (r->sub != SUB_NONE || r->nmembers == 0 || r->down_at == 0)
				continue;
			still = 1;
			if (subscribe(r) == 0) {
				r->sub = SUB_PENDING;
				r->down_at = 0;
			} else if (now - r->down_at >= ENTER_GRACE_MS)
				for (struct member *m = r->members, *next; m != NULL; m = next) {
					next = m->rnext;
					if (m->state == MEM_PENDING && r->kind == ROOM_CHAT)
						enter_undone(r, m);
				}
		}
	if (R.up)
		R.some_down = still;
	if (!R.up && R.down_at != 0 && !R.undone && now - R.down_at >= ENTER_GRACE_MS) {
		/* Redis stays away: answer the enters it has not done. */
		R.undone = 1;
		for (size_t i = 0; i < R.nbuckets; i++)
			for (struct room *r = R.tab[i]; r != NULL; r = r->hnext)
				for (struct member *m = r->members, *next; m != NULL; m = next) {
					next = m->rnext;
					if (m->state == MEM_PENDING && r->kind == ROOM_CHAT)
						enter_undone(r, m);
				}
	}
	for (size_t i = 0; i < R.nbuckets; i++) {
		for (struct room *r = R.tab[i], *next; r != NULL; r = next) {
			next = r->hnext;
			if (r->nmembers > 0 || now - r->empty_since < 1000)
				continue;
			if (r->sub == SUB_NONE)
				room_destroy(r);
			else if (r->sub == SUB_ACTIVE && unsubscribe(r) == 0)
				r->sub = SUB_LEAVING;
		}
	}
}

/* ---- members ---- */

struct member *
room_join(struct session *s, enum room_kind kind, const char *key, size_t klen,
    const char *name, size_t nlen, const struct room_catchup *cu, const char **err)
{
	struct room *r;
	struct member *m;

	if (!bus_ready()) {
		*err = "unavailable";
		return NULL;
	}
	if ((r = room_find(key, klen)) == NULL && (r = room_create(kind, key, klen)) == NULL) {
		*err = "no_memory";
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m) + nlen + 1)) == NULL ||
	    (cu != NULL && (m->cu = calloc(1, sizeof(*m->cu))) == NULL)) {
		free(m);
		if (r->nmembers == 0 && r->sub == SUB_NONE)
			room_destroy(r);
		*err = "no_memory";
		return NULL;
	}
	if (cu != NULL)
		m->cu->req = *cu;
	memcpy(m->name, name, nlen);
	m->nlen = (uint16_t)nlen;
	m->s = s;
	m->room = r;
	snprintf(m->mid, sizeof(m->mid), "%s.%llu", R.wid, (unsigned long long)++R.seq);
	m->state = MEM_PENDING;
	m->rnext = r->members;
	if (r->members != NULL)
		r->members->rprev = m;
	r->members = m;
	r->nmembers++;
	switch (r->sub) {
	case SUB_NONE:
		r->positioned = 0;
		if (subscribe(r) == 0) {
			r->sub = SUB_PENDING;
			r->down_at = 0;
			break;
		}
		/* Its slot's node is away (a Cluster failover): say so now. */
		unlink_member(m);
		catchup_free(m);
		free(m);
		if (r->nmembers == 0 && r->down_at == 0)
			room_destroy(r);
		*err = "unavailable";
		return NULL;
	case SUB_ACTIVE:
		if (kind == ROOM_BROADCAST)
			m->state = MEM_ACTIVE;
		else if (store_enter(r->key, r->klen, m->mid, m->name, m->nlen) == 0)
			m->enter_sent = 1;
		break;
	default:
		break;		/* flush_room or on_unsubscribed takes it from here */
	}
	return m;
}

/*
 * m leaves while messages it sent still wait for the room's subscription.
 * Publish them now, ahead of its out, if the room heard of m (or it is a
 * broadcast room); otherwise they are not delivered, and m hears so:
 * others would get a message from someone whose enter they never saw.
 */
static void
release_held(struct room *r, const struct member *m, int publish)
{
	static const char lost[] = "{\"event\":\"error\",\"code\":\"unavailable\","
	    "\"message\":\"message not delivered: you left before the room knew you\"}";
	struct held **pp = &r->held, *h;

	while ((h = *pp) != NULL) {
		if (h->from != m) {
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		if (publish)
			release(r, h);
		else {
			ws_send_text(h->s, lost, sizeof(lost) - 1);
			ws_unref(h->s);
		}
		free(h);
		r->nheld--;
	}
	r->held_tail = pp;
}

/* Tell Redis that m left: now, or once the link is back. */
static int
leave_redis(const struct room *r, const struct member *m)
{
	struct pending_out *o = malloc(sizeof(*o) + r->klen + m->nlen);

	if (o == NULL) {
		log_error("no memory to record a leave from room %.*s", (int)r->klen, r->key);
		return -1;
	}
	o->klen = r->klen;
	o->nlen = m->nlen;
	snprintf(o->mid, sizeof(o->mid), "%s", m->mid);
	memcpy(o->data, r->key, r->klen);
	memcpy(o->data + r->klen, m->name, m->nlen);
	o->replay = 0;
	if (bus_ready() && send_out(o) == 0)
		return 0;
	o->replay = 1;	/* Redis may come back without its data: others still know m */
	o->next = R.outs;
	R.outs = o;
	return -1;
}

void
room_leave(struct member *m, int tell_self)
{
	struct room *r = m->room;
	int registered, sent = 0;

	if (r == NULL) {
		free(m);
		return;
	}
	/* Pending members may be registered already: their enter could be in flight. */
	registered = r->kind == ROOM_CHAT && (m->enter_sent || m->state != MEM_PENDING);
	release_held(r, m, registered || r->kind == ROOM_BROADCAST);
	catchup_free(m);
	if (m->state == MEM_RECOVERING)
		m->state = MEM_ACTIVE;	/* it goes: nothing more to catch up on */
	if (registered)
		sent = leave_redis(r, m) == 0;
	if (sent && tell_self && r->sub == SUB_ACTIVE && m->state == MEM_ACTIVE) {
		/* Stay linked (not receiving) until our own out event comes back. */
		m->state = MEM_LEAVING;
		ws_ref(m->s);
		return;
	}
	if (tell_self && r->kind == ROOM_CHAT) {
		long num = r->num;

		/* r->num counts m only once its enter came back (it is active). */
		if (m->state == MEM_ACTIVE && num > 0)
			num--;
		proto_out(&R.jb, m->name, m->nlen, r->key, r->klen, num);
		if (!R.jb.oom)
			ws_send_text(m->s, R.jb.p, R.jb.len);
	}
	unlink_member(m);
	free(m);
}

/* Publish now, or hold until the room's subscription and enters are out. */
static int
publish_or_hold(struct room *r, struct member *m, int relay, const char *p, size_t n)
{
	struct held *h;
	int rc;

	if (!bus_ready() || r->down_at != 0)
		return -1;	/* Redis, or this room's Cluster node, is away: answered now, not held */
	if (r->sub == SUB_ACTIVE && (r->kind == ROOM_BROADCAST || m->enter_sent)) {
		/* The sender hears if the link dies before Redis took the message. */
		ws_ref(m->s);
		rc = relay ? store_relay(r->key, r->klen, p, n, relayed, m->s) :
		    store_say(r->key, r->klen, p, n, m->s);
		if (rc == 0)
			return 0;
		ws_unref(m->s);
		return -1;
	}
	if (r->nheld >= MAX_HELD || (h = malloc(sizeof(*h) + n)) == NULL)
		return -1;
	h->next = NULL;
	h->from = m;
	h->s = m->s;
	ws_ref(m->s);
	h->relay = (uint8_t)relay;
	h->len = n;
	memcpy(h->data, p, n);
	*r->held_tail = h;
	r->held_tail = &h->next;
	r->nheld++;
	return 0;
}

/* A new message id, "WID.SEQ", into id[ROOM_ID_MAX], without printf: this runs for every message. */
static void
next_id(char *id)
{
	size_t wl = strlen(R.wid);

	if (wl > ROOM_ID_MAX - 26)
		wl = ROOM_ID_MAX - 26;
	memcpy(id, R.wid, wl);
	id[wl] = '.';
	id[wl + 1 + jbuf_itoa(id + wl + 1, (long long)(++R.seq & (uint64_t)LLONG_MAX))] = '\0';
}

int
room_say(struct member *m, const char *text, size_t tlen)
{
	struct room *r = m->room;
	char id[ROOM_ID_MAX];

	next_id(id);
	/* The event but its end: Redis adds num and the offset in the same step that stores it. */
	proto_message_head(&R.jb, m->name, m->nlen, text, tlen, r->key, r->klen, id, clock_wall_ms());
	if (R.jb.oom)
		return -1;
	return publish_or_hold(r, m, 0, R.jb.p, R.jb.len);
}

int
room_post(const char *room, size_t rl, const char *name, size_t nl, const char *text, size_t tlen,
    char id[ROOM_ID_MAX], store_said_fn fn, void *arg)
{
	if (!bus_ready())
		return -1;
	next_id(id);
	proto_message_head(&R.jb, name, nl, text, tlen, room, rl, id, clock_wall_ms());
	if (R.jb.oom)
		return -1;
	return store_say_full(room, rl, R.jb.p, R.jb.len, fn, arg);
}

size_t
room_count(void)
{
	return R.nrooms;
}

void
room_set_control(room_control_fn fn)
{
	R.control = fn;
}

const char *
room_member_name(const struct member *m, size_t *len)
{
	*len = m->nlen;
	return m->name;
}

int
room_relay(struct member *m, int opcode, const uint8_t *data, size_t len)
{
	struct room *r = m->room;

	jbuf_reset(&R.jb);
	jbuf_add(&R.jb, opcode == WS_OP_BINARY ? "b\n" : "t\n", 2);
	jbuf_add(&R.jb, (const char *)data, len);
	if (R.jb.oom)
		return -1;
	return publish_or_hold(r, m, 1, R.jb.p, R.jb.len);
}

struct hist_req {
	struct session	*s;
	room_history_fn	 fn;
	size_t		 klen;
	char		 key[];
};

static void
history_read(void *arg, const struct store_range *got)
{
	struct hist_req *h = arg;

	h->fn(h->s, h->key, h->klen, got->ok ? got : NULL);
	ws_unref(h->s);
	free(h);
}

int
room_history(struct member *m, uint64_t before, unsigned limit, room_history_fn fn)
{
	struct room *r = m->room;
	struct hist_req *h;

	if (!bus_ready() || (h = malloc(sizeof(*h) + r->klen)) == NULL)
		return -1;
	h->s = m->s;
	h->fn = fn;
	h->klen = r->klen;
	memcpy(h->key, r->key, r->klen);
	ws_ref(m->s);
	if (store_read_before(r->key, r->klen, before, limit, history_read, h) == -1) {
		ws_unref(m->s);
		free(h);
		return -1;
	}
	return 0;
}

/* The answer to the room's who: to every session that waited for it, and kept a moment. */
static void
who_read(void *arg, const char *const *names, const size_t *lens, size_t n, long total)
{
	struct fetch_req *fr = arg;
	struct room *r = R.tab != NULL ? room_find(fr->key, fr->klen) : NULL;
	struct who_wait *w;

	free(fr);
	if (r == NULL)
		return;		/* room_destroy let the waiting sessions go */
	who_forget(r);
	if (names != NULL) {
		proto_who(&R.jb, r->key, r->klen, names, lens, n, total);
		if (!R.jb.oom && (r->who = malloc(R.jb.len)) != NULL) {
			memcpy(r->who, R.jb.p, R.jb.len);
			r->wholen = R.jb.len;
			r->who_at = clock_ms();
		}
	} else
		proto_error(&R.jb, "unavailable", "room service unavailable; try again shortly");
	while ((w = r->who_waiting) != NULL) {
		r->who_waiting = w->next;
		if (!R.jb.oom)
			ws_send_text(w->s, R.jb.p, R.jb.len);
		ws_unref(w->s);
		free(w);
	}
	r->nwho_waiting = 0;
}

int
room_who(struct member *m)
{
	struct room *r = m->room;
	struct who_wait *w;
	struct fetch_req *fr;

	if (r->who != NULL && clock_ms() - r->who_at < WHO_CACHE_MS) {
		ws_send_text(m->s, r->who, r->wholen);
		return 0;
	}
	if (!bus_ready() || r->nwho_waiting >= MAX_WHO_WAITING || (w = malloc(sizeof(*w))) == NULL)
		return -1;
	w->s = m->s;
	ws_ref(m->s);
	w->next = r->who_waiting;
	r->who_waiting = w;
	if (r->nwho_waiting++ > 0)
		return 0;	/* a read is on its way: it answers this one too */
	if ((fr = malloc(sizeof(*fr) + r->klen)) != NULL) {
		fr->klen = r->klen;
		memcpy(fr->key, r->key, r->klen);
		if (store_who(r->key, r->klen, (unsigned)R.cfg->who_limit, who_read, fr) == 0)
			return 0;
		free(fr);
	}
	r->who_waiting = NULL;
	r->nwho_waiting = 0;
	ws_unref(m->s);
	free(w);
	return -1;
}

long
room_num(const struct member *m)
{
	return m->room != NULL && m->room->kind == ROOM_CHAT ? m->room->num : -1;
}

int
room_member_gone(const struct member *m)
{
	return m->room == NULL;
}

const char *
room_key_of(const struct member *m, size_t *len)
{
	*len = m->room != NULL ? m->room->klen : 0;
	return m->room != NULL ? m->room->key : "";
}

struct member *
room_next_of_session(const struct member *m)
{
	return m->snext;
}

void
room_set_next_of_session(struct member *m, struct member *next)
{
	m->snext = next;
}

struct member **
room_next_ref(struct member *m)
{
	return &m->snext;
}

size_t
room_broadcast_key(char *buf, size_t len, const char *path, const char *room, size_t rlen)
{
	int n = snprintf(buf, len, "\x01%s\x01%.*s", path, (int)rlen, room);

	return n < 0 || (size_t)n >= len ? 0 : (size_t)n;
}
