/*
 * report.h: output of a run: the one-line JSON summary (built field by
 * field) and the shared lines of the human-readable report.
 */
#ifndef ROOMD_BENCH_REPORT_H
#define ROOMD_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>

#include "hist.h"
#include "procstat.h"

struct jout {
	char		*buf;
	size_t		 len, cap;
	int		 fields;	/* fields written at the current level */
	int		 oom;
};

void jo_begin(struct jout *);
void jo_int(struct jout *, const char *key, long long v);
void jo_num(struct jout *, const char *key, double v);
void jo_str(struct jout *, const char *key, const char *s);
/* An object {"n","p50_us","p90_us","p99_us","p999_us","max_us","mean_us"}. */
void jo_hist(struct jout *, const char *key, const struct hist *);
/* Close the object; returns the text or NULL when memory ran out. */
const char *jo_end(struct jout *);
void jo_free(struct jout *);

/* "label  p50 a  p90 b  p99 c  p99.9 d  max e  mean f ms" */
void rep_hist(FILE *, const char *label, const struct hist *);
/*
 * The CPU line over an interval, as % of one core: server (the --pid trees),
 * this tool, the machine and everything else, and how busy the watched CPU
 * was (--pin); also adds the cpu_* fields.
 */
void rep_cpu(FILE *, struct jout *, const char *what, const struct ps_sample *a,
    const struct ps_sample *b, int npids);

#endif
