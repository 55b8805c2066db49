/*
 * procstat.h: what /proc says about the server under test: CPU time and
 * resident memory summed over process trees, the processes of those trees,
 * and the machine's CPU use (all CPUs, and one watched CPU).
 */
#ifndef ROOMD_BENCH_PROCSTAT_H
#define ROOMD_BENCH_PROCSTAT_H

#include <stdint.h>
#include <sys/types.h>

#define PS_MAX_ROOTS	16

struct ps_sample {
	uint64_t	cpu_ns;		/* utime + stime of the trees */
	uint64_t	rss;		/* resident bytes of the trees */
	int		nproc;		/* processes found */
	uint64_t	machine_busy_ns; /* all CPUs, from /proc/stat */
	uint64_t	machine_total_ns;
	uint64_t	self_cpu_ns;	/* this process, from getrusage */
	uint64_t	wall_ns;	/* CLOCK_MONOTONIC at the sample */
	int		core;		/* the watched CPU (ps_watch_core), or -1 */
	uint64_t	core_busy_ns;	/* its busy and total time */
	uint64_t	core_total_ns;
};

/* Parse "P1,P2,..." into pids; returns the count, or -1 on a bad list. */
int ps_parse_pids(const char *s, pid_t *pids, int max) __attribute__((warn_unused_result));
/* Sample the trees under roots (npids may be 0) and the machine. Returns 0 or -1. */
int ps_sample(const pid_t *roots, int nroots, struct ps_sample *) __attribute__((warn_unused_result));
/* The pids of the trees under roots into *pids (malloc'd); the count, or -1. */
int ps_tree(const pid_t *roots, int nroots, pid_t **pids) __attribute__((warn_unused_result));
/* From now on every sample also reads the busy time of this CPU. */
void ps_watch_core(int cpu);

#endif
