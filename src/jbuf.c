/*
 * jbuf.c: a growable output buffer reused across events, with writers for
 * raw bytes, decimal integers (no printf on the message path) and escaped
 * JSON strings. Out of memory sticks (oom) until the next reset, so a
 * builder checks once at the end.
 */
#include <stdlib.h>
#include <string.h>

#include "jbuf.h"

static void
jbuf_reserve(struct jbuf *b, size_t n)
{
	size_t ncap;
	char *np;

	if (b->oom || b->len + n <= b->cap)
		return;
	ncap = b->cap < 256 ? 256 : b->cap;
	while (ncap < b->len + n)
		ncap *= 2;
	if ((np = realloc(b->p, ncap)) == NULL) {
		b->oom = 1;
		return;
	}
	b->p = np;
	b->cap = ncap;
}

void
jbuf_reset(struct jbuf *b)
{
	b->len = 0;
	b->oom = 0;
}

void
jbuf_free(struct jbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void
jbuf_add(struct jbuf *b, const char *s, size_t n)
{
	jbuf_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void
jbuf_str(struct jbuf *b, const char *s)
{
	jbuf_add(b, s, strlen(s));
}

size_t
jbuf_itoa(char out[24], long long v)
{
	static const char pairs[] =
	    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	    "8081828384858687888990919293949596979899";
	char t[24], *e = t + sizeof(t);
	unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
	size_t n = 0;

	if (v < 0)
		out[n++] = '-';
	/* Most numbers roomd writes are RESP lengths and counts: one or two digits. */
	if (u < 10) {
		out[n] = (char)('0' + u);
		return n + 1;
	}
	while (u >= 100) {
		unsigned r = (unsigned)(u % 100);

		u /= 100;
		e -= 2;
		e[0] = pairs[2 * r];
		e[1] = pairs[2 * r + 1];
	}
	if (u >= 10) {
		e -= 2;
		e[0] = pairs[2 * u];
		e[1] = pairs[2 * u + 1];
	} else
		*--e = (char)('0' + u);
	while (e < t + sizeof(t))
		out[n++] = *e++;
	return n;
}

void
jbuf_int(struct jbuf *b, long long v)
{
	char t[24];

	jbuf_add(b, t, jbuf_itoa(t, v));
}

void
jbuf_json(struct jbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, run;

	jbuf_reserve(b, n + 2);
	jbuf_add(b, "\"", 1);
	for (i = 0; i < n; i += run) {
		unsigned char c;

		/* Copy runs of bytes that need no escape in one go. */
		for (run = 0; i + run < n; run++) {
			c = (unsigned char)s[i + run];
			if (c < 0x20 || c == '"' || c == '\\')
				break;
		}
		if (run > 0) {
			jbuf_add(b, s + i, run);
			continue;
		}
		c = (unsigned char)s[i];
		run = 1;
		switch (c) {
		case '"': jbuf_add(b, "\\\"", 2); break;
		case '\\': jbuf_add(b, "\\\\", 2); break;
		case '\n': jbuf_add(b, "\\n", 2); break;
		case '\r': jbuf_add(b, "\\r", 2); break;
		case '\t': jbuf_add(b, "\\t", 2); break;
		default: {
			char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };

			jbuf_add(b, u, 6);
		}
		}
	}
	jbuf_add(b, "\"", 1);
}

