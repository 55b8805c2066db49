/*
 * config.h: roomd's settings. One option table drives parsing ("key value"
 * lines, file:line errors), defaults, the -T dump, reload rules and the docs check.
 */
#ifndef ROOMD_CONFIG_H
#define ROOMD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "log.h"
#include "proxy.h"
#include "redisurl.h"

#define CFG_MAX_LISTEN	16
#define CFG_MAX_ROUTES	16
#define CFG_MAX_TRUSTED	64
#define CFG_MAX_API_KEYS	16	/* api_key lines, and keys in api_key_file */
#define CFG_API_KEY_MIN	16	/* bytes: a shorter key is guessable */
#define CFG_API_KEY_MAX	256
#define CFG_ERR_LEN	512

/* What a route serves. */
enum route_kind {
	ROUTE_CHAT,		/* the JSON chat protocol */
	ROUTE_ECHO,		/* echo every message back (conformance, load tests) */
	ROUTE_BROADCAST,	/* relay every message to the whole room verbatim */
	ROUTE_OFF,		/* path disabled: 404 */
};

enum cfg_auth { CFG_AUTH_OFF, CFG_AUTH_OPTIONAL, CFG_AUTH_REQUIRED };
enum cfg_auth_failure { CFG_AUTHFAIL_EVENT, CFG_AUTHFAIL_HTTP };
enum cfg_slow_client { CFG_SLOW_CLOSE, CFG_SLOW_DROP };
enum cfg_log_format { CFG_LOG_TEXT, CFG_LOG_JSON };

/* Where Redis is: a unix socket path, or host and port. */
struct cfg_listen {
	char			spec[128];	/* as written, for logs */
	struct sockaddr_storage	addr;
	socklen_t		addrlen;
	int			proxy_protocol;	/* a PROXY header must come first */
	int			ssl;		/* TLS */
	int			api;		/* serves the HTTP API under /api/ (listen ... api, api_listen) */
	int			api_only;	/* an api_listen line: the API and the admin endpoints only */
};

struct cfg_route {
	char		path[128];
	enum route_kind	kind;
};

struct config {
	char		*path;		/* config file, absolute; NULL if none */

	struct cfg_listen listen[CFG_MAX_LISTEN];
	int		 nlisten;
	int		 workers;	/* 0 in the file means "one per online CPU" */
	char		*user;
	int		 daemonize;
	char		*pidfile;
	char		*log_file;
	int		 log_level;
	int		 log_format;		/* enum cfg_log_format */
	int		 shutdown_timeout;	/* ms */
	int		 max_connections;

	int		 handshake_timeout;	/* ms */
	int		 max_request_size;	/* bytes */
	int		 max_message_size;	/* bytes */
	int		 ping_interval;		/* ms */
	int		 ping_timeout;		/* ms */
	int		 close_timeout;		/* ms */
	struct cfg_route route[CFG_MAX_ROUTES];
	int		 nroute;
	int		 max_outbuf;		/* bytes queued for one client */
	int		 slow_client;		/* enum cfg_slow_client: over max_outbuf, close or drop old room messages */
	int		 broadcast_coalesce;	/* ms: longest pause between broadcast flushes */
	int		 drain_time;		/* ms to spread closes over on stop */
	char		*health_path;
	char		*ready_path;
	char		*metrics_path;		/* "off" disables */
	char		*www_root;		/* the web page's files */
	struct cidr	 trusted[CFG_MAX_TRUSTED];	/* proxies whose X-Forwarded-For counts */
	int		 ntrusted;

	int		 auth;			/* enum cfg_auth */
	char		*auth_secret;
	char		*auth_secret_file;
	uint8_t		*auth_key;		/* the secret in effect */
	size_t		 auth_keylen;
	char		*auth_cookie;
	int		 auth_failure;		/* enum cfg_auth_failure: noAuth + 4001, or 401 */
	char		*allowed_origins;	/* NULL: same origin as Host */
	int		 allow_missing_origin;
	int		 max_sessions_per_ip;
	int		 max_new_sessions_per_ip;	/* per second */
	int		 ipv6_prefix_length;	/* IPv6 clients count per prefix of this many bits */
	int		 rate_limit;		/* messages per second per session */
	int		 rate_burst;
	int		 rate_limit_bytes;	/* bytes per second a session may have published; 0: no limit */
	int		 rate_burst_bytes;
	int		 max_sessions_per_user;	/* sessions per token sub, over every host; 0: no limit */
	int		 worker_connections;	/* per worker; 0: no separate limit */
	char		*ssl_certificate;
	char		*ssl_certificate_key;

	int		 deflate;		/* permessage-deflate offered to clients */
	int		 deflate_level;
	int		 deflate_window_bits;
	int		 deflate_min_size;	/* smaller messages go uncompressed */

	char		*default_room;
	int		 max_rooms_per_connection;
	int		 max_name_length;
	int		 max_roomid_length;
	int		 who_limit;		/* names in one who answer */
	int		 heartbeat_interval;	/* ms; 0 = off */
	int		 heartbeat_misses;

	char		*redis;			/* NULL: a private redis-server */
	struct redisurl	 redis_addr;		/* parsed, or the private socket */
	int		 redis_tls;		/* TLS to every Redis node (rediss:// sets it) */
	char		*redis_tls_ca;		/* CA file; NULL: the system's */
	char		*redis_tls_cert;	/* client certificate and key, for Redis's tls-auth-clients */
	char		*redis_tls_key;
	char		*redis_sentinel_password;
	char		*redis_prefix;
	char		*redis_server;		/* binary for the private server */
	char		*run_dir;
	int		 presence_ttl;		/* ms */
	int		 ready_timeout;		/* ms a worker's canary may take through Redis and back */
	int		 history_size;		/* messages kept per room; 0: no history */
	int		 history_ttl;		/* ms a room's history outlives its last message */

	char		*api_key[CFG_MAX_API_KEYS];	/* api_key lines */
	int		 napi_key;
	char		*api_key_file;
	char		*api_file_key[CFG_MAX_API_KEYS];	/* the keys api_key_file held when read */
	int		 napi_file_key;
	int		 api_insecure;		/* an API with no key: the network is trusted */
	char		*api_name;		/* who an API message is from when it names nobody */
	int		 api_max_body;		/* bytes */
	int		 api_rate_limit;	/* API requests per second per client address; 0: no limit */
	int		 api_keepalive_timeout;	/* ms an API connection may idle between requests */
};

/* A config holding every default. NULL only when out of memory. */
struct config *cfg_new(void);
void cfg_free(struct config *);
/*
 * Read a config file into cfg. On error returns -1 with "file:line: what"
 * in err. The file's values override what cfg already holds.
 */
int cfg_load_file(struct config *, const char *path, char *err, size_t errlen) MUST_CHECK;
/*
 * The parser behind cfg_load_file, without I/O: len bytes of "key value"
 * lines; errors read "name:line: what". Does not record a path. (A listen
 * or redis host name is still resolved, and cfg_finish still reads the
 * files that keys name.)
 */
int cfg_load_text(struct config *, const char *name, const char *text, size_t len, char *err,
    size_t errlen) MUST_CHECK;
/* Apply one "key value" line from the command line (-o, -l, -w). */
int cfg_set(struct config *, const char *origin, int line, const char *key,
    const char *value, char *err, size_t errlen) MUST_CHECK;
/* Fill computed defaults (listen, routes, workers) and check cross-key rules. */
int cfg_finish(struct config *, char *err, size_t errlen) MUST_CHECK;
/* Write every key with its effective value, one "key value" line each. */
void cfg_dump(const struct config *, FILE *);
/*
 * For a reload: copy into next the values of keys that need a full restart
 * and log a warning for each that differs. Returns how many differed.
 */
int cfg_keep_restart_only(const struct config *cur, struct config *next);
/* Whether any listener serves the HTTP API. */
int cfg_api_enabled(const struct config *);
/* The API keys in effect (api_key lines, then api_key_file's): the i-th, NULL past the last. */
const char *cfg_api_key(const struct config *, int i);
/* Drop the listen lines (not api_listen's): the -l flag replaces them. */
void cfg_clear_listen(struct config *);
/* Which route serves path (query already stripped); NULL if none. */
const struct cfg_route *cfg_route_find(const struct config *, const char *path, size_t len);
/* Name of a route kind, for logs and the dump. */
const char *cfg_route_kind_name(enum route_kind);

/* Parse helpers shared with main.c and tests. */
int cfg_parse_duration(const char *, int *ms) MUST_CHECK;
int cfg_parse_size(const char *, long long *bytes) MUST_CHECK;

#endif
