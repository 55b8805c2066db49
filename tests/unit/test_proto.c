/*
 * test_proto.c: the server side of the chat protocol's JSON: numbers written
 * without printf (every edge of a long long), strings escaped, a message
 * event's exact bytes, and that json-c reads back what was written.
 */
#include <limits.h>
#include <stdio.h>
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

int
main(void)
{
	test_itoa();
	test_message();
	return tap_done();
}
