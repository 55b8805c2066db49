/*
 * test_config.c: unit tests of the config parser (src/config.c): defaults,
 * durations and sizes, "file:line: what" errors from a file and from text
 * (cfg_load_text), NUL bytes and size bounds, listen and route forms,
 * cfg_finish's computed defaults and cross checks, the dump, and the reload
 * rule that keeps restart-only keys.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include "config.h"
#include "log.h"
#include "tap.h"

/* ok() evaluates its condition twice; this evaluates one with side effects once. */
#define ok1(cond, ...) do {						\
	int ok1_ = (cond) ? 1 : 0;					\
	ok(ok1_, __VA_ARGS__);						\
} while (0)

static char tmpdir[] = "/tmp/roomd-test-config-XXXXXX";
static int nfiles;

/* Write text to a fresh file in tmpdir; returns its path (static storage per call). */
static const char *
write_file(const char *text)
{
	static char paths[64][PATH_MAX];
	char *p = paths[nfiles % 64];
	FILE *f;

	snprintf(p, PATH_MAX, "%s/f%d.conf", tmpdir, nfiles++);
	if ((f = fopen(p, "w")) == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
		printf("Bail out! cannot write %s: %s\n", p, strerror(errno));
		exit(1);
	}
	return p;
}

/* A config with defaults; bails out when out of memory. */
static struct config *
fresh(void)
{
	struct config *c = cfg_new();

	if (c == NULL) {
		printf("Bail out! cfg_new() returned NULL\n");
		exit(1);
	}
	return c;
}

/* Set one key on c with origin "t.conf" line 1; returns cfg_set's result. */
static int
set1(struct config *c, const char *key, const char *value, char *err, size_t errlen)
{
	err[0] = '\0';
	return cfg_set(c, "t.conf", 1, key, value, err, errlen);
}

/* The port of a listen entry in host order. */
static int
listen_port(const struct cfg_listen *l)
{
	if (l->addr.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
}

/* The address of a listen entry as text ("0.0.0.0", "::1"). */
static const char *
listen_ip(const struct cfg_listen *l, char *buf, size_t len)
{
	if (l->addr.ss_family == AF_INET6)
		return inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&l->addr)->sin6_addr, buf,
		    (socklen_t)len);
	return inet_ntop(AF_INET, &((const struct sockaddr_in *)&l->addr)->sin_addr, buf, (socklen_t)len);
}

/* Everything cfg_dump writes, as a malloc'd string. */
static char *
dump_str(const struct config *c)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL) {
		printf("Bail out! open_memstream failed\n");
		exit(1);
	}
	cfg_dump(c, f);
	fclose(f);
	return buf;
}

/* The whole content of a file, as a malloc'd string ("" if unreadable). */
static char *
slurp(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r"), *m = open_memstream(&buf, &len);
	int ch;

	if (m == NULL) {
		printf("Bail out! open_memstream failed\n");
		exit(1);
	}
	if (f != NULL) {
		while ((ch = fgetc(f)) != EOF)
			fputc(ch, m);
		fclose(f);
	}
	fclose(m);
	return buf;
}

static void
test_defaults(void)
{
	struct config *c = fresh();

	is_int(c->nlisten, 0, "default: no listen until cfg_finish");
	is_int(c->workers, 0, "default: workers 0 (one per CPU)");
	ok(c->user == NULL, "default: no user");
	is_int(c->daemonize, 0, "default: daemonize no");
	ok(c->pidfile == NULL, "default: no pidfile");
	is_str(c->log_file, "stderr", "default: log_file stderr");
	is_int(c->log_level, LOG_LVL_INFO, "default: log_level info");
	is_int(c->shutdown_timeout, 10000, "default: shutdown_timeout 10s");
	is_int(c->max_connections, 100000, "default: max_connections 100000");
	is_int(c->handshake_timeout, 10000, "default: handshake_timeout 10s");
	is_int(c->max_request_size, 8192, "default: max_request_size 8k");
	is_int(c->max_message_size, 1048576, "default: max_message_size 1m");
	is_int(c->ping_interval, 30000, "default: ping_interval 30s");
	is_int(c->ping_timeout, 60000, "default: ping_timeout 60s");
	is_int(c->close_timeout, 5000, "default: close_timeout 5s");
	is_int(c->nroute, 0, "default: no routes until cfg_finish");
	ok(c->path == NULL, "default: no config path");
	cfg_free(c);
	cfg_free(NULL);
	ok(1, "cfg_free(NULL) is a no-op");
}

static void
test_duration(void)
{
	static const struct { const char *s; int ms; } good[] = {
		{ "10", 10000 }, { "10s", 10000 }, { "0", 0 }, { "500ms", 500 }, { "0ms", 0 },
		{ "2m", 120000 }, { "2min", 120000 }, { "1h", 3600000 }, { "007s", 7000 },
		{ "2147483647ms", INT_MAX }, { "2147483s", 2147483000 }, { "596h", 2145600000 },
		{ "35791m", 2147460000 },
	};
	static const char *bad[] = {
		"", "s", "ms", "-1", "+1", " 1", "1 ", "1.5s", "10 s", "10x", "10sec",
		"1h30m", "0x10", "abc",
		/* overflow */
		"2147483648ms", "2147484s", "597h", "35792m", "99999999999999999999",
		"9223372036854775807", "9223372036854775808ms",
	};
	int ms;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ms = -12345;
		is_int(cfg_parse_duration(good[i].s, &ms), 0, "duration '%s' parses", good[i].s);
		is_int(ms, good[i].ms, "duration '%s' is %dms", good[i].s, good[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = -12345;
		is_int(cfg_parse_duration(bad[i], &ms), -1, "duration '%s' is rejected", bad[i]);
		is_int(ms, -12345, "duration '%s' leaves the output alone", bad[i]);
	}
}

static void
test_size(void)
{
	static const struct { const char *s; long long b; } good[] = {
		{ "8192", 8192 }, { "0", 0 }, { "10b", 10 }, { "10B", 10 },
		{ "8k", 8192 }, { "8K", 8192 }, { "8kb", 8192 }, { "8KB", 8192 }, { "8KiB", 8192 },
		{ "1m", 1048576 }, { "1MB", 1048576 }, { "1mib", 1048576 },
		{ "1g", 1073741824LL }, { "1GB", 1073741824LL }, { "3GiB", 3221225472LL },
		{ "9223372036854775807", LLONG_MAX },
		{ "8589934591g", 8589934591LL * 1073741824LL },
		{ "9007199254740991k", 9007199254740991LL * 1024 },
	};
	static const char *bad[] = {
		"", "k", "-1", "+1", " 1", "1.5k", "8 k", "8t", "8kk", "8kbit", "0x10", "ten",
		/* overflow */
		"9223372036854775808", "99999999999999999999", "9007199254740992k",
		"8589934592g", "8796093022208m",
	};
	long long b;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		b = -12345;
		is_int(cfg_parse_size(good[i].s, &b), 0, "size '%s' parses", good[i].s);
		is_int(b, good[i].b, "size '%s' is %lld bytes", good[i].s, good[i].b);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		b = -12345;
		is_int(cfg_parse_size(bad[i], &b), -1, "size '%s' is rejected", bad[i]);
		is_int(b, -12345, "size '%s' leaves the output alone", bad[i]);
	}
}

static void
test_set_errors(void)
{
	static const struct { const char *key, *value, *err; } cases[] = {
		{ "nosuch", "1", "t.conf:1: unknown key 'nosuch'" },
		{ "Workers", "2", "t.conf:1: unknown key 'Workers'" },
		{ "workers", "abc", "t.conf:1: workers wants a whole number, got 'abc'" },
		{ "workers", "2x", "t.conf:1: workers wants a whole number, got '2x'" },
		{ "workers", "", "t.conf:1: workers wants a whole number, got ''" },
		{ "workers", "99999999999999999999",
		  "t.conf:1: workers wants a whole number, got '99999999999999999999'" },
		{ "workers", "257", "t.conf:1: workers 257 is out of range (0 to 256)" },
		{ "workers", "-1", "t.conf:1: workers -1 is out of range (0 to 256)" },
		{ "max_connections", "0", "t.conf:1: max_connections 0 is out of range (1 to 10000000)" },
		{ "shutdown_timeout", "2h",
		  "t.conf:1: shutdown_timeout 2h is out of range (0ms to 3600s)" },
		{ "shutdown_timeout", "5 s",
		  "t.conf:1: shutdown_timeout wants a duration such as 30, 30s, 500ms or 2m, got '5 s'" },
		{ "handshake_timeout", "50ms",
		  "t.conf:1: handshake_timeout 50ms is out of range (100ms to 3600s)" },
		{ "ping_interval", "2d",
		  "t.conf:1: ping_interval wants a duration such as 30, 30s, 500ms or 2m, got '2d'" },
		{ "max_request_size", "512",
		  "t.conf:1: max_request_size 512 is out of range (1024 to 1048576 bytes)" },
		{ "max_message_size", "2g",
		  "t.conf:1: max_message_size 2g is out of range (125 to 1073741824 bytes)" },
		{ "max_message_size", "1x",
		  "t.conf:1: max_message_size wants a size such as 8192, 64k or 1m, got '1x'" },
		{ "daemonize", "maybe", "t.conf:1: daemonize wants yes or no, got 'maybe'" },
		{ "log_level", "loud",
		  "t.conf:1: log_level wants debug, info, notice, warning or error, got 'loud'" },
		{ "log_level", "alert",
		  "t.conf:1: log_level wants debug, info, notice, warning or error, got 'alert'" },
		{ "user", "", "t.conf:1: user wants a value" },
		{ "pidfile", "", "t.conf:1: pidfile wants a value" },
	};
	char err[CFG_ERR_LEN];
	struct config *c = fresh();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		is_int(set1(c, cases[i].key, cases[i].value, err, sizeof(err)), -1,
		    "cfg_set %s '%s' fails", cases[i].key, cases[i].value);
		is_str(err, cases[i].err, "cfg_set %s '%s' error text", cases[i].key, cases[i].value);
	}
	/* Line 0 means "no line": the origin alone, as for the command line. */
	is_int(cfg_set(c, "command line", 0, "workers", "x", err, sizeof(err)), -1, "line 0 error");
	is_str(err, "command line: workers wants a whole number, got 'x'", "line 0: no ':0'");
	is_int(cfg_set(c, "/etc/roomd.conf", 1234, "nosuch", "x", err, sizeof(err)), -1, "line 1234");
	is_str(err, "/etc/roomd.conf:1234: unknown key 'nosuch'", "origin:line: message");

	/* A failed set leaves the old value; edges of ranges are accepted. */
	is_int(set1(c, "workers", "4", err, sizeof(err)), 0, "workers 4");
	is_int(set1(c, "workers", "x", err, sizeof(err)), -1, "workers x fails");
	is_int(c->workers, 4, "failed set keeps workers 4");
	is_int(set1(c, "workers", "256", err, sizeof(err)), 0, "workers 256 (max) ok");
	is_int(set1(c, "workers", "0", err, sizeof(err)), 0, "workers 0 (min) ok");
	is_int(set1(c, "max_message_size", "125", err, sizeof(err)), 0, "max_message_size 125 ok");
	is_int(set1(c, "max_message_size", "1g", err, sizeof(err)), 0, "max_message_size 1g ok");
	is_int(c->max_message_size, 1073741824, "max_message_size 1g stored");
	is_int(set1(c, "handshake_timeout", "100ms", err, sizeof(err)), 0, "handshake_timeout 100ms ok");
	is_int(c->handshake_timeout, 100, "handshake_timeout 100ms stored");
	is_int(set1(c, "shutdown_timeout", "1h", err, sizeof(err)), 0, "shutdown_timeout 1h ok");
	is_int(c->shutdown_timeout, 3600000, "shutdown_timeout 1h stored");
	is_int(set1(c, "shutdown_timeout", "0", err, sizeof(err)), 0, "shutdown_timeout 0 ok");
	is_int(c->shutdown_timeout, 0, "shutdown_timeout 0 stored");

	/* Booleans and levels. */
	{
		static const char *yes[] = { "yes", "on", "true", "1", "YES", "On", "TRUE" };
		static const char *no[] = { "no", "off", "false", "0", "NO", "Off" };

		for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
			c->daemonize = 0;
			ok1(set1(c, "daemonize", yes[i], err, sizeof(err)) == 0 && c->daemonize == 1,
			    "daemonize %s is yes", yes[i]);
		}
		for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
			c->daemonize = 1;
			ok1(set1(c, "daemonize", no[i], err, sizeof(err)) == 0 && c->daemonize == 0,
			    "daemonize %s is no", no[i]);
		}
	}
	ok1(set1(c, "log_level", "debug", err, sizeof(err)) == 0 && c->log_level == LOG_LVL_DEBUG,
	    "log_level debug");
	ok1(set1(c, "log_level", "warn", err, sizeof(err)) == 0 && c->log_level == LOG_LVL_WARNING,
	    "log_level warn is warning");
	ok1(set1(c, "log_level", "ERROR", err, sizeof(err)) == 0 && c->log_level == LOG_LVL_ERROR,
	    "log_level ERROR");

	/* Strings and paths: paths are made absolute against the working directory. */
	{
		char cwd[PATH_MAX], want[PATH_MAX + 32];

		if (getcwd(cwd, sizeof(cwd)) == NULL)
			cwd[0] = '\0';
		snprintf(want, sizeof(want), "%s/run/roomd.pid", cwd);
		is_int(set1(c, "pidfile", "run/roomd.pid", err, sizeof(err)), 0, "relative pidfile");
		is_str(c->pidfile, want, "relative pidfile made absolute");
		is_int(set1(c, "pidfile", "/var/run/roomd.pid", err, sizeof(err)), 0, "absolute pidfile");
		is_str(c->pidfile, "/var/run/roomd.pid", "absolute pidfile kept as is");
		is_int(set1(c, "log_file", "syslog", err, sizeof(err)), 0, "log_file syslog");
		is_str(c->log_file, "syslog", "log_file syslog is not a path");
		is_int(set1(c, "log_file", "stderr", err, sizeof(err)), 0, "log_file stderr");
		is_str(c->log_file, "stderr", "log_file stderr is not a path");
		is_int(set1(c, "user", "nobody", err, sizeof(err)), 0, "user nobody");
		is_str(c->user, "nobody", "user stored");
	}
	cfg_free(c);
}

static void
test_listen(void)
{
	static const struct { const char *spec; int family; const char *ip; int port; } good[] = {
		{ "8080", AF_INET, "0.0.0.0", 8080 },
		{ "127.0.0.1:9000", AF_INET, "127.0.0.1", 9000 },
		{ "*:9001", AF_INET, "0.0.0.0", 9001 },
		{ ":9002", AF_INET, "0.0.0.0", 9002 },
		{ "[::1]:9003", AF_INET6, "::1", 9003 },
		{ "[::]:9004", AF_INET6, "::", 9004 },
		{ "1", AF_INET, "0.0.0.0", 1 },
		{ "65535", AF_INET, "0.0.0.0", 65535 },
	};
	static const struct { const char *spec, *err; } bad[] = {
		{ "0", "t.conf:1: bad port in listen address '0' (want 1-65535)" },
		{ "65536", "t.conf:1: bad port in listen address '65536' (want 1-65535)" },
		{ "abc", "t.conf:1: bad port in listen address 'abc' (want 1-65535)" },
		{ "-80", "t.conf:1: bad port in listen address '-80' (want 1-65535)" },
		{ "127.0.0.1:", "t.conf:1: bad port in listen address '127.0.0.1:' (want 1-65535)" },
		{ "127.0.0.1:80x", "t.conf:1: bad port in listen address '127.0.0.1:80x' (want 1-65535)" },
		{ "127.0.0.1:99999999999999999999",
		  "t.conf:1: bad port in listen address '127.0.0.1:99999999999999999999' (want 1-65535)" },
		{ "[::1]", "t.conf:1: bad listen address '[::1]' (want [ipv6]:port)" },
		{ "[::1]9000", "t.conf:1: bad listen address '[::1]9000' (want [ipv6]:port)" },
		{ "[::1:9000", "t.conf:1: bad listen address '[::1:9000' (want [ipv6]:port)" },
	};
	char err[CFG_ERR_LEN], ip[INET6_ADDRSTRLEN], longspec[300];
	struct config *c;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		c = fresh();
		is_int(set1(c, "listen", good[i].spec, err, sizeof(err)), 0, "listen %s parses", good[i].spec);
		is_int(c->nlisten, 1, "listen %s: one entry", good[i].spec);
		is_str(c->listen[0].spec, good[i].spec, "listen good[%zu]: spec kept for logs", i);
		is_int(c->listen[0].addr.ss_family, good[i].family, "listen %s: family", good[i].spec);
		is_str(listen_ip(&c->listen[0], ip, sizeof(ip)), good[i].ip, "listen %s: address", good[i].spec);
		is_int(listen_port(&c->listen[0]), good[i].port, "listen %s: port", good[i].spec);
		is_int(c->listen[0].addrlen, good[i].family == AF_INET6 ? sizeof(struct sockaddr_in6) :
		    sizeof(struct sockaddr_in), "listen %s: addrlen", good[i].spec);
		cfg_free(c);
	}
	c = fresh();
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		is_int(set1(c, "listen", bad[i].spec, err, sizeof(err)), -1, "listen '%s' fails", bad[i].spec);
		is_str(err, bad[i].err, "listen '%s' error text", bad[i].spec);
	}
	is_int(c->nlisten, 0, "failed listen lines add nothing");
	memset(longspec, '1', sizeof(longspec) - 1);
	longspec[sizeof(longspec) - 1] = '\0';
	is_int(set1(c, "listen", longspec, err, sizeof(err)), -1, "a 299-byte listen address fails");
	is_str(err, "t.conf:1: listen address too long", "too long listen error text");

	/* Several addresses; the same address twice (in any spelling) is an error. */
	is_int(set1(c, "listen", "9000", err, sizeof(err)), 0, "listen 9000");
	is_int(set1(c, "listen", "127.0.0.1:9000", err, sizeof(err)), 0, "listen 127.0.0.1:9000 too");
	is_int(set1(c, "listen", "[::1]:9000", err, sizeof(err)), 0, "listen [::1]:9000 too");
	is_int(set1(c, "listen", "*:9000", err, sizeof(err)), -1, "listen *:9000 repeats 9000");
	is_str(err, "t.conf:1: listen *:9000 given twice", "duplicate listen error text");
	is_int(set1(c, "listen", "127.0.0.1:9000", err, sizeof(err)), -1, "listen 127.0.0.1:9000 again");
	is_str(err, "t.conf:1: listen 127.0.0.1:9000 given twice", "duplicate listen error text (2)");
	is_int(c->nlisten, 3, "three distinct listen entries");
	cfg_free(c);

	c = fresh();
	for (int i = 0; i < CFG_MAX_LISTEN; i++) {
		char spec[16];

		snprintf(spec, sizeof(spec), "%d", 9000 + i);
		if (set1(c, "listen", spec, err, sizeof(err)) != 0)
			break;
	}
	is_int(c->nlisten, CFG_MAX_LISTEN, "%d listen lines fit", CFG_MAX_LISTEN);
	is_int(set1(c, "listen", "9999", err, sizeof(err)), -1, "one more listen line fails");
	is_str(err, "t.conf:1: too many listen lines (at most 16)", "too many listen error text");
	cfg_free(c);
}

static void
test_routes(void)
{
	static const struct { const char *value, *err; } bad[] = {
		{ "/a", "t.conf:1: route wants 'PATH KIND', got '/a'" },
		{ "/a echo extra", "t.conf:1: route wants 'PATH KIND', got '/a echo extra'" },
		{ "a echo", "t.conf:1: route path must start with '/', hold no '?' or '#' and be under 128 bytes" },
		{ "/a?b echo", "t.conf:1: route path must start with '/', hold no '?' or '#' and be under 128 bytes" },
		{ "/a#b echo", "t.conf:1: route path must start with '/', hold no '?' or '#' and be under 128 bytes" },
		/* The list of kinds that follows "(want " grows with the server. */
		{ "/a bogus", "t.conf:1: unknown route kind 'bogus' (want " },
		{ "/a ECHO", "t.conf:1: unknown route kind 'ECHO' (want " },
	};
	char err[CFG_ERR_LEN], longpath[140];
	const struct cfg_route *r;
	struct config *c = fresh();

	is_int(set1(c, "route", "/chat echo", err, sizeof(err)), 0, "route /chat echo");
	is_int(set1(c, "route", "/off  off  ", err, sizeof(err)), 0, "route /off off (extra spaces)");
	is_int(c->nroute, 2, "two routes");
	r = cfg_route_find(c, "/chat", 5);
	ok(r != NULL && r->kind == ROUTE_ECHO, "/chat finds the echo route");
	ok(cfg_route_find(c, "/chat/", 6) == NULL, "/chat/ is another path");
	ok(cfg_route_find(c, "/cha", 4) == NULL, "a prefix is not a match");
	ok(cfg_route_find(c, "/chatx", 5) == r, "the length given is what counts");
	ok(cfg_route_find(c, "/off", 4) == NULL, "an off route finds nothing");
	ok(cfg_route_find(c, "/echo", 5) == NULL, "no default /echo once routes are given");
	is_str(cfg_route_kind_name(ROUTE_ECHO), "echo", "kind name echo");
	is_str(cfg_route_kind_name(ROUTE_OFF), "off", "kind name off");

	/* Naming a path again changes its kind in place. */
	is_int(set1(c, "route", "/chat off", err, sizeof(err)), 0, "route /chat off");
	is_int(c->nroute, 2, "redefined route keeps the count");
	ok(cfg_route_find(c, "/chat", 5) == NULL, "/chat is off now");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = strlen(bad[i].err);

		is_int(set1(c, "route", bad[i].value, err, sizeof(err)), -1, "route '%s' fails", bad[i].value);
		if (bad[i].err[n - 1] == ' ')	/* a prefix */
			err[n < sizeof(err) ? n : sizeof(err) - 1] = '\0';
		is_str(err, bad[i].err, "route '%s' error text", bad[i].value);
	}
	is_int(c->nroute, 2, "failed route lines add nothing");
	memset(longpath, 'a', sizeof(longpath));
	longpath[0] = '/';
	snprintf(longpath + 128, sizeof(longpath) - 128, " echo");
	is_int(set1(c, "route", longpath, err, sizeof(err)), -1, "a 128-byte route path fails");
	longpath[127] = '\0';
	strcat(longpath, " echo");
	is_int(set1(c, "route", longpath, err, sizeof(err)), 0, "a 127-byte route path is fine");
	is_int(c->nroute, 3, "three routes");

	/* A bad kind for a path that exists must not drop another route. */
	is_int(set1(c, "route", "/chat bogus", err, sizeof(err)), -1, "route /chat bogus fails");
	is_int(c->nroute, 3, "failed redefinition keeps every route");
	ok(c->nroute >= 3 && strlen(c->route[2].path) == 127, "the last route is still there");
	ok(cfg_route_find(c, "/chat", 5) == NULL, "/chat is still off");
	cfg_free(c);

	c = fresh();
	for (int i = 0; i < CFG_MAX_ROUTES; i++) {
		char v[32];

		snprintf(v, sizeof(v), "/r%d echo", i);
		if (set1(c, "route", v, err, sizeof(err)) != 0)
			break;
	}
	is_int(c->nroute, CFG_MAX_ROUTES, "%d routes fit", CFG_MAX_ROUTES);
	is_int(set1(c, "route", "/more echo", err, sizeof(err)), -1, "one more route fails");
	is_str(err, "t.conf:1: too many routes (at most 16)", "too many routes error text");
	is_int(set1(c, "route", "/r3 off", err, sizeof(err)), 0, "a full table can still redefine");
	ok(cfg_route_find(c, "/r3", 3) == NULL, "/r3 is off");
	cfg_free(c);
}

static void
test_load_file(void)
{
	char err[CFG_ERR_LEN], want[PATH_MAX + 128], longline[5000];
	const char *p;
	struct config *c;

	p = write_file(
	    "# roomd test config\n"
	    "\n"
	    "   # an indented comment\n"
	    "workers 3\n"
	    "\tworkers   2   # later lines win; trailing comment\n"
	    "listen 127.0.0.1:9100\n"
	    "listen \"[::1]:9100\"\n"
	    "pidfile \"/tmp/with space/roomd.pid\"   # quoted, with a space\n"
	    "log_file /tmp/a#b.log\n"
	    "user \"nobody # not a comment\"\n"
	    "log_level debug\r\n"
	    "shutdown_timeout 1500ms\n"
	    "max_request_size 16k\n"
	    "route /chat echo\n"
	    "route /old off\n"
	    "\n"
	    "# the end\n");
	c = fresh();
	err[0] = '\0';
	is_int(cfg_load_file(c, p, err, sizeof(err)), 0, "a good file loads");
	is_str(err, "", "no error text");
	is_str(c->path, p, "path recorded");
	is_int(c->workers, 2, "workers from the later line");
	is_int(c->nlisten, 2, "two listen lines");
	is_int(listen_port(&c->listen[1]), 9100, "quoted ipv6 listen");
	is_int(c->listen[1].addr.ss_family, AF_INET6, "quoted ipv6 listen is ipv6");
	is_str(c->pidfile, "/tmp/with space/roomd.pid", "quoted value with a space");
	is_str(c->log_file, "/tmp/a#b.log", "'#' inside a word is not a comment");
	is_str(c->user, "nobody # not a comment", "'#' inside quotes is not a comment");
	is_int(c->log_level, LOG_LVL_DEBUG, "CRLF line ending");
	is_int(c->shutdown_timeout, 1500, "duration in ms");
	is_int(c->max_request_size, 16384, "size in k");
	is_int(c->nroute, 2, "two routes");
	is_int(c->max_connections, 100000, "unset keys keep defaults");
	cfg_free(c);

	/* An empty file and a comments-only file are fine. */
	c = fresh();
	is_int(cfg_load_file(c, write_file(""), err, sizeof(err)), 0, "an empty file loads");
	is_int(cfg_load_file(c, write_file("# nothing\n\n   \n\t\n"), err, sizeof(err)), 0,
	    "a comments-only file loads");
	is_int(c->workers, 0, "and sets nothing");
	is_int(cfg_load_file(c, write_file("workers 5"), err, sizeof(err)), 0,
	    "a last line without a newline loads");
	is_int(c->workers, 5, "and is applied");
	cfg_free(c);

	/* Errors name the file and the line. */
	{
		static const struct { const char *text; int line; const char *msg; } cases[] = {
			{ "workers 2\n\n# c\nbogus 1\n", 4, "unknown key 'bogus'" },
			{ "\n\n\n\n\nworkers abc\n", 6, "workers wants a whole number, got 'abc'" },
			{ "workers 2\nworkers 300\n", 2, "workers 300 is out of range (0 to 256)" },
			{ "# x\nlisten 127.0.0.1:0\n", 2, "bad port in listen address '127.0.0.1:0' (want 1-65535)" },
			{ "listen 9000\nlisten [::1]9000\n", 2, "bad listen address '[::1]9000' (want [ipv6]:port)" },
			{ "listen 9000\nlisten *:9000\n", 2, "listen *:9000 given twice" },
			{ "ping_interval 5 s\n", 1,
			  "ping_interval wants a duration such as 30, 30s, 500ms or 2m, got '5 s'" },
			{ "\nclose_timeout 10x # comment\n", 2,
			  "close_timeout wants a duration such as 30, 30s, 500ms or 2m, got '10x'" },
			{ "max_message_size 1t\n", 1,
			  "max_message_size wants a size such as 8192, 64k or 1m, got '1t'" },
			{ "daemonize perhaps\n", 1, "daemonize wants yes or no, got 'perhaps'" },
			{ "\nuser \"nobody\n", 2, "unterminated quoted value for 'user'" },
			{ "user \"nobody\" x\n", 1, "text after quoted value for 'user'" },
			{ "workers\n", 1, "'workers' wants a value" },
			{ "workers    # only a comment\n", 1, "'workers' wants a value" },
			{ "user \"\"\n", 1, "user wants a value" },
			{ "route /x\n", 1, "route wants 'PATH KIND', got '/x'" },
			{ "workers 2\r\nworkers 2x\r\n", 2, "workers wants a whole number, got '2x'" },
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			c = fresh();
			p = write_file(cases[i].text);
			snprintf(want, sizeof(want), "%s:%d: %s", p, cases[i].line, cases[i].msg);
			err[0] = '\0';
			is_int(cfg_load_file(c, p, err, sizeof(err)), -1, "bad file %zu fails", i);
			is_str(err, want, "bad file %zu: '%s'", i, cases[i].msg);
			ok(c->path == NULL, "bad file %zu: no path recorded", i);
			cfg_free(c);
			/* The same text without a file: the same error, named as asked. */
			c = fresh();
			snprintf(want, sizeof(want), "t.conf:%d: %s", cases[i].line, cases[i].msg);
			err[0] = '\0';
			is_int(cfg_load_text(c, "t.conf", cases[i].text, strlen(cases[i].text), err, sizeof(err)), -1,
			    "bad text %zu fails", i);
			is_str(err, want, "bad text %zu: '%s'", i, cases[i].msg);
			cfg_free(c);
		}
	}

	/* Line length: 4094 bytes plus the newline fit; one more does not. */
	memset(longline, 0, sizeof(longline));
	memcpy(longline, "user ", 5);
	memset(longline + 5, 'u', 4094 - 5);
	strcat(longline, "\nworkers 2\n");
	c = fresh();
	is_int(cfg_load_file(c, write_file(longline), err, sizeof(err)), 0, "a 4094-byte line fits");
	is_int((int)strlen(c->user), 4089, "the whole long value is kept");
	is_int(c->workers, 2, "and the next line is read");
	cfg_free(c);
	memset(longline, 0, sizeof(longline));
	memcpy(longline, "workers 2\n# ", 12);
	memset(longline + 12, 'x', 4200);
	strcat(longline, "\nworkers 3\n");
	c = fresh();
	p = write_file(longline);
	snprintf(want, sizeof(want), "%s:2: line longer than 4094 bytes", p);
	is_int(cfg_load_file(c, p, err, sizeof(err)), -1, "a 4210-byte line fails");
	is_str(err, want, "too long line error text");
	cfg_free(c);

	/* A NUL byte is an error where it is, not the end of the text. */
	c = fresh();
	is_int(cfg_load_text(c, "t.conf", "workers 2\nuser a\0b\nworkers 3\n", 30, err, sizeof(err)), -1,
	    "a NUL byte in a line fails");
	is_str(err, "t.conf:2: NUL byte in the line", "NUL error text");
	is_int(cfg_load_text(c, "t.conf", "workers 4\n\0", 11, err, sizeof(err)), -1, "a NUL byte alone fails");
	is_str(err, "t.conf:2: NUL byte in the line", "on its line");
	cfg_free(c);
	/* Text: only len bytes are read, no path is recorded, a line may end the text. */
	c = fresh();
	is_int(cfg_load_text(c, "t.conf", "workers 7\nworkers x", 9, err, sizeof(err)), 0, "only len bytes are read");
	is_int(c->workers, 7, "the last line needs no newline");
	ok(c->path == NULL, "text records no path");
	is_int(cfg_load_text(c, "t.conf", "", 0, err, sizeof(err)), 0, "empty text");
	is_int(cfg_load_text(c, "t.conf", "\n\n\r\n", 4, err, sizeof(err)), 0, "blank lines");
	is_int(cfg_load_text(c, "other.conf", "\n\nbogus 1", 9, err, sizeof(err)), -1, "an error on line 3");
	is_str(err, "other.conf:3: unknown key 'bogus'", "named as asked, counted from 1");
	cfg_free(c);
	/* A file over 1 MiB is refused before parsing (a device or a log named by mistake). */
	{
		size_t big = (1 << 20) + 1;
		char *text = malloc(big + 1);

		if (text == NULL) {
			printf("Bail out! out of memory\n");
			exit(1);
		}
		memset(text, '\n', big);
		text[big] = '\0';
		c = fresh();
		p = write_file(text);
		snprintf(want, sizeof(want), "%s: larger than 1048576 bytes", p);
		is_int(cfg_load_file(c, p, err, sizeof(err)), -1, "a file of 1 MiB + 1 fails");
		is_str(err, want, "size error text");
		text[big - 1] = '\0';
		p = write_file(text);
		is_int(cfg_load_file(c, p, err, sizeof(err)), 0, "1 MiB of blank lines loads");
		cfg_free(c);
		free(text);
	}

	/* A file that is not there. */
	c = fresh();
	snprintf(want, sizeof(want), "%s/nonexistent.conf", tmpdir);
	is_int(cfg_load_file(c, want, err, sizeof(err)), -1, "a missing file fails");
	snprintf(longline, sizeof(longline), "%s: cannot open: No such file or directory", want);
	is_str(err, longline, "missing file error text has no line");
	cfg_free(c);
}

static void
test_finish(void)
{
	char err[CFG_ERR_LEN], want[PATH_MAX + 128], ip[INET6_ADDRSTRLEN];
	const struct cfg_route *r;
	struct config *c = fresh();
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *p;

	is_int(cfg_finish(c, err, sizeof(err)), 0, "defaults finish");
	is_int(c->nlisten, 1, "default listen added");
	is_str(c->listen[0].spec, "8080", "default listen is 8080");
	is_str(listen_ip(&c->listen[0], ip, sizeof(ip)), "0.0.0.0", "on every ipv4 address");
	is_int(listen_port(&c->listen[0]), 8080, "port 8080");
	is_int(c->workers, ncpu < 1 ? 1 : ncpu > 256 ? 256 : ncpu, "workers 0 becomes the CPU count");
	ok(c->nroute >= 1, "default routes added");
	r = cfg_route_find(c, "/echo", 5);
	ok(r != NULL && r->kind == ROUTE_ECHO, "default routes include /echo echo");
	cfg_free(c);

	/* Given values are kept. */
	c = fresh();
	ok1(set1(c, "listen", "127.0.0.1:9200", err, sizeof(err)) == 0 &&
	    set1(c, "workers", "7", err, sizeof(err)) == 0 &&
	    set1(c, "route", "/chat echo", err, sizeof(err)) == 0, "explicit settings");
	is_int(cfg_finish(c, err, sizeof(err)), 0, "explicit settings finish");
	is_int(c->nlisten, 1, "no default listen added");
	is_int(listen_port(&c->listen[0]), 9200, "the given listen stays");
	is_int(c->workers, 7, "workers 7 stays");
	is_int(c->nroute, 1, "no default route added");
	ok(cfg_route_find(c, "/echo", 5) == NULL, "no /echo");
	cfg_free(c);

	/* ping_timeout must exceed ping_interval. */
	c = fresh();
	ok1(set1(c, "ping_interval", "30s", err, sizeof(err)) == 0 &&
	    set1(c, "ping_timeout", "30s", err, sizeof(err)) == 0, "ping_timeout == ping_interval");
	is_int(cfg_finish(c, err, sizeof(err)), -1, "equal ping_timeout is an error");
	is_str(err, "config: ping_timeout (30000ms) must be longer than ping_interval (30000ms)",
	    "ping error text, no file");
	ok1(set1(c, "ping_timeout", "10s", err, sizeof(err)) == 0, "ping_timeout < ping_interval");
	is_int(cfg_finish(c, err, sizeof(err)), -1, "shorter ping_timeout is an error");
	ok1(set1(c, "ping_timeout", "30001ms", err, sizeof(err)) == 0, "ping_timeout just longer");
	is_int(cfg_finish(c, err, sizeof(err)), 0, "longer ping_timeout is fine");
	cfg_free(c);

	c = fresh();
	p = write_file("ping_interval 1m\nping_timeout 1m\n");
	is_int(cfg_load_file(c, p, err, sizeof(err)), 0, "file with equal pings loads");
	is_int(cfg_finish(c, err, sizeof(err)), -1, "but does not finish");
	snprintf(want, sizeof(want), "%s: ping_timeout (60000ms) must be longer than ping_interval (60000ms)", p);
	is_str(err, want, "cross-check error names the file, no line");
	cfg_free(c);

	/* daemonize needs a log file. */
	c = fresh();
	ok1(set1(c, "daemonize", "yes", err, sizeof(err)) == 0, "daemonize yes");
	is_int(cfg_finish(c, err, sizeof(err)), -1, "daemonize with the stderr log is an error");
	is_str(err, "config: daemonize yes needs a log_file (a path or syslog): stderr is closed",
	    "daemonize error text");
	ok1(set1(c, "log_file", "/tmp/roomd.log", err, sizeof(err)) == 0, "log_file a path");
	is_int(cfg_finish(c, err, sizeof(err)), 0, "daemonize with a log file is fine");
	ok1(set1(c, "log_file", "syslog", err, sizeof(err)) == 0, "log_file syslog");
	is_int(cfg_finish(c, err, sizeof(err)), 0, "daemonize with syslog is fine");
	cfg_free(c);
}

static void
test_dump(void)
{
	char err[CFG_ERR_LEN];
	struct config *c = fresh(), *c2;
	char *d, *d2;
	const char *p;

	ok1(set1(c, "listen", "127.0.0.1:9300", err, sizeof(err)) == 0 &&
	    set1(c, "listen", "[::1]:9300", err, sizeof(err)) == 0 &&
	    set1(c, "workers", "3", err, sizeof(err)) == 0 &&
	    set1(c, "pidfile", "/tmp/with space/x.pid", err, sizeof(err)) == 0 &&
	    set1(c, "shutdown_timeout", "1500ms", err, sizeof(err)) == 0 &&
	    set1(c, "close_timeout", "2m", err, sizeof(err)) == 0 &&
	    set1(c, "max_request_size", "16k", err, sizeof(err)) == 0 &&
	    set1(c, "route", "/chat echo", err, sizeof(err)) == 0 &&
	    set1(c, "route", "/gone off", err, sizeof(err)) == 0 &&
	    cfg_finish(c, err, sizeof(err)) == 0, "settings for the dump");
	d = dump_str(c);
	ok(strstr(d, "listen 127.0.0.1:9300\nlisten [::1]:9300\n") != NULL, "dump: listen lines");
	ok(strstr(d, "\nworkers 3\n") != NULL, "dump: workers");
	ok(strstr(d, "\n# user (unset)\n") != NULL, "dump: unset user as a comment");
	ok(strstr(d, "\ndaemonize no\n") != NULL, "dump: bool as yes/no");
	ok(strstr(d, "\npidfile \"/tmp/with space/x.pid\"\n") != NULL, "dump: value with a space quoted");
	ok(strstr(d, "\nlog_level info\n") != NULL, "dump: level by name");
	ok(strstr(d, "\nshutdown_timeout 1500ms\n") != NULL, "dump: ms duration");
	ok(strstr(d, "\nclose_timeout 120s\n") != NULL, "dump: whole seconds");
	ok(strstr(d, "\nmax_request_size 16384\n") != NULL, "dump: size in bytes");
	ok(strstr(d, "\nroute /chat echo\nroute /gone off\n") != NULL, "dump: routes");

	/* The dump is itself a config that loads to the same settings. */
	p = write_file(d);
	c2 = fresh();
	is_int(cfg_load_file(c2, p, err, sizeof(err)), 0, "the dump loads back");
	if (err[0] != '\0')
		printf("# %s\n", err);
	is_int(cfg_finish(c2, err, sizeof(err)), 0, "and finishes");
	d2 = dump_str(c2);
	is_str(d2, d, "dump, load, dump gives the same text");
	free(d);
	free(d2);
	cfg_free(c);
	cfg_free(c2);

	/*
	 * Values that only read back one way (fuzz_config found the first two):
	 * a '"' with a space cannot be quoted, so it stays bare; a value longer
	 * than 511 bytes was cut; white space at an end or a leading '#' needs
	 * quotes.
	 */
	{
		static const struct { const char *line, *dumped; } cases[] = {
			{ "user n\" Security", "\nuser n\" Security\n" },
			{ "user a\"b", "\nuser a\"b\n" },
			{ "user \" lead\"", "\nuser \" lead\"\n" },
			{ "user \"trail\t\"", "\nuser \"trail\t\"\n" },
			{ "user \"#x\"", "\nuser \"#x\"\n" },
			{ "user a#b", "\nuser \"a#b\"\n" },
		};
		char line[700], want[700];

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) + 1; i++) {
			if (i < sizeof(cases) / sizeof(cases[0])) {
				snprintf(line, sizeof(line), "%s", cases[i].line);
				snprintf(want, sizeof(want), "%s", cases[i].dumped);
			} else {
				memset(line, 0, sizeof(line));
				memcpy(line, "user ", 5);
				memset(line + 5, 'u', 600);
				snprintf(want, sizeof(want), "\n%s\n", line);
			}
			c = fresh();
			c2 = fresh();
			ok1(cfg_load_text(c, "t.conf", line, strlen(line), err, sizeof(err)) == 0 &&
			    cfg_finish(c, err, sizeof(err)) == 0, "dump case %zu loads", i);
			d = dump_str(c);
			ok(strstr(d, want) != NULL, "dump case %zu: written as %.*s", i, i < 6 ? (int)strlen(want) - 2 : 9,
			    i < 6 ? want + 1 : "600 bytes");
			ok1(cfg_load_text(c2, "t.conf", d, strlen(d), err, sizeof(err)) == 0 &&
			    cfg_finish(c2, err, sizeof(err)) == 0, "dump case %zu: the dump loads", i);
			d2 = dump_str(c2);
			is_str(d2, d, "dump case %zu: dump, load, dump gives the same text", i);
			free(d);
			free(d2);
			cfg_free(c);
			cfg_free(c2);
		}
	}
}

static void
test_keep_restart_only(void)
{
	char err[CFG_ERR_LEN], logpath[PATH_MAX];
	struct config *cur = fresh(), *next = fresh(), *same;
	char *log;

	ok1(set1(cur, "listen", "127.0.0.1:9400", err, sizeof(err)) == 0 &&
	    set1(cur, "workers", "2", err, sizeof(err)) == 0 &&
	    set1(cur, "pidfile", "/tmp/a.pid", err, sizeof(err)) == 0 &&
	    set1(cur, "shutdown_timeout", "5s", err, sizeof(err)) == 0 &&
	    cfg_finish(cur, err, sizeof(err)) == 0, "current config");
	ok1(set1(next, "listen", "127.0.0.1:9401", err, sizeof(err)) == 0 &&
	    set1(next, "workers", "4", err, sizeof(err)) == 0 &&
	    set1(next, "pidfile", "/tmp/b.pid", err, sizeof(err)) == 0 &&
	    set1(next, "user", "nobody", err, sizeof(err)) == 0 &&
	    set1(next, "daemonize", "yes", err, sizeof(err)) == 0 &&
	    set1(next, "log_file", "/tmp/roomd-next.log", err, sizeof(err)) == 0 &&
	    set1(next, "log_level", "debug", err, sizeof(err)) == 0 &&
	    set1(next, "shutdown_timeout", "20s", err, sizeof(err)) == 0 &&
	    set1(next, "route", "/chat echo", err, sizeof(err)) == 0 &&
	    cfg_finish(next, err, sizeof(err)) == 0, "next config");

	/* The warnings go to the log: capture them in a file. */
	snprintf(logpath, sizeof(logpath), "%s/reload.log", tmpdir);
	ok1(log_open(logpath) == 0, "log to a file");
	is_int(cfg_keep_restart_only(cur, next), 5, "five restart-only keys differ");
	is_int(next->workers, 2, "workers kept");
	is_int(next->nlisten, 1, "listen count kept");
	is_int(listen_port(&next->listen[0]), 9400, "listen address kept");
	is_str(next->listen[0].spec, "127.0.0.1:9400", "listen spec kept");
	is_str(next->pidfile, "/tmp/a.pid", "pidfile kept");
	ok(next->pidfile != cur->pidfile, "pidfile copied, not shared");
	ok(next->user == NULL, "user kept (unset)");
	is_int(next->daemonize, 0, "daemonize kept");
	is_str(next->log_file, "/tmp/roomd-next.log", "log_file reloads");
	is_int(next->log_level, LOG_LVL_DEBUG, "log_level reloads");
	is_int(next->shutdown_timeout, 20000, "shutdown_timeout reloads");
	ok(cfg_route_find(next, "/chat", 5) != NULL && cfg_route_find(next, "/echo", 5) == NULL,
	    "routes reload");
	log_close();
	log = slurp(logpath);
	ok(strstr(log, "[warning] reload: workers changed from '2' to '4'; it takes effect after a restart, "
	    "keeping '2'") != NULL, "warning for workers");
	ok(strstr(log, "[warning] reload: listen changed; it takes effect after a restart, "
	    "keeping the old addresses") != NULL, "warning for listen");
	ok(strstr(log, "reload: pidfile changed from '/tmp/a.pid' to '/tmp/b.pid'") != NULL,
	    "warning for pidfile");
	ok(strstr(log, "reload: user changed from '' to 'nobody'") != NULL, "warning for user");
	ok(strstr(log, "reload: daemonize changed from 'no' to 'yes'") != NULL, "warning for daemonize");
	ok(strstr(log, "log_level") == NULL && strstr(log, "shutdown_timeout") == NULL,
	    "no warning for reloadable keys");
	free(log);

	/* Nothing restart-only changed: nothing to say. */
	same = fresh();
	ok1(set1(same, "listen", "127.0.0.1:9400", err, sizeof(err)) == 0 &&
	    set1(same, "workers", "2", err, sizeof(err)) == 0 &&
	    set1(same, "pidfile", "/tmp/a.pid", err, sizeof(err)) == 0 &&
	    set1(same, "log_level", "error", err, sizeof(err)) == 0 &&
	    cfg_finish(same, err, sizeof(err)) == 0, "same restart-only settings");
	ok1(log_open(logpath) == 0, "log to a file again");
	is_int(cfg_keep_restart_only(cur, same), 0, "no restart-only key differs");
	is_int(same->log_level, LOG_LVL_ERROR, "reloadable key untouched");
	log_close();
	cfg_free(same);

	/* And in reverse: a key set now but unset in the new file is kept. */
	ok1(set1(cur, "user", "nobody", err, sizeof(err)) == 0, "user set in the current config");
	same = fresh();
	ok1(set1(same, "listen", "127.0.0.1:9400", err, sizeof(err)) == 0 &&
	    set1(same, "workers", "2", err, sizeof(err)) == 0 &&
	    cfg_finish(same, err, sizeof(err)) == 0, "next config without user or pidfile");
	ok1(log_open(logpath) == 0, "log to a file again");
	is_int(cfg_keep_restart_only(cur, same), 2, "user and pidfile differ");
	is_str(same->user, "nobody", "user kept");
	is_str(same->pidfile, "/tmp/a.pid", "pidfile kept");
	log_close();
	cfg_free(same);

	unlink(logpath);
	cfg_free(cur);
	cfg_free(next);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_defaults();
	test_duration();
	test_size();
	test_set_errors();
	test_listen();
	test_routes();
	test_load_file();
	test_finish();
	test_dump();
	test_keep_restart_only();

	for (int i = 0; i < nfiles; i++) {
		char p[PATH_MAX];

		snprintf(p, sizeof(p), "%s/f%d.conf", tmpdir, i);
		unlink(p);
	}
	rmdir(tmpdir);
	return tap_done();
}
