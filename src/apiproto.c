/*
 * apiproto.c: the HTTP API's requests and answers. A request is routed by
 * its method and path, then its query and JSON body (json-c, through the
 * chat parser's strict tokener) are checked field by field, every count
 * and length bounded; nothing here touches a socket. Answers are written
 * into a reused buffer with every string escaped, like the chat events.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "apiproto.h"
#include "http.h"
#include "proto.h"
#include "utf8.h"

struct apiproto {
	struct proto	*json;		/* the JSON parser (holds what req points into) */
	char		*scratch;	/* the room decoded from the path */
	size_t		 scap;
	const char	**rooms;	/* broadcast: API_MAX_ROOMS of them */
	size_t		*room_lens;
};

static const char *const call_names[] = {
	[API_PUBLISH] = "publish", [API_BROADCAST] = "broadcast", [API_DISCONNECT] = "disconnect",
	[API_ROOMS] = "rooms", [API_ROOM] = "room", [API_HISTORY] = "history", [API_INFO] = "info",
	[API_NONE] = "other",
};

struct apiproto *
apiproto_new(void)
{
	struct apiproto *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->json = proto_new();
	p->rooms = calloc(API_MAX_ROOMS, sizeof(*p->rooms));
	p->room_lens = calloc(API_MAX_ROOMS, sizeof(*p->room_lens));
	if (p->json == NULL || p->rooms == NULL || p->room_lens == NULL) {
		apiproto_free(p);
		return NULL;
	}
	return p;
}

void
apiproto_free(struct apiproto *p)
{
	if (p == NULL)
		return;
	proto_free(p->json);
	free(p->scratch);
	free(p->rooms);
	free(p->room_lens);
	free(p);
}

const char *
apiproto_call_name(enum api_call c)
{
	return c <= API_NONE ? call_names[c] : "other";
}

int
apiproto_is_api(const char *path, size_t len)
{
	return len >= 4 && memcmp(path, "/api", 4) == 0 && (len == 4 || path[4] == '/');
}

/* Fill err; returns -1 (for the parse functions). */
static int fail(struct api_error *, int status, const char *code, const char *fmt, ...) PRINTF_LIKE(4, 5);
static int
fail(struct api_error *err, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	err->code = code;
	err->allow = NULL;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -1;
}

static int
is(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

/*
 * The call a path names, and where the room segment is (API_ROOM and
 * API_HISTORY); API_NONE if it names none.
 */
static enum api_call
path_call(const char *path, size_t pl, const char **seg, size_t *segl)
{
	static const char rooms[] = "/api/rooms/", hist[] = "/history";
	const char *s, *slash;
	size_t n;

	if (is(path, pl, "/api/publish"))
		return API_PUBLISH;
	if (is(path, pl, "/api/broadcast"))
		return API_BROADCAST;
	if (is(path, pl, "/api/disconnect"))
		return API_DISCONNECT;
	if (is(path, pl, "/api/rooms"))
		return API_ROOMS;
	if (is(path, pl, "/api/info"))
		return API_INFO;
	if (pl <= sizeof(rooms) - 1 || memcmp(path, rooms, sizeof(rooms) - 1) != 0)
		return API_NONE;
	s = path + sizeof(rooms) - 1;
	n = pl - (sizeof(rooms) - 1);
	if ((slash = memchr(s, '/', n)) == NULL) {
		*seg = s;
		*segl = n;
		return API_ROOM;
	}
	if (slash == s || !is(slash, n - (size_t)(slash - s), hist))
		return API_NONE;
	*seg = s;
	*segl = (size_t)(slash - s);
	return API_HISTORY;
}

enum api_call
apiproto_path(const char *path, size_t pl)
{
	const char *seg;
	size_t segl;

	return path_call(path, pl, &seg, &segl);
}

enum api_call
apiproto_route(const char *method, size_t ml, const char *path, size_t pl, struct api_error *err)
{
	const char *seg = NULL;
	size_t segl = 0;
	enum api_call c = path_call(path, pl, &seg, &segl);
	int post = c == API_PUBLISH || c == API_BROADCAST || c == API_DISCONNECT;

	if (c == API_NONE) {
		(void)fail(err, 404, "not_found", "no such API call (see roomd-api(7))");
		return API_NONE;
	}
	if (post ? is(method, ml, "POST") : (is(method, ml, "GET") || is(method, ml, "HEAD")))
		return c;
	(void)fail(err, 405, "method_not_allowed", "%s takes %s", call_names[c], post ? "POST" : "GET or HEAD");
	err->allow = post ? "POST" : "GET, HEAD";
	return API_NONE;
}

/* A whole decimal number in [lo, hi] from a query parameter: 1 found, 0 absent, -1 bad. */
static int
query_uint(const char *q, size_t ql, const char *name, uint64_t lo, uint64_t hi, uint64_t *out)
{
	size_t vl;
	const char *v = q != NULL ? http_query_param(q, ql, name, &vl) : NULL;
	uint64_t n = 0;

	if (v == NULL)
		return 0;
	if (vl == 0 || vl > 20)
		return -1;
	for (size_t i = 0; i < vl; i++) {
		if (v[i] < '0' || v[i] > '9' || n > (UINT64_MAX - (uint64_t)(v[i] - '0')) / 10)
			return -1;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	if (n < lo || n > hi)
		return -1;
	*out = n;
	return 1;
}

/* The room a path segment names, percent-decoded into scratch. */
static int
path_room(struct apiproto *p, const char *seg, size_t segl, const struct api_limits *lim, struct api_req *req,
    struct api_error *err)
{
	int n;

	if (p->scap < segl + 1) {
		char *nb = realloc(p->scratch, segl + 1);

		if (nb == NULL)
			return fail(err, 503, "unavailable", "out of memory");
		p->scratch = nb;
		p->scap = segl + 1;
	}
	n = http_pct_decode(seg, segl, p->scratch, p->scap, 0);
	if (n < 0 || !utf8_valid((const uint8_t *)p->scratch, (size_t)n) ||
	    !proto_valid_label(p->scratch, (size_t)n, lim->max_roomid))
		return fail(err, 400, "bad_room", "a room id is 1 to %zu bytes of UTF-8 without control "
		    "characters, %%-encoded in the path", lim->max_roomid);
	req->room = p->scratch;
	req->room_len = (size_t)n;
	return 0;
}

/* A label member (room, name, user): 1 found, 0 absent, -1 bad (err set). */
static int
get_label(struct json_object *o, const char *key, size_t max, const char *code, const char **s, size_t *len,
    struct api_error *err)
{
	int rc = proto_get_string(o, key, s, len);

	if (rc == -1)
		return fail(err, 400, "bad_field", "\"%s\" must be a string", key);
	if (rc == 1 && !proto_valid_label(*s, *len, max))
		return fail(err, 400, code, "\"%s\" must be 1 to %zu bytes without control characters", key, max);
	return rc;
}

/* message (required) and name (optional) of publish and broadcast. */
static int
get_message(struct json_object *o, const struct api_limits *lim, struct api_req *req, struct api_error *err)
{
	int rc = proto_get_string(o, "message", &req->message, &req->message_len);

	if (rc == -1)
		return fail(err, 400, "bad_field", "\"message\" must be a string");
	if (rc == 0)
		return fail(err, 400, "missing_field", "\"message\" is required: the text to post");
	if (get_label(o, "name", lim->max_name, "bad_name", &req->name, &req->name_len, err) == -1)
		return -1;
	return 0;
}

static int
parse_broadcast(struct apiproto *p, struct json_object *o, const struct api_limits *lim, struct api_req *req,
    struct api_error *err)
{
	struct json_object *a;
	size_t n;

	if (!json_object_object_get_ex(o, "rooms", &a) || a == NULL)
		return fail(err, 400, "missing_field", "\"rooms\" is required: an array of room ids");
	if (!json_object_is_type(a, json_type_array))
		return fail(err, 400, "bad_field", "\"rooms\" must be an array of room ids");
	n = json_object_array_length(a);
	if (n == 0 || n > API_MAX_ROOMS)
		return fail(err, 400, "bad_field", "\"rooms\" must hold 1 to %d room ids", API_MAX_ROOMS);
	for (size_t i = 0; i < n; i++) {
		struct json_object *r = json_object_array_get_idx(a, i);

		if (r == NULL || !json_object_is_type(r, json_type_string))
			return fail(err, 400, "bad_field", "\"rooms\" must hold strings only");
		p->rooms[i] = json_object_get_string(r);
		p->room_lens[i] = (size_t)json_object_get_string_len(r);
		if (!proto_valid_label(p->rooms[i], p->room_lens[i], lim->max_roomid))
			return fail(err, 400, "bad_room", "room %zu of \"rooms\" is not 1 to %zu bytes without "
			    "control characters", i + 1, lim->max_roomid);
	}
	req->nrooms = n;
	req->rooms = p->rooms;
	req->room_lens = p->room_lens;
	return get_message(o, lim, req, err);
}

/* Close codes an application may send: normal, going away, policy, error, try later, and its own 3000-4999. */
static int
close_code_ok(uint64_t c)
{
	return c == 1000 || c == 1001 || c == 1008 || c == 1011 || c == 1013 || (c >= 3000 && c <= 4999);
}

static int
parse_disconnect(struct json_object *o, const struct api_limits *lim, struct api_req *req, struct api_error *err)
{
	const char *uuid = NULL;
	size_t cl = 0;
	uint64_t code = 1008;
	int ru, rc;

	if ((ru = get_label(o, "user", lim->max_name, "bad_field", &req->user, &req->user_len, err)) == -1)
		return -1;
	if ((rc = proto_get_string(o, "conn", &uuid, &cl)) == -1)
		return fail(err, 400, "bad_field", "\"conn\" must be a string: a session's uuid");
	if (ru + rc != 1)
		return fail(err, 400, ru + rc == 0 ? "missing_field" : "bad_field",
		    "give exactly one of \"user\" (a name) and \"conn\" (a session's uuid)");
	if (rc == 1) {
		if (apiproto_uuid_parse(uuid, cl, req->uuid) == -1)
			return fail(err, 400, "bad_field", "\"conn\" must be a uuid such as "
			    "0f8e5b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
		req->by_conn = 1;
		req->uuid_text = uuid;
	}
	if (proto_get_uint(o, "code", 4999, &code) == -1 || !close_code_ok(code))
		return fail(err, 400, "bad_field", "\"code\" must be 1000, 1001, 1008, 1011, 1013 or 3000 to 4999");
	req->code = (unsigned)code;
	req->reason = "";
	if ((rc = proto_get_string(o, "reason", &req->reason, &req->reason_len)) == -1)
		return fail(err, 400, "bad_field", "\"reason\" must be a string");
	if (rc == 1 && (req->reason_len > API_MAX_REASON ||
	    (req->reason_len > 0 && !proto_valid_label(req->reason, req->reason_len, API_MAX_REASON))))
		return fail(err, 400, "bad_field", "\"reason\" must be at most %d bytes without control characters",
		    API_MAX_REASON);
	return 0;
}

/* The body of a POST call: a JSON object, parsed per call. */
static int
parse_body(struct apiproto *p, const char *body, size_t bl, const struct api_limits *lim, struct api_req *req,
    struct api_error *err)
{
	struct json_object *o;
	int rc;

	if (!utf8_valid((const uint8_t *)body, bl))
		return fail(err, 400, "bad_json", "the body is not UTF-8");
	if (proto_json(p->json, body, bl, &o) == -1)
		return fail(err, 400, "bad_json", "the body is not valid JSON");
	if (o == NULL || !json_object_is_type(o, json_type_object))
		return fail(err, 400, "not_object", "the body must be a JSON object");
	switch (req->call) {
	case API_PUBLISH:
		if ((rc = get_label(o, "room", lim->max_roomid, "bad_room", &req->room, &req->room_len, err)) == -1)
			return -1;
		if (rc == 0)
			return fail(err, 400, "missing_field", "\"room\" is required: the room id");
		return get_message(o, lim, req, err);
	case API_BROADCAST:
		return parse_broadcast(p, o, lim, req, err);
	case API_DISCONNECT:
		return parse_disconnect(o, lim, req, err);
	default:
		return 0;
	}
}

int
apiproto_parse(struct apiproto *p, const char *method, size_t ml, const char *path, size_t pl,
    const char *query, size_t ql, const char *body, size_t bl, const struct api_limits *lim,
    struct api_req *req, struct api_error *err)
{
	const char *seg = NULL;
	size_t segl = 0;
	uint64_t v;
	int rc;

	memset(req, 0, sizeof(*req));
	if ((req->call = apiproto_route(method, ml, path, pl, err)) == API_NONE)
		return -1;
	(void)path_call(path, pl, &seg, &segl);
	switch (req->call) {
	case API_PUBLISH:
	case API_BROADCAST:
	case API_DISCONNECT:
		return parse_body(p, body != NULL ? body : "", bl, lim, req, err);
	case API_ROOMS:
		req->limit = API_PAGE_DEFAULT;
		if ((rc = query_uint(query, ql, "limit", 1, API_PAGE_MAX, &v)) == -1)
			return fail(err, 400, "bad_query", "limit must be a whole number from 1 to %d", API_PAGE_MAX);
		if (rc == 1)
			req->limit = (unsigned)v;
		if (query_uint(query, ql, "cursor", 0, UINT64_MAX, &req->cursor) == -1)
			return fail(err, 400, "bad_query", "cursor must be the \"cursor\" of the page before");
		return 0;
	case API_HISTORY:
		if (lim->max_history == 0)
			return fail(err, 404, "no_history", "this server keeps no history (history_size 0)");
		req->limit = lim->max_history < API_HISTORY_DEFAULT ? lim->max_history : API_HISTORY_DEFAULT;
		if ((rc = query_uint(query, ql, "limit", 1, lim->max_history, &v)) == -1)
			return fail(err, 400, "bad_query", "limit must be a whole number from 1 to %u (history_size)",
			    lim->max_history);
		if (rc == 1)
			req->limit = (unsigned)v;
		if (query_uint(query, ql, "before", 0, PROTO_MAX_OFFSET, &req->before) == -1)
			return fail(err, 400, "bad_query", "before must be an offset: a whole number from 0 to %llu",
			    (unsigned long long)PROTO_MAX_OFFSET);
		/* FALLTHROUGH */
	case API_ROOM:
		return path_room(p, seg, segl, lim, req, err);
	default:
		return 0;
	}
}

/* SHA-256 of n bytes into md (zeros if the digest fails, which then matches no key). */
static void
digest(const char *s, size_t n, unsigned char md[32])
{
	unsigned int mdl = 0;

	if (EVP_Digest(s, n, md, &mdl, EVP_sha256(), NULL) != 1 || mdl != 32)
		memset(md, 0, 32);
}

int
apiproto_key_ok(const char *auth, size_t al, const char *const *keys, size_t nkeys)
{
	unsigned char given[32], want[32];
	size_t i = 6;
	int match = 0;

	if (auth == NULL || al < 7 || strncasecmp(auth, "Bearer", 6) != 0 || (auth[6] != ' ' && auth[6] != '\t'))
		return 0;
	while (i < al && (auth[i] == ' ' || auth[i] == '\t'))
		i++;
	while (al > i && (auth[al - 1] == ' ' || auth[al - 1] == '\t'))
		al--;
	if (i == al)
		return 0;
	digest(auth + i, al - i, given);
	/* Every key, without stopping at a match: the time says nothing about which, or whether. */
	for (size_t k = 0; k < nkeys; k++) {
		digest(keys[k], strlen(keys[k]), want);
		match |= CRYPTO_memcmp(given, want, 32) == 0;
	}
	return match;
}

int
apiproto_uuid_parse(const char *s, size_t n, uint8_t u[16])
{
	int k = 0;

	if (n != 36)
		return -1;
	for (size_t i = 0; i < 36; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			continue;
		}
		if (i + 1 >= 36 || (hi = http_hex_digit((unsigned char)s[i])) < 0 || (lo = http_hex_digit((unsigned char)s[i + 1])) < 0)
			return -1;
		u[k++] = (uint8_t)(hi << 4 | lo);
		i++;
	}
	return k == 16 ? 0 : -1;
}

/* ---- answers ---- */

void
apiproto_error(struct jbuf *b, const char *code, const char *message)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"error\":{\"code\":");
	jbuf_json(b, code, strlen(code));
	jbuf_str(b, ",\"message\":");
	jbuf_json(b, message, strlen(message));
	jbuf_str(b, "}}");
}

/* ,"offset":N,"epoch":"E" */
static void
position(struct jbuf *b, uint64_t offset, const char *epoch)
{
	jbuf_str(b, ",\"offset\":");
	jbuf_int(b, (long long)offset);
	jbuf_str(b, ",\"epoch\":");
	jbuf_json(b, epoch, strlen(epoch));
}

/* "id":..,"offset":N,"epoch":"E","num":N of a message posted */
static void
posted(struct jbuf *b, const char *id, uint64_t offset, const char *epoch, long num)
{
	jbuf_str(b, "\"id\":");
	jbuf_json(b, id, strlen(id));
	position(b, offset, epoch);
	jbuf_str(b, ",\"num\":");
	jbuf_int(b, num);
}

void
apiproto_published(struct jbuf *b, const char *id, uint64_t offset, const char *epoch, long num)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"result\":{");
	posted(b, id, offset, epoch, num);
	jbuf_str(b, "}}");
}

void
apiproto_broadcast_begin(struct jbuf *b)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"result\":{\"rooms\":[");
}

void
apiproto_broadcast_item(struct jbuf *b, int first, const char *room, size_t rl, const char *id, uint64_t offset,
    const char *epoch, long num, const char *code, const char *message)
{
	jbuf_str(b, first ? "{\"room\":" : ",{\"room\":");
	jbuf_json(b, room, rl);
	if (code != NULL) {
		jbuf_str(b, ",\"error\":{\"code\":");
		jbuf_json(b, code, strlen(code));
		jbuf_str(b, ",\"message\":");
		jbuf_json(b, message, strlen(message));
		jbuf_str(b, "}}");
		return;
	}
	jbuf_str(b, ",");
	posted(b, id, offset, epoch, num);
	jbuf_str(b, "}");
}

void
apiproto_broadcast_end(struct jbuf *b)
{
	jbuf_str(b, "]}}");
}

void
apiproto_disconnected(struct jbuf *b, long closed, long workers, long answered)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"result\":{\"disconnected\":");
	jbuf_int(b, closed);
	jbuf_str(b, ",\"workers\":");
	jbuf_int(b, workers);
	jbuf_str(b, ",\"answered\":");
	jbuf_int(b, answered);
	jbuf_str(b, "}}");
}

void
apiproto_rooms_begin(struct jbuf *b)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"result\":{\"rooms\":[");
}

void
apiproto_rooms_item(struct jbuf *b, int first, const char *room, size_t rl, long num)
{
	jbuf_str(b, first ? "{\"room\":" : ",{\"room\":");
	jbuf_json(b, room, rl);
	jbuf_str(b, ",\"num\":");
	jbuf_int(b, num);
	jbuf_str(b, "}");
}

void
apiproto_rooms_end(struct jbuf *b, uint64_t cursor)
{
	char c[24];
	size_t n;

	/* A string: a cursor is an unsigned 64-bit number, beyond what JSON numbers carry exactly. */
	n = jbuf_itoa(c, (long long)(cursor & INT64_MAX));
	if (cursor > INT64_MAX)
		n = (size_t)snprintf(c, sizeof(c), "%llu", (unsigned long long)cursor);
	jbuf_str(b, "],\"cursor\":");
	jbuf_json(b, c, n);
	jbuf_str(b, "}}");
}

/* Names as members see them, a guest's without its marker; with guests, which they are. */
static void
names(struct jbuf *b, const char *const *nm, const size_t *lens, size_t n, int guests_only)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		int guest = lens[i] > 0 && nm[i][0] == PROTO_GUEST;

		if (guests_only && !guest)
			continue;
		if (k++ > 0)
			jbuf_add(b, ",", 1);
		jbuf_json(b, nm[i] + guest, lens[i] - (size_t)guest);
	}
}

void
apiproto_room(struct jbuf *b, const char *room, size_t rl, const char *const *nm, const size_t *lens, size_t n,
    long total, uint64_t offset, const char *epoch)
{
	int guests = 0;

	for (size_t i = 0; i < n; i++)
		guests |= lens[i] > 0 && nm[i][0] == PROTO_GUEST;
	jbuf_reset(b);
	jbuf_str(b, "{\"result\":{\"room\":");
	jbuf_json(b, room, rl);
	jbuf_str(b, ",\"num\":");
	jbuf_int(b, total);
	jbuf_str(b, ",\"members\":[");
	names(b, nm, lens, n, 0);
	jbuf_str(b, "]");
	if (guests) {
		jbuf_str(b, ",\"guests\":[");
		names(b, nm, lens, n, 1);
		jbuf_str(b, "]");
	}
	position(b, offset, epoch);
	jbuf_str(b, "}}");
}

void
apiproto_history_begin(struct jbuf *b, const char *room, size_t rl)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"result\":{\"room\":");
	jbuf_json(b, room, rl);
	jbuf_str(b, ",\"messages\":[");
}

void
apiproto_history_message(struct jbuf *b, int first, const char *json, size_t len)
{
	if (!first)
		jbuf_add(b, ",", 1);
	jbuf_add(b, json, len);		/* a message event roomd wrote itself */
}

void
apiproto_history_end(struct jbuf *b, uint64_t offset, const char *epoch)
{
	jbuf_str(b, "]");
	position(b, offset, epoch);
	jbuf_str(b, "}}");
}

/* ---- liveness records and /api/info ---- */

void
apiproto_worker_record(struct jbuf *b, const struct api_worker *w)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"instance\":");
	jbuf_json(b, w->instance, strlen(w->instance));
	jbuf_str(b, ",\"version\":");
	jbuf_json(b, w->version, strlen(w->version));
	jbuf_str(b, ",\"pid\":");
	jbuf_int(b, w->pid);
	jbuf_str(b, ",\"started\":");
	jbuf_int(b, w->started);
	jbuf_str(b, ",\"connections\":");
	jbuf_int(b, w->connections);
	jbuf_str(b, ",\"rooms\":");
	jbuf_int(b, w->rooms);
	jbuf_str(b, "}");
}

/* A string member into out[len] (it must fit and hold no control character). */
static int
get_text(struct json_object *o, const char *key, char *out, size_t len)
{
	const char *s;
	size_t n;

	if (proto_get_string(o, key, &s, &n) != 1 || n >= len || (n > 0 && !proto_valid_label(s, n, len)))
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

int
apiproto_worker_parse(struct apiproto *p, const char *json, size_t len, struct api_worker *w)
{
	struct json_object *o;
	uint64_t v[4];
	static const char *const keys[4] = { "pid", "started", "connections", "rooms" };

	memset(w, 0, sizeof(*w));
	if (proto_json(p->json, json, len, &o) == -1 || o == NULL || !json_object_is_type(o, json_type_object) ||
	    get_text(o, "instance", w->instance, sizeof(w->instance)) == -1 || w->instance[0] == '\0' ||
	    get_text(o, "version", w->version, sizeof(w->version)) == -1)
		return -1;
	for (int i = 0; i < 4; i++)
		if (proto_get_uint(o, keys[i], INT64_MAX, &v[i]) != 1)
			return -1;
	w->pid = (long long)v[0];
	w->started = (long long)v[1];
	w->connections = (long long)v[2];
	w->rooms = (long long)v[3];
	return 0;
}

void
apiproto_info_begin(struct jbuf *b)
{
	jbuf_reset(b);
	jbuf_str(b, "{\"result\":{\"hosts\":[");
}

void
apiproto_info_host(struct jbuf *b, int first, const struct api_worker *oldest, long workers, long long connections,
    long long rooms, long long now)
{
	jbuf_str(b, first ? "{\"instance\":" : ",{\"instance\":");
	jbuf_json(b, oldest->instance, strlen(oldest->instance));
	jbuf_str(b, ",\"version\":");
	jbuf_json(b, oldest->version, strlen(oldest->version));
	jbuf_str(b, ",\"started\":");
	jbuf_int(b, oldest->started);
	jbuf_str(b, ",\"uptime\":");
	jbuf_int(b, now > oldest->started ? (now - oldest->started) / 1000 : 0);
	jbuf_str(b, ",\"workers\":");
	jbuf_int(b, workers);
	jbuf_str(b, ",\"connections\":");
	jbuf_int(b, connections);
	jbuf_str(b, ",\"rooms\":");
	jbuf_int(b, rooms);
	jbuf_str(b, "}");
}

void
apiproto_info_end(struct jbuf *b, long workers)
{
	jbuf_str(b, "],\"workers\":");
	jbuf_int(b, workers);
	jbuf_str(b, "}}");
}

/* ---- control messages ---- */

void
apiproto_kick(struct jbuf *b, const char *origin, uint64_t id, const struct api_req *req)
{
	jbuf_reset(b);
	jbuf_str(b, "k ");
	jbuf_str(b, origin);
	jbuf_str(b, " ");
	jbuf_int(b, (long long)(id & INT64_MAX));
	jbuf_str(b, " ");
	jbuf_int(b, req->code);
	if (req->by_conn) {
		jbuf_str(b, " c\n");
		jbuf_add(b, req->uuid_text, 36);
	} else {
		jbuf_str(b, " u\n");
		jbuf_add(b, req->user, req->user_len);
	}
	jbuf_str(b, "\n");
	jbuf_add(b, req->reason, req->reason_len);
}

void
apiproto_kicked(struct jbuf *b, const char *origin, uint64_t id, long closed)
{
	jbuf_reset(b);
	jbuf_str(b, "a ");
	jbuf_str(b, origin);
	jbuf_str(b, " ");
	jbuf_int(b, (long long)(id & INT64_MAX));
	jbuf_str(b, " ");
	jbuf_int(b, closed);
}

/* A decimal number of at most 19 digits ending at a space, a newline or the end. */
static const char *
number(const char *p, const char *e, uint64_t *v)
{
	const char *s = p;

	*v = 0;
	while (p < e && *p >= '0' && *p <= '9' && p - s < 19)
		*v = *v * 10 + (uint64_t)(*p++ - '0');
	if (p == s || (p < e && *p != ' ' && *p != '\n'))
		return NULL;
	return p;
}

int
apiproto_control_parse(const char *p, size_t n, struct api_control *c)
{
	const char *e = p + n, *s, *nl;
	uint64_t v;

	memset(c, 0, sizeof(*c));
	if (n < 2 || (p[0] != 'k' && p[0] != 'a') || p[1] != ' ')
		return -1;
	c->kind = p[0];
	p += 2;
	for (s = p; p < e && *p > ' ' && *p < 0x7f; p++)
		;
	if (p == s || (size_t)(p - s) > API_MAX_WID || p == e || *p != ' ')
		return -1;
	memcpy(c->origin, s, (size_t)(p - s));
	c->origin[p - s] = '\0';
	if ((p = number(p + 1, e, &c->id)) == NULL || p == e || *p != ' ' || (p = number(p + 1, e, &v)) == NULL)
		return -1;
	if (c->kind == 'a') {
		if (p != e || v > INT32_MAX)
			return -1;
		c->closed = (long)v;
		return 0;
	}
	if (!close_code_ok(v) || e - p < 3 || p[0] != ' ' || (p[1] != 'u' && p[1] != 'c') || p[2] != '\n')
		return -1;
	c->code = (unsigned)v;
	c->by_conn = p[1] == 'c';
	p += 3;
	if ((nl = memchr(p, '\n', (size_t)(e - p))) == NULL)
		return -1;
	if (c->by_conn) {
		if (apiproto_uuid_parse(p, (size_t)(nl - p), c->uuid) == -1)
			return -1;
	} else {
		if (nl == p)
			return -1;
		c->user = p;
		c->user_len = (size_t)(nl - p);
	}
	c->reason = nl + 1;
	c->reason_len = (size_t)(e - nl - 1);
	if (c->reason_len > API_MAX_REASON || memchr(c->reason, '\n', c->reason_len) != NULL)
		return -1;
	return 0;
}
