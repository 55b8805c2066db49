/*
 * procstat.c: /proc sampling. A tree is a root pid and every process whose
 * parent chain leads to it, found by one scan of /proc per sample, so that
 * a roomd master counts its workers and its private redis-server. The same
 * trees tell pin.c which processes to pin.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "procstat.h"

int
ps_parse_pids(const char *s, pid_t *pids, int max)
{
	int n = 0;
	char *end;
	long v;

	while (*s != '\0') {
		errno = 0;
		v = strtol(s, &end, 10);
		if (end == s || errno != 0 || v <= 0 || v > 0x3fffffff || n == max)
			return -1;
		pids[n++] = (pid_t)v;
		s = end;
		if (*s == ',')
			s++;
		else if (*s != '\0')
			return -1;
	}
	return n;
}

static int watched_core = -1;		/* ps_watch_core */

struct ps_proc {
	pid_t		pid, ppid;
	uint64_t	ticks;
	uint64_t	rss_pages;
};

/* Read pid, ppid, utime+stime and rss from /proc/<pid>/stat. Returns 0 or -1. */
static int
read_stat(pid_t pid, struct ps_proc *p)
{
	char path[64], buf[1024], *s;
	FILE *f;
	size_t n;
	unsigned long long ut = 0, st = 0;
	long long rss = 0;
	int ppid = 0;

	(void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	(void)fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip to the last ')'. */
	if ((s = strrchr(buf, ')')) == NULL)
		return -1;
	/* Fields from 3 on: state ppid pgrp session tty tpgid flags minflt cminflt
	 * majflt cmajflt utime stime cutime cstime priority nice threads
	 * itrealvalue starttime vsize rss */
	if (sscanf(s + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
	    "%*d %*d %*d %*d %*d %*d %*u %*u %lld", &ppid, &ut, &st, &rss) != 4)
		return -1;
	p->pid = pid;
	p->ppid = ppid;
	p->ticks = ut + st;
	p->rss_pages = rss > 0 ? (uint64_t)rss : 0;
	return 0;
}

/* Busy and total time from /proc/stat: of all CPUs (cpu -1), or of one. */
static int
read_machine(int cpu, uint64_t *busy, uint64_t *total)
{
	unsigned long long v[8] = { 0 };
	char line[512], want[32];
	FILE *f;
	int n = 0;
	size_t wl;

	if (cpu < 0)
		(void)snprintf(want, sizeof(want), "cpu ");
	else
		(void)snprintf(want, sizeof(want), "cpu%d ", cpu);
	wl = strlen(want);
	if ((f = fopen("/proc/stat", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, want, wl) == 0) {
			n = sscanf(line + wl, "%llu %llu %llu %llu %llu %llu %llu %llu",
			    &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
			break;
		}
	(void)fclose(f);
	if (n < 5)
		return -1;
	*total = 0;
	for (int i = 0; i < 8; i++)
		*total += v[i];
	*busy = *total - v[3] - v[4];	/* minus idle and iowait */
	return 0;
}

/* Every process of /proc (pid, ppid, CPU, RSS) into *out; the count, or -1. */
static long
ps_scan(struct ps_proc **out)
{
	struct ps_proc *procs = NULL, *np;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *dir;

	if ((dir = opendir("/proc")) == NULL)
		return -1;
	while ((de = readdir(dir)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			if ((np = realloc(procs, cap * sizeof(*procs))) == NULL) {
				free(procs);
				(void)closedir(dir);
				return -1;
			}
			procs = np;
		}
		if (read_stat((pid_t)atoi(de->d_name), &procs[n]) == 0)
			n++;
	}
	(void)closedir(dir);
	*out = procs;
	return (long)n;
}

/* Flags of the processes in the trees under roots: the roots, then their descendants. */
static uint8_t *
ps_mark(const struct ps_proc *procs, size_t n, const pid_t *roots, int nroots)
{
	uint8_t *in = calloc(n ? n : 1, 1);

	if (in == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		for (int r = 0; r < nroots; r++)
			if (procs[i].pid == roots[r])
				in[i] = 1;
	for (int changed = 1; changed;) {
		changed = 0;
		for (size_t i = 0; i < n; i++) {
			if (in[i])
				continue;
			for (size_t j = 0; j < n; j++)
				if (in[j] && procs[j].pid == procs[i].ppid) {
					in[i] = 1;
					changed = 1;
					break;
				}
		}
	}
	return in;
}

int
ps_tree(const pid_t *roots, int nroots, pid_t **pids)
{
	struct ps_proc *procs = NULL;
	long n = ps_scan(&procs);
	uint8_t *in;
	int found = 0;

	*pids = NULL;
	if (n < 0)
		return -1;
	if ((in = ps_mark(procs, (size_t)n, roots, nroots)) == NULL ||
	    (*pids = calloc((size_t)n + 1, sizeof(**pids))) == NULL) {
		free(in);
		free(procs);
		return -1;
	}
	for (long i = 0; i < n; i++)
		if (in[i])
			(*pids)[found++] = procs[i].pid;
	free(in);
	free(procs);
	return found;
}

void
ps_watch_core(int cpu)
{
	watched_core = cpu;
}

int
ps_sample(const pid_t *roots, int nroots, struct ps_sample *out)
{
	struct ps_proc *procs = NULL;
	struct rusage ru;
	uint64_t busy, total;
	long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE), n;
	uint8_t *in;
	struct timespec ts;

	memset(out, 0, sizeof(*out));
	out->core = -1;
	if (hz <= 0 || page <= 0 || clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return -1;
	out->wall_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (read_machine(-1, &busy, &total) == 0) {
		out->machine_busy_ns = busy * (1000000000ull / (uint64_t)hz);
		out->machine_total_ns = total * (1000000000ull / (uint64_t)hz);
	}
	if (watched_core >= 0 && read_machine(watched_core, &busy, &total) == 0) {
		out->core = watched_core;
		out->core_busy_ns = busy * (1000000000ull / (uint64_t)hz);
		out->core_total_ns = total * (1000000000ull / (uint64_t)hz);
	}
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		out->self_cpu_ns = ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
		    1000000000ull + ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
	if (nroots == 0)
		return 0;
	if ((n = ps_scan(&procs)) < 0)
		return -1;
	if ((in = ps_mark(procs, (size_t)n, roots, nroots)) == NULL) {
		free(procs);
		return -1;
	}
	for (long i = 0; i < n; i++)
		if (in[i]) {
			out->cpu_ns += procs[i].ticks * (1000000000ull / (uint64_t)hz);
			out->rss += procs[i].rss_pages * (uint64_t)page;
			out->nproc++;
		}
	free(in);
	free(procs);
	return 0;
}
