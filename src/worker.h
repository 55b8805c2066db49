/*
 * worker.h: a worker process: one libevent loop that accepts on its slot's
 * listening sockets and runs every session it accepted. Signals: TERM drains,
 * QUIT stops at once, USR1 reopens the log, USR2 hands over to a successor.
 */
#ifndef ROOMD_WORKER_H
#define ROOMD_WORKER_H

#include "config.h"

/*
 * Run worker `index` on fds[nfds] until it stops; returns the exit status.
 * instance names this roomd in Redis; the worker is "<instance>.<pid>" there.
 * dead_wid (or NULL) is the worker that died in this slot: its members are
 * removed from their rooms once Redis is reached.
 */
int worker_run(const struct config *, int index, int generation, const char *instance,
    const char *dead_wid, const int *fds, int nfds);

#endif
