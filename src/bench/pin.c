/*
 * pin.c: the pinned split. The server's trees come from procstat.c (one scan
 * of /proc); each process's threads are the entries of /proc/<pid>/task, and
 * each gets sched_setaffinity(2) on its own, since a process's affinity is
 * per thread. A thread or process that ended meanwhile is skipped; any other
 * failure (EPERM for another user's server) ends the run before it starts.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pin.h"
#include "procstat.h"

/* Pin the threads of pid to set; the count pinned, or -1 with err set. */
static int
pin_process(pid_t pid, const cpu_set_t *set, char *err, size_t errlen)
{
	char path[64];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	(void)snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return 0;		/* gone since the scan */
	while ((de = readdir(dir)) != NULL) {
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid <= 0)
			continue;
		if (sched_setaffinity(tid, sizeof(*set), set) < 0) {
			if (errno == ESRCH)
				continue;
			(void)snprintf(err, errlen, "sched_setaffinity(%d, thread of %d) failed (%d: %s)",
			    (int)tid, (int)pid, errno, strerror(errno));
			(void)closedir(dir);
			return -1;
		}
		n++;
	}
	(void)closedir(dir);
	return n;
}

int
pin_split(int cpu, const pid_t *roots, int nroots, struct pin_result *r, char *err, size_t errlen)
{
	cpu_set_t server, self;
	pid_t *pids = NULL;
	int n, k;

	memset(r, 0, sizeof(*r));
	if (sched_getaffinity(0, sizeof(self), &self) < 0) {
		(void)snprintf(err, errlen, "sched_getaffinity() failed (%d: %s)", errno, strerror(errno));
		return -1;
	}
	if (!CPU_ISSET(cpu, &self)) {
		(void)snprintf(err, errlen, "CPU %d is not one roomd-bench may use", cpu);
		return -1;
	}
	CPU_CLR(cpu, &self);
	if ((r->bench_cpus = CPU_COUNT(&self)) == 0) {
		(void)snprintf(err, errlen, "no CPU left for roomd-bench besides CPU %d", cpu);
		return -1;
	}
	if ((n = ps_tree(roots, nroots, &pids)) <= 0) {
		(void)snprintf(err, errlen, "%s", n == 0 ? "no server process found" :
		    "reading /proc failed");
		free(pids);
		return -1;
	}
	CPU_ZERO(&server);
	CPU_SET(cpu, &server);
	for (int i = 0; i < n; i++) {
		if ((k = pin_process(pids[i], &server, err, errlen)) < 0) {
			free(pids);
			return -1;
		}
		r->procs += k > 0;
		r->threads += k;
	}
	free(pids);
	if (sched_setaffinity(0, sizeof(self), &self) < 0) {
		(void)snprintf(err, errlen, "sched_setaffinity(roomd-bench) failed (%d: %s)", errno,
		    strerror(errno));
		return -1;
	}
	return 0;
}
