/*
 * addrlimit.h: limits per client address, over all workers: open WebSocket
 * sessions, new sessions per second and HTTP API requests per second.
 * Counts live in shared memory the master maps before forking, one row per
 * worker slot. IPv6 clients count by network prefix.
 */
#ifndef ROOMD_ADDRLIMIT_H
#define ROOMD_ADDRLIMIT_H

#include <stdint.h>

#include "log.h"

/*
 * Master, before forking: rows for `slots` workers, the hash key, and how
 * many leading bits of an IPv6 address name a client. -1 on failure.
 */
int addrlimit_init(int slots, int ipv6_prefix) MUST_CHECK;
/* Master: a worker is gone; its sessions no longer count. */
void addrlimit_slot_release(int slot);
/* Worker: count into this row from now on. */
void addrlimit_bind(int slot);
/*
 * A new session from ip (family AF_INET/AF_INET6): 0 if it may open (and is
 * counted), or -1 if max_open (0 = no limit) sessions from that address are
 * open already or max_rate (0 = no limit) opened within this second.
 */
int addrlimit_open(int family, const uint8_t *ip, int max_open, int max_rate);
/* The session counted by addrlimit_open closed. */
void addrlimit_close(int family, const uint8_t *ip);
/*
 * An HTTP API request from ip: 0 if it may be served (and is counted), -1
 * if max_rate (0 = no limit) were served from that address within this
 * second, over every worker.
 */
int addrlimit_rate(int family, const uint8_t *ip, int max_rate);

#endif
