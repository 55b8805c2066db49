/*
 * fixed_random.c: a getrandom(3) that returns the same bytes in every run,
 * preloaded into roomd by tests/perf/guard.py. json-c seeds its string hash
 * with getrandom, so which keys of a chat event share a hash bucket (and how
 * many comparisons a lookup makes) changes from process to process; with a
 * fixed seed every run makes the same ones. For measuring only: never in a
 * roomd that serves anyone.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

ssize_t getrandom(void *buf, size_t len, unsigned int flags);

/* The same xorshift32 stream from the start at every call. */
ssize_t
getrandom(void *buf, size_t len, unsigned int flags)
{
	unsigned char *p = buf;
	uint32_t x = 2463534242u;

	(void)flags;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return (ssize_t)len;
}
