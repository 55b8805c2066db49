/*
 * chat.c: the tutorial protocol, made safe. Every client event is checked
 * (JSON, types, bounds, membership) and bad input gets an "error" event while
 * the connection stays usable. The sender's name is the one it entered with;
 * a "name" field from the client is ignored. Every event to a client in one
 * room carries that room's num, because the tutorial client copies num from
 * whatever it receives.
 */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "bus.h"
#include "chat.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "proto.h"
#include "room.h"
#include "store.h"
#include "ws.h"
#include "ws_frame.h"

#define WS_CLOSE_HEARTBEAT	4000
#define CHAT_WHO_MAX		1000000	/* names in one who answer */

struct chat_conn {
	struct member	*members;	/* rooms this session is in */
	uint16_t	 nrooms;
	uint8_t		 hb_missed;
	uint8_t		 hb_waiting;	/* a ping is unanswered */
	uint8_t		 who_tokens;	/* who requests it may make now */
	uint64_t	 hb_last;
	uint64_t	 who_refill;	/* ms of the last who token */
	struct store_user *user;	/* counted for its token's user */
	char		*bcast_key;	/* broadcast route: the room it joins once admitted */
	size_t		 bcast_klen;
};

/* An enter waiting for an answer from Redis (a guest's name must be free). */
struct enter_req {
	struct session	*s;
	struct room_catchup cu;
	int		 catchup;
	size_t		 rl, nl;
	char		 data[];	/* room, then name */
};

#define WHO_BURST	3	/* who requests a session may make at once, one a second after */

static struct proto *parser;
static struct jbuf out;


static struct chat_conn *
state(struct session *s, int create)
{
	struct chat_conn *c = ws_data(s);

	if (c == NULL && create && (c = calloc(1, sizeof(*c))) != NULL) {
		c->hb_last = clock_ms();
		ws_set_data(s, c);
	}
	return c;
}

static long
single_num(const struct chat_conn *c)
{
	return c != NULL && c->nrooms == 1 ? room_num(c->members) : -1;
}

static void
send_error(struct session *s, const char *code, const char *why)
{
	struct chat_conn *c = state(s, 0);

	proto_error(&out, code, why);
	if (c != NULL && c->nrooms == 1 && out.len > 0) {
		/* Splice num in before the closing brace. */
		char tail[40];
		int n = snprintf(tail, sizeof(tail), ",\"num\":%ld}", single_num(c));

		out.len--;
		jbuf_add(&out, tail, (size_t)n);
	}
	if (!out.oom)
		ws_send_text(s, out.p, out.len);
}

/* Forget the memberships the room layer dropped (an enter Redis never finished). */
static void
purge_gone(struct chat_conn *c)
{
	struct member **pp = c != NULL ? &c->members : NULL;

	while (pp != NULL && *pp != NULL) {
		struct member *m = *pp;

		if (room_member_gone(m)) {
			*pp = room_next_of_session(m);
			c->nrooms--;
			room_leave(m, 0);
		} else
			pp = room_next_ref(m);
	}
}

/* The membership for a request's roomid (or the only one). */
static struct member *
find_member(struct chat_conn *c, const char *key, size_t klen)
{
	for (struct member *m = c != NULL ? c->members : NULL; m != NULL; m = room_next_of_session(m)) {
		size_t l;
		const char *k = room_key_of(m, &l);

		if (l == klen && memcmp(k, key, klen) == 0)
			return m;
	}
	return NULL;
}

static void
unlink_from_session(struct chat_conn *c, struct member *m)
{
	struct member **pp = &c->members;

	while (*pp != NULL && *pp != m)
		pp = room_next_ref(*pp);
	if (*pp == m) {
		*pp = room_next_of_session(m);
		c->nrooms--;
	}
}

/* Join the room (the checks are done): the member is the session's from now on. */
static void
join(struct session *s, const char *room, size_t rl, const char *name, size_t nlen,
    const struct room_catchup *cu)
{
	struct chat_conn *c = state(s, 1);
	struct member *m;
	const char *err = NULL;

	if (c == NULL) {
		send_error(s, "no_memory", "the server is out of memory");
		return;
	}
	if (find_member(c, room, rl) != NULL) {
		send_error(s, "already_in_room", "you are in this room already");
		return;
	}
	if ((m = room_join(s, ROOM_CHAT, room, rl, name, nlen, cu, &err)) == NULL) {
		send_error(s, err, strcmp(err, "unavailable") == 0 ?
		    "room service unavailable; try again shortly" : "cannot enter the room");
		return;
	}
	if (c->nrooms == 0) {
		/*
		 * Pings go to members only: a ping left unanswered before the
		 * session left its last room must not count against it now.
		 */
		c->hb_missed = 0;
		c->hb_waiting = 0;
		c->hb_last = clock_ms();
	}
	room_set_next_of_session(m, c->members);
	c->members = m;
	c->nrooms++;
}

/* Whether a name a guest asked for belongs to nobody with a token online; then it enters. */
static void
guest_checked(void *arg, long online)
{
	struct enter_req *e = arg;
	struct session *s = e->s;

	if (ws_is_open(s)) {
		if (online < 0)
			send_error(s, "unavailable", "room service unavailable; try again shortly");
		else if (online > 0)
			send_error(s, "name_taken", "a user with a token is online under this name: pick another");
		else
			join(s, e->data, e->rl, e->data + e->rl, e->nl, e->catchup ? &e->cu : NULL);
		ws_hold(s, 0);
	}
	ws_unref(s);
	free(e);
}

static void
do_enter(struct session *s, const struct chat_req *r, const char *room, size_t rl)
{
	const struct config *cf = ws_config(s);
	struct chat_conn *c = state(s, 1);
	const struct auth_identity *id;
	struct room_catchup cu;
	struct enter_req *e;
	const char *name = r->message;
	size_t nlen = r->message_len;
	char gname[1100];

	if (c == NULL) {
		send_error(s, "no_memory", "the server is out of memory");
		return;
	}
	if (find_member(c, room, rl) != NULL) {
		send_error(s, "already_in_room", "you are in this room already");
		return;
	}
	if (c->nrooms >= cf->max_rooms_per_connection) {
		send_error(s, "too_many_rooms", "leave a room before entering another");
		return;
	}
	memset(&cu, 0, sizeof(cu));
	if (r->since || r->history > 0) {
		cu.since = r->since;
		cu.offset = r->since_offset;
		snprintf(cu.epoch, sizeof(cu.epoch), "%.*s", (int)r->since_epoch_len,
		    r->since_epoch != NULL ? r->since_epoch : "");
		cu.history = r->history;
	}
	/* With a token, the name is the token's and its rooms claim says where it may go. */
	if ((id = ws_identity(s)) != NULL) {
		name = id->sub;
		nlen = strlen(id->sub);
		if (!proto_valid_label(name, nlen, (size_t)cf->max_name_length)) {
			send_error(s, "bad_field", "the token's name (sub) is empty, too long or holds control characters");
			return;
		}
		if (!auth_room_allowed(id, room, rl)) {
			send_error(s, "forbidden", "your token does not allow this room");
			return;
		}
		join(s, room, rl, name, nlen, r->since || r->history > 0 ? &cu : NULL);
		return;
	}
	if (cf->auth != CFG_AUTH_OPTIONAL) {
		join(s, room, rl, name, nlen, r->since || r->history > 0 ? &cu : NULL);
		return;
	}
	/*
	 * A guest beside users with tokens: its name is marked as unverified
	 * in every event (PROTO_GUEST), and may not be a name whose owner is
	 * online with a token. Its messages wait while Redis says.
	 */
	gname[0] = PROTO_GUEST;
	memcpy(gname + 1, name, nlen);
	if ((e = malloc(sizeof(*e) + rl + nlen + 1)) == NULL) {
		send_error(s, "no_memory", "the server is out of memory");
		return;
	}
	e->s = s;
	e->cu = cu;
	e->catchup = r->since || r->history > 0;
	e->rl = rl;
	e->nl = nlen + 1;
	memcpy(e->data, room, rl);
	memcpy(e->data + rl, gname, nlen + 1);
	ws_ref(s);
	if (store_user_online(name, nlen, guest_checked, e) == -1) {
		ws_unref(s);
		free(e);
		send_error(s, "unavailable", "room service unavailable; try again shortly");
		return;
	}
	ws_hold(s, 1);
}

/*
 * A new token for a session that has one: the same checks as at the
 * handshake (signature, exp, nbf), the same user (sub), and it must allow
 * every room the session is in. The session then lives until the new exp.
 */
static void
do_refresh(struct session *s, const char *tok, size_t tl)
{
	const struct config *cf = ws_config(s);
	const struct auth_identity *cur = ws_identity(s);
	struct auth_identity id, *nid;
	struct chat_conn *c = state(s, 0);
	const char *why = NULL;
	size_t kl;

	if (cur == NULL) {
		send_error(s, "bad_token", "this session has no token to refresh");
		return;
	}
	if (auth_verify(tok, tl, cf->auth_key, cf->auth_keylen, (long long)(clock_wall_ms() / 1000), 5,
	    &id, &why) == -1) {
		send_error(s, "bad_token", why);
		return;
	}
	if (strcmp(id.sub, cur->sub) != 0) {
		auth_identity_free(&id);
		send_error(s, "bad_token", "the new token is for another user (sub)");
		return;
	}
	for (struct member *m = c != NULL ? c->members : NULL; m != NULL; m = room_next_of_session(m)) {
		const char *k = room_key_of(m, &kl);

		if (!auth_room_allowed(&id, k, kl)) {
			auth_identity_free(&id);
			send_error(s, "forbidden", "the new token does not allow a room you are in");
			return;
		}
	}
	if ((nid = malloc(sizeof(*nid))) == NULL) {
		auth_identity_free(&id);
		send_error(s, "no_memory", "the server is out of memory");
		return;
	}
	*nid = id;
	ws_set_identity(s, nid);
	proto_refreshed(&out, nid->exp, single_num(c));
	if (!out.oom)
		ws_send_text(s, out.p, out.len);
}

/* A page of a room's history, as the client asked it (or why not). */
static void
history_done(struct session *s, const char *room, size_t rl, const struct store_range *got)
{
	if (!ws_is_open(s))
		return;
	if (got == NULL) {
		send_error(s, "unavailable", "room service unavailable; try again shortly");
		return;
	}
	proto_history_begin(&out, room, rl);
	for (size_t i = 0; i < got->n; i++)
		proto_history_message(&out, got->json[i], got->len[i], i == 0);
	proto_history_end(&out, got->offset, got->epoch, single_num(ws_data(s)));
	if (!out.oom)
		ws_send_text(s, out.p, out.len);
}

/* who has its own limit: a room's member list is the largest answer a small request gets. */
static int
who_allowed(struct chat_conn *c)
{
	uint64_t now = clock_ms(), t = c->who_tokens + (now - c->who_refill) / 1000;

	if (c->who_refill == 0)
		t = WHO_BURST;
	if (t > WHO_BURST)
		t = WHO_BURST;
	if (t != c->who_tokens || c->who_refill == 0)
		c->who_refill = now;
	c->who_tokens = (uint8_t)t;
	if (c->who_tokens == 0)
		return 0;
	c->who_tokens--;
	return 1;
}

static void
handle_chat(struct session *s, const uint8_t *data, size_t len)
{
	struct proto_limits lim = { (size_t)ws_config(s)->max_name_length, (size_t)ws_config(s)->max_roomid_length,
	    AUTH_MAX_TOKEN, (unsigned)ws_config(s)->history_size };
	struct chat_conn *c = state(s, 0);
	struct chat_req r;
	struct member *m = NULL;
	const char *code, *room;
	char why[160];
	size_t rl;

	purge_gone(c);
	if (parser == NULL && (parser = proto_new()) == NULL) {
		send_error(s, "no_memory", "the server is out of memory");
		return;
	}
	if (proto_parse(parser, (const char *)data, len, &lim, &r, &code, why, sizeof(why)) == -1) {
		send_error(s, code, why);
		return;
	}
	room = r.roomid;
	rl = r.roomid_len;
	if (r.ev == CHAT_ENTER) {
		if (room == NULL) {
			room = ws_config(s)->default_room;
			rl = strlen(room);
		}
		do_enter(s, &r, room, rl);
		return;
	}
	if (r.ev == CHAT_REFRESH) {
		do_refresh(s, r.token, r.token_len);
		return;
	}
	if (r.ev == CHAT_HEARTBEAT) {
		if (c != NULL) {
			c->hb_missed = 0;
			c->hb_waiting = 0;
		}
		if (r.message != NULL && r.message_len == 4 && memcmp(r.message, "ping", 4) == 0) {
			proto_heartbeat(&out, 1, single_num(c));
			if (!out.oom)
				ws_send_text(s, out.p, out.len);
		}
		return;
	}
	/* message, out, who act on a room the session is in. */
	if (room != NULL)
		m = find_member(c, room, rl);
	else if (c != NULL && c->nrooms == 1)
		m = c->members;
	else if (c != NULL && c->nrooms > 1) {
		send_error(s, "roomid_required", "you are in several rooms: say which with \"roomid\"");
		return;
	}
	if (m == NULL) {
		send_error(s, "not_in_room", "enter the room first");
		return;
	}
	switch (r.ev) {
	case CHAT_MESSAGE:
		if (room_say(m, r.message, r.message_len) == -1)
			send_error(s, "unavailable", "message not delivered: room service unavailable; try again");
		break;
	case CHAT_OUT:
		unlink_from_session(c, m);
		room_leave(m, 1);
		break;
	case CHAT_WHO:
		if (!who_allowed(c))
			send_error(s, "rate_limited", "who at most once a second: ask less often");
		else if (room_who(m) == -1)
			send_error(s, "unavailable", "room service unavailable; try again shortly");
		break;
	case CHAT_HISTORY:
		if (room_history(m, r.before, r.history, history_done) == -1)
			send_error(s, "unavailable", "room service unavailable; try again shortly");
		break;
	default:
		break;
	}
}


/* The broadcast URL names its room: under auth_failure http a token that does not allow it gets 403. */
static int
broadcast_admit(struct session *s, const char **why)
{
	const struct auth_identity *id = ws_identity(s);
	const char *v;
	char room[1100];
	size_t vl;
	int rl;

	if (id == NULL)
		return 0;
	if ((v = ws_query_param(s, "room", &vl)) == NULL)
		rl = snprintf(room, sizeof(room), "%s", ws_config(s)->default_room);
	else if ((rl = http_pct_decode(v, vl, room, sizeof(room), 1)) < 0)
		return 0;	/* a bad name: broadcast_open says bad_field */
	if (auth_room_allowed(id, room, (size_t)rl))
		return 0;
	*why = "your token does not allow this room";
	return 403;
}

/* The broadcast route's room: joined now, or once the user is admitted. */
static void
broadcast_join(struct session *s)
{
	struct chat_conn *c = state(s, 0);
	struct member *m;
	const char *err = NULL;

	if ((m = room_join(s, ROOM_BROADCAST, c->bcast_key, c->bcast_klen, "", 0, NULL, &err)) == NULL) {
		send_error(s, err, "room service unavailable; try again shortly");
		ws_close(s, 1013, "try again later");
		return;
	}
	c->members = m;
	c->nrooms = 1;
}

/*
 * A session with a token counts for its user (sub) over every host: under
 * max_sessions_per_user one over the limit is closed, and under auth
 * optional the count is what keeps guests from taking the user's name. The
 * session reads nothing until Redis has counted it. 0 to go on now, 1 if
 * admission is under way, -1 if the session was closed.
 */
static void user_admitted(void *, long);

static int
admit_user(struct session *s)
{
	const struct config *cf = ws_config(s);
	const struct auth_identity *id = ws_identity(s);
	struct chat_conn *c;

	if (id == NULL || (cf->max_sessions_per_user == 0 && cf->auth != CFG_AUTH_OPTIONAL))
		return 0;
	if ((c = state(s, 1)) == NULL) {
		ws_close(s, WS_CLOSE_INTERNAL, "out of memory");
		return -1;
	}
	ws_ref(s);
	if ((c->user = store_user_open(id->sub, strlen(id->sub), cf->max_sessions_per_user, user_admitted,
	    s)) == NULL) {
		ws_unref(s);
		send_error(s, "unavailable", "room service unavailable; try again shortly");
		ws_close(s, 1013, "try again later");
		return -1;
	}
	ws_hold(s, 1);
	return 1;
}

static void
user_admitted(void *arg, long n)
{
	struct session *s = arg;
	struct chat_conn *c = ws_data(s);

	if (ws_is_open(s) && c != NULL) {
		if (n >= 0) {
			ws_hold(s, 0);
			if (c->bcast_key != NULL)
				broadcast_join(s);
		} else {
			if (n == -2) {
				send_error(s, "too_many_sessions", "your user has max_sessions_per_user sessions open already");
				ws_close(s, WS_CLOSE_POLICY, "too many sessions for this user");
			} else {
				send_error(s, "unavailable", "room service unavailable; try again shortly");
				ws_close(s, 1013, "try again later");
			}
			store_user_close(c->user);	/* it was not counted, or may not have been */
			c->user = NULL;
		}
	}
	ws_unref(s);
}

static void
chat_open(struct session *s)
{
	(void)admit_user(s);
}

/* The broadcast route joins the room named in ?room= right away (once admitted). */
static void
broadcast_open(struct session *s)
{
	struct chat_conn *c;
	const char *v;
	char room[1100], key[1400];
	size_t vl, kl;
	int rl;

	if ((v = ws_query_param(s, "room", &vl)) != NULL) {
		rl = http_pct_decode(v, vl, room, sizeof(room), 1);
		if (rl < 0 || !proto_valid_label(room, (size_t)rl, (size_t)ws_config(s)->max_roomid_length)) {
			send_error(s, "bad_field", "?room= must be 1 to max_roomid_length bytes without control characters");
			ws_close(s, WS_CLOSE_POLICY, "bad room");
			return;
		}
	} else
		rl = snprintf(room, sizeof(room), "%s", ws_config(s)->default_room);
	if (ws_identity(s) != NULL && !auth_room_allowed(ws_identity(s), room, (size_t)rl)) {
		send_error(s, "forbidden", "your token does not allow this room");
		ws_close(s, WS_CLOSE_POLICY, "room not allowed");
		return;
	}
	if ((kl = room_broadcast_key(key, sizeof(key), ws_route(s)->path, room, (size_t)rl)) == 0 ||
	    (c = state(s, 1)) == NULL || (c->bcast_key = malloc(kl)) == NULL) {
		ws_close(s, WS_CLOSE_INTERNAL, "cannot join");
		return;
	}
	memcpy(c->bcast_key, key, kl);
	c->bcast_klen = kl;
	if (admit_user(s) == 0)
		broadcast_join(s);
}

/* Relay a message verbatim to the broadcast room. */
static void
broadcast_message(struct session *s, int opcode, struct sbuf *b)
{
	struct chat_conn *c = state(s, 0);

	if (c == NULL || c->members == NULL)
		return;
	if (room_relay(c->members, opcode, sbuf_ptr(b), b->len) == -1)
		send_error(s, "unavailable", "message not delivered: room service unavailable; try again");
}

static void
chat_message(struct session *s, int opcode, struct sbuf *b)
{
	if (opcode != WS_OP_TEXT) {
		send_error(s, "binary_not_supported", "the chat protocol speaks JSON text frames");
		return;
	}
	handle_chat(s, sbuf_ptr(b), b->len);
}

/* The JSON heartbeat to a member: closed after heartbeat_misses unanswered. */
static void
chat_tick(struct session *s, uint64_t now)
{
	struct chat_conn *c = state(s, 0);
	const struct config *cf = ws_config(s);

	purge_gone(c);
	if (c == NULL || c->nrooms == 0 || cf->heartbeat_interval == 0 ||
	    now - c->hb_last < (uint64_t)cf->heartbeat_interval)
		return;
	c->hb_last = now;
	if (c->hb_waiting && ++c->hb_missed >= cf->heartbeat_misses) {
		ws_log(s, LOG_LVL_INFO, "missed %d heartbeats: closing", c->hb_missed);
		ws_close(s, WS_CLOSE_HEARTBEAT, "heartbeat timeout: no pong to the server's pings");
		return;
	}
	c->hb_waiting = 1;
	/* num only for a member of one room: several rooms have several counts. */
	proto_heartbeat(&out, 0, single_num(c));
	if (!out.oom)
		ws_send_text(s, out.p, out.len);
}

/* Leave every room now (graceful stop: others hear "out" before we close). */
static void
chat_leave_all(struct session *s)
{
	struct chat_conn *c = state(s, 0);
	struct member *m;

	while (c != NULL && (m = c->members) != NULL) {
		c->members = room_next_of_session(m);
		c->nrooms--;
		room_leave(m, 0);
	}
}

/* The session is gone: leave rooms, stop counting it for its user, free the state. */
static void
chat_free(struct session *s)
{
	struct chat_conn *c = ws_data(s);

	chat_leave_all(s);
	if (c->user != NULL)
		store_user_close(c->user);
	free(c->bcast_key);
	free(c);
	ws_set_data(s, NULL);
}

/* The session's rooms, comma-separated and escaped for the access line. */
static void
chat_rooms(struct session *s, char *buf, size_t len)
{
	struct chat_conn *c = ws_data(s);
	size_t o = 0;

	buf[0] = '\0';
	for (struct member *m = c != NULL ? c->members : NULL; m != NULL && o + 8 < len;
	    m = room_next_of_session(m)) {
		size_t kl;
		const char *k = room_key_of(m, &kl), *sep = memrchr(k, '\x01', kl);

		if (sep != NULL) {	/* a broadcast room: show the room, not the internal key */
			kl -= (size_t)(sep + 1 - k);
			k = sep + 1;
		}
		if (o > 0)
			buf[o++] = ',';
		log_escape(buf + o, len - o, k, kl);
		o += strlen(buf + o);
	}
}

/* Whether the session is in a room under this name (a guest's without its marker). */
static int
chat_named(struct session *s, const char *name, size_t len)
{
	struct chat_conn *c = ws_data(s);

	for (struct member *m = c != NULL ? c->members : NULL; m != NULL; m = room_next_of_session(m)) {
		size_t nl;
		const char *n = room_member_name(m, &nl);

		if (nl > 0 && n[0] == PROTO_GUEST) {
			n++;
			nl--;
		}
		if (nl == len && memcmp(n, name, len) == 0)
			return 1;
	}
	return 0;
}

/* Refusals said in the chat protocol: noAuth (the tutorial's), rate_limited. */
static void
chat_refuse(struct session *s, enum ws_refusal why)
{
	if (why == WS_REFUSED_AUTH)
		ws_send_text(s, PROTO_NOAUTH, sizeof(PROTO_NOAUTH) - 1);
	else
		send_error(s, "rate_limited", "too many messages or bytes a second: slow down");
}

const struct route_ops chat_route = {
	.open = chat_open,
	.message = chat_message,
	.tick = chat_tick,
	.shutdown = chat_leave_all,
	.free = chat_free,
	.describe = chat_rooms,
	.refuse = chat_refuse,
	.named = chat_named,
	.rate_mode = WS_RATE_REFUSE,
};

const struct route_ops broadcast_route = {
	.admit = broadcast_admit,
	.open = broadcast_open,
	.message = broadcast_message,
	.shutdown = chat_leave_all,
	.free = chat_free,
	.describe = chat_rooms,
	.refuse = chat_refuse,
	.rate_mode = WS_RATE_REFUSE,
};
