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
 * exactly the RFC-of-the-room rule: "in the room when it was published".
 * Messages a pending member sends are held in the room and published after
 * its enter, on the same Redis connection, so order is kept.
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
#include "ws.h"
#include "ws_frame.h"

enum sub_state { SUB_NONE, SUB_PENDING, SUB_ACTIVE, SUB_LEAVING };
enum mem_state { MEM_PENDING, MEM_ACTIVE, MEM_LEAVING };

#define MAX_HELD	256	/* messages held per room while its subscription starts */

struct member {
	struct member	*rnext, *rprev;	/* in the room */
	struct member	*snext;		/* in the session (owned by chat.c) */
	struct room	*room;
	struct session	*s;
	uint8_t		 state;
	uint8_t		 enter_sent;
	uint16_t	 nlen;
	char		 mid[64];
	char		 name[];
};

struct held {
	struct held	*next;
	const struct member *from;	/* the sender (see release_held) */
	size_t		 len;
	char		 data[];	/* a ready channel payload */
};

struct room {
	struct room	*hnext;
	uint32_t	 hash;
	uint8_t		 kind;
	uint8_t		 sub;
	uint32_t	 nmembers;
	long		 num;
	uint64_t	 empty_since;
	struct member	*members;
	struct held	*held, **held_tail;
	uint32_t	 nheld;
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
	char		 wid[96];
	uint64_t	 seq;
	struct jbuf	 jb;
	struct pending_out *outs;	/* leaves to tell Redis once it is back */
	int		 up;
} R;

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
	if (R.nrooms >= R.nbuckets)
		grow_table();
	r->hnext = R.tab[r->hash & (R.nbuckets - 1)];
	R.tab[r->hash & (R.nbuckets - 1)] = r;
	R.nrooms++;
	metrics_gauge(GAUGE_ROOMS, 1);
	return r;
}

static void
drop_held(struct room *r)
{
	struct held *h;

	while ((h = r->held) != NULL) {
		r->held = h->next;
		free(h);
	}
	r->held_tail = &r->held;
	r->nheld = 0;
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

static struct sbuf *
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
		if (m->state != MEM_ACTIVE && (m->state != MEM_LEAVING || leaver_mid == NULL ||
		    strcmp(m->mid, leaver_mid) != 0))
			continue;
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

/* Free a member room.c owns (one that was leaving). */
static void
member_free(struct member *m)
{
	if (m->room != NULL)
		unlink_member(m);
	if (m->s != NULL)
		ws_unref(m->s);
	free(m);
}

/* Parse "X NUM[ MID]\n" headers; returns the offset of the body or 0. */
static size_t
parse_header(const char *p, size_t n, long *num, const char **mid, size_t *midlen)
{
	const char *nl = memchr(p, '\n', n), *q;
	char *end;

	if (nl == NULL || n < 2)
		return 0;
	*num = -1;
	*mid = NULL;
	*midlen = 0;
	if (p[1] == ' ') {
		*num = strtol(p + 2, &end, 10);
		if (end > nl)
			return 0;
		q = end;
		if (*q == ' ') {
			*mid = q + 1;
			*midlen = (size_t)(nl - q - 1);
		}
	}
	return (size_t)(nl - p) + 1;
}

/* A payload arrived on a room's channel. */
static void
on_message(const char *key, size_t klen, const char *p, size_t n)
{
	struct room *r = room_find(key, klen);
	const char *mid, *body;
	size_t midlen, off, blen;
	long num;

	if (r == NULL || r->sub != SUB_ACTIVE || n < 2)
		return;
	if ((off = parse_header(p, n, &num, &mid, &midlen)) == 0)
		return;
	body = p + off;
	blen = n - off;
	switch (p[0]) {
	case 'm':
		fan_out(r, WS_OP_TEXT, body, blen, NULL);
		break;
	case 't':
	case 'b':
		fan_out(r, p[0] == 't' ? WS_OP_TEXT : WS_OP_BINARY, body, blen, NULL);
		break;
	case 'e':
		r->num = num;
		if (mid != NULL) {
			for (struct member *m = r->members; m != NULL; m = m->rnext) {
				if (m->state == MEM_PENDING && strlen(m->mid) == midlen &&
				    memcmp(m->mid, mid, midlen) == 0) {
					m->state = MEM_ACTIVE;
					break;
				}
			}
		}
		proto_enter(&R.jb, body, blen, r->key, r->klen, num);
		fan_out_json(r, NULL);
		break;
	case 'o': {
		char leaver[64];

		r->num = num;
		snprintf(leaver, sizeof(leaver), "%.*s", (int)(midlen < 63 ? midlen : 63), mid != NULL ? mid : "");
		proto_out(&R.jb, body, blen, r->key, r->klen, num);
		fan_out_json(r, leaver);
		/* A member that asked to leave is done once it saw its own out. */
		for (struct member *m = r->members, *next; m != NULL; m = next) {
			next = m->rnext;
			if (m->state == MEM_LEAVING && strcmp(m->mid, leaver) == 0) {
				member_free(m);
				break;
			}
		}
		break;
	}
	case 'n':
		r->num = num;
		break;
	}
}

/* Send what a newly confirmed subscription was waiting for. */
static void
flush_room(struct room *r)
{
	struct held *h;

	for (struct member *m = r->members; m != NULL; m = m->rnext) {
		if (r->kind == ROOM_BROADCAST) {
			m->state = MEM_ACTIVE;
			continue;
		}
		if (m->state == MEM_PENDING && !m->enter_sent) {
			if (bus_enter(r->key, r->klen, m->mid, m->name, m->nlen, NULL, NULL) == 0)
				m->enter_sent = 1;
		} else if (m->state == MEM_ACTIVE)
			(void)bus_resync(r->key, r->klen, m->mid, m->name, m->nlen);
	}
	while ((h = r->held) != NULL) {
		r->held = h->next;
		(void)bus_publish(r->key, r->klen, h->data, h->len, NULL);
		free(h);
	}
	r->held_tail = &r->held;
	r->nheld = 0;
}

static void
on_subscribed(const char *key, size_t klen)
{
	struct room *r = room_find(key, klen);

	if (r == NULL || r->sub != SUB_PENDING)
		return;
	r->sub = SUB_ACTIVE;
	flush_room(r);
}

static void
on_unsubscribed(const char *key, size_t klen)
{
	struct room *r = room_find(key, klen);

	if (r == NULL || r->sub != SUB_LEAVING)
		return;
	r->sub = SUB_NONE;
	if (r->nmembers == 0) {
		room_destroy(r);
		return;
	}
	/* Refilled while the unsubscribe was in flight. */
	if (bus_subscribe(r->key, r->klen) == 0)
		r->sub = SUB_PENDING;
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
	return bus_out(o->data, o->klen, o->mid, o->data + o->klen, o->nlen, o->replay, out_done, o);
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
	flush_pending_outs();
	for (size_t i = 0; i < R.nbuckets; i++) {
		for (struct room *r = R.tab[i], *next; r != NULL; r = next) {
			next = r->hnext;
			if (r->nmembers == 0) {
				room_destroy(r);
				continue;
			}
			if (bus_subscribe(r->key, r->klen) == 0)
				r->sub = SUB_PENDING;
		}
	}
}

static void
on_down(void)
{
	R.up = 0;
	for (size_t i = 0; i < R.nbuckets; i++) {
		for (struct room *r = R.tab[i]; r != NULL; r = r->hnext) {
			r->sub = SUB_NONE;
			for (struct member *m = r->members, *next; m != NULL; m = next) {
				next = m->rnext;
				/*
				 * A pending member's enter is resent (idempotent) when the
				 * link is back. An active one is re-registered by
				 * bus_resync and keeps enter_sent: clearing it would hold
				 * its messages in publish_or_hold forever.
				 */
				if (m->state == MEM_PENDING)
					m->enter_sent = 0;
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
		}
	}
}

/* Redis never took a message: its sender must not think it was delivered. */
static void
on_published(void *arg, int ok)
{
	static const char lost[] = "{\"event\":\"error\",\"code\":\"unavailable\","
	    "\"message\":\"message not delivered: room service unavailable; try again\"}";
	struct session *s = arg;

	if (!ok)
		ws_send_text(s, lost, sizeof(lost) - 1);
	ws_unref(s);
}

static const struct bus_handlers handlers = {
	on_message, on_subscribed, on_unsubscribed, on_up, on_down, on_published,
};

int
room_init(struct event_base *base, const struct config *cfg, const char *wid)
{
	memset(&R, 0, sizeof(R));
	R.nbuckets = 64;
	if ((R.tab = calloc(R.nbuckets, sizeof(*R.tab))) == NULL)
		return -1;
	snprintf(R.wid, sizeof(R.wid), "%s", wid);
	return bus_start(base, cfg, wid, &handlers);
}

void
room_shutdown(void)
{
	struct pending_out *o;

	bus_stop();
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

void
room_tick(uint64_t now)
{
	for (size_t i = 0; i < R.nbuckets; i++) {
		for (struct room *r = R.tab[i], *next; r != NULL; r = next) {
			next = r->hnext;
			if (r->nmembers > 0 || now - r->empty_since < 1000)
				continue;
			if (r->sub == SUB_NONE)
				room_destroy(r);
			else if (r->sub == SUB_ACTIVE && bus_unsubscribe(r->key, r->klen) == 0)
				r->sub = SUB_LEAVING;
		}
	}
}

struct member *
room_join(struct session *s, enum room_kind kind, const char *key, size_t klen,
    const char *name, size_t nlen, const char **err)
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
	if ((m = calloc(1, sizeof(*m) + nlen + 1)) == NULL) {
		if (r->nmembers == 0 && r->sub == SUB_NONE)
			room_destroy(r);
		*err = "no_memory";
		return NULL;
	}
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
		if (bus_subscribe(r->key, r->klen) == 0)
			r->sub = SUB_PENDING;
		break;
	case SUB_ACTIVE:
		if (kind == ROOM_BROADCAST)
			m->state = MEM_ACTIVE;
		else if (bus_enter(r->key, r->klen, m->mid, m->name, m->nlen, NULL, NULL) == 0)
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
 * broadcast room); otherwise drop them: others would get a message from
 * someone whose enter they never saw.
 */
static void
release_held(struct room *r, const struct member *m, int publish)
{
	struct held **pp = &r->held, *h;

	while ((h = *pp) != NULL) {
		if (h->from != m) {
			pp = &h->next;
			continue;
		}
		*pp = h->next;
		if (publish)
			(void)bus_publish(r->key, r->klen, h->data, h->len, NULL);
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
	registered = r->kind == ROOM_CHAT && (m->enter_sent || m->state == MEM_ACTIVE);
	release_held(r, m, registered || r->kind == ROOM_BROADCAST);
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
publish_or_hold(struct room *r, const struct member *m, const char *p, size_t n)
{
	struct held *h;

	if (!bus_ready())
		return -1;
	if (r->sub == SUB_ACTIVE && (r->kind == ROOM_BROADCAST || m->enter_sent)) {
		/* The sender hears if the link dies before Redis took the message. */
		ws_ref(m->s);
		if (bus_publish(r->key, r->klen, p, n, m->s) == 0)
			return 0;
		ws_unref(m->s);
		return -1;
	}
	if (r->nheld >= MAX_HELD || (h = malloc(sizeof(*h) + n)) == NULL)
		return -1;
	h->next = NULL;
	h->from = m;
	h->len = n;
	memcpy(h->data, p, n);
	*r->held_tail = h;
	r->held_tail = &h->next;
	r->nheld++;
	return 0;
}

int
room_say(struct member *m, const char *text, size_t tlen)
{
	struct room *r = m->room;
	char id[128], hdr[32];
	size_t hl, wl = strlen(R.wid);

	/* "WID.SEQ" and "m NUM\n", without printf: this runs for every message. */
	if (wl > sizeof(id) - 26)
		wl = sizeof(id) - 26;
	memcpy(id, R.wid, wl);
	id[wl] = '.';
	id[wl + 1 + jbuf_itoa(id + wl + 1, (long long)(++R.seq & (uint64_t)LLONG_MAX))] = '\0';
	memcpy(hdr, "m ", 2);
	hl = 2 + jbuf_itoa(hdr + 2, r->num);
	hdr[hl++] = '\n';
	/* Build "m NUM\n" + the client JSON in one buffer: subscribers forward the JSON as is. */
	proto_message(&R.jb, m->name, m->nlen, text, tlen, r->key, r->klen, r->num, id,
	    clock_wall_ms());
	jbuf_add(&R.jb, hdr, hl);
	if (R.jb.oom)
		return -1;
	/* Rotate the header to the front (memmove beats a second buffer). */
	memmove(R.jb.p + hl, R.jb.p, R.jb.len - hl);
	memcpy(R.jb.p, hdr, hl);
	return publish_or_hold(r, m, R.jb.p, R.jb.len);
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
	return publish_or_hold(r, m, R.jb.p, R.jb.len);
}

long
room_num(const struct member *m)
{
	return m->room != NULL && m->room->kind == ROOM_CHAT ? m->room->num : -1;
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
