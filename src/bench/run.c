/*
 * run.c: the run itself: one epoll loop per thread, connection i on thread
 * i % threads; thread 0 also coordinates (the mode decides when a phase
 * ends; here are the connect timeout, the hard deadline, signals and the
 * progress line). Phase changes are published with release stores and
 * every other thread is woken through its eventfd.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_EVENTS	64	/* short turns: a turn's sends wait for its reads */
#define COORD_EVERY_NS	(1 * NS_PER_MS)	/* thread 0 coordinates at most this often */
#define TICK0_NS	(5 * NS_PER_MS)	/* longest sleep of thread 0 */
#define TICKN_NS	(100 * NS_PER_MS) /* longest sleep of the others */
#define WAKE_TOKEN	UINT64_MAX
#define CLOSE_WAIT_NS	(2 * NS_PER_S)	/* how long the server may take to close */

struct bench_run bench;
volatile sig_atomic_t bench_signalled;

uint64_t
now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		abort();	/* cannot happen with a valid clock id */
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t
bench_rand(struct bthread *t)
{
	/* xorshift64*: fast, and plenty for masking keys and nonces. */
	uint64_t x = t->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	t->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

void
run_set_phase(int ph)
{
	atomic_store_explicit(&bench.phase, ph, memory_order_release);
	for (int i = 1; i < bench.nth; i++)
		cl_wake(&bench.th[i]);
}

uint64_t
run_sum_stat(size_t offset)
{
	uint64_t sum = 0;

	for (int i = 0; i < bench.nth; i++)
		sum += stat_get((_Atomic uint64_t *)((char *)&bench.th[i].st + offset));
	return sum;
}

int
run_connects_done(void)
{
	return RUN_STAT(opened) + RUN_STAT(failed) >= (uint64_t)bench.o.conns;
}

/* The progress line, at most once a second, only on a terminal. */
static void
progress(uint64_t now)
{
	static uint64_t next;
	char line[200];

	if (!bench.tty || now < next || bench.mode->progress == NULL)
		return;
	next = now + NS_PER_S;
	line[0] = '\0';
	bench.mode->progress(line, sizeof(line), now);
	printf("\r%.*s\033[K", 120, line);
	(void)fflush(stdout);
}

/* Thread 0, every turn: stop conditions common to all modes, then the mode's. */
static void
coordinate(uint64_t now)
{
	static uint64_t last;

	if (now - last < COORD_EVERY_NS)
		return;
	last = now;
	if (bench_signalled || now >= bench.deadline) {
		if (bench_signalled)
			bench.interrupted = 1;
		else
			bench.timed_out = 1;
		if (ps_sample(bench.o.pids, bench.o.npids, &bench.ps_run1) < 0)
			memset(&bench.ps_run1, 0, sizeof(bench.ps_run1));
		bench.t_end = now;
		run_set_phase(PH_DONE);
		return;
	}
	if (run_phase() == PH_CONNECT && !atomic_load(&bench.connect_expired) &&
	    now - bench.t_begin > (uint64_t)(bench.o.connect_timeout * NS_PER_S)) {
		atomic_store(&bench.connect_expired, 1);
		for (int i = 1; i < bench.nth; i++)
			cl_wake(&bench.th[i]);
	}
	bench.mode->coord(now);
	progress(now);
}

/* Milliseconds to sleep until the earliest of: a tick, the mode's next deadline. */
static int
sleep_ms(struct bthread *t, uint64_t now)
{
	uint64_t until = now + (t->id == 0 ? TICK0_NS : TICKN_NS), w;

	if (bench.mode->wake != NULL && (w = bench.mode->wake(t)) != 0 && w < until)
		until = w;
	if (until <= now)
		return 0;
	return (int)((until - now + NS_PER_MS - 1) / NS_PER_MS);
}

/*
 * The run is over: send every connection of this thread a close frame and
 * wait (bounded) for the server to end the TCP connection, as RFC 6455
 * wants. Closing first ourselves would leave each connection's TIME_WAIT on
 * this side, and back-to-back runs of 10,000 connections would then spend
 * their time in connect() hunting for a free local port.
 */
static void
run_close_all(struct bthread *t)
{
	struct epoll_event ev[MAX_EVENTS];
	uint64_t until = now_ns() + CLOSE_WAIT_NS;
	int n;

	for (uint32_t i = (uint32_t)t->id; i < (uint32_t)bench.o.conns; i += (uint32_t)bench.nth)
		(void)cl_begin_close(t, &bench.conns[i]);
	while (t->closing > 0 && now_ns() < until) {
		n = epoll_wait(t->epfd, ev, MAX_EVENTS, 50);
		if (n < 0 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++)
			if (ev[i].data.u64 == WAKE_TOKEN)
				cl_drain_wake(t);
			else
				cl_event(t, (uint32_t)ev[i].data.u64, ev[i].events);
	}
	for (uint32_t i = (uint32_t)t->id; i < (uint32_t)bench.o.conns; i += (uint32_t)bench.nth)
		cl_close(t, &bench.conns[i], 0);
}

/* One thread's event loop, until the run is done. */
static void
run_loop(struct bthread *t)
{
	struct epoll_event ev[MAX_EVENTS];
	int n;

	while (run_phase() != PH_DONE) {
		cl_start_connects(t);
		if (!t->expired && atomic_load(&bench.connect_expired)) {
			t->expired = 1;
			cl_expire_pending(t);
		}
		n = epoll_wait(t->epfd, ev, MAX_EVENTS, sleep_ms(t, now_ns()));
		if (n < 0 && errno != EINTR) {
			fprintf(stderr, "roomd-bench: epoll_wait() failed (%d: %s)\n", errno, strerror(errno));
			bench_signalled = 1;
			n = 0;
		}
		t->now = now_ns();
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == WAKE_TOKEN)
				cl_drain_wake(t);
			else
				cl_event(t, (uint32_t)ev[i].data.u64, ev[i].events);
		}
		t->now = now_ns();
		if (bench.mode->tick != NULL)
			bench.mode->tick(t);
		cl_flush_all(t);
		if (t->id == 0)
			coordinate(t->now);
	}
	run_close_all(t);
}

static void *
thread_main(void *arg)
{
	run_loop(arg);
	return NULL;
}

int
run_all(void)
{
	const struct bench_opts *o = &bench.o;
	int rc = 0, started = 1;

	bench.conns = calloc((size_t)o->conns, sizeof(*bench.conns));
	bench.th = calloc((size_t)o->threads, sizeof(*bench.th));
	if (bench.conns == NULL || bench.th == NULL) {
		fprintf(stderr, "roomd-bench: out of memory for %d connections\n", o->conns);
		return -1;
	}
	bench.nth = o->threads;
	for (int i = 0; i < o->conns; i++) {
		bench.conns[i].fd = -1;
		bench.conns[i].idx = (uint32_t)i;
		wsc_decoder_init(&bench.conns[i].dec, 0);
	}
	for (int i = 0; i < bench.nth; i++) {
		bench.th[i].id = i;
		if (cl_thread_init(&bench.th[i]) < 0)
			return -1;
	}
	if (bench.mode->init() < 0)
		return -1;
	bench.t_begin = now_ns();
	bench.deadline = bench.t_begin + (uint64_t)((o->connect_timeout + o->join_timeout +
	    o->settle + o->duration + o->drain + o->hold + 30.0) * NS_PER_S);
	atomic_store(&bench.phase, PH_CONNECT);
	for (int i = 1; i < bench.nth; i++) {
		int err = pthread_create(&bench.th[i].tid, NULL, thread_main, &bench.th[i]);

		if (err != 0) {
			fprintf(stderr, "roomd-bench: pthread_create() failed (%d: %s)\n", err, strerror(err));
			bench_signalled = 1;
			rc = -1;
			break;
		}
		started++;
	}
	run_loop(&bench.th[0]);
	for (int i = 1; i < started; i++) {
		int err = pthread_join(bench.th[i].tid, NULL);

		if (err != 0) {
			fprintf(stderr, "roomd-bench: pthread_join() failed (%d: %s)\n", err, strerror(err));
			rc = -1;
		}
	}
	if (bench.tty) {
		printf("\r\033[K");
		(void)fflush(stdout);
	}
	return rc;
}
