/*
 * fuzz_resp.c: libFuzzer target for what roomd reads from Redis and from its
 * `redis` setting: the bytes as a reply (hiredis's reader) turned into a
 * Cluster slot map both ways, as a MOVED/ASK redirection, and as a redis
 * URL. A map's ranges stay within the slots and name a host and a port; a
 * redirection names a slot and a port in range; a parsed URL is coherent
 * (the unit test checks that its description hides the password).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redisurl.h"
#include "resp.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

static void
check_map(const redisReply *r, int shards, int tls)
{
	size_t n = 99;
	struct resp_range *m = resp_cluster_map(r, shards, tls, &n);

	CHECK(m != NULL || n == 0);
	for (size_t i = 0; m != NULL && i < n; i++) {
		CHECK(m[i].from <= m[i].to && m[i].to < RESP_SLOTS);
		CHECK(m[i].port >= 1 && m[i].port <= 65535);
		CHECK(m[i].host[0] != '\0' && memchr(m[i].host, '\0', sizeof(m[i].host)) != NULL);
	}
	free(m);
}

/*
 * hiredis 0.14's reader has no bound on an array's declared length (1.x has
 * maxelements): "*888888881" makes it calloc gigabytes. Redis is the server
 * roomd was configured with, so inputs that declare more than 64 Ki elements
 * are not given to it here.
 */
static int
huge_array(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned long v = 0;
		size_t k = i + 1;

		if (p[i] != '*')
			continue;
		while (k < n && p[k] >= '0' && p[k] <= '9' && v <= 65536)
			v = v * 10 + (unsigned long)(p[k++] - '0');
		if (v > 65536)
			return 1;
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd = redisReaderCreate();
	struct resp_redirect rr;
	struct redisurl u;
	char why[256], *s;
	void *reply = NULL;

	if (rd != NULL && !huge_array(data, size)) {
		if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK &&
		    redisReaderGetReply(rd, &reply) == REDIS_OK && reply != NULL) {
			check_map(reply, 0, 0);
			check_map(reply, 1, 0);
			check_map(reply, 1, 1);
			freeReplyObject(reply);
		}
	}
	if (rd != NULL)
		redisReaderFree(rd);
	if (resp_redirect((const char *)data, size, &rr) == 0) {
		CHECK(rr.slot < RESP_SLOTS && rr.port >= 1 && rr.port <= 65535 && rr.host[0] != '\0');
		CHECK(size >= 4 && (rr.ask ? memcmp(data, "ASK ", 4) : memcmp(data, "MOVED ", 6)) == 0);
	}
	CHECK(resp_slot((const char *)data, size) < RESP_SLOTS);
	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	why[0] = '\0';
	if (redisurl_parse(s, &u, why, sizeof(why)) == 0) {
		CHECK(u.is_unix ? u.path[0] == '/' : u.nnodes >= 1 && u.nnodes <= REDISURL_NODES);
		for (int i = 0; !u.is_unix && i < u.nnodes; i++)
			CHECK(u.node[i].port >= 1 && u.node[i].port <= 65535 && u.node[i].host[0] != '\0');
		CHECK(u.db >= 0 && (u.mode != REDISURL_SENTINEL || u.master[0] != '\0'));
		redisurl_describe(&u, why, sizeof(why));
		CHECK(memchr(why, 0, sizeof(why)) != NULL);
	} else
		CHECK(why[0] != '\0');
	free(s);
	return 0;
}
