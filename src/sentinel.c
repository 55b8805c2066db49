/*
 * sentinel.c: finding the master through Redis Sentinel.
 *
 * One sentinel at a time is asked (SENTINEL get-master-addr-by-name) over a
 * command link, and listened to (+switch-master) over a subscriber link.
 * When it fails or does not know the master, the next one in the list is
 * tried. Besides the announcements, which a dropped link can miss, the
 * address is asked again every two seconds: a failover that happened while
 * roomd was not listening is found that way, and so is a demoted master
 * that kept roomd's connections open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rlink.h"
#include "sentinel.h"

#define CHECK_MS	2000

static struct {
	struct event_base	*base;
	const struct config	*cfg;
	const struct sentinel_cbs *cbs;
	SSL_CTX			*tls;
	char			 name[160];	/* CLIENT SETNAME */
	int			 i;		/* the sentinel asked now */
	struct rlink		*cmd, *sub;
	int			 resolving;	/* found/failed owed */
	int			 tried;		/* sentinels that failed this resolve */
	int			 asking;	/* a query in flight */
	char			 last_why[200];
	char			 host[256];	/* the master, as last reported */
	int			 port;
	struct event		*timer;
	int			 stopping;
} S;

static void open_links(void);

static const struct redisurl_node *
current(void)
{
	return &S.cfg->redis_addr.node[S.i];
}

/* This sentinel failed us: the next one, and a verdict if all of them did. */
static void
next_sentinel(const char *why)
{
	const struct redisurl_node *n = current();

	snprintf(S.last_why, sizeof(S.last_why), "sentinel %s:%d: %s", n->host, n->port, why);
	log_debug("%s", S.last_why);
	if (S.cmd != NULL)
		rlink_free(S.cmd, 1);
	if (S.sub != NULL)
		rlink_free(S.sub, 1);
	S.cmd = S.sub = NULL;
	S.asking = 0;
	S.i = (S.i + 1) % S.cfg->redis_addr.nnodes;
	if (S.resolving && ++S.tried >= S.cfg->redis_addr.nnodes) {
		S.resolving = 0;
		S.tried = 0;
		S.cbs->failed(S.last_why);
		return;
	}
	if (S.resolving)
		open_links();
}

static void
addr_reply(redisReply *r, void *arg)
{
	char host[256];
	int port;

	S.asking = 0;
	if (r == NULL)
		return;		/* the link died: its down handler moves on */
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING || r->element[0]->len == 0 ||
	    (size_t)r->element[0]->len >= sizeof(host) || (port = atoi(r->element[1]->str)) < 1 || port > 65535) {
		char why[300];

		if (r->type == REDIS_REPLY_ERROR)
			snprintf(why, sizeof(why), "%s", r->str);
		else
			snprintf(why, sizeof(why), "does not know a master named '%s'", S.cfg->redis_addr.master);
		next_sentinel(why);
		return;
	}
	memcpy(host, r->element[0]->str, (size_t)r->element[0]->len + 1);
	if (S.resolving) {
		S.resolving = 0;
		S.tried = 0;
		snprintf(S.host, sizeof(S.host), "%s", host);
		S.port = port;
		S.cbs->found(host, port);
		return;
	}
	if (strcmp(host, S.host) != 0 || port != S.port) {
		log_notice("sentinel: master %s is now at %s:%d (was %s:%d)", S.cfg->redis_addr.master, host, port,
		    S.host, S.port);
		snprintf(S.host, sizeof(S.host), "%s", host);
		S.port = port;
		S.cbs->moved(host, port);
	}
}

static void
ask(void)
{
	const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", S.cfg->redis_addr.master };
	size_t argl[3] = { 8, 23, strlen(S.cfg->redis_addr.master) };

	if (S.asking || S.cmd == NULL || !rlink_is_up(S.cmd))
		return;
	if (rlink_command(S.cmd, 3, argv, argl, addr_reply, NULL) == 0)
		S.asking = 1;
}

static void
on_up(void *ud, struct rlink *l)
{
	if (l == S.sub) {
		const char *argv[2] = { "SUBSCRIBE", "+switch-master" };
		size_t argl[2] = { 9, 14 };

		if (rlink_command(l, 2, argv, argl, NULL, NULL) == -1)
			log_warn("sentinel: cannot subscribe to +switch-master");
		return;
	}
	ask();
}

static void
on_down(void *ud, struct rlink *l, const char *why)
{
	if (l == S.cmd)
		S.cmd = NULL;
	else if (l == S.sub)
		S.sub = NULL;
	else
		return;
	if (!S.stopping)
		next_sentinel(why);
}

/* "+switch-master": "<name> <old-ip> <old-port> <new-ip> <new-port>". */
static void
on_push(void *ud, struct rlink *l, redisReply *r)
{
	char name[160], oldh[256], newh[256];
	int oldp, newp;

	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
	    strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
		return;
	if (sscanf(r->element[2]->str, "%159s %255s %d %255s %d", name, oldh, &oldp, newh, &newp) != 5 ||
	    strcmp(name, S.cfg->redis_addr.master) != 0 || newp < 1 || newp > 65535)
		return;
	log_notice("sentinel: +switch-master %s from %s:%d to %s:%d", name, oldh, oldp, newh, newp);
	if (strcmp(newh, S.host) == 0 && newp == S.port)
		return;
	snprintf(S.host, sizeof(S.host), "%s", newh);
	S.port = newp;
	S.cbs->moved(newh, newp);
}

static const struct rlink_cbs link_cbs = { on_up, on_down, on_push };

static struct rlink *
open_one(int subscriber)
{
	const struct redisurl_node *n = current();
	struct rlink_opts o;
	char why[256];
	struct rlink *l;

	memset(&o, 0, sizeof(o));
	o.host = n->host;
	o.port = n->port;
	o.password = S.cfg->redis_sentinel_password;
	o.name = S.name;
	o.tls = S.tls;
	o.subscriber = subscriber;
	o.timeout_ms = 2000;
	if ((l = rlink_open(S.base, &o, &link_cbs, NULL, why, sizeof(why))) == NULL)
		log_debug("sentinel %s:%d: %s", n->host, n->port, why);
	return l;
}

static void
open_links(void)
{
	/* A failure moves to the next sentinel (and, when resolving, tries it at once). */
	if (S.cmd == NULL && (S.cmd = open_one(0)) == NULL) {
		next_sentinel("cannot connect");
		return;
	}
	if (S.sub == NULL)
		S.sub = open_one(1);
	ask();
}

static void
check_cb(evutil_socket_t fd, short what, void *arg)
{
	if (S.cmd == NULL)
		open_links();
	else
		ask();
}

void
sentinel_resolve(void)
{
	S.resolving = 1;
	S.tried = 0;
	if (S.cmd == NULL)
		open_links();
	else
		ask();
}

int
sentinel_start(struct event_base *base, const struct config *cfg, const char *wid, SSL_CTX *tls,
    const struct sentinel_cbs *cbs)
{
	struct timeval tv = { CHECK_MS / 1000, (CHECK_MS % 1000) * 1000 };

	memset(&S, 0, sizeof(S));
	S.base = base;
	S.cfg = cfg;
	S.cbs = cbs;
	S.tls = tls;
	snprintf(S.name, sizeof(S.name), "roomd:%s:sentinel", wid);
	if ((S.timer = event_new(base, -1, EV_PERSIST, check_cb, NULL)) == NULL || event_add(S.timer, &tv) == -1)
		return -1;
	return 0;
}

void
sentinel_stop(void)
{
	S.stopping = 1;
	if (S.cmd != NULL)
		rlink_free(S.cmd, 0);
	if (S.sub != NULL)
		rlink_free(S.sub, 0);
	S.cmd = S.sub = NULL;
	if (S.timer != NULL)
		event_free(S.timer);
	S.timer = NULL;
}
