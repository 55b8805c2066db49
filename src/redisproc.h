/*
 * redisproc.h: the private redis-server the master runs when the config
 * names no `redis`: unix socket in a fresh directory under run_dir, no
 * persistence, supervised (restarted if it dies) and stopped on shutdown.
 */
#ifndef ROOMD_REDISPROC_H
#define ROOMD_REDISPROC_H

#include <sys/types.h>

#include "config.h"

/* Start it and wait until it answers; points cfg->redis_addr at it. -1 (logged) on failure. */
int redisproc_start(struct config *) MUST_CHECK;
/* The master reaped pid: if it was ours, restart it; returns 1 if it was. */
int redisproc_reaped(pid_t, int status);
/* Stop it (SIGTERM, then SIGKILL after 2 s) and remove its directory. */
void redisproc_stop(void);
/* Point a reloaded config at the running private server. */
void redisproc_apply(struct config *);

#endif
