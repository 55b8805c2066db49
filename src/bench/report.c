/*
 * report.c: a small append-only JSON object writer and the report lines that
 * every mode prints the same way (latency percentiles, CPU use).
 */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "report.h"

/* Append formatted text; on failure remember it and drop the text. */
static void __attribute__((format(printf, 2, 3)))
jo_printf(struct jout *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->oom)
		return;
	for (;;) {
		size_t room = j->cap - j->len;

		va_start(ap, fmt);
		n = vsnprintf(j->buf ? j->buf + j->len : NULL, j->buf ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			j->oom = 1;
			return;
		}
		if (j->buf != NULL && (size_t)n < room) {
			j->len += (size_t)n;
			return;
		}
		size_t cap = j->cap ? j->cap * 2 : 1024;
		while (cap < j->len + (size_t)n + 1)
			cap *= 2;
		char *nb = realloc(j->buf, cap);
		if (nb == NULL) {
			j->oom = 1;
			return;
		}
		j->buf = nb;
		j->cap = cap;
	}
}

/* The separator and the quoted key of the next field. */
static void
jo_key(struct jout *j, const char *key)
{
	jo_printf(j, "%s\"%s\":", j->fields++ ? "," : "", key);
}

void
jo_begin(struct jout *j)
{
	memset(j, 0, sizeof(*j));
	jo_printf(j, "{");
}

void
jo_int(struct jout *j, const char *key, long long v)
{
	jo_key(j, key);
	jo_printf(j, "%lld", v);
}

void
jo_num(struct jout *j, const char *key, double v)
{
	jo_key(j, key);
	if (!isfinite(v))
		jo_printf(j, "null");
	else if (fabs(v) >= 1000.0)
		jo_printf(j, "%.1f", v);
	else
		jo_printf(j, "%.4g", v);
}

void
jo_str(struct jout *j, const char *key, const char *s)
{
	jo_key(j, key);
	jo_printf(j, "\"");
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			jo_printf(j, "\\%c", c);
		else if (c < 0x20)
			jo_printf(j, "\\u%04x", c);
		else
			jo_printf(j, "%c", c);
	}
	jo_printf(j, "\"");
}

void
jo_hist(struct jout *j, const char *key, const struct hist *h)
{
	jo_key(j, key);
	jo_printf(j, "{\"n\":%llu,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
	    "\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f}",
	    (unsigned long long)h->n,
	    (double)hist_quantile(h, 0.50) / 1e3, (double)hist_quantile(h, 0.90) / 1e3,
	    (double)hist_quantile(h, 0.99) / 1e3, (double)hist_quantile(h, 0.999) / 1e3,
	    (double)h->max / 1e3, hist_mean(h) / 1e3);
}

const char *
jo_end(struct jout *j)
{
	jo_printf(j, "}");
	return j->oom ? NULL : j->buf;
}

void
jo_free(struct jout *j)
{
	free(j->buf);
	j->buf = NULL;
}

void
rep_hist(FILE *f, const char *label, const struct hist *h)
{
	if (h->n == 0) {
		fprintf(f, "  %-12s (none)\n", label);
		return;
	}
	fprintf(f, "  %-12s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f ms\n",
	    label, (double)hist_quantile(h, 0.50) / 1e6, (double)hist_quantile(h, 0.90) / 1e6,
	    (double)hist_quantile(h, 0.99) / 1e6, (double)hist_quantile(h, 0.999) / 1e6,
	    (double)h->max / 1e6, hist_mean(h) / 1e6);
}

void
rep_cpu(FILE *f, struct jout *j, const char *what, const struct ps_sample *a,
    const struct ps_sample *b, int npids)
{
	double wall, server, self, machine = -1, other = -1;

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	wall = (double)(b->wall_ns - a->wall_ns);
	if (wall <= 0 || ncpu <= 0)
		return;
	server = npids ? 100.0 * (double)(b->cpu_ns - a->cpu_ns) / wall : -1;
	self = 100.0 * (double)(b->self_cpu_ns - a->self_cpu_ns) / wall;
	machine = 100.0 * (double)(b->machine_busy_ns - a->machine_busy_ns) / wall;
	other = machine - self - (npids ? server : 0);
	if (other < 0)
		other = 0;
	fprintf(f, "  cpu          (%s, %% of one core) ", what);
	if (npids)
		fprintf(f, "server %.0f%%  ", server);
	fprintf(f, "roomd-bench %.0f%%  machine %.0f%% (of %ld00%%)  other %.0f%%\n",
	    self, machine, ncpu, other);
	if (b->core >= 0 && b->core == a->core && a->core_total_ns > 0 &&
	    b->core_total_ns > a->core_total_ns) {
		double core = 100.0 * (double)(b->core_busy_ns - a->core_busy_ns) /
		    (double)(b->core_total_ns - a->core_total_ns);

		fprintf(f, "  cpu          server's CPU %d was busy %.0f%% of the time\n", b->core, core);
		jo_num(j, "cpu_server_core_pct", core);
	}
	if (npids)
		jo_num(j, "cpu_server_pct", server);
	jo_num(j, "cpu_bench_pct", self);
	jo_num(j, "cpu_machine_pct", machine);
	jo_num(j, "cpu_other_pct", other);
}
