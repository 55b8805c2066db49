/*
 * resp.h: what roomd writes to and reads from Redis, on buffers only:
 * commands in RESP, a key's Cluster hash slot, the redirections a Cluster
 * answers with, and its slot map (CLUSTER SHARDS or CLUSTER SLOTS).
 * Replies are parsed by hiredis's redisReader; these read its redisReply.
 */
#ifndef ROOMD_RESP_H
#define ROOMD_RESP_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#define RESP_SLOTS	16384
#define RESP_HOST_MAX	256

/* Bytes a command of argc arguments takes in RESP (at most; resp_format's bound). */
size_t resp_size(int argc, const size_t *argl);
/* Write the command into out (at least resp_size bytes); its exact length. */
size_t resp_format(char *out, int argc, const char *const *argv, const size_t *argl);

/* A key's hash slot: CRC16 of the key, or of its first non-empty {tag}. */
unsigned resp_slot(const char *key, size_t len);

/* Where a Cluster node sends us: "-MOVED slot host:port" or "-ASK slot host:port". */
struct resp_redirect {
	int		ask;		/* ASK: this command only; MOVED: the slot moved */
	unsigned	slot;
	char		host[RESP_HOST_MAX];
	int		port;
};
/* 0 and *out filled if err (an error reply's text) is a redirection, else -1. */
int resp_redirect(const char *err, size_t len, struct resp_redirect *out);

/* One slot range of a Cluster and the master that serves it. */
struct resp_range {
	unsigned	from, to;	/* inclusive */
	char		host[RESP_HOST_MAX];
	int		port;
};
/*
 * The slot map in a CLUSTER SHARDS reply (Redis 7: slot numbers as integers
 * or strings, each shard's online master, at its tls-port if tls) or a
 * CLUSTER SLOTS reply (shards 0): a malloc'd array of *n ranges; ranges
 * without a master to serve them now are left out. NULL if the reply has
 * another shape (or out of memory).
 */
struct resp_range *resp_cluster_map(const redisReply *, int shards, int tls, size_t *n);

#endif
