/*
 * redisurl.h: the `redis` setting, parsed (no I/O): one Redis (redis://,
 * rediss:// with TLS, or a socket path), the sentinels that name a master
 * (sentinel://), or the seed nodes of a Redis Cluster (cluster://).
 */
#ifndef ROOMD_REDISURL_H
#define ROOMD_REDISURL_H

#include <stddef.h>

#define REDISURL_NODES	16	/* sentinels or cluster seeds, at most */

enum redisurl_mode { REDISURL_ONE, REDISURL_SENTINEL, REDISURL_CLUSTER };

struct redisurl_node {
	char	host[256];
	int	port;
};

struct redisurl {
	enum redisurl_mode	mode;
	int			is_unix;	/* ONE at path */
	char			path[108];
	struct redisurl_node	node[REDISURL_NODES];	/* ONE: node[0]; the sentinels; the seeds */
	int			nnodes;
	char			master[128];	/* SENTINEL: the master's name */
	char			user[128];	/* ACL user of the data nodes; "" for AUTH password only */
	char			password[256];
	int			db;
	int			tls;		/* rediss:// (the redis_tls setting may also set it) */
};

/*
 * Parse one of
 *   /path/to/redis.sock
 *   redis://[[user:]password@]host[:port][/db]       (rediss:// for TLS)
 *   sentinel://[[user:]password@]host[:port],host[:port].../master[/db]
 *   cluster://[[user:]password@]host[:port],host[:port]...
 * user and password may be percent-encoded. 0, or -1 with why filled.
 */
int redisurl_parse(const char *, struct redisurl *, char *why, size_t whylen);
/* For logs, never with the password: "redis 127.0.0.1:6379 db 0", "cluster via a:1,b:2 (tls)". */
void redisurl_describe(const struct redisurl *, char *buf, size_t len);

#endif
