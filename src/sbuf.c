/*
 * sbuf.c: refcounted blocks and output queues. A broadcast is one block that
 * every member's queue references; the block is freed with its last reference.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbuf.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)	ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n)	ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)	((void)(p), (void)(n))
#define UNPOISON(p, n)	((void)(p), (void)(n))
#endif

/*
 * Small blocks, which is most messages in and out, are recycled through a
 * bounded free list instead of going back to malloc: a worker takes one and
 * releases one per message. A small block always has cap SBUF_SMALL, which
 * no other block has (larger ones start above it and only grow). The link
 * lives in data[]; the rest of a cached block is poisoned under ASan, so a
 * use after the last unref is still caught.
 */
static struct sbuf *cache;
static unsigned ncached;

static struct sbuf *
cache_next(struct sbuf *b)
{
	struct sbuf *n;

	memcpy(&n, b->data, sizeof(n));
	return n;
}

struct sbuf *
sbuf_new(size_t cap, size_t headroom)
{
	struct sbuf *b;

	/* Both terms are checked: a huge headroom must not wrap the subtraction. */
	if (headroom > UINT32_MAX - 64 || cap > UINT32_MAX - 64 - headroom)
		return NULL;
	if (cap + headroom <= SBUF_SMALL) {
		if ((b = cache) != NULL) {
			UNPOISON(b, sizeof(*b) + SBUF_SMALL);
			cache = cache_next(b);
			ncached--;
		} else if ((b = malloc(sizeof(*b) + SBUF_SMALL)) == NULL)
			return NULL;
		cap = SBUF_SMALL - headroom;
	} else if ((b = malloc(sizeof(*b) + cap + headroom)) == NULL)
		return NULL;
	b->refs = 1;
	b->off = (uint32_t)headroom;
	b->len = 0;
	b->cap = (uint32_t)(cap + headroom);
	return b;
}

unsigned
sbuf_cached(void)
{
	return ncached;
}

void
sbuf_cache_clear(void)
{
	struct sbuf *b;

	while ((b = cache) != NULL) {
		UNPOISON(b, sizeof(*b) + SBUF_SMALL);
		cache = cache_next(b);
		free(b);
	}
	ncached = 0;
}

struct sbuf *
sbuf_grow(struct sbuf *b, size_t need)
{
	struct sbuf *nb;
	size_t ncap;

	if (need <= b->cap - b->off)
		return b;
	if (need > UINT32_MAX - b->off - 64)
		return NULL;
	ncap = (size_t)b->cap * 2;
	if (ncap < b->off + need)
		ncap = b->off + need;
	if (ncap > UINT32_MAX - 64)
		ncap = UINT32_MAX - 64;
	if ((nb = realloc(b, sizeof(*b) + ncap)) == NULL)
		return NULL;
	nb->cap = (uint32_t)ncap;
	return nb;
}

void
sbuf_unref(struct sbuf *b)
{
	if (b == NULL || --b->refs > 0)
		return;
	if (b->cap != SBUF_SMALL || ncached >= SBUF_CACHE_MAX) {
		free(b);
		return;
	}
	memcpy(b->data, &cache, sizeof(cache));
	POISON(b, sizeof(*b));
	POISON(b->data + sizeof(cache), SBUF_SMALL - sizeof(cache));
	cache = b;
	ncached++;
}

struct outq_ring *
outq_reserve(struct outq *q)
{
	struct outq_ring *r = q->r, *nr;
	uint32_t ncap;

	if (r != NULL && r->count < r->cap)
		return r;
	if (r != NULL && r->cap >= OUTQ_MAX_ENTRIES)
		return NULL;
	ncap = r == NULL ? 4 : r->cap * 2;
	if ((nr = malloc(sizeof(*nr) + sizeof(nr->ent[0]) * ncap)) == NULL)
		return NULL;
	if (r == NULL) {
		memset(nr, 0, sizeof(*nr));
	} else {
		*nr = *r;
		/* Unroll the ring into the new array. */
		for (uint32_t i = 0; i < r->count; i++)
			nr->ent[i] = r->ent[(r->head + i) & (r->cap - 1)];
		free(r);
	}
	nr->cap = ncap;
	nr->head = 0;
	q->r = nr;
	return nr;
}

int
outq_push_file(struct outq *q, int fd, uint64_t off, uint32_t len)
{
	struct outq_ring *r;

	if (len == 0) {
		close(fd);
		return 0;
	}
	if ((r = outq_reserve(q)) == NULL) {
		close(fd);
		return -1;
	}
	r->ent[(r->head + r->count) & (r->cap - 1)] = (struct outq_ent){ NULL, 0, len, fd, 0, off };
	r->count++;
	r->pushed = 1;
	r->bytes += len;
	return 0;
}

/* Release what one entry holds. */
static void
ent_release(struct outq_ent *e)
{
	if (e->b != NULL)
		sbuf_unref(e->b);
	else if (e->fd >= 0)
		close(e->fd);
}

int
outq_iov(const struct outq *q, struct iovec *iov, int max)
{
	const struct outq_ring *r = q->r;
	int n = 0;

	if (r == NULL)
		return 0;
	for (uint32_t i = 0; i < r->count && n < max; i++, n++) {
		const struct outq_ent *e = &r->ent[(r->head + i) & (r->cap - 1)];

		if (e->b == NULL)
			break;
		iov[n].iov_base = e->b->data + e->off;
		iov[n].iov_len = e->len;
	}
	return n;
}

void
outq_consume(struct outq *q, size_t n)
{
	struct outq_ring *r = q->r;

	if (r == NULL)
		return;
	r->bytes -= n;
	while (n > 0 && r->count > 0) {
		struct outq_ent *e = &r->ent[r->head];

		if (n < e->len) {
			e->off += (uint32_t)n;
			e->foff += n;
			e->len -= (uint32_t)n;
			r->head_started = 1;
			return;
		}
		n -= e->len;
		r->head_started = 0;
		ent_release(e);
		r->head = (r->head + 1) & (r->cap - 1);
		r->count--;
	}
}

void
outq_mark_droppable(struct outq *q)
{
	struct outq_ring *r = q->r;

	if (r != NULL && r->count > 0)
		r->ent[(r->head + r->count - 1) & (r->cap - 1)].droppable = 1;
}

uint32_t
outq_drop_oldest(struct outq *q, size_t need)
{
	struct outq_ring *r = q->r;
	uint32_t kept = 0, dropped = 0, mask;
	size_t freed = 0;

	if (r == NULL)
		return 0;
	mask = r->cap - 1;
	/* Compact the ring in place: keep what must stay, drop from the oldest. */
	for (uint32_t i = 0; i < r->count; i++) {
		struct outq_ent *e = &r->ent[(r->head + i) & mask];

		if (freed < need && e->droppable && !(i == 0 && r->head_started)) {
			freed += e->len;
			r->bytes -= e->len;
			ent_release(e);
			dropped++;
			continue;
		}
		if (kept != i)
			r->ent[(r->head + kept) & mask] = *e;
		kept++;
	}
	r->count = kept;
	return dropped;
}

void
outq_clear(struct outq *q)
{
	struct outq_ring *r = q->r;

	if (r == NULL)
		return;
	while (r->count > 0) {
		ent_release(&r->ent[r->head]);
		r->head = (r->head + 1) & (r->cap - 1);
		r->count--;
	}
	free(r);
	q->r = NULL;
}

void
outq_trim(struct outq *q)
{
	if (q->r == NULL)
		return;
	if (q->r->count == 0 && !q->r->pushed)
		outq_clear(q);
	else
		q->r->pushed = 0;
}
