/*
 * addrlimit.c: per-address counters in shared memory, one row per worker
 * slot. Each worker writes only its own row; a check sums one address over
 * every row. Addresses are found by a hash keyed with a secret drawn at
 * start, so nobody can choose addresses that meet another's in the table,
 * and entries hold the address itself, so two addresses never share a
 * count while the table has room.
 */
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "addrlimit.h"

/*
 * A row is LIM_SETS sets of LIM_WAYS entries: an address lives in the set
 * its hash names, in any way of it. 32,768 addresses per worker before a
 * set fills; each row is about 1.1 MB, touched only where used.
 */
#define LIM_SETS	4096
#define LIM_WAYS	8

/* The counts of one address (or, in a full set's overflow, of several). */
struct lcount {
	uint32_t	open;	/* sessions open now */
	uint32_t	sec;	/* the second `rate` counts */
	uint32_t	rate;	/* sessions opened within it */
	uint32_t	asec;	/* the second `arate` counts */
	uint32_t	arate;	/* API requests within it */
};

/*
 * An entry: seq is 0 while the entry was never used, odd while its owner
 * gives it to another address, even otherwise. Readers in other workers
 * take an entry's counts only if seq was even and the same before and
 * after they read the address and counts, so they never count another
 * address's sessions. An entry changes address only when it counts no
 * open session and no session opened this second.
 */
struct lent {
	uint32_t	seq;
	uint32_t	key[4];		/* the address: see addr_key */
	struct lcount	n;
};

struct lrow {
	uint32_t	bound;		/* a worker counts here: readers skip unbound rows */
	uint32_t	pad[15];
	struct lcount	over[LIM_SETS];	/* addresses that found their set full */
	struct lent	ent[LIM_SETS][LIM_WAYS];
};

static struct lrow *rows;
static int nrows;
static struct lrow *self;
static uint64_t secret[2];	/* SipHash key, drawn before forking: every worker has it */
static int v6_prefix = 64;

/* Every access to the shared rows is sequentially consistent (see addrlimit_open). */
#define LOAD(p)		__atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v)	__atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v)	__atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define SUB(p, v)	__atomic_sub_fetch((p), (v), __ATOMIC_SEQ_CST)

#define ROTL(x, b)	(uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void
sipround(uint64_t v[4])
{
	v[0] += v[1]; v[1] = ROTL(v[1], 13); v[1] ^= v[0]; v[0] = ROTL(v[0], 32);
	v[2] += v[3]; v[3] = ROTL(v[3], 16); v[3] ^= v[2];
	v[0] += v[3]; v[3] = ROTL(v[3], 21); v[3] ^= v[0];
	v[2] += v[1]; v[1] = ROTL(v[1], 17); v[1] ^= v[2]; v[2] = ROTL(v[2], 32);
}

/* Little-endian 64-bit word from up to 8 bytes. */
static uint64_t
le64(const uint8_t *p, size_t n)
{
	uint64_t w = 0;

	for (size_t i = 0; i < n; i++)
		w |= (uint64_t)p[i] << (8 * i);
	return w;
}

/*
 * SipHash-2-4 (Aumasson and Bernstein, 2012), a keyed hash made for exactly
 * this: without the key, nobody can find inputs that collide.
 */
static uint64_t
siphash24(const uint64_t k[2], const uint8_t *in, size_t len)
{
	uint64_t v[4] = { k[0] ^ 0x736f6d6570736575ULL, k[1] ^ 0x646f72616e646f6dULL,
	    k[0] ^ 0x6c7967656e657261ULL, k[1] ^ 0x7465646279746573ULL };
	uint64_t m;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		m = le64(in + i, 8);
		v[3] ^= m;
		sipround(v);
		sipround(v);
		v[0] ^= m;
	}
	m = le64(in + i, len - i) | (uint64_t)(len & 0xff) << 56;
	v[3] ^= m;
	sipround(v);
	sipround(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	for (i = 0; i < 4; i++)
		sipround(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

int
addrlimit_init(int slots, int ipv6_prefix)
{
	void *p;

	if (slots <= 0 || ipv6_prefix < 1 || ipv6_prefix > 128 ||
	    getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret))
		return -1;
	p = mmap(NULL, sizeof(struct lrow) * (size_t)slots, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	rows = p;
	nrows = slots;
	v6_prefix = ipv6_prefix;
	return 0;
}

void
addrlimit_slot_release(int slot)
{
	if (rows != NULL && slot >= 0 && slot < nrows)
		memset(&rows[slot], 0, sizeof(rows[slot]));
}

void
addrlimit_bind(int slot)
{
	if (rows != NULL && slot >= 0 && slot < nrows) {
		self = &rows[slot];
		STORE(&self->bound, 1);
	}
}

/*
 * What counts as one address: an IPv4 address, as its v4-mapped IPv6 form
 * (however it came), or the first v6_prefix bits of an IPv6 one (a host
 * that holds a /64 has 2^64 addresses to come from).
 */
static void
addr_key(int family, const uint8_t *ip, uint32_t key[4])
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	uint8_t k[16] = { 0 };

	if (family == AF_INET6 && memcmp(ip, mapped, 12) == 0)
		memcpy(k, ip, 16);
	else if (family == AF_INET6) {
		memcpy(k, ip, 16);
		for (int bit = v6_prefix; bit < 128; bit++)
			k[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
	} else {
		k[10] = k[11] = 0xff;
		memcpy(k + 12, ip, 4);
	}
	memcpy(key, k, 16);
}

static uint32_t
set_of(const uint32_t key[4])
{
	return (uint32_t)(siphash24(secret, (const uint8_t *)key, 16) % LIM_SETS);
}

static int
key_is(const struct lent *e, const uint32_t key[4])
{
	for (int i = 0; i < 4; i++)
		if (LOAD(&e->key[i]) != key[i])
			return 0;
	return 1;
}

/* This worker's entry for key in set s, or NULL. */
static struct lent *
own_entry(uint32_t s, const uint32_t key[4])
{
	for (int w = 0; w < LIM_WAYS; w++) {
		struct lent *e = &self->ent[s][w];

		/* Only this worker writes its row: no seq check needed to read it. */
		if (LOAD(&e->seq) != 0 && key_is(e, key))
			return e;
	}
	return NULL;
}

/* Give key a free entry of set s (never used, or idle this second); NULL if the set is full. */
static struct lent *
claim_entry(uint32_t s, const uint32_t key[4], uint32_t now)
{
	for (int w = 0; w < LIM_WAYS; w++) {
		struct lent *e = &self->ent[s][w];
		uint32_t seq = LOAD(&e->seq);

		if (seq != 0 && (LOAD(&e->n.open) != 0 || LOAD(&e->n.sec) == now || LOAD(&e->n.asec) == now))
			continue;
		STORE(&e->seq, seq + 1);	/* odd: readers skip it */
		for (int i = 0; i < 4; i++)
			STORE(&e->key[i], key[i]);
		STORE(&e->n.rate, 0);
		STORE(&e->n.sec, now);
		STORE(&e->n.arate, 0);
		STORE(&e->n.asec, now);
		STORE(&e->seq, seq + 2);
		return e;
	}
	return NULL;
}

/* Sum key's counts in set s over every row: its entries and every overflow of the set. */
static void
sum_all(uint32_t s, const uint32_t key[4], uint32_t now, uint32_t *open, uint32_t *rate, uint32_t *arate)
{
	*open = *rate = *arate = 0;
	for (int r = 0; r < nrows; r++) {
		struct lrow *row = &rows[r];

		if (!LOAD(&row->bound))
			continue;
		for (int w = 0; w < LIM_WAYS; w++) {
			struct lent *e = &row->ent[s][w];
			uint32_t seq = LOAD(&e->seq), o, sec, rt, asec, art;

			if (seq == 0 || (seq & 1) || !key_is(e, key))
				continue;
			o = LOAD(&e->n.open);
			sec = LOAD(&e->n.sec);
			rt = LOAD(&e->n.rate);
			asec = LOAD(&e->n.asec);
			art = LOAD(&e->n.arate);
			if (LOAD(&e->seq) != seq)
				continue;	/* given to another address meanwhile */
			*open += o;
			*rate += sec == now ? rt : 0;
			*arate += asec == now ? art : 0;
		}
		*open += LOAD(&row->over[s].open);
		if (LOAD(&row->over[s].sec) == now)
			*rate += LOAD(&row->over[s].rate);
		if (LOAD(&row->over[s].asec) == now)
			*arate += LOAD(&row->over[s].arate);
	}
}

/* The session counts of key (sum_all without the API's). */
static void
sum_counts(uint32_t s, const uint32_t key[4], uint32_t now, uint32_t *open, uint32_t *rate)
{
	uint32_t arate;

	sum_all(s, key, now, open, rate, &arate);
}

/* The counts this worker keeps for ip this second (its entry, or its set's overflow); set and key too. */
static struct lcount *
own_counts(int family, const uint8_t *ip, uint32_t key[4], uint32_t *s, uint32_t *now)
{
	struct timespec ts;
	struct lent *e;

	addr_key(family, ip, key);
	*s = set_of(key);
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	*now = (uint32_t)ts.tv_sec;
	if ((e = own_entry(*s, key)) == NULL)
		e = claim_entry(*s, key, *now);
	return e != NULL ? &e->n : &self->over[*s];
}

/*
 * When a set is full (its 8 ways hold addresses with open sessions, or
 * that opened one this second), the address is counted in the set's
 * overflow counts instead, which every address of the set adds to its own.
 * That is conservative: limits never loosen, and an address can only be
 * refused early, for the sessions of other addresses that also found the
 * set full. Refusing it outright would lock it out for others' sake, and
 * not counting it would let it past its limit. With the keyed hash no one
 * can aim at a set: filling sets takes tens of thousands of addresses with
 * sessions open in one worker.
 */
int
addrlimit_open(int family, const uint8_t *ip, int max_open, int max_rate)
{
	uint32_t key[4], s, open, rate, now;
	struct lcount *n;

	if (self == NULL)
		return 0;
	n = own_counts(family, ip, key, &s, &now);
	/*
	 * Count this session first, then look at the sum: two workers racing
	 * for the last place may both refuse, but never both get in. Every
	 * access is sequentially consistent, so our add comes before our
	 * reads, and of two racing workers at least one reads the other's
	 * count: a reader skips an entry only while its owner is still giving
	 * it the address (before that owner's add and its own reads).
	 */
	if (LOAD(&n->sec) != now) {
		STORE(&n->rate, 0);
		STORE(&n->sec, now);
	}
	ADD(&n->open, 1);
	ADD(&n->rate, 1);
	sum_counts(s, key, now, &open, &rate);
	if ((max_open > 0 && open > (uint32_t)max_open) || (max_rate > 0 && rate > (uint32_t)max_rate)) {
		SUB(&n->open, 1);
		SUB(&n->rate, 1);
		return -1;
	}
	return 0;
}

void
addrlimit_close(int family, const uint8_t *ip)
{
	uint32_t key[4], s;
	struct lent *e;

	if (self == NULL)
		return;
	addr_key(family, ip, key);
	s = set_of(key);
	/*
	 * The session was counted in the address's entry or, if its set was
	 * full then, in the overflow: take it from the entry while that counts
	 * one, else from the overflow. Either way the address's sum and the
	 * overflow's own total stay right.
	 */
	if ((e = own_entry(s, key)) != NULL && LOAD(&e->n.open) > 0)
		SUB(&e->n.open, 1);
	else if (LOAD(&self->over[s].open) > 0)
		SUB(&self->over[s].open, 1);
}

int
addrlimit_rate(int family, const uint8_t *ip, int max_rate)
{
	uint32_t key[4], s, open, rate, arate, now;
	struct lcount *n;

	if (self == NULL || max_rate <= 0)
		return 0;
	n = own_counts(family, ip, key, &s, &now);
	/* As in addrlimit_open: count first, then look at the sum over every worker. */
	if (LOAD(&n->asec) != now) {
		STORE(&n->arate, 0);
		STORE(&n->asec, now);
	}
	ADD(&n->arate, 1);
	sum_all(s, key, now, &open, &rate, &arate);
	if (arate > (uint32_t)max_rate) {
		SUB(&n->arate, 1);
		return -1;
	}
	return 0;
}
