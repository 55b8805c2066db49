/*
 * resp.c: commands in RESP, Cluster hash slots, redirections and slot maps.
 * No I/O: the links (rlink.c) and the topology (bus.c) use these on
 * buffers and on the replies hiredis's reader builds.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jbuf.h"
#include "resp.h"

size_t
resp_size(int argc, const size_t *argl)
{
	size_t need = 16;	/* "*N\r\n" */

	for (int i = 0; i < argc; i++) {
		if (argl[i] > SIZE_MAX / 4 - need - 32)
			return SIZE_MAX;
		need += argl[i] + 32;	/* "$N\r\n" ... "\r\n" */
	}
	return need;
}

/* "$<n>\r\n<s>\r\n" at o; returns the end. */
static char *
bulk(char *o, const char *s, size_t n)
{
	*o++ = '$';
	o += jbuf_itoa(o, (long long)n);	/* n is under SIZE_MAX / 4 */
	*o++ = '\r';
	*o++ = '\n';
	if (n > 0)
		memcpy(o, s, n);
	o[n] = '\r';
	o[n + 1] = '\n';
	return o + n + 2;
}

size_t
resp_format(char *out, int argc, const char *const *argv, const size_t *argl)
{
	char *o = out;

	*o++ = '*';
	o += jbuf_itoa(o, argc);
	*o++ = '\r';
	*o++ = '\n';
	for (int i = 0; i < argc; i++)
		o = bulk(o, argv[i], argl[i]);
	return (size_t)(o - out);
}

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster specifies. */
static unsigned
crc16(const char *p, size_t n)
{
	unsigned crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (unsigned)(unsigned char)p[i] << 8;
		for (int b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
		crc &= 0xffff;
	}
	return crc;
}

unsigned
resp_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len), *close;

	if (open != NULL) {
		size_t rest = len - (size_t)(open - key) - 1;

		close = memchr(open + 1, '}', rest);
		if (close != NULL && close > open + 1)
			return crc16(open + 1, (size_t)(close - open - 1)) & (RESP_SLOTS - 1);
	}
	return crc16(key, len) & (RESP_SLOTS - 1);
}

/* A host name or address as a node gives it: printable, without spaces, and fits. */
static int
host_ok(const char *p, size_t n)
{
	if (n == 0 || n >= RESP_HOST_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= ' ' || p[i] >= 0x7f)
			return 0;
	return 1;
}

/* "host:port" (the host may hold colons: IPv6) into out; -1 if it is not one. */
static int
host_port(const char *p, size_t n, char *host, size_t hostlen, int *port)
{
	const char *colon = NULL;
	long v = 0;

	for (size_t i = 0; i < n; i++)
		if (p[i] == ':')
			colon = p + i;
	if (colon == NULL || !host_ok(p, (size_t)(colon - p)) || (size_t)(colon - p) >= hostlen ||
	    colon + 1 == p + n)
		return -1;
	for (const char *d = colon + 1; d < p + n; d++) {
		if (*d < '0' || *d > '9' || (v = v * 10 + (*d - '0')) > 65535)
			return -1;
	}
	if (v < 1)
		return -1;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	*port = (int)v;
	return 0;
}

int
resp_redirect(const char *err, size_t len, struct resp_redirect *out)
{
	const char *p, *end = err + len, *sp;
	unsigned long slot = 0;

	memset(out, 0, sizeof(*out));
	if (len > 6 && memcmp(err, "MOVED ", 6) == 0)
		p = err + 6;
	else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
		p = err + 4;
		out->ask = 1;
	} else
		return -1;
	if ((sp = memchr(p, ' ', (size_t)(end - p))) == NULL || sp == p)
		return -1;
	for (const char *d = p; d < sp; d++) {
		if (*d < '0' || *d > '9' || (slot = slot * 10 + (unsigned long)(*d - '0')) >= RESP_SLOTS)
			return -1;
	}
	out->slot = (unsigned)slot;
	return host_port(sp + 1, (size_t)(end - sp - 1), out->host, sizeof(out->host), &out->port);
}

/* A slot number given as an integer or as a string of digits; -1 if neither. */
static long
slot_of(const redisReply *r)
{
	char *e;
	long v;

	if (r->type == REDIS_REPLY_INTEGER)
		v = (long)r->integer;
	else if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < 8) {
		errno = 0;
		v = strtol(r->str, &e, 10);
		if (errno != 0 || *e != '\0')
			return -1;
	} else
		return -1;
	return v >= 0 && v < RESP_SLOTS ? v : -1;
}

/* A map given as a flat array of names and values: the value of name, or NULL. */
static const redisReply *
field(const redisReply *map, const char *name)
{
	if (map->type != REDIS_REPLY_ARRAY || map->elements % 2 != 0)
		return NULL;
	for (size_t i = 0; i + 1 < map->elements; i += 2) {
		const redisReply *k = map->element[i];

		if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
			return map->element[i + 1];
	}
	return NULL;
}

static int
str_is(const redisReply *r, const char *s)
{
	return r != NULL && r->type == REDIS_REPLY_STRING && strcmp(r->str, s) == 0;
}

/* Where to reach a CLUSTER SHARDS node: its endpoint (or ip) and port (or tls-port). */
static int
shard_node_addr(const redisReply *node, int tls, char *host, size_t hostlen, int *port)
{
	const redisReply *ep = field(node, "endpoint"), *ip = field(node, "ip");
	const redisReply *pt = field(node, tls ? "tls-port" : "port");
	const redisReply *h = ep != NULL && ep->type == REDIS_REPLY_STRING && ep->len > 0 &&
	    strcmp(ep->str, "?") != 0 ? ep : ip;

	if (h == NULL || h->type != REDIS_REPLY_STRING || !host_ok(h->str, (size_t)h->len) ||
	    (size_t)h->len >= hostlen ||
	    pt == NULL || pt->type != REDIS_REPLY_INTEGER || pt->integer < 1 || pt->integer > 65535)
		return -1;
	memcpy(host, h->str, (size_t)h->len);
	host[h->len] = '\0';
	*port = (int)pt->integer;
	return 0;
}

static int
cluster_shards(const redisReply *r, int tls, struct resp_range *out, size_t max, size_t *n)
{
	*n = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *sh = r->element[i], *slots = field(sh, "slots"), *nodes = field(sh, "nodes");
		const redisReply *master = NULL;
		char host[RESP_HOST_MAX];
		int port;

		if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY ||
		    nodes->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0)
			return -1;
		for (size_t k = 0; k < nodes->elements && master == NULL; k++) {
			const redisReply *nd = nodes->element[k];

			if (str_is(field(nd, "role"), "master") && str_is(field(nd, "health"), "online"))
				master = nd;
		}
		if (master == NULL || shard_node_addr(master, tls, host, sizeof(host), &port) == -1)
			continue;	/* no master to serve these slots now (a failover) */
		for (size_t k = 0; k + 1 < slots->elements; k += 2) {
			long from = slot_of(slots->element[k]), to = slot_of(slots->element[k + 1]);

			if (from < 0 || to < from)
				return -1;
			if (*n == max)
				return -1;
			out[*n].from = (unsigned)from;
			out[*n].to = (unsigned)to;
			memcpy(out[*n].host, host, sizeof(host));
			out[*n].port = port;
			(*n)++;
		}
	}
	return 0;
}

static int
cluster_slots(const redisReply *r, struct resp_range *out, size_t max, size_t *n)
{
	*n = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *m;
		long from, to;

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3)
			return -1;
		from = slot_of(e->element[0]);
		to = slot_of(e->element[1]);
		m = e->element[2];
		if (from < 0 || to < from || m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
		    m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_INTEGER ||
		    m->element[1]->integer < 1 || m->element[1]->integer > 65535)
			return -1;
		if (!host_ok(m->element[0]->str, (size_t)m->element[0]->len))
			continue;	/* "": the node does not know its own address */
		if (*n == max)
			return -1;
		out[*n].from = (unsigned)from;
		out[*n].to = (unsigned)to;
		memcpy(out[*n].host, m->element[0]->str, (size_t)m->element[0]->len);
		out[*n].host[m->element[0]->len] = '\0';
		out[*n].port = (int)m->element[1]->integer;
		(*n)++;
	}
	return 0;
}

struct resp_range *
resp_cluster_map(const redisReply *r, int shards, int tls, size_t *n)
{
	struct resp_range *out;
	size_t max = 0;

	*n = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return NULL;
	/* At most one range per pair of slot numbers (SHARDS) or per entry (SLOTS). */
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *slots = shards ? field(r->element[i], "slots") : NULL;

		if (shards && (slots == NULL || slots->type != REDIS_REPLY_ARRAY))
			return NULL;
		max += shards ? slots->elements / 2 : 1;
	}
	if (max == 0 || max > RESP_SLOTS || (out = calloc(max, sizeof(*out))) == NULL)
		return NULL;
	if ((shards ? cluster_shards(r, tls, out, max, n) : cluster_slots(r, out, max, n)) == -1) {
		free(out);
		*n = 0;
		return NULL;
	}
	return out;
}
