/*
 * bus.c: Redis for the workers.
 *
 * Keys under the configured prefix P:
 *   P r:ROOM        hash member-id -> name    (num = HLEN, who = HVALS)
 *   P w:WID         hash member-id -> ROOM "\n" NAME, what worker WID holds
 *   P alive:WID     expires after presence_ttl unless the worker refreshes it
 *   P workers       set of every WID that may hold members
 *   P gone:WID      tombstone (a day): WID's members were removed and announced out
 *   P c:ROOM        the room's pub/sub channel
 *   P k:WID         worker WID's canary channel (readiness: a round trip through Redis)
 * Channel payloads start with a one-line header the subscribers read without
 * parsing JSON: "m NUM\n<json>" a chat message (the final client JSON),
 * "e NUM MID\nNAME" enter, "o NUM MID\nNAME" out, "n NUM\n" a count refresh,
 * "t\n<bytes>" / "b\n<bytes>" broadcast-route text / binary.
 *
 * Enter and out run as Lua scripts so that the change, the new count and its
 * publication are one atomic step: every subscriber sees counts in order.
 * Hiredis contract: a reply lives only inside its callback; every command
 * callback runs exactly once (NULL reply on failure), so its arg is freed there.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/evp.h>

#include "bus.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "jbuf.h"

#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	2000

/* Shared Lua: remove all of a worker's members and announce each departure. */
#define LUA_CLEANUP \
	"local function cleanup(p, wid)\n" \
	"  local reg = p .. 'w:' .. wid\n" \
	"  local all = redis.call('HGETALL', reg)\n" \
	"  local n = 0\n" \
	"  for i = 1, #all, 2 do\n" \
	"    local mid, v = all[i], all[i + 1]\n" \
	"    local nl = string.find(v, '\\n', 1, true)\n" \
	"    local room, name = string.sub(v, 1, nl - 1), string.sub(v, nl + 1)\n" \
	"    local rk = p .. 'r:' .. room\n" \
	"    if redis.call('HDEL', rk, mid) == 1 then\n" \
	"      local num = redis.call('HLEN', rk)\n" \
	"      redis.call('PUBLISH', p .. 'c:' .. room, 'o ' .. num .. ' ' .. mid .. '\\n' .. name)\n" \
	"      n = n + 1\n" \
	"    end\n" \
	"  end\n" \
	"  redis.call('DEL', reg, p .. 'alive:' .. wid)\n" \
	"  redis.call('SREM', p .. 'workers', wid)\n" \
	"  redis.call('SET', p .. 'gone:' .. wid, '1', 'EX', 86400)\n" \
	"  return n\n" \
	"end\n"

/* ARGV: prefix wid room mid name */
static const char lua_enter[] =
	"local p, wid, room, mid, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
	"local rk = p .. 'r:' .. room\n"
	"redis.call('HSET', rk, mid, name)\n"
	"redis.call('HSET', p .. 'w:' .. wid, mid, room .. '\\n' .. name)\n"
	"local num = redis.call('HLEN', rk)\n"
	"redis.call('PUBLISH', p .. 'c:' .. room, 'e ' .. num .. ' ' .. mid .. '\\n' .. name)\n"
	"return num\n";

/* ARGV[6] "1": announce even if Redis no longer knew the member (it lost its data). */
static const char lua_out[] =
	"local p, wid, room, mid, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
	"local rk = p .. 'r:' .. room\n"
	"redis.call('HDEL', p .. 'w:' .. wid, mid)\n"
	"if redis.call('HDEL', rk, mid) == 1 or ARGV[6] == '1' then\n"
	"  local num = redis.call('HLEN', rk)\n"
	"  redis.call('PUBLISH', p .. 'c:' .. room, 'o ' .. num .. ' ' .. mid .. '\\n' .. name)\n"
	"  return num\n"
	"end\n"
	"return redis.call('HLEN', rk)\n";

/*
 * A member Redis no longer knows is announced again only if the rooms were
 * told it left (a janitor or the master removed its worker, leaving a
 * tombstone): after Redis merely lost its data, nobody heard an out, and an
 * enter would show people "joining" who never left.
 */
static const char lua_resync[] =
	"local p, wid, room, mid, name = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]\n"
	"local rk = p .. 'r:' .. room\n"
	"local added = redis.call('HSET', rk, mid, name)\n"
	"redis.call('HSET', p .. 'w:' .. wid, mid, room .. '\\n' .. name)\n"
	"local num = redis.call('HLEN', rk)\n"
	"if added == 1 and redis.call('EXISTS', p .. 'gone:' .. wid) == 1 then\n"
	"  redis.call('PUBLISH', p .. 'c:' .. room, 'e ' .. num .. ' ' .. mid .. '\\n' .. name)\n"
	"else\n"
	"  redis.call('PUBLISH', p .. 'c:' .. room, 'n ' .. num .. '\\n')\n"
	"end\n"
	"return num\n";

/* ARGV: prefix wid */
static const char lua_cleanup[] = LUA_CLEANUP "return cleanup(ARGV[1], ARGV[2])\n";

/* ARGV: prefix; cleans every worker whose liveness record expired. */
static const char lua_janitor[] = LUA_CLEANUP
	"local p, gone = ARGV[1], 0\n"
	"for _, wid in ipairs(redis.call('SMEMBERS', p .. 'workers')) do\n"
	"  if redis.call('EXISTS', p .. 'alive:' .. wid) == 0 then\n"
	"    cleanup(p, wid)\n"
	"    gone = gone + 1\n"
	"  end\n"
	"end\n"
	"return gone\n";

/*
 * The scripts the workers run, sent by their SHA-1 (EVALSHA): each link
 * loads them (SCRIPT LOAD) before its first command, so the text crosses
 * the network once per connection instead of once per call. A server that
 * forgot them (SCRIPT FLUSH) answers NOSCRIPT, and the link is rebuilt.
 */
enum { SCRIPT_ENTER, SCRIPT_OUT, SCRIPT_RESYNC, SCRIPT_JANITOR, SCRIPT__N };

static struct script {
	const char	*src;
	size_t		 len;
	char		 sha[41];
} scripts[SCRIPT__N] = {
	[SCRIPT_ENTER] = { lua_enter, sizeof(lua_enter) - 1, "" },
	[SCRIPT_OUT] = { lua_out, sizeof(lua_out) - 1, "" },
	[SCRIPT_RESYNC] = { lua_resync, sizeof(lua_resync) - 1, "" },
	[SCRIPT_JANITOR] = { lua_janitor, sizeof(lua_janitor) - 1, "" },
};

static struct {
	struct event_base	*base;
	const struct config	*cfg;
	const struct bus_handlers *h;
	char			 wid[96];
	redisAsyncContext	*cmd, *sub;
	int			 cmd_up, sub_up;
	int			 ready;
	int			 stopping;
	int			 backoff;
	struct event		*retry;
	struct event		*alive;
	int			 janitor_turn;
	int			 was_up;	/* the link has been up before: a comeback is a reconnect */
	uint64_t		 ping_sent;	/* us, of the PING in flight; 0 if none */
	int			 noscript;	/* a reconnect to reload the scripts is due */
	struct event		*canary;	/* publishes the next canary every second */
	uint64_t		 canary_sent;	/* us, of the canary on its way; 0 if none */
	uint64_t		 canary_seq;
	int			 canary_ok;	/* the last canary came back in time */
	char			 canary_ch[256];
	size_t			 canary_chlen;
	char			 prefix[128];
	size_t			 plen;
} B;

static void bus_connect(void);
static void script_reply(redisAsyncContext *, void *, void *);
static void sub_reply(redisAsyncContext *, void *, void *);

int
bus_ready(void)
{
	return B.ready;
}

int
bus_idle(void)
{
	return B.cmd == NULL || !B.cmd_up || B.cmd->replies.head == NULL;
}

/* Build "P <kind> <name>" into buf; returns its length or 0 if too long. */
static size_t
key(char *buf, size_t len, const char *kind, const char *name, size_t nlen)
{
	size_t kl = strlen(kind);

	if (B.plen + kl + nlen >= len)
		return 0;
	memcpy(buf, B.prefix, B.plen);
	memcpy(buf + B.plen, kind, kl);
	memcpy(buf + B.plen + kl, name, nlen);
	buf[B.plen + kl + nlen] = '\0';
	return B.plen + kl + nlen;
}

static void
schedule_retry(void)
{
	struct timeval tv;

	if (B.stopping || B.retry == NULL || evtimer_pending(B.retry, NULL))
		return;
	tv.tv_sec = B.backoff / 1000;
	tv.tv_usec = (B.backoff % 1000) * 1000;
	evtimer_add(B.retry, &tv);
	B.backoff = B.backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : B.backoff * 2;
}

static void
went_down(const char *why)
{
	int was = B.ready;

	B.ready = 0;
	B.ping_sent = 0;
	B.canary_sent = 0;
	B.canary_ok = 0;
	if (was) {
		metrics_gauge(GAUGE_REDIS_UP, -1);
		log_warn("redis link lost (%s); reconnecting", why);
		if (B.h->down != NULL)
			B.h->down();
	}
	schedule_retry();
}

static void
refresh_alive(void)
{
	char k[256], ttl[24];
	const char *argv[5];
	size_t argl[5];

	if (!B.ready)
		return;
	snprintf(ttl, sizeof(ttl), "%d", B.cfg->presence_ttl);
	argv[0] = "SET";
	argv[1] = k;
	argl[1] = key(k, sizeof(k), "alive:", B.wid, strlen(B.wid));
	argv[2] = "1";
	argv[3] = "PX";
	argv[4] = ttl;
	argl[0] = 3;
	argl[2] = 1;
	argl[3] = 2;
	argl[4] = strlen(ttl);
	redisAsyncCommandArgv(B.cmd, NULL, NULL, 5, argv, argl);
}

static void
run_janitor(void)
{
	const char *argv[4] = { "EVALSHA", scripts[SCRIPT_JANITOR].sha, "0", B.prefix };
	size_t argl[4] = { 7, 40, 1, B.plen };

	if (B.ready)
		redisAsyncCommandArgv(B.cmd, script_reply, NULL, 4, argv, argl);
}

/* A PING came back: the link is alive; its round trip goes to the histogram. */
static void
ping_reply(redisAsyncContext *ac, void *r, void *arg)
{
	if (r != NULL && B.ping_sent != 0)
		metrics_redis_rtt(clock_us() - B.ping_sent);
	B.ping_sent = 0;
}

/* Drop both links now (a hung server): hiredis alone would wait forever. */
static void
force_reconnect(const char *why)
{
	redisAsyncContext *cmd = B.cmd, *sub = B.sub;

	B.noscript = 0;
	B.cmd = B.sub = NULL;
	B.cmd_up = B.sub_up = 0;
	went_down(why);
	/* Their disconnect callbacks find them no longer current, and say nothing. */
	if (cmd != NULL)
		redisAsyncFree(cmd);
	if (sub != NULL)
		redisAsyncFree(sub);
}

static void
reconnect_cb(evutil_socket_t fd, short what, void *arg)
{
	force_reconnect("the server forgot roomd's scripts (NOSCRIPT): reloading them");
}

/* The reply to a script no one waits on: only its errors matter. */
static void
script_reply(redisAsyncContext *ac, void *r, void *arg)
{
	redisReply *reply = r;
	struct timeval now = { 0, 0 };

	if (reply == NULL || reply->type != REDIS_REPLY_ERROR)
		return;
	if (strncmp(reply->str, "NOSCRIPT", 8) != 0) {
		log_error("redis script failed: %s", reply->str);
		return;
	}
	/* Not from inside hiredis's callback: the link is rebuilt on the next loop turn. */
	if (!B.noscript && event_base_once(B.base, -1, EV_TIMEOUT, reconnect_cb, NULL, &now) == 0)
		B.noscript = 1;
}

static void
alive_cb(evutil_socket_t fd, short what, void *arg)
{
	/*
	 * hiredis's async client has no timeouts: a Redis that stopped answering
	 * (hung, or a dead host behind a silent network) is found by a PING that
	 * did not come back within one refresh interval.
	 */
	if (B.ready && B.ping_sent != 0) {
		log_warn("redis did not answer a PING within %dms", B.cfg->presence_ttl / 3);
		force_reconnect("no answer to PING");
		return;
	}
	if (B.ready && redisAsyncCommand(B.cmd, ping_reply, NULL, "PING") == REDIS_OK)
		B.ping_sent = clock_us();
	refresh_alive();
	/* The janitor runs every other refresh: often enough to remove a dead host within presence_ttl. */
	if (++B.janitor_turn % 2 == 0)
		run_janitor();
}

/*
 * Readiness is a round trip: every second the worker publishes a canary on a
 * channel of its own, through the command link it publishes chat on, and
 * must hear it back on its subscriber link within ready_timeout. A Redis
 * that takes connections and PINGs but holds writes (CLIENT PAUSE WRITE, a
 * full output buffer, a failover in progress) makes /readyz say so.
 */
static void
canary_send(void)
{
	char n[24];
	size_t nl;
	const char *argv[3];
	size_t argl[3];

	if (!B.ready || B.canary_sent != 0)
		return;
	nl = jbuf_itoa(n, (long long)++B.canary_seq);
	argv[0] = "PUBLISH";
	argl[0] = 7;
	argv[1] = B.canary_ch;
	argl[1] = B.canary_chlen;
	argv[2] = n;
	argl[2] = nl;
	if (redisAsyncCommandArgv(B.cmd, NULL, NULL, 3, argv, argl) == REDIS_OK)
		B.canary_sent = clock_us();
}

static void
canary_back(const char *p, size_t n)
{
	char want[24];
	size_t wl = jbuf_itoa(want, (long long)B.canary_seq);
	uint64_t rtt;

	if (B.canary_sent == 0 || n != wl || memcmp(p, want, wl) != 0)
		return;		/* an old one, late */
	rtt = clock_us() - B.canary_sent;
	B.canary_sent = 0;
	metrics_canary_rtt(rtt);
	B.canary_ok = rtt <= (uint64_t)B.cfg->ready_timeout * 1000u;
}

/* Every second: the next canary, or the verdict on one that is late (then a fresh one). */
static void
canary_cb(evutil_socket_t fd, short what, void *arg)
{
	if (B.canary_sent != 0) {
		if (clock_us() - B.canary_sent <= (uint64_t)B.cfg->ready_timeout * 1000u)
			return;
		if (B.canary_ok)
			log_warn("redis: the readiness canary did not come back within %dms", B.cfg->ready_timeout);
		B.canary_ok = 0;
		B.canary_sent = 0;	/* lost or late: a late one is recognised by its number */
	}
	canary_send();
}

int
bus_healthy(char *why, size_t len)
{
	if (!B.ready) {
		snprintf(why, len, "redis unreachable");
		return 0;
	}
	if (B.canary_sent != 0 && clock_us() - B.canary_sent > (uint64_t)B.cfg->ready_timeout * 1000u)
		B.canary_ok = 0;
	if (!B.canary_ok) {
		snprintf(why, len, "redis round trip (canary) not back within %dms", B.cfg->ready_timeout);
		return 0;
	}
	return 1;
}

static void
check_up(void)
{
	const char *argv[3];
	size_t argl[3];
	char k[256];

	if (B.ready || !B.cmd_up || !B.sub_up)
		return;
	B.ready = 1;
	B.backoff = BACKOFF_MIN_MS;
	metrics_gauge(GAUGE_REDIS_UP, 1);
	if (B.was_up)
		metrics_add(MET_REDIS_RECONNECTS, 1);
	B.was_up = 1;
	log_notice("redis link up");
	argv[0] = "SADD";
	argl[0] = 4;
	argv[1] = k;
	argl[1] = key(k, sizeof(k), "workers", "", 0);
	argv[2] = B.wid;
	argl[2] = strlen(B.wid);
	redisAsyncCommandArgv(B.cmd, NULL, NULL, 3, argv, argl);
	refresh_alive();
	argv[0] = "SUBSCRIBE";
	argl[0] = 9;
	argv[1] = B.canary_ch;
	argl[1] = B.canary_chlen;
	redisAsyncCommandArgv(B.sub, sub_reply, NULL, 2, argv, argl);	/* its confirmation sends a canary */
	if (B.h->up != NULL)
		B.h->up();
}

static void
on_connect(const redisAsyncContext *ac, int status)
{
	int is_cmd = ac == B.cmd;

	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		log_debug("redis connect failed: %s", ac->errstr);
		if (is_cmd)
			B.cmd = NULL;
		else
			B.sub = NULL;
		went_down(ac->errstr);
		return;
	}
	if (is_cmd)
		B.cmd_up = 1;
	else
		B.sub_up = 1;
	check_up();
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	if (ac != B.cmd && ac != B.sub)
		return;		/* one we dropped on purpose */
	if (ac == B.cmd) {
		B.cmd = NULL;
		B.cmd_up = 0;
	} else if (ac == B.sub) {
		B.sub = NULL;
		B.sub_up = 0;
	}
	if (!B.stopping)
		went_down(status == REDIS_OK ? "closed" : ac->errstr);
}

/* A reply to AUTH or SELECT: an error here is a configuration problem. */
static void
setup_reply(redisAsyncContext *ac, void *r, void *arg)
{
	redisReply *reply = r;

	if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		log_error("redis %s failed: %s", (const char *)arg, reply->str);
}

static redisAsyncContext *
open_one(int for_commands)
{
	const struct cfg_redis *r = &B.cfg->redis_addr;
	redisAsyncContext *ac;
	char db[16];

	ac = r->is_unix ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(r->host, r->port);
	if (ac == NULL)
		return NULL;
	if (ac->err) {
		log_debug("redis connect failed: %s", ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	if (redisLibeventAttach(ac, B.base) != REDIS_OK) {
		redisAsyncFree(ac);
		return NULL;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	if (r->password[0] != '\0')
		redisAsyncCommand(ac, setup_reply, "AUTH", "AUTH %s", r->password);
	if (r->db != 0) {
		snprintf(db, sizeof(db), "%d", r->db);
		redisAsyncCommand(ac, setup_reply, "SELECT", "SELECT %s", db);
	}
	for (int i = 0; for_commands && i < SCRIPT__N; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", scripts[i].src };
		size_t argl[3] = { 6, 4, scripts[i].len };

		redisAsyncCommandArgv(ac, setup_reply, "SCRIPT LOAD", 3, argv, argl);
	}
	return ac;
}

static void
bus_connect(void)
{
	if (B.stopping)
		return;
	/* Both links come up together: drop a half-open pair first. */
	if (B.cmd != NULL && B.sub == NULL) {
		redisAsyncFree(B.cmd);
		B.cmd = NULL;
	}
	if (B.sub != NULL && B.cmd == NULL) {
		redisAsyncFree(B.sub);
		B.sub = NULL;
	}
	if (B.cmd == NULL && B.sub == NULL) {
		B.cmd_up = B.sub_up = 0;
		B.cmd = open_one(1);
		B.sub = B.cmd != NULL ? open_one(0) : NULL;
		if (B.cmd == NULL || B.sub == NULL) {
			if (B.cmd != NULL) {
				redisAsyncFree(B.cmd);
				B.cmd = NULL;
			}
			went_down("cannot connect");
		}
	}
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	bus_connect();
}

/* Every pub/sub reply: message, subscribe and unsubscribe confirmations. */
static void
sub_reply(redisAsyncContext *ac, void *r, void *arg)
{
	redisReply *reply = r, *type, *chan;
	size_t skip = B.plen + 2;	/* "P c:" */

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	type = reply->element[0];
	chan = reply->element[1];
	if (type->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING ||
	    (size_t)chan->len < skip)
		return;
	if ((size_t)chan->len == B.canary_chlen && memcmp(chan->str, B.canary_ch, B.canary_chlen) == 0) {
		if (strcasecmp(type->str, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
			canary_back(reply->element[2]->str, (size_t)reply->element[2]->len);
		else if (strcasecmp(type->str, "subscribe") == 0)
			canary_send();	/* listening now: the first canary cannot pass us by */
		return;
	}
	if (strcasecmp(type->str, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
		B.h->message(chan->str + skip, (size_t)chan->len - skip, reply->element[2]->str,
		    (size_t)reply->element[2]->len);
	else if (strcasecmp(type->str, "subscribe") == 0)
		B.h->subscribed(chan->str + skip, (size_t)chan->len - skip);
	else if (strcasecmp(type->str, "unsubscribe") == 0)
		B.h->unsubscribed(chan->str + skip, (size_t)chan->len - skip);
}

static int
sub_command(const char *cmd, const char *room, size_t rlen)
{
	char ch[1200];
	const char *argv[2];
	size_t argl[2];

	if (!B.ready)
		return -1;
	argv[0] = cmd;
	argl[0] = strlen(cmd);
	argv[1] = ch;
	if ((argl[1] = key(ch, sizeof(ch), "c:", room, rlen)) == 0)
		return -1;
	return redisAsyncCommandArgv(B.sub, sub_reply, NULL, 2, argv, argl) == REDIS_OK ? 0 : -1;
}

int
bus_subscribe(const char *room, size_t rlen)
{
	return sub_command("SUBSCRIBE", room, rlen);
}

int
bus_unsubscribe(const char *room, size_t rlen)
{
	return sub_command("UNSUBSCRIBE", room, rlen);
}

/* The reply to a PUBLISH someone waits on: NULL when the link died first. */
static void
publish_reply(redisAsyncContext *ac, void *r, void *arg)
{
	redisReply *reply = r;

	B.h->published(arg, reply != NULL && reply->type == REDIS_REPLY_INTEGER);
}

/*
 * PUBLISH is the command of every chat message, so it is written in RESP
 * here, into a buffer kept between calls: hiredis's argv formatter (sds
 * appends and printf) cost more than the rest of a publish. A buffer grown
 * for a message over PUB_KEEP is not kept.
 */
#define PUB_KEEP	65536

static struct {
	char	*p;
	size_t	 cap;
} pub;

/* "$<n>\r\n<s>\r\n" at o; returns the end. */
static char *
resp_bulk(char *o, const char *s, size_t n)
{
	*o++ = '$';
	o += jbuf_itoa(o, (long long)n);	/* n is under SIZE_MAX / 2 */
	memcpy(o, "\r\n", 2);
	memcpy(o + 2, s, n);
	memcpy(o + 2 + n, "\r\n", 2);
	return o + 2 + n + 2;
}

static void
pub_release(void)
{
	free(pub.p);
	pub.p = NULL;
	pub.cap = 0;
}

int
bus_publish(const char *room, size_t rlen, const char *payload, size_t plen, void *arg)
{
	static const char head[] = "*3\r\n$7\r\nPUBLISH\r\n";
	char ch[1200], *o, *np;
	size_t chl, need;
	int rc;

	if (!B.ready)
		return -1;
	if ((chl = key(ch, sizeof(ch), "c:", room, rlen)) == 0)
		return -1;
	/* Two bulk strings: '$', up to 20 digits and two CRLFs each. */
	if (plen > SIZE_MAX / 2 - sizeof(head) - chl - 2 * 26)
		return -1;
	need = sizeof(head) + chl + plen + 2 * 26;
	if (need > pub.cap) {
		if ((np = realloc(pub.p, need)) == NULL)
			return -1;
		pub.p = np;
		pub.cap = need;
	}
	memcpy(pub.p, head, sizeof(head) - 1);
	o = resp_bulk(pub.p + sizeof(head) - 1, ch, chl);
	o = resp_bulk(o, payload, plen);
	rc = redisAsyncFormattedCommand(B.cmd, arg != NULL ? publish_reply : NULL, arg, pub.p,
	    (size_t)(o - pub.p));
	if (pub.cap > PUB_KEEP)
		pub_release();
	if (rc != REDIS_OK)
		return -1;
	metrics_add(MET_PUBLISHED, 1);
	return 0;
}

struct count_req {
	bus_count_fn	fn;
	void		*arg;
};

static void
count_reply(redisAsyncContext *ac, void *r, void *arg)
{
	struct count_req *cr = arg;
	redisReply *reply = r;
	long num = -1;

	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
		num = (long)reply->integer;
	else
		script_reply(ac, r, NULL);
	if (cr->fn != NULL)
		cr->fn(cr->arg, num);
	free(cr);
}

static int
script(int which, const char *room, size_t rlen, const char *mid,
    const char *name, size_t nlen, const char *extra, bus_count_fn fn, void *arg)
{
	struct count_req *cr;
	const char *argv[9];
	size_t argl[9];

	if (!B.ready)
		return -1;
	if ((cr = malloc(sizeof(*cr))) == NULL)
		return -1;
	cr->fn = fn;
	cr->arg = arg;
	argv[0] = "EVALSHA"; argl[0] = 7;
	argv[1] = scripts[which].sha; argl[1] = 40;
	argv[2] = "0"; argl[2] = 1;
	argv[3] = B.prefix; argl[3] = B.plen;
	argv[4] = B.wid; argl[4] = strlen(B.wid);
	argv[5] = room; argl[5] = rlen;
	argv[6] = mid; argl[6] = strlen(mid);
	argv[7] = name; argl[7] = nlen;
	argv[8] = extra != NULL ? extra : "";
	argl[8] = strlen(argv[8]);
	if (redisAsyncCommandArgv(B.cmd, count_reply, cr, 9, argv, argl) != REDIS_OK) {
		free(cr);
		return -1;
	}
	return 0;
}

int
bus_enter(const char *room, size_t rlen, const char *mid, const char *name, size_t nlen,
    bus_count_fn fn, void *arg)
{
	return script(SCRIPT_ENTER, room, rlen, mid, name, nlen, NULL, fn, arg);
}

int
bus_out(const char *room, size_t rlen, const char *mid, const char *name, size_t nlen,
    int announce_always, bus_count_fn fn, void *arg)
{
	return script(SCRIPT_OUT, room, rlen, mid, name, nlen,
	    announce_always ? "1" : "0", fn, arg);
}

int
bus_resync(const char *room, size_t rlen, const char *mid, const char *name, size_t nlen)
{
	return script(SCRIPT_RESYNC, room, rlen, mid, name, nlen, NULL, NULL, NULL);
}

struct who_req {
	bus_who_fn	fn;
	void		*arg;
};

static void
who_reply(redisAsyncContext *ac, void *r, void *arg)
{
	struct who_req *wr = arg;
	redisReply *reply = r;
	const char **names = NULL;
	size_t *lens = NULL, n = 0;

	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY) {
		n = reply->elements;
		names = calloc(n + 1, sizeof(*names));
		lens = calloc(n + 1, sizeof(*lens));
		if (names == NULL || lens == NULL) {
			n = 0;
			free(names);
			free(lens);
			names = NULL;
			lens = NULL;
			wr->fn(wr->arg, NULL, NULL, 0);
			free(wr);
			return;
		}
		for (size_t i = 0; i < n; i++) {
			names[i] = reply->element[i]->str != NULL ? reply->element[i]->str : "";
			lens[i] = (size_t)reply->element[i]->len;
		}
		wr->fn(wr->arg, names, lens, n);
	} else
		wr->fn(wr->arg, NULL, NULL, 0);
	free(names);
	free(lens);
	free(wr);
}

int
bus_who(const char *room, size_t rlen, bus_who_fn fn, void *arg)
{
	struct who_req *wr;
	char k[1200];
	const char *argv[2];
	size_t argl[2];

	if (!B.ready || (wr = malloc(sizeof(*wr))) == NULL)
		return -1;
	wr->fn = fn;
	wr->arg = arg;
	argv[0] = "HVALS";
	argl[0] = 5;
	argv[1] = k;
	if ((argl[1] = key(k, sizeof(k), "r:", room, rlen)) == 0 ||
	    redisAsyncCommandArgv(B.cmd, who_reply, wr, 2, argv, argl) != REDIS_OK) {
		free(wr);
		return -1;
	}
	return 0;
}

int
bus_start(struct event_base *base, const struct config *cfg, const char *wid,
    const struct bus_handlers *h)
{
	struct timeval tv;
	int every;

	memset(&B, 0, sizeof(B));
	B.base = base;
	B.cfg = cfg;
	B.h = h;
	B.backoff = BACKOFF_MIN_MS;
	snprintf(B.wid, sizeof(B.wid), "%s", wid);
	snprintf(B.prefix, sizeof(B.prefix), "%s", cfg->redis_prefix);
	B.plen = strlen(B.prefix);
	for (int i = 0; i < SCRIPT__N; i++) {
		static const char hex[] = "0123456789abcdef";
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;

		if (EVP_Digest(scripts[i].src, scripts[i].len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
			return -1;
		for (unsigned int k = 0; k < 20; k++) {
			scripts[i].sha[2 * k] = hex[md[k] >> 4];
			scripts[i].sha[2 * k + 1] = hex[md[k] & 15];
		}
		scripts[i].sha[40] = '\0';
	}
	if ((B.canary_chlen = key(B.canary_ch, sizeof(B.canary_ch), "k:", B.wid, strlen(B.wid))) == 0)
		return -1;
	if ((B.retry = evtimer_new(base, retry_cb, NULL)) == NULL ||
	    (B.alive = event_new(base, -1, EV_PERSIST, alive_cb, NULL)) == NULL ||
	    (B.canary = event_new(base, -1, EV_PERSIST, canary_cb, NULL)) == NULL)
		return -1;
	tv.tv_sec = 1;
	tv.tv_usec = 0;
	if (event_add(B.canary, &tv) == -1)
		return -1;
	every = cfg->presence_ttl / 3;
	tv.tv_sec = every / 1000;
	tv.tv_usec = (every % 1000) * 1000;
	if (event_add(B.alive, &tv) == -1)
		return -1;
	bus_connect();
	return 0;
}

void
bus_stop(void)
{
	B.stopping = 1;
	B.ready = 0;
	if (B.cmd != NULL)
		redisAsyncFree(B.cmd);
	if (B.sub != NULL)
		redisAsyncFree(B.sub);
	B.cmd = B.sub = NULL;
	if (B.retry != NULL)
		event_free(B.retry);
	if (B.alive != NULL)
		event_free(B.alive);
	if (B.canary != NULL)
		event_free(B.canary);
	B.retry = B.alive = B.canary = NULL;
	pub_release();
}

int
bus_cleanup_worker_sync(const struct config *cfg, const char *wid)
{
	const struct cfg_redis *r = &cfg->redis_addr;
	struct timeval tv = { 0, 200000 };	/* the master must not stall on a dead Redis */
	redisContext *c;
	redisReply *reply;
	const char *argv[5];
	size_t argl[5];
	int n = -1;

	c = r->is_unix ? redisConnectUnixWithTimeout(r->path, tv) :
	    redisConnectWithTimeout(r->host, r->port, tv);
	if (c == NULL || c->err) {
		log_error("redis connect for cleanup of worker %s failed: %s", wid,
		    c != NULL ? c->errstr : "out of memory");
		if (c != NULL)
			redisFree(c);
		return -1;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK)
		log_warn("redisSetTimeout failed");
	if (r->password[0] != '\0' && (reply = redisCommand(c, "AUTH %s", r->password)) != NULL)
		freeReplyObject(reply);
	if (r->db != 0 && (reply = redisCommand(c, "SELECT %d", r->db)) != NULL)
		freeReplyObject(reply);
	argv[0] = "EVAL"; argl[0] = 4;
	argv[1] = lua_cleanup; argl[1] = sizeof(lua_cleanup) - 1;
	argv[2] = "0"; argl[2] = 1;
	argv[3] = cfg->redis_prefix; argl[3] = strlen(cfg->redis_prefix);
	argv[4] = wid; argl[4] = strlen(wid);
	reply = redisCommandArgv(c, 5, argv, argl);
	if (reply == NULL)
		log_error("redis cleanup of worker %s failed: %s", wid, c->errstr);
	else if (reply->type == REDIS_REPLY_INTEGER)
		n = (int)reply->integer;
	else if (reply->type == REDIS_REPLY_ERROR)
		log_error("redis cleanup of worker %s failed: %s", wid, reply->str);
	if (reply != NULL)
		freeReplyObject(reply);
	redisFree(c);
	return n;
}
