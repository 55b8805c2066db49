/*
 * bench.h: what the parts of roomd-bench share: the options, the run with its
 * phases, threads and connections, the calls of the I/O layer (client.c) and
 * of the run loop (run.c), and the hooks every mode implements.
 */
#ifndef ROOMD_BENCH_BENCH_H
#define ROOMD_BENCH_BENCH_H

#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "hist.h"
#include "procstat.h"
#include "report.h"
#include "wsc.h"

#define NS_PER_S	1000000000ull
#define NS_PER_MS	1000000ull

enum bench_mode_id {
	MODE_ECHO,
	MODE_FANOUT,
	MODE_CONNECT,
};

/* A run moves forward through these; each mode uses a subset. */
enum bench_phase {
	PH_CONNECT,	/* opening connections */
	PH_JOIN,	/* fanout/connect --join: waiting for every enter */
	PH_SETTLE,	/* fanout: waiting for the enter storm to end */
	PH_RUN,		/* measuring */
	PH_DRAIN,	/* sending stopped; collecting what is in flight */
	PH_HOLD,	/* connect: holding idle connections */
	PH_DONE,
};

struct bench_opts {
	enum bench_mode_id mode;
	const char	*host;
	int		 port;
	const char	*path;
	struct sockaddr_in addr;
	int		 conns;
	int		 threads;
	int		 size;
	int		 pipeline;
	int		 rooms;
	int		 senders;
	int		 window;
	int		 conc;
	double		 duration;
	double		 rate;		/* fanout: total msg/s; 0 = closed loop */
	double		 hold;
	double		 settle;
	double		 join_timeout;
	double		 drain;
	double		 stall;
	double		 connect_timeout;
	int		 join;		/* connect: also enter rooms */
	int		 no_join_ack;
	int		 no_verify;
	int		 deflate;	/* offer permessage-deflate */
	int		 pin_cpu;	/* pinned: the server's trees on this CPU; -1: not pinned */
	const char	*room_prefix;
	const char	*name_prefix;
	const char	*label;
	uint64_t	 max_msgs;
	pid_t		 pids[PS_MAX_ROOTS];
	int		 npids;
};

enum conn_state {
	CS_IDLE,
	CS_CONNECTING,
	CS_HANDSHAKE,
	CS_OPEN,
	CS_CLOSED,
};

/* Bytes waiting to be written. */
struct obuf {
	uint8_t		*p;
	size_t		 off, len, cap;
};

struct bconn {
	int		 fd;
	uint32_t	 idx;		/* i of u<i>; thread i % threads owns it */
	uint8_t		 state;		/* enum conn_state */
	uint8_t		 queued;	/* on its thread's flush list */
	uint8_t		 epout;		/* EPOLLOUT armed */
	uint8_t		 closing;	/* close frame sent: 1 answering the server's, 2 ours at the end */
	uint64_t	 t_start;	/* connect() called */
	uint64_t	 t_open;	/* handshake verified */
	char		 key[WSC_KEY_LEN + 1];
	char		*hs;		/* the response head while in CS_HANDSHAKE */
	size_t		 hs_len;
	struct obuf	 out;
	struct wsc_decoder dec;
};

/* Counters a thread writes and the coordinator may read while it runs. */
struct bstats {
	_Atomic uint64_t opened;	/* handshakes verified */
	_Atomic uint64_t failed;	/* connect or handshake failures */
	_Atomic uint64_t closed_by_peer; /* open connections the server ended */
	_Atomic uint64_t close_frames;	/* close frames received */
	_Atomic uint64_t pings;		/* protocol pings answered */
	_Atomic uint64_t deflated;	/* handshakes that agreed on permessage-deflate */
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t last_open_ns;	/* latest handshake completion */
};

struct bthread {
	int		 id;
	int		 epfd;
	int		 evfd;		/* wakes the loop from other threads */
	pthread_t	 tid;
	uint8_t		*rbuf;		/* read buffer shared by this thread's connections */
	size_t		 rcap;
	uint32_t	 next_conn;	/* next connection index this thread opens */
	uint32_t	 inflight;	/* handshakes in progress */
	uint32_t	 conc;		/* limit on inflight */
	uint32_t	*flushq;	/* connections with output queued this turn */
	size_t		 nflush, flushcap;
	uint64_t	 rng;
	uint64_t	 now;		/* clock at the last epoll return */
	struct bstats	 st;
	struct hist	 handshake;
	struct wsc_pmd	 pmd;		/* permessage-deflate streams of this thread */
	char		 first_error[160];	/* first connection failure, for the report */
	int		 expired;	/* pending handshakes were failed */
	size_t		 closing;	/* connections waiting for the server to close */
	void		*m;		/* the mode's per-thread state */
};

/* What a mode does; run.c and client.c call these. */
struct bench_mode {
	const char	*name;
	int		(*init)(void);
	void		(*on_open)(struct bthread *, struct bconn *);
	void		(*on_message)(struct bthread *, struct bconn *, int opcode,
			    const uint8_t *, size_t);
	void		(*on_close)(struct bthread *, struct bconn *);
	void		(*tick)(struct bthread *);	/* every loop turn */
	uint64_t	(*wake)(struct bthread *);	/* next deadline (ns) or 0 */
	void		(*coord)(uint64_t now);		/* thread 0: phase changes */
	void		(*progress)(char *, size_t, uint64_t now);
	int		(*report)(FILE *, struct jout *); /* 1 if the run found problems */
	void		(*fini)(void);
};

struct bench_run {
	struct bench_opts o;
	const struct bench_mode *mode;
	struct bconn	*conns;
	struct bthread	*th;
	int		 nth;
	_Atomic int	 phase;
	_Atomic int	 connect_expired;	/* connect timeout: fail pending handshakes */
	/* Written by thread 0 before the phase that publishes them. */
	uint64_t	 t_begin;
	uint64_t	 t_connect_end;
	uint64_t	 t_run_start;
	uint64_t	 t_run_end;		/* t_run_start + duration */
	uint64_t	 t_end;
	uint64_t	 deadline;		/* hard limit on the whole run */
	int		 timed_out;
	int		 interrupted;
	struct ps_sample ps_run0, ps_run1;	/* around the measured part */
	int		 tty;
};

extern struct bench_run bench;
extern volatile sig_atomic_t bench_signalled;

extern const struct bench_mode mode_echo;
extern const struct bench_mode mode_fanout;
extern const struct bench_mode mode_connect;

/* Monotonic clock in ns. */
uint64_t now_ns(void);
/* A random 64-bit value from a thread's generator. */
uint64_t bench_rand(struct bthread *);

/* Single-writer counters: plain load and store, no locked instruction. */
static inline void
stat_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
	    memory_order_relaxed);
}

static inline uint64_t
stat_get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static inline int
run_phase(void)
{
	return atomic_load_explicit(&bench.phase, memory_order_acquire);
}

/* client.c: connections, epoll, frames. */
int	 cl_thread_init(struct bthread *) __attribute__((warn_unused_result));
void	 cl_thread_fini(struct bthread *);
void	 cl_start_connects(struct bthread *);
void	 cl_event(struct bthread *, uint32_t conn_idx, uint32_t events);
void	 cl_expire_pending(struct bthread *);
int	 cl_send(struct bthread *, struct bconn *, int opcode, const void *, size_t);
size_t	 cl_pending(const struct bconn *);
void	 cl_flush(struct bthread *, struct bconn *);
void	 cl_flush_all(struct bthread *);
void	 cl_close(struct bthread *, struct bconn *, int send_close);
/* Send a close frame; returns 1 if the connection now waits for the server to close it. */
int	 cl_begin_close(struct bthread *, struct bconn *);
void	 cl_wake(struct bthread *);
void	 cl_drain_wake(struct bthread *);

/* run.c: threads, phases, the loop, the coordinator's common part. */
int	 run_all(void) __attribute__((warn_unused_result));
void	 run_set_phase(int);
/* Every connection attempt has ended (opened, failed or expired). */
int	 run_connects_done(void);
uint64_t run_sum_stat(size_t offset);
#define RUN_STAT(field)	run_sum_stat(offsetof(struct bstats, field))

#endif
