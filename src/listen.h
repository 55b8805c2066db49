/*
 * listen.h: the listening sockets. For every listen address the master binds
 * one SO_REUSEPORT socket per worker slot, so the kernel spreads connections
 * evenly and a respawned worker takes over its slot's socket and backlog.
 */
#ifndef ROOMD_LISTEN_H
#define ROOMD_LISTEN_H

#include "config.h"

struct listeners {
	int	nslots;			/* worker slots */
	int	naddr;			/* listen addresses */
	int	*fd;			/* fd[slot * naddr + addr] */
};

/*
 * Bind every address for nslots slots; on failure logs why and returns -1.
 * inherited: "fd,fd,..." from a binary upgrade (ROOMD_LISTEN_FDS), or NULL:
 * sockets already bound to a configured address are adopted, not re-bound.
 */
int listen_open(struct listeners *, const struct config *, int nslots, const char *inherited) MUST_CHECK;
/* "fd,fd,..." of every socket, for a binary upgrade; clears close-on-exec. */
int listen_export(const struct listeners *, char *buf, size_t len) MUST_CHECK;
/* The fds of one slot, naddr of them. */
static inline const int *listen_slot(const struct listeners *l, int slot) { return l->fd + slot * l->naddr; }
/* In a worker: close every socket except its own slot's. */
void listen_keep_slot(struct listeners *, int slot);
/*
 * In the master, when no worker will accept on a slot again (stopping):
 * close its sockets, so the kernel stops queueing connections there that
 * nobody would answer.
 */
void listen_close_slot(struct listeners *, int slot);
void listen_close(struct listeners *);

#endif
