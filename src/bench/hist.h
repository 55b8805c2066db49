/*
 * hist.h: a latency histogram in nanoseconds: exact below 64 ns, then 64
 * linear buckets per power of two (under 1.6 % error), exact max and mean.
 */
#ifndef ROOMD_BENCH_HIST_H
#define ROOMD_BENCH_HIST_H

#include <stdint.h>

#define HIST_SUB_BITS	6
#define HIST_SUB	(1u << HIST_SUB_BITS)
#define HIST_BUCKETS	((64 - HIST_SUB_BITS + 1) * HIST_SUB)

struct hist {
	uint64_t	n;
	uint64_t	sum;
	uint64_t	max;
	uint64_t	b[HIST_BUCKETS];
};

/* Record one value (ns). */
void hist_add(struct hist *, uint64_t ns);
/* Add every count of src into dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value (ns) at fraction q (0..1] of the recorded values; 0 when empty. */
uint64_t hist_quantile(const struct hist *, double q);
/* Mean in ns; 0 when empty. */
double hist_mean(const struct hist *);

#endif
