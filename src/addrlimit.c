/*
 * addrlimit.c: per-address counters. An address hashes to one of LIM_BUCKETS
 * buckets (two addresses sharing a bucket share a limit: rare, and it only
 * ever errs on the side of refusing). Each worker writes only its own row; a
 * check sums the bucket over every row. The master clears a dead worker's row.
 */
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "addrlimit.h"

#define LIM_BUCKETS	16384

struct lrow {
	uint32_t	open[LIM_BUCKETS];
	uint32_t	sec[LIM_BUCKETS];	/* the second rate[] counts */
	uint32_t	rate[LIM_BUCKETS];
};

static struct lrow *rows;
static int nrows;
static struct lrow *self;

#define LOAD(p)		__atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELAXED)

int
addrlimit_init(int slots)
{
	void *p = mmap(NULL, sizeof(struct lrow) * (size_t)slots, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	rows = p;
	nrows = slots;
	return 0;
}

void
addrlimit_slot_release(int slot)
{
	if (rows != NULL && slot >= 0 && slot < nrows)
		memset(&rows[slot], 0, sizeof(rows[slot]));
}

void
addrlimit_bind(int slot)
{
	if (rows != NULL && slot >= 0 && slot < nrows)
		self = &rows[slot];
}

static uint32_t
bucket(int family, const uint8_t *ip)
{
	uint32_t h = 2166136261u;
	int n = family == AF_INET6 ? 16 : 4;

	for (int i = 0; i < n; i++)
		h = (h ^ ip[i]) * 16777619u;
	return h % LIM_BUCKETS;
}

int
addrlimit_open(int family, const uint8_t *ip, int max_open, int max_rate)
{
	uint32_t b, open = 0, rate = 0, now;
	struct timespec ts;

	if (self == NULL)
		return 0;
	b = bucket(family, ip);
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	now = (uint32_t)ts.tv_sec;
	/*
	 * Count this session first, then look at the sum: two workers racing
	 * for the last place may both refuse, but never both get in. The
	 * sequentially consistent add and loads order our write before our reads.
	 */
	if (LOAD(&self->sec[b]) != now) {
		STORE(&self->rate[b], 0);
		__atomic_store_n(&self->sec[b], now, __ATOMIC_SEQ_CST);
	}
	__atomic_add_fetch(&self->open[b], 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&self->rate[b], 1, __ATOMIC_SEQ_CST);
	for (int r = 0; r < nrows; r++) {
		open += __atomic_load_n(&rows[r].open[b], __ATOMIC_SEQ_CST);
		if (__atomic_load_n(&rows[r].sec[b], __ATOMIC_SEQ_CST) == now)
			rate += __atomic_load_n(&rows[r].rate[b], __ATOMIC_SEQ_CST);
	}
	if ((max_open > 0 && open > (uint32_t)max_open) || (max_rate > 0 && rate > (uint32_t)max_rate)) {
		__atomic_sub_fetch(&self->open[b], 1, __ATOMIC_SEQ_CST);
		__atomic_sub_fetch(&self->rate[b], 1, __ATOMIC_SEQ_CST);
		return -1;
	}
	return 0;
}

void
addrlimit_close(int family, const uint8_t *ip)
{
	uint32_t b;

	if (self == NULL)
		return;
	b = bucket(family, ip);
	if (LOAD(&self->open[b]) > 0)
		STORE(&self->open[b], LOAD(&self->open[b]) - 1);
}
