/*
 * ws.c: an open WebSocket session (front.c opened it).
 *
 *   OPEN    frames flow; the server pings an idle peer every ping_interval
 *           and drops one silent for ping_timeout.
 *   CLOSING we sent a close frame: data is ignored until the peer's close
 *           arrives or close_timeout passes.
 *   DONE    the reply is written; conn lingers until the peer closes.
 *
 * Incoming payload is unmasked in the loop's read buffer and copied once
 * into a message block that keeps WS_MAX_SERVER_HEADER bytes of headroom, so
 * an echo prepends its header in place and sends the same block back.
 * Whole messages go to the route's handler; the route answers through the
 * send API below.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "deflate.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "utf8.h"
#include "ws.h"
#include "ws_frame.h"

/* Pause reading when this much of our output is queued for a peer. */
#define WS_BACKLOG_PAUSE	(1024 * 1024)

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

void
ws_log(struct session *s, enum log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vslog(s, l, fmt, ap);
	va_end(ap);
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

/*
 * The session stops receiving: the route lets go of shared state now (its
 * rooms hear "out" when the server decides, not when the close handshake
 * ends), after noting for the access line what the session was in.
 */
static void
let_go(struct session *s)
{
	char buf[512];

	if (s->app == NULL || s->ops->shutdown == NULL)
		return;
	if (s->rooms_seen == NULL && s->ops->describe != NULL && log_enabled(LOG_LVL_INFO)) {
		buf[0] = '\0';
		s->ops->describe(s, buf, sizeof(buf));
		if (buf[0] != '\0')
			s->rooms_seen = strdup(buf);	/* NULL when out of memory: the line says "-" */
	}
	s->ops->shutdown(s);
}

/* Send a close frame with code (none if 0) and reason; enter CLOSING. */
static void
send_close(struct session *s, uint16_t code, const char *reason)
{
	uint8_t p[WS_MAX_CONTROL];
	size_t n = 0, rl = reason != NULL ? strlen(reason) : 0;

	if (s->close_sent || conn_closed(&s->c))
		return;
	let_go(s);
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
	s->close_at = clock_ms();
	if (s->closer == 0) {
		s->closer = 's';
		s->close_code = s->close_sent;
	}
	metrics_close_code(s->close_sent);
	s->state = SS_CLOSING;
	if (send_frame(s, WS_OP_CLOSE, p, n) == -1)
		conn_close(&s->c);
}

/* Fail the connection: send close(code), shut it down once written. */
static void
fail(struct session *s, uint16_t code, const char *reason)
{
	ws_log(s, LOG_LVL_INFO, "closing with %u: %s", code, reason);
	send_close(s, code, reason);
	s->state = SS_DONE;
	conn_finish(&s->c, sess_cfg(s)->close_timeout);
}

/*
 * Queue a frame. A reader that lets max_outbuf pile up is cut off (1008), or
 * with slow_client drop loses its oldest undelivered room messages instead:
 * either way it never grows our memory further.
 */
static int
send_block(struct session *s, struct sbuf *b, int broadcast)
{
	const struct config *cf = sess_cfg(s);
	size_t limit = (size_t)cf->max_outbuf;
	uint32_t n;

	if (!ws_is_open(s))
		return 0;
	if (conn_pending(&s->c) + b->len > limit && broadcast && cf->slow_client == CFG_SLOW_DROP &&
	    (n = conn_drop_oldest(&s->c, conn_pending(&s->c) + b->len - limit)) > 0) {
		metrics_add(MET_SLOW_DROPPED_MSGS, n);
		s->dropped += n;
		if (clock_ms() - s->drop_logged >= 10000) {
			s->drop_logged = clock_ms();
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
ws_send_message(struct session *s, int opcode, struct sbuf *b)
{
	uint8_t h[WS_MAX_SERVER_HEADER];
	struct sbuf *z;
	size_t hl;
	int bits;

	if ((bits = ws_deflate_bits(s, b->len)) != 0 &&
	    (z = ws_frame_deflate(bits, opcode, sbuf_ptr(b), b->len)) != NULL)
		b = z;
	else {
		/* Prepend the header in the headroom and send the same block back. */
		hl = ws_header(h, 1, 0, opcode, b->len);
		b->off -= (uint32_t)hl;
		memcpy(b->data + b->off, h, hl);
		b->len += (uint32_t)hl;
		sbuf_ref(b);
	}
	if (conn_send(&s->c, b, b->off, b->len) == -1) {
		sbuf_unref(b);
		fail(s, WS_CLOSE_POLICY, "output queue full");
		return;
	}
	sbuf_unref(b);
	s->msgs_out++;
	metrics_add(MET_MSG_OUT, 1);
	if (conn_pending(&s->c) > WS_BACKLOG_PAUSE)
		conn_pause_until_drained(&s->c);
}

void
ws_close(struct session *s, uint16_t code, const char *reason)
{
	if (s->state != SS_OPEN)
		return;
	ws_log(s, LOG_LVL_INFO, "closing with %u: %s", code, reason);
	send_close(s, code, reason);
}

/* ---- what the routes may ask ---- */

void *
ws_data(const struct session *s)
{
	return s->app;
}

void
ws_set_data(struct session *s, void *p)
{
	s->app = p;
}

const struct config *
ws_config(const struct session *s)
{
	return sess_cfg(s);
}

int
ws_is_open(const struct session *s)
{
	return s->state == SS_OPEN && !s->freed && !conn_closed(&s->c);
}

int
ws_deflate_bits(const struct session *s, size_t len)
{
	return s->pmd_bits != 0 && len >= (size_t)sess_cfg(s)->deflate_min_size ? s->pmd_bits : 0;
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

void
ws_set_identity(struct session *s, struct auth_identity *id)
{
	if (s->id != NULL) {
		auth_identity_free(s->id);
		free(s->id);
	}
	s->id = id;
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

/* ---- frames ---- */

/*
 * Between frames a session's decoder is a fresh one, so an idle session holds
 * none: its input is decoded by this one, and only a session whose input
 * ends inside a frame (a header, a control frame, a fragmented message)
 * keeps a copy of its own until a read ends between frames again.
 */
static struct ws_decoder spare = { .validate_utf8 = 1 };	/* at rest between feeds */
static int spare_busy;		/* a handler fed another session from inside a feed */

void
ws_open(struct session *s)
{
	const struct config *cf = sess_cfg(s);

	/* A worker's config never changes (a reload starts new workers): neither does the spare's limit. */
	spare.max_message = (uint64_t)cf->max_message_size;
	s->drop_logged = 0;	/* shares storage with the API's state (session.h) */
	s->dropped = 0;
	s->state = SS_OPEN;
	s->upgraded = 1;
	s->last_ping = s->opened = clock_ms();
	metrics_add(MET_UPGRADES, 1);
	metrics_gauge(GAUGE_SESSIONS, 1);
	s->tokens = (uint32_t)cf->rate_burst * 1000;
	s->btokens = (uint64_t)(cf->rate_burst_bytes > cf->max_message_size ? cf->rate_burst_bytes :
	    cf->max_message_size) * 1000;
	s->refill = s->opened;
}

/*
 * Refill the session's buckets: rate_limit messages a second up to
 * rate_burst, and rate_limit_bytes a second up to rate_burst_bytes.
 */
static void
rate_refill(struct session *s, uint64_t now)
{
	const struct config *cf = sess_cfg(s);
	uint64_t cap = (uint64_t)cf->rate_burst * 1000, t;
	/* A message as large as the server takes can always be sent, after a wait. */
	uint64_t bcap = (uint64_t)(cf->rate_burst_bytes > cf->max_message_size ? cf->rate_burst_bytes :
	    cf->max_message_size) * 1000;

	t = s->tokens + (now - s->refill) * (uint64_t)cf->rate_limit;
	s->tokens = (uint32_t)(t > cap ? cap : t);
	t = s->btokens + (now - s->refill) * (uint64_t)cf->rate_limit_bytes;
	s->btokens = t > bcap ? bcap : t;
	s->refill = now;
}

/*
 * The per-session token bucket: rate_limit messages a second, bursts up to
 * rate_burst, on every route. Over it, a message is refused and the route
 * says so (a client that keeps pushing for another burst's worth is closed
 * with 1008), or, on a route that cannot say no, served while the session
 * stops reading until the bucket refills: the client is slowed, not cut.
 */
static int
rate_ok(struct session *s, size_t len)
{
	const struct config *cf = sess_cfg(s);
	/* Bytes count where the route publishes them: a flood costs its sender, not the room's link. */
	uint64_t cost = s->ops->rate_mode == WS_RATE_REFUSE && cf->rate_limit_bytes > 0 ? (uint64_t)len * 1000 : 0;

	if (cf->rate_limit == 0 && cost == 0)
		return 1;
	rate_refill(s, clock_ms());
	if ((cf->rate_limit == 0 || s->tokens >= 1000) && s->btokens >= cost) {
		if (cf->rate_limit > 0)
			s->tokens -= 1000;
		s->btokens -= cost;
		s->strikes = 0;
		return 1;
	}
	metrics_add(MET_RATE_LIMITED, 1);
	if (s->ops->rate_mode == WS_RATE_PACE) {
		s->paused |= WS_PAUSE_RATE;
		conn_pause(&s->c, 1);
		return 1;
	}
	if (++s->strikes > cf->rate_burst) {
		fail(s, WS_CLOSE_POLICY, "rate limit exceeded");
		return 0;
	}
	if (s->ops->refuse != NULL)
		s->ops->refuse(s, WS_REFUSED_RATE);
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

	rc = deflate_inflate(b != NULL ? sbuf_ptr(b) : (const uint8_t *)"", b != NULL ? b->len : 0,
	    (size_t)sess_cfg(s)->max_message_size, &out, &cap, &olen);
	sbuf_unref(b);
	if (rc == DEFLATE_TOO_BIG) {
		fail(s, WS_CLOSE_TOO_BIG, "message too big once inflated");
		return NULL;
	}
	if (rc != DEFLATE_OK) {
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

/* A whole message arrived: hand it to the route. */
static void
deliver(struct session *s, int opcode, int compressed)
{
	struct sbuf *b = s->msg;

	s->msg = NULL;
	if (compressed && (b = inflate_msg(s, b, opcode)) == NULL)
		return;
	s->msgs_in++;
	metrics_add(MET_MSG_IN, 1);
	if (b == NULL && (b = sbuf_new(0, WS_MAX_SERVER_HEADER)) == NULL) {
		conn_close(&s->c);
		return;
	}
	if (s->ops->message != NULL && rate_ok(s, b->len))
		s->ops->message(s, opcode, b);
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
		conn_finish(&s->c, sess_cfg(s)->close_timeout);
		return;
	}
}

/* Paused: keep bytes (after what waits already) until the session reads again. */
static void
keep_for_later(struct session *s, const uint8_t *p, size_t n)
{
	char *nb;

	if (s->hlen + n > (size_t)UINT32_MAX || (nb = realloc(s->hbuf, s->hlen + n)) == NULL) {
		fail(s, WS_CLOSE_INTERNAL, "out of memory");
		return;
	}
	memcpy(nb + s->hlen, p, n);
	s->hbuf = nb;
	s->hlen += (uint32_t)n;
}


/* Whether d is where ws_decoder_init leaves one (as far as the next frame can tell). */
static int
decoder_at_rest(const struct ws_decoder *d)
{
	return !d->in_payload && d->hdr_have == 0 && d->msg_opcode == 0;
}

static void
decode(struct session *s, struct ws_decoder *d, uint8_t *p, size_t n)
{
	struct ws_event ev;
	size_t used;

	while (!conn_closed(&s->c) && (s->state == SS_OPEN || s->state == SS_CLOSING)) {
		used = ws_decode(d, p, n, &ev);
		p += used;
		n -= used;
		switch (ev.type) {
		case WS_EV_NEED:
			return;
		case WS_EV_ERROR:
			if (s->state == SS_CLOSING) {
				/* We already said goodbye; just drop the connection. */
				s->state = SS_DONE;
				conn_finish(&s->c, sess_cfg(s)->close_timeout);
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
			if (s->paused && n > 0 && !conn_closed(&s->c)) {
				keep_for_later(s, p, n);
				return;
			}
			break;
		}
	}
}

/* The spare's input ended inside a frame: s keeps a copy, and the spare is at rest again. */
static void
keep_decoder(struct session *s)
{
	if (!conn_closed(&s->c) && (s->state == SS_OPEN || s->state == SS_CLOSING)) {
		if ((s->dec = malloc(sizeof(*s->dec))) == NULL)
			fail(s, WS_CLOSE_INTERNAL, "out of memory");
		else
			memcpy(s->dec, &spare, sizeof(spare));
	}
	spare.in_payload = 0;
	spare.hdr_have = 0;
	spare.msg_opcode = 0;
}

void
ws_feed(struct session *s, uint8_t *p, size_t n)
{
	struct ws_decoder *d = s->dec;

	if (s->paused && n > 0) {
		keep_for_later(s, p, n);
		return;
	}
	if (d == NULL) {
		if (!spare_busy) {
			d = &spare;
			spare_busy = 1;
		} else if ((d = s->dec = malloc(sizeof(*d))) != NULL) {
			ws_decoder_init(d, (uint64_t)sess_cfg(s)->max_message_size);
		} else {
			fail(s, WS_CLOSE_INTERNAL, "out of memory");
			return;
		}
		/* What a fresh decoder of this session's differs in from one at rest (the limit: ws_open). */
		d->allow_rsv1 = s->pmd_bits != 0;
	}
	decode(s, d, p, n);
	if (d == &spare) {
		spare_busy = 0;
		if (!decoder_at_rest(d))
			keep_decoder(s);
	} else if (s->dec == d && decoder_at_rest(d)) {
		free(d);
		s->dec = NULL;
	}
}

/* One reason to pause is gone: with none left, what waited is read, then the socket again. */
static void
unpause(struct session *s, uint8_t why)
{
	char *held;
	size_t n;

	s->paused &= (uint8_t)~why;
	if (s->paused || s->state != SS_OPEN || conn_closed(&s->c))
		return;
	held = s->hbuf;
	n = s->hlen;
	s->hbuf = NULL;
	s->hlen = 0;
	if (held != NULL)
		ws_feed(s, (uint8_t *)held, n);	/* may pause again */
	free(held);
	/* A full output queue holds the pause itself, until it drains. */
	if (!s->paused && !conn_closed(&s->c) && !(s->c.flags & CONN_F_AUTORESUME))
		conn_pause(&s->c, 0);
}

void
ws_hold(struct session *s, int hold)
{
	if (hold) {
		s->paused |= WS_PAUSE_ROUTE;
		conn_pause(&s->c, 1);
	} else if (s->paused & WS_PAUSE_ROUTE)
		unpause(s, WS_PAUSE_ROUTE);
}

void
ws_tick(struct session *s, uint64_t now)
{
	const struct config *cf = sess_cfg(s);

	switch (s->state) {
	case SS_OPEN:
		if (s->paused & WS_PAUSE_RATE) {
			rate_refill(s, now);
			if (s->tokens >= 1000)
				unpause(s, WS_PAUSE_RATE);
		}
		/* A token holds for the session, not only the handshake (same 5 s leeway). */
		if (s->id != NULL && s->id->exp > 0 && (long long)(clock_wall_ms() / 1000) >= s->id->exp + 5) {
			ws_log(s, LOG_LVL_INFO, "token expired: closing");
			ws_close(s, WS_CLOSE_AUTH, "token expired");
			break;
		}
		if (now - s->last_rx >= (uint64_t)cf->ping_timeout) {
			ws_log(s, LOG_LVL_INFO, "nothing received for %dms: closing", cf->ping_timeout);
			send_close(s, WS_CLOSE_GOING_AWAY, "ping timeout");
			s->state = SS_DONE;
			conn_finish(&s->c, cf->close_timeout);
			break;
		}
		if (now - s->last_rx >= (uint64_t)cf->ping_interval &&
		    now - s->last_ping >= (uint64_t)cf->ping_interval) {
			s->last_ping = now;
			if (send_frame(s, WS_OP_PING, "roomd", 5) == -1) {
				conn_close(&s->c);
				break;
			}
		}
		if (s->ops->tick != NULL)
			s->ops->tick(s, now);
		break;
	case SS_CLOSING:
		if (now - s->close_at >= (uint64_t)cf->close_timeout) {
			ws_log(s, LOG_LVL_INFO, "no close frame from the peer within close_timeout");
			conn_close(&s->c);
		}
		break;
	default:
		break;
	}
}

void
ws_shutdown(struct session *s)
{
	if (s->state != SS_OPEN)
		return;
	/* Others in our rooms hear "out" before this client is closed. */
	send_close(s, WS_CLOSE_GOING_AWAY, "server shutting down");
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
	snprintf(dur, sizeof(dur), "%llu", (unsigned long long)(clock_ms() - s->opened));
	snprintf(in, sizeof(in), "%u", s->msgs_in);
	snprintf(out, sizeof(out), "%u", s->msgs_out);
	snprintf(code, sizeof(code), "%u", s->close_code != 0 ? s->close_code : 1006);
	rooms[0] = '\0';
	if (s->rooms_seen != NULL)
		snprintf(rooms, sizeof(rooms), "%s", s->rooms_seen);
	else if (s->ops->describe != NULL)
		s->ops->describe(s, rooms, sizeof(rooms));
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

void
ws_release(struct session *s)
{
	if (s->upgraded) {
		access_log(s);
		metrics_gauge(GAUGE_SESSIONS, -1);
	}
	if (s->app != NULL && s->ops->free != NULL)
		s->ops->free(s);
	s->app = NULL;
	sbuf_unref(s->msg);
	s->msg = NULL;
	free(s->dec);
	s->dec = NULL;
	free(s->rooms_seen);
	s->rooms_seen = NULL;
}
