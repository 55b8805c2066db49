/*
 * test_apiproto.c: the HTTP API's parser and writers. Routing (every call,
 * 404, 405 with Allow), bodies field by field (missing, wrong types, bad
 * rooms and names, every limit at its edge), queries, rooms in the path,
 * bearer keys (a prefix or an extension of a key is no key), uuids, the
 * answers (JSON that json-c reads back exactly) and the control messages
 * of /api/disconnect (round trip, and garbage refused).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "apiproto.h"
#include "proto.h"
#include "tap.h"

static struct apiproto *P;
static const struct api_limits LIM = { 8, 12, 100 };

/* Parse method, target (path?query) and body, each an exact-size copy. */
static int
parse(const char *method, const char *target, const char *body, struct api_req *req, struct api_error *err)
{
	const char *q = strchr(target, '?');
	size_t pl = q != NULL ? (size_t)(q - target) : strlen(target), ql = q != NULL ? strlen(q + 1) : 0;
	char *m = tap_dup(method, strlen(method)), *p = tap_dup(target, pl);
	char *qs = q != NULL ? tap_dup(q + 1, ql) : NULL, *b = body != NULL ? tap_dup(body, strlen(body)) : NULL;
	int rc;

	memset(err, 0, sizeof(*err));
	rc = apiproto_parse(P, m, strlen(method), p, pl, qs, ql, b, body != NULL ? strlen(body) : 0, &LIM, req, err);
	free(m);
	free(p);
	free(qs);
	/* The body must outlive req's pointers into it: they point into json-c's copy, not b. */
	free(b);
	return rc;
}

/* The status and code a bad request gets. */
static void
refused(const char *method, const char *target, const char *body, int status, const char *code, const char *what)
{
	struct api_req req;
	struct api_error err;
	int rc = parse(method, target, body, &req, &err);

	ok(rc == -1 && err.status == status && err.code != NULL && strcmp(err.code, code) == 0 &&
	    err.message[0] != '\0', "%s: %d %s", what, status, code);
	if (rc != -1 || err.status != status || err.code == NULL || strcmp(err.code, code) != 0)
		printf("#   got rc %d, %d %s (%s)\n", rc, err.status, err.code ? err.code : "-", err.message);
}

static void
test_route(void)
{
	static const struct { const char *m, *p; enum api_call c; } good[] = {
		{ "POST", "/api/publish", API_PUBLISH }, { "POST", "/api/broadcast", API_BROADCAST },
		{ "POST", "/api/disconnect", API_DISCONNECT }, { "GET", "/api/rooms", API_ROOMS },
		{ "HEAD", "/api/rooms", API_ROOMS }, { "GET", "/api/rooms/x", API_ROOM },
		{ "GET", "/api/rooms/a%2Fb/history", API_HISTORY }, { "GET", "/api/info", API_INFO },
	};
	static const char *const missing[] = {
		"/api", "/api/", "/api/publish/", "/api/PUBLISH", "/api/rooms/", "/api/rooms//history",
		"/api/rooms/x/", "/api/rooms/x/history/", "/api/rooms/x/y", "/api/infox", "/api/rooms/x/historyx",
	};
	struct api_error err;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		is_int(apiproto_route(good[i].m, strlen(good[i].m), good[i].p, strlen(good[i].p), &err), good[i].c,
		    "%s %s routes to %s", good[i].m, good[i].p, apiproto_call_name(good[i].c));
	for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
		enum api_call c = apiproto_route("GET", 3, missing[i], strlen(missing[i]), &err);

		ok(c == API_NONE && err.status == 404 && strcmp(err.code, "not_found") == 0, "GET %s: 404", missing[i]);
	}
	ok(apiproto_route("GET", 3, "/api/publish", 12, &err) == API_NONE && err.status == 405 &&
	    strcmp(err.allow, "POST") == 0, "GET /api/publish: 405, Allow: POST");
	ok(apiproto_route("POST", 4, "/api/info", 9, &err) == API_NONE && err.status == 405 &&
	    strcmp(err.allow, "GET, HEAD") == 0, "POST /api/info: 405, Allow: GET, HEAD");
	ok(apiproto_route("DELETE", 6, "/api/rooms/x", 12, &err) == API_NONE && err.status == 405,
	    "DELETE /api/rooms/x: 405");
	ok(apiproto_route("post", 4, "/api/publish", 12, &err) == API_NONE && err.status == 405,
	    "methods are case-sensitive: post is not POST");
	ok(apiproto_is_api("/api", 4) && apiproto_is_api("/api/x", 6) && !apiproto_is_api("/apix", 5) &&
	    !apiproto_is_api("/ap", 3) && !apiproto_is_api("/", 1), "apiproto_is_api: /api and under it only");
	is_str(apiproto_call_name(API_NONE), "other", "API_NONE is named other");
}

static void
test_publish(void)
{
	struct api_req req;
	struct api_error err;

	ok(parse("POST", "/api/publish", "{\"room\":\"lobby\",\"message\":\"hi \\\"x\\\"\"}", &req, &err) == 0 &&
	    req.call == API_PUBLISH && req.room_len == 5 && memcmp(req.room, "lobby", 5) == 0 &&
	    req.message_len == 6 && memcmp(req.message, "hi \"x\"", 6) == 0 && req.name == NULL,
	    "publish: room and message, no name");
	ok(parse("POST", "/api/publish", " {\"room\":\"r\",\"message\":\"\",\"name\":\"bot\",\"x\":[1]} \r\n", &req,
	    &err) == 0 && req.name_len == 3 && req.message_len == 0, "publish: name, an empty message, an unknown field");
	ok(parse("POST", "/api/publish", "{\"room\":\"r\",\"message\":\"a\\u0000b\"}", &req, &err) == 0 &&
	    req.message_len == 3 && req.message[1] == '\0', "publish: a NUL in the text is kept with its length");
	ok(parse("POST", "/api/publish", "{\"room\":\"123456789012\",\"message\":\"m\",\"name\":\"12345678\"}", &req,
	    &err) == 0, "publish: room and name at their length limits");
	refused("POST", "/api/publish", "{\"room\":\"1234567890123\",\"message\":\"m\"}", 400, "bad_room",
	    "publish: room over max_roomid_length");
	refused("POST", "/api/publish", "{\"room\":\"\",\"message\":\"m\"}", 400, "bad_room", "publish: empty room");
	refused("POST", "/api/publish", "{\"room\":\"a\\nb\",\"message\":\"m\"}", 400, "bad_room",
	    "publish: a control character in the room");
	refused("POST", "/api/publish", "{\"room\":\"a\\u0085\",\"message\":\"m\"}", 400, "bad_room",
	    "publish: a C1 control in the room");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":\"m\",\"name\":\"123456789\"}", 400, "bad_name",
	    "publish: name over max_name_length");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":\"m\",\"name\":7}", 400, "bad_field",
	    "publish: a name that is a number");
	refused("POST", "/api/publish", "{\"message\":\"m\"}", 400, "missing_field", "publish: no room");
	refused("POST", "/api/publish", "{\"room\":\"r\"}", 400, "missing_field", "publish: no message");
	refused("POST", "/api/publish", "{\"room\":5,\"message\":\"m\"}", 400, "bad_field", "publish: room a number");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":null}", 400, "missing_field",
	    "publish: message null counts as missing");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":[\"m\"]}", 400, "bad_field",
	    "publish: message an array");
	refused("POST", "/api/publish", "", 400, "bad_json", "publish: an empty body");
	refused("POST", "/api/publish", NULL, 400, "bad_json", "publish: no body");
	refused("POST", "/api/publish", "{\"room\":\"r\",", 400, "bad_json", "publish: a truncated object");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":\"m\",}", 400, "bad_json",
	    "publish: a trailing comma (strict JSON)");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":\"m\"} x", 400, "bad_json",
	    "publish: garbage after the object");
	refused("POST", "/api/publish", "[{\"room\":\"r\"}]", 400, "not_object", "publish: an array body");
	refused("POST", "/api/publish", "null", 400, "not_object", "publish: null");
	refused("POST", "/api/publish", "42", 400, "not_object", "publish: a number");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":\"\xff\"}", 400, "bad_json",
	    "publish: a body that is not UTF-8");
	refused("POST", "/api/publish", "{\"room\":\"r\",\"message\":\"\xed\xa0\x80\"}", 400, "bad_json",
	    "publish: an encoded surrogate is not UTF-8");
	{
		char deep[200];
		size_t n = 0;

		for (int i = 0; i < 40; i++)
			deep[n++] = '[';
		for (int i = 0; i < 40; i++)
			deep[n++] = ']';
		deep[n] = '\0';
		refused("POST", "/api/publish", deep, 400, "bad_json", "publish: nesting deeper than 16");
	}
}

static void
test_broadcast(void)
{
	struct api_req req;
	struct api_error err;
	char body[4096];
	size_t n;

	ok(parse("POST", "/api/broadcast", "{\"rooms\":[\"a\",\"b\",\"a\"],\"message\":\"m\",\"name\":\"n\"}", &req,
	    &err) == 0 && req.nrooms == 3 && req.room_lens[1] == 1 && req.rooms[1][0] == 'b' && req.name_len == 1,
	    "broadcast: three rooms, a room given twice");
	n = (size_t)snprintf(body, sizeof(body), "{\"message\":\"m\",\"rooms\":[");
	for (int i = 0; i < API_MAX_ROOMS; i++)
		n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"r%d\"", i > 0 ? "," : "", i);
	snprintf(body + n, sizeof(body) - n, "]}");
	ok(parse("POST", "/api/broadcast", body, &req, &err) == 0 && req.nrooms == API_MAX_ROOMS,
	    "broadcast: %d rooms", API_MAX_ROOMS);
	snprintf(body + n, sizeof(body) - n, ",\"x\"]}");
	refused("POST", "/api/broadcast", body, 400, "bad_field", "broadcast: one room over the limit");
	refused("POST", "/api/broadcast", "{\"rooms\":[],\"message\":\"m\"}", 400, "bad_field", "broadcast: no rooms");
	refused("POST", "/api/broadcast", "{\"rooms\":\"a\",\"message\":\"m\"}", 400, "bad_field",
	    "broadcast: rooms a string");
	refused("POST", "/api/broadcast", "{\"rooms\":[\"a\",1],\"message\":\"m\"}", 400, "bad_field",
	    "broadcast: a room that is a number");
	refused("POST", "/api/broadcast", "{\"rooms\":[\"a\",\"\"],\"message\":\"m\"}", 400, "bad_room",
	    "broadcast: an empty room id");
	refused("POST", "/api/broadcast", "{\"message\":\"m\"}", 400, "missing_field", "broadcast: rooms missing");
	refused("POST", "/api/broadcast", "{\"rooms\":[\"a\"]}", 400, "missing_field", "broadcast: message missing");
}

static void
test_disconnect(void)
{
	struct api_req req;
	struct api_error err;

	ok(parse("POST", "/api/disconnect", "{\"user\":\"bob\"}", &req, &err) == 0 && !req.by_conn &&
	    req.user_len == 3 && req.code == 1008 && req.reason_len == 0, "disconnect: a user, 1008 by default");
	ok(parse("POST", "/api/disconnect",
	    "{\"conn\":\"0F8E5B3A-1c2d-4e5f-8a9b-0c1d2e3f4a5b\",\"code\":4000,\"reason\":\"bye\"}", &req, &err) == 0 &&
	    req.by_conn && req.uuid[0] == 0x0f && req.uuid[15] == 0x5b && req.code == 4000 && req.reason_len == 3,
	    "disconnect: a session by uuid (either case), a code of the application's, a reason");
	refused("POST", "/api/disconnect", "{}", 400, "missing_field", "disconnect: neither user nor conn");
	refused("POST", "/api/disconnect", "{\"user\":\"a\",\"conn\":\"0f8e5b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}", 400,
	    "bad_field", "disconnect: both user and conn");
	refused("POST", "/api/disconnect", "{\"conn\":\"0f8e5b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5\"}", 400, "bad_field",
	    "disconnect: a uuid one digit short");
	refused("POST", "/api/disconnect", "{\"conn\":\"0f8e5b3a11c2d-4e5f-8a9b-0c1d2e3f4a5b\"}", 400, "bad_field",
	    "disconnect: a uuid without its first dash");
	refused("POST", "/api/disconnect", "{\"conn\":\"0f8e5b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5g\"}", 400, "bad_field",
	    "disconnect: a uuid with a g");
	refused("POST", "/api/disconnect", "{\"user\":7}", 400, "bad_field", "disconnect: user a number");
	refused("POST", "/api/disconnect", "{\"user\":\"a\",\"code\":1006}", 400, "bad_field",
	    "disconnect: 1006 is reserved");
	refused("POST", "/api/disconnect", "{\"user\":\"a\",\"code\":5000}", 400, "bad_field",
	    "disconnect: 5000 is no close code");
	refused("POST", "/api/disconnect", "{\"user\":\"a\",\"code\":-1}", 400, "bad_field", "disconnect: code -1");
	refused("POST", "/api/disconnect", "{\"user\":\"a\",\"code\":\"1000\"}", 400, "bad_field",
	    "disconnect: code a string");
	ok(parse("POST", "/api/disconnect", "{\"user\":\"a\",\"code\":2999}", &req, &err) == -1 &&
	    parse("POST", "/api/disconnect", "{\"user\":\"a\",\"code\":3000}", &req, &err) == 0 &&
	    parse("POST", "/api/disconnect", "{\"user\":\"a\",\"code\":4999}", &req, &err) == 0,
	    "disconnect: 3000 and 4999 are the application's edges");
	{
		char body[300];

		snprintf(body, sizeof(body), "{\"user\":\"a\",\"reason\":\"%0*d\"}", API_MAX_REASON, 0);
		ok(parse("POST", "/api/disconnect", body, &req, &err) == 0 && req.reason_len == API_MAX_REASON,
		    "disconnect: a reason of %d bytes", API_MAX_REASON);
		snprintf(body, sizeof(body), "{\"user\":\"a\",\"reason\":\"%0*d\"}", API_MAX_REASON + 1, 0);
		refused("POST", "/api/disconnect", body, 400, "bad_field", "disconnect: a reason one byte too long");
	}
	refused("POST", "/api/disconnect", "{\"user\":\"a\",\"reason\":\"x\\ny\"}", 400, "bad_field",
	    "disconnect: a newline in the reason");
}

static void
test_get_calls(void)
{
	struct api_req req;
	struct api_error err;

	ok(parse("GET", "/api/rooms", NULL, &req, &err) == 0 && req.limit == API_PAGE_DEFAULT && req.cursor == 0,
	    "rooms: defaults");
	ok(parse("GET", "/api/rooms?cursor=18446744073709551615&limit=1000", NULL, &req, &err) == 0 &&
	    req.limit == 1000 && req.cursor == UINT64_MAX, "rooms: the largest cursor and limit");
	refused("GET", "/api/rooms?limit=0", NULL, 400, "bad_query", "rooms: limit 0");
	refused("GET", "/api/rooms?limit=1001", NULL, 400, "bad_query", "rooms: limit over 1000");
	refused("GET", "/api/rooms?limit=-1", NULL, 400, "bad_query", "rooms: limit -1");
	refused("GET", "/api/rooms?limit=", NULL, 400, "bad_query", "rooms: an empty limit");
	refused("GET", "/api/rooms?cursor=18446744073709551616", NULL, 400, "bad_query", "rooms: a cursor over 2^64-1");
	refused("GET", "/api/rooms?cursor=1x", NULL, 400, "bad_query", "rooms: a cursor with a letter");
	ok(parse("GET", "/api/rooms/a%2Fb%20c", NULL, &req, &err) == 0 && req.call == API_ROOM &&
	    req.room_len == 5 && memcmp(req.room, "a/b c", 5) == 0, "room: %%-decoded from the path");
	ok(parse("HEAD", "/api/rooms/%C3%A9", NULL, &req, &err) == 0 && req.room_len == 2, "room: UTF-8, by HEAD");
	refused("GET", "/api/rooms/a%zz", NULL, 400, "bad_room", "room: a bad escape");
	refused("GET", "/api/rooms/a%00b", NULL, 400, "bad_room", "room: a NUL");
	refused("GET", "/api/rooms/a%0A", NULL, 400, "bad_room", "room: a newline");
	refused("GET", "/api/rooms/%FF", NULL, 400, "bad_room", "room: not UTF-8");
	refused("GET", "/api/rooms/1234567890123", NULL, 400, "bad_room", "room: over max_roomid_length");
	ok(parse("GET", "/api/rooms/r/history", NULL, &req, &err) == 0 && req.call == API_HISTORY &&
	    req.limit == 50 && req.before == 0, "history: defaults (50 of history_size 100)");
	ok(parse("GET", "/api/rooms/r/history?limit=100&before=9007199254740991", NULL, &req, &err) == 0 &&
	    req.limit == 100 && req.before == 9007199254740991ULL, "history: the largest limit and before");
	refused("GET", "/api/rooms/r/history?limit=101", NULL, 400, "bad_query", "history: limit over history_size");
	refused("GET", "/api/rooms/r/history?limit=0", NULL, 400, "bad_query", "history: limit 0");
	refused("GET", "/api/rooms/r/history?before=9007199254740992", NULL, 400, "bad_query",
	    "history: before over 2^53-1");
	refused("GET", "/api/rooms/%0A/history", NULL, 400, "bad_room", "history: a bad room");
	{
		struct api_limits none = LIM;
		char *m = tap_dup("GET", 3), *p = tap_dup("/api/rooms/r/history", 20);

		none.max_history = 0;
		ok(apiproto_parse(P, m, 3, p, 20, NULL, 0, NULL, 0, &none, &req, &err) == -1 && err.status == 404 &&
		    strcmp(err.code, "no_history") == 0, "history: 404 no_history under history_size 0");
		free(m);
		free(p);
	}
	ok(parse("GET", "/api/info", "ignored", &req, &err) == 0 && req.call == API_INFO, "info: a GET's body is ignored");
	refused("PUT", "/api/info", NULL, 405, "method_not_allowed", "info: PUT");
	refused("GET", "/api/nothing", NULL, 404, "not_found", "an unknown call");
}

static void
test_keys(void)
{
	const char *keys[] = { "0123456789abcdef", "second-key-0123456789" };
	struct { const char *auth; int want; const char *what; } cases[] = {
		{ "Bearer 0123456789abcdef", 1, "the first key" },
		{ "Bearer second-key-0123456789", 1, "the second key" },
		{ "bearer 0123456789abcdef", 1, "the scheme in lower case" },
		{ "Bearer   0123456789abcdef  ", 1, "spaces around the key" },
		{ "Bearer 0123456789abcde", 0, "a prefix of a key" },
		{ "Bearer 0123456789abcdef0", 0, "a key with a byte more" },
		{ "Bearer 0123456789ABCDEF", 0, "a key in another case" },
		{ "Bearer ", 0, "no key" },
		{ "Bearer", 0, "the scheme alone" },
		{ "Basic 0123456789abcdef", 0, "another scheme" },
		{ "0123456789abcdef", 0, "the key without a scheme" },
		{ "Bearer0123456789abcdef", 0, "no space after the scheme" },
		{ "", 0, "an empty header" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *a = tap_dup(cases[i].auth, strlen(cases[i].auth));

		is_int(apiproto_key_ok(a, strlen(cases[i].auth), keys, 2), cases[i].want, "key: %s", cases[i].what);
		free(a);
	}
	ok(!apiproto_key_ok(NULL, 0, keys, 2), "key: no Authorization header");
	ok(!apiproto_key_ok("Bearer 0123456789abcdef", 23, keys, 0), "key: no key configured matches nothing");
}

static void
test_uuid(void)
{
	uint8_t u[16];

	ok(apiproto_uuid_parse("00000000-0000-4000-8000-00000000000a", 36, u) == 0 && u[6] == 0x40 && u[15] == 0x0a,
	    "uuid parsed");
	ok(apiproto_uuid_parse("00000000-0000-4000-8000-00000000000a0", 37, u) == -1, "uuid one too long");
	ok(apiproto_uuid_parse("00000000-0000-4000-8000_00000000000a", 36, u) == -1, "uuid with a wrong separator");
	ok(apiproto_uuid_parse("0000000-00000-4000-8000-00000000000a", 36, u) == -1, "uuid with a misplaced dash");
}

/* Whether b holds JSON that json-c parses; returns the object (put by the caller) or NULL. */
static struct json_object *
readback(const struct jbuf *b)
{
	struct json_tokener *t = json_tokener_new();
	struct json_object *o = json_tokener_parse_ex(t, b->p, (int)b->len);

	if (json_tokener_get_error(t) != json_tokener_success || (size_t)json_tokener_get_parse_end(t) != b->len) {
		if (o != NULL)
			json_object_put(o);
		o = NULL;
	}
	json_tokener_free(t);
	return o;
}

static const char *
str_at(struct json_object *o, const char *path)
{
	char buf[128], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok != NULL && o != NULL; tok = strtok_r(NULL, ".", &save)) {
		if (json_object_is_type(o, json_type_array))
			o = json_object_array_get_idx(o, (size_t)atoi(tok));
		else if (!json_object_object_get_ex(o, tok, &o))
			o = NULL;
	}
	return o != NULL ? json_object_get_string(o) : NULL;
}

static void
test_answers(void)
{
	struct jbuf b = { 0 };
	struct json_object *o;
	const char *nm[3] = { "ann", "\x01guest", "\"q\"" };
	size_t nl[3] = { 3, 6, 3 };
	struct api_worker w = { "abc123", "0.1.0", 42, 1700000000000LL, 7, 3 }, r;

	apiproto_error(&b, "bad_field", "a \"quote\"\n");
	o = readback(&b);
	ok(o != NULL && strcmp(str_at(o, "error.code"), "bad_field") == 0 &&
	    strcmp(str_at(o, "error.message"), "a \"quote\"\n") == 0, "error: JSON with code and escaped message");
	json_object_put(o);
	apiproto_published(&b, "w.1", 5, "e1", 2);
	is_str(b.p != NULL ? (b.p[b.len] = '\0', b.p) : NULL, "{\"result\":{\"id\":\"w.1\",\"offset\":5,\"epoch\":\"e1\",\"num\":2}}",
	    "published: the exact bytes");
	apiproto_broadcast_begin(&b);
	apiproto_broadcast_item(&b, 1, "a\"", 2, "w.2", 1, "e", 0, NULL, NULL);
	apiproto_broadcast_item(&b, 0, "b", 1, NULL, 0, NULL, 0, "unavailable", "later");
	apiproto_broadcast_end(&b);
	o = readback(&b);
	ok(o != NULL && strcmp(str_at(o, "result.rooms.0.room"), "a\"") == 0 &&
	    strcmp(str_at(o, "result.rooms.0.offset"), "1") == 0 &&
	    strcmp(str_at(o, "result.rooms.1.error.code"), "unavailable") == 0, "broadcast: one answer per room");
	json_object_put(o);
	apiproto_rooms_begin(&b);
	apiproto_rooms_end(&b, UINT64_MAX);
	o = readback(&b);
	ok(o != NULL && strcmp(str_at(o, "result.cursor"), "18446744073709551615") == 0 &&
	    json_object_array_length(json_object_object_get(json_object_object_get(o, "result"), "rooms")) == 0,
	    "rooms: an empty page, the cursor as a string");
	json_object_put(o);
	apiproto_room(&b, "r", 1, nm, nl, 3, 10, 9, "ep");
	o = readback(&b);
	ok(o != NULL && strcmp(str_at(o, "result.members.1"), "guest") == 0 &&
	    strcmp(str_at(o, "result.guests.0"), "guest") == 0 && strcmp(str_at(o, "result.members.2"), "\"q\"") == 0 &&
	    strcmp(str_at(o, "result.num"), "10") == 0 && strcmp(str_at(o, "result.epoch"), "ep") == 0,
	    "room: members, guests without their marker, num, position");
	json_object_put(o);
	apiproto_history_begin(&b, "r", 1);
	apiproto_history_message(&b, 1, "{\"event\":\"message\"}", 19);
	apiproto_history_message(&b, 0, "{\"event\":\"message\",\"offset\":2}", 30);
	apiproto_history_end(&b, 2, "ep");
	o = readback(&b);
	ok(o != NULL && strcmp(str_at(o, "result.messages.1.offset"), "2") == 0, "history: the stored events in order");
	json_object_put(o);
	apiproto_worker_record(&b, &w);
	ok(apiproto_worker_parse(P, b.p, b.len, &r) == 0 && strcmp(r.instance, "abc123") == 0 && r.pid == 42 &&
	    r.started == 1700000000000LL && r.connections == 7 && r.rooms == 3 && strcmp(r.version, "0.1.0") == 0,
	    "a worker record reads back");
	ok(apiproto_worker_parse(P, "{\"instance\":\"\",\"version\":\"1\",\"pid\":1,\"started\":1,\"connections\":1,"
	    "\"rooms\":1}", 77, &r) == -1, "a record without an instance is refused");
	ok(apiproto_worker_parse(P, "{\"instance\":\"a\",\"version\":\"1\",\"pid\":-1,\"started\":1,\"connections\":1,"
	    "\"rooms\":1}", 78, &r) == -1, "a record with a negative pid is refused");
	ok(apiproto_worker_parse(P, "1", 1, &r) == -1, "a number is no record");
	apiproto_info_begin(&b);
	apiproto_info_host(&b, 1, &w, 2, 9, 4, 1700000005000LL);
	apiproto_info_end(&b, 2);
	o = readback(&b);
	ok(o != NULL && strcmp(str_at(o, "result.hosts.0.uptime"), "5") == 0 &&
	    strcmp(str_at(o, "result.hosts.0.workers"), "2") == 0 && strcmp(str_at(o, "result.workers"), "2") == 0,
	    "info: a host with its uptime and sums");
	json_object_put(o);
	jbuf_free(&b);
}

static void
test_control(void)
{
	struct jbuf b = { 0 };
	struct api_req req;
	struct api_error err;
	struct api_control c;
	char *copy;

	ok(parse("POST", "/api/disconnect", "{\"user\":\"bob b\",\"code\":4001,\"reason\":\"go away\"}", &req,
	    &err) == 0, "a disconnect by user");
	apiproto_kick(&b, "abcd.12", 77, &req);
	copy = tap_dup(b.p, b.len);
	ok(apiproto_control_parse(copy, b.len, &c) == 0 && c.kind == 'k' && strcmp(c.origin, "abcd.12") == 0 &&
	    c.id == 77 && c.code == 4001 && !c.by_conn && c.user_len == 5 && memcmp(c.user, "bob b", 5) == 0 &&
	    c.reason_len == 7 && memcmp(c.reason, "go away", 7) == 0, "the kick reads back");
	free(copy);
	ok(parse("POST", "/api/disconnect", "{\"conn\":\"0f8e5b3a-1c2d-4e5f-8a9b-0c1d2e3f4a5b\"}", &req, &err) == 0,
	    "a disconnect by conn");
	apiproto_kick(&b, "w", 1, &req);
	copy = tap_dup(b.p, b.len);
	ok(apiproto_control_parse(copy, b.len, &c) == 0 && c.by_conn && c.uuid[0] == 0x0f && c.code == 1008 &&
	    c.reason_len == 0, "the kick by conn reads back");
	{
		int parsed = 0;

		for (size_t cut = 0; cut < b.len; cut++) {
			char *part = tap_dup(b.p, cut);

			if (apiproto_control_parse(part, cut, &c) == 0) {
				printf("#   a cut at %zu parsed\n", cut);
				parsed++;
			}
			free(part);
		}
		ok(parsed == 0, "no cut of a kick short of its end parses");
	}
	free(copy);
	apiproto_kicked(&b, "abcd.12", 77, 3);
	copy = tap_dup(b.p, b.len);
	ok(apiproto_control_parse(copy, b.len, &c) == 0 && c.kind == 'a' && c.id == 77 && c.closed == 3 &&
	    strcmp(c.origin, "abcd.12") == 0, "the answer reads back");
	free(copy);
	{
		static const char *const bad[] = {
			"", "k", "k ", "a w 1", "a w 1 x", "a w x 1", "x w 1 2", "k w 1 1008 u\n\n", "k w 1 1006 u\nbob\n",
			"k w 1 1008 z\nbob\n", "k w 1 1008 u\nbob", "k w 1 1008 c\nnot-a-uuid\n", "a  1 2",
			"a w 12345678901234567890 1", "k w 1 1008 u\nbob\nre\nason", "a w 1 2 ",
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			char *p = tap_dup(bad[i], strlen(bad[i]));

			ok(apiproto_control_parse(p, strlen(bad[i]), &c) == -1, "control %zu refused", i);
			free(p);
		}
	}
	jbuf_free(&b);
}

int
main(void)
{
	if ((P = apiproto_new()) == NULL) {
		printf("Bail out! out of memory\n");
		return 1;
	}
	test_route();
	test_publish();
	test_broadcast();
	test_disconnect();
	test_get_calls();
	test_keys();
	test_uuid();
	test_answers();
	test_control();
	apiproto_free(P);
	printf("1..%d\n", tap_n);
	return tap_failed != 0;
}
