/*
 * test_addrlimit.c: the per-address table in one process, with worker rows
 * taken in turn: SipHash against the paper's vectors, exact addresses in a
 * shared set, the overflow of a full set, IPv6 prefixes, rates, API request
 * rates, released slots, and readers skipping an entry that changes
 * address. It includes addrlimit.c to reach the static hash and the row
 * layout.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../src/addrlimit.c"
#include "tap.h"

static uint8_t ip4[4], ip6[16];

static const uint8_t *
v4(const char *s)
{
	if (inet_pton(AF_INET, s, ip4) != 1)
		printf("# bad test address %s\n", s);
	return ip4;
}

static const uint8_t *
v6(const char *s)
{
	if (inet_pton(AF_INET6, s, ip6) != 1)
		printf("# bad test address %s\n", s);
	return ip6;
}

static uint32_t
set_v4(uint32_t a)
{
	uint32_t key[4];
	uint8_t b[4] = { (uint8_t)(a >> 24), (uint8_t)(a >> 16), (uint8_t)(a >> 8), (uint8_t)a };

	addr_key(AF_INET, b, key);
	return set_of(key);
}

/* n IPv4 addresses (as numbers) that share one set under the current key. */
static void
same_set(uint32_t *out, int n)
{
	uint32_t want = set_v4(0x0a000001u), a = 0x0a000001u;

	out[0] = a;
	for (int k = 1; k < n; k++) {
		while (set_v4(++a) != want)
			;
		out[k] = a;
	}
}

static const uint8_t *
num4(uint32_t a)
{
	ip4[0] = (uint8_t)(a >> 24);
	ip4[1] = (uint8_t)(a >> 16);
	ip4[2] = (uint8_t)(a >> 8);
	ip4[3] = (uint8_t)a;
	return ip4;
}

static void
test_siphash(void)
{
	uint8_t k8[16], in[64];
	uint64_t k[2];

	for (int i = 0; i < 16; i++)
		k8[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		in[i] = (uint8_t)i;
	k[0] = le64(k8, 8);
	k[1] = le64(k8 + 8, 8);
	/* The paper's appendix vector (15 bytes) and the reference's vectors for 0, 8 and 63 bytes. */
	ok(siphash24(k, in, 15) == 0xa129ca6149be45e5ULL, "SipHash-2-4 of 15 bytes: the paper's vector");
	ok(siphash24(k, in, 0) == 0x726fdb47dd0e0e31ULL, "SipHash-2-4 of 0 bytes");
	ok(siphash24(k, in, 8) == 0x93f5f5799a932462ULL, "SipHash-2-4 of 8 bytes");
	ok(siphash24(k, in, 63) == 0x958a324ceb064572ULL, "SipHash-2-4 of 63 bytes");
}

static void
test_limits(void)
{
	uint32_t a[12];
	int refused = 0;

	if (addrlimit_init(4, 64) == -1) {
		ok(0, "addrlimit_init");
		return;
	}
	ok(addrlimit_open(AF_INET, v4("192.0.2.1"), 2, 0) == 0, "unbound: no limit applies");
	addrlimit_bind(0);
	ok(addrlimit_open(AF_INET, v4("192.0.2.1"), 2, 0) == 0, "worker 0: first session");
	ok(addrlimit_open(AF_INET, v4("192.0.2.1"), 2, 0) == 0, "worker 0: second session");
	ok(addrlimit_open(AF_INET, v4("192.0.2.1"), 2, 0) == -1, "worker 0: third refused at max 2");
	addrlimit_bind(1);
	ok(addrlimit_open(AF_INET, v4("192.0.2.1"), 2, 0) == -1, "worker 1 sees worker 0's sessions");
	ok(addrlimit_open(AF_INET, v4("192.0.2.2"), 2, 0) == 0, "another address is counted apart");
	addrlimit_bind(0);
	addrlimit_close(AF_INET, v4("192.0.2.1"));
	addrlimit_bind(1);
	ok(addrlimit_open(AF_INET, v4("192.0.2.1"), 2, 0) == 0, "a place freed in worker 0 is taken in worker 1");
	addrlimit_close(AF_INET, v4("192.0.2.1"));
	addrlimit_close(AF_INET, v4("192.0.2.2"));
	addrlimit_bind(0);
	addrlimit_close(AF_INET, v4("192.0.2.1"));

	/* Eight addresses of one set, each at its limit, do not touch each other. */
	same_set(a, 12);
	for (int i = 0; i < 8; i++)
		refused += addrlimit_open(AF_INET, num4(a[i]), 1, 0) != 0;
	is_int(refused, 0, "8 addresses in one set: one session each");
	refused = 0;
	for (int i = 0; i < 8; i++)
		refused += addrlimit_open(AF_INET, num4(a[i]), 1, 0) == -1;
	is_int(refused, 8, "each of them is at its own limit");
	addrlimit_bind(1);
	ok(addrlimit_open(AF_INET, num4(a[8]), 1, 0) == 0,
	    "a ninth address of the set, in another worker's row, is not refused for the others");
	addrlimit_close(AF_INET, num4(a[8]));
	addrlimit_bind(0);

	/* The set is full in worker 0: new addresses share its overflow, which only errs on refusing. */
	ok(addrlimit_open(AF_INET, num4(a[8]), 1, 0) == 0, "full set: a ninth address gets in (overflow)");
	is_int(self->over[set_v4(a[8])].open, 1, "counted in the set's overflow");
	ok(addrlimit_open(AF_INET, num4(a[9]), 1, 0) == -1, "full set: a tenth is refused for the ninth's session");
	ok(addrlimit_open(AF_INET, num4(a[9]), 2, 0) == 0, "... and let in under a limit of 2");
	ok(addrlimit_open(AF_INET, num4(a[8]), 2, 0) == -1, "the ninth sees the overflow's 2 sessions");
	/* A way frees: the ninth's next session takes it; closes then balance entry and overflow. */
	addrlimit_close(AF_INET, num4(a[0]));
	{
		struct timespec ts = { 1, 100000000 };

		nanosleep(&ts, NULL);	/* the freed way may count a rate this second: wait it out */
	}
	ok(addrlimit_open(AF_INET, num4(a[8]), 3, 0) == 0, "the ninth takes the freed way");
	{
		uint32_t key[4];

		addr_key(AF_INET, num4(a[8]), key);
		ok(own_entry(set_of(key), key) != NULL, "the ninth has an entry now");
	}
	addrlimit_close(AF_INET, num4(a[8]));
	addrlimit_close(AF_INET, num4(a[8]));
	addrlimit_close(AF_INET, num4(a[9]));
	is_int(self->over[set_v4(a[8])].open, 0, "every overflow session closed: the overflow is empty");
	for (int i = 1; i < 8; i++)
		addrlimit_close(AF_INET, num4(a[i]));
	addrlimit_bind(1);
	ok(addrlimit_open(AF_INET, num4(a[9]), 1, 0) == 0, "all closed: the set's addresses are free again");
	addrlimit_close(AF_INET, num4(a[9]));

	/* A reader skips an entry whose address is changing (odd seq) or has changed (another seq). */
	addrlimit_bind(1);
	ok(addrlimit_open(AF_INET, v4("198.51.100.7"), 1, 0) == 0, "worker 1 holds 198.51.100.7");
	{
		uint32_t key[4], s, o, r;
		struct lent *e;

		addr_key(AF_INET, v4("198.51.100.7"), key);
		s = set_of(key);
		e = own_entry(s, key);
		sum_counts(s, key, e->n.sec, &o, &r);
		is_int(o, 1, "a reader counts the entry");
		e->seq++;
		sum_counts(s, key, e->n.sec, &o, &r);
		is_int(o, 0, "a reader skips it while its seq is odd");
		e->seq++;
		e->key[3] ^= 1;
		sum_counts(s, key, e->n.sec, &o, &r);
		is_int(o, 0, "and once it holds another address");
		e->key[3] ^= 1;
	}
	addrlimit_slot_release(1);
	addrlimit_bind(0);
	ok(addrlimit_open(AF_INET, v4("198.51.100.7"), 1, 0) == 0, "a released slot's sessions no longer count");
	addrlimit_close(AF_INET, v4("198.51.100.7"));
}

static void
test_ipv6_and_rate(void)
{
	int in = 0;
	uint32_t k1[4], k2[4];

	if (addrlimit_init(2, 64) == -1) {
		ok(0, "addrlimit_init");
		return;
	}
	addrlimit_bind(0);
	for (int i = 1; i <= 5; i++) {
		char a[64];

		snprintf(a, sizeof(a), "2001:db8:1:2::%x", i * 0x1111);
		in += addrlimit_open(AF_INET6, v6(a), 2, 0) == 0;
	}
	is_int(in, 2, "five addresses of one /64 under max 2: two get in");
	ok(addrlimit_open(AF_INET6, v6("2001:db8:1:3::1"), 2, 0) == 0, "the next /64 is another client");
	addr_key(AF_INET, v4("1.2.3.4"), k1);
	addr_key(AF_INET6, v6("::ffff:1.2.3.4"), k2);
	ok(memcmp(k1, k2, 16) == 0, "an IPv4 address and its v4-mapped form are one client, not masked to a /64");
	addr_key(AF_INET6, v6("::ffff:1.2.3.5"), k2);
	ok(memcmp(k1, k2, 16) != 0, "two v4-mapped addresses are two clients");
	addr_key(AF_INET6, v6("::1.2.3.4"), k2);
	ok(memcmp(k1, k2, 16) != 0, "not the deprecated v4-compatible form");

	if (addrlimit_init(2, 128) == -1) {
		ok(0, "addrlimit_init 128");
		return;
	}
	addrlimit_bind(0);
	in = 0;
	for (int i = 1; i <= 5; i++) {
		char a[64];

		snprintf(a, sizeof(a), "2001:db8:1:2::%x", i);
		in += addrlimit_open(AF_INET6, v6(a), 2, 0) == 0;
	}
	is_int(in, 5, "with ipv6_prefix_length 128 every address counts apart");
	addr_key(AF_INET6, v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), k1);
	if (addrlimit_init(2, 33) == -1) {
		ok(0, "addrlimit_init 33");
		return;
	}
	addr_key(AF_INET6, v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), k2);
	ok(memcmp(k2, v6("2001:db8:8000::"), 16) == 0, "prefix 33 keeps 33 bits");
	ok(addrlimit_init(2, 0) == -1 && addrlimit_init(2, 129) == -1, "prefix lengths out of range refused");

	/* Rates: max_rate new sessions per second, even when each closes at once. */
	if (addrlimit_init(2, 64) == -1) {
		ok(0, "addrlimit_init");
		return;
	}
	addrlimit_bind(0);
	{
		struct timespec ts;
		int got = 0;

		/* Start early in a second, so that the burst stays within it. */
		do
			clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
		while (ts.tv_nsec > 300000000);
		for (int i = 0; i < 5; i++) {
			if (addrlimit_open(AF_INET, v4("203.0.113.9"), 0, 3) == 0) {
				got++;
				addrlimit_close(AF_INET, v4("203.0.113.9"));
			}
		}
		is_int(got, 3, "max_rate 3: three of five in one second");
	}
}

/* API requests per second: over every worker, apart from the sessions' counts. */
static void
test_api_rate(void)
{
	struct timespec ts;
	int got = 0;

	if (addrlimit_init(2, 64) == -1) {
		ok(0, "addrlimit_init");
		return;
	}
	ok(addrlimit_rate(AF_INET, v4("198.51.100.7"), 1) == 0 && addrlimit_rate(AF_INET, v4("198.51.100.7"), 1) == 0,
	    "unbound: no API limit applies");
	addrlimit_bind(0);
	do
		clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	while (ts.tv_nsec > 300000000);
	for (int i = 0; i < 3; i++)
		got += addrlimit_rate(AF_INET, v4("198.51.100.7"), 4) == 0;
	addrlimit_bind(1);
	for (int i = 0; i < 3; i++)
		got += addrlimit_rate(AF_INET, v4("198.51.100.7"), 4) == 0;
	is_int(got, 4, "api rate 4: four of six in one second, three in worker 0 and three in worker 1");
	ok(addrlimit_rate(AF_INET, v4("198.51.100.8"), 4) == 0, "another address has its own API rate");
	ok(addrlimit_open(AF_INET, v4("198.51.100.7"), 1, 1) == 0, "API requests do not count as sessions");
	addrlimit_close(AF_INET, v4("198.51.100.7"));
	ok(addrlimit_rate(AF_INET, v4("198.51.100.9"), 0) == 0, "api rate 0: no limit");
	{
		uint32_t key[4], s;

		addr_key(AF_INET, v4("198.51.100.7"), key);
		s = set_of(key);
		ok(own_entry(s, key) != NULL && own_entry(s, key)->n.arate == 1,
		    "worker 1 counts its one request of this second in the address's entry");
	}
	ts.tv_sec = 1;
	ts.tv_nsec = 100000000;
	nanosleep(&ts, NULL);
	ok(addrlimit_rate(AF_INET, v4("198.51.100.7"), 4) == 0, "the next second starts afresh");
}

/* Another key, other sets: which addresses meet cannot be known without it. */
static void
test_keyed(void)
{
	uint32_t before[64], differ = 0;

	for (int i = 0; i < 64; i++)
		before[i] = set_v4(0xc6336400u + (uint32_t)i);
	if (addrlimit_init(1, 64) == -1) {
		ok(0, "addrlimit_init");
		return;
	}
	for (int i = 0; i < 64; i++)
		differ += set_v4(0xc6336400u + (uint32_t)i) != before[i];
	ok(differ > 48, "a new key moves addresses to other sets (%u of 64)", differ);
}

int
main(void)
{
	test_siphash();
	test_limits();
	test_ipv6_and_rate();
	test_api_rate();
	test_keyed();
	return tap_done();
}
