/*
 * proto.c: chat JSON. Input goes through json-c (depth-limited by its
 * tokener); output is written by hand into a reused buffer, escaping every
 * string, because a server event is built once per broadcast and must be cheap.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "proto.h"

struct proto {
	struct json_tokener	*tok;
	struct json_object	*last;	/* the object req points into */
};

/* A tokener as proto_parse wants it: depth 16, strict; NULL when out of memory. */
static struct json_tokener *
tokener_new(void)
{
	struct json_tokener *tok = json_tokener_new_ex(16);

	/* Without STRICT json-c takes trailing commas, leading zeros and True: not JSON. */
	if (tok != NULL)
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	return tok;
}

struct proto *
proto_new(void)
{
	struct proto *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	if ((p->tok = tokener_new()) == NULL) {
		free(p);
		return NULL;
	}
	return p;
}

void
proto_free(struct proto *p)
{
	if (p == NULL)
		return;
	if (p->last != NULL)
		json_object_put(p->last);
	json_tokener_free(p->tok);
	free(p);
}

int
proto_valid_label(const char *s, size_t len, size_t max)
{
	const unsigned char *u = (const unsigned char *)s;

	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (u[i] < 0x20 || u[i] == 0x7f)
			return 0;
		/* C1 controls U+0080..U+009F are C2 80..C2 9F in UTF-8. */
		if (u[i] == 0xc2 && i + 1 < len && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)
			return 0;
	}
	return 1;
}

static int
bad(const char **code, const char *c, char *why, size_t whylen, const char *text)
{
	*code = c;
	snprintf(why, whylen, "%s", text);
	return -1;
}

int
proto_get_uint(struct json_object *o, const char *key, uint64_t max, uint64_t *v)
{
	struct json_object *x;
	int64_t i;

	if (!json_object_object_get_ex(o, key, &x) || x == NULL)
		return 0;
	if (!json_object_is_type(x, json_type_int))
		return -1;
	i = json_object_get_int64(x);
	/* json-c keeps the top of uint64 apart: get_int64 then clamps, which max rejects. */
	if (i < 0 || (uint64_t)i > max)
		return -1;
	*v = (uint64_t)i;
	return 1;
}

int
proto_get_string(struct json_object *o, const char *key, const char **s, size_t *len)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return -1;
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	return 1;
}

int
proto_json(struct proto *p, const char *json, size_t len, struct json_object **out)
{
	struct json_object *o;
	enum json_tokener_error jerr;
	size_t end;

	*out = NULL;
	if (p->last != NULL) {
		json_object_put(p->last);
		p->last = NULL;
	}
	if (len > INT32_MAX)
		return -1;
	json_tokener_reset(p->tok);
	o = json_tokener_parse_ex(p->tok, json, (int)len);
	jerr = json_tokener_get_error(p->tok);
	end = (size_t)json_tokener_get_parse_end(p->tok);
	if (jerr == json_tokener_continue && end == len) {
		/*
		 * A bare number or literal at the very end ("42", "null") waits
		 * for more input: a NUL byte tells the tokener the message ended,
		 * so these are "not_object" rather than "bad_json".
		 */
		o = json_tokener_parse_ex(p->tok, "", 1);
		jerr = json_tokener_get_error(p->tok);
	} else if (jerr == json_tokener_success) {
		/* Trailing white space after the value is fine (a NUL byte is not). */
		while (end < len && (json[end] == ' ' || json[end] == '\t' ||
		    json[end] == '\r' || json[end] == '\n'))
			end++;
		if (end != len)
			jerr = json_tokener_error_parse_unexpected;
	}
	if (jerr != json_tokener_success) {
		struct json_tokener *fresh;

		if (o != NULL)
			json_object_put(o);
		/*
		 * json_tokener_reset() keeps a pending UTF-16 high surrogate: after
		 * "\ud83d\u" and an error, the next message parsed (any client's
		 * on this worker) would get U+FFFD, or the rest of a surrogate pair,
		 * spliced into its first \u escape. So a tokener that failed is
		 * replaced (json-c 0.16; kept if there is no memory for a new one).
		 */
		if ((fresh = tokener_new()) != NULL) {
			json_tokener_free(p->tok);
			p->tok = fresh;
		}
		return -1;
	}
	/* o is NULL for the JSON value null. */
	p->last = o;
	*out = o;
	return 0;
}

int
proto_parse(struct proto *p, const char *json, size_t len, const struct proto_limits *lim,
    struct chat_req *req, const char **code, char *why, size_t whylen)
{
	static const struct { const char *name; enum chat_event ev; } events[] = {
		{ "enter", CHAT_ENTER }, { "message", CHAT_MESSAGE }, { "out", CHAT_OUT },
		{ "heartbeat", CHAT_HEARTBEAT }, { "who", CHAT_WHO }, { "refresh", CHAT_REFRESH },
		{ "history", CHAT_HISTORY },
	};
	struct json_object *o;
	const char *ev;
	size_t evlen;
	int rc, found = 0;

	memset(req, 0, sizeof(*req));
	if (len > INT32_MAX)
		return bad(code, "bad_json", why, whylen, "message too long");
	if (proto_json(p, json, len, &o) == -1)
		return bad(code, "bad_json", why, whylen, "the message is not valid JSON");
	if (o == NULL || !json_object_is_type(o, json_type_object))
		return bad(code, "not_object", why, whylen, "the message must be a JSON object");
	if ((rc = proto_get_string(o, "event", &ev, &evlen)) != 1)
		return bad(code, "bad_field", why, whylen,
		    rc == 0 ? "missing \"event\"" : "\"event\" must be a string");
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		if (strlen(events[i].name) == evlen && memcmp(events[i].name, ev, evlen) == 0) {
			req->ev = events[i].ev;
			found = 1;
		}
	}
	if (!found)
		return bad(code, "unknown_event", why, whylen,
		    "unknown event (want enter, message, out, heartbeat, who, refresh or history)");
	if ((rc = proto_get_string(o, "roomid", &req->roomid, &req->roomid_len)) == -1)
		return bad(code, "bad_field", why, whylen, "\"roomid\" must be a string");
	if (rc == 1 && !proto_valid_label(req->roomid, req->roomid_len, lim->max_roomid)) {
		snprintf(why, whylen, "\"roomid\" must be 1 to %zu bytes without control characters",
		    lim->max_roomid);
		*code = "bad_field";
		return -1;
	}
	rc = proto_get_string(o, "message", &req->message, &req->message_len);
	if (rc == -1)
		return bad(code, "bad_field", why, whylen, "\"message\" must be a string");
	switch (req->ev) {
	case CHAT_ENTER: {
		struct json_object *since;
		uint64_t k = 0;

		if (rc == 0)
			return bad(code, "bad_field", why, whylen, "enter needs \"message\": your name");
		if (!proto_valid_label(req->message, req->message_len, lim->max_name)) {
			snprintf(why, whylen, "the name must be 1 to %zu bytes without control characters",
			    lim->max_name);
			*code = "bad_field";
			return -1;
		}
		if (json_object_object_get_ex(o, "since", &since) && since != NULL) {
			if (!json_object_is_type(since, json_type_object) ||
			    proto_get_uint(since, "offset", PROTO_MAX_OFFSET, &req->since_offset) != 1 ||
			    proto_get_string(since, "epoch", &req->since_epoch, &req->since_epoch_len) != 1 ||
			    req->since_epoch_len == 0 || req->since_epoch_len > PROTO_MAX_EPOCH)
				return bad(code, "bad_field", why, whylen,
				    "\"since\" must be {\"offset\": a whole number, \"epoch\": the room's epoch}");
			req->since = 1;
		}
		if ((rc = proto_get_uint(o, "history", lim->max_history, &k)) == -1) {
			snprintf(why, whylen, "\"history\" must be a whole number from 0 to %u (history_size)",
			    lim->max_history);
			*code = "bad_field";
			return -1;
		}
		req->history = (unsigned)k;
		break;
	}
	case CHAT_HISTORY: {
		uint64_t k = 0;

		if (lim->max_history == 0)
			return bad(code, "bad_field", why, whylen, "this server keeps no history (history_size 0)");
		if ((rc = proto_get_uint(o, "limit", lim->max_history, &k)) == -1 || (rc == 1 && k == 0)) {
			snprintf(why, whylen, "\"limit\" must be a whole number from 1 to %u (history_size)",
			    lim->max_history);
			*code = "bad_field";
			return -1;
		}
		req->history = rc == 1 ? (unsigned)k : lim->max_history < 50 ? lim->max_history : 50;
		if (proto_get_uint(o, "before", PROTO_MAX_OFFSET, &req->before) == -1)
			return bad(code, "bad_field", why, whylen, "\"before\" must be a whole number (an offset)");
		break;
	}
	case CHAT_MESSAGE:
		if (rc == 0)
			return bad(code, "bad_field", why, whylen, "message needs \"message\": the text");
		break;
	case CHAT_REFRESH:
		if ((rc = proto_get_string(o, "token", &req->token, &req->token_len)) != 1 || req->token_len == 0)
			return bad(code, "bad_field", why, whylen, "refresh needs \"token\": a string");
		if (req->token_len > lim->max_token)
			return bad(code, "bad_field", why, whylen, "\"token\" is too long");
		break;
	default:
		break;
	}
	return 0;
}

static void
common_tail(struct jbuf *b, const char *room, size_t rl, long num)
{
	jbuf_str(b, ",\"roomid\":");
	jbuf_json(b, room, rl);
	if (num >= 0) {
		jbuf_str(b, ",\"num\":");
		jbuf_int(b, num);
	}
}

static int shown_name(const char **, size_t *);

void
proto_enter(struct jbuf *b, const char *name, size_t nl, const char *room, size_t rl, long num)
{
	int guest = shown_name(&name, &nl);

	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"enter\",\"message\":");
	jbuf_json(b, name, nl);
	jbuf_str(b, ",\"name\":");
	jbuf_json(b, name, nl);
	if (guest)
		jbuf_str(b, ",\"guest\":true");
	common_tail(b, room, rl, num);
	jbuf_str(b, "}");
}

void
proto_out(struct jbuf *b, const char *name, size_t nl, const char *room, size_t rl, long num)
{
	int guest = shown_name(&name, &nl);

	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"out\",\"name\":");
	jbuf_json(b, name, nl);
	if (guest)
		jbuf_str(b, ",\"guest\":true");
	common_tail(b, room, rl, num);
	jbuf_str(b, "}");
}

void
proto_message_head(struct jbuf *b, const char *name, size_t nl, const char *text, size_t tl,
    const char *room, size_t rl, const char *id, uint64_t ts_ms)
{
	int guest = shown_name(&name, &nl);

	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"message\",\"name\":");
	jbuf_json(b, name, nl);
	if (guest)
		jbuf_str(b, ",\"guest\":true");
	jbuf_str(b, ",\"message\":");
	jbuf_json(b, text, tl);
	jbuf_str(b, ",\"roomid\":");
	jbuf_json(b, room, rl);
	jbuf_str(b, ",\"id\":");
	jbuf_json(b, id, strlen(id));
	jbuf_str(b, ",\"ts\":");
	jbuf_int(b, (long long)ts_ms);
}

void
proto_recovered(struct jbuf *b, const char *room, size_t rl, int recovered, uint64_t offset,
    const char *epoch, long long count, long num)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"recovered\",\"roomid\":");
	jbuf_json(b, room, rl);
	jbuf_str(b, recovered ? ",\"recovered\":true,\"offset\":" : ",\"recovered\":false,\"offset\":");
	jbuf_int(b, (long long)offset);
	jbuf_str(b, ",\"epoch\":");
	jbuf_json(b, epoch, strlen(epoch));
	jbuf_str(b, ",\"count\":");
	jbuf_int(b, count);
	if (num >= 0) {
		jbuf_str(b, ",\"num\":");
		jbuf_int(b, num);
	}
	jbuf_str(b, "}");
}

void
proto_history_begin(struct jbuf *b, const char *room, size_t rl)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"history\",\"roomid\":");
	jbuf_json(b, room, rl);
	jbuf_str(b, ",\"messages\":[");
}

void
proto_history_message(struct jbuf *b, const char *json, size_t len, int first)
{
	if (!first)
		jbuf_add(b, ",", 1);
	jbuf_add(b, json, len);	/* a message event roomd wrote itself */
}

void
proto_history_end(struct jbuf *b, uint64_t offset, const char *epoch, long num)
{
	jbuf_str(b, "],\"offset\":");
	jbuf_int(b, (long long)offset);
	jbuf_str(b, ",\"epoch\":");
	jbuf_json(b, epoch, strlen(epoch));
	if (num >= 0) {
		jbuf_str(b, ",\"num\":");
		jbuf_int(b, num);
	}
	jbuf_str(b, "}");
}

void
proto_refreshed(struct jbuf *b, long long exp, long num)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"refresh\",\"exp\":");
	jbuf_int(b, exp);
	if (num >= 0) {
		jbuf_str(b, ",\"num\":");
		jbuf_int(b, num);
	}
	jbuf_str(b, "}");
}

void
proto_heartbeat(struct jbuf *b, int pong, long num)
{
	jbuf_reset(b);
	jbuf_str(b, pong ? "{\"event\":\"heartbeat\",\"message\":\"pong\"" :
	    "{\"event\":\"heartbeat\",\"message\":\"ping\"");
	if (num >= 0) {
		jbuf_str(b, ",\"num\":");
		jbuf_int(b, num);
	}
	jbuf_str(b, "}");
}

void
proto_error(struct jbuf *b, const char *code, const char *message)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"error\",\"code\":");
	jbuf_json(b, code, strlen(code));
	jbuf_str(b, ",\"message\":");
	jbuf_json(b, message, strlen(message));
	jbuf_str(b, "}");
}

/* A name as members see it: a guest's without its marker; whether it had one. */
static int
shown_name(const char **name, size_t *nl)
{
	if (*nl > 0 && (*name)[0] == PROTO_GUEST) {
		(*name)++;
		(*nl)--;
		return 1;
	}
	return 0;
}

void
proto_who(struct jbuf *b, const char *room, size_t rl, const char *const *names, const size_t *lens,
    size_t n, long total)
{
	size_t guests = 0, k = 0;

	jbuf_reset(b);
	jbuf_str(b, "{\"event\":\"who\",\"roomid\":");
	jbuf_json(b, room, rl);
	jbuf_str(b, ",\"members\":[");
	for (size_t i = 0; i < n; i++) {
		const char *nm = names[i];
		size_t nl = lens[i];

		guests += (size_t)shown_name(&nm, &nl);
		if (i > 0)
			jbuf_add(b, ",", 1);
		jbuf_json(b, nm, nl);
	}
	jbuf_str(b, "]");
	if (guests > 0) {
		/* Which of those came without a token (auth optional). */
		jbuf_str(b, ",\"guests\":[");
		for (size_t i = 0; i < n; i++) {
			const char *nm = names[i];
			size_t nl = lens[i];

			if (!shown_name(&nm, &nl))
				continue;
			if (k++ > 0)
				jbuf_add(b, ",", 1);
			jbuf_json(b, nm, nl);
		}
		jbuf_str(b, "]");
	}
	if (total >= 0) {
		jbuf_str(b, ",\"num\":");
		jbuf_int(b, total);
	}
	jbuf_str(b, "}");
}
