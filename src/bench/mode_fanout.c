/*
 * mode_fanout.c: fanout mode with exact delivery accounting. Connection i
 * enters room i % R as u<i>; senders 0..K-1 send chat messages whose text
 * carries a marker "rbm|<sender>|<seq>|<send ns>|". Every delivery of
 * (sender, seq) to another member is counted per message, per thread, and
 * the counts are merged at the end: expected, received, lost, duplicated.
 * Per (receiver, sender) the last sequence number finds gaps and reordering.
 *
 * A server may refuse a message with an error event instead (roomd's
 * rate_limit does). Such a message reaches nobody, not even its sender, so
 * after the drain the error events on a sender's connection account for
 * that many of its messages that came back to no one: those are reported as
 * rejected, not lost, and expected counts only the others.
 *
 * Closed loop (-w W): a sender may send seq n once seq n-W has reached every
 * other member of its room. A ring of W counters per sender holds the
 * deliveries still due; receivers on any thread decrement it, and the one
 * that brings a slot to zero wakes the sender's thread, which refills the
 * window at the end of its loop turn.
 * Open loop (-T rate): sender s sends its n-th message at run start +
 * (n*K + s)/rate seconds, so the K senders interleave evenly.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "chatproto.h"

#define MARK		"rbm|"
#define MARK_LEN	4
#define BACKLOG_LIMIT	(1u << 20)	/* open loop: skip a slot over this much unsent */

struct sender {
	_Atomic uint64_t sent;		/* messages handed to the socket */
	_Atomic uint64_t acked;		/* closed loop: all below reached every other member */
	_Atomic uint32_t *ring;		/* closed loop: deliveries due, by seq % W */
	uint64_t	 slot;		/* open loop: schedule slots passed */
	uint64_t	 skipped;	/* open loop: slots skipped for backpressure */
	uint32_t	 room;
	uint32_t	 others;	/* room size - 1, frozen at run start */
	_Atomic uint64_t errors;	/* error events on the sender's connection while it sends */
	uint8_t		*self_got;	/* by seq: came back to the sender (sender's thread only) */
	size_t		 self_cap;
};

struct fan_thread {
	uint32_t	**cnt;		/* per sender: deliveries to others, by seq */
	size_t		 *cnt_cap;
	struct hist	  lat;		/* deliveries to others */
	struct hist	  self_lat;	/* deliveries back to the sender */
	struct hist	  lag;		/* open loop: how late sends were */
	_Atomic uint64_t  recv_others;
	_Atomic uint64_t  recv_self;
	_Atomic uint64_t  recv_run;	/* any delivery inside the send window */
	_Atomic uint64_t  last_delivery;
	_Atomic uint64_t  last_enter;
	_Atomic uint64_t  joined;
	_Atomic uint64_t  sent;
	uint64_t	  enter_msgs, out_msgs, heartbeats, pongs, error_events, unknown;
	uint64_t	  bad_marker, wrong_room, unexpected, gaps, backwards, oom;
	uint64_t	 *num_max;	/* per room: largest "num" seen */
	uint32_t	 *senders;	/* the senders this thread owns */
	size_t		  nsenders;
	char		 *text;		/* message being built */
	int		  entered_all;	/* this thread's connections sent enter */
	char		  first_error_event[160];
};

static struct {
	uint32_t	 R, K, W;
	struct sender	*snd;
	_Atomic int	*members;	/* per room: entered and still open */
	uint32_t	*room_size;	/* frozen at run start */
	uint8_t		*entered;	/* per connection, owner thread only */
	uint8_t		*joined;
	uint32_t	*last;		/* per (receiver, sender of its room): last seq + 1 */
	size_t		*last_base;
	struct fan_thread *ft;
	int		 stalled, join_incomplete;
	_Atomic int	 threads_entered;	/* threads whose connections all sent enter */
	uint64_t	 t_join_start, t_join_end, drain_until, stall_at, stall_recv;
	uint64_t	 t_send_end;	/* when sending stopped: run end or stall */
	size_t		 text_cap;
} F;

/* Senders in room r. */
static uint32_t
senders_in_room(uint32_t r)
{
	return r < F.K ? (F.K - 1 - r) / F.R + 1 : 0;
}

static int
fan_init(void)
{
	const struct bench_opts *o = &bench.o;
	uint32_t C = (uint32_t)o->conns;
	size_t nlast = 0;

	F.R = (uint32_t)o->rooms;
	F.K = (uint32_t)o->senders;
	F.W = o->rate > 0 ? 0 : (uint32_t)o->window;
	F.snd = calloc(F.K, sizeof(*F.snd));
	F.members = calloc(F.R, sizeof(*F.members));
	F.room_size = calloc(F.R, sizeof(*F.room_size));
	F.entered = calloc(C, 1);
	F.joined = calloc(C, 1);
	F.last_base = calloc(C, sizeof(*F.last_base));
	F.ft = calloc((size_t)bench.nth, sizeof(*F.ft));
	if (!F.snd || !F.members || !F.room_size || !F.entered || !F.joined || !F.last_base || !F.ft)
		goto oom;
	for (uint32_t i = 0; i < C; i++) {
		F.last_base[i] = nlast;
		nlast += senders_in_room(i % F.R);
	}
	if ((F.last = calloc(nlast ? nlast : 1, sizeof(*F.last))) == NULL)
		goto oom;
	for (uint32_t s = 0; s < F.K; s++) {
		F.snd[s].room = s % F.R;
		if (F.W && (F.snd[s].ring = calloc(F.W, sizeof(*F.snd[s].ring))) == NULL)
			goto oom;
	}
	F.text_cap = (size_t)o->size + 128;
	for (int i = 0; i < bench.nth; i++) {
		struct fan_thread *m = &F.ft[i];

		m->cnt = calloc(F.K, sizeof(*m->cnt));
		m->cnt_cap = calloc(F.K, sizeof(*m->cnt_cap));
		m->num_max = calloc(F.R, sizeof(*m->num_max));
		m->senders = calloc(F.K / (uint32_t)bench.nth + 1, sizeof(*m->senders));
		m->text = malloc(F.text_cap);
		if (!m->cnt || !m->cnt_cap || !m->num_max || !m->senders || !m->text)
			goto oom;
		for (uint32_t s = (uint32_t)i; s < F.K; s += (uint32_t)bench.nth)
			m->senders[m->nsenders++] = s;
		bench.th[i].m = m;
	}
	return 0;
oom:
	fprintf(stderr, "roomd-bench: out of memory for the fanout accounting\n");
	return -1;
}

/* Enter the connection's room. */
static void
fan_enter(struct bthread *t, struct bconn *c)
{
	char buf[256];
	int n = cp_enter(buf, sizeof(buf), bench.o.name_prefix, c->idx, bench.o.room_prefix,
	    c->idx % F.R);

	if (n < 0 || cl_send(t, c, 0x1, buf, (size_t)n) < 0)
		return;
	F.entered[c->idx] = 1;
	atomic_fetch_add(&F.members[c->idx % F.R], 1);
}

/*
 * Connections enter their rooms once all are connected, so that the enter
 * storm (every member hears every later enter) does not slow the handshakes
 * being measured. A connection opening later (never, normally) enters at once.
 */
static void
fan_open(struct bthread *t, struct bconn *c)
{
	if (run_phase() != PH_CONNECT)
		fan_enter(t, c);
}

static void
fan_close(struct bthread *t, struct bconn *c)
{
	if (F.entered[c->idx]) {
		F.entered[c->idx] = 0;
		atomic_fetch_sub(&F.members[c->idx % F.R], 1);
	}
}

/* Make room in this thread's counts of sender s for seq q. */
static int
cnt_reserve(struct fan_thread *m, uint32_t s, uint64_t q)
{
	size_t cap = m->cnt_cap[s];
	uint32_t *nc;

	if (q < cap)
		return 0;
	if (q > ((size_t)1 << 40))
		return -1;
	if (cap == 0)
		cap = 1024;
	while (cap <= q)
		cap *= 2;
	if ((nc = realloc(m->cnt[s], cap * sizeof(*nc))) == NULL)
		return -1;
	memset(nc + m->cnt_cap[s], 0, (cap - m->cnt_cap[s]) * sizeof(*nc));
	m->cnt[s] = nc;
	m->cnt_cap[s] = cap;
	return 0;
}

/* Parse a decimal number ending in '|'; advances *p. Returns 0 or -1. */
static int
parse_field(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	const uint8_t *s = *p;
	uint64_t n = 0;		/* a local: stores through v could alias *s */

	if (s >= end || *s < '0' || *s > '9')
		return -1;
	for (; s < end && *s >= '0' && *s <= '9'; s++)
		n = n * 10 + (uint64_t)(*s - '0');
	if (s >= end || *s != '|')
		return -1;
	*p = s + 1;
	*v = n;
	return 0;
}

/*
 * Where the fields after the marker start, or NULL. memchr for the rare '|'
 * is much cheaper than memmem on every frame received.
 */
static const uint8_t *
find_marker(const uint8_t *p, size_t len)
{
	const uint8_t *end = p + len, *q = p + MARK_LEN - 1;

	while (q < end && (q = memchr(q, '|', (size_t)(end - q))) != NULL) {
		if (memcmp(q - (MARK_LEN - 1), MARK, MARK_LEN) == 0)
			return q + 1;
		q++;
	}
	return NULL;
}

static int fan_send(struct bthread *, struct fan_thread *, uint32_t);

/*
 * Closed loop: move sender s's window past completed messages and fill it.
 * This runs once per loop turn, after the turn's reads, so that what became
 * sendable during the turn goes out in one write, as the server's own
 * output does; writing each message the moment its slot frees costs a
 * syscall (and a server read) per message and measured no faster.
 */
static void
window_advance(struct bthread *t, struct fan_thread *m, uint32_t s)
{
	struct sender *sd = &F.snd[s];
	uint64_t a = atomic_load_explicit(&sd->acked, memory_order_relaxed);
	uint64_t sent = atomic_load_explicit(&sd->sent, memory_order_relaxed);

	if (run_phase() != PH_RUN || now_ns() >= bench.t_run_end)
		return;
	while (a < sent && atomic_load_explicit(&sd->ring[a % F.W], memory_order_acquire) == 0)
		a++;
	atomic_store_explicit(&sd->acked, a, memory_order_release);
	while (sent < a + F.W && sent < bench.o.max_msgs && fan_send(t, m, s) == 0)
		sent++;
}

/* One message of the closed-loop window reached one more member. */
static void
window_deliver(struct bthread *t, uint32_t s, uint64_t q)
{
	struct sender *sd = &F.snd[s];
	_Atomic uint32_t *slot = &sd->ring[q % F.W];
	uint32_t v;
	int owner = (int)(s % (uint32_t)bench.nth);

	if (q < atomic_load_explicit(&sd->acked, memory_order_acquire))
		return;				/* late duplicate: the slot is reused */
	v = atomic_load_explicit(slot, memory_order_relaxed);
	do {
		if (v == 0)
			return;			/* more deliveries than members */
	} while (!atomic_compare_exchange_weak(slot, &v, v - 1));
	if (v != 1)
		return;
	if (owner != t->id)
		cl_wake(&bench.th[owner]);	/* its sender may send again: wake its loop */
}

/* A message with our marker arrived on connection c. */
static void
fan_delivery(struct bthread *t, struct fan_thread *m, struct bconn *c, const uint8_t *p,
    const uint8_t *end)
{
	uint64_t s, q, ts, now = t->now, lat;
	uint32_t i = c->idx, *u;

	if (parse_field(&p, end, &s) < 0 || parse_field(&p, end, &q) < 0 ||
	    parse_field(&p, end, &ts) < 0 || s >= F.K) {
		m->bad_marker++;
		return;
	}
	if (q >= atomic_load_explicit(&F.snd[s].sent, memory_order_acquire)) {
		m->unexpected++;		/* never sent: a corrupted or invented message */
		return;
	}
	lat = now > ts ? now - ts : 0;
	if (now >= bench.t_run_start && now < bench.t_run_end)
		stat_add(&m->recv_run, 1);
	if (i == s) {
		struct sender *sd = &F.snd[s];

		stat_add(&m->recv_self, 1);
		hist_add(&m->self_lat, lat);
		if (q >= sd->self_cap) {
			size_t cap = sd->self_cap ? sd->self_cap : 1024;
			uint8_t *nb;

			while (cap <= q)
				cap *= 2;
			if ((nb = realloc(sd->self_got, cap)) == NULL) {
				m->oom++;
				return;
			}
			memset(nb + sd->self_cap, 0, cap - sd->self_cap);
			sd->self_got = nb;
			sd->self_cap = cap;
		}
		sd->self_got[q] = 1;
		return;
	}
	if (i % F.R != F.snd[s].room) {
		m->wrong_room++;
		return;
	}
	if (cnt_reserve(m, (uint32_t)s, q) < 0) {
		m->oom++;
		return;
	}
	m->cnt[s][q]++;
	stat_add(&m->recv_others, 1);
	atomic_store_explicit(&m->last_delivery, now, memory_order_relaxed);
	hist_add(&m->lat, lat);
	u = &F.last[F.last_base[i] + s / F.R];
	if (q + 1 > *u) {
		m->gaps += q - *u;		/* *u is the seq expected next */
		*u = (uint32_t)(q + 1);
	} else {
		m->backwards++;
	}
	if (F.W)
		window_deliver(t, (uint32_t)s, q);
}

static void
fan_message(struct bthread *t, struct bconn *c, int opcode, const uint8_t *p, size_t len)
{
	struct fan_thread *m = t->m;
	const uint8_t *fields = len >= MARK_LEN ? find_marker(p, len) : NULL;
	struct cp_info info;

	if (fields != NULL) {
		fan_delivery(t, m, c, fields, p + len);
		return;
	}
	switch (cp_parse(p, len, &info)) {
	case CP_ENTER:
		m->enter_msgs++;
		atomic_store_explicit(&m->last_enter, t->now, memory_order_relaxed);
		if (info.num > 0 && (uint64_t)info.num > m->num_max[c->idx % F.R])
			m->num_max[c->idx % F.R] = (uint64_t)info.num;
		if (!F.joined[c->idx] && info.name != NULL &&
		    cp_name_is(info.name, info.name_len, bench.o.name_prefix, c->idx)) {
			F.joined[c->idx] = 1;
			stat_add(&m->joined, 1);
		}
		break;
	case CP_OUT:
		m->out_msgs++;
		break;
	case CP_HEARTBEAT_PING:
		m->heartbeats++;
		if (cl_send(t, c, 0x1, CP_PONG, sizeof(CP_PONG) - 1) == 0)
			m->pongs++;
		break;
	case CP_HEARTBEAT_OTHER:
		m->heartbeats++;
		break;
	case CP_ERROR:
		m->error_events++;
		/* On a sender's connection while it sends: most likely a refused message. */
		if (c->idx < F.K && run_phase() >= PH_RUN)
			stat_add(&F.snd[c->idx].errors, 1);
		if (m->first_error_event[0] == '\0') {
			/* Server bytes go to a terminal: keep only printable ASCII. */
			size_t n = len < sizeof(m->first_error_event) - 1 ? len :
			    sizeof(m->first_error_event) - 1;

			for (size_t k = 0; k < n; k++)
				m->first_error_event[k] = p[k] >= 0x20 && p[k] < 0x7f ? (char)p[k] : '?';
			m->first_error_event[n] = '\0';
		}
		break;
	default:
		m->unknown++;
		break;
	}
}

/* Build and queue message q of sender s. Returns 0 or -1. */
static int
fan_send(struct bthread *t, struct fan_thread *m, uint32_t s)
{
	struct sender *sd = &F.snd[s];
	struct bconn *c = &bench.conns[s];
	uint64_t q = atomic_load_explicit(&sd->sent, memory_order_relaxed);
	size_t want = (size_t)bench.o.size;
	int n;

	if (c->state != CS_OPEN)
		return -1;
	n = snprintf(m->text, F.text_cap, "{\"event\":\"message\",\"message\":\"" MARK "%u|%llu|%llu|",
	    s, (unsigned long long)q, (unsigned long long)now_ns());
	if (n < 0 || (size_t)n >= F.text_cap)
		return -1;
	/* Pad the text (after the 30-byte JSON prefix) to --size bytes. */
	size_t len = (size_t)n, textlen = len - 30;
	for (size_t k = 0; textlen < want && len + 3 < F.text_cap; k++, textlen++)
		m->text[len++] = (char)('a' + k % 26);
	m->text[len++] = '"';
	m->text[len++] = '}';
	if (F.W)
		atomic_store_explicit(&sd->ring[q % F.W], sd->others, memory_order_relaxed);
	/* Published before the frame is written (at the end of this loop turn). */
	atomic_store_explicit(&sd->sent, q + 1, memory_order_release);
	if (cl_send(t, c, 0x1, m->text, len) < 0) {
		atomic_store_explicit(&sd->sent, q, memory_order_release);
		return -1;
	}
	stat_add(&m->sent, 1);
	return 0;
}

/* Open loop: when slot n of sender s is due. */
static uint64_t
slot_due(uint32_t s, uint64_t n)
{
	return bench.t_run_start +
	    (uint64_t)(((double)n * F.K + s) * 1e9 / bench.o.rate);
}

static void
fan_tick(struct bthread *t)
{
	struct fan_thread *m = t->m;
	uint64_t now;

	if (!m->entered_all && run_phase() >= PH_JOIN) {
		m->entered_all = 1;
		for (uint32_t i = (uint32_t)t->id; i < (uint32_t)bench.o.conns; i += (uint32_t)bench.nth)
			if (bench.conns[i].state == CS_OPEN && !F.entered[i])
				fan_enter(t, &bench.conns[i]);
		atomic_fetch_add(&F.threads_entered, 1);
	}
	if (run_phase() != PH_RUN)
		return;
	now = now_ns();
	if (now >= bench.t_run_end)
		return;
	if (bench.o.rate > 0) {
		for (size_t k = 0; k < m->nsenders; k++) {
			uint32_t s = m->senders[k];
			struct sender *sd = &F.snd[s];
			uint64_t due;

			while ((due = slot_due(s, sd->slot)) <= now && due < bench.t_run_end &&
			    atomic_load_explicit(&sd->sent, memory_order_relaxed) < bench.o.max_msgs) {
				sd->slot++;
				if (cl_pending(&bench.conns[s]) > BACKLOG_LIMIT) {
					sd->skipped++;
					continue;
				}
				if (fan_send(t, m, s) == 0)
					hist_add(&m->lag, now - due);
			}
		}
		return;
	}
	for (size_t k = 0; k < m->nsenders; k++)
		window_advance(t, m, m->senders[k]);
}

static uint64_t
fan_wake(struct bthread *t)
{
	struct fan_thread *m = t->m;
	uint64_t w = 0, due;

	if (bench.o.rate <= 0 || run_phase() != PH_RUN)
		return 0;
	for (size_t k = 0; k < m->nsenders; k++) {
		due = slot_due(m->senders[k], F.snd[m->senders[k]].slot);
		if (due < bench.t_run_end && (w == 0 || due < w))
			w = due;
	}
	return w;
}

/* Sum of one counter over the threads. */
static uint64_t
ft_sum(size_t off)
{
	uint64_t sum = 0;

	for (int i = 0; i < bench.nth; i++)
		sum += stat_get((_Atomic uint64_t *)((char *)&F.ft[i] + off));
	return sum;
}
#define FT_SUM(field)	ft_sum(offsetof(struct fan_thread, field))

static uint64_t
ft_max(size_t off)
{
	uint64_t mx = 0, v;

	for (int i = 0; i < bench.nth; i++) {
		v = stat_get((_Atomic uint64_t *)((char *)&F.ft[i] + off));
		if (v > mx)
			mx = v;
	}
	return mx;
}

/* Deliveries to others still due for what was sent so far. */
static uint64_t
expected_others(void)
{
	uint64_t e = 0;

	for (uint32_t s = 0; s < F.K; s++) {
		uint64_t sent = atomic_load_explicit(&F.snd[s].sent, memory_order_relaxed);
		uint64_t refused = stat_get(&F.snd[s].errors);

		e += (sent > refused ? sent - refused : 0) * F.snd[s].others;
	}
	return e;
}

static void
fan_finish(uint64_t now)
{
	if (ps_sample(bench.o.pids, bench.o.npids, &bench.ps_run1) < 0)
		memset(&bench.ps_run1, 0, sizeof(bench.ps_run1));
	bench.t_end = now;
	run_set_phase(PH_DONE);
}

static void
fan_start_run(uint64_t now)
{
	for (uint32_t r = 0; r < F.R; r++) {
		int n = atomic_load(&F.members[r]);

		F.room_size[r] = n > 0 ? (uint32_t)n : 0;
	}
	for (uint32_t s = 0; s < F.K; s++)
		F.snd[s].others = F.room_size[F.snd[s].room] > 0 ? F.room_size[F.snd[s].room] - 1 : 0;
	if (ps_sample(bench.o.pids, bench.o.npids, &bench.ps_run0) < 0)
		memset(&bench.ps_run0, 0, sizeof(bench.ps_run0));
	bench.t_run_start = now_ns();
	bench.t_run_end = bench.t_run_start + (uint64_t)(bench.o.duration * NS_PER_S);
	F.stall_at = bench.t_run_start;
	F.stall_recv = 0;
	run_set_phase(PH_RUN);
}

static void
fan_coord(uint64_t now)
{
	uint64_t recv;

	switch (run_phase()) {
	case PH_CONNECT:
		if (!run_connects_done())
			break;
		bench.t_connect_end = RUN_STAT(last_open_ns);
		if (RUN_STAT(opened) == 0) {
			fan_finish(now);
			break;
		}
		F.t_join_start = now;
		run_set_phase(PH_JOIN);
		break;
	case PH_JOIN: {
		uint64_t want = 0;

		for (uint32_t r = 0; r < F.R; r++)
			want += (uint64_t)atomic_load(&F.members[r]);
		if (atomic_load(&F.threads_entered) < bench.nth)
			break;
		if (bench.o.no_join_ack || FT_SUM(joined) >= want) {
			F.t_join_end = now;
			run_set_phase(PH_SETTLE);
		} else if (now - F.t_join_start > (uint64_t)(bench.o.join_timeout * NS_PER_S)) {
			F.join_incomplete = 1;
			F.t_join_end = now;
			run_set_phase(PH_SETTLE);
		}
		break;
	}
	case PH_SETTLE: {
		uint64_t last = ft_max(offsetof(struct fan_thread, last_enter));

		if (last < F.t_join_end)
			last = F.t_join_end;
		if (now >= last && now - last >= (uint64_t)(bench.o.settle * NS_PER_S))
			fan_start_run(now);
		break;
	}
	case PH_RUN:
		recv = FT_SUM(recv_others) + FT_SUM(recv_self);
		if (recv != F.stall_recv) {
			F.stall_recv = recv;
			F.stall_at = now;
		} else if (F.W && now - F.stall_at > (uint64_t)(bench.o.stall * NS_PER_S)) {
			F.stalled = 1;
		}
		if (now >= bench.t_run_end || F.stalled) {
			F.t_send_end = now < bench.t_run_end ? now : bench.t_run_end;
			F.drain_until = now + (uint64_t)(bench.o.drain * NS_PER_S);
			run_set_phase(PH_DRAIN);
		}
		break;
	case PH_DRAIN: {
		uint64_t self = FT_SUM(recv_self), sent = FT_SUM(sent), refused = 0;

		for (uint32_t s = 0; s < F.K; s++)
			refused += stat_get(&F.snd[s].errors);
		if ((FT_SUM(recv_others) >= expected_others() && (self == 0 || self + refused >= sent)) ||
		    now >= F.drain_until)
			fan_finish(now);
		break;
	}
	default:
		break;
	}
}

static void
fan_progress(char *buf, size_t cap, uint64_t now)
{
	static uint64_t last_n, last_t;
	uint64_t n = FT_SUM(recv_others) + FT_SUM(recv_self);
	double dt = last_t ? (double)(now - last_t) / 1e9 : 0;

	switch (run_phase()) {
	case PH_CONNECT:
		(void)snprintf(buf, cap, "connect  %llu open, %llu failed",
		    (unsigned long long)RUN_STAT(opened), (unsigned long long)RUN_STAT(failed));
		break;
	case PH_JOIN:
	case PH_SETTLE:
		(void)snprintf(buf, cap, "join  %llu joined", (unsigned long long)FT_SUM(joined));
		break;
	default:
		(void)snprintf(buf, cap, "%s  %.1f s  sent %llu  delivered %llu  %.0f deliveries/s now",
		    run_phase() == PH_RUN ? "run" : "drain", (double)(now - bench.t_run_start) / 1e9,
		    (unsigned long long)FT_SUM(sent), (unsigned long long)n,
		    dt > 0 ? (double)(n - last_n) / dt : 0.0);
		break;
	}
	last_n = n;
	last_t = now;
}

struct fan_totals {
	uint64_t	 sent, expected, received, lost, dup, shorts, skipped;
	uint64_t	 rejected, errors_sending;
	uint64_t	 recv_self, recv_run, deliveries, last_delivery;
	uint64_t	 gaps, backwards, bad_marker, wrong_room, unexpected, oom;
	uint64_t	 enter, out, heartbeats, pongs, errors, unknown, joined;
	uint32_t	 size_min, size_max;
	uint64_t	 num_min, num_max;
};

/* Merge the threads' counts into totals and histograms. */
static void
fan_merge(struct fan_totals *T, struct hist *lat, struct hist *self_lat, struct hist *lag)
{
	memset(T, 0, sizeof(*T));
	for (uint32_t s = 0; s < F.K; s++) {
		struct sender *sd = &F.snd[s];
		uint64_t sent = atomic_load(&sd->sent), want = sd->others;
		uint64_t refused = stat_get(&sd->errors), rejected = 0;

		T->sent += sent;
		T->skipped += sd->skipped;
		T->errors_sending += refused;
		for (uint64_t q = 0; q < sent; q++) {
			uint64_t got = 0;
			int back = q < sd->self_cap && sd->self_got[q];

			for (int i = 0; i < bench.nth; i++)
				if (q < F.ft[i].cnt_cap[s])
					got += F.ft[i].cnt[s][q];
			if (got == 0 && !back && rejected < refused) {
				rejected++;		/* refused with an error: nobody got it */
				continue;
			}
			T->expected += want;
			T->received += got;
			if (got < want) {
				T->lost += want - got;
				T->shorts++;
			} else {
				T->dup += got - want;
			}
		}
		T->rejected += rejected;
	}
	for (int i = 0; i < bench.nth; i++) {
		struct fan_thread *m = &F.ft[i];

		hist_merge(lat, &m->lat);
		hist_merge(self_lat, &m->self_lat);
		hist_merge(lag, &m->lag);
		T->recv_self += stat_get(&m->recv_self);
		T->recv_run += stat_get(&m->recv_run);
		if (stat_get(&m->last_delivery) > T->last_delivery)
			T->last_delivery = stat_get(&m->last_delivery);
		T->gaps += m->gaps;
		T->backwards += m->backwards;
		T->bad_marker += m->bad_marker;
		T->wrong_room += m->wrong_room;
		T->unexpected += m->unexpected;
		T->oom += m->oom;
		T->enter += m->enter_msgs;
		T->out += m->out_msgs;
		T->heartbeats += m->heartbeats;
		T->pongs += m->pongs;
		T->errors += m->error_events;
		T->unknown += m->unknown;
		T->joined += stat_get(&m->joined);
	}
	T->deliveries = T->received + T->recv_self;
	T->size_min = UINT32_MAX;
	for (uint32_t r = 0; r < F.R; r++) {
		uint64_t num = 0;

		if (F.room_size[r] < T->size_min)
			T->size_min = F.room_size[r];
		if (F.room_size[r] > T->size_max)
			T->size_max = F.room_size[r];
		for (int i = 0; i < bench.nth; i++)
			if (F.ft[i].num_max[r] > num)
				num = F.ft[i].num_max[r];
		if (r == 0 || num < T->num_min)
			T->num_min = num;
		if (num > T->num_max)
			T->num_max = num;
	}
}

static int
fan_report(FILE *f, struct jout *j)
{
	struct hist *h = calloc(3, sizeof(*h));
	struct fan_totals T;
	double run_s, span_s, dps, dps_run;
	int self_on, bad;
	uint64_t lost_self;

	if (h == NULL)
		return 1;
	fan_merge(&T, &h[0], &h[1], &h[2]);
	self_on = T.recv_self > 0;
	lost_self = self_on && T.sent - T.rejected > T.recv_self ? T.sent - T.rejected - T.recv_self : 0;
	run_s = bench.t_run_start == 0 ? 0 :
	    (double)((F.t_send_end ? F.t_send_end : bench.t_end) - bench.t_run_start) / 1e9;
	span_s = T.last_delivery > bench.t_run_start && bench.t_run_start ?
	    (double)(T.last_delivery - bench.t_run_start) / 1e9 : 0;
	dps = span_s > 0 ? (double)T.deliveries / span_s : 0;
	dps_run = run_s > 0 ? (double)T.recv_run / run_s : 0;

	fprintf(f, "  join         rooms=%u size %u..%u, %llu/%llu joined%s in %.3f s; server num max %llu..%llu\n",
	    F.R, T.size_min, T.size_max, (unsigned long long)T.joined,
	    (unsigned long long)RUN_STAT(opened), bench.o.no_join_ack ? " (no ack)" : "",
	    F.t_join_end > F.t_join_start ? (double)(F.t_join_end - F.t_join_start) / 1e9 : 0.0,
	    (unsigned long long)T.num_min, (unsigned long long)T.num_max);
	if (bench.o.rate > 0)
		fprintf(f, "  send         senders=%u rate=%.0f msg/s (open loop): sent %llu in %.3f s = %.1f msg/s, skipped %llu\n",
		    F.K, bench.o.rate, (unsigned long long)T.sent, run_s,
		    run_s > 0 ? (double)T.sent / run_s : 0.0, (unsigned long long)T.skipped);
	else
		fprintf(f, "  send         senders=%u window=%u (closed loop): sent %llu in %.3f s = %.1f msg/s%s\n",
		    F.K, F.W, (unsigned long long)T.sent, run_s,
		    run_s > 0 ? (double)T.sent / run_s : 0.0, F.stalled ? "  STALLED" : "");
	if (bench.o.rate > 0)
		rep_hist(f, "send lag", &h[2]);
	fprintf(f, "  deliveries   others: expected %llu received %llu lost %llu (msgs short %llu) dup %llu\n"
	    "               order: gaps %llu backwards %llu\n",
	    (unsigned long long)T.expected, (unsigned long long)T.received, (unsigned long long)T.lost,
	    (unsigned long long)T.shorts, (unsigned long long)T.dup, (unsigned long long)T.gaps,
	    (unsigned long long)T.backwards);
	if (T.rejected || T.errors_sending)
		fprintf(f, "               rejected: %llu messages refused by the server (%llu error events to senders)\n",
		    (unsigned long long)T.rejected, (unsigned long long)T.errors_sending);
	if (self_on)
		fprintf(f, "               self: the server sends each message back to its sender: %llu of %llu\n",
		    (unsigned long long)T.recv_self, (unsigned long long)(T.sent - T.rejected));
	else
		fprintf(f, "               self: the server does not send messages back to their sender\n");
	fprintf(f, "  throughput   %.0f deliveries/s in the send window, %.0f deliveries/s to the last delivery\n",
	    dps_run, dps);
	rep_hist(f, "latency", &h[0]);
	if (self_on)
		rep_hist(f, "self latency", &h[1]);
	fprintf(f, "  events       enter %llu out %llu heartbeat %llu (pongs %llu) error %llu unknown %llu\n",
	    (unsigned long long)T.enter, (unsigned long long)T.out, (unsigned long long)T.heartbeats,
	    (unsigned long long)T.pongs, (unsigned long long)T.errors, (unsigned long long)T.unknown);
	if (T.bad_marker || T.wrong_room || T.unexpected || T.oom)
		fprintf(f, "  anomalies    bad markers %llu, wrong room %llu, never sent %llu, not counted (no memory) %llu\n",
		    (unsigned long long)T.bad_marker, (unsigned long long)T.wrong_room,
		    (unsigned long long)T.unexpected, (unsigned long long)T.oom);
	for (int i = 0; i < bench.nth; i++)
		if (F.ft[i].first_error_event[0] != '\0') {
			fprintf(f, "  first error  %s\n", F.ft[i].first_error_event);
			break;
		}

	jo_int(j, "rooms", F.R);
	jo_int(j, "room_size_min", T.size_min);
	jo_int(j, "room_size_max", T.size_max);
	jo_int(j, "server_num_max", (long long)T.num_max);
	jo_int(j, "joined", (long long)T.joined);
	jo_int(j, "join_incomplete", F.join_incomplete);
	jo_int(j, "senders", F.K);
	jo_num(j, "rate_target", bench.o.rate);
	jo_int(j, "window", F.W);
	jo_int(j, "size", bench.o.size);
	jo_num(j, "duration_s", run_s);
	jo_int(j, "sent", (long long)T.sent);
	jo_num(j, "send_rate", run_s > 0 ? (double)T.sent / run_s : 0.0);
	jo_int(j, "skipped_backpressure", (long long)T.skipped);
	jo_int(j, "stalled", F.stalled);
	jo_int(j, "expected_others", (long long)T.expected);
	jo_int(j, "received_others", (long long)T.received);
	jo_int(j, "lost_others", (long long)T.lost);
	jo_int(j, "msgs_short", (long long)T.shorts);
	jo_int(j, "dup_deliveries", (long long)T.dup);
	jo_int(j, "rejected", (long long)T.rejected);
	jo_int(j, "seq_gaps", (long long)T.gaps);
	jo_int(j, "seq_backwards", (long long)T.backwards);
	jo_int(j, "self_delivery", self_on);
	jo_int(j, "received_self", (long long)T.recv_self);
	jo_int(j, "lost_self", (long long)lost_self);
	jo_int(j, "deliveries_total", (long long)T.deliveries);
	jo_num(j, "deliveries_per_s", dps);
	jo_num(j, "deliveries_per_s_run", dps_run);
	jo_hist(j, "latency", &h[0]);
	jo_hist(j, "self_latency", &h[1]);
	if (bench.o.rate > 0)
		jo_hist(j, "send_lag", &h[2]);
	jo_int(j, "enter_msgs", (long long)T.enter);
	jo_int(j, "out_msgs", (long long)T.out);
	jo_int(j, "heartbeats", (long long)T.heartbeats);
	jo_int(j, "heartbeat_pongs", (long long)T.pongs);
	jo_int(j, "error_events", (long long)T.errors);
	jo_int(j, "unknown_msgs", (long long)T.unknown);
	jo_int(j, "bad_marker", (long long)T.bad_marker);
	jo_int(j, "wrong_room", (long long)T.wrong_room);
	jo_int(j, "never_sent", (long long)T.unexpected);
	rep_cpu(f, j, "run+drain", &bench.ps_run0, &bench.ps_run1, bench.o.npids);
	bad = T.lost || T.dup || T.gaps || T.backwards || F.stalled || F.join_incomplete || T.rejected ||
	    T.bad_marker || T.wrong_room || T.unexpected || T.oom || lost_self || T.sent == 0;
	free(h);
	return bad;
}

static void
fan_fini(void)
{
	for (int i = 0; F.ft != NULL && i < bench.nth; i++) {
		struct fan_thread *m = &F.ft[i];

		for (uint32_t s = 0; m->cnt != NULL && s < F.K; s++)
			free(m->cnt[s]);
		free(m->cnt);
		free(m->cnt_cap);
		free(m->num_max);
		free(m->senders);
		free(m->text);
	}
	for (uint32_t s = 0; F.snd != NULL && s < F.K; s++) {
		free(F.snd[s].ring);
		free(F.snd[s].self_got);
	}
	free(F.snd);
	free(F.members);
	free(F.room_size);
	free(F.entered);
	free(F.joined);
	free(F.last);
	free(F.last_base);
	free(F.ft);
}

const struct bench_mode mode_fanout = {
	.name = "fanout",
	.init = fan_init,
	.on_open = fan_open,
	.on_message = fan_message,
	.on_close = fan_close,
	.tick = fan_tick,
	.wake = fan_wake,
	.coord = fan_coord,
	.progress = fan_progress,
	.report = fan_report,
	.fini = fan_fini,
};
