/*
 * mode_echo.c: echo mode. Every connection keeps `pipeline` text messages in
 * flight on the echo route; each echo is checked byte for byte against what
 * was sent and timed. Round trips count only when they return inside the
 * measured D seconds.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define ECHO_DRAIN_NS	(2 * NS_PER_S)	/* wait for the last echoes after the run */

struct echo_conn {
	uint64_t	 sent;		/* messages sent */
	uint64_t	 recvd;		/* echoes received */
};

struct echo_thread {
	struct hist	 rtt;
	_Atomic uint64_t msgs_run;	/* echoes back inside the run window */
	_Atomic uint64_t msgs_all;
	_Atomic uint64_t sent;
	_Atomic uint64_t bad;		/* echoes that differ from what was sent */
	uint8_t		*scratch;	/* expected payload */
	int		 primed;	/* open connections got their first messages */
};

static struct echo_conn *ec;
static uint64_t *sent_at;		/* conns x pipeline send times */
static struct echo_thread *et;
static char *pattern;			/* letters; payloads are windows of it */
static uint64_t drain_until;

/* The payload of message q on connection i: a window of the pattern, stamped with q. */
static void
payload(uint8_t *out, uint32_t i, uint64_t q)
{
	size_t n = (size_t)bench.o.size;

	memcpy(out, pattern + (i * 7u + q) % 26u, n);
	for (size_t k = 0; k < n && k < 8; k++) {
		out[k] = (uint8_t)('A' + q % 26);
		q /= 26;
	}
}

static int
echo_init(void)
{
	size_t n = (size_t)bench.o.size;

	ec = calloc((size_t)bench.o.conns, sizeof(*ec));
	sent_at = calloc((size_t)bench.o.conns * (size_t)bench.o.pipeline, sizeof(*sent_at));
	et = calloc((size_t)bench.nth, sizeof(*et));
	pattern = malloc(n + 32);
	if (ec == NULL || sent_at == NULL || et == NULL || pattern == NULL)
		goto oom;
	for (size_t k = 0; k < n + 32; k++)
		pattern[k] = (char)('a' + k % 26);
	for (int i = 0; i < bench.nth; i++) {
		if ((et[i].scratch = malloc(n + 1)) == NULL)
			goto oom;
		bench.th[i].m = &et[i];
	}
	return 0;
oom:
	fprintf(stderr, "roomd-bench: out of memory\n");
	return -1;
}

/* Send the next message on c, if the run still wants it. */
static void
echo_send(struct bthread *t, struct bconn *c)
{
	struct echo_thread *m = t->m;
	struct echo_conn *e = &ec[c->idx];
	uint64_t now = now_ns();

	if (run_phase() != PH_RUN || now >= bench.t_run_end)
		return;
	payload(m->scratch, c->idx, e->sent);
	sent_at[(size_t)c->idx * (size_t)bench.o.pipeline + e->sent % (uint64_t)bench.o.pipeline] = now;
	if (cl_send(t, c, 0x1, m->scratch, (size_t)bench.o.size) == 0) {
		e->sent++;
		stat_add(&m->sent, 1);
	}
}

static void
echo_fill(struct bthread *t, struct bconn *c)
{
	while (c->state == CS_OPEN && ec[c->idx].sent - ec[c->idx].recvd < (uint64_t)bench.o.pipeline) {
		uint64_t before = ec[c->idx].sent;

		echo_send(t, c);
		if (ec[c->idx].sent == before)
			break;
	}
}

static void
echo_open(struct bthread *t, struct bconn *c)
{
	if (run_phase() == PH_RUN)
		echo_fill(t, c);
}

static void
echo_message(struct bthread *t, struct bconn *c, int opcode, const uint8_t *p, size_t len)
{
	struct echo_thread *m = t->m;
	struct echo_conn *e = &ec[c->idx];
	uint64_t q, t0;

	if (e->recvd == e->sent) {
		stat_add(&m->bad, 1);		/* nothing was in flight */
		return;
	}
	q = e->recvd++;
	t0 = sent_at[(size_t)c->idx * (size_t)bench.o.pipeline + q % (uint64_t)bench.o.pipeline];
	if (!bench.o.no_verify) {
		payload(m->scratch, c->idx, q);
		if (opcode != 0x1 || len != (size_t)bench.o.size || memcmp(p, m->scratch, len) != 0)
			stat_add(&m->bad, 1);
	}
	stat_add(&m->msgs_all, 1);
	if (t->now < bench.t_run_end && t0 >= bench.t_run_start) {
		stat_add(&m->msgs_run, 1);
		hist_add(&m->rtt, t->now - t0);
	}
	/* Write the next one at once, as a client would, not at the end of the loop turn. */
	echo_send(t, c);
	cl_flush(t, c);
}

static void
echo_tick(struct bthread *t)
{
	struct echo_thread *m = t->m;

	if (m->primed || run_phase() != PH_RUN)
		return;
	m->primed = 1;
	for (uint32_t i = (uint32_t)t->id; i < (uint32_t)bench.o.conns; i += (uint32_t)bench.nth)
		if (bench.conns[i].state == CS_OPEN)
			echo_fill(t, &bench.conns[i]);
}

static uint64_t
sum_run(void)
{
	uint64_t s = 0;

	for (int i = 0; i < bench.nth; i++)
		s += stat_get(&et[i].msgs_run);
	return s;
}

/* Whether every message sent has come back (or its connection is gone). */
static int
all_back(void)
{
	uint64_t back = 0, sent = 0;

	for (int i = 0; i < bench.nth; i++) {
		back += stat_get(&et[i].msgs_all);
		sent += stat_get(&et[i].sent);
	}
	return back >= sent;
}

static void
echo_coord(uint64_t now)
{
	switch (run_phase()) {
	case PH_CONNECT:
		if (!run_connects_done())
			break;
		bench.t_connect_end = RUN_STAT(last_open_ns);
		if (ps_sample(bench.o.pids, bench.o.npids, &bench.ps_run0) < 0)
			memset(&bench.ps_run0, 0, sizeof(bench.ps_run0));
		bench.t_run_start = now_ns();
		bench.t_run_end = bench.t_run_start + (uint64_t)(bench.o.duration * NS_PER_S);
		run_set_phase(PH_RUN);
		break;
	case PH_RUN:
		if (now < bench.t_run_end)
			break;
		if (ps_sample(bench.o.pids, bench.o.npids, &bench.ps_run1) < 0)
			memset(&bench.ps_run1, 0, sizeof(bench.ps_run1));
		drain_until = now + ECHO_DRAIN_NS;
		run_set_phase(PH_DRAIN);
		break;
	case PH_DRAIN:
		if (now >= drain_until || all_back()) {
			bench.t_end = now;
			run_set_phase(PH_DONE);
		}
		break;
	default:
		break;
	}
}

static void
echo_progress(char *buf, size_t cap, uint64_t now)
{
	static uint64_t last_n, last_t;
	uint64_t n = sum_run();
	double dt = last_t ? (double)(now - last_t) / 1e9 : 0;

	if (run_phase() == PH_CONNECT)
		(void)snprintf(buf, cap, "connect  %llu open, %llu failed",
		    (unsigned long long)RUN_STAT(opened), (unsigned long long)RUN_STAT(failed));
	else
		(void)snprintf(buf, cap, "echo  %.1f s  %llu round trips  %.0f/s now",
		    (double)(now - bench.t_run_start) / 1e9, (unsigned long long)n,
		    dt > 0 ? (double)(n - last_n) / dt : 0.0);
	last_n = n;
	last_t = now;
}

static int
echo_report(FILE *f, struct jout *j)
{
	struct hist *rtt = calloc(1, sizeof(*rtt));
	uint64_t n = 0, bad = 0, all = 0;
	double d = bench.o.duration;

	if (rtt == NULL)
		return 1;
	for (int i = 0; i < bench.nth; i++) {
		hist_merge(rtt, &et[i].rtt);
		n += stat_get(&et[i].msgs_run);
		all += stat_get(&et[i].msgs_all);
		bad += stat_get(&et[i].bad);
	}
	if (bench.t_end && bench.t_end < bench.t_run_end)	/* interrupted early */
		d = (double)(bench.t_end - bench.t_run_start) / 1e9;
	fprintf(f, "  echo         size=%d pipeline=%d  %llu round trips in %.3f s = %.0f msgs/s\n",
	    bench.o.size, bench.o.pipeline, (unsigned long long)n, d, d > 0 ? (double)n / d : 0.0);
	rep_hist(f, "rtt", rtt);
	fprintf(f, "  verify       %s  bad echoes %llu\n",
	    bench.o.no_verify ? "off" : "on", (unsigned long long)bad);
	jo_int(j, "size", bench.o.size);
	jo_int(j, "pipeline", bench.o.pipeline);
	jo_num(j, "duration_s", d);
	jo_int(j, "msgs", (long long)n);
	jo_int(j, "msgs_total", (long long)all);
	jo_num(j, "msgs_per_s", d > 0 ? (double)n / d : 0.0);
	jo_int(j, "verify", !bench.o.no_verify);
	jo_int(j, "bad_echo", (long long)bad);
	jo_hist(j, "rtt", rtt);
	rep_cpu(f, j, "run", &bench.ps_run0, &bench.ps_run1, bench.o.npids);
	free(rtt);
	return bad > 0 || n == 0;
}

static void
echo_fini(void)
{
	for (int i = 0; et != NULL && i < bench.nth; i++)
		free(et[i].scratch);
	free(ec);
	free(sent_at);
	free(et);
	free(pattern);
}

const struct bench_mode mode_echo = {
	.name = "echo",
	.init = echo_init,
	.on_open = echo_open,
	.on_message = echo_message,
	.on_close = NULL,
	.tick = echo_tick,
	.wake = NULL,
	.coord = echo_coord,
	.progress = echo_progress,
	.report = echo_report,
	.fini = echo_fini,
};
