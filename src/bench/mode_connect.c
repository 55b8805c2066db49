/*
 * mode_connect.c: connect mode. Open the connections as fast as --conc
 * allows, optionally enter rooms, hold them idle for H seconds (answering
 * pings and heartbeats), and with --pid measure the server's resident
 * memory before, 1 s into the hold and at its end.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "chatproto.h"

struct conn_thread {
	_Atomic uint64_t joined;
	uint64_t	 heartbeats, pongs, messages;
};

static struct conn_thread *ct;
static uint8_t *joined;
static uint64_t t_hold_start, t_join_start;
static struct ps_sample rss_1s, at_connected;
static int have_1s, join_incomplete;

static uint64_t
sum_joined(void)
{
	uint64_t s = 0;

	for (int i = 0; i < bench.nth; i++)
		s += stat_get(&ct[i].joined);
	return s;
}

static int
connect_init(void)
{
	ct = calloc((size_t)bench.nth, sizeof(*ct));
	joined = calloc((size_t)bench.o.conns, 1);
	if (ct == NULL || joined == NULL) {
		fprintf(stderr, "roomd-bench: out of memory\n");
		return -1;
	}
	for (int i = 0; i < bench.nth; i++)
		bench.th[i].m = &ct[i];
	/* Memory before any connection: the baseline of the growth per connection. */
	if (ps_sample(bench.o.pids, bench.o.npids, &bench.ps_run0) < 0)
		memset(&bench.ps_run0, 0, sizeof(bench.ps_run0));
	return 0;
}

static void
connect_open(struct bthread *t, struct bconn *c)
{
	char buf[256];
	int n;

	if (!bench.o.join)
		return;
	n = cp_enter(buf, sizeof(buf), bench.o.name_prefix, c->idx, bench.o.room_prefix,
	    c->idx % (uint32_t)bench.o.rooms);
	if (n > 0 && cl_send(t, c, 0x1, buf, (size_t)n) < 0)
		return;
}

static void
connect_message(struct bthread *t, struct bconn *c, int opcode, const uint8_t *p, size_t len)
{
	struct conn_thread *m = t->m;
	struct cp_info info;

	m->messages++;
	switch (cp_parse(p, len, &info)) {
	case CP_HEARTBEAT_PING:
		m->heartbeats++;
		if (cl_send(t, c, 0x1, CP_PONG, sizeof(CP_PONG) - 1) == 0)
			m->pongs++;
		break;
	case CP_ENTER:
		if (!joined[c->idx] && info.name != NULL &&
		    cp_name_is(info.name, info.name_len, bench.o.name_prefix, c->idx)) {
			joined[c->idx] = 1;
			stat_add(&m->joined, 1);
		}
		break;
	default:
		break;
	}
}

static void
start_hold(uint64_t now)
{
	t_hold_start = now;
	run_set_phase(PH_HOLD);
}

static void
connect_coord(uint64_t now)
{
	switch (run_phase()) {
	case PH_CONNECT:
		if (!run_connects_done())
			break;
		bench.t_connect_end = RUN_STAT(last_open_ns);
		if (ps_sample(bench.o.pids, bench.o.npids, &at_connected) < 0)
			memset(&at_connected, 0, sizeof(at_connected));
		if (bench.o.join) {
			t_join_start = now;
			run_set_phase(PH_JOIN);
		} else {
			start_hold(now);
		}
		break;
	case PH_JOIN:
		if (sum_joined() >= RUN_STAT(opened) - RUN_STAT(closed_by_peer)) {
			start_hold(now);
		} else if (now - t_join_start > (uint64_t)(bench.o.join_timeout * NS_PER_S)) {
			join_incomplete = 1;
			start_hold(now);
		}
		break;
	case PH_HOLD:
		if (!have_1s && now - t_hold_start >= NS_PER_S) {
			have_1s = ps_sample(bench.o.pids, bench.o.npids, &rss_1s) == 0;
		}
		if (now - t_hold_start >= (uint64_t)(bench.o.hold * NS_PER_S)) {
			if (ps_sample(bench.o.pids, bench.o.npids, &bench.ps_run1) < 0)
				memset(&bench.ps_run1, 0, sizeof(bench.ps_run1));
			bench.t_end = now;
			run_set_phase(PH_DONE);
		}
		break;
	default:
		break;
	}
}

static void
connect_progress(char *buf, size_t cap, uint64_t now)
{
	if (run_phase() == PH_HOLD)
		(void)snprintf(buf, cap, "hold  %.0f of %.0f s  %llu open",
		    (double)(now - t_hold_start) / 1e9, bench.o.hold,
		    (unsigned long long)(RUN_STAT(opened) - RUN_STAT(closed_by_peer)));
	else
		(void)snprintf(buf, cap, "connect  %llu open, %llu failed, %llu joined",
		    (unsigned long long)RUN_STAT(opened), (unsigned long long)RUN_STAT(failed),
		    (unsigned long long)sum_joined());
}

static int
connect_report(FILE *f, struct jout *j)
{
	uint64_t opened = RUN_STAT(opened), lost = RUN_STAT(closed_by_peer);
	uint64_t hb = 0, pongs = 0;
	double hold = t_hold_start ? (double)(bench.t_end - t_hold_start) / 1e9 : 0;

	for (int i = 0; i < bench.nth; i++) {
		hb += ct[i].heartbeats;
		pongs += ct[i].pongs;
	}
	fprintf(f, "  hold         %llu connections for %.1f s, %llu still open at the end\n",
	    (unsigned long long)opened, hold, (unsigned long long)(opened - lost));
	if (bench.o.join)
		fprintf(f, "  join         rooms=%d, %llu joined%s\n", bench.o.rooms,
		    (unsigned long long)sum_joined(), join_incomplete ? " (join timed out)" : "");
	if (hb)
		fprintf(f, "  heartbeats   %llu answered %llu\n", (unsigned long long)hb,
		    (unsigned long long)pongs);
	jo_num(j, "hold_s", hold);
	jo_int(j, "held", (long long)(opened - lost));
	jo_int(j, "joined", (long long)sum_joined());
	jo_int(j, "join_incomplete", join_incomplete);
	jo_int(j, "heartbeats", (long long)hb);
	jo_int(j, "heartbeat_pongs", (long long)pongs);
	if (bench.o.npids) {
		double before = (double)bench.ps_run0.rss, end = (double)bench.ps_run1.rss;
		double at1 = have_1s ? (double)rss_1s.rss : -1;
		double per = opened ? (end - before) / (double)opened : 0;

		fprintf(f, "  server rss   before %.1f MiB, 1 s into the hold %.1f MiB, end %.1f MiB: "
		    "%.0f bytes per connection (%d processes)\n", before / 1048576.0,
		    have_1s ? at1 / 1048576.0 : 0.0, end / 1048576.0, per, bench.ps_run1.nproc);
		jo_int(j, "server_rss_before", (long long)bench.ps_run0.rss);
		jo_int(j, "server_rss_1s", have_1s ? (long long)rss_1s.rss : -1);
		jo_int(j, "server_rss_end", (long long)bench.ps_run1.rss);
		jo_num(j, "server_rss_per_conn", per);
		jo_int(j, "server_procs", bench.ps_run1.nproc);
	}
	/* CPU of the connect phase: what handshakes cost (the hold is idle). */
	rep_cpu(f, j, "connect", &bench.ps_run0, &at_connected, bench.o.npids);
	return join_incomplete || opened == 0;
}

static void
connect_fini(void)
{
	free(ct);
	free(joined);
}

const struct bench_mode mode_connect = {
	.name = "connect",
	.init = connect_init,
	.on_open = connect_open,
	.on_message = connect_message,
	.on_close = NULL,
	.tick = NULL,
	.wake = NULL,
	.coord = connect_coord,
	.progress = connect_progress,
	.report = connect_report,
	.fini = connect_fini,
};
