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

/* Supervise workers until stopped; takes ownership of cfg and ls. Returns the exit status. */
int master_run(struct config *cfg, struct listeners *ls, master_load_fn load);
/* In a child: become cfg->user if running as root. 0 or -1 (logged). */
int master_drop_privileges(const struct config *cfg) MUST_CHECK;

#endif
