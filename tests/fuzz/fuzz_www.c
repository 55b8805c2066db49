/*
 * fuzz_www.c: libFuzzer target for static-file path resolution
 * (www_resolve). A resolved path starts with '/', holds no NUL, backslash,
 * "." or ".." segment and no final '/'; it resolves again to itself once
 * every byte is percent-encoded; a larger buffer never changes the answer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "www.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

#define OUTMAX	4096

/* Whether any '/'-separated segment of p is "." or "..". */
static int
dot_segment(const char *p)
{
	for (const char *s = p; ; s++) {
		const char *e = strchr(s, '/');
		size_t n = e != NULL ? (size_t)(e - s) : strlen(s);

		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return 1;
		if (e == NULL)
			return 0;
		s = e;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[OUTMAX], again[OUTMAX + 32], enc[OUTMAX * 3];
	/* The first byte picks the buffer size: 0 to 255, or the whole OUTMAX. */
	size_t outlen = size > 0 && data[0] != 0xff ? data[0] : OUTMAX, len;
	char *buf;
	int rc;

	if (size > 0) {
		data++;
		size--;
	}
	/* An exact-size copy, so that any over-read trips ASan. */
	if ((buf = malloc(size > 0 ? size : 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	rc = www_resolve(buf, size, out, outlen);
	CHECK(rc == 0 || rc == 400 || rc == 403);
	if (rc == 0) {
		len = strnlen(out, outlen);
		CHECK(len + 7 <= outlen);	/* 17 bytes kept back, 10 of them maybe for index.html */
		CHECK(out[0] == '/' && out[len - 1] != '/');
		CHECK(strchr(out, '\\') == NULL && !dot_segment(out));
		/* Written the way a browser might (every byte %XX), it is the same path. */
		for (size_t i = 0; i < len; i++)
			snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)out[i]);
		CHECK(www_resolve(enc, 3 * len, again, sizeof(again)) == 0 && strcmp(again, out) == 0);
	}
	/* More room changes nothing that fitted; what failed for another reason still fails. */
	if (outlen < OUTMAX) {
		int big = www_resolve(buf, size, again, OUTMAX);

		if (rc == 0)
			CHECK(big == 0 && strcmp(again, out) == 0);
		else if (rc == 403)
			CHECK(big == 403);
	}
	free(buf);
	return 0;
}
