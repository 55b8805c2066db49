/*
 * chatproto.c: just enough JSON to follow roomd's events: a key is found as
 * "key" followed by optional whitespace and a colon, and its string or
 * integer value is read in place.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatproto.h"

/* Start of the value of key (after the colon and whitespace), or NULL. */
static const uint8_t *
find_value(const uint8_t *p, size_t len, const char *key)
{
	char pat[40];
	const uint8_t *end = p + len, *s = p, *q;
	int n = snprintf(pat, sizeof(pat), "\"%s\"", key);

	if (n < 0 || (size_t)n >= sizeof(pat))
		return NULL;
	while (s < end && (q = memmem(s, (size_t)(end - s), pat, (size_t)n)) != NULL) {
		q += n;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
			q++;
		if (q < end && *q == ':') {
			q++;
			while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
				q++;
			return q < end ? q : NULL;
		}
		s = q;
	}
	return NULL;
}

int
cp_find_str(const uint8_t *p, size_t len, const char *key, const char **v, size_t *vlen)
{
	const uint8_t *q = find_value(p, len, key), *end = p + len, *a;

	if (q == NULL || *q != '"')
		return -1;
	a = ++q;
	while (q < end && *q != '"') {
		if (*q == '\\')
			q++;
		q++;
	}
	if (q >= end)
		return -1;
	*v = (const char *)a;
	*vlen = (size_t)(q - a);
	return 0;
}

/* Integer value of key, or -1. */
static long long
find_int(const uint8_t *p, size_t len, const char *key)
{
	const uint8_t *q = find_value(p, len, key), *end = p + len;
	long long v = 0;

	if (q == NULL || q >= end || *q < '0' || *q > '9')
		return -1;
	for (; q < end && *q >= '0' && *q <= '9'; q++)
		v = v * 10 + (*q - '0');
	return v;
}

/* Whether the string value [v, v+vlen) equals s. */
static int
str_is(const char *v, size_t vlen, const char *s)
{
	return vlen == strlen(s) && memcmp(v, s, vlen) == 0;
}

enum cp_event
cp_parse(const uint8_t *p, size_t len, struct cp_info *info)
{
	const char *ev, *m;
	size_t evlen, mlen;

	info->name = NULL;
	info->name_len = 0;
	info->num = -1;
	if (cp_find_str(p, len, "event", &ev, &evlen) < 0)
		return CP_OTHER;
	if (str_is(ev, evlen, "heartbeat")) {
		if (cp_find_str(p, len, "message", &m, &mlen) == 0 && str_is(m, mlen, "ping"))
			return CP_HEARTBEAT_PING;
		return CP_HEARTBEAT_OTHER;
	}
	if (str_is(ev, evlen, "message"))
		return CP_MESSAGE;
	if (str_is(ev, evlen, "error"))
		return CP_ERROR;
	if (!str_is(ev, evlen, "enter") && !str_is(ev, evlen, "out"))
		return CP_OTHER;
	if (cp_find_str(p, len, "name", &info->name, &info->name_len) < 0 &&
	    cp_find_str(p, len, "message", &info->name, &info->name_len) < 0)
		info->name = NULL;
	info->num = find_int(p, len, "num");
	return ev[0] == 'e' ? CP_ENTER : CP_OUT;
}

int
cp_enter(char *out, size_t cap, const char *name_prefix, uint32_t i,
    const char *room_prefix, uint32_t room)
{
	int n = snprintf(out, cap, "{\"event\":\"enter\",\"message\":\"%s%u\",\"roomid\":\"%s%u\"}",
	    name_prefix, i, room_prefix, room);

	return n < 0 || (size_t)n >= cap ? -1 : n;
}

int
cp_name_is(const char *name, size_t len, const char *name_prefix, uint32_t i)
{
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "%s%u", name_prefix, i);

	return n > 0 && (size_t)n == len && memcmp(buf, name, len) == 0;
}
