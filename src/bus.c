/*
 * bus.c: the links to Redis.
 *
 * Two hiredis async contexts on the worker's event base: commands, and
 * pub/sub. They come up together and go down together; a half-open pair is
 * dropped and both reconnect with exponential backoff. hiredis's async
 * client has no timeouts, so a Redis that stops answering (hung, or a dead
 * host behind a silent network) is found by a PING that does not come back
 * within a third of presence_ttl. Readiness is stricter: every second the
 * worker publishes a canary on a channel of its own and must hear it back
 * within ready_timeout.
 *
 * Commands are written in RESP into a buffer kept between calls and sent
 * with redisAsyncFormattedCommand: hiredis's argv formatter (sds appends
 * and printf) costs more than the rest of a chat message's publish.
 * Hiredis contract: a reply lives only inside its callback; every callback
 * runs exactly once (a NULL reply on failure).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <hiredis/adapters/libevent.h>
#include <openssl/evp.h>

#include "bus.h"
#include "clock.h"
#include "jbuf.h"
#include "log.h"
#include "metrics.h"

#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	2000
#define MAX_SCRIPTS	16
#define OUT_KEEP	65536	/* a command buffer grown past this is not kept */

static struct {
	const char	*src;
	size_t		 len;
	char		 sha[41];
} scripts[MAX_SCRIPTS];
static int nscripts;

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
	int			 was_up;	/* the link has been up before: a comeback is a reconnect */
	int			 noscript;	/* a reconnect to reload the scripts is due */
	struct event		*retry;
	struct event		*alive;		/* PING liveness */
	uint64_t		 ping_sent;	/* us, of the PING in flight; 0 if none */
	struct event		*canary;	/* publishes the next canary every second */
	uint64_t		 canary_sent;	/* us, of the canary on its way; 0 if none */
	uint64_t		 canary_seq;
	int			 canary_ok;	/* the last canary came back in time */
	char			 canary_ch[256];
	size_t			 canary_chlen;
	char			*out;		/* RESP of the command being sent */
	size_t			 outcap;
} B;

static void bus_connect(void);
static void sub_reply(redisAsyncContext *, void *, void *);

int
bus_script(const char *src, size_t len)
{
	if (nscripts >= MAX_SCRIPTS)
		return -1;
	scripts[nscripts].src = src;
	scripts[nscripts].len = len;
	return nscripts++;
}

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

/* ---- RESP out ---- */

/* "$<n>\r\n<s>\r\n" at o; returns the end. */
static char *
resp_bulk(char *o, const char *s, size_t n)
{
	*o++ = '$';
	o += jbuf_itoa(o, (long long)n);	/* n is under SIZE_MAX / 2 */
	memcpy(o, "\r\n", 2);
	if (n > 0)
		memcpy(o + 2, s, n);
	memcpy(o + 2 + n, "\r\n", 2);
	return o + 2 + n + 2;
}

/* Write argv in RESP into B.out; its length, or 0 when out of memory. */
static size_t
format(int argc, const char *const *argv, const size_t *argl)
{
	size_t need = 32, i;
	char *o, *np;

	for (i = 0; i < (size_t)argc; i++) {
		if (argl[i] > SIZE_MAX / 4 - need)
			return 0;
		need += argl[i] + 32;
	}
	if (need > B.outcap) {
		if ((np = realloc(B.out, need)) == NULL)
			return 0;
		B.out = np;
		B.outcap = need;
	}
	o = B.out;
	*o++ = '*';
	o += jbuf_itoa(o, argc);
	*o++ = '\r';
	*o++ = '\n';
	for (i = 0; i < (size_t)argc; i++)
		o = resp_bulk(o, argv[i], argl[i]);
	/*
	 * Not part of the command: hiredis 0.14 walks the arguments of a
	 * (p)(un)subscribe with strchr(), which runs to a NUL past the end.
	 * need holds far more than the command, so the byte is there.
	 */
	*o = '\0';
	return (size_t)(o - B.out);
}

static void
out_release(void)
{
	if (B.outcap > OUT_KEEP) {
		free(B.out);
		B.out = NULL;
		B.outcap = 0;
	}
}

/* Send argv on a context. -1 when it cannot be queued. */
static int
send_argv(redisAsyncContext *ac, int argc, const char *const *argv, const size_t *argl,
    bus_reply_fn *fn, void *arg)
{
	size_t n;
	int rc;

	if (ac == NULL || (n = format(argc, argv, argl)) == 0)
		return -1;
	rc = redisAsyncFormattedCommand(ac, fn, arg, B.out, n);
	out_release();
	return rc == REDIS_OK ? 0 : -1;
}

/* ---- going down, coming up ---- */

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

/* Drop both links now (a hung server, forgotten scripts): hiredis alone would wait forever. */
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

int
bus_reply_error(const redisReply *reply)
{
	struct timeval now = { 0, 0 };

	if (reply == NULL)
		return 1;
	if (reply->type != REDIS_REPLY_ERROR)
		return 0;
	if (strncmp(reply->str, "NOSCRIPT", 8) != 0) {
		log_error("redis command failed: %s", reply->str);
		return 1;
	}
	/* Not from inside hiredis's callback: the links are rebuilt on the next loop turn. */
	if (!B.noscript && event_base_once(B.base, -1, EV_TIMEOUT, reconnect_cb, NULL, &now) == 0)
		B.noscript = 1;
	return 1;
}

/* A PING came back: the link is alive; its round trip goes to the histogram. */
static void
ping_reply(redisAsyncContext *ac, void *r, void *arg)
{
	if (r != NULL && B.ping_sent != 0)
		metrics_redis_rtt(clock_us() - B.ping_sent);
	B.ping_sent = 0;
}

static void
alive_cb(evutil_socket_t fd, short what, void *arg)
{
	static const char *const ping[] = { "PING" };
	static const size_t pingl[] = { 4 };

	if (B.ready && B.ping_sent != 0) {
		log_warn("redis did not answer a PING within %dms", B.cfg->presence_ttl / 3);
		force_reconnect("no answer to PING");
		return;
	}
	if (B.ready && send_argv(B.cmd, 1, ping, pingl, ping_reply, NULL) == 0)
		B.ping_sent = clock_us();
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
	const char *argv[3] = { "PUBLISH", B.canary_ch, n };
	size_t argl[3] = { 7, B.canary_chlen, 0 };

	if (!B.ready || B.canary_sent != 0)
		return;
	argl[2] = jbuf_itoa(n, (long long)++B.canary_seq);
	if (send_argv(B.cmd, 3, argv, argl, NULL, NULL) == 0)
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
	const char *argv[2] = { "SUBSCRIBE", B.canary_ch };
	size_t argl[2] = { 9, B.canary_chlen };

	if (B.ready || !B.cmd_up || !B.sub_up)
		return;
	B.ready = 1;
	B.backoff = BACKOFF_MIN_MS;
	metrics_gauge(GAUGE_REDIS_UP, 1);
	if (B.was_up)
		metrics_add(MET_REDIS_RECONNECTS, 1);
	B.was_up = 1;
	log_notice("redis link up");
	/* Its confirmation sends the first canary: it cannot pass us by. */
	if (send_argv(B.sub, 2, argv, argl, sub_reply, NULL) == -1)
		log_error("cannot subscribe to the readiness canary");
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
	} else {
		B.sub = NULL;
		B.sub_up = 0;
	}
	if (!B.stopping)
		went_down(status == REDIS_OK ? "closed" : ac->errstr);
}

/* A reply to AUTH, SELECT or SCRIPT LOAD: an error here is a configuration problem. */
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
	/* Queued now, written once connected, answered before anything sent later. */
	if (r->password[0] != '\0')
		redisAsyncCommand(ac, setup_reply, "AUTH", "AUTH %s", r->password);
	if (r->db != 0) {
		snprintf(db, sizeof(db), "%d", r->db);
		redisAsyncCommand(ac, setup_reply, "SELECT", "SELECT %s", db);
	}
	{
		/* CLIENT LIST shows which worker of which roomd a connection is. */
		char name[160];
		const char *argv[3] = { "CLIENT", "SETNAME", name };
		size_t argl[3] = { 6, 7, 0 };

		argl[2] = (size_t)snprintf(name, sizeof(name), "roomd:%s:%s", B.wid, for_commands ? "cmd" : "sub");
		if (send_argv(ac, 3, argv, argl, setup_reply, (void *)(uintptr_t)"CLIENT SETNAME") == -1)
			log_error("cannot name a new redis link");
	}
	for (int i = 0; for_commands && i < nscripts; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", scripts[i].src };
		size_t argl[3] = { 6, 4, scripts[i].len };

		if (send_argv(ac, 3, argv, argl, setup_reply, (void *)(uintptr_t)"SCRIPT LOAD") == -1)
			log_error("cannot load a Lua script on a new redis link");
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

/* ---- pub/sub ---- */

/* Every pub/sub reply: message, subscribe and unsubscribe confirmations. */
static void
sub_reply(redisAsyncContext *ac, void *r, void *arg)
{
	redisReply *reply = r, *type, *chan;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
		return;
	type = reply->element[0];
	chan = reply->element[1];
	if (type->type != REDIS_REPLY_STRING || chan->type != REDIS_REPLY_STRING)
		return;
	if ((size_t)chan->len == B.canary_chlen && memcmp(chan->str, B.canary_ch, B.canary_chlen) == 0) {
		if (strcasecmp(type->str, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
			canary_back(reply->element[2]->str, (size_t)reply->element[2]->len);
		else if (strcasecmp(type->str, "subscribe") == 0)
			canary_send();	/* listening now: the first canary cannot pass us by */
		return;
	}
	if (strcasecmp(type->str, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING)
		B.h->message(chan->str, (size_t)chan->len, reply->element[2]->str,
		    (size_t)reply->element[2]->len);
	else if (strcasecmp(type->str, "subscribe") == 0)
		B.h->subscribed(chan->str, (size_t)chan->len);
	else if (strcasecmp(type->str, "unsubscribe") == 0)
		B.h->unsubscribed(chan->str, (size_t)chan->len);
}

static int
sub_command(const char *cmd, size_t cl, const char *ch, size_t chlen)
{
	const char *argv[2] = { cmd, ch };
	size_t argl[2] = { cl, chlen };

	if (!B.ready)
		return -1;
	return send_argv(B.sub, 2, argv, argl, sub_reply, NULL);
}

int
bus_subscribe(const char *ch, size_t chlen)
{
	return sub_command("SUBSCRIBE", 9, ch, chlen);
}

int
bus_unsubscribe(const char *ch, size_t chlen)
{
	return sub_command("UNSUBSCRIBE", 11, ch, chlen);
}

/* ---- commands ---- */

int
bus_command(int argc, const char *const *argv, const size_t *argl, bus_reply_fn *fn, void *arg)
{
	if (!B.ready)
		return -1;
	return send_argv(B.cmd, argc, argv, argl, fn, arg);
}

int
bus_eval(int script, int nkeys, int argc, const char *const *argv, const size_t *argl,
    bus_reply_fn *fn, void *arg)
{
	const char *av[24];
	size_t al[24];
	char nk[24];

	if (!B.ready || script < 0 || script >= nscripts || argc + 3 > 24 || nkeys > argc)
		return -1;
	av[0] = "EVALSHA";
	al[0] = 7;
	av[1] = scripts[script].sha;
	al[1] = 40;
	av[2] = nk;
	al[2] = jbuf_itoa(nk, nkeys);
	memcpy(av + 3, argv, (size_t)argc * sizeof(*av));
	memcpy(al + 3, argl, (size_t)argc * sizeof(*al));
	return send_argv(B.cmd, argc + 3, av, al, fn, arg);
}

/* ---- start, stop ---- */

int
bus_start(struct event_base *base, const struct config *cfg, const char *wid,
    const struct bus_handlers *h)
{
	struct timeval tv;
	int every, n;

	memset(&B, 0, sizeof(B));
	B.base = base;
	B.cfg = cfg;
	B.h = h;
	B.backoff = BACKOFF_MIN_MS;
	snprintf(B.wid, sizeof(B.wid), "%s", wid);
	for (int i = 0; i < nscripts; i++) {
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
	/* The canary's channel: P{k:WID}, a slot of its own. */
	n = snprintf(B.canary_ch, sizeof(B.canary_ch), "%s{k:%s}", cfg->redis_prefix, wid);
	if (n < 0 || (size_t)n >= sizeof(B.canary_ch))
		return -1;
	B.canary_chlen = (size_t)n;
	if ((B.retry = evtimer_new(base, retry_cb, NULL)) == NULL ||
	    (B.alive = event_new(base, -1, EV_PERSIST, alive_cb, NULL)) == NULL ||
	    (B.canary = event_new(base, -1, EV_PERSIST, canary_cb, NULL)) == NULL)
		return -1;
	every = cfg->presence_ttl / 3;
	tv.tv_sec = every / 1000;
	tv.tv_usec = (every % 1000) * 1000;
	if (event_add(B.alive, &tv) == -1)
		return -1;
	tv.tv_sec = 1;
	tv.tv_usec = 0;
	if (event_add(B.canary, &tv) == -1)
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
	free(B.out);
	B.out = NULL;
	B.outcap = 0;
}
