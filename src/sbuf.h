/*
 * sbuf.h: refcounted byte blocks ("encode once, share many times") and the
 * per-connection output queue of references into them.
 */
#ifndef ROOMD_SBUF_H
#define ROOMD_SBUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "log.h"

/* Bytes live in data[off .. off+len); room before off is headroom for a frame header. */
struct sbuf {
	uint32_t	refs;
	uint32_t	off;
	uint32_t	len;
	uint32_t	cap;	/* bytes in data[] */
	uint8_t		data[];
};

#define SBUF_SMALL	512	/* data[] bytes of a recycled small block */
#define SBUF_CACHE_MAX	256	/* small blocks kept for reuse (per process) */

/*
 * A block with at least cap bytes and headroom bytes reserved in front;
 * refs = 1. NULL on OOM. Small ones come from a free list, not malloc.
 */
struct sbuf *sbuf_new(size_t cap, size_t headroom) MUST_CHECK;
/* Grow an unshared block so that it can hold need bytes after off. */
struct sbuf *sbuf_grow(struct sbuf *, size_t need) MUST_CHECK;
static inline struct sbuf *sbuf_ref(struct sbuf *b) { b->refs++; return b; }
void sbuf_unref(struct sbuf *);
/* How many small blocks wait for reuse; free them all (at exit). */
unsigned sbuf_cached(void);
void sbuf_cache_clear(void);
static inline uint8_t *sbuf_ptr(struct sbuf *b) { return b->data + b->off; }

/*
 * A ring of (block, offset, length) references, bounded in entries and bytes.
 * An entry with b == NULL is a file segment: fd at file offset foff, sent
 * with sendfile(2) and closed when done.
 */
struct outq_ent {
	struct sbuf	*b;
	uint32_t	 off;
	uint32_t	 len;
	int		 fd;
	uint8_t		 droppable;	/* a room broadcast a slow reader may lose */
	uint64_t	 foff;
};

/* The ring, allocated on the first push and released by outq_trim/outq_clear. */
struct outq_ring {
	uint32_t	 cap, head, count;	/* cap is a power of two: indexes are masked */
	uint8_t		 head_started;	/* part of the head entry is on the wire */
	uint8_t		 pushed;	/* a push since the last outq_trim */
	size_t		 bytes;
	struct outq_ent	 ent[];
};

/* An empty queue is one NULL pointer: what an idle connection holds. */
struct outq {
	struct outq_ring *r;
};

static inline uint32_t outq_count(const struct outq *q) { return q->r != NULL ? q->r->count : 0; }
static inline size_t outq_bytes(const struct outq *q) { return q->r != NULL ? q->r->bytes : 0; }

#define OUTQ_MAX_ENTRIES	65536

/* A ring with room for one more entry (grown, or made); NULL when full or OOM. */
struct outq_ring *outq_reserve(struct outq *) MUST_CHECK;

/* Append a reference to b[off, off+len) (takes its own ref). -1 when full or OOM. */
static inline int MUST_CHECK
outq_push(struct outq *q, struct sbuf *b, uint32_t off, uint32_t len)
{
	struct outq_ring *r = q->r;

	/* Inline: it is on the path of every delivery; only growing the ring is not. */
	if (len == 0)
		return 0;
	if ((r == NULL || r->count == r->cap) && (r = outq_reserve(q)) == NULL)
		return -1;
	r->ent[(r->head + r->count) & (r->cap - 1)] = (struct outq_ent){ sbuf_ref(b), off, len, -1, 0, 0 };
	r->count++;
	r->pushed = 1;
	r->bytes += len;
	return 0;
}
/* Mark the entry just pushed as droppable (see outq_drop_oldest). */
void outq_mark_droppable(struct outq *);
/*
 * Drop the oldest droppable entries, never one partly written, until at
 * least need bytes are freed. Returns how many entries were dropped.
 */
uint32_t outq_drop_oldest(struct outq *, size_t need);
/* Append a file segment (takes ownership of fd, closed when sent or dropped). */
int outq_push_file(struct outq *, int fd, uint64_t off, uint32_t len) MUST_CHECK;
/* Whether the head entry is a file segment. */
static inline int outq_head_is_file(const struct outq *q)
{
	return q->r != NULL && q->r->count > 0 && q->r->ent[q->r->head].b == NULL;
}
/* Fill up to max iovecs from the head, stopping at a file segment; returns how many. */
int outq_iov(const struct outq *, struct iovec *, int max);
/* Drop n written bytes from the head. */
void outq_consume(struct outq *, size_t n);
/* Drop everything and release the ring. */
void outq_clear(struct outq *);
/*
 * Release the ring's memory if the queue is empty and nothing was pushed
 * since the last call: an idle connection holds none, one that gets
 * messages every tick keeps its ring instead of reallocating it.
 */
void outq_trim(struct outq *);

#endif
