/*
 * fuzz_apiproto.c: libFuzzer target for the HTTP API's parser. An input is
 * "METHOD TARGET\nBODY" (TARGET a path with an optional ?query). A parse
 * repeats alike on one reused parser; a refusal has a status, a code and a
 * sentence from a fixed set; an accepted call keeps every bound (rooms,
 * names, counts, codes, reasons). The whole input is also read as a
 * control message of /api/disconnect: one that parses, written again from
 * what was read, reads back the same; and as an Authorization value, which
 * may match a key only if it holds exactly that key.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiproto.h"
#include "proto.h"
#include "utf8.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

static struct apiproto *P;
static struct jbuf out;
static const struct api_limits LIM = { 16, 24, 100 };

/* An exact-size copy (so ASan sees any over-read); NULL for 0 bytes. */
static char *
dup_n(const char *p, size_t n)
{
	char *c;

	if (n == 0 || (c = malloc(n)) == NULL)
		return NULL;
	memcpy(c, p, n);
	return c;
}

/* What a parse said, to compare with the next parse of the same bytes. */
struct outcome {
	int		 rc, status;
	enum api_call	 call;
	size_t		 room_len, message_len, nrooms;
	unsigned	 code, limit;
	uint64_t	 cursor, before;
};

static void
check_req(const struct api_req *r)
{
	switch (r->call) {
	case API_PUBLISH:
		CHECK(proto_valid_label(r->room, r->room_len, LIM.max_roomid) && r->message != NULL);
		/* FALLTHROUGH */
	case API_BROADCAST:
		CHECK(r->name == NULL || proto_valid_label(r->name, r->name_len, LIM.max_name));
		CHECK(r->call != API_BROADCAST || (r->nrooms >= 1 && r->nrooms <= API_MAX_ROOMS));
		for (size_t i = 0; r->call == API_BROADCAST && i < r->nrooms; i++)
			CHECK(proto_valid_label(r->rooms[i], r->room_lens[i], LIM.max_roomid));
		break;
	case API_DISCONNECT:
		CHECK(r->by_conn ? r->uuid_text != NULL : proto_valid_label(r->user, r->user_len, LIM.max_name));
		CHECK(r->code == 1000 || r->code == 1001 || r->code == 1008 || r->code == 1011 || r->code == 1013 ||
		    (r->code >= 3000 && r->code <= 4999));
		CHECK(r->reason != NULL && r->reason_len <= API_MAX_REASON);
		break;
	case API_ROOMS:
		CHECK(r->limit >= 1 && r->limit <= API_PAGE_MAX);
		break;
	case API_HISTORY:
		CHECK(r->limit >= 1 && r->limit <= LIM.max_history && r->before <= PROTO_MAX_OFFSET);
		/* FALLTHROUGH */
	case API_ROOM:
		CHECK(proto_valid_label(r->room, r->room_len, LIM.max_roomid) &&
		    utf8_valid((const uint8_t *)r->room, r->room_len));
		break;
	case API_INFO:
		break;
	default:
		CHECK(!"a parsed request names a call");
	}
}

static void
parse(const char *m, size_t ml, const char *path, size_t pl, const char *q, size_t ql, const char *b, size_t bl,
    struct outcome *o)
{
	static const char *const codes[] = {
		"not_found", "method_not_allowed", "bad_json", "not_object", "missing_field", "bad_field", "bad_room",
		"bad_name", "bad_query", "no_history", "unavailable",
	};
	struct api_req req;
	struct api_error err;
	int known = 0;

	memset(o, 0, sizeof(*o));
	memset(&err, 0, sizeof(err));
	o->rc = apiproto_parse(P, m, ml, path, pl, q, ql, b, bl, &LIM, &req, &err);
	CHECK(o->rc == 0 || o->rc == -1);
	if (o->rc == -1) {
		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
			known |= err.code != NULL && strcmp(err.code, codes[i]) == 0;
		CHECK(known && err.message[0] != '\0');
		CHECK(err.status == 400 || err.status == 404 || err.status == 405 || err.status == 503);
		CHECK((err.status == 405) == (err.allow != NULL));
		o->status = err.status;
		return;
	}
	check_req(&req);
	o->call = req.call;
	o->room_len = req.room_len;
	o->message_len = req.message_len;
	o->nrooms = req.nrooms;
	o->code = req.code;
	o->limit = req.limit;
	o->cursor = req.cursor;
	o->before = req.before;
}

static void
fuzz_request(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data, *sp, *nl, *q;
	char *m, *path, *query, *body;
	size_t ml, tl, pl, ql, bl;
	struct outcome a, b;

	if ((sp = memchr(in, ' ', size)) == NULL)
		return;
	ml = (size_t)(sp - in);
	if ((nl = memchr(sp + 1, '\n', size - ml - 1)) == NULL)
		nl = in + size;
	tl = (size_t)(nl - sp - 1);
	q = memchr(sp + 1, '?', tl);
	pl = q != NULL ? (size_t)(q - sp - 1) : tl;
	ql = q != NULL ? tl - pl - 1 : 0;
	bl = nl < in + size ? size - (size_t)(nl + 1 - in) : 0;
	m = dup_n(in, ml);
	path = dup_n(sp + 1, pl);
	query = dup_n(q != NULL ? q + 1 : "", ql);
	body = dup_n(nl < in + size ? nl + 1 : "", bl);
	if ((ml > 0 && m == NULL) || (pl > 0 && path == NULL) || (ql > 0 && query == NULL) || (bl > 0 && body == NULL))
		goto done;
	parse(m != NULL ? m : "", ml, path != NULL ? path : "", pl, query, ql, body, bl, &a);
	parse(m != NULL ? m : "", ml, path != NULL ? path : "", pl, query, ql, body, bl, &b);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	/* A path outside /api is never a call. */
	if (!apiproto_is_api(path != NULL ? path : "", pl))
		CHECK(a.rc == -1 && a.status == 404);
done:
	free(m);
	free(path);
	free(query);
	free(body);
}

static void
fuzz_control(const uint8_t *data, size_t size)
{
	struct api_control c, c2;
	struct api_req req;
	char *copy = dup_n((const char *)data, size), *again;

	if (apiproto_control_parse(copy != NULL ? copy : "", size, &c) == -1) {
		free(copy);
		return;
	}
	CHECK(c.kind == 'k' || c.kind == 'a');
	CHECK(strlen(c.origin) > 0 && strlen(c.origin) <= API_MAX_WID);
	if (c.kind == 'a')
		apiproto_kicked(&out, c.origin, c.id, c.closed);
	else {
		memset(&req, 0, sizeof(req));
		req.call = API_DISCONNECT;
		req.by_conn = c.by_conn;
		req.uuid_text = c.by_conn ? c.reason - 37 : NULL;	/* the uuid as it came, before its newline */
		req.user = c.user;
		req.user_len = c.user_len;
		req.code = c.code;
		req.reason = c.reason;
		req.reason_len = c.reason_len;
		apiproto_kick(&out, c.origin, c.id, &req);
	}
	CHECK(!out.oom);
	again = dup_n(out.p, out.len);
	CHECK(apiproto_control_parse(again != NULL ? again : "", out.len, &c2) == 0);
	CHECK(c2.kind == c.kind && strcmp(c2.origin, c.origin) == 0 && c2.id == c.id && c2.closed == c.closed &&
	    c2.code == c.code && c2.by_conn == c.by_conn && memcmp(c2.uuid, c.uuid, 16) == 0 &&
	    c2.user_len == c.user_len && (c.user_len == 0 || memcmp(c2.user, c.user, c.user_len) == 0) &&
	    c2.reason_len == c.reason_len && (c.reason_len == 0 || memcmp(c2.reason, c.reason, c.reason_len) == 0));
	free(again);
	free(copy);
}

static void
fuzz_key(const uint8_t *data, size_t size)
{
	static const char *const keys[] = { "0123456789abcdef", "fedcba9876543210-x" };
	char *copy = dup_n((const char *)data, size);

	if (apiproto_key_ok(copy, copy != NULL ? size : 0, keys, 2)) {
		/* Only "Bearer" (any case), white space, a key and white space match. */
		int found = 0;

		for (size_t k = 0; k < 2; k++) {
			const char *hit = memmem(copy, size, keys[k], strlen(keys[k]));

			found |= hit != NULL;
		}
		CHECK(found && size >= 7);
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (P == NULL && (P = apiproto_new()) == NULL)
		return 0;
	if (size > 128 * 1024)
		return 0;
	fuzz_request(data, size);
	fuzz_control(data, size);
	fuzz_key(data, size);
	return 0;
}
