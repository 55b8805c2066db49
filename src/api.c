/*
 * api.c: the HTTP API's calls, run against the rooms in Redis. front.c has
 * checked each call (rate, key, input) before it gets here; every call
 * answers exactly once through front_api_answer, holding a reference on
 * the session while Redis answers. What a call needs from its request is
 * copied at once: the parser's memory belongs to the next request.
 *
 * A disconnect goes to every worker of every host on one control channel;
 * each closes its matching sessions and answers on the same channel, and
 * the worker that asked sums the answers of as many workers as heard the
 * question (PUBLISH says how many), or what came within API_KICK_WAIT_MS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>

#include "api.h"
#include "apiproto.h"
#include "clock.h"
#include "config.h"
#include "front.h"
#include "loop.h"
#include "room.h"
#include "store.h"
#include "ws.h"

/* How long a disconnect waits for the workers that heard it to answer. */
#define API_KICK_WAIT_MS	3000

/* A disconnect this worker asked for, waiting for the workers' answers. */
struct kick {
	struct kick	*next;
	struct session	*s;
	uint64_t	 id;
	long		 workers;	/* that heard it; -1 until PUBLISH answers */
	long		 answered, closed;
	struct event	*timer;
	int		 publishing;	/* its PUBLISH has not answered yet */
	int		 done;		/* answered (the session is no longer held) */
};

static struct {
	struct loop	*loop;
	const struct config *cfg;
	char		 wid[API_MAX_WID + 1];
	struct api_worker me;		/* this worker's liveness record */
	uint64_t	 info_at;	/* ms (monotonic) of its last refresh */
	struct apiproto	*parser;	/* for the records of /api/info */
	struct jbuf	 out;
	uint64_t	 kick_seq;
	struct kick	*kicks;
} A;

static void api_call(struct session *, const struct api_req *);

static const struct front_api api_handler = { api_call };

static void
answer(struct session *s, int status)
{
	if (A.out.oom) {
		apiproto_error(&A.out, "unavailable", "out of memory");
		status = 503;
	}
	front_api_answer(s, status, A.out.p, A.out.len);
}

static void
fail(struct session *s, int status, const char *code, const char *message)
{
	apiproto_error(&A.out, code, message);
	answer(s, status);
}

static void
unavailable(struct session *s)
{
	fail(s, 503, "unavailable", "the room service (Redis) is unavailable; try again shortly");
}

/* ---- publish and broadcast ---- */

/* One room's post: its answer, kept until every room of the call has one. */
struct post {
	struct posts	*all;
	int		 done, ok;
	uint64_t	 offset;
	long		 num;
	char		 epoch[STORE_EPOCH_MAX + 1];
	char		 id[ROOM_ID_MAX];
	size_t		 rl;
	char		*room;
};

struct posts {
	struct session	*s;
	int		 broadcast;
	size_t		 n, pending;
	struct post	 p[];
};

static void
posts_answer(struct posts *ps)
{
	struct session *s = ps->s;

	if (!ps->broadcast) {
		if (ps->p[0].ok) {
			apiproto_published(&A.out, ps->p[0].id, ps->p[0].offset, ps->p[0].epoch, ps->p[0].num);
			answer(s, 200);
		} else
			unavailable(s);
	} else {
		apiproto_broadcast_begin(&A.out);
		for (size_t i = 0; i < ps->n; i++) {
			const struct post *p = &ps->p[i];

			apiproto_broadcast_item(&A.out, i == 0, p->room, p->rl, p->id, p->offset, p->epoch, p->num,
			    p->ok ? NULL : "unavailable", "the room service (Redis) is unavailable; try again shortly");
		}
		apiproto_broadcast_end(&A.out);
		answer(s, 200);
	}
	for (size_t i = 0; i < ps->n; i++)
		free(ps->p[i].room);
	ws_unref(s);
	free(ps);
}

static void
posted(void *arg, int ok, uint64_t offset, const char *epoch, long num)
{
	struct post *p = arg;
	struct posts *ps = p->all;

	p->done = 1;
	p->ok = ok;
	p->offset = offset;
	p->num = num;
	snprintf(p->epoch, sizeof(p->epoch), "%s", epoch);
	if (--ps->pending == 0)
		posts_answer(ps);
}

/* Post the message into each room, as name; one answer when every room has answered. */
static void
post(struct session *s, const struct api_req *req, int broadcast)
{
	size_t n = broadcast ? req->nrooms : 1;
	const char *name = req->name != NULL ? req->name : A.cfg->api_name;
	size_t nl = req->name != NULL ? req->name_len : strlen(A.cfg->api_name);
	struct posts *ps = calloc(1, sizeof(*ps) + n * sizeof(ps->p[0]));

	if (ps == NULL) {
		fail(s, 503, "unavailable", "out of memory");
		return;
	}
	ps->s = s;
	ps->broadcast = broadcast;
	ps->n = n;
	ps->pending = n + 1;	/* ours while posting: an answer cannot come before the last post is out */
	ws_ref(s);
	for (size_t i = 0; i < n; i++) {
		struct post *p = &ps->p[i];
		const char *room = broadcast ? req->rooms[i] : req->room;

		p->all = ps;
		p->rl = broadcast ? req->room_lens[i] : req->room_len;
		if ((p->room = malloc(p->rl + 1)) != NULL) {
			memcpy(p->room, room, p->rl);
			p->room[p->rl] = '\0';
		}
		if (p->room == NULL || room_post(room, p->rl, name, nl, req->message, req->message_len, p->id,
		    posted, p) == -1)
			ps->pending--;	/* not posted: answered as unavailable */
	}
	if (--ps->pending == 0)
		posts_answer(ps);
}

/* ---- disconnect ---- */

static void
kick_free(struct kick *k)
{
	struct kick **pp = &A.kicks;

	while (*pp != NULL && *pp != k)
		pp = &(*pp)->next;
	if (*pp == k)
		*pp = k->next;
	if (k->timer != NULL)
		event_free(k->timer);
	if (!k->done)
		ws_unref(k->s);
	free(k);
}

/*
 * Answer a disconnect with what the workers said (503 if nobody could be
 * asked). The kick itself goes once its PUBLISH has answered too: that
 * reply comes exactly once, and finds it.
 */
static void
kick_answer(struct kick *k)
{
	if (!k->done) {
		if (k->workers < 0)
			unavailable(k->s);
		else {
			apiproto_disconnected(&A.out, k->closed, k->workers, k->answered);
			answer(k->s, 200);
		}
		ws_unref(k->s);
		k->done = 1;
	}
	if (!k->publishing)
		kick_free(k);
}

static void
kick_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct kick *k = arg;

	/* Some workers heard it and said nothing (one died meanwhile): answer with what came. */
	if (k->workers < 0)
		k->workers = k->answered;
	kick_answer(k);
}

static void
kick_published(void *arg, long workers)
{
	struct kick *k = arg;

	k->publishing = 0;
	if (workers >= 0 && k->workers < 0)
		k->workers = workers;
	if (k->done || workers < 0 || k->answered >= k->workers)
		kick_answer(k);
}

static void
disconnect(struct session *s, const struct api_req *req)
{
	struct kick *k = calloc(1, sizeof(*k));
	struct timeval tv = { API_KICK_WAIT_MS / 1000, (API_KICK_WAIT_MS % 1000) * 1000 };

	if (k == NULL || (k->timer = evtimer_new(A.loop->base, kick_timeout, k)) == NULL ||
	    evtimer_add(k->timer, &tv) == -1) {
		if (k != NULL && k->timer != NULL)
			event_free(k->timer);
		free(k);
		fail(s, 503, "unavailable", "out of memory");
		return;
	}
	k->s = s;
	k->id = ++A.kick_seq;
	k->workers = -1;
	ws_ref(s);
	k->next = A.kicks;
	A.kicks = k;
	apiproto_kick(&A.out, A.wid, k->id, req);
	k->publishing = 1;
	if (A.out.oom || store_control_publish(A.out.p, A.out.len, kick_published, k) == -1) {
		k->publishing = 0;
		kick_answer(k);
	}
}

/* A control message: a disconnect to carry out here, or an answer to one of ours. */
static void
on_control(const char *p, size_t n)
{
	struct api_control c;
	struct kick *k;
	char reason[API_MAX_REASON + 1];
	int closed;

	if (apiproto_control_parse(p, n, &c) == -1) {
		log_warn("a message on the control channel that is not one: ignored");
		return;
	}
	if (c.kind == 'a') {
		if (strcmp(c.origin, A.wid) != 0)
			return;
		for (k = A.kicks; k != NULL && k->id != c.id; k = k->next)
			;
		if (k == NULL || k->done)
			return;		/* answered already (it timed out) */
		k->answered++;
		k->closed += c.closed;
		if (k->workers >= 0 && k->answered >= k->workers)
			kick_answer(k);
		return;
	}
	if (c.reason_len > 0)
		snprintf(reason, sizeof(reason), "%.*s", (int)c.reason_len, c.reason);
	else
		snprintf(reason, sizeof(reason), "disconnected by the application");
	closed = front_disconnect(A.loop, c.user, c.user_len, c.by_conn ? c.uuid : NULL, c.code, reason);
	apiproto_kicked(&A.out, c.origin, c.id, closed);
	if (A.out.oom || store_control_publish(A.out.p, A.out.len, NULL, NULL) == -1)
		log_warn("cannot answer a disconnect from %s (%d sessions closed)", c.origin, closed);
}

/* ---- rooms, room, history ---- */

/* A read for a session, with the room it is about. */
struct read_op {
	struct session	*s;
	uint64_t	 offset;
	char		 epoch[STORE_EPOCH_MAX + 1];
	size_t		 rl;
	char		 room[];
};

static struct read_op *
read_op(struct session *s, const char *room, size_t rl)
{
	struct read_op *op = malloc(sizeof(*op) + rl + 1);

	if (op == NULL)
		return NULL;
	op->s = s;
	op->rl = rl;
	memcpy(op->room, room, rl);
	op->room[rl] = '\0';
	ws_ref(s);
	return op;
}

static void
read_done(struct read_op *op)
{
	ws_unref(op->s);
	free(op);
}

static void
rooms_read(void *arg, int ok, uint64_t next, const char *const *rooms, const size_t *lens, const long *nums,
    size_t n)
{
	struct read_op *op = arg;

	if (!ok)
		unavailable(op->s);
	else {
		apiproto_rooms_begin(&A.out);
		for (size_t i = 0; i < n; i++)
			apiproto_rooms_item(&A.out, i == 0, rooms[i], lens[i], nums[i]);
		apiproto_rooms_end(&A.out, next);
		answer(op->s, 200);
	}
	read_done(op);
}

static void
room_who_read(void *arg, const char *const *names, const size_t *lens, size_t n, long total)
{
	struct read_op *op = arg;

	if (total < 0)
		unavailable(op->s);
	else if (total == 0 && op->epoch[0] == '\0')
		fail(op->s, 404, "unknown_room", "the room has no members and no history");
	else {
		apiproto_room(&A.out, op->room, op->rl, names, lens, n, total, op->offset, op->epoch);
		answer(op->s, 200);
	}
	read_done(op);
}

static void
room_position_read(void *arg, int ok, uint64_t offset, const char *epoch)
{
	struct read_op *op = arg;

	if (!ok) {
		unavailable(op->s);
		read_done(op);
		return;
	}
	op->offset = offset;
	snprintf(op->epoch, sizeof(op->epoch), "%s", epoch);
	if (store_who(op->room, op->rl, (unsigned)A.cfg->who_limit, room_who_read, op) == -1) {
		unavailable(op->s);
		read_done(op);
	}
}

static void
history_read(void *arg, const struct store_range *got)
{
	struct read_op *op = arg;

	if (!got->ok)
		unavailable(op->s);
	else if (got->epoch[0] == '\0')
		fail(op->s, 404, "unknown_room", "the room has no history");
	else {
		apiproto_history_begin(&A.out, op->room, op->rl);
		for (size_t i = 0; i < got->n; i++)
			apiproto_history_message(&A.out, i == 0, got->json[i], got->len[i]);
		apiproto_history_end(&A.out, got->offset, got->epoch);
		answer(op->s, 200);
	}
	read_done(op);
}

/* ---- info ---- */

static void
infos_read(void *arg, int ok, const char *const *recs, const size_t *lens, size_t n)
{
	struct read_op *op = arg;
	struct api_worker *w = NULL;
	size_t nw = 0, hosts = 0;
	long long now = (long long)clock_wall_ms();

	if (!ok || (n > 0 && (w = calloc(n, sizeof(*w))) == NULL)) {
		unavailable(op->s);
		read_done(op);
		return;
	}
	/* Workers without a record (gone, or just started) are not counted. */
	for (size_t i = 0; i < n; i++)
		if (recs[i] != NULL && apiproto_worker_parse(A.parser, recs[i], lens[i], &w[nw]) == 0)
			nw++;
	apiproto_info_begin(&A.out);
	for (size_t i = 0; i < nw; i++) {
		const struct api_worker *oldest = &w[i];
		long long conns = 0, rooms = 0;
		long workers = 0;
		int seen = 0;

		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(w[j].instance, w[i].instance) == 0;
		if (seen)
			continue;	/* its host was written with the first of its workers */
		for (size_t j = i; j < nw; j++) {
			if (strcmp(w[j].instance, w[i].instance) != 0)
				continue;
			workers++;
			conns += w[j].connections;
			rooms += w[j].rooms;
			if (w[j].started < oldest->started)
				oldest = &w[j];
		}
		apiproto_info_host(&A.out, hosts++ == 0, oldest, workers, conns, rooms, now);
	}
	apiproto_info_end(&A.out, (long)nw);
	answer(op->s, 200);
	free(w);
	read_done(op);
}

/* ---- the calls ---- */

static void
api_call(struct session *s, const struct api_req *req)
{
	struct read_op *op = NULL;
	int rc = 0;

	switch (req->call) {
	case API_PUBLISH:
		post(s, req, 0);
		return;
	case API_BROADCAST:
		post(s, req, 1);
		return;
	case API_DISCONNECT:
		disconnect(s, req);
		return;
	default:
		break;
	}
	if ((op = read_op(s, req->room != NULL ? req->room : "", req->room != NULL ? req->room_len : 0)) == NULL) {
		fail(s, 503, "unavailable", "out of memory");
		return;
	}
	switch (req->call) {
	case API_ROOMS:
		rc = store_rooms(req->cursor, req->limit, rooms_read, op);
		break;
	case API_ROOM:
		rc = store_position(op->room, op->rl, room_position_read, op);
		break;
	case API_HISTORY:
		rc = store_read_before(op->room, op->rl, req->before, req->limit, history_read, op);
		break;
	case API_INFO:
		rc = store_infos(infos_read, op);
		break;
	default:
		rc = -1;
		break;
	}
	if (rc == -1) {
		unavailable(s);
		read_done(op);
	}
}

/* ---- the worker's record, start and stop ---- */

/* This worker's liveness record, refreshed a few times per presence_ttl like its liveness key. */
static void
put_record(void)
{
	A.me.connections = A.loop->conns.nconns;
	A.me.rooms = (long long)room_count();
	apiproto_worker_record(&A.out, &A.me);
	if (!A.out.oom)
		(void)store_info_put(A.out.p, A.out.len);
}

void
api_tick(uint64_t now)
{
	if (!room_service_up() || (A.info_at != 0 && now - A.info_at < (uint64_t)A.cfg->presence_ttl / 3))
		return;
	A.info_at = now;
	put_record();
}

int
api_init(struct loop *l, const char *instance, const char *wid)
{
	memset(&A, 0, sizeof(A));
	A.loop = l;
	A.cfg = l->cfg;
	snprintf(A.wid, sizeof(A.wid), "%s", wid);
	snprintf(A.me.instance, sizeof(A.me.instance), "%s", instance);
	snprintf(A.me.version, sizeof(A.me.version), "%s", PACKAGE_VERSION);
	A.me.pid = (long long)getpid();
	A.me.started = (long long)clock_wall_ms();
	if ((A.parser = apiproto_new()) == NULL)
		return -1;
	l->api = &api_handler;
	room_set_control(on_control);
	return 0;
}

void
api_shutdown(void)
{
	while (A.kicks != NULL)
		kick_free(A.kicks);
	apiproto_free(A.parser);
	A.parser = NULL;
	jbuf_free(&A.out);
}
