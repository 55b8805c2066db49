/*
 * rlink.c: one Redis connection, driven by a libevent bufferevent (plain
 * or OpenSSL) and read by hiredis's redisReader.
 *
 * roomd does not use hiredis's async client: version 0.14 (Debian 12) knows
 * nothing of sharded pub/sub and asserts on an `smessage`, has no TLS and
 * no timeouts. Driving the socket here and using hiredis as the parser
 * (the use its README supports) gives one code path for commands, classic
 * and sharded pub/sub, TLS and a reset on purpose.
 *
 * Commands are answered in order: each one sent queues its callback in a
 * ring, and each reply takes the oldest. A subscriber link queues nothing
 * after its login: what arrives there goes to push.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "resp.h"
#include "rlink.h"

#define RLINK_MAX_OUT	(256u << 20)	/* a link whose server stopped reading is given up */

enum { ST_CONNECTING, ST_LOGIN, ST_UP, ST_DEAD };

struct pend {
	rlink_reply_fn	*fn;
	void		*arg;
};

struct rlink {
	struct event_base	*base;
	struct bufferevent	*bev;
	redisReader		*reader;
	struct event		*timer;		/* connect and login */
	const struct rlink_cbs	*cbs;
	void			*ud;
	int			 state;
	int			 subscriber;
	int			 tcp;
	int			 tls;
	int			 opening;	/* inside rlink_open: a failure is its answer */
	int			 login_left;	/* login replies still due */
	int			 dispatching;	/* inside a callback: free later */
	int			 free_later;
	int			 reset_later;
	struct pend		*q;		/* ring of callbacks, oldest at head */
	size_t			 qhead, qlen, qcap;
	char			 peer[300];
};

int
rlink_is_up(const struct rlink *l)
{
	return l->state == ST_UP;
}

size_t
rlink_pending(const struct rlink *l)
{
	return l->qlen;
}

void
rlink_push(struct rlink *l)
{
	struct evbuffer *out;

	if (l->state != ST_UP || l->tls || l->bev == NULL)
		return;
	out = bufferevent_get_output(l->bev);
	/*
	 * What cannot go now (EAGAIN, or an error the bufferevent's own write
	 * will meet and report) stays queued for the bufferevent.
	 */
	if (evbuffer_get_length(out) > 0)
		(void)evbuffer_write(out, bufferevent_getfd(l->bev));
}

const char *
rlink_peer(const struct rlink *l)
{
	return l->peer;
}

static int
q_push(struct rlink *l, rlink_reply_fn *fn, void *arg)
{
	if (l->qlen == l->qcap) {
		size_t ncap = l->qcap == 0 ? 64 : l->qcap * 2;
		struct pend *nq = malloc(ncap * sizeof(*nq));

		if (nq == NULL)
			return -1;
		for (size_t i = 0; i < l->qlen; i++)
			nq[i] = l->q[(l->qhead + i) % l->qcap];
		free(l->q);
		l->q = nq;
		l->qcap = ncap;
		l->qhead = 0;
	}
	l->q[(l->qhead + l->qlen) % l->qcap] = (struct pend){ fn, arg };
	l->qlen++;
	return 0;
}

static struct pend
q_pop(struct rlink *l)
{
	struct pend p = l->q[l->qhead];

	l->qhead = (l->qhead + 1) % l->qcap;
	l->qlen--;
	return p;
}

/* Every pending callback, with NULL, oldest first. */
static void
fail_pending(struct rlink *l)
{
	while (l->qlen > 0) {
		struct pend p = q_pop(l);

		if (p.fn != NULL)
			p.fn(NULL, p.arg);
	}
}

static void
destroy(struct rlink *l, int reset)
{
	if (l->bev != NULL) {
		evutil_socket_t fd = bufferevent_getfd(l->bev);

		if (reset && fd >= 0) {
			struct linger lg = { 1, 0 };

			if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == -1)
				log_debug("redis %s: setsockopt(SO_LINGER) failed: %s", l->peer, strerror(errno));
		}
		bufferevent_free(l->bev);
	}
	if (l->timer != NULL)
		event_free(l->timer);
	if (l->reader != NULL)
		redisReaderFree(l->reader);
	free(l->q);
	free(l);
}

void
rlink_free(struct rlink *l, int reset)
{
	if (l == NULL)
		return;
	if (l->state != ST_DEAD) {
		l->state = ST_DEAD;
		fail_pending(l);
	}
	if (l->dispatching) {
		l->free_later = 1;
		l->reset_later |= reset;
		return;
	}
	destroy(l, reset);
}

/* The link failed: pending callbacks get NULL, the owner hears why, the link goes. */
static void
fail(struct rlink *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
fail(struct rlink *l, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	if (l->state == ST_DEAD)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	l->state = ST_DEAD;
	if (l->opening)
		return;
	l->dispatching++;
	fail_pending(l);
	l->cbs->down(l->ud, l, why);
	l->dispatching--;
	if (!l->dispatching) {
		destroy(l, 1);
		return;
	}
	l->free_later = 1;
}

/* Send without the state check (the login goes out before the link is up). */
static int
send_raw(struct rlink *l, int argc, const char *const *argv, const size_t *argl, const char *resp, size_t len,
    rlink_reply_fn *fn, void *arg, int queue)
{
	struct evbuffer *out = bufferevent_get_output(l->bev);
	struct evbuffer_iovec v;

	if (evbuffer_get_length(out) > RLINK_MAX_OUT)
		return -1;
	if (queue && q_push(l, fn, arg) == -1)
		return -1;
	if (resp != NULL) {
		if (evbuffer_add(out, resp, len) == 0)
			return 0;
	} else {
		size_t need = resp_size(argc, argl);

		if (need != SIZE_MAX && evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) == 1) {
			v.iov_len = resp_format(v.iov_base, argc, argv, argl);
			if (evbuffer_commit_space(out, &v, 1) == 0)
				return 0;
		}
	}
	if (queue)
		l->qlen--;	/* take back the entry just pushed */
	return -1;
}

static int
sendable(const struct rlink *l, rlink_reply_fn *fn)
{
	return l->state == ST_UP && !(l->subscriber && fn != NULL);
}

int
rlink_command(struct rlink *l, int argc, const char *const *argv, const size_t *argl, rlink_reply_fn *fn,
    void *arg)
{
	if (!sendable(l, fn))
		return -1;
	return send_raw(l, argc, argv, argl, NULL, 0, fn, arg, !l->subscriber);
}

int
rlink_send(struct rlink *l, const char *resp, size_t len, rlink_reply_fn *fn, void *arg)
{
	if (!sendable(l, fn))
		return -1;
	return send_raw(l, 0, NULL, NULL, resp, len, fn, arg, !l->subscriber);
}

/* ---- login ---- */

static void
login_reply(redisReply *r, void *arg)
{
	struct rlink *l = arg;

	if (r == NULL)
		return;		/* the link failed: fail() reports it */
	if (r->type == REDIS_REPLY_ERROR) {
		/* CLIENT SETNAME refused (an ACL without it) costs only the name. */
		if (l->login_left == 1) {
			log_warn("redis %s: CLIENT SETNAME failed: %s", l->peer, r->str);
		} else {
			fail(l, "login failed: %s", r->str);
			return;
		}
	}
	if (--l->login_left > 0)
		return;
	l->state = ST_UP;
	event_del(l->timer);
	l->cbs->up(l->ud, l);
}

static void
login(struct rlink *l, const struct rlink_opts *o)
{
	char db[16];
	int ok = 1;

	l->state = ST_LOGIN;
	if (o->password != NULL && o->password[0] != '\0') {
		const char *av[3] = { "AUTH", o->user, o->password };
		size_t al[3] = { 4, o->user != NULL ? strlen(o->user) : 0, strlen(o->password) };

		if (o->user != NULL && o->user[0] != '\0')
			ok &= send_raw(l, 3, av, al, NULL, 0, login_reply, l, 1) == 0;
		else {
			av[1] = o->password;
			al[1] = al[2];
			ok &= send_raw(l, 2, av, al, NULL, 0, login_reply, l, 1) == 0;
		}
		l->login_left++;
	}
	if (o->db != 0) {
		const char *av[2] = { "SELECT", db };
		size_t al[2] = { 6, (size_t)snprintf(db, sizeof(db), "%d", o->db) };

		ok &= send_raw(l, 2, av, al, NULL, 0, login_reply, l, 1) == 0;
		l->login_left++;
	}
	/* Last: login_reply forgives its error only. */
	{
		const char *av[3] = { "CLIENT", "SETNAME", o->name != NULL ? o->name : "roomd" };
		size_t al[3] = { 6, 7, strlen(av[2]) };

		ok &= send_raw(l, 3, av, al, NULL, 0, login_reply, l, 1) == 0;
		l->login_left++;
	}
	if (!ok)
		fail(l, "out of memory");
}

/* ---- events ---- */

static void
dispatch(struct rlink *l, redisReply *r)
{
	if (l->state == ST_UP && l->subscriber) {
		l->cbs->push(l->ud, l, r);
		return;
	}
	if (l->qlen == 0) {
		fail(l, "a reply nobody asked for");
		return;
	}
	{
		struct pend p = q_pop(l);

		if (p.fn != NULL)
			p.fn(r, p.arg);
	}
}

/*
 * libevent 2.1 reads a bufferevent 4 KB per loop turn, which splits a burst
 * of pushes over many turns (and each turn's flush to the clients). A plain
 * link reads on, up to RLINK_READS x sizeof(rbuf) a turn.
 */
#define RLINK_READS	8
static char rbuf[64 * 1024];

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct rlink *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[16];
	char err[160] = "";
	void *reply;

	l->dispatching++;
	while (l->state != ST_DEAD && evbuffer_get_length(in) > 0) {
		int n = evbuffer_peek(in, -1, NULL, v, 16);
		size_t total = 0;

		for (int i = 0; i < n && i < 16; i++) {
			if (redisReaderFeed(l->reader, v[i].iov_base, v[i].iov_len) != REDIS_OK) {
				fail(l, "out of memory reading a reply");
				break;
			}
			total += v[i].iov_len;
		}
		evbuffer_drain(in, total);
	}
	for (int i = 0; i < RLINK_READS && !l->tls && l->state != ST_DEAD; i++) {
		ssize_t n = read(bufferevent_getfd(bev), rbuf, sizeof(rbuf));

		if (n > 0) {
			if (redisReaderFeed(l->reader, rbuf, (size_t)n) != REDIS_OK)
				fail(l, "out of memory reading a reply");
			if ((size_t)n == sizeof(rbuf))
				continue;
		} else if (n == 0)
			snprintf(err, sizeof(err), "closed by the server");
		else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			snprintf(err, sizeof(err), "read failed: %s", strerror(errno));
		break;
	}
	while (l->state != ST_DEAD) {
		reply = NULL;
		if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
			fail(l, "protocol error: %s", l->reader->errstr);
			break;
		}
		if (reply == NULL)
			break;
		dispatch(l, reply);
		freeReplyObject(reply);
	}
	if (err[0] != '\0')
		fail(l, "%s", err);	/* after the replies that came before it */
	l->dispatching--;
	if (l->free_later && !l->dispatching)
		destroy(l, l->reset_later || l->state == ST_DEAD);
}

static void
ssl_errors(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e;
	size_t o = 0;

	buf[0] = '\0';
	while ((e = bufferevent_get_openssl_error(bev)) != 0 && o + 1 < len) {
		char one[200];

		ERR_error_string_n(e, one, sizeof(one));
		o += (size_t)snprintf(buf + o, len - o, "%s%s", o > 0 ? "; " : "", one);
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct rlink *l = arg;

	if (what & BEV_EVENT_CONNECTED) {
		evutil_socket_t fd = bufferevent_getfd(bev);
		int one = 1;

		/* Commands are small and each one waits for its answer: no Nagle. */
		if (l->tcp && (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1 ||
		    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) == -1))
			log_debug("redis %s: setsockopt failed: %s", l->peer, strerror(errno));
		return;
	}
	if (what & BEV_EVENT_EOF) {
		fail(l, "closed by the server");
		return;
	}
	if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		char tls[400];
		int err = EVUTIL_SOCKET_ERROR();

		ssl_errors(bev, tls, sizeof(tls));
		if (tls[0] != '\0')
			fail(l, "TLS: %s", tls);
		else if (what & BEV_EVENT_TIMEOUT)
			fail(l, "timed out");
		else
			fail(l, "%s", err != 0 ? evutil_socket_error_to_string(err) : "connection error");
	}
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct rlink *l = arg;

	fail(l, l->state == ST_CONNECTING ? "connect timed out" : "login timed out");
}

/* Whether host is an IP address literal (no SNI, verified as an IP). */
static int
is_ip(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

struct rlink *
rlink_open(struct event_base *base, const struct rlink_opts *o, const struct rlink_cbs *cbs, void *ud,
    char *why, size_t whylen)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	struct rlink *l;
	struct timeval tv;
	SSL *ssl = NULL;

	memset(&ss, 0, sizeof(ss));
	if (o->path != NULL) {
		struct sockaddr_un *un = (struct sockaddr_un *)&ss;

		if (strlen(o->path) >= sizeof(un->sun_path)) {
			snprintf(why, whylen, "socket path too long");
			return NULL;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, o->path, strlen(o->path) + 1);
		sslen = sizeof(*un);
	} else {
		struct addrinfo hints, *res = NULL;
		char port[8];
		int rc;

		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		snprintf(port, sizeof(port), "%d", o->port);
		if ((rc = getaddrinfo(o->host, port, &hints, &res)) != 0 || res == NULL) {
			snprintf(why, whylen, "cannot resolve %s: %s", o->host, gai_strerror(rc));
			return NULL;
		}
		memcpy(&ss, res->ai_addr, res->ai_addrlen);
		sslen = res->ai_addrlen;
		freeaddrinfo(res);
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	l->base = base;
	l->cbs = cbs;
	l->ud = ud;
	l->subscriber = o->subscriber;
	if (o->path != NULL)
		snprintf(l->peer, sizeof(l->peer), "%s", o->path);
	else
		snprintf(l->peer, sizeof(l->peer), strchr(o->host, ':') != NULL ? "[%s]:%d" : "%s:%d", o->host,
		    o->port);
	if ((l->reader = redisReaderCreate()) == NULL || (l->timer = evtimer_new(base, on_timer, l)) == NULL)
		goto oom;
	if (o->tls != NULL) {
		X509_VERIFY_PARAM *vp;

		if ((ssl = SSL_new(o->tls)) == NULL)
			goto oom;
		vp = SSL_get0_param(ssl);
		if (is_ip(o->host)) {
			if (X509_VERIFY_PARAM_set1_ip_asc(vp, o->host) != 1)
				goto oom;
		} else if (SSL_set_tlsext_host_name(ssl, o->host) != 1 || SSL_set1_host(ssl, o->host) != 1)
			goto oom;
		l->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
		    BEV_OPT_CLOSE_ON_FREE);
	} else
		l->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (l->bev == NULL) {
		if (ssl != NULL)
			SSL_free(ssl);
		goto oom;
	}
	bufferevent_setcb(l->bev, on_read, NULL, on_event, l);
	if (bufferevent_enable(l->bev, EV_READ | EV_WRITE) == -1)
		goto oom;
	tv.tv_sec = o->timeout_ms / 1000;
	tv.tv_usec = (o->timeout_ms % 1000) * 1000;
	if (event_add(l->timer, &tv) == -1)
		goto oom;
	l->tcp = o->path == NULL;
	l->tls = o->tls != NULL;
	l->state = ST_CONNECTING;
	l->opening = 1;
	if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&ss, (int)sslen) == -1) {
		snprintf(why, whylen, "connect failed: %s", strerror(errno));
		destroy(l, 0);
		return NULL;
	}
	/* Queued now, written once connected, answered before anything sent later. */
	login(l, o);
	l->opening = 0;
	if (l->state == ST_DEAD) {
		snprintf(why, whylen, "out of memory");
		destroy(l, 0);
		return NULL;
	}
	return l;
oom:
	snprintf(why, whylen, "out of memory");
	destroy(l, 0);
	return NULL;
}
