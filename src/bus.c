/*
 * bus.c: the worker's Redis: which nodes, which links, where each command
 * goes.
 *
 * Topology. One Redis (redis://, rediss://, a socket, the private server)
 * is one node. Under Sentinel it is the master the sentinels name
 * (sentinel.c): asked on every connect, checked with ROLE, followed when a
 * sentinel announces or reports a switch, and left when a write answers
 * READONLY (a demoted master keeps its connections). A Redis Cluster is its
 * masters, read from CLUSTER SHARDS (CLUSTER SLOTS before Redis 7) of any
 * node or seed, with the map of its 16384 slots; the map is asked again
 * every five seconds, after a MOVED, when Redis drops a subscription and
 * when a node fails.
 *
 * Each node has a command link and a pub/sub link (rlink.c). The bus is up
 * when every node's links are up and have loaded the scripts (and, on a
 * Cluster, every slot has a master); a failed link takes its node's pair
 * down and the bus with it, and what is missing reconnects with backoff.
 *
 * Commands are queued per node in the order sent, with their callbacks; on
 * a Cluster their bytes are kept until answered, so that a -MOVED (the map
 * is updated) or an -ASK (ASKING first, once) sends them again to the node
 * named. Pub/sub on a Cluster is sharded: SSUBSCRIBE at the node that owns
 * the channel's slot, scripts SPUBLISH. When a slot moves, Redis ends its
 * subscriptions with an unsolicited sunsubscribe; a channel still wanted is
 * subscribed again at the new owner.
 *
 * Readiness is a round trip per node: every second a canary is published
 * through the command link, on a channel of this worker in that node's
 * slots, and must come back on its pub/sub link within ready_timeout. A
 * PING every third of presence_ttl that is not back by the next finds a
 * hung node (rlink has no read timeout: idle links are normal).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "bus.h"
#include "clock.h"
#include "jbuf.h"
#include "log.h"
#include "metrics.h"
#include "resp.h"
#include "rlink.h"
#include "sentinel.h"
#include "tls.h"

#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	2000
#define MAX_SCRIPTS	16
#define MAX_NODES	512
#define NO_NODE		0xffff
#define OUT_KEEP	65536	/* a scratch buffer grown past this is not kept */
#define MAP_REFRESH_MS	5000
#define MAX_REDIRECTS	3
#define FENCE_MS	1000	/* to fence an old master off before giving up on it */

static struct {
	const char	*src;
	size_t		 len;
	char		*text;		/* with the PUB prelude */
	size_t		 tlen;
	char		 sha[41];
} scripts[MAX_SCRIPTS];
static int nscripts;

/* A command in flight on a node's command link, oldest first. */
struct pend {
	bus_reply_fn	*fn;
	void		*arg;
	uint32_t	 len;		/* its bytes in node->sent (Cluster); 0 if not kept */
	uint8_t		 tries;		/* redirections followed so far */
};

/* A subscription sent, not yet confirmed (an error answers the oldest). */
struct subq {
	struct subq	*next;
	size_t		 len;
	char		 ch[];
};

struct node {
	char		 host[256];
	int		 port;
	struct rlink	*cmd, *sub;
	int		 cmd_up, sub_up;
	int		 scripts_left;	/* SCRIPT LOADs not answered */
	int		 role_ok;	/* Sentinel: ROLE said master */
	int		 ready;
	int		 in_map;	/* Cluster: still a master in the last map */
	struct pend	*ring;
	size_t		 rhead, rlen, rcap;
	struct evbuffer	*sent;		/* Cluster: the bytes of the commands in ring */
	struct subq	*sq, **sq_tail;
	uint64_t	 ping_sent;	/* us of the PING in flight; 0 if none */
	char		 canary_ch[400];
	size_t		 canary_chlen;
	int		 canary_sub;	/* its subscription is confirmed */
	uint64_t	 canary_sent;	/* us of the canary on its way; 0 if none */
	uint64_t	 canary_seq;
	int		 canary_ok;
	int		 fencing;	/* Sentinel: fencing this master off before leaving it */
};

/* A channel waiting to be subscribed again (its slot moved). */
struct resub {
	struct resub	*next;
	size_t		 len;
	char		 ch[];
};

static struct {
	struct event_base	*base;
	const struct config	*cfg;
	const struct bus_handlers *h;
	enum redisurl_mode	 mode;
	char			 wid[96];
	SSL_CTX			*tls;
	struct node		*node[MAX_NODES];
	int			 nnodes;
	uint16_t		 owner[RESP_SLOTS];	/* Cluster: slot -> node index */
	int			 ready;
	int			 stopping;
	int			 backoff;
	int			 was_up;
	int			 unpushed;	/* commands queued since the last bus_push */
	int			 timeout_ms;	/* to connect and log in */
	struct event		*retry, *alive, *canary, *refresh, *apply;
	/* Cluster: the map being asked for, and one that waits to be applied */
	int			 asking_map;
	struct rlink		*seed;
	int			 seed_i;
	struct resp_range	*new_map;
	size_t			 new_n;
	struct resub		*resub;
	char			*out;		/* scratch RESP for kept bytes */
	size_t			 outcap;
	char			 down_why[256];
	uint64_t		 down_logged;	/* ms of the last "unreachable" line */
	struct node		*lost;		/* Cluster: the node the lost handler is about */
	/* Sentinel: where the master went, while the old one is fenced off */
	char			 next_host[256];
	int			 next_port;
	struct event		*fence_timer;
} B;

static void bus_connect(void);
static void node_reply(redisReply *, void *);
static void refresh_map(void);
static void fence_done(struct node *);
static void node_lost(struct node *, const char *);
static void node_gone(struct node *, int, const char *);
static void resub_flush(void);
static int partial(void);

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
	for (int i = 0; i < B.nnodes; i++)
		if (B.node[i]->cmd != NULL && rlink_pending(B.node[i]->cmd) > 0)
			return 0;
	return 1;
}

void
bus_push(void)
{
	if (!B.unpushed)
		return;
	B.unpushed = 0;
	for (int i = 0; i < B.nnodes; i++)
		for (int k = 0; k < 2; k++) {
			struct rlink *l = k == 0 ? B.node[i]->cmd : B.node[i]->sub;

			if (l != NULL)
				rlink_push(l);
		}
}

int
bus_nodes(void)
{
	return B.nnodes;
}

static int
cluster(void)
{
	return B.mode == REDISURL_CLUSTER;
}

/* ---- nodes ---- */

static const char *
node_name(const struct node *n, char *buf, size_t len)
{
	if (n->host[0] == '/')
		snprintf(buf, len, "%s", n->host);
	else
		snprintf(buf, len, strchr(n->host, ':') != NULL ? "[%s]:%d" : "%s:%d", n->host, n->port);
	return buf;
}

static struct node *
node_new(const char *host, int port)
{
	struct node *n;

	if (B.nnodes == MAX_NODES || (n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	snprintf(n->host, sizeof(n->host), "%s", host);
	n->port = port;
	n->sq_tail = &n->sq;
	if (cluster() && (n->sent = evbuffer_new()) == NULL) {
		free(n);
		return NULL;
	}
	B.node[B.nnodes++] = n;
	return n;
}

static void
subq_clear(struct node *n)
{
	struct subq *q;

	while ((q = n->sq) != NULL) {
		n->sq = q->next;
		free(q);
	}
	n->sq_tail = &n->sq;
}

/* Close a node's links: their pending callbacks run with NULL. */
static void
node_close(struct node *n, int reset)
{
	struct rlink *cmd = n->cmd, *sub = n->sub;

	n->cmd = n->sub = NULL;
	n->cmd_up = n->sub_up = 0;
	n->ready = 0;
	n->role_ok = 0;
	n->ping_sent = 0;
	n->canary_sub = 0;
	n->canary_sent = 0;
	n->canary_ok = 0;
	n->fencing = 0;
	subq_clear(n);
	if (cmd != NULL)
		rlink_free(cmd, reset);	/* runs node_reply for each pending command */
	if (sub != NULL)
		rlink_free(sub, reset);
}

static void
node_free(struct node *n)
{
	node_close(n, 1);
	if (n->sent != NULL)
		evbuffer_free(n->sent);
	free(n->ring);
	free(n);
}

static int
ring_reserve(struct node *n)
{
	if (n->rlen == n->rcap) {
		size_t ncap = n->rcap == 0 ? 64 : n->rcap * 2;
		struct pend *nr = malloc(ncap * sizeof(*nr));

		if (nr == NULL)
			return -1;
		for (size_t i = 0; i < n->rlen; i++)
			nr[i] = n->ring[(n->rhead + i) % n->rcap];
		free(n->ring);
		n->ring = nr;
		n->rcap = ncap;
		n->rhead = 0;
	}
	return 0;
}

static void
ring_push(struct node *n, struct pend p)
{
	n->ring[(n->rhead + n->rlen) % n->rcap] = p;
	n->rlen++;
}

/* Bytes of RESP into B.out; their length, 0 if out of memory. */
static size_t
scratch(int argc, const char *const *argv, const size_t *argl)
{
	size_t need = resp_size(argc, argl);
	char *np;

	if (need == SIZE_MAX)
		return 0;
	if (need > B.outcap) {
		if ((np = realloc(B.out, need)) == NULL)
			return 0;
		B.out = np;
		B.outcap = need;
	}
	return resp_format(B.out, argc, argv, argl);
}

static void
scratch_release(void)
{
	if (B.outcap > OUT_KEEP) {
		free(B.out);
		B.out = NULL;
		B.outcap = 0;
	}
}

/* Send bytes already in RESP on a node's command link (a redirection's resend). */
static int
node_send_bytes(struct node *n, const char *p, size_t len, bus_reply_fn *fn, void *arg, int tries)
{
	int kept;

	if (n->cmd == NULL || !n->cmd_up || ring_reserve(n) == -1)
		return -1;
	if (rlink_send(n->cmd, p, len, node_reply, n) == -1)
		return -1;
	B.unpushed = 1;
	kept = n->sent != NULL && len <= UINT32_MAX && evbuffer_add(n->sent, p, len) == 0;
	ring_push(n, (struct pend){ fn, arg, kept ? (uint32_t)len : 0, (uint8_t)tries });
	return 0;
}

/* Send a command on a node's command link; -1 if it cannot go now. */
static int
node_send(struct node *n, int argc, const char *const *argv, const size_t *argl, bus_reply_fn *fn, void *arg)
{
	size_t len;
	int rc;

	if (n->cmd == NULL || !n->cmd_up)
		return -1;
	if (n->sent == NULL) {
		/* One Redis: formatted straight into the link's buffer, no copy kept. */
		if (ring_reserve(n) == -1 || rlink_command(n->cmd, argc, argv, argl, node_reply, n) == -1)
			return -1;
		B.unpushed = 1;
		ring_push(n, (struct pend){ fn, arg, 0, 0 });
		return 0;
	}
	if ((len = scratch(argc, argv, argl)) == 0)
		return -1;
	rc = node_send_bytes(n, B.out, len, fn, arg, 0);
	scratch_release();
	return rc;
}

static struct node *
node_at(const char *host, int port)
{
	for (int i = 0; i < B.nnodes; i++)
		if (B.node[i]->port == port && strcmp(B.node[i]->host, host) == 0)
			return B.node[i];
	return NULL;
}

static int
node_index(const struct node *n)
{
	for (int i = 0; i < B.nnodes; i++)
		if (B.node[i] == n)
			return i;
	return -1;
}

/* The node that serves a key (or a channel); NULL if none does now. */
static struct node *
owner_of(const char *key, size_t len)
{
	uint16_t i;

	if (!cluster())
		return B.nnodes > 0 ? B.node[0] : NULL;
	i = B.owner[resp_slot(key, len)];
	return i == NO_NODE || i >= B.nnodes ? NULL : B.node[i];
}

/* ---- up and down ---- */

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
resub_clear(void)
{
	struct resub *r;

	while ((r = B.resub) != NULL) {
		B.resub = r->next;
		free(r);
	}
}

static void
went_down(const char *why)
{
	int was = B.ready;

	B.ready = 0;
	if (was) {
		metrics_gauge(GAUGE_REDIS_UP, -1);
		log_warn("redis link lost (%s); reconnecting", why);
		resub_clear();	/* up subscribes everything again */
		if (B.h->down != NULL)
			B.h->down();
	} else {
		/* Say why Redis cannot be reached: when the reason changes, and every 30 s. */
		uint64_t t = clock_ms();

		if (strcmp(B.down_why, why) != 0 || t - B.down_logged >= 30000) {
			log_warn("redis unreachable (%s); retrying", why);
			B.down_logged = t;
		}
		snprintf(B.down_why, sizeof(B.down_why), "%s", why);
	}
	schedule_retry();
}

/* Drop a node's links now (a hung server, forgotten scripts, a demoted master). */
static void
node_reconnect(struct node *n, const char *why)
{
	int was_ready = n->ready;

	node_close(n, 1);
	node_gone(n, was_ready, why);
}

/*
 * Node n's links just closed. On a Cluster still partly up, only its rooms
 * go down (if it was serving them); otherwise the whole bus is down.
 */
static void
node_gone(struct node *n, int was_ready, const char *why)
{
	if (partial()) {
		if (was_ready)
			node_lost(n, why);
		else
			schedule_retry();
		return;
	}
	{
		char name[300], msg[600];

		snprintf(msg, sizeof(msg), "%s: %s", node_name(n, name, sizeof(name)), why);
		went_down(msg);
	}
}

/*
 * Cluster, while up: node n lost its links (or left the map). The others
 * stay up; the rooms it served wait for their slots' next master (the map
 * is asked for now, and again on the retry timer until n is back or gone).
 */
static void
node_lost(struct node *n, const char *why)
{
	char name[300];

	log_warn("redis cluster: lost %s (%s); its slots wait for it or a replica", node_name(n, name,
	    sizeof(name)), why);
	B.lost = n;
	if (B.h->lost != NULL)
		B.h->lost();
	B.lost = NULL;
	refresh_map();
	schedule_retry();
}

int
bus_channel_lost(const char *ch, size_t chlen)
{
	struct node *o = owner_of(ch, chlen);

	return o == NULL || o == B.lost || !o->ready;
}

/* Whether losing a node takes only its own slots down (a Cluster that is up). */
static int
partial(void)
{
	return cluster() && B.ready && !B.stopping;
}

static int
canary_channel(struct node *n)
{
	int k;

	if (!cluster()) {
		k = snprintf(n->canary_ch, sizeof(n->canary_ch), "%s{k:%s}", B.cfg->redis_prefix, B.wid);
		n->canary_chlen = k > 0 && (size_t)k < sizeof(n->canary_ch) ? (size_t)k : 0;
		return n->canary_chlen > 0 ? 0 : -1;
	}
	/* A channel of this worker in a slot this node owns. */
	for (int i = 0; i < 200000; i++) {
		k = snprintf(n->canary_ch, sizeof(n->canary_ch), "%s{k:%s:%d}", B.cfg->redis_prefix, B.wid, i);
		if (k <= 0 || (size_t)k >= sizeof(n->canary_ch))
			return -1;
		if (owner_of(n->canary_ch, (size_t)k) == n) {
			n->canary_chlen = (size_t)k;
			return 0;
		}
	}
	return -1;
}

static int
sub_send(struct node *n, const char *cmd, const char *ch, size_t chlen, int confirm)
{
	const char *argv[2] = { cmd, ch };
	size_t argl[2] = { strlen(cmd), chlen };
	struct subq *q = NULL;

	if (n->sub == NULL || !n->sub_up)
		return -1;
	if (confirm) {
		if ((q = malloc(sizeof(*q) + chlen)) == NULL)
			return -1;
		q->next = NULL;
		q->len = chlen;
		memcpy(q->ch, ch, chlen);
	}
	if (rlink_command(n->sub, 2, argv, argl, NULL, NULL) == -1) {
		free(q);
		return -1;
	}
	B.unpushed = 1;
	if (q != NULL) {
		*n->sq_tail = q;
		n->sq_tail = &q->next;
	}
	return 0;
}

static const char *
sub_cmd(void)
{
	return cluster() ? "SSUBSCRIBE" : "SUBSCRIBE";
}

static void
check_up(void)
{
	if (B.ready || B.nnodes == 0)
		return;
	for (int i = 0; i < B.nnodes; i++)
		if (!B.node[i]->ready)
			return;
	if (cluster()) {
		for (unsigned s = 0; s < RESP_SLOTS; s++)
			if (B.owner[s] == NO_NODE)
				return;
	}
	B.ready = 1;
	B.backoff = BACKOFF_MIN_MS;
	metrics_gauge(GAUGE_REDIS_UP, 1);
	if (B.was_up)
		metrics_add(MET_REDIS_RECONNECTS, 1);
	B.was_up = 1;
	if (cluster())
		log_notice("redis link up (cluster of %d master(s))", B.nnodes);
	else
		log_notice("redis link up");
	resub_clear();
	/* The canaries: their confirmations send the first ones, which cannot pass us by. */
	for (int i = 0; i < B.nnodes; i++) {
		struct node *n = B.node[i];

		if (canary_channel(n) == -1 || sub_send(n, sub_cmd(), n->canary_ch, n->canary_chlen, 1) == -1)
			log_error("cannot subscribe to the readiness canary");
	}
	if (B.h->up != NULL)
		B.h->up();
}

static void
node_check_ready(struct node *n)
{
	if (n->ready || !n->cmd_up || !n->sub_up || n->scripts_left > 0 ||
	    (B.mode == REDISURL_SENTINEL && !n->role_ok))
		return;
	n->ready = 1;
	if (B.ready) {
		/* A node (back, or a promoted replica) joins a cluster that is up. */
		char name[300];

		log_notice("redis cluster: %s is up", node_name(n, name, sizeof(name)));
		B.backoff = BACKOFF_MIN_MS;
		if (canary_channel(n) == -1 || sub_send(n, sub_cmd(), n->canary_ch, n->canary_chlen, 1) == -1)
			log_error("cannot subscribe to the readiness canary");
		resub_flush();
		return;
	}
	check_up();
}

/* ---- the answers on a command link ---- */

/* A NOSCRIPT, on the next loop turn: not from inside the link's callback. */
static void
noscript_cb(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;

	if (node_index(n) >= 0 && n->cmd != NULL) {
		node_reconnect(n, "the server forgot roomd's scripts (NOSCRIPT): reloading them");
	}
}

static void
replaced_cb(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;

	if (node_index(n) >= 0 && n->cmd != NULL)
		node_reconnect(n, "the master was replaced: asking the sentinels again");
}

/* Follow -MOVED / -ASK with the command's bytes; 1 if it went again. */
static int
redirect(struct node *n, const redisReply *r, struct pend *p)
{
	struct resp_redirect rd;
	struct node *t;
	char *bytes;
	int ok = 0;

	if (resp_redirect(r->str, (size_t)r->len, &rd) == -1)
		return 0;
	t = node_at(rd.host, rd.port);
	if (!rd.ask) {
		if (t != NULL)
			B.owner[rd.slot] = (uint16_t)node_index(t);
		refresh_map();
	}
	if (p->len == 0 || p->tries >= MAX_REDIRECTS || t == NULL || !t->cmd_up)
		return 0;
	if ((bytes = malloc(p->len)) == NULL)
		return 0;
	if (evbuffer_copyout(n->sent, bytes, p->len) == (ev_ssize_t)p->len) {
		if (rd.ask) {
			static const char asking[] = "*1\r\n$6\r\nASKING\r\n";

			ok = node_send_bytes(t, asking, sizeof(asking) - 1, NULL, NULL, 0) == 0 &&
			    node_send_bytes(t, bytes, p->len, p->fn, p->arg, p->tries + 1) == 0;
		} else
			ok = node_send_bytes(t, bytes, p->len, p->fn, p->arg, p->tries + 1) == 0;
	}
	free(bytes);
	return ok;
}

/*
 * Every answer on a command link: the oldest command's. Redirections,
 * NOSCRIPT and READONLY are handled here; then its callback runs, and
 * nothing of n is touched after it (it may change the topology).
 */
static void
node_reply(redisReply *r, void *arg)
{
	struct node *n = arg;
	struct pend p;

	if (n->rlen == 0)
		return;
	p = n->ring[n->rhead];
	n->rhead = (n->rhead + 1) % n->rcap;
	n->rlen--;
	if (r != NULL && r->type == REDIS_REPLY_ERROR) {
		if (cluster() && (strncmp(r->str, "MOVED ", 6) == 0 || strncmp(r->str, "ASK ", 4) == 0) &&
		    redirect(n, r, &p)) {
			if (p.len > 0)
				evbuffer_drain(n->sent, p.len);
			return;
		}
		if (strncmp(r->str, "NOSCRIPT", 8) == 0 &&
		    event_base_once(B.base, -1, EV_TIMEOUT, noscript_cb, n, NULL) == -1)
			log_error("cannot schedule the scripts' reload");
		if ((strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "FENCED", 6) == 0) &&
		    B.mode == REDISURL_SENTINEL && !n->fencing) {
			log_warn("redis %s is no longer the master (%.8s)", n->host, r->str);
			if (event_base_once(B.base, -1, EV_TIMEOUT, replaced_cb, n, NULL) == -1)
				log_error("cannot schedule a reconnect");
		}
	}
	if (p.len > 0)
		evbuffer_drain(n->sent, p.len);
	if (p.fn != NULL)
		p.fn(r, p.arg);
}

int
bus_reply_error(const redisReply *reply)
{
	if (reply == NULL)
		return 1;
	if (reply->type != REDIS_REPLY_ERROR)
		return 0;
	log_error("redis command failed: %s", reply->str);
	return 1;
}

/* ---- liveness and readiness ---- */

static void
ping_reply(redisReply *r, void *arg)
{
	struct node *n = arg;

	/* n may be gone (a new map): only its identity is compared. */
	if (r == NULL || node_index(n) < 0 || n->ping_sent == 0)
		return;
	metrics_redis_rtt(clock_us() - n->ping_sent);
	n->ping_sent = 0;
}

static void
alive_cb(evutil_socket_t fd, short what, void *arg)
{
	static const char *const ping[] = { "PING" };
	static const size_t pingl[] = { 4 };

	for (int i = 0; i < B.nnodes; i++) {
		struct node *n = B.node[i];
		char name[300];

		if (!n->ready)
			continue;
		if (n->ping_sent != 0) {
			log_warn("redis %s did not answer a PING within %dms", node_name(n, name, sizeof(name)),
			    B.cfg->presence_ttl / 3);
			node_reconnect(n, "no answer to PING");
			return;
		}
		if (node_send(n, 1, ping, pingl, ping_reply, n) == 0)
			n->ping_sent = clock_us();
	}
}

/*
 * Readiness is a round trip: every second the worker publishes a canary on
 * a channel of its own, through the command link it publishes chat on, and
 * must hear it back on its subscriber link within ready_timeout. A Redis
 * that takes connections and PINGs but holds writes (CLIENT PAUSE WRITE, a
 * full output buffer, a failover in progress) makes /readyz say so.
 */
static void
canary_send(struct node *n)
{
	char seq[24];
	const char *argv[3] = { cluster() ? "SPUBLISH" : "PUBLISH", n->canary_ch, seq };
	size_t argl[3] = { strlen(argv[0]), n->canary_chlen, 0 };

	if (!B.ready || !n->canary_sub || n->canary_sent != 0)
		return;
	argl[2] = jbuf_itoa(seq, (long long)++n->canary_seq);
	if (node_send(n, 3, argv, argl, NULL, NULL) == 0)
		n->canary_sent = clock_us();
}

static void
canary_back(struct node *n, const char *p, size_t len)
{
	char want[24];
	size_t wl = jbuf_itoa(want, (long long)n->canary_seq);
	uint64_t rtt;

	if (n->canary_sent == 0 || len != wl || memcmp(p, want, wl) != 0)
		return;		/* an old one, late */
	rtt = clock_us() - n->canary_sent;
	n->canary_sent = 0;
	metrics_canary_rtt(rtt);
	n->canary_ok = rtt <= (uint64_t)B.cfg->ready_timeout * 1000u;
}

/* Every second: the next canary, or the verdict on one that is late (then a fresh one). */
static void
canary_cb(evutil_socket_t fd, short what, void *arg)
{
	for (int i = 0; i < B.nnodes; i++) {
		struct node *n = B.node[i];
		char name[300];

		if (n->canary_sent != 0) {
			if (clock_us() - n->canary_sent <= (uint64_t)B.cfg->ready_timeout * 1000u)
				continue;
			if (n->canary_ok)
				log_warn("redis %s: the readiness canary did not come back within %dms",
				    node_name(n, name, sizeof(name)), B.cfg->ready_timeout);
			n->canary_ok = 0;
			n->canary_sent = 0;	/* lost or late: a late one is recognised by its number */
		}
		canary_send(n);
	}
}

int
bus_healthy(char *why, size_t len)
{
	char name[300];

	if (!B.ready) {
		snprintf(why, len, "redis unreachable%s%s", B.down_why[0] != '\0' ? ": " : "", B.down_why);
		return 0;
	}
	for (int i = 0, up = 0; i < B.nnodes; i++) {
		struct node *n = B.node[i];

		/*
		 * A Cluster node that is away takes only its own slots down: the
		 * worker serves every other room, so it stays ready (every host
		 * is in the same position; an LB could pick no better one).
		 */
		if (cluster() && !n->ready) {
			if (i == B.nnodes - 1 && up == 0) {
				snprintf(why, len, "redis cluster: no master is up");
				return 0;
			}
			continue;
		}
		up++;
		if (n->canary_sent != 0 && clock_us() - n->canary_sent > (uint64_t)B.cfg->ready_timeout * 1000u)
			n->canary_ok = 0;
		if (!n->canary_ok) {
			snprintf(why, len, "redis round trip (canary) not back within %dms%s%s", B.cfg->ready_timeout,
			    cluster() ? " from " : "", cluster() ? node_name(n, name, sizeof(name)) : "");
			return 0;
		}
	}
	return 1;
}

/* ---- pub/sub ---- */

static int
same(const redisReply *r, const char *s, size_t len)
{
	return r->type == REDIS_REPLY_STRING && (size_t)r->len == len && memcmp(r->str, s, len) == 0;
}

/* Subscribe again what waits for its slot's new owner. */
static void
resub_flush(void)
{
	struct resub **pp = &B.resub, *r;

	while ((r = *pp) != NULL) {
		if (bus_subscribe(r->ch, r->len) == 0) {
			*pp = r->next;
			free(r);
		} else
			pp = &r->next;
	}
}

static void
resub_add(const char *ch, size_t len)
{
	struct resub *r = malloc(sizeof(*r) + len);

	if (r == NULL) {
		log_error("out of memory: a dropped subscription waits for the next reconnect");
		return;
	}
	r->len = len;
	memcpy(r->ch, ch, len);
	r->next = B.resub;
	B.resub = r;
}

/* A subscription was dropped (by Redis, or at our request). */
static void
sub_ended(struct node *n, const char *ch, size_t len)
{
	if (len == n->canary_chlen && memcmp(ch, n->canary_ch, len) == 0) {
		/* Its slot moved: a canary channel in this node's slots again, after the new map. */
		n->canary_sub = 0;
		n->canary_sent = 0;
		refresh_map();
		return;
	}
	if (B.h->unsubscribed(ch, len)) {
		resub_add(ch, len);
		if (cluster())
			refresh_map();	/* resub_flush runs when the map is in */
		else
			resub_flush();
	}
}

static void
link_push(void *ud, struct rlink *l, redisReply *r)
{
	struct node *n = ud;
	const redisReply *type, *ch;
	struct subq *q;

	if (r->type == REDIS_REPLY_ERROR) {
		/* The answer to the oldest unconfirmed subscription. */
		struct resp_redirect rd;

		if ((q = n->sq) != NULL && (n->sq = q->next) == NULL)
			n->sq_tail = &n->sq;
		log_warn("redis pub/sub: %s", r->str);
		if (q != NULL && resp_redirect(r->str, (size_t)r->len, &rd) == 0) {
			struct node *t = node_at(rd.host, rd.port);

			if (t != NULL)
				B.owner[rd.slot] = (uint16_t)node_index(t);
			if (!(q->len == n->canary_chlen && memcmp(q->ch, n->canary_ch, q->len) == 0))
				resub_add(q->ch, q->len);
			refresh_map();
		}
		free(q);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || (type = r->element[0])->type != REDIS_REPLY_STRING ||
	    (ch = r->element[1])->type != REDIS_REPLY_STRING)
		return;
	if ((strcmp(type->str, "message") == 0 || strcmp(type->str, "smessage") == 0) && r->elements == 3 &&
	    r->element[2]->type == REDIS_REPLY_STRING) {
		const redisReply *pl = r->element[2];

		if (same(ch, n->canary_ch, n->canary_chlen))
			canary_back(n, pl->str, (size_t)pl->len);
		else
			B.h->message(ch->str, (size_t)ch->len, pl->str, (size_t)pl->len);
		return;
	}
	if (strcmp(type->str, "subscribe") == 0 || strcmp(type->str, "ssubscribe") == 0) {
		if ((q = n->sq) != NULL && same(ch, q->ch, q->len)) {
			if ((n->sq = q->next) == NULL)
				n->sq_tail = &n->sq;
			free(q);
		}
		if (same(ch, n->canary_ch, n->canary_chlen)) {
			n->canary_sub = 1;
			canary_send(n);	/* listening now: the first canary cannot pass us by */
		} else
			B.h->subscribed(ch->str, (size_t)ch->len);
		return;
	}
	if (strcmp(type->str, "unsubscribe") == 0 || strcmp(type->str, "sunsubscribe") == 0)
		sub_ended(n, ch->str, (size_t)ch->len);
	else if (strcmp(type->str, "pong") == 0 && same(ch, "fence", 5) && n->fencing)
		fence_done(n);	/* every message published before the fence has reached us */
}

int
bus_subscribe(const char *ch, size_t chlen)
{
	struct node *n;

	if (!B.ready || (n = owner_of(ch, chlen)) == NULL)
		return -1;
	return sub_send(n, sub_cmd(), ch, chlen, 1);
}

int
bus_unsubscribe(const char *ch, size_t chlen)
{
	struct node *n;

	if (!B.ready || (n = owner_of(ch, chlen)) == NULL)
		return -1;
	return sub_send(n, cluster() ? "SUNSUBSCRIBE" : "UNSUBSCRIBE", ch, chlen, 0);
}

/* ---- links ---- */

static void
script_loaded(redisReply *r, void *arg)
{
	struct node *n = arg;
	char name[300];

	if (r == NULL || node_index(n) < 0)
		return;		/* the link died: it loads them again when back */
	if (r->type == REDIS_REPLY_ERROR)
		log_error("redis %s: SCRIPT LOAD failed: %s", node_name(n, name, sizeof(name)), r->str);
	if (n->scripts_left > 0 && --n->scripts_left == 0)
		node_check_ready(n);
}

static void
role_reply(redisReply *r, void *arg)
{
	struct node *n = arg;
	char name[300];

	if (r == NULL || node_index(n) < 0)
		return;
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[0]->str, "master") == 0) {
		/*
		 * Name this master in the gen key before any script runs here:
		 * rooms whose position was made on another master start a new
		 * epoch (LUA_POSITION). Every worker sets the same value.
		 */
		char key[300], val[300];
		const char *argv[3] = { "SET", key, val };
		size_t argl[3] = { 3, 0, 0 };
		int k = snprintf(key, sizeof(key), "%sgen", B.cfg->redis_prefix);

		argl[1] = k > 0 && (size_t)k < sizeof(key) ? (size_t)k : 0;
		k = snprintf(val, sizeof(val), "%s:%d", n->host, n->port);
		argl[2] = k > 0 && (size_t)k < sizeof(val) ? (size_t)k : 0;
		if (argl[1] == 0 || argl[2] == 0 || node_send(n, 3, argv, argl, NULL, NULL) == -1)
			log_error("cannot name the master in %sgen", B.cfg->redis_prefix);
		n->role_ok = 1;
		node_check_ready(n);
		return;
	}
	log_warn("redis %s is not a master (ROLE says %s): asking the sentinels again",
	    node_name(n, name, sizeof(name)),
	    r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING ?
	    r->element[0]->str : r->type == REDIS_REPLY_ERROR ? r->str : "something else");
	if (event_base_once(B.base, -1, EV_TIMEOUT, replaced_cb, n, NULL) == -1)
		log_error("cannot schedule a reconnect");
}

static void
link_up(void *ud, struct rlink *l)
{
	struct node *n = ud;

	if (l == n->sub) {
		n->sub_up = 1;
		node_check_ready(n);
		return;
	}
	n->cmd_up = 1;
	n->scripts_left = nscripts;
	if (B.mode == REDISURL_SENTINEL) {
		static const char *const role[] = { "ROLE" };
		static const size_t rolel[] = { 4 };

		if (node_send(n, 1, role, rolel, role_reply, n) == -1)
			log_error("cannot ask a new redis link its ROLE");
	}
	for (int i = 0; i < nscripts; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", scripts[i].text };
		size_t argl[3] = { 6, 4, scripts[i].tlen };

		if (node_send(n, 3, argv, argl, script_loaded, n) == -1)
			log_error("cannot load a Lua script on a new redis link");
	}
	node_check_ready(n);
}

static void
link_down(void *ud, struct rlink *l, const char *why)
{
	struct node *n = ud;
	char name[300], msg[600];
	int was_ready;

	if (l == n->cmd)
		n->cmd = NULL;
	else if (l == n->sub)
		n->sub = NULL;
	else
		return;
	snprintf(msg, sizeof(msg), "%s: %s", node_name(n, name, sizeof(name)), why);
	log_debug("redis link %s", msg);
	/* A pair comes up and goes down together. */
	was_ready = n->ready;
	node_close(n, 1);
	if (!B.stopping)
		node_gone(n, was_ready, why);
}

static const struct rlink_cbs link_cbs = { link_up, link_down, link_push };

static int
node_open(struct node *n)
{
	const struct redisurl *u = &B.cfg->redis_addr;
	struct rlink_opts o;
	char name[160], why[300], where[300];

	if (n->cmd != NULL && n->sub != NULL)
		return 0;
	node_close(n, 1);	/* a half-open pair goes */
	memset(&o, 0, sizeof(o));
	if (u->is_unix)
		o.path = u->path;
	o.host = n->host;
	o.port = n->port;
	o.user = u->user;
	o.password = u->password;
	o.db = u->db;
	o.tls = B.tls;
	o.timeout_ms = B.timeout_ms;
	o.name = name;
	/* CLIENT LIST shows which worker of which roomd a connection is. */
	snprintf(name, sizeof(name), "roomd:%s:cmd", B.wid);
	if ((n->cmd = rlink_open(B.base, &o, &link_cbs, n, why, sizeof(why))) == NULL)
		goto fail;
	snprintf(name, sizeof(name), "roomd:%s:sub", B.wid);
	o.subscriber = 1;
	if ((n->sub = rlink_open(B.base, &o, &link_cbs, n, why, sizeof(why))) == NULL)
		goto fail;
	return 0;
fail:
	node_close(n, 0);
	snprintf(where, sizeof(where), "%s: %s", node_name(n, name, sizeof(name)), why);
	log_debug("redis connect failed: %s", where);
	if (partial())
		schedule_retry();
	else
		went_down(where);
	return -1;
}

/* ---- Sentinel ---- */

static void
sentinel_found(const char *host, int port)
{
	struct node *n;

	if (B.stopping)
		return;
	if (B.nnodes == 0 && node_new(host, port) == NULL) {
		went_down("out of memory");
		return;
	}
	n = B.node[0];
	if (strcmp(n->host, host) != 0 || n->port != port) {
		node_close(n, 1);
		snprintf(n->host, sizeof(n->host), "%s", host);
		n->port = port;
	}
	(void)node_open(n);
}

static void
sentinel_failed(const char *why)
{
	went_down(why);
}

/* Leave the old master for the one the sentinels named. */
static void
switch_master(void)
{
	struct node *n = B.nnodes > 0 ? B.node[0] : NULL;

	if (B.fence_timer != NULL)
		evtimer_del(B.fence_timer);
	if (n != NULL) {
		n->fencing = 0;
		node_close(n, 1);
		snprintf(n->host, sizeof(n->host), "%s", B.next_host);
		n->port = B.next_port;
	}
	went_down("sentinel: the master moved");
	/* went_down scheduled the retry: it asks the sentinels, who just answered */
}

static void
fence_done(struct node *n)
{
	if (n->fencing)
		switch_master();
}

static void
fence_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = B.nnodes > 0 ? B.node[0] : NULL;

	if (n != NULL && n->fencing) {
		log_warn("redis %s: no answer to the fence within %d ms; leaving it", n->host, FENCE_MS);
		switch_master();
	}
}

/* The fence is set (or refused: the old master is demoted already): drain the subscriber link. */
static void
fence_set(redisReply *r, void *arg)
{
	struct node *n = arg;
	const char *argv[2] = { "PING", "fence" };
	size_t argl[2] = { 4, 5 };

	if (node_index(n) < 0 || !n->fencing)
		return;
	if (r == NULL || n->sub == NULL || rlink_command(n->sub, 2, argv, argl, NULL, NULL) == -1)
		switch_master();
}

/*
 * The sentinels moved the master. Writes the old one takes from now on are
 * lost to the new one, and reach only the workers still subscribed there:
 * so before leaving it, set the fence key on it (every script refuses to
 * run where it exists, and its sender is answered unavailable), and wait
 * until every message published before the fence has come in on the
 * subscriber link. Then go. Every worker of every host does the same, so
 * no write lands on the old master once any of them has left it.
 */
static void
sentinel_moved(const char *host, int port)
{
	struct node *n = B.nnodes > 0 ? B.node[0] : NULL;
	char key[300], val[300];
	const char *argv[5] = { "SET", key, val, "PX", "30000" };
	size_t argl[5];
	static const struct timeval fence_tv = { FENCE_MS / 1000, (FENCE_MS % 1000) * 1000 };
	int k;

	if (n != NULL && strcmp(n->host, host) == 0 && n->port == port && !n->fencing)
		return;
	snprintf(B.next_host, sizeof(B.next_host), "%s", host);
	B.next_port = port;
	if (n == NULL || n->fencing)
		return;		/* the switch under way goes to the newest address */
	if (!n->cmd_up || !n->sub_up) {
		switch_master();
		return;
	}
	k = snprintf(key, sizeof(key), "%sfence", B.cfg->redis_prefix);
	argl[1] = k > 0 && (size_t)k < sizeof(key) ? (size_t)k : 0;
	k = snprintf(val, sizeof(val), "%s:%d", host, port);
	argl[2] = k > 0 && (size_t)k < sizeof(val) ? (size_t)k : 0;
	argl[0] = 3;
	argl[3] = 2;
	argl[4] = 5;
	n->fencing = 1;
	if (argl[1] == 0 || node_send(n, 5, argv, argl, fence_set, n) == -1) {
		switch_master();
		return;
	}
	log_notice("redis %s: fencing the old master off before leaving it", n->host);
	if (B.fence_timer != NULL && evtimer_add(B.fence_timer, &fence_tv) == -1)
		log_error("cannot time the fence");
}

static const struct sentinel_cbs sentinel_cbs = { sentinel_found, sentinel_failed, sentinel_moved };

/* ---- Cluster ---- */

/* Apply the map asked for: nodes for its masters, links to new ones, old ones closed. */
static void
apply_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resp_range *map = B.new_map;
	size_t n = B.new_n;
	int changed = 0, missing = 0;

	B.new_map = NULL;
	if (map == NULL || B.stopping)
		goto out;
	for (int i = 0; i < B.nnodes; i++)
		B.node[i]->in_map = 0;
	for (size_t k = 0; k < n; k++) {
		struct node *nd = node_at(map[k].host, map[k].port);

		if (nd == NULL) {
			if ((nd = node_new(map[k].host, map[k].port)) == NULL) {
				log_error("redis cluster: cannot add node %s:%d", map[k].host, map[k].port);
				continue;
			}
			changed = 1;
		}
		nd->in_map = 1;
	}
	/* Masters no longer in the map go; their pending commands answer NULL. */
	for (int i = 0; i < B.nnodes;) {
		if (!B.node[i]->in_map) {
			char name[300];
			int was_ready = B.node[i]->ready;

			log_info("redis cluster: %s is no longer a master", node_name(B.node[i], name, sizeof(name)));
			if (partial() && was_ready) {
				/* Its rooms go down before it does (the map still names it). */
				B.lost = B.node[i];
				if (B.h->lost != NULL)
					B.h->lost();
				B.lost = NULL;
			}
			node_free(B.node[i]);
			B.node[i] = B.node[--B.nnodes];
			changed = 1;
			continue;
		}
		i++;
	}
	for (unsigned s = 0; s < RESP_SLOTS; s++)
		B.owner[s] = NO_NODE;
	for (size_t k = 0; k < n; k++) {
		int idx = node_index(node_at(map[k].host, map[k].port));

		for (unsigned s = map[k].from; idx >= 0 && s <= map[k].to && s < RESP_SLOTS; s++)
			B.owner[s] = (uint16_t)idx;
	}
	for (unsigned s = 0; s < RESP_SLOTS; s++)
		missing += B.owner[s] == NO_NODE;
	if (changed)
		log_info("redis cluster: %d master(s)%s", B.nnodes, missing > 0 ? ", some slots without one" : "");
	if (missing > 0) {
		char why[120];

		snprintf(why, sizeof(why), "redis cluster: %d slot(s) have no master", missing);
		if (partial()) {
			log_warn("%s: their rooms wait", why);
			schedule_retry();
		} else
			went_down(why);
	}
	for (int i = 0; i < B.nnodes; i++) {
		struct node *nd = B.node[i];

		if (nd->cmd == NULL || nd->sub == NULL)
			(void)node_open(nd);
		else if (B.ready && !nd->canary_sub && nd->sq == NULL) {
			/* Its canary's slot moved: one in its slots now. */
			if (canary_channel(nd) == 0)
				(void)sub_send(nd, "SSUBSCRIBE", nd->canary_ch, nd->canary_chlen, 1);
		}
	}
	check_up();
	if (B.ready)
		resub_flush();
out:
	free(map);
}

static void
map_reply(redisReply *r, void *arg)
{
	int shards = arg != NULL;
	struct resp_range *map;
	size_t n = 0;

	B.asking_map = 0;
	if (r == NULL)
		return;
	if (r->type == REDIS_REPLY_ERROR && shards && strncmp(r->str, "ERR unknown", 11) == 0) {
		/* Before Redis 7: CLUSTER SLOTS. */
		static const char *const argv[] = { "CLUSTER", "SLOTS" };
		static const size_t argl[] = { 7, 5 };

		for (int i = 0; i < B.nnodes; i++)
			if (B.node[i]->cmd_up && node_send(B.node[i], 2, argv, argl, map_reply, NULL) == 0) {
				B.asking_map = 1;
				return;
			}
		if (B.seed != NULL && rlink_command(B.seed, 2, argv, argl, map_reply, NULL) == 0)
			B.asking_map = 1;
		return;
	}
	if ((map = resp_cluster_map(r, shards, B.tls != NULL, &n)) == NULL || n == 0) {
		char why[300];

		free(map);
		snprintf(why, sizeof(why), "redis cluster: no slot map (%s)",
		    r->type == REDIS_REPLY_ERROR ? r->str : "a reply of a shape roomd does not know");
		log_warn("%s", why);
		went_down(why);
		return;
	}
	free(B.new_map);
	B.new_map = map;
	B.new_n = n;
	if (B.seed != NULL) {
		struct rlink *s = B.seed;

		B.seed = NULL;
		rlink_free(s, 0);
	}
	/* Not from inside a link's callback: the map may close that very link. */
	event_active(B.apply, EV_TIMEOUT, 0);
}

static const char *const shards_argv[] = { "CLUSTER", "SHARDS" };
static const size_t shards_argl[] = { 7, 6 };
static char shards_mark;	/* map_reply's arg: the answer is CLUSTER SHARDS' */

static void
seed_up(void *ud, struct rlink *l)
{
	if (rlink_command(l, 2, shards_argv, shards_argl, map_reply, &shards_mark) == 0)
		B.asking_map = 1;
}

static void
seed_down(void *ud, struct rlink *l, const char *why)
{
	const struct redisurl_node *s = &B.cfg->redis_addr.node[B.seed_i];
	char msg[400];

	if (l != B.seed)
		return;
	B.seed = NULL;
	B.asking_map = 0;
	snprintf(msg, sizeof(msg), "cluster seed %s:%d: %s", s->host, s->port, why);
	B.seed_i = (B.seed_i + 1) % B.cfg->redis_addr.nnodes;
	went_down(msg);
}

static void
seed_push(void *ud, struct rlink *l, redisReply *r)
{
}

static const struct rlink_cbs seed_cbs = { seed_up, seed_down, seed_push };

/* Ask for the slot map: of a master that is up, else of the next seed. */
static void
refresh_map(void)
{
	const struct redisurl_node *s;
	struct rlink_opts o;
	char why[300];

	if (!cluster() || B.asking_map || B.stopping)
		return;
	for (int i = 0; i < B.nnodes; i++) {
		if (B.node[i]->cmd_up &&
		    node_send(B.node[i], 2, shards_argv, shards_argl, map_reply, &shards_mark) == 0) {
			B.asking_map = 1;
			return;
		}
	}
	if (B.seed != NULL)
		return;
	s = &B.cfg->redis_addr.node[B.seed_i];
	memset(&o, 0, sizeof(o));
	o.host = s->host;
	o.port = s->port;
	o.user = B.cfg->redis_addr.user;
	o.password = B.cfg->redis_addr.password;
	o.tls = B.tls;
	o.timeout_ms = B.timeout_ms;
	o.name = "roomd:seed";
	if ((B.seed = rlink_open(B.base, &o, &seed_cbs, NULL, why, sizeof(why))) == NULL) {
		char msg[400];

		snprintf(msg, sizeof(msg), "cluster seed %s:%d: %s", s->host, s->port, why);
		B.seed_i = (B.seed_i + 1) % B.cfg->redis_addr.nnodes;
		went_down(msg);
	}
}

static void
refresh_cb(evutil_socket_t fd, short what, void *arg)
{
	refresh_map();
}

/* ---- connecting ---- */

static void
bus_connect(void)
{
	if (B.stopping)
		return;
	switch (B.mode) {
	case REDISURL_ONE:
		(void)node_open(B.node[0]);
		break;
	case REDISURL_SENTINEL:
		sentinel_resolve();	/* found opens the links */
		break;
	case REDISURL_CLUSTER:
		refresh_map();		/* the map opens the links */
		break;
	}
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	bus_connect();
}

/* ---- commands ---- */

int
bus_command(int argc, const char *const *argv, const size_t *argl, bus_reply_fn *fn, void *arg)
{
	struct node *n;

	if (!B.ready || argc < 2 || (n = owner_of(argv[1], argl[1])) == NULL)
		return -1;
	return node_send(n, argc, argv, argl, fn, arg);
}

int
bus_command_at(int i, int argc, const char *const *argv, const size_t *argl, bus_reply_fn *fn, void *arg)
{
	if (!B.ready || i < 0 || i >= B.nnodes)
		return -1;
	return node_send(B.node[i], argc, argv, argl, fn, arg);
}

int
bus_publish(const char *ch, size_t chlen, const char *payload, size_t plen, bus_reply_fn *fn, void *arg)
{
	const char *argv[3] = { cluster() ? "SPUBLISH" : "PUBLISH", ch, payload };
	size_t argl[3] = { strlen(argv[0]), chlen, plen };

	return bus_command(3, argv, argl, fn, arg);
}

int
bus_eval(int script, int nkeys, int argc, const char *const *argv, const size_t *argl,
    bus_reply_fn *fn, void *arg)
{
	const char *av[24];
	size_t al[24];
	char nk[24];
	struct node *n;

	if (!B.ready || script < 0 || script >= nscripts || argc + 3 > 24 || nkeys > argc || nkeys < 0)
		return -1;
	n = nkeys > 0 ? owner_of(argv[0], argl[0]) : B.node[0];
	if (n == NULL)
		return -1;
	av[0] = "EVALSHA";
	al[0] = 7;
	av[1] = scripts[script].sha;
	al[1] = 40;
	av[2] = nk;
	al[2] = jbuf_itoa(nk, nkeys);
	memcpy(av + 3, argv, (size_t)argc * sizeof(*av));
	memcpy(al + 3, argl, (size_t)argc * sizeof(*al));
	return node_send(n, argc + 3, av, al, fn, arg);
}

/* ---- start, stop ---- */

static int
load_scripts(void)
{
	static const char hex[] = "0123456789abcdef";
	char prelude[512];
	int k;
	size_t pl;

	/*
	 * PUB: sharded pub/sub on a Cluster. Behind Sentinel, a master fenced
	 * off by a failover (sentinel_moved) refuses every script.
	 */
	if (cluster())
		k = snprintf(prelude, sizeof(prelude), "local PUB = 'SPUBLISH'\nlocal GEN = false\n");
	else if (B.mode == REDISURL_SENTINEL)
		k = snprintf(prelude, sizeof(prelude), "local PUB = 'PUBLISH'\n"
		    "if redis.call('EXISTS', [===[%sfence]===]) == 1 then "
		    "return redis.error_reply('FENCED this master was replaced by a failover') end\n"
		    "local GEN = redis.call('GET', [===[%sgen]===])\n",
		    B.cfg->redis_prefix, B.cfg->redis_prefix);
	else
		k = snprintf(prelude, sizeof(prelude), "local PUB = 'PUBLISH'\nlocal GEN = false\n");
	if (k < 0 || (size_t)k >= sizeof(prelude) || strstr(B.cfg->redis_prefix, "]===]") != NULL)
		return -1;
	pl = (size_t)k;
	for (int i = 0; i < nscripts; i++) {
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;

		free(scripts[i].text);
		if ((scripts[i].text = malloc(pl + scripts[i].len + 1)) == NULL)
			return -1;
		memcpy(scripts[i].text, prelude, pl);
		memcpy(scripts[i].text + pl, scripts[i].src, scripts[i].len);
		scripts[i].tlen = pl + scripts[i].len;
		scripts[i].text[scripts[i].tlen] = '\0';
		if (EVP_Digest(scripts[i].text, scripts[i].tlen, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
			return -1;
		for (unsigned int b = 0; b < 20; b++) {
			scripts[i].sha[2 * b] = hex[md[b] >> 4];
			scripts[i].sha[2 * b + 1] = hex[md[b] & 15];
		}
		scripts[i].sha[40] = '\0';
	}
	return 0;
}

int
bus_start(struct event_base *base, const struct config *cfg, const char *wid,
    const struct bus_handlers *h)
{
	const struct redisurl *u = &cfg->redis_addr;
	struct timeval tv;
	int every;

	memset(&B, 0, sizeof(B));
	B.base = base;
	B.cfg = cfg;
	B.h = h;
	B.mode = u->mode;
	B.backoff = BACKOFF_MIN_MS;
	B.timeout_ms = cfg->presence_ttl / 3 < 1000 ? 1000 : cfg->presence_ttl / 3 > 10000 ? 10000 :
	    cfg->presence_ttl / 3;
	snprintf(B.wid, sizeof(B.wid), "%s", wid);
	for (unsigned s = 0; s < RESP_SLOTS; s++)
		B.owner[s] = NO_NODE;
	if (load_scripts() == -1)
		return -1;
	if (u->tls) {
		char err[CFG_ERR_LEN];

		if ((B.tls = tls_client_ctx_new(cfg, err, sizeof(err))) == NULL) {
			log_error("redis TLS: %s", err);
			return -1;
		}
	}
	if (B.mode == REDISURL_ONE &&
	    node_new(u->is_unix ? u->path : u->node[0].host, u->is_unix ? 0 : u->node[0].port) == NULL)
		return -1;
	if (B.mode == REDISURL_SENTINEL && sentinel_start(base, cfg, wid, B.tls, &sentinel_cbs) == -1)
		return -1;
	if ((B.retry = evtimer_new(base, retry_cb, NULL)) == NULL ||
	    (B.alive = event_new(base, -1, EV_PERSIST, alive_cb, NULL)) == NULL ||
	    (B.canary = event_new(base, -1, EV_PERSIST, canary_cb, NULL)) == NULL ||
	    (B.refresh = event_new(base, -1, EV_PERSIST, refresh_cb, NULL)) == NULL ||
	    (B.apply = event_new(base, -1, 0, apply_cb, NULL)) == NULL ||
	    (B.fence_timer = evtimer_new(base, fence_timeout, NULL)) == NULL)
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
	if (cluster()) {
		tv.tv_sec = MAP_REFRESH_MS / 1000;
		tv.tv_usec = (MAP_REFRESH_MS % 1000) * 1000;
		if (event_add(B.refresh, &tv) == -1)
			return -1;
	}
	bus_connect();
	return 0;
}

void
bus_stop(void)
{
	B.stopping = 1;
	B.ready = 0;
	if (B.mode == REDISURL_SENTINEL)
		sentinel_stop();
	if (B.seed != NULL)
		rlink_free(B.seed, 0);
	B.seed = NULL;
	for (int i = 0; i < B.nnodes; i++)
		node_free(B.node[i]);
	B.nnodes = 0;
	if (B.retry != NULL)
		event_free(B.retry);
	if (B.alive != NULL)
		event_free(B.alive);
	if (B.canary != NULL)
		event_free(B.canary);
	if (B.refresh != NULL)
		event_free(B.refresh);
	if (B.apply != NULL)
		event_free(B.apply);
	if (B.fence_timer != NULL)
		event_free(B.fence_timer);
	B.retry = B.alive = B.canary = B.refresh = B.apply = B.fence_timer = NULL;
	resub_clear();
	free(B.new_map);
	B.new_map = NULL;
	if (B.tls != NULL)
		SSL_CTX_free(B.tls);
	B.tls = NULL;
	for (int i = 0; i < nscripts; i++) {
		free(scripts[i].text);
		scripts[i].text = NULL;
	}
	free(B.out);
	B.out = NULL;
	B.outcap = 0;
}
