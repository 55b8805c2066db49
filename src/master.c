/*
 * master.c: the supervisor. It never serves a client. Signal handlers only set
 * flags; the master sleeps in sigsuspend() and does all work in its loop, with
 * one interval timer (SIGALRM) for respawn backoff and stop deadlines.
 *
 * Workers live in stable slots: a respawned worker gets the same index and so
 * the same SO_REUSEPORT sockets, which the master keeps open, so connections
 * queued for a dead worker wait in its backlog for the replacement. On reload
 * a new generation starts in every slot and the old one drains.
 *
 * Under systemd (NOTIFY_SOCKET) the same timer paces the sd_notify messages:
 * READY=1 once every worker runs and reached Redis, RELOADING=1 and READY=1
 * around a reload, STOPPING=1, STATUS= and WATCHDOG=1 (see sd_check).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <sys/random.h>

#include "clock.h"
#include "listen.h"
#include "log.h"
#include "addrlimit.h"
#include "master.h"
#include "metrics.h"
#include "notify.h"
#include "priv.h"
#include "redisproc.h"
#include "worker.h"

#define MAX_RETIRING	1024
#define QUICK_CRASH_MS	2000	/* a worker dying sooner than this is crash-looping */
#define BACKOFF_MIN_MS	100
#define BACKOFF_MAX_MS	30000
#define SD_STALE_MIN_MS	2000	/* a worker ticks at least every second */

/* What systemd was told last (SD_OFF: no NOTIFY_SOCKET). */
enum sd_state { SD_OFF, SD_STARTING, SD_READY, SD_RELOADING, SD_STOPPING, SD_HEIR, SD_GONE };

struct slot {
	pid_t		pid;		/* 0: not running */
	int		generation;
	uint64_t	started;	/* ms */
	uint64_t	respawn_at;	/* ms; 0: no respawn pending */
	int		quick_crashes;
	int		mslot;		/* its metrics slot */
	char		dead[96];	/* the id of the worker that died here, for the next one to bury */
};

/* An old-generation worker draining after a reload. */
struct retiring {
	pid_t		pid;
	int		mslot;
};

static volatile sig_atomic_t got_chld, got_stop, got_hup, got_usr1, got_alrm, got_quit, got_usr2;
static volatile sig_atomic_t stop_from;	/* who sent the last SIGTERM (0: SIGINT) */

static struct {
	struct config	*cfg;
	struct listeners *ls;
	struct slot	*slot;
	int		 nslots;
	int		 generation;
	struct retiring	 retiring[MAX_RETIRING];
	int		 nretiring;
	int		 stopping;	/* 1 graceful, 2 immediate */
	uint64_t	 kill_at;	/* ms; SIGKILL what is left */
	uint64_t	 unlisten_at;	/* ms; the drain ends: close the listening sockets */
	sigset_t	 orig_mask;
	pid_t		 pid;
	char		 instance[17];	/* names this roomd in Redis */
	const struct master_exec *ex;
	char		 pidfile[1024];	/* where our pid is now ("" if none) */
	pid_t		 heir;		/* a new binary we started, until it takes over */
	pid_t		 upgrade_from;	/* the old master to retire once our workers stand */
	uint64_t	 upgrade_check_at;
	enum sd_state	 sd_state;
	uint64_t	 sd_at;		/* ms: next sd_check; 0: none */
	int		 sd_hung;	/* a worker stopped ticking: no watchdog pings */
} M;

static void
on_signal(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	switch (sig) {
	case SIGCHLD: got_chld = 1; break;
	case SIGTERM:
	case SIGINT:
		stop_from = sig == SIGTERM && si != NULL ? si->si_pid : 0;
		got_stop = 1;
		break;
	case SIGQUIT: got_quit = 1; break;
	case SIGHUP: got_hup = 1; break;
	case SIGUSR1: got_usr1 = 1; break;
	case SIGUSR2: got_usr2 = 1; break;
	case SIGALRM: got_alrm = 1; break;
	}
}

static const int master_signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGALRM };

/* In the child: undo the master's signal setup and run the worker. */
static void NORETURN
child_main(int index, int generation, int mslot, const char *dead_wid)
{
	struct sigaction sa;
	char name[16], dead[96];
	int status;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
		sigaction(master_signals[i], &sa, NULL);
	/* Ctrl-C reaches the whole process group; only the master decides. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigprocmask(SIG_SETMASK, &M.orig_mask, NULL);
	log_set_role("worker %d", index);
	snprintf(name, sizeof(name), "roomd-w%d", index);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	/* If the master dies, drain and exit instead of lingering as an orphan. */
	prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
	if (getppid() != M.pid)
		exit(0);
	listen_keep_slot(M.ls, index);
	if (priv_drop(M.cfg->user) == -1)
		exit(2);
	snprintf(dead, sizeof(dead), "%s", dead_wid);
	free(M.slot);
	metrics_bind(mslot);
	addrlimit_bind(mslot);
	status = worker_run(M.cfg, index, generation, M.instance, dead[0] != '\0' ? dead : NULL,
	    listen_slot(M.ls, index), M.ls->naddr);
	listen_close(M.ls);
	cfg_free(M.cfg);
	log_close();
	exit(status);
}

static void
spawn(int index)
{
	struct slot *s = &M.slot[index];
	pid_t pid;

	s->respawn_at = 0;
	s->mslot = metrics_slot_alloc();
	pid = fork();
	if (pid == -1) {
		log_errno(LOG_LVL_ALERT, "fork() for worker %d failed; retrying in 1s", index);
		metrics_slot_release(s->mslot);
		s->respawn_at = clock_ms() + 1000;
		return;
	}
	if (pid == 0)
		child_main(index, M.generation, s->mslot, s->dead);
	s->dead[0] = '\0';	/* the new worker has it */
	s->pid = pid;
	s->generation = M.generation;
	s->started = clock_ms();
	log_info("worker %d started (pid %d)", index, (int)pid);
}

static void
describe_status(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s", WTERMSIG(status),
		    strsignal(WTERMSIG(status)), WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "stopped with status 0x%x", status);
}

/* Rename our pidfile (to .oldbin during an upgrade, and back). */
static void
move_pidfile(const char *to)
{
	if (M.pidfile[0] == '\0')
		return;
	if (rename(M.pidfile, to) == -1) {
		log_errno(LOG_LVL_ERROR, "rename(%s, %s) failed", M.pidfile, to);
		return;
	}
	snprintf(M.pidfile, sizeof(M.pidfile), "%s", to);
}

/* The new binary died before taking over: we carry on as before. */
static void
heir_failed(const char *how)
{
	log_error("binary upgrade failed: the new master %s; this master keeps serving", how);
	M.heir = 0;
	if (M.ex->pidfile != NULL)
		move_pidfile(M.ex->pidfile);
}

/*
 * SIGUSR2: start the binary at the same path (perhaps a new version) with the
 * listening sockets inherited. It adopts them, starts its workers and, once
 * they stand, sends us SIGTERM: we drain while it accepts on the very same
 * sockets, so no connection is ever refused.
 */
static void
upgrade(void)
{
	char fds[2048], from[24], oldbin[1100];
	sigset_t none;
	pid_t pid;

	if (M.heir != 0 || M.stopping || M.upgrade_from != 0) {
		log_warn("binary upgrade already in progress or stopping: SIGUSR2 ignored");
		return;
	}
	if (M.ex->pidfile != NULL) {
		snprintf(oldbin, sizeof(oldbin), "%s.oldbin", M.ex->pidfile);
		move_pidfile(oldbin);
	}
	if ((pid = fork()) == -1) {
		log_errno(LOG_LVL_ERROR, "fork() for the binary upgrade failed");
		if (M.ex->pidfile != NULL)
			move_pidfile(M.ex->pidfile);
		return;
	}
	if (pid == 0) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
			sigaction(master_signals[i], &sa, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		snprintf(from, sizeof(from), "%d", (int)M.pid);
		notify_pass_env();
		if (listen_export(M.ls, fds, sizeof(fds)) == -1 ||
		    setenv("ROOMD_LISTEN_FDS", fds, 1) == -1 || setenv("ROOMD_UPGRADE_FROM", from, 1) == -1)
			_exit(127);
		if (strchr(M.ex->path, '/') != NULL)
			execv(M.ex->path, M.ex->argv);
		else
			execvp(M.ex->path, M.ex->argv);
		log_errno(LOG_LVL_ERROR, "exec(%s) for the binary upgrade failed", M.ex->path);
		_exit(127);
	}
	M.heir = pid;
	log_notice("binary upgrade: started %s as pid %d with our listening sockets", M.ex->path, (int)pid);
}

static int children_left(void);

/* systemd: workers, and how many are ready (running, Redis reached). */
static void
sd_summary(char *buf, size_t len, int ready)
{
	long long conns = (long long)metrics_gauge_total(GAUGE_CONN_OPEN);

	switch (M.sd_state) {
	case SD_STARTING:
		snprintf(buf, len, "starting: %d of %d worker(s) ready", ready, M.nslots);
		break;
	case SD_RELOADING:
		snprintf(buf, len, "reloading: %d of %d new worker(s) ready", ready, M.nslots);
		break;
	case SD_STOPPING:
		snprintf(buf, len, "stopping: %d process(es) draining, %lld connection(s)", children_left(), conns);
		break;
	default:
		if (ready == M.nslots)
			snprintf(buf, len, "%d worker(s), %lld connection(s)", M.nslots, conns);
		else
			snprintf(buf, len, "%d worker(s), %lld connection(s); %d without Redis or restarting",
			    M.nslots, conns, M.nslots - ready);
	}
}

/*
 * systemd, on the master's timer: READY=1 once the worker in every slot runs
 * and reached Redis (at startup, and for the new generation of a reload),
 * STATUS= when the summary changes, and WATCHDOG=1 while no running worker
 * has stopped ticking. A slot waiting out a respawn delay does not hold the
 * pings back: the master is handling that one; a worker stuck in a loop is
 * what the watchdog is for. This function running proves the master's loop.
 */
static void
sd_check(uint64_t now)
{
	uint64_t wd = notify_watchdog_ms(), stale = wd > SD_STALE_MIN_MS ? wd : SD_STALE_MIN_MS;
	int ready = 0, hung = -1;
	char status[200];

	M.sd_at = now + (M.sd_state == SD_STARTING || M.sd_state == SD_RELOADING ? 50 : 1000);
	if (wd > 0 && M.sd_at > now + wd / 4)
		M.sd_at = now + (wd >= 4 ? wd / 4 : 1);
	if (M.sd_state == SD_HEIR || M.sd_state == SD_GONE)
		return;
	for (int i = 0; i < M.nslots; i++) {
		struct slot *s = &M.slot[i];
		uint64_t last;

		if (s->pid == 0)
			continue;
		ready += metrics_slot_gauge(s->mslot, GAUGE_REDIS_UP) > 0;
		if ((last = metrics_slot_beat(s->mslot)) < s->started)
			last = s->started;
		if (now > last && now - last > stale && hung == -1)
			hung = i;
	}
	if ((M.sd_state == SD_STARTING || M.sd_state == SD_RELOADING) && ready == M.nslots) {
		M.sd_state = SD_READY;
		sd_summary(status, sizeof(status), ready);
		notify_ready(status);
		log_info("told systemd: ready (%s)", status);
	} else {
		sd_summary(status, sizeof(status), ready);
		notify_status("%s", status);
	}
	if (wd == 0 || M.sd_state == SD_STOPPING)
		return;
	if (hung >= 0 && !M.sd_hung)
		log_error("worker %d (pid %d) has not ticked for over %llums: no watchdog pings until it does",
		    hung, (int)M.slot[hung].pid, (unsigned long long)stale);
	else if (hung < 0 && M.sd_hung)
		log_notice("every worker ticks again: watchdog pings resume");
	M.sd_hung = hung >= 0;
	if (!M.sd_hung)
		notify_watchdog();
}

/* systemd: at startup; a new binary stays silent until it takes over. */
static void
sd_start(void)
{
	notify_init();
	if (!notify_on())
		return;
	M.sd_state = M.upgrade_from != 0 ? SD_HEIR : SD_STARTING;
	M.sd_at = clock_ms();
}

/*
 * systemd, on SIGHUP: RELOADING=1, then READY=1 from sd_check once the new
 * generation stands; a failed reload is over at once (RELOADING=1, READY=1),
 * so that a manager waiting for the reload to end is not kept waiting.
 */
static void
sd_reload(const char *failed)
{
	char status[300];

	if (M.sd_state != SD_READY && M.sd_state != SD_RELOADING)
		return;
	notify_reloading();
	if (failed == NULL) {
		M.sd_state = SD_RELOADING;
		M.sd_at = clock_ms();
	} else if (M.sd_state == SD_READY) {
		snprintf(status, sizeof(status), "reload failed: %s; running with the previous configuration",
		    failed);
		notify_ready(status);
	}
}

/*
 * systemd, when a stop begins: STOPPING=1, unless the SIGTERM came from the
 * new binary of an upgrade taking over. Then the service goes on and only
 * its main process changes: MAINPID= names the new master. It has to come
 * from us, the main process systemd listens to (NotifyAccess=main), and
 * before we exit; systemd reads it before it notices our exit.
 */
static void
sd_stop(void)
{
	char status[64];

	if (M.sd_state == SD_OFF || M.sd_state == SD_STOPPING || M.sd_state == SD_GONE)
		return;
	if (M.sd_state == SD_HEIR) {	/* never was the main process */
		M.sd_state = SD_GONE;
		return;
	}
	if (M.heir != 0 && stop_from == M.heir) {
		snprintf(status, sizeof(status), "binary upgrade: pid %d took over", (int)M.heir);
		notify_mainpid(M.heir, status);
		log_info("told systemd: the main process is now pid %d", (int)M.heir);
		M.sd_state = SD_GONE;
		return;
	}
	M.sd_state = SD_STOPPING;
	snprintf(status, sizeof(status), "stopping: %d process(es) draining", children_left());
	notify_stopping(status);
	M.sd_at = clock_ms() + 1000;
}

/* systemd: a new binary has told the old master to go; its MAINPID= makes us the service. */
static void
sd_took_over(void)
{
	if (M.sd_state != SD_HEIR)
		return;
	M.sd_state = SD_READY;
	/* Give the old master a moment to send MAINPID= before we speak. */
	M.sd_at = clock_ms() + 250;
}

/* New master: once our workers have stood for a moment, retire the old master. */
static void
check_upgrade(void)
{
	if (M.upgrade_from == 0 || clock_ms() < M.upgrade_check_at)
		return;
	for (int i = 0; i < M.nslots; i++) {
		if (M.slot[i].pid == 0 || clock_ms() - M.slot[i].started < 500) {
			M.upgrade_check_at = clock_ms() + 250;
			return;
		}
	}
	if (kill(M.upgrade_from, SIGTERM) == -1 && errno != ESRCH)
		log_errno(LOG_LVL_ERROR, "kill(%d, SIGTERM) for the old master failed", (int)M.upgrade_from);
	else {
		log_notice("binary upgrade: our workers are up; the old master (pid %d) drains and exits",
		    (int)M.upgrade_from);
		sd_took_over();
	}
	M.upgrade_from = 0;
}

static void
reap(void)
{
	char how[128];
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		int known = 0;

		if (redisproc_reaped(pid, status))
			continue;
		describe_status(status, how, sizeof(how));
		if (pid == M.heir) {
			heir_failed(how);
			continue;
		}
		for (int i = 0; i < M.nretiring; i++) {
			if (M.retiring[i].pid == pid) {
				log_info("old worker (pid %d) %s", (int)pid, how);
				metrics_slot_release(M.retiring[i].mslot);
				M.retiring[i] = M.retiring[--M.nretiring];
				known = 1;
				break;
			}
		}
		for (int i = 0; !known && i < M.nslots; i++) {
			struct slot *s = &M.slot[i];
			uint64_t lived, delay;

			if (s->pid != pid)
				continue;
			known = 1;
			s->pid = 0;
			/*
			 * Whatever members it still held (none after a graceful
			 * exit) are removed by the worker that takes its place,
			 * as soon as that one reaches Redis; if none does, by the
			 * janitors when its liveness expires.
			 */
			snprintf(s->dead, sizeof(s->dead), "%s.%d", M.instance, (int)pid);
			metrics_slot_release(s->mslot);
			s->mslot = -1;
			if (M.stopping) {
				/* Nobody accepts on its sockets again: let the kernel stop queueing there. */
				listen_close_slot(M.ls, i);
				log_info("worker %d (pid %d) %s", i, (int)pid, how);
				break;
			}
			lived = clock_ms() - s->started;
			if (lived < QUICK_CRASH_MS) {
				s->quick_crashes++;
				delay = (uint64_t)BACKOFF_MIN_MS << (s->quick_crashes < 10 ? s->quick_crashes - 1 : 9);
				if (delay > BACKOFF_MAX_MS)
					delay = BACKOFF_MAX_MS;
			} else {
				s->quick_crashes = 0;
				delay = 0;
			}
			metrics_worker_restart();
			if (delay == 0) {
				log_error("worker %d (pid %d) %s; respawning", i, (int)pid, how);
				spawn(i);
			} else {
				log_error("worker %d (pid %d) %s after %llums; respawning in %llums (crash loop)",
				    i, (int)pid, how, (unsigned long long)lived, (unsigned long long)delay);
				s->respawn_at = clock_ms() + delay;
			}
		}
		if (!known)
			log_info("child %d %s", (int)pid, how);
	}
}

static int
children_left(void)
{
	int n = M.nretiring;

	for (int i = 0; i < M.nslots; i++)
		n += M.slot[i].pid != 0;
	return n;
}

static void
signal_all(int sig)
{
	for (int i = 0; i < M.nslots; i++)
		if (M.slot[i].pid != 0 && kill(M.slot[i].pid, sig) == -1 && errno != ESRCH)
			log_errno(LOG_LVL_ERROR, "kill(%d, %d) failed", (int)M.slot[i].pid, sig);
	for (int i = 0; i < M.nretiring; i++)
		if (kill(M.retiring[i].pid, sig) == -1 && errno != ESRCH)
			log_errno(LOG_LVL_ERROR, "kill(%d, %d) failed", (int)M.retiring[i].pid, sig);
}

static void
begin_stop(int immediate)
{
	sd_stop();
	if (immediate || M.stopping) {
		log_notice("stopping at once");
		M.stopping = 2;
		signal_all(SIGQUIT);
		M.kill_at = clock_ms() + 2000;
		return;
	}
	log_notice("graceful stop: draining %d worker(s), up to %dms", children_left(),
	    M.cfg->shutdown_timeout);
	M.stopping = 1;
	/* When the drain ends the workers stop accepting: so do our copies of their sockets. */
	M.unlisten_at = clock_ms() + (uint64_t)M.cfg->drain_time;
	/* After a binary upgrade the heir accepts on our sockets: stop accepting at once. */
	signal_all(M.heir != 0 && kill(M.heir, 0) == 0 ? SIGUSR2 : SIGTERM);
	M.kill_at = clock_ms() + (uint64_t)M.cfg->shutdown_timeout + 2000;
}

/* SIGHUP: a new config, a new generation in every slot, the old one drains. */
static void
reload(master_load_fn load)
{
	char err[CFG_ERR_LEN];
	struct config *next;
	pid_t old;
	int oldslot;

	if (M.stopping)
		return;
	if ((next = load(err, sizeof(err))) == NULL) {
		log_error("reload failed: %s; keeping the current configuration", err);
		sd_reload(err);
		return;
	}
	cfg_keep_restart_only(M.cfg, next);
	redisproc_apply(next);
	if ((M.cfg->log_file == NULL) != (next->log_file == NULL) ||
	    (next->log_file != NULL && strcmp(M.cfg->log_file, next->log_file) != 0)) {
		if (log_open(next->log_file) == -1) {
			log_errno(LOG_LVL_ERROR, "reload: opening log_file %s failed; keeping the current configuration",
			    next->log_file);
			sd_reload("cannot open the new log_file");
			cfg_free(next);
			return;
		}
	}
	log_set_level((enum log_level)next->log_level);
	log_set_json(next->log_format == CFG_LOG_JSON);
	cfg_free(M.cfg);
	M.cfg = next;
	M.generation++;
	log_notice("reload: configuration re-read; starting worker generation %d", M.generation);
	sd_reload(NULL);
	for (int i = 0; i < M.nslots; i++) {
		old = M.slot[i].pid;
		oldslot = M.slot[i].mslot;
		M.slot[i].pid = 0;
		M.slot[i].quick_crashes = 0;
		spawn(i);
		if (old == 0)
			continue;
		if (M.nretiring < MAX_RETIRING)
			M.retiring[M.nretiring++] = (struct retiring){ old, oldslot };
		/* The new worker shares its sockets: the old one stops accepting and drains. */
		if (kill(old, SIGUSR2) == -1 && errno != ESRCH)
			log_errno(LOG_LVL_ERROR, "kill(%d, SIGUSR2) failed", (int)old);
	}
}

/* Arm SIGALRM for the earliest deadline (respawn or stop), if any. */
static void
arm_timer(void)
{
	struct itimerval it;
	uint64_t next = 0, now = clock_ms();

	memset(&it, 0, sizeof(it));
	/* While stopping nothing is respawned, so a pending respawn is no deadline. */
	for (int i = 0; i < M.nslots && !M.stopping; i++)
		if (M.slot[i].respawn_at != 0 && (next == 0 || M.slot[i].respawn_at < next))
			next = M.slot[i].respawn_at;
	if (M.stopping && M.kill_at != 0 && (next == 0 || M.kill_at < next))
		next = M.kill_at;
	if (M.stopping && M.unlisten_at != 0 && (next == 0 || M.unlisten_at < next))
		next = M.unlisten_at;
	if (M.upgrade_from != 0 && (next == 0 || M.upgrade_check_at < next))
		next = M.upgrade_check_at;
	if (M.sd_at != 0 && (next == 0 || M.sd_at < next))
		next = M.sd_at;
	if (next != 0) {
		uint64_t d = next > now ? next - now : 1;

		it.it_value.tv_sec = (time_t)(d / 1000);
		it.it_value.tv_usec = (suseconds_t)((d % 1000) * 1000);
	}
	if (setitimer(ITIMER_REAL, &it, NULL) == -1)
		log_errno(LOG_LVL_ERROR, "setitimer() failed");
}

static void
run_timers(void)
{
	uint64_t now = clock_ms();

	check_upgrade();
	for (int i = 0; i < M.nslots; i++) {
		if (M.slot[i].respawn_at != 0 && M.slot[i].respawn_at <= now && !M.stopping)
			spawn(i);
	}
	if (M.stopping && M.unlisten_at != 0 && M.unlisten_at <= now) {
		for (int i = 0; i < M.nslots; i++)
			listen_close_slot(M.ls, i);
		M.unlisten_at = 0;
	}
	if (M.stopping && M.kill_at != 0 && M.kill_at <= now) {
		log_warn("%d worker(s) still running after the stop deadline: killing them",
		    children_left());
		signal_all(SIGKILL);
		M.kill_at = 0;
	}
	if (M.sd_at != 0 && M.sd_at <= now)
		sd_check(now);
}

int
master_run(struct config *cfg, struct listeners *ls, master_load_fn load, const struct master_exec *ex)
{
	struct sigaction sa;
	sigset_t block, waitmask;

	uint8_t rnd[8];

	memset(&M, 0, sizeof(M));
	M.cfg = cfg;
	M.ex = ex;
	if (ex->pidfile != NULL)
		snprintf(M.pidfile, sizeof(M.pidfile), "%s", ex->pidfile);
	M.upgrade_from = ex->upgrade_from;
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		fatal("getrandom() failed");
	for (int i = 0; i < 8; i++)
		snprintf(M.instance + 2 * i, 3, "%02x", rnd[i]);
	M.ls = ls;
	M.nslots = cfg->workers;
	M.pid = getpid();
	if ((M.slot = calloc((size_t)M.nslots, sizeof(*M.slot))) == NULL)
		fatalx("out of memory");
	/* Room for every slot twice (a reload overlaps two generations) and some spare. */
	if (metrics_init(2 * M.nslots + 8) == -1)
		fatal("mmap() for shared counters failed");
	if (addrlimit_init(2 * M.nslots + 8, cfg->ipv6_prefix_length) == -1)
		fatal("mmap() or getrandom() for the per-address table failed");

	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
		sigaddset(&block, master_signals[i]);
	if (sigprocmask(SIG_BLOCK, &block, &M.orig_mask) == -1)
		fatal("sigprocmask() failed");
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
		if (sigaction(master_signals[i], &sa, NULL) == -1)
			fatal("sigaction(%d) failed", master_signals[i]);
	waitmask = M.orig_mask;
	for (size_t i = 0; i < sizeof(master_signals) / sizeof(master_signals[0]); i++)
		sigdelset(&waitmask, master_signals[i]);

	if (cfg->redis == NULL && redisproc_start(cfg) == -1) {
		free(M.slot);
		return 1;
	}
	{
		char where[400];

		redisurl_describe(&cfg->redis_addr, where, sizeof(where));
		log_info("instance %s; rooms in redis %s%s", M.instance, where,
		    cfg->redis == NULL ? " (private)" : "");
	}
	sd_start();
	for (int i = 0; i < M.nslots; i++)
		spawn(i);
	M.upgrade_check_at = clock_ms() + 500;
	arm_timer();

	for (;;) {
		if (!(got_chld | got_stop | got_hup | got_usr1 | got_alrm | got_quit | got_usr2))
			sigsuspend(&waitmask);
		if (got_chld) {
			got_chld = 0;
			reap();
		}
		if (got_quit) {
			got_quit = 0;
			begin_stop(1);
		}
		if (got_stop) {
			got_stop = 0;
			begin_stop(0);
		}
		if (got_hup) {
			got_hup = 0;
			reload(load);
		}
		if (got_usr1) {
			got_usr1 = 0;
			if (log_reopen() == -1)
				log_errno(LOG_LVL_ERROR, "reopening the log file failed");
			else {
				priv_chown(M.cfg->log_file, M.cfg->user);
				log_notice("log file reopened");
			}
			signal_all(SIGUSR1);
		}
		if (got_usr2) {
			got_usr2 = 0;
			upgrade();
		}
		if (got_alrm) {
			got_alrm = 0;
			run_timers();
		}
		if (M.stopping && children_left() == 0)
			break;
		arm_timer();
	}
	log_notice("all workers stopped; exiting");
	redisproc_stop();
	listen_close(M.ls);
	if (M.pidfile[0] != '\0' && unlink(M.pidfile) == -1 && errno != ENOENT)
		log_errno(LOG_LVL_WARNING, "unlink(%s) failed", M.pidfile);
	free(M.slot);
	cfg_free(M.cfg);
	return 0;
}
