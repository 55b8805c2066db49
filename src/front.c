/*
 * front.c: a client connection until it is a WebSocket. Reads the PROXY
 * header (on listeners marked proxy_protocol) and HTTP/1.1 request heads
 * (bounded by max_request_size and handshake_timeout), serves the web
 * page's static files and the admin endpoints (health, readiness,
 * metrics) with keep-alive, and runs the upgrade gates (route, draining,
 * origin, per-address limits, tokens) before answering 101 and handing
 * the connection to ws.c and the route's handler.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "addrlimit.h"
#include "apiproto.h"
#include "auth.h"
#include "clock.h"
#include "config.h"
#include "conn.h"
#include "deflate.h"
#include "front.h"
#include "http.h"
#include "jbuf.h"
#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "proxy.h"
#include "session.h"
#include "ws.h"
#include "ws_frame.h"
#include "www.h"

/*
 * Answers queued for one client before its next requests wait unread:
 * queue entries (a file answer is two, its head and the file, which it
 * holds open until sent) and bytes.
 */
#define FRONT_MAX_QUEUED	8
#define FRONT_BACKLOG		(1024 * 1024)

static void front_on_read(struct conn *, uint8_t *, size_t);
static void front_on_eof(struct conn *, const char *);
static void front_on_tick(struct conn *, uint64_t);
static void front_on_shutdown(struct conn *);
static void front_on_free(struct conn *);

static void api_fail(struct session *, int status, const char *code, const char *message);

static const struct conn_handler front_handler = {
	front_on_read, front_on_eof, front_on_tick, front_on_shutdown, front_on_free,
};

int
front_accept(struct loop *l, int fd, const struct sockaddr *sa, int flags, SSL_CTX *tls)
{
	struct session *s = calloc(1, sizeof(*s));
	uint64_t r[2];

	if (s == NULL)
		return -1;
	if (conn_init(&s->c, &l->conns, fd, sa, &front_handler, tls) == -1) {
		free(s);
		return -1;
	}
	r[0] = loop_random(l);
	r[1] = loop_random(l);
	memcpy(s->uuid, r, 16);
	s->uuid[6] = (uint8_t)((s->uuid[6] & 0x0f) | 0x40);	/* version 4 */
	s->uuid[8] = (uint8_t)((s->uuid[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	s->created = s->last_rx = s->last_ping = clock_ms();
	s->state = (flags & FRONT_PROXY) ? SS_PROXY : SS_HTTP;
	s->api = (uint8_t)(flags & (FRONT_API | FRONT_API_ONLY));
	ws_log(s, LOG_LVL_DEBUG, "accepted");
	return 0;
}

/* Answer the HTTP request with an error (or a small text) and close. */
static void
http_reply(struct session *s, int status, const char *extra, const char *body, int head_only)
{
	char hdr[1024];
	size_t blen = body != NULL ? strlen(body) : 0;
	int n;

	n = snprintf(hdr, sizeof(hdr),
	    "HTTP/1.1 %d %s\r\nServer: roomd\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
	    status, http_status_text(status), blen + 1, extra != NULL ? extra : "");
	if (n < 0 || (size_t)n >= sizeof(hdr) ||
	    conn_send_copy(&s->c, hdr, (size_t)n) == -1 ||
	    (!head_only && (conn_send_copy(&s->c, body != NULL ? body : "", blen) == -1 ||
	    conn_send_copy(&s->c, "\n", 1) == -1))) {
		conn_close(&s->c);
		return;
	}
	s->state = SS_DONE;
	conn_finish(&s->c, sess_cfg(s)->close_timeout);
}

/* ---- the opening handshake ---- */

/* Whether the client lets this connection carry another request. */
static int
keep_alive(const struct http_req *r)
{
	if (http_header_has_token(r, "Connection", "close"))
		return 0;
	return r->minor >= 1 || http_header_has_token(r, "Connection", "keep-alive");
}

/* Serve a file of the web page (GET or HEAD); keeps the connection when it may. */
static void
serve_file(struct session *s, const struct http_req *req, const char *path, size_t plen, int head_only)
{
	struct www_reply wr;
	const char *inm, *ims;
	size_t inml = 0, imsl = 0;
	char hdr[1024];
	int n, ka = keep_alive(req);

	if (!http_method_is(req, "GET") && !head_only) {
		http_reply(s, 405, "Allow: GET, HEAD\r\n", "use GET or HEAD", 0);
		return;
	}
	inm = http_header(req, "If-None-Match", &inml);
	ims = http_header(req, "If-Modified-Since", &imsl);
	www_lookup(sess_cfg(s)->www_root, path, plen, inm, inml, ims, imsl, &wr);
	if (wr.status != 200 && wr.status != 304) {
		const char *why = wr.status == 404 ? "not found" : wr.status == 403 ? "forbidden path" :
		    "bad path";

		ws_log(s, LOG_LVL_INFO, "static file refused with %d", wr.status);
		http_reply(s, wr.status, NULL, why, head_only);
		return;
	}
	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\nServer: roomd\r\n%s",
	    wr.status, http_status_text(wr.status), wr.headers);
	if (wr.status == 200)
		n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "Content-Length: %llu\r\n",
		    (unsigned long long)wr.size);
	n += snprintf(hdr + n, sizeof(hdr) - (size_t)n, "Connection: %s\r\n\r\n",
	    ka ? "keep-alive" : "close");
	if ((size_t)n >= sizeof(hdr) || conn_send_copy(&s->c, hdr, (size_t)n) == -1) {
		if (wr.fd >= 0)
			close(wr.fd);
		conn_close(&s->c);
		return;
	}
	if (wr.fd >= 0 && head_only)
		close(wr.fd);
	else if (wr.fd >= 0 && conn_send_file(&s->c, wr.fd, 0, (uint32_t)wr.size) == -1) {
		conn_close(&s->c);	/* conn_send_file closed the file */
		return;
	}
	if (!ka) {
		s->state = SS_DONE;
		conn_finish(&s->c, sess_cfg(s)->close_timeout);
		return;
	}
	/* The next request gets a fresh handshake_timeout. */
	s->created = clock_ms();
}

static void
record_info(struct session *s, const struct http_req *r)
{
	const char *v[5];
	size_t l[5];
	size_t total = 0;

	v[0] = r->path;
	l[0] = r->path_len;
	v[1] = r->query;
	l[1] = r->query_len;
	if ((v[2] = http_header(r, "Origin", &l[2])) == NULL)
		l[2] = 0;
	if ((v[3] = http_header(r, "Cookie", &l[3])) == NULL)
		l[3] = 0;
	if ((v[4] = http_header(r, "Authorization", &l[4])) == NULL)
		l[4] = 0;
	for (int i = 0; i < 5; i++) {
		if (l[i] > UINT16_MAX)
			l[i] = UINT16_MAX;
		total += l[i];
	}
	if ((s->info = malloc(sizeof(*s->info) + total)) == NULL)
		return;
	s->info->path_len = (uint16_t)l[0];
	s->info->query_len = (uint16_t)l[1];
	s->info->origin_len = (uint16_t)l[2];
	s->info->cookie_len = (uint16_t)l[3];
	s->info->auth_len = (uint16_t)l[4];
	total = 0;
	for (int i = 0; i < 5; i++) {
		if (l[i] > 0)
			memcpy(s->info->data + total, v[i], l[i]);
		total += l[i];
	}
}

/* Answer GET /metrics with the server-wide counters. */
static void
serve_metrics(struct session *s, int head_only)
{
	static struct jbuf out;
	char hdr[256];
	int n;

	metrics_render(&out);
	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 200 OK\r\nServer: roomd\r\n"
	    "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n", out.len);
	if (out.oom || conn_send_copy(&s->c, hdr, (size_t)n) == -1 ||
	    (!head_only && conn_send_copy(&s->c, out.p, out.len) == -1)) {
		conn_close(&s->c);
		return;
	}
	s->state = SS_DONE;
	conn_finish(&s->c, sess_cfg(s)->close_timeout);
}

static int
path_is(const struct http_req *r, const char *p)
{
	return strlen(p) == r->path_len && memcmp(r->path, p, r->path_len) == 0;
}

/* Serve /healthz, /readyz and /metrics; returns 1 if the request was one of them. */
static int
serve_admin(struct session *s, const struct http_req *req, int head_only)
{
	const struct config *cf = sess_cfg(s);
	char why[128];
	int health = path_is(req, cf->health_path), ready = path_is(req, cf->ready_path);
	int metrics = strcmp(cf->metrics_path, "off") != 0 && path_is(req, cf->metrics_path);

	if (!health && !ready && !metrics)
		return 0;
	if (!http_method_is(req, "GET") && !head_only) {
		http_reply(s, 405, "Allow: GET, HEAD\r\n", "use GET", 0);
		return 1;
	}
	if (health)
		http_reply(s, 200, NULL, "ok", head_only);
	else if (metrics)
		serve_metrics(s, head_only);
	else if (!loop_ready(sess_loop(s), why, sizeof(why))) {
		char body[160];

		snprintf(body, sizeof(body), "not ready: %s", why);
		http_reply(s, 503, NULL, body, head_only);
	} else
		http_reply(s, 200, NULL, "ready", head_only);
	return 1;
}

static int
trusted_peer(const struct config *cf, const struct conn *c)
{
	for (int i = 0; i < cf->ntrusted; i++)
		if (cidr_match(&cf->trusted[i], c->family, c->ip))
			return 1;
	return 0;
}

/* Take the next address off the right end of a comma list; 0 when none is left. */
static int
pop_right(const char *v, size_t *n, const char **item, size_t *ilen)
{
	const char *e = v + *n, *s;

	while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == ','))
		e--;
	if (e == v)
		return 0;
	for (s = e; s > v && s[-1] != ','; s--)
		;
	*item = s;
	*ilen = (size_t)(e - s);
	*n = (size_t)(s - v);
	return 1;
}

/*
 * Behind trusted proxies the client is the right-most address in
 * Forwarded (for=) or X-Forwarded-For that is not itself a trusted proxy;
 * anyone else's header is ignored, so it cannot be forged.
 */
static void
real_client(struct session *s, const struct http_req *r)
{
	const char *name = "X-Forwarded-For", *item;
	size_t n, il, nl;
	int forwarded = 0, family;
	uint8_t ip[16];

	if (sess_cfg(s)->ntrusted == 0 || !trusted_peer(sess_cfg(s), &s->c))
		return;
	/* Forwarded (RFC 7239) wins when present. */
	if (http_header_count(r, "Forwarded") > 0) {
		name = "Forwarded";
		forwarded = 1;
	}
	nl = strlen(name);
	/* Several lines of one field are one list (RFC 9110 5.3): walk it from the right end. */
	for (int i = r->nhdr - 1; i >= 0; i--) {
		const struct http_hdr *h = &r->hdr[i];
		const char *v = h->value;

		if (h->nlen != nl || strncasecmp(h->name, name, nl) != 0)
			continue;
		n = h->vlen;
		while (pop_right(v, &n, &item, &il)) {
			if (forwarded) {
				/* for=addr among ;-separated pairs */
				const char *f = NULL;

				for (size_t k = 0; k + 4 <= il; k++)
					if (strncasecmp(item + k, "for=", 4) == 0 && (k == 0 ||
					    item[k - 1] == ';' || item[k - 1] == ' ')) {
						f = item + k + 4;
						break;
					}
				if (f == NULL)
					return;
				il = (size_t)(item + il - f);
				item = f;
				for (size_t k = 0; k < il; k++)
					if (item[k] == ';') {
						il = k;
						break;
					}
			}
			if (proxy_ip_parse(item, il, &family, ip) == -1)
				return;		/* "unknown" or garbage: keep what we have */
			s->c.family = (uint8_t)family;
			memcpy(s->c.ip, ip, 16);
			s->c.port = 0;
			if (!trusted_peer(sess_cfg(s), &s->c))
				return;
		}
	}
}

/* The value of a cookie in the Cookie header(s); NULL if absent. */
static const char *
cookie_value(const struct http_req *r, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (int i = 0; i < r->nhdr; i++) {
		const struct http_hdr *h = &r->hdr[i];
		const char *p = h->value, *e = h->value + h->vlen, *semi;

		if (h->nlen != 6 || strncasecmp(h->name, "Cookie", 6) != 0)
			continue;
		for (; p < e; p = semi + 1) {
			while (p < e && (*p == ' ' || *p == '\t'))
				p++;
			if ((semi = memchr(p, ';', (size_t)(e - p))) == NULL)
				semi = e;
			if ((size_t)(semi - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
				*len = (size_t)(semi - p - (ptrdiff_t)nl - 1);
				return p + nl + 1;
			}
		}
	}
	return NULL;
}

/* Whether a trusted proxy in front of us says the client spoke TLS to it. */
static int
forwarded_https(const struct session *s, const struct http_req *r)
{
	const char *v;
	size_t vl;

	if (sess_cfg(s)->ntrusted == 0 || !trusted_peer(sess_cfg(s), &s->c))
		return 0;
	if ((v = http_header(r, "X-Forwarded-Proto", &vl)) != NULL)
		return vl >= 5 && strncasecmp(v, "https", 5) == 0 && (vl == 5 || v[5] == ',' || v[5] == ' ');
	if ((v = http_header(r, "Forwarded", &vl)) != NULL) {
		for (size_t i = 0; i + 11 <= vl; i++)
			if (strncasecmp(v + i, "proto=https", 11) == 0)
				return 1;
	}
	return 0;
}

/*
 * Whether the Origin may open a WebSocket here (cross-site WebSocket
 * hijacking). By default only the same origin: the scheme this connection
 * came in with (https over TLS, or behind a trusted proxy that says so) and
 * the Host the client asked for. allowed_origins lists others, "*" any,
 * "null" the pages a browser opened from disk.
 */
static int
origin_ok(const struct session *s, const struct http_req *r)
{
	const struct config *cf = sess_cfg(s);
	const char *o, *host, *p, *sep, *scheme;
	size_t ol, hl, sl;

	if ((o = http_header(r, "Origin", &ol)) == NULL)
		return cf->allow_missing_origin;
	if (cf->allowed_origins == NULL) {
		scheme = s->c.ssl != NULL || forwarded_https(s, r) ? "https://" : "http://";
		sl = strlen(scheme);
		if ((host = http_header(r, "Host", &hl)) == NULL || ol < sl || strncasecmp(o, scheme, sl) != 0)
			return 0;
		return ol - sl == hl && strncasecmp(o + sl, host, hl) == 0;
	}
	for (p = cf->allowed_origins; *p != '\0'; p = *sep != '\0' ? sep + 1 : sep) {
		while (*p == ' ' || *p == ',')
			p++;
		if ((sep = strpbrk(p, " ,")) == NULL)
			sep = p + strlen(p);
		if ((sep - p == 1 && *p == '*') ||
		    ((size_t)(sep - p) == ol && strncasecmp(p, o, ol) == 0))
			return 1;
	}
	return 0;
}

/*
 * Tokens: ?token=, then Authorization: Bearer, then the auth cookie. With a
 * valid one the session gets an identity; a bad one is always refused, a
 * missing one only when auth is required. Returns 0 to go on, -1 if refused
 * with an HTTP answer already, 1 to upgrade only to say noAuth and close.
 */
static int
check_auth(struct session *s, const struct http_req *r, int head_only)
{
	const struct config *cf = sess_cfg(s);
	const char *tok = NULL, *why = "no token";
	char buf[AUTH_MAX_TOKEN + 1];
	size_t tl = 0;
	int required = cf->auth == CFG_AUTH_REQUIRED;

	if (cf->auth == CFG_AUTH_OFF)
		return 0;
	if ((tok = http_query_param(r->query, r->query_len, "token", &tl)) == NULL) {
		size_t al;
		const char *a = http_header(r, "Authorization", &al);

		if (a != NULL && al > 7 && strncasecmp(a, "Bearer ", 7) == 0) {
			tok = a + 7;
			tl = al - 7;
		} else
			tok = cookie_value(r, cf->auth_cookie, &tl);
	}
	if (tok != NULL && tl <= AUTH_MAX_TOKEN) {
		struct auth_identity id;

		memcpy(buf, tok, tl);
		buf[tl] = '\0';
		if (auth_verify(buf, tl, cf->auth_key, cf->auth_keylen, (long long)(clock_wall_ms() / 1000),
		    5, &id, &why) == 0) {
			if ((s->id = malloc(sizeof(*s->id))) == NULL) {
				auth_identity_free(&id);
				return -1;
			}
			*s->id = id;
			return 0;
		}
	} else if (tok == NULL && !required)
		return 0;
	else if (tok != NULL)
		why = "token too long";
	metrics_refused(REFUSE_AUTH);
	ws_log(s, LOG_LVL_INFO, "refused: %s", why);
	if (cf->auth_failure == CFG_AUTHFAIL_HTTP) {
		http_reply(s, 401, "WWW-Authenticate: Bearer\r\n", "a valid token is required", head_only);
		return -1;
	}
	return 1;
}

/* Pick the subprotocol this route speaks from the client's offer, or none. */
static const char *
pick_subprotocol(const struct session *s, const struct http_req *r)
{
	const char *name = cfg_route_kind_name(s->route->kind);

	return http_header_has_token(r, "Sec-WebSocket-Protocol", name) ? name : NULL;
}

/*
 * No route reads a request body yet. One that came anyway is never taken
 * for the next request (behind a keep-alive proxy that would be request
 * smuggling): answer and close; the lingering close discards the body.
 * A Content-Length body gets 413 (the content is more than roomd will take
 * here: none), which says what was wrong more exactly than 400; chunked
 * gets 501 (see http_body_status).
 */
static void
refuse_body(struct session *s, int status, int head_only)
{
	metrics_refused(status == 413 ? REFUSE_TOO_LARGE : REFUSE_BAD_REQUEST);
	ws_log(s, LOG_LVL_INFO, "refused a request with a body: %d", status);
	http_reply(s, status, NULL, status == 413 ? "this server reads no request body here" :
	    "chunked request bodies are not implemented: send Content-Length", head_only);
}

/* A request head http_parse refused with rc: answer and close. */
static void
bad_head(struct session *s, int rc)
{
	metrics_refused(rc == 431 ? REFUSE_TOO_LARGE : REFUSE_BAD_REQUEST);
	ws_log(s, LOG_LVL_INFO, "bad request head: %d", rc);
	http_reply(s, rc, NULL, rc == 431 ? "too many header fields" :
	    rc == 505 ? "HTTP/1.1 only" : rc == 501 ? "no transfer coding is implemented" :
	    "malformed request", 0);
}

/* A parsed request that is not the API's: static files, admin endpoints, upgrades. */
static void
handle_request(struct session *s, const struct http_req *r)
{
	struct http_req req = *r;
	struct ws_upgrade up;
	const char *proto, *why = NULL;
	char resp[768], esc[128], ext[200];
	int rc, n, head_only, auth = 0;

	head_only = http_method_is(&req, "HEAD");
	if ((rc = http_body_status(&req, 0)) != 0) {
		refuse_body(s, rc, head_only);
		return;
	}
	real_client(s, &req);
	if (!http_wants_websocket(&req) && serve_admin(s, &req, head_only))
		return;
	if (s->api & FRONT_API_ONLY) {
		/* The API's own address serves nothing else. */
		metrics_refused(REFUSE_NOT_FOUND);
		api_fail(s, 404, "not_found", "this address serves the HTTP API under /api/ (roomd-api(7)) only");
		return;
	}
	s->route = cfg_route_find(sess_cfg(s), req.path, req.path_len);
	if (!http_wants_websocket(&req) && (s->route == NULL || s->route->kind == ROUTE_CHAT)) {
		/* A browser on a chat route gets the page; other paths are its files. */
		if (s->route != NULL)
			serve_file(s, &req, "/index.html", 11, head_only);
		else
			serve_file(s, &req, req.path, req.path_len, head_only);
		s->route = NULL;
		return;
	}
	if (s->route != NULL && (s->ops = sess_loop(s)->routes[s->route->kind]) == NULL)
		s->route = NULL;
	if (s->route == NULL) {
		metrics_refused(REFUSE_NOT_FOUND);
		ws_log(s, LOG_LVL_INFO, "no route for %s",
		    log_escape(esc, sizeof(esc), req.path, req.path_len));
		http_reply(s, 404, NULL, "no such path", head_only);
		return;
	}
	http_check_upgrade(&req, &up);
	if (up.status == 0 && sess_loop(s)->stopping && !sess_loop(s)->retiring) {
		/* Draining: clients should reconnect to another host. */
		metrics_refused(REFUSE_DRAINING);
		http_reply(s, 503, "Retry-After: 1\r\n", "draining: connect to another server", head_only);
		return;
	}
	if (up.status == 0 && !origin_ok(s, &req)) {
		char body[400], oe[160];
		size_t ol = 0;
		const char *o = http_header(&req, "Origin", &ol);

		if (o != NULL)
			log_escape(oe, sizeof(oe), o, ol);
		else
			snprintf(oe, sizeof(oe), "(none: allow_missing_origin is off)");
		snprintf(body, sizeof(body), "Origin %s may not open a WebSocket here: %s; "
		    "allowed_origins in roomd.conf lists the origins that may (allowed_origins null "
		    "for pages opened from disk)", oe, sess_cfg(s)->allowed_origins == NULL ?
		    "only pages served from this server (same scheme and Host) may" :
		    "it is not in allowed_origins");
		metrics_refused(REFUSE_ORIGIN);
		ws_log(s, LOG_LVL_INFO, "refused: Origin %s not allowed (allowed_origins %s)", oe,
		    sess_cfg(s)->allowed_origins == NULL ? "unset: same origin only" : sess_cfg(s)->allowed_origins);
		http_reply(s, 403, NULL, body, head_only);
		return;
	}
	if (up.status == 0 && (sess_cfg(s)->max_sessions_per_ip > 0 || sess_cfg(s)->max_new_sessions_per_ip > 0)) {
		if (addrlimit_open(s->c.family, s->c.ip, sess_cfg(s)->max_sessions_per_ip,
		    sess_cfg(s)->max_new_sessions_per_ip) == -1) {
			metrics_refused(REFUSE_IP_LIMIT);
			ws_log(s, LOG_LVL_INFO, "refused: too many sessions from this address");
			http_reply(s, 429, "Retry-After: 1\r\n", "too many connections from your address", head_only);
			return;
		}
		s->ip_counted = 1;
	}
	if (up.status == 0 && (auth = check_auth(s, &req, head_only)) == -1)
		return;
	if (up.status != 0) {
		const char *extra = NULL;

		metrics_refused(up.status == 405 ? REFUSE_METHOD : up.status == 426 ? REFUSE_VERSION :
		    REFUSE_BAD_REQUEST);

		if (up.status == 426)
			extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
		else if (up.status == 405)
			extra = "Allow: GET\r\n";
		ws_log(s, LOG_LVL_INFO, "refused upgrade with %d: %s", up.status, up.reason);
		http_reply(s, up.status, extra, up.reason, head_only);
		return;
	}
	record_info(s, &req);
	/* A broadcast URL names its room now: under auth_failure http, a token that does not allow it gets no upgrade. */
	if (s->info != NULL && sess_cfg(s)->auth_failure == CFG_AUTHFAIL_HTTP && s->ops->admit != NULL &&
	    (rc = s->ops->admit(s, &why)) != 0) {
		metrics_refused(REFUSE_AUTH);
		ws_log(s, LOG_LVL_INFO, "refused: %s", why);
		http_reply(s, rc, NULL, why, head_only);
		return;
	}
	proto = pick_subprotocol(s, &req);
	ext[0] = '\0';
	if (sess_cfg(s)->deflate) {
		struct deflate_config pc = { sess_cfg(s)->deflate_window_bits };
		struct deflate_params pp;

		/* Offers may span several header lines; the first acceptable one wins. */
		for (int i = 0; i < req.nhdr && s->pmd_bits == 0; i++) {
			const struct http_hdr *h = &req.hdr[i];

			if (h->nlen == 24 && strncasecmp(h->name, "Sec-WebSocket-Extensions", 24) == 0 &&
			    deflate_negotiate(h->value, h->vlen, &pc, &pp, ext, sizeof(ext)))
				s->pmd_bits = (uint8_t)pp.server_bits;
		}
	}
	n = snprintf(resp, sizeof(resp),
	    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n", up.accept,
	    proto != NULL ? "Sec-WebSocket-Protocol: " : "", proto != NULL ? proto : "",
	    proto != NULL ? "\r\n" : "", s->pmd_bits ? "Sec-WebSocket-Extensions: " : "",
	    s->pmd_bits ? ext : "", s->pmd_bits ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(resp) || conn_send_copy(&s->c, resp, (size_t)n) == -1) {
		conn_close(&s->c);
		return;
	}
	ws_open(s);
	if (auth == 1) {
		/* Upgraded only to say so in the route's protocol (the tutorial's noAuth), then 4001. */
		s->no_auth = 1;
		if (s->ops->refuse != NULL)
			s->ops->refuse(s, WS_REFUSED_AUTH);
		ws_close(s, WS_CLOSE_AUTH, "authentication required");
		return;
	}
	ws_log(s, LOG_LVL_DEBUG, "upgraded (%s)", cfg_route_kind_name(s->route->kind));
	if (s->ops->open != NULL)
		s->ops->open(s);
	/* The request's facts serve the route's admit and open only: an open session does not keep them. */
	free(s->info);
	s->info = NULL;
	/* A retiring worker's handshake in flight: served, then sent to its successor. */
	if (s->c.flags & CONN_F_SHUTDOWN)
		ws_shutdown(s);
}


/* ---- the HTTP API (roomd-api(7)); its calls run in the app layer, behind loop->api ---- */

#define API_WAIT	((size_t)-1)	/* api_request: the body is not all here yet */

_Static_assert((int)MAPI_OTHER == (int)API_NONE, "metrics count the API's calls in apiproto's order");

static struct apiproto *api_parser;
static struct jbuf api_out;

/*
 * Queue an API answer: status, JSON body. The connection stays for the
 * next request unless the client or a stopping worker says otherwise.
 */
static void
api_send(struct session *s, int status, const char *json, size_t len)
{
	char hdr[512];
	const char *extra = status == 401 ? "WWW-Authenticate: Bearer\r\n" :
	    status == 429 || status == 503 ? "Retry-After: 1\r\n" : "";
	int close = s->api_close || (s->c.flags & CONN_F_SHUTDOWN) || status == 408 || status == 413 ||
	    status == 501, n;
	struct sbuf *b;

	if (status >= 400)
		metrics_api_error((enum api_metric)s->api_method);
	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\nServer: roomd\r\nContent-Type: application/json\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s%s%sConnection: %s\r\n\r\n", status,
	    http_status_text(status), len + 1, extra, status == 405 ? "Allow: " : "",
	    status == 405 && s->api_allow != NULL ? s->api_allow : "", status == 405 ? "\r\n" : "",
	    close ? "close" : "keep-alive");
	if (s->api_head)
		len = 0;
	if (n < 0 || (size_t)n >= sizeof(hdr) || (b = sbuf_new((size_t)n + len + 1, 0)) == NULL) {
		conn_close(&s->c);
		return;
	}
	/* One block, queued: the flush at the end of the loop turn writes it with whatever else is due. */
	memcpy(sbuf_ptr(b), hdr, (size_t)n);
	memcpy(sbuf_ptr(b) + n, json, len);
	b->len = (uint32_t)n;
	if (!s->api_head) {
		sbuf_ptr(b)[(size_t)n + len] = '\n';
		b->len += (uint32_t)len + 1;
	}
	if (conn_send(&s->c, b, b->off, b->len) == -1) {
		sbuf_unref(b);
		conn_close(&s->c);
		return;
	}
	sbuf_unref(b);
	if (close) {
		s->state = SS_DONE;
		conn_finish(&s->c, sess_cfg(s)->close_timeout);
		return;
	}
	s->api_idle = 1;
	s->created = clock_ms();
}

/* Answer with an error: {"error":{"code":...,"message":...}}. */
static void
api_fail(struct session *s, int status, const char *code, const char *message)
{
	if (status == 401 || status == 429 || status >= 500 || status == 413)
		ws_log(s, LOG_LVL_INFO, "API request refused with %d: %s", status, code);
	else
		ws_log(s, LOG_LVL_DEBUG, "API request refused with %d: %s", status, code);
	apiproto_error(&api_out, code, message);
	if (api_out.oom) {
		conn_close(&s->c);
		return;
	}
	api_send(s, status, api_out.p, api_out.len);
}

/* Whether the request carries one of the API keys (or the API needs none). */
static int
api_authorized(const struct session *s, const struct http_req *req)
{
	const struct config *cf = sess_cfg(s);
	const char *keys[2 * CFG_MAX_API_KEYS], *auth;
	size_t n = 0, al = 0;

	while (n < sizeof(keys) / sizeof(keys[0]) && (keys[n] = cfg_api_key(cf, (int)n)) != NULL)
		n++;
	if (n == 0)
		return cf->api_insecure;	/* no key and not insecure: nobody (a reload kept an API listener) */
	auth = http_header(req, "Authorization", &al);
	return apiproto_key_ok(auth, al, keys, n);
}

/*
 * An API request whose head is parsed; body points at what followed the
 * head (avail bytes). Returns the body bytes used, or API_WAIT while the
 * body is not all here. The checks go cheapest and least revealing first:
 * the body's framing (413 closes, as the body is not read), the rate per
 * address, the key, the path and method, then the call's own input.
 */
static size_t
api_request(struct session *s, const struct http_req *req, const char *body, size_t avail)
{
	const struct config *cf = sess_cfg(s);
	struct api_limits lim = { (size_t)cf->max_name_length, (size_t)cf->max_roomid_length,
	    (unsigned)cf->history_size };
	struct api_error err;
	struct api_req areq;
	size_t blen = req->body == HTTP_BODY_LENGTH ? (size_t)req->body_len : 0;
	int rc;

	s->api_method = MAPI_OTHER;
	s->api_allow = NULL;
	s->api_head = 0;
	s->api_close = !keep_alive(req);
	if ((rc = http_body_status(req, (uint64_t)cf->api_max_body)) != 0) {
		char why[96];

		metrics_api_call(MAPI_OTHER);
		metrics_refused(rc == 413 ? REFUSE_TOO_LARGE : REFUSE_BAD_REQUEST);
		snprintf(why, sizeof(why), "a request body is at most %d bytes (api_max_body)", cf->api_max_body);
		api_fail(s, rc, rc == 413 ? "too_large" : "bad_request", rc == 413 ? why :
		    "chunked request bodies are not implemented: send Content-Length");
		return 0;
	}
	if (avail < blen)
		return API_WAIT;
	s->api_need = 0;
	s->api_head = http_method_is(req, "HEAD") != 0;
	real_client(s, req);
	/* Counted by the path's method, even when the HTTP method is wrong for it. */
	s->api_method = (uint8_t)apiproto_path(req->path, req->path_len);
	if (apiproto_route(req->method, req->method_len, req->path, req->path_len, &err) == API_NONE)
		s->api_allow = err.allow;
	metrics_api_call((enum api_metric)s->api_method);
	if (cf->api_rate_limit > 0 && addrlimit_rate(s->c.family, s->c.ip, cf->api_rate_limit) == -1)
		api_fail(s, 429, "rate_limited", "too many API requests from your address: api_rate_limit a second");
	else if (!api_authorized(s, req))
		api_fail(s, 401, "unauthorized", "send a valid API key: Authorization: Bearer KEY");
	else if (api_parser == NULL && (api_parser = apiproto_new()) == NULL)
		api_fail(s, 503, "unavailable", "out of memory");
	else if (apiproto_parse(api_parser, req->method, req->method_len, req->path, req->path_len, req->query,
	    req->query_len, body, blen, &lim, &areq, &err) == -1)
		api_fail(s, err.status, err.code, err.message);
	else if (sess_loop(s)->api == NULL)
		api_fail(s, 503, "unavailable", "the API is not served here");
	else {
		/* The handler answers now or later; until then the next requests wait unread. */
		s->api_busy = 1;
		s->api_sync = 1;
		sess_loop(s)->api->call(s, &areq);
		s->api_sync = 0;
		if (s->api_busy && !conn_closed(&s->c))
			conn_pause(&s->c, 1);
	}
	return blen;
}

void
front_api_answer(struct session *s, int status, const char *json, size_t len)
{
	if (s->freed || conn_closed(&s->c) || !s->api_busy)
		return;
	s->api_busy = 0;
	api_send(s, status, json, len);
	/* Answered later: once it is written, go on with what the client sent meanwhile. */
	if (!s->api_sync && s->state == SS_HTTP && !conn_closed(&s->c))
		conn_hold_until_drained(&s->c);
}

int
front_disconnect(struct loop *l, const char *user, size_t ul, const uint8_t *uuid, unsigned code,
    const char *reason)
{
	struct conn *c, *next;
	int n = 0;

	for (c = l->conns.all; c != NULL; c = next) {
		struct session *s = (struct session *)c;

		next = c->next;
		if (c->h != &front_handler || !ws_is_open(s))
			continue;
		if (uuid != NULL ? memcmp(s->uuid, uuid, 16) != 0 :
		    !((s->id != NULL && strlen(s->id->sub) == ul && memcmp(s->id->sub, user, ul) == 0) ||
		    (s->ops != NULL && s->ops->named != NULL && s->ops->named(s, user, ul))))
			continue;
		ws_log(s, LOG_LVL_INFO, "disconnected through the API with %u", code);
		ws_close(s, (uint16_t)code, reason);
		n++;
	}
	return n;
}

/* Keep n more bytes of input at the end of hbuf. -1 when out of memory. */
static int
hbuf_add(struct session *s, const void *p, size_t n)
{
	size_t need = (size_t)s->hlen + n, cap = s->hcap;
	char *nb;

	if (need > cap) {
		cap = cap < 512 ? 512 : 2 * cap;
		if (cap < need)
			cap = need;
		if ((nb = realloc(s->hbuf, cap)) == NULL)
			return -1;
		s->hbuf = nb;
		s->hcap = (uint32_t)cap;
	}
	memcpy(s->hbuf + s->hlen, p, n);
	s->hlen = (uint32_t)need;
	return 0;
}

/* Let go of the kept input. */
static void
hbuf_free(struct session *s)
{
	free(s->hbuf);
	s->hbuf = NULL;
	s->hlen = s->hcap = 0;
}

/*
 * Handle the complete requests at the start of p[0..n), in order, while
 * the connection reads HTTP (the first head's end is searched from `from`:
 * bytes before it were searched already). An upgrade hands what follows its
 * head to the frame decoder. A client that pipelines requests without
 * reading the answers gets at most FRONT_MAX_QUEUED of them queued: then
 * its requests wait, and reading from it stops, until the answers are sent
 * (every file answer holds its file open until then). A head is bounded by
 * max_request_size. Returns how many bytes were used.
 */
static size_t
take_requests(struct session *s, char *p, size_t n, size_t from)
{
	size_t max = (size_t)sess_cfg(s)->max_request_size, used = 0, end;

	while (s->state == SS_HTTP && !conn_closed(&s->c) && used < n && !s->api_busy) {
		struct http_req req;
		size_t took;
		int rc;

		if (conn_queued(&s->c) >= FRONT_MAX_QUEUED || conn_pending(&s->c) > FRONT_BACKLOG) {
			conn_hold_until_drained(&s->c);
			break;
		}
		if (s->api_need > n - used)
			break;		/* an API request's body is still arriving */
		end = http_head_end(p + used, n - used < max ? n - used : max, from);
		from = 0;
		if (end == 0) {
			if (n - used >= max) {
				metrics_refused(REFUSE_TOO_LARGE);
				ws_log(s, LOG_LVL_INFO, "request head over %zu bytes", max);
				http_reply(s, 431, NULL, "request head too large", 0);
			}
			break;
		}
		if ((rc = http_parse(&req, p + used, end)) != 0) {
			bad_head(s, rc);
			used += end;
			break;
		}
		if (s->api && apiproto_is_api(req.path, req.path_len)) {
			if ((took = api_request(s, &req, p + used + end, n - used - end)) == API_WAIT) {
				s->api_need = (uint32_t)(end + req.body_len);
				break;
			}
			used += end + took;
			continue;
		}
		handle_request(s, &req);
		used += end;
	}
	if (s->state == SS_OPEN && used < n) {
		/* Frames sent right behind the head (unusual, but legal to buffer). */
		ws_feed(s, (uint8_t *)p + used, n - used);
		used = n;
	}
	return used;
}

/*
 * Bytes of requests arrived (len 0: none, go on with those held back).
 * Without kept input they are handled where they are, with no copy; what
 * is left, a partial head or requests held back, is kept in hbuf.
 */
static void
read_http(struct session *s, uint8_t *data, size_t len)
{
	size_t had = s->hlen, used, n;
	uint32_t cap;
	char *buf;

	if (s->api_idle && len > 0) {
		/* The next API request begins: it has handshake_timeout to arrive whole. */
		s->api_idle = 0;
		s->created = clock_ms();
	}
	if (had == 0) {
		used = take_requests(s, (char *)data, len, 0);
		if (used < len && s->state == SS_HTTP && !conn_closed(&s->c) &&
		    hbuf_add(s, data + used, len - used) == -1)
			conn_close(&s->c);
		return;
	}
	if (hbuf_add(s, data, len) == -1) {
		conn_close(&s->c);
		return;
	}
	/*
	 * The kept bytes are ours while they are handled: once open, the
	 * session may keep frames of its own in hbuf (pacing). New bytes follow
	 * a partial head, searched already; with none, this is the go-on after
	 * a hold, whose requests are complete heads.
	 */
	buf = s->hbuf;
	n = s->hlen;
	cap = s->hcap;
	s->hbuf = NULL;
	s->hlen = s->hcap = 0;
	used = take_requests(s, buf, n, len > 0 && s->api_need == 0 ? had : 0);
	if (used < n && s->state == SS_HTTP && !conn_closed(&s->c)) {
		memmove(buf, buf + used, n - used);
		s->hbuf = buf;
		s->hlen = (uint32_t)(n - used);
		s->hcap = cap;
	} else
		free(buf);
}

/*
 * A listener marked proxy_protocol: the PROXY header comes first and says
 * who the client is. A connection without a valid one is dropped. Returns
 * how many of the len bytes were the header's (all of them while it is
 * incomplete): what follows it is the HTTP request, for read_http.
 */
static size_t
read_proxy(struct session *s, const uint8_t *data, size_t len)
{
	struct proxy_addr pa;
	const uint8_t *hdr = data;
	size_t had = s->hlen, have = len, take;
	int n;

	if (had > 0) {
		/* The header came in pieces: add this one to those kept. */
		take = len < PROXY_V2_MAX - had ? len : PROXY_V2_MAX - had;
		if (hbuf_add(s, data, take) == -1) {
			conn_close(&s->c);
			return len;
		}
		hdr = (const uint8_t *)s->hbuf;
		have = s->hlen;
	}
	if ((n = proxy_parse(hdr, have, &pa)) == 0 && have < PROXY_V2_MAX) {
		if (had == 0 && hbuf_add(s, data, len) == -1)
			conn_close(&s->c);
		return len;
	}
	hbuf_free(s);
	if (n <= 0) {
		metrics_refused(REFUSE_PROXY);
		ws_log(s, LOG_LVL_INFO, "no valid PROXY protocol header: dropping the connection");
		conn_close(&s->c);
		return len;
	}
	if (pa.known) {
		s->c.family = (uint8_t)pa.family;
		memcpy(s->c.ip, pa.ip, 16);
		s->c.port = pa.port;
	}
	s->state = SS_HTTP;
	/* The kept pieces had none of the header's end (else it was complete then). */
	return (size_t)n - had;
}

/* ---- conn callbacks ---- */

static void
front_on_read(struct conn *c, uint8_t *data, size_t len)
{
	struct session *s = (struct session *)c;
	size_t n;

	if (len == 0) {
		/* The answers drained: go on with the requests held back. */
		if (s->state == SS_HTTP)
			read_http(s, data, 0);
		return;
	}
	s->last_rx = clock_ms();
	switch (s->state) {
	case SS_PROXY:
		n = read_proxy(s, data, len);
		if (s->state != SS_HTTP || n == len)
			break;
		data += n;
		len -= n;
		/* The request came in the same read. */
		/* FALLTHROUGH */
	case SS_HTTP:
		read_http(s, data, len);
		break;
	case SS_OPEN:
	case SS_CLOSING:
		ws_feed(s, data, len);
		break;
	case SS_DONE:
		break;
	}
}

static void
front_on_eof(struct conn *c, const char *why)
{
	struct session *s = (struct session *)c;

	ws_log(s, LOG_LVL_DEBUG, "peer went away (%s)%s", why,
	    s->state == SS_OPEN ? " without a close frame" : "");
}

static void
front_on_tick(struct conn *c, uint64_t now)
{
	struct session *s = (struct session *)c;
	const struct config *cf = sess_cfg(s);

	switch (s->state) {
	case SS_PROXY:
	case SS_HTTP:
		if (s->api_idle && !(c->flags & CONN_F_SHUTDOWN)) {
			if (now - s->created >= (uint64_t)cf->api_keepalive_timeout) {
				ws_log(s, LOG_LVL_DEBUG, "API connection idle for api_keepalive_timeout");
				conn_close(c);
			}
		} else if (now - s->created >= (uint64_t)cf->handshake_timeout && s->api_need > 0 && !s->api_busy) {
			/* An API request that began and did not end (a slow body): say so. */
			metrics_refused(REFUSE_TIMEOUT);
			s->api_close = 1;
			api_fail(s, 408, "timeout", "the request did not arrive whole within handshake_timeout");
			s->api_need = 0;
		} else if (now - s->created >= (uint64_t)cf->handshake_timeout) {
			if (s->hlen > 0)
				metrics_refused(REFUSE_TIMEOUT);
			ws_log(s, LOG_LVL_INFO, (c->flags & CONN_F_HELD) ? "answers not read within handshake_timeout" :
			    "no complete request within handshake_timeout");
			conn_close(c);
		} else if ((c->flags & CONN_F_SHUTDOWN) && now - s->created >= 1000) {
			ws_log(s, LOG_LVL_DEBUG, "no complete request before shutting down");
			conn_close(c);
		}
		break;
	default:
		ws_tick(s, now);
		break;
	}
}

static void
front_on_shutdown(struct conn *c)
{
	/*
	 * A request may be in flight (accepted a moment ago, its bytes not
	 * read yet): it is answered rather than cut off; front_on_tick closes
	 * the connection if no request completes within a second.
	 */
	ws_shutdown((struct session *)c);
}

static void
front_on_free(struct conn *c)
{
	struct session *s = (struct session *)c;

	ws_log(s, LOG_LVL_DEBUG, "freed");
	ws_release(s);
	if (s->ip_counted)
		addrlimit_close(s->c.family, s->c.ip);
	if (s->id != NULL) {
		auth_identity_free(s->id);
		free(s->id);
		s->id = NULL;
	}
	free(s->hbuf);
	s->hbuf = NULL;
	free(s->info);
	s->info = NULL;
	s->freed = 1;
	if (s->refs == 0)
		free(s);
}
