/*
 * sentinel.h: asking Redis Sentinel where the master is: on demand, every
 * two seconds besides, and at once when a sentinel announces +switch-master.
 */
#ifndef ROOMD_SENTINEL_H
#define ROOMD_SENTINEL_H

#include <event2/event.h>
#include <openssl/ssl.h>

#include "config.h"

struct sentinel_cbs {
	/* The answer to sentinel_resolve: where the master is, or why nobody said. */
	void	(*found)(const char *host, int port);
	void	(*failed)(const char *why);
	/* Unasked: the master is now at host:port (a failover). */
	void	(*moved)(const char *host, int port);
};

/* Watch cfg's sentinels for its master (tls: their TLS context, or NULL). -1 on setup failure. */
int sentinel_start(struct event_base *, const struct config *, const char *wid, SSL_CTX *tls,
    const struct sentinel_cbs *) MUST_CHECK;
/* Ask for the master's address now: found or failed answers. */
void sentinel_resolve(void);
void sentinel_stop(void);

#endif
