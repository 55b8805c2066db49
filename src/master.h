/*
 * master.h: the master process. It forks and supervises the workers (stable
 * slots, respawn with backoff), and turns signals into actions: TERM/INT stop
 * gracefully (twice: at once), HUP reloads, USR1 reopens logs.
 */
#ifndef ROOMD_MASTER_H
#define ROOMD_MASTER_H

#include "config.h"
#include "listen.h"

/* Build a fresh config the way startup did (file + command line); NULL with err on failure. */
typedef struct config *(*master_load_fn)(char *err, size_t errlen);

/* How to run this binary again for a binary upgrade (SIGUSR2). */
struct master_exec {
	const char	*path;		/* absolute path of the binary, or a name for execvp */
	char *const	*argv;
	const char	*pidfile;	/* NULL if none */
	pid_t		 upgrade_from;	/* the old master we replace, or 0 */
};

/*
 * Supervise workers until stopped; takes ownership of cfg and ls, removes
 * the pidfile at exit. Returns the exit status.
 */
int master_run(struct config *cfg, struct listeners *ls, master_load_fn load, const struct master_exec *);
#endif
