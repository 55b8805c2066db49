/*
 * config.c: the option table and the parser for roomd.conf.
 *
 * The file is "key value" per line with '#' comments, like redis.conf. Values
 * may be double-quoted. Every error names the file and line. Reload is
 * transactional: the caller parses into a fresh struct config and swaps only
 * on success.
 */
#include "config.h"
#include "proto.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>

#ifndef DATADIR
#define DATADIR "/usr/local/share"
#endif
#ifndef SRCDIR
#define SRCDIR "."
#endif

enum opt_type {
	OPT_INT,	/* integer in [min, max] */
	OPT_BOOL,	/* on/off, yes/no, true/false, 1/0 */
	OPT_DURATION,	/* ms; "10", "10s", "500ms", "2m", "1h" (bare = seconds) */
	OPT_SIZE,	/* bytes; "8192", "8k", "1m", "1g" (also kb/KiB forms) */
	OPT_STRING,	/* free text */
	OPT_PATH,	/* file path, made absolute against the start directory */
	OPT_LEVEL,	/* log level name */
	OPT_LISTEN,	/* repeated: address[:port] */
	OPT_API_LISTEN,	/* repeated: address[:port], for the API only */
	OPT_KEYS,	/* repeated: secrets, never printed */
	OPT_ROUTE,	/* repeated: path kind */
	OPT_CIDRS,	/* repeated: address blocks */
	OPT_ENUM,	/* one of the names in `names`, stored as its index */
};

#define OPT_RESTART	0x1	/* a change needs a full restart, not SIGHUP */
#define OPT_SECRET	0x2	/* its value (or a part) is a password: never logged */

struct option {
	const char	*name;
	enum opt_type	 type;
	size_t		 off;
	long long	 min, max;
	const char	*def;		/* NULL: unset / computed */
	int		 flags;
	const char *const *names;	/* OPT_ENUM: the values, NULL-terminated */
};

static const char *const auth_names[] = { "off", "optional", "required", NULL };
static const char *const auth_failure_names[] = { "event", "http", NULL };
static const char *const slow_client_names[] = { "close", "drop", NULL };
static const char *const log_format_names[] = { "text", "json", NULL };

#define O(f) offsetof(struct config, f)
static const struct option options[] = {
	{ "listen", OPT_LISTEN, 0, 0, 0, NULL, OPT_RESTART, NULL },
	{ "workers", OPT_INT, O(workers), 0, 256, "0", OPT_RESTART, NULL },
	{ "user", OPT_STRING, O(user), 0, 0, NULL, OPT_RESTART, NULL },
	{ "daemonize", OPT_BOOL, O(daemonize), 0, 1, "no", OPT_RESTART, NULL },
	{ "pidfile", OPT_PATH, O(pidfile), 0, 0, NULL, OPT_RESTART, NULL },
	{ "log_file", OPT_PATH, O(log_file), 0, 0, "stderr", 0, NULL },
	{ "log_level", OPT_LEVEL, O(log_level), 0, 0, "info", 0, NULL },
	{ "log_format", OPT_ENUM, O(log_format), 0, 0, "text", 0, log_format_names },
	{ "shutdown_timeout", OPT_DURATION, O(shutdown_timeout), 0, 3600000, "10s", 0, NULL },
	{ "max_connections", OPT_INT, O(max_connections), 1, 10000000, "100000", 0, NULL },
	{ "handshake_timeout", OPT_DURATION, O(handshake_timeout), 100, 3600000, "10s", 0, NULL },
	{ "max_request_size", OPT_SIZE, O(max_request_size), 1024, 1048576, "8k", 0, NULL },
	{ "max_message_size", OPT_SIZE, O(max_message_size), 125, 1073741824, "1m", 0, NULL },
	{ "ping_interval", OPT_DURATION, O(ping_interval), 100, 86400000, "30s", 0, NULL },
	{ "ping_timeout", OPT_DURATION, O(ping_timeout), 100, 86400000, "60s", 0, NULL },
	{ "close_timeout", OPT_DURATION, O(close_timeout), 100, 3600000, "5s", 0, NULL },
	{ "route", OPT_ROUTE, 0, 0, 0, NULL, 0, NULL },
	{ "drain_time", OPT_DURATION, O(drain_time), 0, 3600000, "0s", 0, NULL },
	{ "health_path", OPT_STRING, O(health_path), 0, 0, "/healthz", 0, NULL },
	{ "ready_path", OPT_STRING, O(ready_path), 0, 0, "/readyz", 0, NULL },
	{ "metrics_path", OPT_STRING, O(metrics_path), 0, 0, "/metrics", 0, NULL },
	{ "trusted_proxies", OPT_CIDRS, 0, 0, 0, NULL, 0, NULL },
	{ "auth", OPT_ENUM, O(auth), 0, 0, "off", 0, auth_names },
	{ "auth_secret", OPT_STRING, O(auth_secret), 0, 0, NULL, 0, NULL },
	{ "auth_secret_file", OPT_PATH, O(auth_secret_file), 0, 0, NULL, 0, NULL },
	{ "auth_cookie", OPT_STRING, O(auth_cookie), 0, 0, "token", 0, NULL },
	{ "auth_failure", OPT_ENUM, O(auth_failure), 0, 0, "event", 0, auth_failure_names },
	{ "allowed_origins", OPT_STRING, O(allowed_origins), 0, 0, NULL, 0, NULL },
	{ "allow_missing_origin", OPT_BOOL, O(allow_missing_origin), 0, 1, "yes", 0, NULL },
	{ "max_sessions_per_ip", OPT_INT, O(max_sessions_per_ip), 0, 10000000, "0", 0, NULL },
	{ "max_new_sessions_per_ip", OPT_INT, O(max_new_sessions_per_ip), 0, 10000000, "0", 0, NULL },
	{ "ipv6_prefix_length", OPT_INT, O(ipv6_prefix_length), 32, 128, "64", OPT_RESTART, NULL },
	{ "rate_limit", OPT_INT, O(rate_limit), 0, 1000000, "100", 0, NULL },
	{ "rate_burst", OPT_INT, O(rate_burst), 1, 1000000, "200", 0, NULL },
	{ "rate_limit_bytes", OPT_SIZE, O(rate_limit_bytes), 0, 1073741824, "1m", 0, NULL },
	{ "rate_burst_bytes", OPT_SIZE, O(rate_burst_bytes), 1024, 1073741824, "4m", 0, NULL },
	{ "max_sessions_per_user", OPT_INT, O(max_sessions_per_user), 0, 10000000, "0", 0, NULL },
	{ "worker_connections", OPT_INT, O(worker_connections), 0, 10000000, "0", 0, NULL },
	{ "ssl_certificate", OPT_PATH, O(ssl_certificate), 0, 0, NULL, 0, NULL },
	{ "ssl_certificate_key", OPT_PATH, O(ssl_certificate_key), 0, 0, NULL, 0, NULL },
	{ "deflate", OPT_BOOL, O(deflate), 0, 1, "on", 0, NULL },
	{ "deflate_level", OPT_INT, O(deflate_level), 1, 9, "3", 0, NULL },
	{ "deflate_window_bits", OPT_INT, O(deflate_window_bits), 9, 15, "15", 0, NULL },
	{ "deflate_min_size", OPT_SIZE, O(deflate_min_size), 0, 1048576, "64", 0, NULL },
	{ "www_root", OPT_PATH, O(www_root), 0, 0, NULL, 0, NULL },
	{ "max_outbuf", OPT_SIZE, O(max_outbuf), 65536, 1073741824, "16m", 0, NULL },
	{ "slow_client", OPT_ENUM, O(slow_client), 0, 0, "close", 0, slow_client_names },
	{ "broadcast_coalesce", OPT_DURATION, O(broadcast_coalesce), 0, 1000, "1ms", 0, NULL },
	{ "default_room", OPT_STRING, O(default_room), 0, 0, "lobby", 0, NULL },
	{ "max_rooms_per_connection", OPT_INT, O(max_rooms_per_connection), 1, 1024, "16", 0, NULL },
	{ "max_name_length", OPT_INT, O(max_name_length), 1, 1024, "64", 0, NULL },
	{ "max_roomid_length", OPT_INT, O(max_roomid_length), 1, 1024, "128", 0, NULL },
	{ "who_limit", OPT_INT, O(who_limit), 1, 1000000, "1000", 0, NULL },
	{ "heartbeat_interval", OPT_DURATION, O(heartbeat_interval), 0, 3600000, "30s", 0, NULL },
	{ "heartbeat_misses", OPT_INT, O(heartbeat_misses), 1, 100, "2", 0, NULL },
	{ "redis", OPT_STRING, O(redis), 0, 0, NULL, OPT_RESTART | OPT_SECRET, NULL },
	{ "redis_tls", OPT_BOOL, O(redis_tls), 0, 1, "no", OPT_RESTART, NULL },
	{ "redis_tls_ca", OPT_PATH, O(redis_tls_ca), 0, 0, NULL, OPT_RESTART, NULL },
	{ "redis_tls_cert", OPT_PATH, O(redis_tls_cert), 0, 0, NULL, OPT_RESTART, NULL },
	{ "redis_tls_key", OPT_PATH, O(redis_tls_key), 0, 0, NULL, OPT_RESTART, NULL },
	{ "redis_sentinel_password", OPT_STRING, O(redis_sentinel_password), 0, 0, NULL, OPT_RESTART | OPT_SECRET, NULL },
	{ "redis_prefix", OPT_STRING, O(redis_prefix), 0, 0, "roomd:", OPT_RESTART, NULL },
	{ "redis_server", OPT_PATH, O(redis_server), 0, 0, REDIS_SERVER_PATH, OPT_RESTART, NULL },
	{ "run_dir", OPT_PATH, O(run_dir), 0, 0, "/tmp", OPT_RESTART, NULL },
	{ "presence_ttl", OPT_DURATION, O(presence_ttl), 1000, 3600000, "15s", 0, NULL },
	{ "history_size", OPT_INT, O(history_size), 0, 100000, "100", 0, NULL },
	{ "history_ttl", OPT_DURATION, O(history_ttl), 1000, 604800000, "1h", 0, NULL },
	{ "ready_timeout", OPT_DURATION, O(ready_timeout), 100, 60000, "1s", 0, NULL },
	{ "api_listen", OPT_API_LISTEN, 0, 0, 0, NULL, OPT_RESTART, NULL },
	{ "api_key", OPT_KEYS, 0, 0, 0, NULL, 0, NULL },
	{ "api_key_file", OPT_PATH, O(api_key_file), 0, 0, NULL, 0, NULL },
	{ "api_insecure", OPT_BOOL, O(api_insecure), 0, 1, "no", 0, NULL },
	{ "api_name", OPT_STRING, O(api_name), 0, 0, "system", 0, NULL },
	{ "api_max_body", OPT_SIZE, O(api_max_body), 1024, 16777216, "64k", 0, NULL },
	{ "api_rate_limit", OPT_INT, O(api_rate_limit), 0, 10000000, "1000", 0, NULL },
	{ "api_keepalive_timeout", OPT_DURATION, O(api_keepalive_timeout), 1000, 3600000, "30s", 0, NULL },
};
#undef O

static const char *route_kinds[] = { "chat", "echo", "broadcast", "off" };

static int
seterr(char *err, size_t errlen, const char *origin, int line, const char *fmt, ...)
{
	char msg[CFG_ERR_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(err, errlen, "%s:%d: %s", origin, line, msg);
	else
		snprintf(err, errlen, "%s: %s", origin, msg);
	return -1;
}

const char *
cfg_route_kind_name(enum route_kind k)
{
	return route_kinds[k];
}

int
cfg_parse_duration(const char *s, int *ms)
{
	char *end;
	long long v, mul = 1000;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mul = 60000;
	else if (strcmp(end, "h") == 0)
		mul = 3600000;
	else
		return -1;
	if (v > INT_MAX / mul)
		return -1;
	*ms = (int)(v * mul);
	return 0;
}

int
cfg_parse_size(const char *s, long long *bytes)
{
	char *end;
	long long v, mul;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -1;
	v = strtoll(s, &end, 10);
	if (errno != 0)
		return -1;
	if (*end == '\0' || strcasecmp(end, "b") == 0)
		mul = 1;
	else if (strcasecmp(end, "k") == 0 || strcasecmp(end, "kb") == 0 || strcasecmp(end, "kib") == 0)
		mul = 1024;
	else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "mb") == 0 || strcasecmp(end, "mib") == 0)
		mul = 1024 * 1024;
	else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "gb") == 0 || strcasecmp(end, "gib") == 0)
		mul = 1024 * 1024 * 1024;
	else
		return -1;
	if (v > LLONG_MAX / mul)
		return -1;
	*bytes = v * mul;
	return 0;
}

static int
parse_bool(const char *s, int *out)
{
	if (!strcasecmp(s, "yes") || !strcasecmp(s, "on") || !strcasecmp(s, "true") || !strcmp(s, "1"))
		*out = 1;
	else if (!strcasecmp(s, "no") || !strcasecmp(s, "off") || !strcasecmp(s, "false") || !strcmp(s, "0"))
		*out = 0;
	else
		return -1;
	return 0;
}

/* Parse "8080", "1.2.3.4:8080", "*:8080", "[::1]:8080", "localhost:8080". */
static int parse_listen_addr(const char *, struct cfg_listen *, char *, size_t);

/* "ADDRESS [ssl] [proxy_protocol] [api]"; an api_listen line takes no api (it is one). */
static int
parse_listen(const char *value, struct cfg_listen *l, int api_only, char *why, size_t whylen)
{
	char addr[128], opt[64];
	int n = 0, used;

	memset(l, 0, sizeof(*l));
	if (strcspn(value, " \t") >= sizeof(addr)) {
		snprintf(why, whylen, "listen address too long");
		return -1;
	}
	if (sscanf(value, "%127s%n", addr, &n) != 1) {
		snprintf(why, whylen, "listen wants an address");
		return -1;
	}
	if (parse_listen_addr(addr, l, why, whylen) == -1)
		return -1;
	for (value += n; sscanf(value, " %63s%n", opt, &used) == 1; value += used) {
		if (strcmp(opt, "proxy_protocol") == 0)
			l->proxy_protocol = 1;
		else if (strcmp(opt, "ssl") == 0)
			l->ssl = 1;
		else if (strcmp(opt, "api") == 0 && !api_only)
			l->api = 1;
		else {
			snprintf(why, whylen, "unknown %s option '%s' (want ssl%s or proxy_protocol)",
			    api_only ? "api_listen" : "listen", opt, api_only ? "" : ", api");
			return -1;
		}
	}
	if (api_only)
		l->api = l->api_only = 1;
	return 0;
}

static int
parse_listen_addr(const char *spec, struct cfg_listen *l, char *why, size_t whylen)
{
	char host[128], *colon, *end;
	const char *port;
	struct addrinfo hints, *res;
	long p;
	int rc;

	if (strlen(spec) >= sizeof(l->spec) || strlen(spec) >= sizeof(host)) {
		snprintf(why, whylen, "listen address too long");
		return -1;
	}
	snprintf(l->spec, sizeof(l->spec), "%s", spec);
	if (spec[0] == '[') {
		const char *rb = strchr(spec, ']');
		if (rb == NULL || rb[1] != ':') {
			snprintf(why, whylen, "bad listen address '%s' (want [ipv6]:port)", spec);
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(rb - spec - 1), spec + 1);
		port = rb + 2;
	} else if ((colon = strrchr(spec, ':')) != NULL) {
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
		port = colon + 1;
	} else {
		snprintf(host, sizeof(host), "*");
		port = spec;
	}
	errno = 0;
	p = strtol(port, &end, 10);
	if (*port == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535) {
		snprintf(why, whylen, "bad port in listen address '%s' (want 1-65535)", spec);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(strcmp(host, "*") == 0 || host[0] == '\0' ? "0.0.0.0" : host,
	    port, &hints, &res);
	if (rc != 0) {
		snprintf(why, whylen, "cannot resolve listen address '%s': %s", spec, gai_strerror(rc));
		return -1;
	}
	memcpy(&l->addr, res->ai_addr, res->ai_addrlen);
	l->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static int
parse_route(struct config *c, const char *value, char *why, size_t whylen)
{
	char path[256], kind[32];
	struct cfg_route *r = NULL;
	int n, k = -1;

	if (sscanf(value, "%255s %31s %n", path, kind, &n) != 2 || value[n] != '\0') {
		snprintf(why, whylen, "route wants 'PATH KIND', got '%s'", value);
		return -1;
	}
	if (path[0] != '/' || strlen(path) >= sizeof(r->path) || strpbrk(path, "?#") != NULL) {
		snprintf(why, whylen, "route path must start with '/', hold no '?' or '#' and be under %zu bytes",
		    sizeof(r->path));
		return -1;
	}
	for (size_t i = 0; i < sizeof(route_kinds) / sizeof(route_kinds[0]); i++)
		if (strcmp(kind, route_kinds[i]) == 0)
			k = (int)i;
	if (k < 0) {
		snprintf(why, whylen, "unknown route kind '%s' (want chat, echo, broadcast or off)", kind);
		return -1;
	}
	/* A path given again is redefined in place. */
	for (int i = 0; i < c->nroute; i++)
		if (strcmp(c->route[i].path, path) == 0)
			r = &c->route[i];
	if (r == NULL) {
		if (c->nroute >= CFG_MAX_ROUTES) {
			snprintf(why, whylen, "too many routes (at most %d)", CFG_MAX_ROUTES);
			return -1;
		}
		r = &c->route[c->nroute++];
		snprintf(r->path, sizeof(r->path), "%s", path);
	}
	r->kind = (enum route_kind)k;
	return 0;
}

/*
 * Relative paths are taken from the directory roomd started in, remembered
 * at the first call: a daemon's reload, after chdir("/"), resolves them the
 * same way.
 */
static int
make_absolute(const char *value, char **out)
{
	static char cwd[PATH_MAX];
	size_t n;

	if (value[0] == '/' || strcmp(value, "stderr") == 0 || strcmp(value, "syslog") == 0) {
		*out = strdup(value);
		return *out == NULL ? -1 : 0;
	}
	if (cwd[0] == '\0' && getcwd(cwd, sizeof(cwd)) == NULL)
		return -1;
	n = strlen(cwd) + strlen(value) + 2;
	if ((*out = malloc(n)) == NULL)
		return -1;
	snprintf(*out, n, "%s/%s", cwd, value);
	return 0;
}

/*
 * An API key is what a client sends after "Bearer ": visible ASCII with no
 * space, long enough not to be guessed.
 */
static int
api_key_check(const char *k, size_t n, char *why, size_t whylen)
{
	if (n < CFG_API_KEY_MIN || n > CFG_API_KEY_MAX) {
		snprintf(why, whylen, "an API key must be %d to %d bytes long, got %zu", CFG_API_KEY_MIN,
		    CFG_API_KEY_MAX, n);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f) {
			snprintf(why, whylen, "an API key may hold only visible ASCII characters (no space)");
			return -1;
		}
	return 0;
}

static const struct option *
find_option(const char *key)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (strcmp(options[i].name, key) == 0)
			return &options[i];
	return NULL;
}

/* Set one option from text; on error fill why (without location). */
static int
apply(struct config *c, const struct option *o, const char *value, char *why, size_t whylen)
{
	char *base = (char *)c, *end, **sp;
	long long v;
	int iv;

	switch (o->type) {
	case OPT_INT:
		errno = 0;
		v = strtoll(value, &end, 10);
		if (*value == '\0' || *end != '\0' || errno != 0) {
			snprintf(why, whylen, "%s wants a whole number, got '%s'", o->name, value);
			return -1;
		}
		goto range;
	case OPT_SIZE:
		if (cfg_parse_size(value, &v) == -1) {
			snprintf(why, whylen, "%s wants a size such as 8192, 64k or 1m, got '%s'", o->name, value);
			return -1;
		}
		goto range;
	case OPT_DURATION:
		if (cfg_parse_duration(value, &iv) == -1) {
			snprintf(why, whylen, "%s wants a duration such as 30, 30s, 500ms or 2m, got '%s'",
			    o->name, value);
			return -1;
		}
		v = iv;
	range:
		if (v < o->min || v > o->max) {
			snprintf(why, whylen, "%s %s is out of range (%lld to %lld%s)", o->name, value,
			    o->type == OPT_DURATION ? o->min / 1000 : o->min,
			    o->type == OPT_DURATION ? o->max / 1000 : o->max,
			    o->type == OPT_DURATION ? " seconds" : o->type == OPT_SIZE ? " bytes" : "");
			if (o->type == OPT_DURATION && o->min < 1000)
				snprintf(why, whylen, "%s %s is out of range (%lldms to %llds)", o->name,
				    value, o->min, o->max / 1000);
			return -1;
		}
		*(int *)(base + o->off) = (int)v;
		return 0;
	case OPT_BOOL:
		if (parse_bool(value, &iv) == -1) {
			snprintf(why, whylen, "%s wants yes or no, got '%s'", o->name, value);
			return -1;
		}
		*(int *)(base + o->off) = iv;
		return 0;
	case OPT_LEVEL:
		if ((iv = log_level_parse(value)) < 0 || iv > LOG_LVL_ERROR) {
			snprintf(why, whylen, "%s wants debug, info, notice, warning or error, got '%s'",
			    o->name, value);
			return -1;
		}
		*(int *)(base + o->off) = iv;
		return 0;
	case OPT_ENUM:
		for (iv = 0; o->names[iv] != NULL; iv++)
			if (strcmp(o->names[iv], value) == 0) {
				*(int *)(base + o->off) = iv;
				return 0;
			}
		{
			size_t n = (size_t)snprintf(why, whylen, "%s wants ", o->name);

			for (int k = 0; o->names[k] != NULL && n < whylen; k++)
				n += (size_t)snprintf(why + n, whylen - n, "%s%s", o->names[k],
				    o->names[k + 1] == NULL ? "" : o->names[k + 2] == NULL ? " or " : ", ");
			if (n < whylen)
				snprintf(why + n, whylen - n, ", got '%s'", value);
		}
		return -1;
	case OPT_STRING:
	case OPT_PATH:
		if (*value == '\0') {
			snprintf(why, whylen, "%s wants a value", o->name);
			return -1;
		}
		sp = (char **)(base + o->off);
		free(*sp);
		*sp = NULL;
		if (o->type == OPT_PATH ? make_absolute(value, sp) == -1 : (*sp = strdup(value)) == NULL) {
			snprintf(why, whylen, "%s: out of memory or no working directory", o->name);
			return -1;
		}
		return 0;
	case OPT_LISTEN:
	case OPT_API_LISTEN:
		if (c->nlisten >= CFG_MAX_LISTEN) {
			snprintf(why, whylen, "too many %s lines (at most %d)", o->type == OPT_API_LISTEN ?
			    "listen and api_listen" : "listen", CFG_MAX_LISTEN);
			return -1;
		}
		if (parse_listen(value, &c->listen[c->nlisten], o->type == OPT_API_LISTEN, why, whylen) == -1)
			return -1;
		for (int i = 0; i < c->nlisten; i++) {
			if (c->listen[i].addrlen == c->listen[c->nlisten].addrlen &&
			    memcmp(&c->listen[i].addr, &c->listen[c->nlisten].addr,
			    c->listen[i].addrlen) == 0) {
				snprintf(why, whylen, "listen %s given twice", value);
				return -1;
			}
		}
		c->nlisten++;
		return 0;
	case OPT_ROUTE:
		return parse_route(c, value, why, whylen);
	case OPT_KEYS:
		if (c->napi_key >= CFG_MAX_API_KEYS) {
			snprintf(why, whylen, "too many api_key lines (at most %d)", CFG_MAX_API_KEYS);
			return -1;
		}
		if (api_key_check(value, strlen(value), why, whylen) == -1)
			return -1;
		if ((c->api_key[c->napi_key] = strdup(value)) == NULL) {
			snprintf(why, whylen, "%s: out of memory", o->name);
			return -1;
		}
		c->napi_key++;
		return 0;
	case OPT_CIDRS: {
		char item[80];
		int used;

		for (; sscanf(value, " %79s%n", item, &used) == 1; value += used) {
			if (c->ntrusted >= CFG_MAX_TRUSTED) {
				snprintf(why, whylen, "too many trusted_proxies (at most %d)", CFG_MAX_TRUSTED);
				return -1;
			}
			if (cidr_parse(item, &c->trusted[c->ntrusted]) == -1) {
				snprintf(why, whylen, "trusted_proxies wants addresses or CIDR blocks such as 10.0.0.0/8, got '%s'", item);
				return -1;
			}
			c->ntrusted++;
		}
		return 0;
	}
	}
	return -1;
}

int
cfg_set(struct config *c, const char *origin, int line, const char *key, const char *value,
    char *err, size_t errlen)
{
	const struct option *o = find_option(key);
	char why[CFG_ERR_LEN];

	if (o == NULL)
		return seterr(err, errlen, origin, line, "unknown key '%s'", key);
	if (apply(c, o, value, why, sizeof(why)) == -1)
		return seterr(err, errlen, origin, line, "%s", why);
	return 0;
}

struct config *
cfg_new(void)
{
	struct config *c = calloc(1, sizeof(*c));
	char why[CFG_ERR_LEN];

	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		if (options[i].def == NULL)
			continue;
		if (apply(c, &options[i], options[i].def, why, sizeof(why)) == -1) {
			cfg_free(c);
			return NULL;
		}
	}
	return c;
}

void
cfg_free(struct config *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++)
		if (options[i].type == OPT_STRING || options[i].type == OPT_PATH)
			free(*(char **)((char *)c + options[i].off));
	for (int i = 0; i < c->napi_key; i++)
		free(c->api_key[i]);
	for (int i = 0; i < c->napi_file_key; i++)
		free(c->api_file_key[i]);
	free(c->path);
	free(c->auth_key);
	free(c);
}

/* Read api_key_file: one key a line; blank lines and lines starting with '#' are skipped. */
static int
read_api_key_file(struct config *c, char *why, size_t whylen)
{
	char line[CFG_API_KEY_MAX + 3], *e;
	FILE *f;
	int lineno = 0, rc = 0;

	for (int i = 0; i < c->napi_file_key; i++)
		free(c->api_file_key[i]);
	c->napi_file_key = 0;
	if (c->api_key_file == NULL)
		return 0;
	if ((f = fopen(c->api_key_file, "r")) == NULL) {
		snprintf(why, whylen, "api_key_file %s: %s", c->api_key_file, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		char ewhy[CFG_ERR_LEN];
		size_t n = strlen(line);

		lineno++;
		if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
			snprintf(why, whylen, "api_key_file %s:%d: longer than %d bytes", c->api_key_file, lineno,
			    CFG_API_KEY_MAX);
			rc = -1;
			break;
		}
		for (e = line + n; e > line && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' ||
		    e[-1] == '\t'); e--)
			;
		*e = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if (api_key_check(line, strlen(line), ewhy, sizeof(ewhy)) == -1) {
			snprintf(why, whylen, "api_key_file %s:%d: %s", c->api_key_file, lineno, ewhy);
			rc = -1;
		} else if (c->napi_file_key >= CFG_MAX_API_KEYS) {
			snprintf(why, whylen, "api_key_file %s holds more than %d keys", c->api_key_file,
			    CFG_MAX_API_KEYS);
			rc = -1;
		} else if ((c->api_file_key[c->napi_file_key] = strdup(line)) == NULL) {
			snprintf(why, whylen, "out of memory");
			rc = -1;
		} else
			c->napi_file_key++;
	}
	if (rc == 0 && ferror(f)) {
		snprintf(why, whylen, "api_key_file %s: read failed", c->api_key_file);
		rc = -1;
	}
	fclose(f);
	if (rc == 0 && c->napi_file_key == 0) {
		snprintf(why, whylen, "api_key_file %s holds no key", c->api_key_file);
		rc = -1;
	}
	return rc;
}

int
cfg_api_enabled(const struct config *c)
{
	for (int i = 0; i < c->nlisten; i++)
		if (c->listen[i].api)
			return 1;
	return 0;
}

const char *
cfg_api_key(const struct config *c, int i)
{
	if (i >= 0 && i < c->napi_key)
		return c->api_key[i];
	i -= c->napi_key;
	if (i >= 0 && i < c->napi_file_key)
		return c->api_file_key[i];
	return NULL;
}

void
cfg_clear_listen(struct config *c)
{
	int n = 0;

	for (int i = 0; i < c->nlisten; i++)
		if (c->listen[i].api_only)
			c->listen[n++] = c->listen[i];
	c->nlisten = n;
}

/* Split one line into key and value; strip comments and quotes. 0 blank, 1 ok, -1 error. */
static int
split_line(char *line, char **key, char **value, char *why, size_t whylen)
{
	char *p = line, *q, *e;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == '#')
		return 0;
	*key = p;
	while (*p != '\0' && !isspace((unsigned char)*p))
		p++;
	if (*p != '\0')
		*p++ = '\0';
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '"') {
		q = ++p;
		e = strchr(q, '"');
		if (e == NULL) {
			snprintf(why, whylen, "unterminated quoted value for '%s'", *key);
			return -1;
		}
		*e++ = '\0';
		while (isspace((unsigned char)*e))
			e++;
		if (*e != '\0' && *e != '#') {
			snprintf(why, whylen, "text after quoted value for '%s'", *key);
			return -1;
		}
		*value = q;
		return 1;
	}
	/* Unquoted: a '#' preceded by space starts a comment. */
	for (q = p; *q != '\0'; q++) {
		if (*q == '#' && (q == p || isspace((unsigned char)q[-1]))) {
			*q = '\0';
			break;
		}
	}
	e = p + strlen(p);
	while (e > p && isspace((unsigned char)e[-1]))
		*--e = '\0';
	if (*p == '\0') {
		snprintf(why, whylen, "'%s' wants a value", *key);
		return -1;
	}
	*value = p;
	return 1;
}

#define CFG_LINE_MAX	4094		/* bytes in a line, without its newline */
#define CFG_FILE_MAX	(1 << 20)	/* bytes in a config file */

int
cfg_load_text(struct config *c, const char *name, const char *text, size_t len, char *err, size_t errlen)
{
	char line[CFG_LINE_MAX + 1], why[CFG_ERR_LEN], *key, *value;
	size_t pos = 0;
	int lineno = 0, rc;

	while (pos < len) {
		const char *start = text + pos, *nl = memchr(start, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - start) : len - pos;

		lineno++;
		if (n > CFG_LINE_MAX)
			return seterr(err, errlen, name, lineno, "line longer than %d bytes", CFG_LINE_MAX);
		if (memchr(start, '\0', n) != NULL)
			return seterr(err, errlen, name, lineno, "NUL byte in the line");
		memcpy(line, start, n);
		line[n] = '\0';
		pos += n + (nl != NULL);
		if ((rc = split_line(line, &key, &value, why, sizeof(why))) == 0)
			continue;
		if (rc == -1)
			return seterr(err, errlen, name, lineno, "%s", why);
		if (cfg_set(c, name, lineno, key, value, err, errlen) == -1)
			return -1;
	}
	return 0;
}

int
cfg_load_file(struct config *c, const char *path, char *err, size_t errlen)
{
	char chunk[8192], *text = NULL, *grown;
	size_t len = 0, n;
	FILE *f;
	int rc;

	if ((f = fopen(path, "r")) == NULL)
		return seterr(err, errlen, path, 0, "cannot open: %s", strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (len + n > CFG_FILE_MAX) {
			fclose(f);
			free(text);
			return seterr(err, errlen, path, 0, "larger than %d bytes", CFG_FILE_MAX);
		}
		if ((grown = realloc(text, len + n)) == NULL) {
			fclose(f);
			free(text);
			return seterr(err, errlen, path, 0, "out of memory");
		}
		text = grown;
		memcpy(text + len, chunk, n);
		len += n;
	}
	if (ferror(f)) {
		fclose(f);
		free(text);
		return seterr(err, errlen, path, 0, "read failed: %s", strerror(errno));
	}
	fclose(f);
	rc = cfg_load_text(c, path, text != NULL ? text : "", len, err, errlen);
	free(text);
	if (rc == -1)
		return -1;
	free(c->path);
	if (make_absolute(path, &c->path) == -1)
		return seterr(err, errlen, path, 0, "out of memory");
	return 0;
}

int
cfg_finish(struct config *c, char *err, size_t errlen)
{
	char why[CFG_ERR_LEN];
	const char *origin = c->path != NULL ? c->path : "config";

	{
		int pub = 0;

		for (int i = 0; i < c->nlisten; i++)
			pub += !c->listen[i].api_only;
		if (pub == 0 && c->nlisten >= CFG_MAX_LISTEN)
			return seterr(err, errlen, origin, 0, "too many api_listen lines to add the default listen 8080");
		if (pub == 0 && parse_listen("8080", &c->listen[c->nlisten++], 0, why, sizeof(why)) == -1)
			return seterr(err, errlen, origin, 0, "%s", why);
	}
	if (c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);

		c->workers = n < 1 ? 1 : n > 256 ? 256 : (int)n;
	}
	if (c->nroute == 0 && (parse_route(c, "/ chat", why, sizeof(why)) == -1 ||
	    parse_route(c, "/echo echo", why, sizeof(why)) == -1 ||
	    parse_route(c, "/broadcast broadcast", why, sizeof(why)) == -1))
		return seterr(err, errlen, origin, 0, "%s", why);
	if (c->www_root == NULL) {
		/* Installed pages first; running from a build tree, the source tree's. */
		static const char *const roots[] = { DATADIR "/roomd/www", SRCDIR "/www" };
		char probe[PATH_MAX];

		for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]) && c->www_root == NULL; i++) {
			snprintf(probe, sizeof(probe), "%s/index.html", roots[i]);
			if (access(probe, R_OK) == 0 && (c->www_root = strdup(roots[i])) == NULL)
				return seterr(err, errlen, origin, 0, "out of memory");
		}
		if (c->www_root == NULL && (c->www_root = strdup(roots[0])) == NULL)
			return seterr(err, errlen, origin, 0, "out of memory");
	}
	if (c->redis != NULL && redisurl_parse(c->redis, &c->redis_addr, why, sizeof(why)) == -1)
		return seterr(err, errlen, origin, 0, "%s", why);
	if (c->redis_tls)
		c->redis_addr.tls = 1;
	if (c->redis_addr.tls && c->redis == NULL)
		return seterr(err, errlen, origin, 0, "redis_tls needs redis: the private redis-server speaks plain "
		    "text on a socket of its own");
	if (c->redis_addr.tls && c->redis_addr.is_unix)
		return seterr(err, errlen, origin, 0, "redis_tls is for TCP: %s is a socket path", c->redis);
	if (c->redis_addr.tls && (c->redis_tls_cert == NULL) != (c->redis_tls_key == NULL))
		return seterr(err, errlen, origin, 0, "set redis_tls_cert and redis_tls_key together");
	if (!proto_valid_label(c->default_room, strlen(c->default_room), (size_t)c->max_roomid_length))
		return seterr(err, errlen, origin, 0,
		    "default_room must be 1 to max_roomid_length bytes without control characters");
	if (strlen(c->redis_prefix) > 64)
		return seterr(err, errlen, origin, 0, "redis_prefix is longer than 64 bytes");
	if (strpbrk(c->redis_prefix, "{}") != NULL)
		return seterr(err, errlen, origin, 0,
		    "redis_prefix must not hold { or }: roomd puts each room's keys behind a hash tag of its own");
	if (c->ping_timeout <= c->ping_interval)
		return seterr(err, errlen, origin, 0,
		    "ping_timeout (%dms) must be longer than ping_interval (%dms)",
		    c->ping_timeout, c->ping_interval);
	free(c->auth_key);
	c->auth_key = NULL;
	c->auth_keylen = 0;
	if (c->auth_secret != NULL && c->auth_secret_file != NULL)
		return seterr(err, errlen, origin, 0, "set auth_secret or auth_secret_file, not both");
	if (c->auth_secret_file != NULL) {
		/* Read the secret now: a missing file is a config error, not a runtime surprise. */
		FILE *f = fopen(c->auth_secret_file, "rb");
		uint8_t buf[4096];
		size_t n;

		if (f == NULL)
			return seterr(err, errlen, origin, 0, "auth_secret_file %s: %s", c->auth_secret_file,
			    strerror(errno));
		n = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			n--;
		if (n == 0 || (c->auth_key = malloc(n)) == NULL)
			return seterr(err, errlen, origin, 0, "auth_secret_file %s is empty", c->auth_secret_file);
		memcpy(c->auth_key, buf, n);
		c->auth_keylen = n;
	} else if (c->auth_secret != NULL) {
		if ((c->auth_key = (uint8_t *)strdup(c->auth_secret)) == NULL)
			return seterr(err, errlen, origin, 0, "out of memory");
		c->auth_keylen = strlen(c->auth_secret);
	}
	if (c->auth != CFG_AUTH_OFF && c->auth_keylen < 16)
		return seterr(err, errlen, origin, 0,
		    "auth %s needs auth_secret or auth_secret_file of at least 16 bytes", auth_names[c->auth]);
	if (c->drain_time >= c->shutdown_timeout && c->drain_time > 0)
		return seterr(err, errlen, origin, 0,
		    "drain_time (%dms) must be shorter than shutdown_timeout (%dms): the stop includes the drain",
		    c->drain_time, c->shutdown_timeout);
	{
		const char *const *paths[] = { (const char *const *)&c->health_path,
		    (const char *const *)&c->ready_path, (const char *const *)&c->metrics_path };
		const char *names[] = { "health_path", "ready_path", "metrics_path" };

		for (size_t i = 0; i < 3; i++) {
			const char *v = *paths[i];

			if (v[0] != '/' && !(i == 2 && strcmp(v, "off") == 0))
				return seterr(err, errlen, origin, 0, "%s must start with '/'%s, got '%s'",
				    names[i], i == 2 ? " or be off" : "", v);
			if (cfg_route_find(c, v, strlen(v)) != NULL)
				return seterr(err, errlen, origin, 0, "%s %s is also a route", names[i], v);
		}
	}
	if (read_api_key_file(c, why, sizeof(why)) == -1)
		return seterr(err, errlen, origin, 0, "%s", why);
	if (cfg_api_enabled(c) && cfg_api_key(c, 0) == NULL && !c->api_insecure)
		return seterr(err, errlen, origin, 0,
		    "the HTTP API (api_listen, or listen ... api) needs api_key or api_key_file; "
		    "set api_insecure yes only where every client of it is trusted");
	if (!proto_valid_label(c->api_name, strlen(c->api_name), (size_t)c->max_name_length))
		return seterr(err, errlen, origin, 0,
		    "api_name must be 1 to max_name_length bytes without control characters");
	if (c->daemonize && (c->log_file == NULL || strcmp(c->log_file, "stderr") == 0))
		return seterr(err, errlen, origin, 0,
		    "daemonize yes needs a log_file (a path or syslog): stderr is closed");
	return 0;
}

/* Render one option's value as it would be written in the file. */
static void
render(const struct config *c, const struct option *o, char *out, size_t outlen)
{
	const char *base = (const char *)c;
	int iv;
	const char *s;

	switch (o->type) {
	case OPT_INT:
	case OPT_SIZE:
		snprintf(out, outlen, "%d", *(const int *)(base + o->off));
		break;
	case OPT_DURATION:
		iv = *(const int *)(base + o->off);
		if (iv % 1000 == 0)
			snprintf(out, outlen, "%ds", iv / 1000);
		else
			snprintf(out, outlen, "%dms", iv);
		break;
	case OPT_BOOL:
		snprintf(out, outlen, "%s", *(const int *)(base + o->off) ? "yes" : "no");
		break;
	case OPT_LEVEL:
		snprintf(out, outlen, "%s", log_level_name((enum log_level)*(const int *)(base + o->off)));
		break;
	case OPT_ENUM:
		snprintf(out, outlen, "%s", o->names[*(const int *)(base + o->off)]);
		break;
	case OPT_STRING:
	case OPT_PATH:
		s = *(char *const *)(base + o->off);
		snprintf(out, outlen, "%s", s != NULL ? s : "");
		break;
	case OPT_LISTEN:
	case OPT_API_LISTEN:
	case OPT_KEYS:
	case OPT_ROUTE:
	case OPT_CIDRS:
		out[0] = '\0';
		break;
	}
}

/*
 * Whether a value must be quoted to read back the same (split_line):
 * unquoted, white space at either end is trimmed, a '#' after white space
 * starts a comment and a leading '"' opens a quote.
 */
static int
needs_quotes(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || v[0] == '"' || v[0] == '#' || isspace((unsigned char)v[0]) ||
	    isspace((unsigned char)v[n - 1]))
		return 1;
	for (size_t i = 1; i < n; i++)
		if (v[i] == '#' && isspace((unsigned char)v[i - 1]))
			return 1;
	return 0;
}

void
cfg_dump(const struct config *c, FILE *f)
{
	char v[CFG_LINE_MAX + 1];	/* any value a file can hold, whole */

	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		const struct option *o = &options[i];

		if (o->type == OPT_LISTEN || o->type == OPT_API_LISTEN) {
			int n = 0;

			for (int j = 0; j < c->nlisten; j++) {
				if (c->listen[j].api_only != (o->type == OPT_API_LISTEN))
					continue;
				fprintf(f, "%s %s%s%s%s\n", o->name, c->listen[j].spec,
				    c->listen[j].ssl ? " ssl" : "",
				    c->listen[j].proxy_protocol ? " proxy_protocol" : "",
				    c->listen[j].api && !c->listen[j].api_only ? " api" : "");
				n++;
			}
			if (n == 0)
				fprintf(f, "# %s (unset)\n", o->name);
			continue;
		}
		if (o->type == OPT_KEYS) {
			if (c->napi_key == 0)
				fprintf(f, "# %s (unset)\n", o->name);
			for (int j = 0; j < c->napi_key; j++)
				fprintf(f, "%s ********\n", o->name);	/* never print a secret */
			continue;
		}
		if (o->type == OPT_CIDRS) {
			if (c->ntrusted == 0)
				fprintf(f, "# trusted_proxies (unset)\n");
			for (int j = 0; j < c->ntrusted; j++) {
				char a[INET6_ADDRSTRLEN];

				inet_ntop(c->trusted[j].family, c->trusted[j].addr, a, sizeof(a));
				fprintf(f, "trusted_proxies %s/%d\n", a, c->trusted[j].bits);
			}
			continue;
		}
		if (o->type == OPT_ROUTE) {
			for (int j = 0; j < c->nroute; j++)
				fprintf(f, "route %s %s\n", c->route[j].path,
				    route_kinds[c->route[j].kind]);
			continue;
		}
		render(c, o, v, sizeof(v));
		if (strcmp(o->name, "auth_secret") == 0 && v[0] != '\0')
			snprintf(v, sizeof(v), "********");	/* never print a secret */
		if (v[0] == '\0')
			fprintf(f, "# %s (unset)\n", o->name);
		else if (strchr(v, '"') == NULL && (strpbrk(v, " #") != NULL || needs_quotes(v)))
			fprintf(f, "%s \"%s\"\n", o->name, v);	/* a quoted value cannot hold '"' */
		else
			fprintf(f, "%s %s\n", o->name, v);
	}
}

/* Whether a and b have the same listen lines (api_only 0) or api_listen lines (1), in order. */
static int
listen_equal(const struct config *a, const struct config *b, int api_only)
{
	int i = 0, j = 0;

	for (;;) {
		while (i < a->nlisten && a->listen[i].api_only != api_only)
			i++;
		while (j < b->nlisten && b->listen[j].api_only != api_only)
			j++;
		if (i == a->nlisten || j == b->nlisten)
			return i == a->nlisten && j == b->nlisten;
		if (a->listen[i].addrlen != b->listen[j].addrlen ||
		    a->listen[i].proxy_protocol != b->listen[j].proxy_protocol ||
		    a->listen[i].ssl != b->listen[j].ssl || a->listen[i].api != b->listen[j].api ||
		    memcmp(&a->listen[i].addr, &b->listen[j].addr, a->listen[i].addrlen) != 0)
			return 0;
		i++;
		j++;
	}
}

int
cfg_keep_restart_only(const struct config *cur, struct config *next)
{
	char a[512], b[512];
	int changed = 0;

	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		const struct option *o = &options[i];

		if (!(o->flags & OPT_RESTART) || o->type == OPT_API_LISTEN)
			continue;	/* api_listen lines are kept with the listen lines */
		if (o->type == OPT_LISTEN) {
			int same = listen_equal(cur, next, 0), api_same = listen_equal(cur, next, 1);

			if (!same)
				log_warn("reload: listen changed; it takes effect after a restart, keeping the old addresses");
			if (!api_same)
				log_warn("reload: api_listen changed; it takes effect after a restart, keeping the old addresses");
			if (!same || !api_same) {
				memcpy(next->listen, cur->listen, sizeof(cur->listen));
				next->nlisten = cur->nlisten;
				changed++;
			}
			continue;
		}
		render(cur, o, a, sizeof(a));
		render(next, o, b, sizeof(b));
		if (strcmp(a, b) == 0)
			continue;
		if (o->flags & OPT_SECRET)
			log_warn("reload: %s changed; it takes effect after a restart, keeping the old value",
			    o->name);
		else
			log_warn("reload: %s changed from '%s' to '%s'; it takes effect after a restart, keeping '%s'",
			    o->name, a, b, a);
		changed++;
		if (o->type == OPT_STRING || o->type == OPT_PATH) {
			char **dst = (char **)((char *)next + o->off);
			char *const *src = (char *const *)((const char *)cur + o->off);

			free(*dst);
			*dst = *src != NULL ? strdup(*src) : NULL;
		} else
			*(int *)((char *)next + o->off) = *(const int *)((const char *)cur + o->off);
	}
	/* Parsed from keys that all need a restart: the running one stays. */
	next->redis_addr = cur->redis_addr;
	return changed;
}

const struct cfg_route *
cfg_route_find(const struct config *c, const char *path, size_t len)
{
	for (int i = 0; i < c->nroute; i++)
		if (strlen(c->route[i].path) == len && memcmp(c->route[i].path, path, len) == 0)
			return c->route[i].kind == ROUTE_OFF ? NULL : &c->route[i];
	return NULL;
}
