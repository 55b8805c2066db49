/*
 * test_proto.c: the chat protocol's JSON. Client events parsed with their
 * bounds and error codes (the tokener reused across messages); the server's
 * events: numbers written without printf (every edge of a long long),
 * strings escaped (every byte), exact bytes, and json-c reading back what
 * was written.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "proto.h"
#include "tap.h"

static void
test_itoa(void)
{
	static const long long vals[] = {
		0, 1, -1, 9, 10, -10, 99, 100, 12345, -98765, 1000000007,
		INT_MAX, INT_MIN, LLONG_MAX, LLONG_MIN, LLONG_MIN + 1,
	};
	char got[32], want[32];
	int bad = 0;

	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		size_t n = jbuf_itoa(got, vals[i]);

		got[n] = '\0';
		snprintf(want, sizeof(want), "%lld", vals[i]);
		if (strcmp(got, want) != 0) {
			printf("#   %s, want %s\n", got, want);
			bad++;
		}
	}
	ok(bad == 0, "jbuf_itoa equals %%lld at 0, +-1, digit boundaries and both ends of long long");
	for (long long v = -100000; v <= 100000; v += 7) {
		size_t n = jbuf_itoa(got, v);

		got[n] = '\0';
		snprintf(want, sizeof(want), "%lld", v);
		if (strcmp(got, want) != 0)
			bad++;
	}
	ok(bad == 0, "jbuf_itoa equals %%lld across -100000..100000");
}

static void
test_message(void)
{
	struct jbuf b = { 0 };
	struct json_object *o, *v;
	char s[512];

	proto_message_head(&b, "ann", 3, "hi \"you\"\n\\", 10, "lobby", 5, "w1.7", 1700000000123ULL);
	ok(!b.oom && b.len < sizeof(s), "message written");
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"message\",\"name\":\"ann\",\"message\":\"hi \\\"you\\\"\\n\\\\\","
	    "\"roomid\":\"lobby\",\"id\":\"w1.7\",\"ts\":1700000000123", "message head bytes");
	/* What the store script appends to it. */
	snprintf(s + b.len, sizeof(s) - b.len, ",\"num\":42,\"offset\":7}");
	o = json_tokener_parse(s);
	ok(o != NULL, "json-c parses it");
	ok(o != NULL && json_object_object_get_ex(o, "message", &v) &&
	    strcmp(json_object_get_string(v), "hi \"you\"\n\\") == 0, "text survives the round trip");
	ok(o != NULL && json_object_object_get_ex(o, "ts", &v) &&
	    json_object_get_int64(v) == 1700000000123LL, "ts survives the round trip");
	ok(o != NULL && json_object_object_get_ex(o, "offset", &v) && json_object_get_int64(v) == 7,
	    "the completed event reads back with its offset");
	json_object_put(o);
	proto_recovered(&b, "tea", 3, 0, 12, "0123456789abcdef", 0, 3);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"recovered\",\"roomid\":\"tea\",\"recovered\":false,\"offset\":12,"
	    "\"epoch\":\"0123456789abcdef\",\"count\":0,\"num\":3}", "recovered bytes");
	proto_history_begin(&b, "tea", 3);
	proto_history_message(&b, "{\"a\":1}", 7, 1);
	proto_history_message(&b, "{\"b\":2}", 7, 0);
	proto_history_end(&b, 9, "e", -1);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"history\",\"roomid\":\"tea\",\"messages\":[{\"a\":1},{\"b\":2}],"
	    "\"offset\":9,\"epoch\":\"e\"}", "history bytes");
	o = json_tokener_parse(s);
	ok(o != NULL, "the history answer is JSON");
	json_object_put(o);
	proto_heartbeat(&b, 0, -1);
	is_int((long long)b.len, (long long)strlen("{\"event\":\"heartbeat\",\"message\":\"ping\"}"),
	    "num < 0 is left out");
	proto_heartbeat(&b, 0, 0);
	ok(b.len > 7 && memcmp(b.p + b.len - 9, ",\"num\":0}", 9) == 0, "num 0 is written");
	proto_heartbeat(&b, 1, 7);
	ok(b.len == strlen("{\"event\":\"heartbeat\",\"message\":\"pong\",\"num\":7}") &&
	    memcmp(b.p, "{\"event\":\"heartbeat\",\"message\":\"pong\",\"num\":7}", b.len) == 0,
	    "the pong carries num");
	jbuf_free(&b);
}

static struct proto *parser;
static const struct proto_limits lim = { 8, 12, 20, 100 };

/* Parse s; 0 or -1, with the error code in *code ("" on success). */
static int
parse(const char *s, size_t n, struct chat_req *req, const char **code)
{
	char why[128], *copy = tap_dup(s, n);
	int rc;

	*code = "";
	why[0] = '\0';
	rc = proto_parse(parser, copy, n, &lim, req, code, why, sizeof(why));
	if (rc == -1 && why[0] == '\0')
		*code = "(no reason given)";
	free(copy);
	return rc;
}

static int
parse_s(const char *s, struct chat_req *req, const char **code)
{
	return parse(s, strlen(s), req, code);
}

/* The n bytes at p equal the C string want. */
static int
same(const char *p, size_t n, const char *want)
{
	return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

static void
test_parse(void)
{
	static const struct { const char *in; const char *code; } bad[] = {
		{ "", "bad_json" },
		{ " ", "bad_json" },
		{ "{", "bad_json" },
		{ "{\"event\":\"who\"", "bad_json" },
		{ "{\"event\":\"who\",}", "bad_json" },
		{ "{\"event\":\"who\"} x", "bad_json" },
		{ "{\"event\":\"who\"}{}", "bad_json" },
		{ "{'event':'who'}", "bad_json" },
		{ "{\"event\":\"who\",\"n\":01}", "bad_json" },
		{ "{\"event\":\"who\",\"n\":True}", "bad_json" },
		{ "{\"event\":\"who\"\t\v}", "bad_json" },
		{ "{\"a\":[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]}", "bad_json" },
		{ "[1,2]", "not_object" },
		{ "42", "not_object" },
		{ "-1.5e3", "not_object" },
		{ "\"enter\"", "not_object" },
		{ "null", "not_object" },
		{ "true", "not_object" },
		{ "{}", "bad_field" },
		{ "{\"event\":1}", "bad_field" },
		{ "{\"event\":null}", "bad_field" },
		{ "{\"event\":[\"who\"]}", "bad_field" },
		{ "{\"event\":\"dance\"}", "unknown_event" },
		{ "{\"event\":\"Enter\",\"message\":\"a\"}", "unknown_event" },
		{ "{\"event\":\"who \"}", "unknown_event" },
		{ "{\"event\":\"who\\u0000\"}", "unknown_event" },
		{ "{\"event\":\"\"}", "unknown_event" },
		{ "{\"event\":\"enter\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"123456789\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\\nb\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\\u007fb\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\\u0085\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\\u0000\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":5}", "bad_field" },
		{ "{\"event\":\"message\"}", "bad_field" },
		{ "{\"event\":\"message\",\"message\":{}}", "bad_field" },
		{ "{\"event\":\"who\",\"roomid\":\"\"}", "bad_field" },
		{ "{\"event\":\"who\",\"roomid\":\"1234567890123\"}", "bad_field" },
		{ "{\"event\":\"who\",\"roomid\":7}", "bad_field" },
		{ "{\"event\":\"who\",\"roomid\":\"a\\tb\"}", "bad_field" },
		{ "{\"event\":\"out\",\"message\":false}", "bad_field" },
		{ "{\"event\":\"refresh\"}", "bad_field" },
		{ "{\"event\":\"refresh\",\"token\":\"\"}", "bad_field" },
		{ "{\"event\":\"refresh\",\"token\":7}", "bad_field" },
		{ "{\"event\":\"refresh\",\"token\":null}", "bad_field" },
		{ "{\"event\":\"refresh\",\"token\":\"123456789012345678901\"}", "bad_field" },
		{ "{\"event\":\"Refresh\",\"token\":\"t\"}", "unknown_event" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":\"x\"}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":{}}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":{\"offset\":-1,\"epoch\":\"e\"}}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":{\"offset\":9007199254740992,\"epoch\":\"e\"}}",
		    "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":{\"offset\":18446744073709551615,\"epoch\":\"e\"}}",
		    "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":{\"offset\":1.0,\"epoch\":\"e\"}}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":{\"offset\":1,\"epoch\":\"\"}}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"since\":{\"offset\":1,\"epoch\":"
		    "\"1234567890123456789012345\"}}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"history\":101}", "bad_field" },
		{ "{\"event\":\"enter\",\"message\":\"a\",\"history\":true}", "bad_field" },
		{ "{\"event\":\"history\",\"limit\":0}", "bad_field" },
		{ "{\"event\":\"history\",\"limit\":101}", "bad_field" },
		{ "{\"event\":\"history\",\"before\":-2}", "bad_field" },
		{ "{\"event\":\"history\",\"before\":\"9\"}", "bad_field" },
	};
	struct chat_req req;
	const char *code;
	static const char nul[] = "{\"event\":\"who\"}\0";

	ok((parser = proto_new()) != NULL, "proto_new");
	is_int(parse_s("{\"event\":\"enter\",\"message\":\"a\",\"since\":{\"offset\":9007199254740991,"
	    "\"epoch\":\"123456789012345678901234\"},\"history\":100}", &req, &code), 0,
	    "since at its limits, history at history_size");
	ok(req.since && req.since_offset == 9007199254740991ULL && req.since_epoch_len == 24 && req.history == 100,
	    "since and history read");
	is_int(parse_s("{\"event\":\"history\"}", &req, &code), 0, "history with no limit");
	ok(req.ev == CHAT_HISTORY && req.history == 50 && req.before == 0, "history: 50 by default, up to now");
	is_int(parse_s("{\"event\":\"history\",\"limit\":3,\"before\":7}", &req, &code), 0, "history paged");
	ok(req.history == 3 && req.before == 7, "limit and before read");
	is_int(parse_s("{\"event\":\"enter\",\"message\":\"ann\"}", &req, &code), 0, "enter");
	ok(req.ev == CHAT_ENTER && same(req.message, req.message_len, "ann") && req.roomid == NULL,
	    "enter: the name, no room");
	is_int(parse_s("{\"message\":\"12345678\",\"roomid\":\"123456789012\",\"event\":\"enter\"}",
	    &req, &code), 0, "enter with a name and room at their limits, keys in any order");
	ok(same(req.message, req.message_len, "12345678") && same(req.roomid, req.roomid_len, "123456789012"),
	    "name and room");
	is_int(parse_s("{\"event\":\"enter\",\"message\":\"\\u00e9\\ud83d\\ude00\"}", &req, &code), 0,
	    "an escaped name (a surrogate pair included)");
	ok(same(req.message, req.message_len, "\xc3\xa9\xf0\x9f\x98\x80"), "is unescaped to UTF-8");
	is_int(parse_s("{\"event\":\"message\",\"message\":\"\",\"roomid\":\"r\"}", &req, &code), 0,
	    "an empty message");
	ok(req.ev == CHAT_MESSAGE && req.message_len == 0 && same(req.roomid, req.roomid_len, "r"),
	    "message: empty text, room r");
	is_int(parse_s("{\"event\":\"message\",\"message\":\"a\\u0000b\\n\"}", &req, &code), 0,
	    "message text may hold any character");
	ok(req.message_len == 4 && memcmp(req.message, "a\0b\n", 4) == 0, "a NUL and a newline kept");
	is_int(parse_s("{\"event\":\"out\"}", &req, &code), 0, "out");
	ok(req.ev == CHAT_OUT && req.message == NULL && req.roomid == NULL, "out: nothing else");
	is_int(parse_s("{\"event\":\"heartbeat\",\"message\":\"pong\"}", &req, &code), 0, "heartbeat");
	is_int(req.ev, CHAT_HEARTBEAT, "heartbeat event");
	is_int(parse_s("\t {\"event\":\"who\",\"extra\":[1,{\"x\":null}]} \r\n", &req, &code), 0,
	    "who with white space around and unknown fields");
	is_int(req.ev, CHAT_WHO, "who event");
	is_int(parse_s("{\"event\":\"refresh\",\"token\":\"12345678901234567890\"}", &req, &code), 0,
	    "refresh with a token at its limit");
	ok(req.ev == CHAT_REFRESH && same(req.token, req.token_len, "12345678901234567890"), "the token");
	is_int(parse_s("{\"event\":\"who\",\"event\":\"out\"}", &req, &code), 0, "a repeated key");
	is_int(req.ev, CHAT_OUT, "the last one counts");
	is_int(parse(nul, sizeof(nul) - 1, &req, &code), -1, "a NUL byte after the object");
	is_str(code, "bad_json", "is bad_json");
	is_int(parse(nul, sizeof(nul) - 2, &req, &code), 0, "and the same bytes without it parse");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i].in, strlen(bad[i].in), &req, &code);

		ok(rc == -1 && strcmp(code, bad[i].code) == 0, "%s: %s", bad[i].in, bad[i].code);
		if (rc != -1 || strcmp(code, bad[i].code) != 0)
			printf("#   got %d %s\n", rc, code);
		/* After any error the parser is as new. */
		if (parse_s("{\"event\":\"enter\",\"message\":\"b\"}", &req, &code) != 0 ||
		    !same(req.message, req.message_len, "b"))
			ok(0, "the parser recovers after '%s'", bad[i].in);
	}
	/*
	 * One message's error does not leak into the next (fuzz_proto found
	 * json-c keeping a pending high surrogate across json_tokener_reset).
	 */
	{
		static const char *const poison[] = {
			"{\"m\":\"\\ud83d\\u", "[\"\\ud83d\\ud\"]", "{\"m\":\"\\udbff\\", "\"\\ud83d",
		};

		for (size_t i = 0; i < sizeof(poison) / sizeof(poison[0]); i++) {
			is_int(parse_s(poison[i], &req, &code), -1, "%s: bad_json", poison[i]);
			ok(parse_s("{\"event\":\"message\",\"message\":\"a\\u0041\"}", &req, &code) == 0 &&
			    same(req.message, req.message_len, "aA"), "and the next message is as sent");
			ok(parse_s("{\"event\":\"message\",\"message\":\"\\udc00\\ud83d\\ude00\"}", &req, &code) == 0 &&
			    same(req.message, req.message_len, "\xef\xbf\xbd\xf0\x9f\x98\x80"),
			    "and a lone low surrogate is not paired with the old high one");
		}
	}
	/* A split number: "4" is complete only when the message ends. */
	is_int(parse_s("4", &req, &code), -1, "a bare digit");
	is_str(code, "not_object", "is not_object, not a wait for more");
	proto_free(parser);
	proto_free(NULL);
	ok(1, "proto_free(NULL)");
}

static void
test_labels(void)
{
	ok(proto_valid_label("ann", 3, 3), "a name at the limit");
	ok(!proto_valid_label("ann", 3, 2), "over the limit");
	ok(!proto_valid_label("", 0, 8), "empty");
	ok(proto_valid_label("\xc3\xa9", 2, 8), "UTF-8 letters");
	ok(proto_valid_label("a b~", 4, 8), "space and tilde");
	ok(!proto_valid_label("a\x1f" "b", 3, 8), "C0 control");
	ok(!proto_valid_label("a\x7f", 2, 8), "DEL");
	ok(!proto_valid_label("a\xc2\x80", 3, 8), "C1 control U+0080");
	ok(!proto_valid_label("a\xc2\x9f", 3, 8), "C1 control U+009F");
	ok(proto_valid_label("a\xc2\xa0", 3, 8), "U+00A0 is not a control");
	ok(proto_valid_label("a\xc2", 2, 8), "a lone C2 at the end is left to the UTF-8 check");
}

/* json-c's reading of b's contents (strict); NULL if it is not JSON. */
static struct json_object *
read_back(const struct jbuf *b)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	if (tok == NULL || b->oom)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, b->p, (int)b->len);
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
	    json_tokener_get_parse_end(tok) != b->len)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	return o;
}

/* Whether o's field key is the string of n bytes at want. */
static int
field_is(struct json_object *o, const char *key, const char *want, size_t n)
{
	struct json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
	    (size_t)json_object_get_string_len(v) == n && memcmp(json_object_get_string(v), want, n) == 0;
}

static void
test_escape(void)
{
	struct jbuf b = { 0 };
	struct json_object *o;
	char all[256], s[256];

	for (int i = 0; i < 256; i++)
		all[i] = (char)i;
	jbuf_reset(&b);
	jbuf_json(&b, "a\"b\\c\n\r\t\x01\x1f\x7f", 11);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\x7f\"", "escapes: quote, backslash, named, \\u00XX");
	jbuf_reset(&b);
	jbuf_json(&b, "", 0);
	ok(b.len == 2 && memcmp(b.p, "\"\"", 2) == 0, "the empty string");
	/* Every byte value, as a name, text and room: json-c reads back the same bytes. */
	proto_message_head(&b, all, 256, all, 256, all, 256, "i", 2);
	jbuf_str(&b, ",\"num\":1,\"offset\":1}");
	o = read_back(&b);
	ok(o != NULL, "a message holding every byte is JSON");
	ok(field_is(o, "name", all, 256) && field_is(o, "message", all, 256) && field_is(o, "roomid", all, 256),
	    "and every byte reads back");
	json_object_put(o);
	proto_enter(&b, "a\0b", 3, "r", 1, 2);
	ok((o = read_back(&b)) != NULL && field_is(o, "name", "a\0b", 3) && field_is(o, "message", "a\0b", 3) &&
	    field_is(o, "event", "enter", 5), "enter reads back (a NUL included)");
	json_object_put(o);
	proto_out(&b, "x", 1, "r", 1, -1);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"out\",\"name\":\"x\",\"roomid\":\"r\"}", "out without num");
	proto_error(&b, "bad_field", "\"roomid\" must be a string");
	ok((o = read_back(&b)) != NULL && field_is(o, "code", "bad_field", 9) &&
	    field_is(o, "message", "\"roomid\" must be a string", 25), "error reads back");
	json_object_put(o);
	proto_who(&b, "r\"", 2, NULL, NULL, 0, 0);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"who\",\"roomid\":\"r\\\"\",\"members\":[],\"num\":0}", "who with no members");
	{
		const char *const names[] = { "a", "b\n" };
		const size_t lens[] = { 1, 2 };

		proto_who(&b, "r", 1, names, lens, 2, -1);
	}
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"who\",\"roomid\":\"r\",\"members\":[\"a\",\"b\\n\"]}", "who with two, no num");
	{
		const char *const names[] = { "a", "\x01" "bo", "c" };
		const size_t lens[] = { 1, 3, 1 };

		proto_who(&b, "r", 1, names, lens, 3, 40);
	}
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"who\",\"roomid\":\"r\",\"members\":[\"a\",\"bo\",\"c\"],\"guests\":[\"bo\"],"
	    "\"num\":40}", "who names the guests, and the total beside a partial list");
	proto_enter(&b, "\x01" "gus", 4, "r", 1, 2);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"enter\",\"message\":\"gus\",\"name\":\"gus\",\"guest\":true,\"roomid\":\"r\","
	    "\"num\":2}", "a guest's enter says so");
	proto_refreshed(&b, 1700000300, 2);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"refresh\",\"exp\":1700000300,\"num\":2}", "refresh answer");
	proto_refreshed(&b, 0, -1);
	ok(b.len == 27 && memcmp(b.p, "{\"event\":\"refresh\",\"exp\":0}", 27) == 0, "refresh answer, no exp, no num");
	/* Writers replace the buffer's contents; a buffer grows past its first size. */
	proto_heartbeat(&b, 0, 7);
	memcpy(s, b.p, b.len);
	s[b.len] = '\0';
	is_str(s, "{\"event\":\"heartbeat\",\"message\":\"ping\",\"num\":7}", "heartbeat replaces who");
	jbuf_free(&b);
	ok(b.p == NULL && b.len == 0 && b.cap == 0, "jbuf_free clears");
}

int
main(void)
{
	test_itoa();
	test_message();
	test_parse();
	test_labels();
	test_escape();
	return tap_done();
}
