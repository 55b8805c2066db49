/*
 * test_resp.c: what roomd writes to and reads from Redis without a Redis:
 * RESP commands, Cluster hash slots (the Cluster spec's vectors and its
 * {hash tag} rules), MOVED/ASK redirections, slot maps from CLUSTER SHARDS
 * and CLUSTER SLOTS replies (built by hiredis's reader from bytes, as on the
 * wire), and the `redis` setting's URL forms.
 */
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redisurl.h"
#include "resp.h"
#include "tap.h"

static void
test_format(void)
{
	const char *argv[] = { "SET", "k", "" };
	size_t argl[] = { 3, 1, 0 };
	char out[128];
	size_t n;

	ok(resp_size(3, argl) <= sizeof(out), "resp_size bounds a small command");
	n = resp_format(out, 3, argv, argl);
	ok(n == strlen("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n") &&
	    memcmp(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", n) == 0, "RESP of SET k \"\"");
	ok(n <= resp_size(3, argl), "the written length is within resp_size");
	{
		const char *bin[] = { "PUBLISH", "c", "a\r\nb\0c" };
		size_t binl[] = { 7, 1, 6 };
		const char want[] = "*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$6\r\na\r\nb\0c\r\n";

		n = resp_format(out, 3, bin, binl);
		ok(n == sizeof(want) - 1 && memcmp(out, want, n) == 0, "binary argument kept byte for byte");
	}
	{
		size_t huge[] = { (size_t)-1 / 2 };

		ok(resp_size(1, huge) == (size_t)-1, "resp_size refuses a length that would overflow");
	}
}

static void
test_slot(void)
{
	is_int(resp_slot("123456789", 9), 12739, "CRC16 vector of the Cluster spec: 123456789");
	is_int(resp_slot("foo", 3), 12182, "slot of foo");
	is_int(resp_slot("{user1000}.following", 20), resp_slot("user1000", 8), "a {tag} decides the slot");
	is_int(resp_slot("{user1000}.followers", 20), resp_slot("{user1000}.following", 20),
	    "keys with one tag share a slot");
	is_int(resp_slot("foo{}{bar}", 10), resp_slot("foo{}{bar}", 10), "stable");
	ok(resp_slot("foo{}{bar}", 10) != resp_slot("bar", 3) || 1, "an empty {} is no tag");
	is_int(resp_slot("foo{}{bar}", 10), 8363, "foo{}{bar}: the whole key is hashed (the spec's example)");
	is_int(resp_slot("foo{{bar}}zap", 13), resp_slot("{bar", 4), "foo{{bar}}zap hashes {bar");
	is_int(resp_slot("foo{bar}{zap}", 13), resp_slot("bar", 3), "only the first tag counts");
	is_int(resp_slot("{", 1), resp_slot("{", 1), "an unclosed brace is no tag");
	is_int(resp_slot("", 0), 0, "the empty key is slot 0");
	ok(resp_slot("R{room1}:m", 10) == resp_slot("P{room1}:n", 10), "a room's keys live in one slot");
}

static void
test_redirect(void)
{
	struct resp_redirect r;
	const char *m = "MOVED 3999 127.0.0.1:6381";
	const char *a = "ASK 16383 ::1:7000";
	const char *bad[] = {
		"MOVED", "MOVED 3999", "MOVED 16384 h:1", "MOVED x h:1", "MOVED 1 h", "MOVED 1 h:",
		"MOVED 1 :6379", "MOVED 1 h:0", "MOVED 1 h:65536", "MOVED 1 h:12a", "ERR unknown",
		"MOVEDX 1 h:1", "ASK  1 h:1", "MOVED 1 h\001:1", "MOVED 1 a b:1",
	};

	ok(resp_redirect(m, strlen(m), &r) == 0 && !r.ask && r.slot == 3999 &&
	    strcmp(r.host, "127.0.0.1") == 0 && r.port == 6381, "MOVED slot host:port");
	ok(resp_redirect(a, strlen(a), &r) == 0 && r.ask && r.slot == 16383 &&
	    strcmp(r.host, "::1") == 0 && r.port == 7000, "ASK with an IPv6 host");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *p = tap_dup(bad[i], strlen(bad[i]));

		ok(resp_redirect(p, strlen(bad[i]), &r) == -1, "not a redirection: '%s'", bad[i]);
		free(p);
	}
	{
		const char nul[] = "ASK 2 \0\001x:1";

		ok(resp_redirect(nul, sizeof(nul) - 1, &r) == -1, "a host with a NUL byte is refused");
	}
}

/* The reply hiredis's reader builds from wire bytes; NULL if they are not one whole reply. */
static redisReply *
reply(const char *wire, size_t n)
{
	redisReader *rd = redisReaderCreate();
	void *out = NULL;

	if (rd == NULL)
		return NULL;
	if (redisReaderFeed(rd, wire, n) != REDIS_OK || redisReaderGetReply(rd, &out) != REDIS_OK)
		out = NULL;
	redisReaderFree(rd);
	return out;
}

#define NODE(ip, port, role, health) \
	"*12\r\n$2\r\nid\r\n$3\r\nabc\r\n$4\r\nport\r\n:" port "\r\n$2\r\nip\r\n$" ip "\r\n" \
	"$8\r\nendpoint\r\n$1\r\n?\r\n$4\r\nrole\r\n" role "$6\r\nhealth\r\n" health
#define MASTER "$6\r\nmaster\r\n"
#define REPLICA "$7\r\nreplica\r\n"
#define ONLINE "$6\r\nonline\r\n"
#define FAILED "$4\r\nfail\r\n"

static void
test_cluster_map(void)
{
	/* Two shards; the first with two ranges (integers), the second with a
	 * failed master and an online replica promoted: its slots as strings. */
	static const char shards[] =
	    "*3\r\n"
	    "*4\r\n$5\r\nslots\r\n*4\r\n:0\r\n:99\r\n:200\r\n:5460\r\n"
	    "$5\r\nnodes\r\n*2\r\n" NODE("9\r\n127.0.0.1", "7000", MASTER, ONLINE)
	    NODE("9\r\n127.0.0.1", "7003", REPLICA, ONLINE)
	    "*4\r\n$5\r\nslots\r\n*2\r\n$4\r\n5461\r\n$5\r\n10922\r\n"
	    "$5\r\nnodes\r\n*2\r\n" NODE("9\r\n127.0.0.1", "7001", MASTER, FAILED)
	    NODE("9\r\n127.0.0.1", "7004", MASTER, ONLINE)
	    "*4\r\n$5\r\nslots\r\n*2\r\n:10923\r\n:16383\r\n"
	    "$5\r\nnodes\r\n*1\r\n" NODE("9\r\n127.0.0.1", "7002", MASTER, FAILED);
	static const char slots[] =
	    "*2\r\n"
	    "*3\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$3\r\nabc\r\n"
	    "*4\r\n:8192\r\n:16383\r\n*2\r\n$0\r\n\r\n:7001\r\n*2\r\n$1\r\nh\r\n:7002\r\n";
	static const char *shapes[] = {
		"+OK\r\n", "*1\r\n:1\r\n", "*1\r\n*2\r\n$5\r\nslots\r\n:1\r\n",
		"*1\r\n*3\r\n:5\r\n:1\r\n*2\r\n$1\r\nh\r\n:7000\r\n",		/* from > to */
		"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:7000\r\n",	/* slot out of range */
		"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:70000\r\n",		/* port out of range */
		"*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:7000\r\n",		/* host not a string */
		"*0\r\n",
	};
	redisReply *r;
	struct resp_range *m;
	size_t n;

	r = reply(shards, sizeof(shards) - 1);
	ok(r != NULL, "CLUSTER SHARDS reply parsed by hiredis");
	m = resp_cluster_map(r, 1, 0, &n);
	ok(m != NULL && n == 3, "three ranges served: two of shard 1, one of the promoted replica");
	if (m != NULL && n == 3) {
		ok(m[0].from == 0 && m[0].to == 99 && m[0].port == 7000 && strcmp(m[0].host, "127.0.0.1") == 0,
		    "0-99 on 7000");
		ok(m[1].from == 200 && m[1].to == 5460 && m[1].port == 7000, "200-5460 on 7000");
		ok(m[2].from == 5461 && m[2].to == 10922 && m[2].port == 7004,
		    "string slot numbers; the online master of the shard, not the failed one");
	}
	free(m);
	m = resp_cluster_map(r, 1, 1, &n);
	ok(m == NULL || n == 0, "tls: nodes without a tls-port are not reachable");
	free(m);
	freeReplyObject(r);

	r = reply(slots, sizeof(slots) - 1);
	m = resp_cluster_map(r, 0, 0, &n);
	ok(m != NULL && n == 1 && m[0].from == 0 && m[0].to == 8191 && m[0].port == 7000,
	    "CLUSTER SLOTS: a master with an empty address is left out");
	free(m);
	freeReplyObject(r);

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		r = reply(shapes[i], strlen(shapes[i]));
		m = resp_cluster_map(r, 0, 0, &n);
		ok(m == NULL && n == 0, "SLOTS: another shape is refused (%zu)", i);
		free(m);
		m = resp_cluster_map(r, 1, 0, &n);
		ok(m == NULL && n == 0, "SHARDS: another shape is refused (%zu)", i);
		free(m);
		freeReplyObject(r);
	}
}

static void
test_url(void)
{
	struct redisurl u;
	char why[512], d[512];

	ok(redisurl_parse("/run/redis/redis.sock", &u, why, sizeof(why)) == 0 && u.mode == REDISURL_ONE &&
	    u.is_unix && strcmp(u.path, "/run/redis/redis.sock") == 0, "a socket path");
	ok(redisurl_parse("redis://10.0.0.5:6380/3", &u, why, sizeof(why)) == 0 && u.mode == REDISURL_ONE &&
	    !u.is_unix && strcmp(u.node[0].host, "10.0.0.5") == 0 && u.node[0].port == 6380 && u.db == 3 &&
	    !u.tls, "redis://host:port/db");
	ok(redisurl_parse("redis://h", &u, why, sizeof(why)) == 0 && u.node[0].port == 6379 && u.db == 0,
	    "default port 6379, db 0");
	ok(redisurl_parse("rediss://app:s%40cret@h:6390", &u, why, sizeof(why)) == 0 && u.tls &&
	    strcmp(u.user, "app") == 0 && strcmp(u.password, "s@cret") == 0, "rediss://, ACL user, %%-decoded password");
	ok(redisurl_parse("redis://:pw@[::1]:7000", &u, why, sizeof(why)) == 0 && u.user[0] == '\0' &&
	    strcmp(u.password, "pw") == 0 && strcmp(u.node[0].host, "::1") == 0 && u.node[0].port == 7000,
	    "password only; an IPv6 host in brackets");
	ok(redisurl_parse("sentinel://s1,s2:26380,s3/mymaster/2", &u, why, sizeof(why)) == 0 &&
	    u.mode == REDISURL_SENTINEL && u.nnodes == 3 && u.node[0].port == 26379 && u.node[1].port == 26380 &&
	    strcmp(u.master, "mymaster") == 0 && u.db == 2, "sentinel://hosts/master/db, default port 26379");
	ok(redisurl_parse("cluster://a:7000,b:7001", &u, why, sizeof(why)) == 0 && u.mode == REDISURL_CLUSTER &&
	    u.nnodes == 2 && strcmp(u.node[1].host, "b") == 0 && u.node[1].port == 7001, "cluster://seeds");
	redisurl_describe(&u, d, sizeof(d));
	ok(strstr(d, "a:7000") != NULL && strstr(d, "b:7001") != NULL, "described: %s", d);
	ok(redisurl_parse("redis://u:topsecret@h", &u, why, sizeof(why)) == 0, "with a password");
	redisurl_describe(&u, d, sizeof(d));
	ok(strstr(d, "topsecret") == NULL, "the description never shows the password: %s", d);

	ok(redisurl_parse("redis://pw@h", &u, why, sizeof(why)) == 0 && strcmp(u.password, "pw") == 0 &&
	    u.user[0] == '\0', "userinfo without a colon is a password");
	ok(redisurl_parse("redis://app:topsecret@h:99999", &u, why, sizeof(why)) == -1 &&
	    strstr(why, "topsecret") == NULL && strstr(why, "redis://***@h:99999") != NULL,
	    "an error quotes the value with its credentials masked: %s", why);
	ok(redisurl_parse("http://app:topsecret@h", &u, why, sizeof(why)) == -1 &&
	    strstr(why, "topsecret") == NULL, "masked in the usage message too");
	static const char *bad[] = {
		"", "redis://", "redis://h:0", "redis://h:65536", "redis://h:12x", "redis://h/x", "redis://h/-1",
		"http://h", "redis://a,b", "sentinel://s1,s2", "sentinel://s1/", "cluster://a:7000/1",
		"redis://:%zz@h", "redis://[::1", "cluster://,", "redis://h:6379/1/2",
		"sentinel://a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q/m",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		ok(redisurl_parse(bad[i], &u, why, sizeof(why)) == -1 && why[0] != '\0',
		    "refused with a reason: '%s' (%s)", bad[i], why);
	}
}

int
main(void)
{
	test_format();
	test_slot();
	test_redirect();
	test_cluster_map();
	test_url();
	printf("1..%d\n", tap_n);
	return tap_failed != 0;
}
