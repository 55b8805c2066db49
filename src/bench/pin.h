/*
 * pin.h: the pinned split: every thread of the server's process trees on one
 * CPU, roomd-bench on the others, so that the generator never takes the
 * server's core and a closed loop shows what one core of the server does.
 */
#ifndef ROOMD_BENCH_PIN_H
#define ROOMD_BENCH_PIN_H

#include <stddef.h>
#include <sys/types.h>

struct pin_result {
	int	procs;		/* processes of the trees pinned */
	int	threads;	/* their threads */
	int	bench_cpus;	/* CPUs left to roomd-bench */
};

/*
 * Pin every thread of every process in the trees under roots to cpu (what
 * `taskset -a -p -c cpu` does for each pid), then the calling thread to the
 * CPUs it may use other than cpu; threads it starts later inherit that.
 * Returns 0, or -1 with the reason in err.
 */
int pin_split(int cpu, const pid_t *roots, int nroots, struct pin_result *r, char *err,
    size_t errlen) __attribute__((warn_unused_result));

#endif
