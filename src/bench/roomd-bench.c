/*
 * roomd-bench.c: roomd's load generator: command line, limits, signals, and
 * the report around a run. The run is in run.c, the sockets in client.c,
 * each mode (echo, fanout, connect) in its own file.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench.h"
#include "pin.h"
#include "../http.h"

#define BENCH_VERSION	"1.1"

static struct pin_result pinned;	/* --pin: what was pinned */

/* Keep identical to the SYNOPSIS of man/roomd-bench.1. */
static const char usage_text[] =
    "usage: roomd-bench echo|fanout|connect -p port [-c conns] [-d seconds]\n"
    "                   [-H address] [-k senders] [-P path] [-r rooms] [-s size]\n"
    "                   [-T rate] [-t threads] [-w window] [--conc n]\n"
    "                   [--connect-timeout seconds] [--deflate] [--drain seconds]\n"
    "                   [--hold seconds] [--join] [--join-timeout seconds]\n"
    "                   [--label text] [--max-msgs n] [--name-prefix text]\n"
    "                   [--no-join-ack] [--no-verify] [--pid pids] [--pin cpu]\n"
    "                   [--pipeline n] [--room-prefix text] [--settle seconds]\n"
    "                   [--stall seconds]\n"
    "       roomd-bench -h\n";

static const char help_text[] =
    "\n"
    "modes:\n"
    "  echo     C connections on /echo keep --pipeline messages of -s bytes in flight;\n"
    "           echoes are verified; round trips/s and RTT percentiles over -d seconds\n"
    "  fanout   C connections enter R rooms on /, K senders chat for -d seconds in a\n"
    "           closed loop (-w) or at a total rate (-T); every delivery is accounted\n"
    "  connect  open C connections, report handshakes/s, hold them --hold seconds\n"
    "\n"
    "options:\n"
    "  -p port              server port (required)\n"
    "  -H address           server IPv4 address or name (127.0.0.1)\n"
    "  -P path              request path (/echo for echo, / otherwise)\n"
    "  -c conns             connections (100)\n"
    "  -t threads           event-loop threads; connection i on thread i%threads (1)\n"
    "  -d seconds           measured time of echo and fanout (10)\n"
    "  -s size              echo payload bytes; fanout chat text bytes (32)\n"
    "  -r rooms             rooms; connection i enters room<i%rooms> as u<i> (1)\n"
    "  -k senders           fanout: connections 0..K-1 send (10)\n"
    "  -w window            fanout closed loop: messages per sender not yet delivered\n"
    "                       to every other member (16)\n"
    "  -T rate              fanout open loop: total messages/s over all senders (0: use -w)\n"
    "  --pipeline n         echo: messages in flight per connection (1)\n"
    "  --no-verify          echo: do not compare echoed bytes\n"
    "  --hold seconds       connect: hold the connections idle (10)\n"
    "  --join               connect: enter rooms (-r) before holding\n"
    "  --deflate            offer permessage-deflate (no context takeover either way);\n"
    "                       compress what is sent, inflate what arrives\n"
    "  --conc n             handshakes in flight at most (256)\n"
    "  --connect-timeout s  give up on handshakes not done by then (30)\n"
    "  --join-timeout s     fanout: wait this long for every enter to be confirmed (30)\n"
    "  --no-join-ack        fanout: the server confirms no enter; just --settle\n"
    "  --settle s           fanout: quiet time after the last enter event (0.5)\n"
    "  --drain s            fanout: wait for deliveries after sending stops (10)\n"
    "  --stall s            fanout closed loop: stop when nothing arrives for s (5)\n"
    "  --max-msgs n         fanout: messages per sender at most (16777216)\n"
    "  --pid pids           server process ids, comma-separated: CPU and memory of their trees\n"
    "  --pin cpu            pin every thread of the --pid trees to cpu, roomd-bench to the\n"
    "                       other CPUs\n"
    "  --label text         copied into the JSON line\n"
    "  --name-prefix text   names u<i> (u)\n"
    "  --room-prefix text   rooms room<n> (room)\n"
    "  -h                   this help\n"
    "\n"
    "Output: a report, then one line \"JSON {...}\" with every figure.\n"
    "Exit status: 0 clean run, 2 the run found problems (loss, failures...), 1 usage.\n";

enum {
	OPT_PIPELINE = 256, OPT_HOLD, OPT_JOIN, OPT_PID, OPT_CONC, OPT_SETTLE,
	OPT_JOIN_TIMEOUT, OPT_NO_JOIN_ACK, OPT_DRAIN, OPT_STALL, OPT_CONNECT_TIMEOUT,
	OPT_NO_VERIFY, OPT_ROOM_PREFIX, OPT_NAME_PREFIX, OPT_MAX_MSGS, OPT_LABEL, OPT_DEFLATE,
	OPT_PIN,
};

static const struct option long_opts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "host", required_argument, NULL, 'H' },
	{ "port", required_argument, NULL, 'p' },
	{ "path", required_argument, NULL, 'P' },
	{ "conns", required_argument, NULL, 'c' },
	{ "duration", required_argument, NULL, 'd' },
	{ "size", required_argument, NULL, 's' },
	{ "rooms", required_argument, NULL, 'r' },
	{ "senders", required_argument, NULL, 'k' },
	{ "rate", required_argument, NULL, 'T' },
	{ "window", required_argument, NULL, 'w' },
	{ "threads", required_argument, NULL, 't' },
	{ "pipeline", required_argument, NULL, OPT_PIPELINE },
	{ "hold", required_argument, NULL, OPT_HOLD },
	{ "join", no_argument, NULL, OPT_JOIN },
	{ "pid", required_argument, NULL, OPT_PID },
	{ "conc", required_argument, NULL, OPT_CONC },
	{ "settle", required_argument, NULL, OPT_SETTLE },
	{ "join-timeout", required_argument, NULL, OPT_JOIN_TIMEOUT },
	{ "no-join-ack", no_argument, NULL, OPT_NO_JOIN_ACK },
	{ "drain", required_argument, NULL, OPT_DRAIN },
	{ "stall", required_argument, NULL, OPT_STALL },
	{ "connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT },
	{ "no-verify", no_argument, NULL, OPT_NO_VERIFY },
	{ "room-prefix", required_argument, NULL, OPT_ROOM_PREFIX },
	{ "name-prefix", required_argument, NULL, OPT_NAME_PREFIX },
	{ "max-msgs", required_argument, NULL, OPT_MAX_MSGS },
	{ "label", required_argument, NULL, OPT_LABEL },
	{ "deflate", no_argument, NULL, OPT_DEFLATE },
	{ "pin", required_argument, NULL, OPT_PIN },
	{ NULL, 0, NULL, 0 },
};

static void __attribute__((noreturn))
usage(int status)
{
	fputs(usage_text, status ? stderr : stdout);
	if (status == 0)
		fputs(help_text, stdout);
	exit(status);
}

static void __attribute__((noreturn, format(printf, 1, 2)))
bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("roomd-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(1);
}

/* An integer option in [lo, hi]. */
static long long
int_arg(const char *name, const char *s, long long lo, long long hi)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi)
		bad_usage("%s: '%s' is not a whole number from %lld to %lld", name, s, lo, hi);
	return v;
}

/* A number of seconds (or a rate) in [lo, hi]. */
static double
num_arg(const char *name, const char *s, double lo, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < lo || v > hi)
		bad_usage("%s: '%s' is not a number from %g to %g", name, s, lo, hi);
	return v;
}

/* A name or room prefix: goes into JSON unescaped, so keep it plain. */
static const char *
prefix_arg(const char *name, const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 32)
		bad_usage("%s: must be 1 to 32 characters", name);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
			bad_usage("%s: '%s' may hold only letters, digits, '_', '-' and '.'", name, s);
	return s;
}

static void
parse_args(int argc, char **argv, struct bench_opts *o)
{
	const char *mode;
	int c, have_window = 0;

	memset(o, 0, sizeof(*o));
	o->host = "127.0.0.1";
	o->conns = 100;
	o->threads = 1;
	o->size = 32;
	o->pipeline = 1;
	o->rooms = 1;
	o->senders = 10;
	o->window = 16;
	o->conc = 256;
	o->duration = 10;
	o->hold = 10;
	o->settle = 0.5;
	o->join_timeout = 30;
	o->drain = 10;
	o->stall = 5;
	o->connect_timeout = 30;
	o->room_prefix = "room";
	o->name_prefix = "u";
	o->label = "";
	o->max_msgs = 1u << 24;
	o->pin_cpu = -1;

	while ((c = getopt_long(argc, argv, "hH:p:P:c:d:s:r:k:T:w:t:", long_opts, NULL)) != -1) {
		switch (c) {
		case 'h': usage(0);
		case 'H': o->host = optarg; break;
		case 'p': o->port = (int)int_arg("-p", optarg, 1, 65535); break;
		case 'P':
			if (optarg[0] != '/' || strpbrk(optarg, " \t\r\n") != NULL || strlen(optarg) > 512)
				bad_usage("-P: '%s' is not a path (it starts with '/', no spaces)", optarg);
			o->path = optarg;
			break;
		case 'c': o->conns = (int)int_arg("-c", optarg, 1, 1000000); break;
		case 'd': o->duration = num_arg("-d", optarg, 0.01, 86400); break;
		case 's': o->size = (int)int_arg("-s", optarg, 1, 16 << 20); break;
		case 'r': o->rooms = (int)int_arg("-r", optarg, 1, 1000000); break;
		case 'k': o->senders = (int)int_arg("-k", optarg, 1, 1000000); break;
		case 'T': o->rate = num_arg("-T", optarg, 0, 1e8); break;
		case 'w': o->window = (int)int_arg("-w", optarg, 1, 1 << 20); have_window = 1; break;
		case 't': o->threads = (int)int_arg("-t", optarg, 1, 64); break;
		case OPT_PIPELINE: o->pipeline = (int)int_arg("--pipeline", optarg, 1, 100000); break;
		case OPT_HOLD: o->hold = num_arg("--hold", optarg, 0, 86400); break;
		case OPT_JOIN: o->join = 1; break;
		case OPT_PID:
			if ((o->npids = ps_parse_pids(optarg, o->pids, PS_MAX_ROOTS)) < 0)
				bad_usage("--pid: '%s' is not a list of up to %d process ids", optarg, PS_MAX_ROOTS);
			break;
		case OPT_CONC: o->conc = (int)int_arg("--conc", optarg, 1, 1000000); break;
		case OPT_SETTLE: o->settle = num_arg("--settle", optarg, 0, 3600); break;
		case OPT_JOIN_TIMEOUT: o->join_timeout = num_arg("--join-timeout", optarg, 0.1, 3600); break;
		case OPT_NO_JOIN_ACK: o->no_join_ack = 1; break;
		case OPT_DRAIN: o->drain = num_arg("--drain", optarg, 0, 3600); break;
		case OPT_STALL: o->stall = num_arg("--stall", optarg, 0.1, 3600); break;
		case OPT_CONNECT_TIMEOUT:
			o->connect_timeout = num_arg("--connect-timeout", optarg, 0.1, 3600);
			break;
		case OPT_NO_VERIFY: o->no_verify = 1; break;
		case OPT_ROOM_PREFIX: o->room_prefix = prefix_arg("--room-prefix", optarg); break;
		case OPT_NAME_PREFIX: o->name_prefix = prefix_arg("--name-prefix", optarg); break;
		case OPT_MAX_MSGS:
			o->max_msgs = (uint64_t)int_arg("--max-msgs", optarg, 1, 0xffffffffll - 1);
			break;
		case OPT_LABEL: o->label = optarg; break;
		case OPT_DEFLATE: o->deflate = 1; break;
		case OPT_PIN: o->pin_cpu = (int)int_arg("--pin", optarg, 0, CPU_SETSIZE - 1); break;
		default: usage(1);
		}
	}
	if (optind != argc - 1)
		bad_usage(optind >= argc ? "no mode given" : "one mode, then options");
	mode = argv[optind];
	if (strcmp(mode, "echo") == 0)
		o->mode = MODE_ECHO;
	else if (strcmp(mode, "fanout") == 0)
		o->mode = MODE_FANOUT;
	else if (strcmp(mode, "connect") == 0)
		o->mode = MODE_CONNECT;
	else
		bad_usage("unknown mode '%s' (echo, fanout or connect)", mode);
	if (o->port == 0)
		bad_usage("-p port is required");
	if (o->path == NULL)
		o->path = o->mode == MODE_ECHO ? "/echo" : "/";
	if (o->rooms > o->conns)
		bad_usage("-r %d: more rooms than connections (%d)", o->rooms, o->conns);
	if (o->pin_cpu >= 0 && o->npids == 0)
		bad_usage("--pin needs --pid: the server's processes are what it pins");
	if (o->mode == MODE_FANOUT) {
		if (o->senders > o->conns)
			bad_usage("-k %d: more senders than connections (%d)", o->senders, o->conns);
		if (o->rate > 0 && have_window)
			bad_usage("-w and -T exclude each other: -w is the closed loop, -T the open loop");
		if (o->rate == 0 && o->conns / o->rooms < 2)
			bad_usage("the closed loop needs at least 2 members per room (-c %d, -r %d)",
			    o->conns, o->rooms);
		if (o->size > (1 << 20))
			bad_usage("-s %d: fanout text is at most 1048576 bytes", o->size);
	}
}

/* Resolve -H to an IPv4 address. */
static void
resolve(struct bench_opts *o)
{
	struct addrinfo hints, *res;
	int err;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	if ((err = getaddrinfo(o->host, NULL, &hints, &res)) != 0) {
		fprintf(stderr, "roomd-bench: getaddrinfo(%s) failed (%s)\n", o->host, gai_strerror(err));
		exit(1);
	}
	memcpy(&o->addr, res->ai_addr, sizeof(o->addr));
	o->addr.sin_port = htons((uint16_t)o->port);
	freeaddrinfo(res);
}

/* Raise the soft limit on open files to what the connections need. */
static void
raise_nofile(int conns)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)conns + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		fprintf(stderr, "roomd-bench: getrlimit(RLIMIT_NOFILE) failed (%d: %s)\n", errno, strerror(errno));
		return;
	}
	if (rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		fprintf(stderr, "roomd-bench: setrlimit(RLIMIT_NOFILE, %llu) failed (%d: %s)\n",
		    (unsigned long long)rl.rlim_cur, errno, strerror(errno));
	if (rl.rlim_cur < need)
		fprintf(stderr, "roomd-bench: warning: %d connections need %llu open files, the hard "
		    "limit is %llu (raise it: ulimit -Hn)\n", conns, (unsigned long long)need,
		    (unsigned long long)rl.rlim_max);
}

static void
on_signal(int sig)
{
	bench_signalled = 1;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	if (sigemptyset(&sa.sa_mask) < 0 || sigaction(SIGINT, &sa, NULL) < 0 ||
	    sigaction(SIGTERM, &sa, NULL) < 0) {
		fprintf(stderr, "roomd-bench: sigaction() failed (%d: %s)\n", errno, strerror(errno));
		exit(1);
	}
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0) {
		fprintf(stderr, "roomd-bench: sigaction(SIGPIPE) failed (%d: %s)\n", errno, strerror(errno));
		exit(1);
	}
}

/* The report: common head, the mode's part, common tail, the JSON line. Returns the exit status. */
static int
report(void)
{
	const struct bench_opts *o = &bench.o;
	struct hist *hs = calloc(1, sizeof(*hs));
	struct jout j;
	uint64_t opened = RUN_STAT(opened), failed = RUN_STAT(failed);
	uint64_t proto = 0, masked = 0, frag = 0;
	double cs;
	const char *line, *first_error = NULL;
	char url[700];
	int problems;

	if (hs == NULL) {
		fprintf(stderr, "roomd-bench: out of memory\n");
		return 1;
	}
	for (int i = 0; i < bench.nth; i++) {
		hist_merge(hs, &bench.th[i].handshake);
		if (first_error == NULL && bench.th[i].first_error[0] != '\0')
			first_error = bench.th[i].first_error;
	}
	for (int i = 0; i < o->conns; i++) {
		proto += bench.conns[i].dec.proto_errors;
		masked += bench.conns[i].dec.masked_frames;
		frag += bench.conns[i].dec.fragmented;
	}
	cs = bench.t_connect_end > bench.t_begin ? (double)(bench.t_connect_end - bench.t_begin) / 1e9 : 0;
	(void)snprintf(url, sizeof(url), "ws://%s:%d%s", o->host, o->port, o->path);

	printf("roomd-bench %s  %s  conns=%d threads=%d%s%s\n", bench.mode->name, url, o->conns,
	    o->threads, o->label[0] ? "  label=" : "", o->label);
	printf("  connect      %llu ok, %llu failed in %.3f s (%.0f handshakes/s)\n",
	    (unsigned long long)opened, (unsigned long long)failed, cs,
	    cs > 0 ? (double)opened / cs : 0.0);
	if (first_error != NULL)
		printf("  first error  %s\n", first_error);
	rep_hist(stdout, "handshake", hs);

	jo_begin(&j);
	jo_str(&j, "tool", "roomd-bench");
	jo_str(&j, "version", BENCH_VERSION);
	jo_str(&j, "mode", bench.mode->name);
	jo_str(&j, "label", o->label);
	jo_str(&j, "url", url);
	jo_int(&j, "conns", o->conns);
	jo_int(&j, "threads", o->threads);
	jo_int(&j, "opened", (long long)opened);
	jo_int(&j, "failed", (long long)failed);
	jo_num(&j, "connect_s", cs);
	jo_num(&j, "handshakes_per_s", cs > 0 ? (double)opened / cs : 0.0);
	jo_hist(&j, "handshake", hs);
	problems = bench.mode->report(stdout, &j);

	printf("  connections  closed by server %llu (close frames %llu), pings answered %llu, "
	    "protocol errors %llu (masked frames %llu), fragmented messages %llu\n",
	    (unsigned long long)RUN_STAT(closed_by_peer), (unsigned long long)RUN_STAT(close_frames),
	    (unsigned long long)RUN_STAT(pings), (unsigned long long)proto,
	    (unsigned long long)masked, (unsigned long long)frag);
	jo_int(&j, "closed_by_peer", (long long)RUN_STAT(closed_by_peer));
	jo_int(&j, "close_frames", (long long)RUN_STAT(close_frames));
	jo_int(&j, "pings", (long long)RUN_STAT(pings));
	jo_int(&j, "proto_errors", (long long)proto);
	jo_int(&j, "masked_server_frames", (long long)masked);
	jo_int(&j, "fragmented_msgs", (long long)frag);
	jo_int(&j, "bytes_in", (long long)RUN_STAT(bytes_in));
	jo_int(&j, "bytes_out", (long long)RUN_STAT(bytes_out));
	jo_int(&j, "timed_out", bench.timed_out);
	jo_int(&j, "interrupted", bench.interrupted);
	if (o->deflate)
		printf("  deflate      permessage-deflate agreed on %llu of %llu connections\n",
		    (unsigned long long)RUN_STAT(deflated), (unsigned long long)opened);
	jo_int(&j, "deflate", o->deflate);
	jo_int(&j, "deflate_conns", (long long)RUN_STAT(deflated));
	if (o->pin_cpu >= 0)
		printf("  pinned       server: %d processes, %d threads on CPU %d; roomd-bench on %d other CPU%s\n",
		    pinned.procs, pinned.threads, o->pin_cpu, pinned.bench_cpus,
		    pinned.bench_cpus == 1 ? "" : "s");
	jo_int(&j, "pin_cpu", o->pin_cpu);
	jo_int(&j, "pinned_procs", pinned.procs);
	jo_int(&j, "pinned_threads", pinned.threads);
	jo_int(&j, "bench_cpus", pinned.bench_cpus);
	problems |= failed > 0 || RUN_STAT(closed_by_peer) > 0 || proto > 0 || bench.timed_out ||
	    bench.interrupted || (o->deflate && RUN_STAT(deflated) < opened);
	jo_int(&j, "ok", !problems);
	printf("  result       %s\n", problems ? "PROBLEMS (see above)" :
	    "ok: nothing lost, duplicated, refused or corrupted");
	line = jo_end(&j);
	if (line == NULL) {
		fprintf(stderr, "roomd-bench: out of memory for the JSON line\n");
		problems = 1;
	} else {
		printf("JSON %s\n", line);
	}
	jo_free(&j);
	free(hs);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "roomd-bench: writing the report failed (%d: %s)\n", errno, strerror(errno));
		return 1;
	}
	return problems ? 2 : 0;
}

int
main(int argc, char **argv)
{
	int status;

	parse_args(argc, argv, &bench.o);
	resolve(&bench.o);
	raise_nofile(bench.o.conns);
	setup_signals();
	bench.tty = isatty(STDOUT_FILENO);
	if (bench.o.pin_cpu >= 0) {
		char err[200];

		/* Before any thread starts: they all inherit the CPUs left to us. */
		if (pin_split(bench.o.pin_cpu, bench.o.pids, bench.o.npids, &pinned, err,
		    sizeof(err)) < 0) {
			fprintf(stderr, "roomd-bench: --pin %d: %s\n", bench.o.pin_cpu, err);
			return 1;
		}
		ps_watch_core(bench.o.pin_cpu);
	}
	{
		/* http_accept_key sets up its digest on first use: do that before the threads share it. */
		char k[29];

		http_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, k);
	}
	switch (bench.o.mode) {
	case MODE_ECHO: bench.mode = &mode_echo; break;
	case MODE_FANOUT: bench.mode = &mode_fanout; break;
	case MODE_CONNECT: bench.mode = &mode_connect; break;
	}
	if (run_all() < 0)
		return 1;
	status = report();
	bench.mode->fini();
	for (int i = 0; i < bench.nth; i++)
		cl_thread_fini(&bench.th[i]);
	for (int i = 0; i < bench.o.conns; i++)
		wsc_decoder_free(&bench.conns[i].dec);
	free(bench.conns);
	free(bench.th);
	http_cleanup();
	return status;
}
