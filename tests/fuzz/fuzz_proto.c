/*
 * fuzz_proto.c: libFuzzer target for the chat JSON. Client events: parsing
 * is repeatable on one reused parser, errors come from a fixed set, and an
 * accepted event keeps its bounds. Server events: whatever bytes go into a
 * writer, json-c reads back a JSON object holding exactly those bytes, and
 * proto_parse reads a written message or enter back as the same event.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "proto.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

static struct proto *parser;
static struct jbuf out;

/* A copy of what one parse gave, to compare with the next. */
struct result {
	int	 rc;
	const char *code;
	enum chat_event ev;
	char	*message, *roomid;
	size_t	 ml, rl;
	int	 has_message, has_roomid;
};

static void
parse(const char *buf, size_t n, const struct proto_limits *lim, struct result *r)
{
	static const char *const codes[] = { "bad_json", "not_object", "unknown_event", "bad_field" };
	struct chat_req req;
	char why[160];
	int known = 0;

	memset(r, 0, sizeof(*r));
	why[0] = '\0';
	r->rc = proto_parse(parser, buf, n, lim, &req, &r->code, why, sizeof(why));
	CHECK(r->rc == 0 || r->rc == -1);
	if (r->rc == -1) {
		for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
			known |= strcmp(r->code, codes[i]) == 0;
		CHECK(known && why[0] != '\0');
		return;
	}
	CHECK(req.ev >= CHAT_ENTER && req.ev <= CHAT_HISTORY);
	r->ev = req.ev;
	if (req.ev == CHAT_ENTER)
		CHECK(req.message != NULL && proto_valid_label(req.message, req.message_len, lim->max_name));
	if (req.ev == CHAT_MESSAGE)
		CHECK(req.message != NULL);
	if (req.ev == CHAT_REFRESH)
		CHECK(req.token != NULL && req.token_len > 0 && req.token_len <= lim->max_token);
	if (req.roomid != NULL)
		CHECK(proto_valid_label(req.roomid, req.roomid_len, lim->max_roomid));
	if ((r->has_message = req.message != NULL) && (r->message = malloc(req.message_len + 1)) != NULL) {
		memcpy(r->message, req.message, req.message_len);
		r->ml = req.message_len;
	}
	if ((r->has_roomid = req.roomid != NULL) && (r->roomid = malloc(req.roomid_len + 1)) != NULL) {
		memcpy(r->roomid, req.roomid, req.roomid_len);
		r->rl = req.roomid_len;
	}
}

static void
result_free(struct result *r)
{
	free(r->message);
	free(r->roomid);
}

/* json-c's strict reading of what a writer left in out; the object, which must exist. */
static struct json_object *
read_back(void)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o;

	CHECK(!out.oom);
	if (tok == NULL)
		return NULL;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, out.p, (int)out.len);
	CHECK(o != NULL && json_tokener_get_error(tok) == json_tokener_success &&
	    json_tokener_get_parse_end(tok) == out.len && json_object_is_type(o, json_type_object));
	json_tokener_free(tok);
	return o;
}

static void
check_field(struct json_object *o, const char *key, const char *want, size_t n)
{
	struct json_object *v;

	CHECK(json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string));
	CHECK((size_t)json_object_get_string_len(v) == n && memcmp(json_object_get_string(v), want, n) == 0);
}

/* Write every server event from the three parts of the input and read each back. */
static void
check_writers(const char *name, size_t nl, const char *text, size_t tl, const char *room, size_t rl, long num)
{
	static const struct proto_limits wide = { 1 << 20, 1 << 20, 1 << 20, 1000 };
	struct json_object *o;
	struct result r;
	char cname[64], ctext[64];
	/* A name roomd marks as a guest's (PROTO_GUEST first) is shown without its mark. */
	const char *shown = nl > 0 && name[0] == PROTO_GUEST ? name + 1 : name;
	size_t snl = nl > 0 && name[0] == PROTO_GUEST ? nl - 1 : nl;

	/* The head roomd writes, finished the way the store's script finishes it. */
	proto_message_head(&out, name, nl, text, tl, room, rl, "w1.2", 1700000000123ULL);
	jbuf_str(&out, ",\"num\":");
	jbuf_int(&out, num);
	jbuf_str(&out, ",\"offset\":1}");
	o = read_back();
	check_field(o, "event", "message", 7);
	check_field(o, "name", shown, snl);
	check_field(o, "message", text, tl);
	check_field(o, "roomid", room, rl);
	json_object_put(o);
	/* A client could send this very object: it is the same message. */
	parse(out.p, out.len, &wide, &r);
	if (proto_valid_label(room, rl, wide.max_roomid))
		CHECK(r.rc == 0 && r.ev == CHAT_MESSAGE && r.ml == tl && memcmp(r.message, text, tl) == 0 &&
		    r.rl == rl && memcmp(r.roomid, room, rl) == 0);
	else
		CHECK(r.rc == -1 && strcmp(r.code, "bad_field") == 0);
	result_free(&r);

	proto_enter(&out, name, nl, room, rl, num);
	o = read_back();
	check_field(o, "name", shown, snl);
	check_field(o, "message", shown, snl);
	json_object_put(o);
	parse(out.p, out.len, &wide, &r);
	if (proto_valid_label(room, rl, wide.max_roomid) && proto_valid_label(shown, snl, wide.max_name))
		CHECK(r.rc == 0 && r.ev == CHAT_ENTER && r.ml == snl && memcmp(r.message, shown, snl) == 0);
	else
		CHECK(r.rc == -1);
	result_free(&r);

	proto_out(&out, name, nl, room, rl, num);
	o = read_back();
	check_field(o, "name", shown, snl);
	json_object_put(o);

	{
		const char *const names[2] = { name, text };
		const size_t lens[2] = { nl, tl };

		proto_who(&out, room, rl, names, lens, 2, num);
	}
	o = read_back();
	check_field(o, "roomid", room, rl);
	{
		struct json_object *m;

		CHECK(json_object_object_get_ex(o, "members", &m) && json_object_array_length(m) == 2);
	}
	json_object_put(o);

	proto_heartbeat(&out, nl % 2, num);	/* a ping, or the pong to a client's */
	json_object_put(read_back());

	proto_refreshed(&out, (long long)tl * 1000003 - 7, num);
	o = read_back();
	{
		struct json_object *x;

		CHECK(json_object_object_get_ex(o, "exp", &x) &&
		    json_object_get_int64(x) == (long long)tl * 1000003 - 7);
	}
	json_object_put(o);

	/* proto_error takes C strings. */
	snprintf(cname, sizeof(cname), "%.*s", (int)(nl < 63 ? nl : 63), name);
	snprintf(ctext, sizeof(ctext), "%.*s", (int)(tl < 63 ? tl : 63), text);
	proto_error(&out, cname, ctext);
	o = read_back();
	check_field(o, "code", cname, strlen(cname));
	check_field(o, "message", ctext, strlen(ctext));
	json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_limits lim;
	struct result a, b;
	char *buf;
	size_t n, third;

	if (size < 2)
		return 0;
	if (parser == NULL && (parser = proto_new()) == NULL)
		return 0;
	/* The first byte sets the limits (1 to 61 bytes), as max_name_length and max_roomid_length do. */
	lim.max_name = 1 + (size_t)(data[0] & 15) * 4;
	lim.max_roomid = 1 + (size_t)(data[0] >> 4) * 4;
	lim.max_token = lim.max_name + lim.max_roomid;
	lim.max_history = (unsigned)(data[0] & 7) * 10;	/* 0: history off */
	data++;
	size--;
	/* An exact-size copy, so that any over-read trips ASan. */
	if ((buf = malloc(size)) == NULL)
		return 0;
	memcpy(buf, data, size);
	parse(buf, size, &lim, &a);
	parse(buf, size, &lim, &b);
	CHECK(a.rc == b.rc && a.ev == b.ev && a.has_message == b.has_message && a.has_roomid == b.has_roomid);
	CHECK(a.rc == 0 || strcmp(a.code, b.code) == 0);
	CHECK(a.ml == b.ml && (a.ml == 0 || memcmp(a.message, b.message, a.ml) == 0));
	CHECK(a.rl == b.rl && (a.rl == 0 || memcmp(a.roomid, b.roomid, a.rl) == 0));
	result_free(&a);
	result_free(&b);
	/* A prefix, right after: a message is whole, never a wait for more bytes (rc 0 or -1). */
	n = data[0] % (size + 1);
	parse(buf, n, &lim, &a);
	result_free(&a);

	third = size / 3;
	check_writers(buf, third, buf + third, third, buf + 2 * third, size - 2 * third,
	    size % 2 ? -1 : (long)size);
	free(buf);
	return 0;
}
