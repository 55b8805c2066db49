/*
 * ws.c: the session state machine.
 *
 *   HTTP    collecting the request head (bounded by max_request_size and
 *           handshake_timeout); answered with 101, or an error and close.
 *   OPEN    frames flow; the server pings an idle peer every ping_interval
 *           and drops one silent for ping_timeout.
 *   CLOSING we sent a close frame: data is ignored until the peer's close
 *           arrives or close_timeout passes.
 *   DONE    the reply is written; conn lingers until the peer closes.
 *
 * Incoming payload is unmasked in the worker's read buffer and copied once
 * into a message block that keeps WS_MAX_SERVER_HEADER bytes of headroom, so
 * an echo prepends its header in place and sends the same block back.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "chat.h"
#include "config.h"
#include "conn.h"
#include "deflate.h"
#include "http.h"
#include "auth.h"
#include "bus.h"
#include "addrlimit.h"
#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "proxy.h"
#include "worker.h"
#include "ws.h"
#include "utf8.h"
#include "ws_frame.h"
#include "www.h"

enum sess_state { SS_PROXY, SS_HTTP, SS_OPEN, SS_CLOSING, SS_DONE };

/* Request facts later layers need, kept after the head buffer is gone. */
struct reqinfo {
	uint16_t	path_len, query_len, origin_len, cookie_len, auth_len;
	char		data[];		/* path, query, origin, cookie, authorization */
};

struct session {
	struct conn		 c;		/* first: conn callbacks cast back */
	uint8_t			 state;
	uint8_t			 close_rcvd;
	uint16_t		 close_sent;	/* code we sent, 0 if none */
	uint8_t			 uuid[16];
	const struct cfg_route	*route;
	struct reqinfo		*info;
	uint64_t		 created, last_rx, last_ping, close_at;
	char			*hbuf;		/* partial request head */
	uint32_t		 hlen;
	struct sbuf		*msg;		/* message being assembled */
	struct chat_conn	*chat;		/* chat and broadcast routes */
	uint32_t		 refs;		/* async callers holding the memory */
	uint8_t			 freed;		/* conn gone; free when refs drop */
	uint8_t			 upgraded;
	uint8_t			 closer;	/* who sent the first close: 'c', 's' or 0 */
	uint16_t		 close_code;	/* the first close code exchanged */
	uint32_t		 msgs_in, msgs_out;
	uint32_t		 dropped;	/* room messages lost to slow_client drop */
	uint64_t		 drop_logged;	/* ms of the last warning about it */
	uint64_t		 opened;	/* ms, when upgraded */
	uint8_t			 ip_counted;	/* counted by limits_session_open */
	uint8_t			 no_auth;	/* upgraded only to say noAuth and close */
	uint8_t			 pmd_bits;	/* permessage-deflate window; 0: not negotiated */
	uint16_t		 strikes;	/* messages refused in a row by the rate limit */
	uint32_t		 tokens;	/* rate limit bucket, in thousandths of a message */
	uint64_t		 refill;	/* ms of the last refill */
	struct auth_identity	*id;
	struct ws_decoder	 dec;
};

/* Pause reading when this much of our output is queued for a peer. */
#define WS_BACKLOG_PAUSE	(1024 * 1024)
/* Unsent answers to pipelined requests a client may have queued (each holds a file). */
#define WS_MAX_PIPELINED	32

static void ws_on_read(struct conn *, uint8_t *, size_t);
static void ws_on_eof(struct conn *, const char *);
static void ws_on_tick(struct conn *, uint64_t);
static void ws_on_shutdown(struct conn *);
static void ws_on_free(struct conn *);

static const struct conn_handler ws_handler = {
	ws_on_read, ws_on_eof, ws_on_tick, ws_on_shutdown, ws_on_free,
};

static const struct config *
cfg(void)
{
	return worker_self->cfg;
}

static void
uuid_format(const uint8_t u[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int o = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[u[i] >> 4];
		out[o++] = hex[u[i] & 15];
	}
	out[o] = '\0';
}

/* Log one line about a session, prefixed with its id, uuid and peer. */
static void vslog(struct session *, enum log_level, const char *, va_list) PRINTF_LIKE(3, 0);
static void
vslog(struct session *s, enum log_level l, const char *fmt, va_list ap)
{
	char msg[1024], addr[64], id[37];

	if (!log_enabled(l))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	uuid_format(s->uuid, id);
	log_msg(l, "conn %u %s %s%s%s:%u%s%s: %s", s->c.id, id, s->c.family == AF_INET6 ? "[" : "",
	    conn_addr(&s->c, addr, sizeof(addr)), s->c.family == AF_INET6 ? "]" : "",
	    s->c.port, s->route != NULL ? " " : "", s->route != NULL ? s->route->path : "", msg);
}

int
ws_accept(struct worker *w, int fd, const struct sockaddr *sa, int proxy, SSL_CTX *tls)
{
	struct session *s = calloc(1, sizeof(*s));
	uint64_t r[2];

	if (s == NULL)
		return -1;
	if (conn_init(&s->c, w, fd, sa, &ws_handler, tls) == -1) {
		free(s);
		return -1;
	}
	r[0] = worker_random(w);
	r[1] = worker_random(w);
	memcpy(s->uuid, r, 16);
	s->uuid[6] = (uint8_t)((s->uuid[6] & 0x0f) | 0x40);	/* version 4 */
	s->uuid[8] = (uint8_t)((s->uuid[8] & 0x3f) | 0x80);	/* RFC 4122 variant */
	s->created = s->last_rx = s->last_ping = worker_now();
	s->state = proxy ? SS_PROXY : SS_HTTP;
	ws_log(s, LOG_LVL_DEBUG, "accepted");
	return 0;
}

/* ---- sending ---- */

/* Send one complete frame built from header + payload in a single block. */
static int
send_frame(struct session *s, int opcode, const void *payload, size_t len)
{
	uint8_t cf[WS_MAX_SERVER_HEADER + WS_MAX_CONTROL];
	struct sbuf *b;
	size_t hl;
	int rc;

	if (len <= WS_MAX_CONTROL) {
		/* A control frame: written at once when nothing is queued (conn_send_copy). */
		hl = ws_header(cf, 1, 0, opcode, len);
		if (len > 0)
			memcpy(cf + hl, payload, len);
		return conn_send_copy(&s->c, cf, hl + len);
	}
	if ((b = ws_frame_new(opcode, payload, len)) == NULL)
		return -1;
	rc = conn_send(&s->c, b, b->off, b->len);
	sbuf_unref(b);
	return rc;
}

/* Send a close frame with code (none if 0) and reason; enter CLOSING. */
static void
send_close(struct session *s, uint16_t code, const char *reason)
{
	uint8_t p[WS_MAX_CONTROL];
	size_t n = 0, rl = reason != NULL ? strlen(reason) : 0;

	if (s->close_sent || conn_closed(&s->c))
		return;
	if (code != 0 && code != WS_CLOSE_NO_STATUS) {
		if (rl > WS_MAX_CONTROL - 2)
			rl = WS_MAX_CONTROL - 2;
		p[0] = (uint8_t)(code >> 8);
		p[1] = (uint8_t)code;
		if (rl > 0)
			memcpy(p + 2, reason, rl);
		n = 2 + rl;
	}
	s->close_sent = code != 0 ? code : WS_CLOSE_NO_STATUS;
	s->close_at = worker_now();
	if (s->closer == 0) {
		s->closer = 's';
		s->close_code = s->close_sent;
	}
	metrics_close_code(s->close_sent);
	s->state = SS_CLOSING;
	if (send_frame(s, WS_OP_CLOSE, p, n) == -1)
		conn_close(&s->c);
}

/* Fail the connection: send close(code) and shut it down after the write. */
static void
fail(struct session *s, uint16_t code, const char *reason)
{
	ws_log(s, LOG_LVL_INFO, "closing with %u: %s", code, reason);
	send_close(s, code, reason);
	s->state = SS_DONE;
	conn_finish(&s->c, cfg()->close_timeout);
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
	conn_finish(&s->c, cfg()->close_timeout);
}

/* ---- the API for route handlers ---- */

struct chat_conn **
ws_chat(struct session *s)
{
	return &s->chat;
}

int
ws_is_open(const struct session *s)
{
	return s->state == SS_OPEN && !s->freed && !conn_closed(&s->c);
}

struct sbuf *
ws_frame_new(int opcode, const void *payload, size_t len)
{
	struct sbuf *b;
	size_t hl;

	if ((b = sbuf_new(WS_MAX_SERVER_HEADER + len, 0)) == NULL)
		return NULL;
	hl = ws_header(sbuf_ptr(b), 1, 0, opcode, len);
	if (len > 0)
		memcpy(sbuf_ptr(b) + hl, payload, len);
	b->len = (uint32_t)(hl + len);
	return b;
}

struct sbuf *
ws_frame_deflate(int bits, int opcode, const void *payload, size_t len)
{
	uint8_t h[WS_MAX_SERVER_HEADER];
	struct sbuf *b;
	long clen;
	size_t hl;

	if ((b = sbuf_new(pmd_bound(len), WS_MAX_SERVER_HEADER)) == NULL)
		return NULL;
	clen = pmd_compress(bits, payload, len, sbuf_ptr(b), b->cap - b->off);
	if (clen < 0 || (size_t)clen >= len) {
		/* Incompressible, or a zlib failure: the caller sends it plain. */
		sbuf_unref(b);
		return NULL;
	}
	hl = ws_header(h, 1, 1, opcode, (uint64_t)clen);
	b->off -= (uint32_t)hl;
	memcpy(b->data + b->off, h, hl);
	b->len = (uint32_t)(hl + (size_t)clen);
	return b;
}

int
ws_deflate_bits(const struct session *s, size_t len)
{
	return s->pmd_bits != 0 && len >= (size_t)cfg()->deflate_min_size ? s->pmd_bits : 0;
}

/*
 * Queue a frame. A reader that lets max_outbuf pile up is cut off (1008), or
 * with slow_client drop loses its oldest undelivered room messages instead:
 * either way it never grows our memory further.
 */
static int
send_block(struct session *s, struct sbuf *b, int broadcast)
{
	const struct config *cf = cfg();
	size_t limit = (size_t)cf->max_outbuf;
	uint32_t n;

	if (!ws_is_open(s))
		return 0;
	if (conn_pending(&s->c) + b->len > limit && broadcast && cf->slow_client[0] == 'd' &&
	    (n = conn_drop_oldest(&s->c, conn_pending(&s->c) + b->len - limit)) > 0) {
		metrics_add(MET_SLOW_DROPPED_MSGS, n);
		s->dropped += n;
		if (worker_now() - s->drop_logged >= 10000) {
			s->drop_logged = worker_now();
			ws_log(s, LOG_LVL_WARNING, "slow reader: %u room message(s) dropped so far (max_outbuf)",
			    s->dropped);
		}
	}
	if (conn_pending(&s->c) + b->len > limit) {
		metrics_add(MET_SLOW_DROPPED, 1);
		fail(s, WS_CLOSE_POLICY, "too slow: output buffer limit reached");
		return 0;
	}
	if ((broadcast ? conn_send_bulk(&s->c, b, b->off, b->len) :
	    conn_send(&s->c, b, b->off, b->len)) == -1) {
		metrics_add(MET_SLOW_DROPPED, 1);
		fail(s, WS_CLOSE_POLICY, "too slow: output queue full");
		return 0;
	}
	if (broadcast)
		conn_mark_droppable(&s->c);
	s->msgs_out++;
	return 1;
}

void
ws_send_frame(struct session *s, struct sbuf *b)
{
	if (send_block(s, b, 0))
		metrics_add(MET_MSG_OUT, 1);
}

int
ws_send_shared(struct session *s, struct sbuf *b)
{
	return send_block(s, b, 1);
}

void
ws_send_text(struct session *s, const char *p, size_t n)
{
	struct sbuf *b = NULL;
	int bits;

	if (!ws_is_open(s))
		return;
	if ((bits = ws_deflate_bits(s, n)) != 0)
		b = ws_frame_deflate(bits, WS_OP_TEXT, p, n);
	if (b == NULL && (b = ws_frame_new(WS_OP_TEXT, p, n)) == NULL) {
		fail(s, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	ws_send_frame(s, b);
	sbuf_unref(b);
}

void
ws_close(struct session *s, uint16_t code, const char *reason)
{
	if (s->state != SS_OPEN)
		return;
	ws_log(s, LOG_LVL_INFO, "closing with %u: %s", code, reason);
	send_close(s, code, reason);
}

void
ws_ref(struct session *s)
{
	s->refs++;
}

void
ws_unref(struct session *s)
{
	if (--s->refs == 0 && s->freed)
		free(s);
}

const struct auth_identity *
ws_identity(const struct session *s)
{
	return s->id;
}

const struct cfg_route *
ws_route(const struct session *s)
{
	return s->route;
}

const char *
ws_query_param(const struct session *s, const char *name, size_t *len)
{
	if (s->info == NULL || s->info->query_len == 0)
		return NULL;
	return http_query_param(s->info->data + s->info->path_len, s->info->query_len, name, len);
}

void
ws_log(struct session *s, enum log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vslog(s, l, fmt, ap);
	va_end(ap);
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
	if (conn_queued(&s->c) >= 2 * WS_MAX_PIPELINED || conn_pending(&s->c) > WS_BACKLOG_PAUSE) {
		/* A client that pipelines without reading must not pin a file per request. */
		ws_log(s, LOG_LVL_INFO, "over %d pipelined requests unanswered: closing", WS_MAX_PIPELINED);
		conn_close(&s->c);
		return;
	}
	inm = http_header(req, "If-None-Match", &inml);
	ims = http_header(req, "If-Modified-Since", &imsl);
	www_lookup(cfg()->www_root, path, plen, inm, inml, ims, imsl, &wr);
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
		conn_finish(&s->c, cfg()->close_timeout);
		return;
	}
	/* The next request gets a fresh handshake_timeout. */
	s->created = worker_now();
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
	conn_finish(&s->c, cfg()->close_timeout);
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
	const struct config *cf = cfg();
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
	else if (worker_self->stopping)
		http_reply(s, 503, NULL, "not ready: draining", head_only);
	else if (!bus_ready())
		http_reply(s, 503, NULL, "not ready: redis unreachable", head_only);
	else
		http_reply(s, 200, NULL, "ready", head_only);
	return 1;
}

static int
trusted_peer(const struct conn *c)
{
	const struct config *cf = cfg();

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

	if (cfg()->ntrusted == 0 || !trusted_peer(&s->c))
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
			if (!trusted_peer(&s->c))
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

/* Whether the Origin may open a WebSocket here (cross-site WebSocket hijacking). */
static int
origin_ok(const struct http_req *r)
{
	const struct config *cf = cfg();
	const char *o, *host, *p, *sep;
	size_t ol, hl;

	if ((o = http_header(r, "Origin", &ol)) == NULL)
		return cf->allow_missing_origin;
	if (cf->allowed_origins == NULL) {
		/* Same origin: the Origin's host[:port] is the Host the client asked for. */
		if ((host = http_header(r, "Host", &hl)) == NULL || (p = memchr(o, ':', ol)) == NULL ||
		    (size_t)(p - o) + 3 > ol || p[1] != '/' || p[2] != '/')
			return 0;
		p += 3;
		return (size_t)(o + ol - p) == hl && strncasecmp(p, host, hl) == 0;
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
	const struct config *cf = cfg();
	const char *tok = NULL, *why = "no token";
	char buf[AUTH_MAX_TOKEN + 1];
	size_t tl = 0;
	int required = strcmp(cf->auth, "required") == 0;

	if (strcmp(cf->auth, "off") == 0)
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
		if (auth_verify(buf, tl, cf->auth_key, cf->auth_keylen, (long long)(worker_wallclock_ms() / 1000),
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
	if (strcmp(cf->auth_failure, "http") == 0) {
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

static void
handle_request(struct session *s, const char *head, size_t len)
{
	struct http_req req;
	struct ws_upgrade up;
	const char *proto;
	char resp[768], esc[128], ext[200];
	int rc, n, head_only, auth = 0;

	if ((rc = http_parse(&req, head, len)) != 0) {
		metrics_refused(rc == 431 ? REFUSE_TOO_LARGE : REFUSE_BAD_REQUEST);
		ws_log(s, LOG_LVL_INFO, "bad request head: %d", rc);
		http_reply(s, rc, NULL, rc == 431 ? "too many header fields" :
		    rc == 505 ? "HTTP/1.1 only" : "malformed request", 0);
		return;
	}
	head_only = http_method_is(&req, "HEAD");
	real_client(s, &req);
	if (!http_wants_websocket(&req) && serve_admin(s, &req, head_only))
		return;
	s->route = cfg_route_find(cfg(), req.path, req.path_len);
	if (!http_wants_websocket(&req) && (s->route == NULL || s->route->kind == ROUTE_CHAT)) {
		/* A browser on a chat route gets the page; other paths are its files. */
		if (s->route != NULL)
			serve_file(s, &req, "/index.html", 11, head_only);
		else
			serve_file(s, &req, req.path, req.path_len, head_only);
		s->route = NULL;
		return;
	}
	if (s->route == NULL) {
		metrics_refused(REFUSE_NOT_FOUND);
		ws_log(s, LOG_LVL_INFO, "no route for %s",
		    log_escape(esc, sizeof(esc), req.path, req.path_len));
		http_reply(s, 404, NULL, "no such path", head_only);
		return;
	}
	http_check_upgrade(&req, &up);
	if (up.status == 0 && worker_self->stopping && !worker_self->retiring) {
		/* Draining: clients should reconnect to another host. */
		metrics_refused(REFUSE_DRAINING);
		http_reply(s, 503, "Retry-After: 1\r\n", "draining: connect to another server", head_only);
		return;
	}
	if (up.status == 0 && !origin_ok(&req)) {
		metrics_refused(REFUSE_ORIGIN);
		ws_log(s, LOG_LVL_INFO, "refused: Origin not allowed");
		http_reply(s, 403, NULL, "this Origin may not open a WebSocket here", head_only);
		return;
	}
	if (up.status == 0 && (cfg()->max_sessions_per_ip > 0 || cfg()->max_new_sessions_per_ip > 0)) {
		if (limits_session_open(s->c.family, s->c.ip, cfg()->max_sessions_per_ip,
		    cfg()->max_new_sessions_per_ip) == -1) {
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
	if (s->info != NULL && strcmp(cfg()->auth_failure, "http") == 0 && !chat_broadcast_allowed(s)) {
		metrics_refused(REFUSE_AUTH);
		ws_log(s, LOG_LVL_INFO, "refused: the token does not allow this room");
		http_reply(s, 403, NULL, "your token does not allow this room", head_only);
		return;
	}
	proto = pick_subprotocol(s, &req);
	ext[0] = '\0';
	if (cfg()->deflate) {
		struct pmd_config pc = { cfg()->deflate_window_bits };
		struct pmd_params pp;

		/* Offers may span several header lines; the first acceptable one wins. */
		for (int i = 0; i < req.nhdr && s->pmd_bits == 0; i++) {
			const struct http_hdr *h = &req.hdr[i];

			if (h->nlen == 24 && strncasecmp(h->name, "Sec-WebSocket-Extensions", 24) == 0 &&
			    pmd_negotiate(h->value, h->vlen, &pc, &pp, ext, sizeof(ext)))
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
	ws_decoder_init(&s->dec, (uint64_t)cfg()->max_message_size);
	s->dec.allow_rsv1 = s->pmd_bits != 0;
	s->state = SS_OPEN;
	s->upgraded = 1;
	s->last_ping = s->opened = worker_now();
	metrics_add(MET_UPGRADES, 1);
	metrics_gauge(GAUGE_SESSIONS, 1);
	s->tokens = (uint32_t)cfg()->rate_burst * 1000;
	s->refill = s->opened;
	if (auth == 1) {
		/* The tutorial's way to say no: an event the page understands, then 4001. */
		static const char noauth[] = "{\"event\":\"noAuth\",\"message\":\"a valid token is required\"}";

		s->no_auth = 1;
		ws_send_text(s, noauth, sizeof(noauth) - 1);
		ws_close(s, 4001, "authentication required");
		return;
	}
	ws_log(s, LOG_LVL_DEBUG, "upgraded (%s)", cfg_route_kind_name(s->route->kind));
	if (s->route->kind == ROUTE_CHAT || s->route->kind == ROUTE_BROADCAST)
		chat_open(s);
	/* A retiring worker's handshake in flight: served, then sent to its successor. */
	if (s->c.flags & CONN_F_SHUTDOWN)
		ws_on_shutdown(&s->c);
}

static void feed_frames(struct session *, uint8_t *, size_t);

/* Drop the first n bytes of the buffered head; free the buffer when empty. */
static void
hbuf_consume(struct session *s, size_t n)
{
	s->hlen -= (uint32_t)n;
	memmove(s->hbuf, s->hbuf + n, s->hlen);
	if (s->hlen == 0 || s->state != SS_HTTP) {
		free(s->hbuf);
		s->hbuf = NULL;
		s->hlen = 0;
	}
}

/*
 * Handle one complete head at the start of hbuf, if there is one (scanning
 * from `from`: bytes before it were scanned already). Returns 1 if handled.
 */
static int
take_head(struct session *s, size_t from)
{
	size_t end = http_head_end(s->hbuf, s->hlen, from);

	if (end == 0)
		return 0;
	handle_request(s, s->hbuf, end);
	if (s->state == SS_OPEN && s->hlen > end) {
		/* Frames sent right behind the head (unusual, but legal to buffer). */
		feed_frames(s, (uint8_t *)s->hbuf + end, s->hlen - end);
		end = s->hlen;
	}
	hbuf_consume(s, end);
	return 1;
}

/*
 * Collect request heads and handle them: an upgrade hands the bytes after
 * its head to the frame decoder; a kept-alive plain request loops for the
 * next one (pipelining). A head is bounded by max_request_size.
 */
static void
read_http(struct session *s, uint8_t *data, size_t len)
{
	size_t max = (size_t)cfg()->max_request_size, end, take, from;

	while (s->state == SS_HTTP && !conn_closed(&s->c)) {
		if (s->hlen == 0) {
			/* Fast path: a whole head in the read buffer needs no copy. */
			end = http_head_end((const char *)data, len < max ? len : max, 0);
			if (end > 0) {
				handle_request(s, (const char *)data, end);
				data += end;
				len -= end;
				if (s->state == SS_OPEN && len > 0)
					feed_frames(s, data, len);
				if (len == 0 || s->state != SS_HTTP)
					return;
				continue;
			}
			if (len == 0)
				return;
		}
		/* Slow path: the head arrives in pieces; keep at most max bytes. */
		if (s->hbuf == NULL && (s->hbuf = malloc(max)) == NULL) {
			conn_close(&s->c);
			return;
		}
		take = len < max - s->hlen ? len : max - s->hlen;
		memcpy(s->hbuf + s->hlen, data, take);
		from = s->hlen;
		s->hlen += (uint32_t)take;
		data += take;
		len -= take;
		if (!take_head(s, from)) {
			if (s->hlen >= max) {
				metrics_refused(REFUSE_TOO_LARGE);
				ws_log(s, LOG_LVL_INFO, "request head over %zu bytes", max);
				http_reply(s, 431, NULL, "request head too large", 0);
			}
			return;
		}
		/* Pipelined heads already buffered come next. */
		while (s->state == SS_HTTP && s->hlen > 0 && take_head(s, 0))
			;
		if (s->state == SS_OPEN && len > 0)
			feed_frames(s, data, len);
		if (len == 0)
			return;
	}
}

/*
 * A listener marked proxy_protocol: the PROXY header comes first and says
 * who the client is. A connection without a valid one is dropped.
 */
static void
read_proxy(struct session *s, uint8_t *data, size_t len)
{
	struct proxy_addr pa;
	size_t take = len < PROXY_V2_MAX - s->hlen ? len : PROXY_V2_MAX - s->hlen;
	int n;

	if (s->hbuf == NULL && (s->hbuf = malloc((size_t)cfg()->max_request_size > PROXY_V2_MAX ?
	    (size_t)cfg()->max_request_size : PROXY_V2_MAX)) == NULL) {
		conn_close(&s->c);
		return;
	}
	memcpy(s->hbuf + s->hlen, data, take);
	s->hlen += (uint32_t)take;
	if ((n = proxy_parse((const uint8_t *)s->hbuf, s->hlen, &pa)) == 0 && s->hlen < PROXY_V2_MAX)
		return;
	if (n <= 0) {
		metrics_refused(REFUSE_PROXY);
		ws_log(s, LOG_LVL_INFO, "no valid PROXY protocol header: dropping the connection");
		conn_close(&s->c);
		return;
	}
	if (pa.known) {
		s->c.family = (uint8_t)pa.family;
		memcpy(s->c.ip, pa.ip, 16);
		s->c.port = pa.port;
	}
	s->state = SS_HTTP;
	/* What followed the header is the start of the HTTP request. */
	s->hlen -= (uint32_t)n;
	memmove(s->hbuf, s->hbuf + n, s->hlen);
	if (s->hlen == 0) {
		free(s->hbuf);
		s->hbuf = NULL;
	} else {
		size_t keep = s->hlen;
		uint8_t *tmp = (uint8_t *)s->hbuf;

		s->hbuf = NULL;
		s->hlen = 0;
		read_http(s, tmp, keep);
		free(tmp);
	}
	if (take < len && s->state == SS_HTTP)
		read_http(s, data + take, len - take);
}

/* ---- frames ---- */

/*
 * The per-session token bucket: rate_limit messages a second, bursts up to
 * rate_burst. A refused message gets a rate_limited error; a client that
 * keeps pushing for another burst's worth is closed with 1008.
 */
static int
rate_ok(struct session *s)
{
	const struct config *cf = cfg();
	uint64_t now = worker_now(), cap = (uint64_t)cf->rate_burst * 1000, t;

	if (cf->rate_limit == 0)
		return 1;
	t = s->tokens + (now - s->refill) * (uint64_t)cf->rate_limit;
	s->tokens = (uint32_t)(t > cap ? cap : t);
	s->refill = now;
	if (s->tokens >= 1000) {
		s->tokens -= 1000;
		s->strikes = 0;
		return 1;
	}
	metrics_add(MET_RATE_LIMITED, 1);
	if (++s->strikes > cf->rate_burst) {
		fail(s, WS_CLOSE_POLICY, "rate limit exceeded");
		return 0;
	}
	{
		static const char limited[] = "{\"event\":\"error\",\"code\":\"rate_limited\","
		    "\"message\":\"too many messages: slow down\"}";

		ws_send_text(s, limited, sizeof(limited) - 1);
	}
	return 0;
}

/*
 * A compressed message arrived whole: inflate it (stopping the moment it
 * passes max_message_size, however small the frame was) and check text as
 * UTF-8. Returns the inflated block, or NULL after failing the connection.
 */
static struct sbuf *
inflate_msg(struct session *s, struct sbuf *b, int opcode)
{
	static uint8_t *out;
	static size_t cap;
	struct sbuf *nb;
	size_t olen = 0;
	int rc;

	rc = pmd_inflate(b != NULL ? sbuf_ptr(b) : (const uint8_t *)"", b != NULL ? b->len : 0,
	    (size_t)cfg()->max_message_size, &out, &cap, &olen);
	sbuf_unref(b);
	if (rc == PMD_TOO_BIG) {
		fail(s, WS_CLOSE_TOO_BIG, "message too big once inflated");
		return NULL;
	}
	if (rc != PMD_OK) {
		fail(s, WS_CLOSE_BAD_DATA, "invalid compressed data");
		return NULL;
	}
	if (opcode == WS_OP_TEXT && !utf8_valid(out, olen)) {
		fail(s, WS_CLOSE_BAD_DATA, "invalid UTF-8 in text");
		return NULL;
	}
	if ((nb = sbuf_new(olen, WS_MAX_SERVER_HEADER)) == NULL) {
		fail(s, WS_CLOSE_INTERNAL, "out of memory");
		return NULL;
	}
	if (olen > 0)
		memcpy(sbuf_ptr(nb), out, olen);
	nb->len = (uint32_t)olen;
	/* A bomb's worth of buffer is not kept between messages. */
	if (cap > 1024 * 1024) {
		free(out);
		out = NULL;
		cap = 0;
	}
	return nb;
}

/* A whole message arrived: serve it according to the route. */
static void
deliver(struct session *s, int opcode, int compressed)
{
	struct sbuf *b = s->msg, *z;
	uint8_t h[WS_MAX_SERVER_HEADER];
	size_t hl;
	int bits;

	s->msg = NULL;
	if (compressed && (b = inflate_msg(s, b, opcode)) == NULL)
		return;
	s->msgs_in++;
	metrics_add(MET_MSG_IN, 1);
	if (b == NULL && (b = sbuf_new(0, WS_MAX_SERVER_HEADER)) == NULL) {
		conn_close(&s->c);
		return;
	}
	switch (s->route->kind) {
	case ROUTE_ECHO:
		if ((bits = ws_deflate_bits(s, b->len)) != 0 &&
		    (z = ws_frame_deflate(bits, opcode, sbuf_ptr(b), b->len)) != NULL) {
			sbuf_unref(b);
			b = z;
		} else {
			/* Prepend the header in the headroom and send the same block back. */
			hl = ws_header(h, 1, 0, opcode, b->len);
			b->off -= (uint32_t)hl;
			memcpy(b->data + b->off, h, hl);
			b->len += (uint32_t)hl;
		}
		if (conn_send(&s->c, b, b->off, b->len) == -1) {
			sbuf_unref(b);
			fail(s, WS_CLOSE_POLICY, "output queue full");
			return;
		}
		s->msgs_out++;
		metrics_add(MET_MSG_OUT, 1);
		if (conn_pending(&s->c) > WS_BACKLOG_PAUSE)
			conn_pause_until_drained(&s->c);
		break;
	case ROUTE_CHAT:
	case ROUTE_BROADCAST:
		if (!rate_ok(s))
			break;
		chat_message(s, opcode, sbuf_ptr(b), b->len);
		break;
	case ROUTE_OFF:
		break;
	}
	sbuf_unref(b);
}

/* Append a piece of payload to the message being assembled. */
static int
append_data(struct session *s, const struct ws_event *ev)
{
	size_t have = s->msg != NULL ? s->msg->len : 0;
	size_t need = have + ev->len, want;
	struct sbuf *nb;

	if (s->msg == NULL) {
		/* Size for what has arrived, never for what the header merely claims. */
		want = ev->frame_left == 0 ? need : need < 4096 ? 4096 : need;
		if ((s->msg = sbuf_new(want, WS_MAX_SERVER_HEADER)) == NULL)
			return -1;
	} else if (need > s->msg->cap - s->msg->off) {
		if ((nb = sbuf_grow(s->msg, need)) == NULL)
			return -1;
		s->msg = nb;
	}
	memcpy(sbuf_ptr(s->msg) + have, ev->data, ev->len);
	s->msg->len = (uint32_t)need;
	return 0;
}

static void
handle_control(struct session *s, const struct ws_event *ev)
{
	const uint8_t *reason;
	size_t rlen;
	uint16_t code;
	int bad;

	switch (ev->opcode) {
	case WS_OP_PING:
		if (s->state != SS_OPEN)
			return;
		if (send_frame(s, WS_OP_PONG, ev->data, ev->len) == -1) {
			fail(s, WS_CLOSE_POLICY, "too slow: output queue full");
			return;
		}
		/* Owed pongs are output like echoes: stop reading while they pile up. */
		if (conn_pending(&s->c) > WS_BACKLOG_PAUSE)
			conn_pause_until_drained(&s->c);
		return;
	case WS_OP_PONG:
		return;		/* last_rx is already updated */
	case WS_OP_CLOSE:
		s->close_rcvd = 1;
		if ((bad = ws_close_parse(ev->data, ev->len, &code, &reason, &rlen)) != 0) {
			fail(s, (uint16_t)bad, bad == WS_CLOSE_BAD_DATA ?
			    "close reason is not UTF-8" : "invalid close frame");
			return;
		}
		ws_log(s, LOG_LVL_DEBUG, "peer closed with %u", code);
		if (s->closer == 0) {
			s->closer = 'c';
			s->close_code = code;
		}
		if (!s->close_sent)
			send_close(s, code == WS_CLOSE_NO_STATUS ? 0 : code, NULL);
		s->state = SS_DONE;
		conn_finish(&s->c, cfg()->close_timeout);
		return;
	}
}

static void
feed_frames(struct session *s, uint8_t *p, size_t n)
{
	struct ws_event ev;
	size_t used;

	while (!conn_closed(&s->c) && (s->state == SS_OPEN || s->state == SS_CLOSING)) {
		used = ws_decode(&s->dec, p, n, &ev);
		p += used;
		n -= used;
		switch (ev.type) {
		case WS_EV_NEED:
			return;
		case WS_EV_ERROR:
			if (s->state == SS_CLOSING) {
				/* We already said goodbye; just drop the connection. */
				s->state = SS_DONE;
				conn_finish(&s->c, cfg()->close_timeout);
				return;
			}
			fail(s, ev.code, ev.reason);
			return;
		case WS_EV_CONTROL:
			handle_control(s, &ev);
			break;
		case WS_EV_DATA:
			if (s->state != SS_OPEN)
				break;	/* after our close, data is ignored */
			if (append_data(s, &ev) == -1) {
				fail(s, WS_CLOSE_INTERNAL, "out of memory");
				return;
			}
			if (ev.msg_end)
				deliver(s, ev.opcode, ev.rsv1);
			break;
		}
	}
}

/* ---- conn callbacks ---- */

static void
ws_on_read(struct conn *c, uint8_t *data, size_t len)
{
	struct session *s = (struct session *)c;

	s->last_rx = worker_now();
	switch (s->state) {
	case SS_PROXY:
		read_proxy(s, data, len);
		break;
	case SS_HTTP:
		read_http(s, data, len);
		break;
	case SS_OPEN:
	case SS_CLOSING:
		feed_frames(s, data, len);
		break;
	case SS_DONE:
		break;
	}
}

static void
ws_on_eof(struct conn *c, const char *why)
{
	struct session *s = (struct session *)c;

	ws_log(s, LOG_LVL_DEBUG, "peer went away (%s)%s", why,
	    s->state == SS_OPEN ? " without a close frame" : "");
}

static void
ws_on_tick(struct conn *c, uint64_t now)
{
	struct session *s = (struct session *)c;
	const struct config *cf = cfg();

	switch (s->state) {
	case SS_PROXY:
	case SS_HTTP:
		if (now - s->created >= (uint64_t)cf->handshake_timeout) {
			if (s->hlen > 0)
				metrics_refused(REFUSE_TIMEOUT);
			ws_log(s, LOG_LVL_INFO, "no complete request within handshake_timeout");
			conn_close(c);
		} else if ((c->flags & CONN_F_SHUTDOWN) && now - s->created >= 1000) {
			ws_log(s, LOG_LVL_DEBUG, "no complete request before shutting down");
			conn_close(c);
		}
		break;
	case SS_OPEN:
		if (now - s->last_rx >= (uint64_t)cf->ping_timeout) {
			ws_log(s, LOG_LVL_INFO, "nothing received for %dms: closing", cf->ping_timeout);
			send_close(s, WS_CLOSE_GOING_AWAY, "ping timeout");
			s->state = SS_DONE;
			conn_finish(c, cf->close_timeout);
			break;
		}
		if (now - s->last_rx >= (uint64_t)cf->ping_interval &&
		    now - s->last_ping >= (uint64_t)cf->ping_interval) {
			s->last_ping = now;
			if (send_frame(s, WS_OP_PING, "roomd", 5) == -1) {
				conn_close(c);
				break;
			}
		}
		if (s->route->kind == ROUTE_CHAT)
			chat_tick(s, now);
		break;
	case SS_CLOSING:
		if (now - s->close_at >= (uint64_t)cf->close_timeout) {
			ws_log(s, LOG_LVL_INFO, "no close frame from the peer within close_timeout");
			conn_close(c);
		}
		break;
	case SS_DONE:
		break;
	}
}

static void
ws_on_shutdown(struct conn *c)
{
	struct session *s = (struct session *)c;

	switch (s->state) {
	case SS_PROXY:
	case SS_HTTP:
		/*
		 * A request may be in flight (accepted a moment ago, its bytes not
		 * read yet): answer it rather than cut it off; ws_on_tick closes
		 * the connection if no request completes within a second.
		 */
		break;
	case SS_OPEN:
		/* Others in our rooms hear "out" before this client is closed. */
		if (s->chat != NULL)
			chat_leave_all(s);
		send_close(s, WS_CLOSE_GOING_AWAY, "server shutting down");
		break;
	default:
		break;
	}
}

/* One line per WebSocket session: who, where, how long, how much, how it ended. */
static void
access_log(struct session *s)
{
	static const char *const keys[] = {
		"uuid", "addr", "route", "rooms", "duration_ms", "in", "out", "close", "closed_by",
	};
	char id[37], addr[64], dur[24], in[16], out[16], code[8], rooms[512];
	const char *vals[9];

	if (!log_enabled(LOG_LVL_INFO))
		return;
	uuid_format(s->uuid, id);
	conn_addr(&s->c, addr, sizeof(addr));
	snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(worker_now() - s->opened));
	snprintf(in, sizeof(in), "%u", s->msgs_in);
	snprintf(out, sizeof(out), "%u", s->msgs_out);
	snprintf(code, sizeof(code), "%u", s->close_code != 0 ? s->close_code : 1006);
	chat_rooms(s, rooms, sizeof(rooms));
	vals[0] = id;
	vals[1] = addr;
	vals[2] = s->route->path;
	vals[3] = rooms[0] != '\0' ? rooms : "-";
	vals[4] = dur;
	vals[5] = in;
	vals[6] = out;
	vals[7] = code;
	vals[8] = s->closer == 'c' ? "client" : s->closer == 's' ? "server" : "dropped";
	log_kv(LOG_LVL_INFO, "access", keys, vals, 9);
}

static void
ws_on_free(struct conn *c)
{
	struct session *s = (struct session *)c;

	ws_log(s, LOG_LVL_DEBUG, "freed");
	if (s->upgraded) {
		access_log(s);
		metrics_gauge(GAUGE_SESSIONS, -1);
	}
	if (s->ip_counted)
		limits_session_close(s->c.family, s->c.ip);
	if (s->id != NULL) {
		auth_identity_free(s->id);
		free(s->id);
		s->id = NULL;
	}
	if (s->chat != NULL)
		chat_free(s);
	sbuf_unref(s->msg);
	s->msg = NULL;
	free(s->hbuf);
	s->hbuf = NULL;
	free(s->info);
	s->info = NULL;
	s->freed = 1;
	if (s->refs == 0)
		free(s);
}
