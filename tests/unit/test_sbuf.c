/*
 * test_sbuf.c: refcounted blocks (headroom, growth, last reference frees,
 * the small-block free list) and the output queue ring (growth while wrapped, partial consumption, the
 * entry bound, trimming). Run under ASan to catch leaks and double frees.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sbuf.h"
#include "tap.h"

static struct sbuf *
block(const char *s, size_t headroom)
{
	struct sbuf *b = sbuf_new(strlen(s), headroom);

	if (b != NULL) {
		memcpy(sbuf_ptr(b), s, strlen(s));
		b->len = (uint32_t)strlen(s);
	}
	return b;
}

/* The queue's iovecs concatenated into out (NUL-terminated). */
static size_t
flatten(const struct outq *q, char *out, size_t max)
{
	struct iovec iov[64];
	int n = outq_iov(q, iov, 64);
	size_t o = 0;

	for (int i = 0; i < n; i++) {
		if (o + iov[i].iov_len >= max)
			break;
		memcpy(out + o, iov[i].iov_base, iov[i].iov_len);
		o += iov[i].iov_len;
	}
	out[o] = '\0';
	return o;
}

static void
test_blocks(void)
{
	struct sbuf *b, *g;

	b = sbuf_new(100, 10);
	ok(b != NULL, "sbuf_new");
	is_int(b->refs, 1, "new block has one reference");
	is_int(b->off, 10, "headroom becomes the offset");
	is_int(b->len, 0, "new block is empty");
	ok(b->cap >= 110, "cap counts headroom (%u)", b->cap);
	ok(sbuf_ptr(b) == b->data + 10, "sbuf_ptr skips the headroom");
	memcpy(sbuf_ptr(b), "hello", 5);
	b->len = 5;
	g = sbuf_ref(b);
	ok(g == b && b->refs == 2, "sbuf_ref returns the block, refs 2");
	sbuf_unref(b);
	is_int(b->refs, 1, "unref back to 1");

	g = sbuf_grow(b, 100);
	ok(g == b, "grow within capacity keeps the block");
	g = sbuf_grow(b, 101);
	ok(g != NULL && g->cap >= g->off + 101, "grow beyond capacity makes room (cap %u)", g ? g->cap : 0);
	ok(g != NULL && g->off == 10 && g->len == 5 && memcmp(sbuf_ptr(g), "hello", 5) == 0,
	    "grow keeps offset, length and bytes");
	ok(g != NULL && g->cap >= 220, "grow at least doubles (amortised appends)");
	b = g;
	g = sbuf_grow(b, 100000);
	ok(g != NULL && g->cap >= g->off + 100000 && memcmp(sbuf_ptr(g), "hello", 5) == 0,
	    "grow to a large size");
	b = g;
	g = sbuf_grow(b, (size_t)UINT32_MAX);
	ok(g == NULL, "grow past 4 GiB fails");
	g = sbuf_grow(b, SIZE_MAX);
	ok(g == NULL, "grow to SIZE_MAX fails");
	sbuf_unref(b);
	sbuf_unref(NULL);
	ok(1, "sbuf_unref(NULL) is a no-op");

	g = sbuf_new((size_t)UINT32_MAX, 0);
	ok(g == NULL, "a block over 4 GiB is refused");
	sbuf_unref(g);
	g = sbuf_new(SIZE_MAX, 10);
	ok(g == NULL, "SIZE_MAX is refused");
	sbuf_unref(g);
	g = sbuf_new(16, (size_t)UINT32_MAX + 1);
	ok(g == NULL, "headroom over 4 GiB is refused");
	sbuf_unref(g);
	g = sbuf_new(16, SIZE_MAX - 8);
	ok(g == NULL, "headroom near SIZE_MAX is refused");
	sbuf_unref(g);
	b = sbuf_new(0, 0);
	ok(b != NULL && b->len == 0 && b->off == 0, "an empty block is fine");
	sbuf_unref(b);
	sbuf_cache_clear();
}

/* Small blocks go back to a bounded free list and come out as new. */
static void
test_cache(void)
{
	struct sbuf *b, *c, *big, *many[SBUF_CACHE_MAX + 10];

	sbuf_cache_clear();
	is_int(sbuf_cached(), 0, "cache empty after clear");
	b = sbuf_new(100, 10);
	ok(b != NULL && b->cap == SBUF_SMALL, "a small request gets a small block");
	memcpy(sbuf_ptr(b), "stale", 5);
	b->len = 5;
	sbuf_ref(b);
	sbuf_unref(b);
	is_int(sbuf_cached(), 0, "a block still referenced is not cached");
	sbuf_unref(b);
	is_int(sbuf_cached(), 1, "the last unref caches a small block");
	c = sbuf_new(20, 14);
	ok(c == b, "the next small request reuses it");
	is_int(sbuf_cached(), 0, "and takes it off the list");
	ok(c->refs == 1 && c->off == 14 && c->len == 0 && c->cap == SBUF_SMALL,
	    "a reused block is reset (refs 1, new headroom, empty)");
	c = sbuf_grow(c, SBUF_SMALL);
	ok(c != NULL && c->cap > SBUF_SMALL, "a small block can grow past the class");
	sbuf_unref(c);
	is_int(sbuf_cached(), 0, "a grown block is freed, not cached");
	big = sbuf_new(SBUF_SMALL, 1);
	ok(big != NULL && big->cap == SBUF_SMALL + 1, "a request over the class is sized exactly");
	sbuf_unref(big);
	is_int(sbuf_cached(), 0, "a large block is freed, not cached");
	b = sbuf_new(SBUF_SMALL - 10, 10);
	ok(b != NULL && b->cap == SBUF_SMALL, "a request of exactly the class is small");
	memset(sbuf_ptr(b), 'x', SBUF_SMALL - 10);
	sbuf_unref(b);
	for (int i = 0; i < SBUF_CACHE_MAX + 10; i++)
		many[i] = sbuf_new(8, 0);
	is_int(sbuf_cached(), 0, "taking more blocks than are cached empties the list");
	for (int i = 0; i < SBUF_CACHE_MAX + 10; i++)
		sbuf_unref(many[i]);
	is_int(sbuf_cached(), SBUF_CACHE_MAX, "the list is bounded; the rest are freed");
	sbuf_cache_clear();
	is_int(sbuf_cached(), 0, "clear frees the list");
}

static void
test_queue(void)
{
	struct outq q;
	struct sbuf *a = block("hello ", 0), *b = block("world", 10), *c = block("!", 0);
	char out[4096];
	struct iovec iov[4];
	int rc;

	memset(&q, 0, sizeof(q));
	rc = outq_push(&q, a, a->off, 0);
	ok(rc == 0 && outq_count(&q) == 0 && a->refs == 1, "an empty push queues nothing and takes no reference");
	ok(q.r == NULL, "an unused queue holds no ring");
	is_int(outq_push(&q, a, a->off, a->len), 0, "push a");
	is_int(outq_push(&q, b, b->off, b->len), 0, "push b");
	is_int(outq_push(&q, c, c->off, c->len), 0, "push c");
	is_int(outq_bytes(&q), 12, "bytes counted");
	is_int(a->refs + b->refs + c->refs, 6, "the queue holds a reference to each");
	flatten(&q, out, sizeof(out));
	is_str(out, "hello world!", "iovecs in order");
	is_int(outq_iov(&q, iov, 2), 2, "outq_iov honours max");

	outq_consume(&q, 3);
	flatten(&q, out, sizeof(out));
	is_str(out, "lo world!", "partial consume of the first entry");
	is_int(outq_count(&q), 3, "entry kept after a partial consume");
	is_int(a->refs, 2, "partially sent block still referenced");
	outq_consume(&q, 7);
	flatten(&q, out, sizeof(out));
	is_str(out, "d!", "consume across an entry boundary into the next");
	is_int(a->refs, 1, "fully sent block released");
	is_int(b->refs, 2, "partly sent second block still referenced");
	is_int(outq_count(&q), 2, "first entry dropped");
	is_int(outq_bytes(&q), 2, "bytes after consuming");
	outq_consume(&q, 1);
	is_int(b->refs, 1, "b released when its last byte is consumed");
	is_int(outq_count(&q), 1, "one entry left");
	outq_consume(&q, 1);
	is_int(outq_count(&q), 0, "queue empty");
	is_int(outq_bytes(&q), 0, "no bytes left");
	is_int(c->refs, 1, "c released");
	ok(q.r != NULL, "ring kept until trimmed");
	outq_trim(&q);
	ok(q.r != NULL, "a queue pushed to since the last trim keeps its ring");
	outq_trim(&q);
	ok(q.r == NULL, "outq_trim releases the ring of a queue empty for a whole period");

	/* Wrap the ring, then grow it while wrapped: order is kept. */
	{
		static const char *w[] = { "0", "1", "2", "3", "4", "5", "6", "7", "8", "9" };
		struct sbuf *bs[10];
		uint32_t cap;

		for (int i = 0; i < 10; i++)
			bs[i] = block(w[i], 0);
		for (int i = 0; i < 4; i++)
			(void)!outq_push(&q, bs[i], 0, 1);
		cap = q.r->cap;
		is_int(cap, 4, "ring starts at 4 entries");
		outq_consume(&q, 2);
		(void)!outq_push(&q, bs[4], 0, 1);
		(void)!outq_push(&q, bs[5], 0, 1);
		is_int(q.r->cap, 4, "wrapping does not grow the ring");
		ok(q.r->head == 2, "head moved (ring wrapped)");
		flatten(&q, out, sizeof(out));
		is_str(out, "2345", "order across the wrap");
		(void)!outq_push(&q, bs[6], 0, 1);
		is_int(q.r->cap, 8, "a full wrapped ring grows");
		flatten(&q, out, sizeof(out));
		is_str(out, "23456", "order kept after growing a wrapped ring");
		for (int i = 7; i < 10; i++)
			(void)!outq_push(&q, bs[i], 0, 1);
		outq_consume(&q, 4);
		flatten(&q, out, sizeof(out));
		is_str(out, "6789", "consume after growth");
		is_int(outq_push(&q, a, 1, 4), 0, "push a sub-range of a block");
		flatten(&q, out, sizeof(out));
		is_str(out, "6789ello", "sub-range bytes");
		outq_trim(&q);
		ok(q.r != NULL, "outq_trim keeps a non-empty queue");
		outq_clear(&q);
		ok(q.r == NULL && outq_count(&q) == 0 && outq_bytes(&q) == 0, "outq_clear empties and frees");
		for (int i = 0; i < 10; i++) {
			is_int(bs[i]->refs, 1, "block %d back to one reference", i);
			sbuf_unref(bs[i]);
		}
		is_int(a->refs, 1, "a back to one reference");
	}

	/* The entry bound. */
	{
		int fails = 0;

		for (int i = 0; i < OUTQ_MAX_ENTRIES; i++)
			if (outq_push(&q, c, 0, 1) != 0)
				fails++;
		is_int(fails, 0, "OUTQ_MAX_ENTRIES pushes succeed");
		is_int(outq_count(&q), OUTQ_MAX_ENTRIES, "count at the bound");
		is_int(outq_push(&q, c, 0, 1), -1, "one more is refused");
		is_int(outq_count(&q), OUTQ_MAX_ENTRIES, "a refused push queues nothing");
		is_int(c->refs, 1 + OUTQ_MAX_ENTRIES, "a refused push takes no reference");
		ok(outq_bytes(&q) == OUTQ_MAX_ENTRIES, "bytes at the bound");
		outq_consume(&q, 10);
		is_int(outq_push(&q, c, 0, 1), 0, "room again after consuming");
		is_int(q.r->cap, OUTQ_MAX_ENTRIES, "the ring never grows past the bound");
		outq_clear(&q);
		is_int(c->refs, 1, "clear drops every reference");
	}
	sbuf_unref(a);
	sbuf_unref(b);
	sbuf_unref(c);
	outq_clear(&q);
	ok(q.r == NULL, "clearing an empty queue is fine");
}

/* slow_client drop: the oldest droppable entries go, never a started one or a kept one. */
static void
test_drop_oldest(void)
{
	struct outq q;
	struct sbuf *b = sbuf_new(64, 0);
	struct iovec iov[8];

	memset(&q, 0, sizeof(q));
	b->len = 64;
	/* keep(10) drop(20) drop(30) keep(5) drop(40) */
	is_int(outq_push(&q, b, 0, 10), 0, "push a kept frame");
	is_int(outq_push(&q, b, 0, 20), 0, "push a broadcast");
	outq_mark_droppable(&q);
	is_int(outq_push(&q, b, 0, 30), 0, "push a broadcast");
	outq_mark_droppable(&q);
	is_int(outq_push(&q, b, 0, 5), 0, "push a kept frame");
	is_int(outq_push(&q, b, 0, 40), 0, "push a broadcast");
	outq_mark_droppable(&q);
	is_int(outq_bytes(&q), 105, "105 bytes queued");
	is_int(outq_drop_oldest(&q, 25), 2, "two oldest broadcasts dropped to free 25 bytes");
	is_int(outq_count(&q), 3, "three entries left");
	is_int(outq_bytes(&q), 55, "55 bytes left");
	is_int(outq_iov(&q, iov, 8), 3, "three iovecs");
	is_int(iov[0].iov_len, 10, "the kept frame first");
	is_int(iov[1].iov_len, 5, "then the second kept frame");
	is_int(iov[2].iov_len, 40, "then the newest broadcast");
	is_int(b->refs, 4, "dropped entries released their references");
	/* A started head is never dropped, even when it is a broadcast. */
	outq_clear(&q);
	is_int(outq_push(&q, b, 0, 30), 0, "push a broadcast");
	outq_mark_droppable(&q);
	is_int(outq_push(&q, b, 0, 30), 0, "push another");
	outq_mark_droppable(&q);
	outq_consume(&q, 7);
	is_int(outq_drop_oldest(&q, 1000), 1, "only the unstarted broadcast is dropped");
	is_int(outq_count(&q), 1, "the started one stays");
	is_int(outq_bytes(&q), 23, "with its unsent rest");
	outq_consume(&q, 23);
	is_int(q.r->head_started, 0, "a fully sent head clears the mark");
	outq_clear(&q);
	is_int(b->refs, 1, "every reference back");
	sbuf_unref(b);
}

int
main(void)
{
	test_blocks();
	test_queue();
	test_drop_oldest();
	test_cache();
	sbuf_cache_clear();
	return tap_done();
}
