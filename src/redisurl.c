/*
 * redisurl.c: the `redis` setting: one Redis, a Sentinel-managed master or
 * a Redis Cluster, with its credentials, database and TLS. No I/O.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "redisurl.h"

/* Percent-decode p[0..n) into out (NUL-terminated); -1 if malformed or too long. */
static int
decode(const char *p, size_t n, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)p[i];

		if (c == '%') {
			int hi = i + 2 < n ? http_hex_digit((unsigned char)p[i + 1]) : -1;
			int lo = i + 2 < n ? http_hex_digit((unsigned char)p[i + 2]) : -1;

			if (hi < 0 || lo < 0 || (c = hi * 16 + lo) == 0)
				return -1;
			i += 2;
		}
		if (o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

/* "host[:port]" or "[v6]:port" in p[0..n); -1 with why on error. */
static int
parse_node(const char *p, size_t n, int defport, struct redisurl_node *nd, const char *v, char *why, size_t whylen)
{
	const char *end = p + n, *colon = NULL, *hs = p, *he;
	char *e;
	long port = defport;

	if (n > 0 && p[0] == '[') {
		const char *rb = memchr(p, ']', n);

		if (rb == NULL) {
			snprintf(why, whylen, "bad redis host in '%s'", v);
			return -1;
		}
		hs = p + 1;
		he = rb;
		if (rb + 1 < end) {
			if (rb[1] != ':') {
				snprintf(why, whylen, "bad redis host in '%s'", v);
				return -1;
			}
			colon = rb + 1;
		}
	} else {
		colon = memchr(p, ':', n);
		he = colon != NULL ? colon : end;
	}
	if (he == hs || (size_t)(he - hs) >= sizeof(nd->host) || memchr(hs, '/', (size_t)(he - hs)) != NULL) {
		snprintf(why, whylen, "bad redis host in '%s'", v);
		return -1;
	}
	if (colon != NULL) {
		char digits[8];
		size_t dl = (size_t)(end - colon - 1);

		if (dl == 0 || dl >= sizeof(digits)) {
			snprintf(why, whylen, "bad redis port in '%s' (want 1-65535)", v);
			return -1;
		}
		memcpy(digits, colon + 1, dl);
		digits[dl] = '\0';
		errno = 0;
		port = strtol(digits, &e, 10);
		if (*e != '\0' || errno != 0 || port < 1 || port > 65535) {
			snprintf(why, whylen, "bad redis port in '%s' (want 1-65535)", v);
			return -1;
		}
	}
	memcpy(nd->host, hs, (size_t)(he - hs));
	nd->host[he - hs] = '\0';
	nd->port = (int)port;
	return 0;
}

/* "N" in p[0..n) as a database number; -1 with why on error. */
static int
parse_db(const char *p, size_t n, int *db, const char *v, char *why, size_t whylen)
{
	long d = 0;

	if (n == 0)
		return 0;
	if (n > 7) {
		snprintf(why, whylen, "bad redis database number in '%s'", v);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9') {
			snprintf(why, whylen, "bad redis database number in '%s'", v);
			return -1;
		}
		d = d * 10 + (p[i] - '0');
	}
	*db = (int)d;
	return 0;
}

int
redisurl_parse(const char *v, struct redisurl *r, char *why, size_t whylen)
{
	static const char usage[] = "redis wants redis://[[user:]password@]host[:port][/db], rediss://..., "
	    "sentinel://[[user:]password@]host[:port],.../master[/db], cluster://[[user:]password@]host[:port],... "
	    "or a socket path";
	const char *p, *at, *slash, *hosts_end, *q;
	const char *in = v;	/* what is parsed; v is what messages quote */
	char shown[1024];
	int defport = 6379;

	memset(r, 0, sizeof(*r));
	/* Messages quote the value with its credentials masked. */
	if ((p = strstr(v, "://")) != NULL) {
		slash = strchr(p + 3, '/');
		at = NULL;
		for (q = p + 3; *q != '\0' && (slash == NULL || q < slash); q++)
			if (*q == '@')
				at = q;
		if (at != NULL) {
			snprintf(shown, sizeof(shown), "%.*s***%s", (int)(p + 3 - v), v, at);
			v = shown;
		}
	}
	p = NULL;
	if (in[0] == '/') {
		if (strlen(in) >= sizeof(r->path)) {
			snprintf(why, whylen, "redis socket path is too long (at most %zu bytes)", sizeof(r->path) - 1);
			return -1;
		}
		r->is_unix = 1;
		snprintf(r->path, sizeof(r->path), "%s", in);
		return 0;
	}
	if (strncmp(in, "redis://", 8) == 0)
		p = in + 8;
	else if (strncmp(in, "rediss://", 9) == 0) {
		p = in + 9;
		r->tls = 1;
	} else if (strncmp(in, "sentinel://", 11) == 0) {
		p = in + 11;
		r->mode = REDISURL_SENTINEL;
		defport = 26379;
	} else if (strncmp(in, "cluster://", 10) == 0) {
		p = in + 10;
		r->mode = REDISURL_CLUSTER;
	} else {
		snprintf(why, whylen, "%s; got '%s'", usage, v);
		return -1;
	}
	/* Credentials: up to the last '@' before the path. */
	slash = strchr(p, '/');
	at = NULL;
	for (q = p; *q != '\0' && (slash == NULL || q < slash); q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));

		if (colon != NULL) {
			if (decode(p, (size_t)(colon - p), r->user, sizeof(r->user)) == -1) {
				snprintf(why, whylen, "bad redis user in '%s' (too long, or a bad %%-escape)", v);
				return -1;
			}
			p = colon + 1;
		}
		if (decode(p, (size_t)(at - p), r->password, sizeof(r->password)) == -1) {
			snprintf(why, whylen, "bad redis password (too long, or a bad %%-escape)");
			return -1;
		}
		if (r->user[0] != '\0' && r->password[0] == '\0') {
			snprintf(why, whylen, "redis user '%s' needs a password in '%s'", r->user, v);
			return -1;
		}
		p = at + 1;
	}
	hosts_end = slash != NULL ? slash : p + strlen(p);
	/* The hosts, separated by commas; one only for redis://. */
	while (p < hosts_end) {
		const char *comma = memchr(p, ',', (size_t)(hosts_end - p));
		const char *e = comma != NULL ? comma : hosts_end;

		if (r->nnodes == REDISURL_NODES) {
			snprintf(why, whylen, "more than %d redis hosts in '%s'", REDISURL_NODES, v);
			return -1;
		}
		if (parse_node(p, (size_t)(e - p), defport, &r->node[r->nnodes], v, why, whylen) == -1)
			return -1;
		r->nnodes++;
		p = comma != NULL ? comma + 1 : hosts_end;
		if (comma != NULL && p == hosts_end) {
			snprintf(why, whylen, "bad redis host in '%s'", v);
			return -1;
		}
	}
	if (r->nnodes == 0) {
		snprintf(why, whylen, "bad redis host in '%s'", v);
		return -1;
	}
	if (r->mode == REDISURL_ONE && r->nnodes > 1) {
		snprintf(why, whylen, "several hosts in '%s': name sentinels with sentinel:// or cluster nodes "
		    "with cluster://", v);
		return -1;
	}
	/* The path: /db, /master[/db], or nothing for a cluster (one database only). */
	p = slash != NULL ? slash + 1 : hosts_end;
	if (r->mode == REDISURL_SENTINEL) {
		const char *s2 = strchr(p, '/');
		size_t ml = s2 != NULL ? (size_t)(s2 - p) : strlen(p);

		if (ml == 0 || ml >= sizeof(r->master)) {
			snprintf(why, whylen, "sentinel:// wants the master's name after the hosts: "
			    "sentinel://host:26379,.../mymaster in '%s'", v);
			return -1;
		}
		memcpy(r->master, p, ml);
		r->master[ml] = '\0';
		p = s2 != NULL ? s2 + 1 : p + ml;
	}
	if (r->mode == REDISURL_CLUSTER && *p != '\0' && strcmp(p, "0") != 0) {
		snprintf(why, whylen, "a Redis Cluster has database 0 only: drop '/%s' from '%s'", p, v);
		return -1;
	}
	return parse_db(p, strlen(p), &r->db, v, why, whylen);
}

static size_t
put_node(char *buf, size_t len, const struct redisurl_node *n)
{
	int k = strchr(n->host, ':') != NULL ? snprintf(buf, len, "[%s]:%d", n->host, n->port) :
	    snprintf(buf, len, "%s:%d", n->host, n->port);

	return k < 0 ? 0 : (size_t)k >= len ? len - 1 : (size_t)k;
}

void
redisurl_describe(const struct redisurl *r, char *buf, size_t len)
{
	size_t o = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (r->is_unix) {
		snprintf(buf, len, "unix:%s db %d", r->path, r->db);
		return;
	}
	if (r->mode == REDISURL_SENTINEL)
		o = (size_t)snprintf(buf, len, "master %s via sentinels ", r->master);
	else if (r->mode == REDISURL_CLUSTER)
		o = (size_t)snprintf(buf, len, "cluster via ");
	for (int i = 0; i < r->nnodes && o + 1 < len; i++) {
		if (i > 0)
			buf[o++] = ',';
		o += put_node(buf + o, len - o, &r->node[i]);
	}
	if (o + 1 < len && r->mode != REDISURL_CLUSTER)
		o += (size_t)snprintf(buf + o, len - o, " db %d", r->db);
	if (o + 1 < len && r->user[0] != '\0')
		o += (size_t)snprintf(buf + o, len - o, " user %s", r->user);
	if (o + 1 < len && r->tls)
		(void)snprintf(buf + o, len - o, " (tls)");
}
