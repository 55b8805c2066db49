/*
 * redisproc.c: the private redis-server. One command runs roomd on a laptop:
 * with no `redis` setting the master starts redis-server on a unix socket in
 * a private directory and hands that socket to the workers.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "notify.h"
#include "priv.h"
#include "redisproc.h"

static struct {
	pid_t	pid;
	char	dir[256];
	char	sock[108];
	char	bin[512];
	char	exe[300];	/* bin under the name roomd-redis, or "" */
	int	restarts;
	int	stopping;
	const struct config *cfg;
} P;

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
spawn(void)
{
	char logf[300];
	sigset_t none;
	pid_t pid;

	snprintf(logf, sizeof(logf), "%s/redis.log", P.dir);
	if ((pid = fork()) == -1) {
		log_errno(LOG_LVL_ERROR, "fork() for redis-server failed");
		return -1;
	}
	if (pid == 0) {
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (int sig = 1; sig < NSIG; sig++)
			sigaction(sig, &sa, NULL);
		sa.sa_handler = SIG_IGN;
		sigaction(SIGINT, &sa, NULL);	/* the master stops it, after the workers */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setpgid(0, 0);	/* a terminal's Ctrl-C goes to the master, which stops us last */
		prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
		if (priv_drop(P.cfg->user) == -1)
			_exit(127);
		notify_drop_env();	/* systemd's messages are the master's to send */
		/*
		 * execve() names the process after the file it runs, so
		 * PR_SET_NAME would not survive it: run the roomd-redis link
		 * instead. argv[0] stays redis-server, because redis picks its
		 * mode (server, check-rdb) from argv[0].
		 */
		execl(P.exe[0] != '\0' ? P.exe : P.bin, P.bin, "--port", "0", "--unixsocket", P.sock,
		    "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", P.dir, "--logfile", logf,
		    "--daemonize", "no",
		    /*
		     * A worker's subscriber link carries every room it has members
		     * in. Redis's default (32mb hard, 8mb for 60 s) is far above
		     * what rate_burst_bytes lets one client publish, but a few
		     * busy rooms together should not cost every room of the
		     * worker its link (gaps are repaired, but slowly).
		     */
		    "--client-output-buffer-limit", "pubsub 256mb 64mb 60", (char *)NULL);
		log_errno(LOG_LVL_ERROR, "exec(%s) failed", P.bin);
		_exit(127);
	}
	P.pid = pid;
	return 0;
}

/* Wait until the server answers PING on its socket. */
static int
wait_ready(int ms)
{
	struct timeval tv = { 0, 200000 };

	for (int waited = 0; waited < ms; waited += 25) {
		redisContext *c = redisConnectUnixWithTimeout(P.sock, tv);
		int ok = 0;

		if (c != NULL && !c->err) {
			redisReply *r = redisCommand(c, "PING");

			ok = r != NULL && r->type == REDIS_REPLY_STATUS;
			if (r != NULL)
				freeReplyObject(r);
		}
		if (c != NULL)
			redisFree(c);
		if (ok)
			return 0;
		if (P.pid != 0 && waitpid(P.pid, NULL, WNOHANG) == P.pid) {
			P.pid = 0;
			return -1;
		}
		sleep_ms(25);
	}
	return -1;
}

int
redisproc_start(struct config *cfg)
{
	char tmpl[256];

	P.cfg = cfg;
	snprintf(P.bin, sizeof(P.bin), "%s", cfg->redis_server);
	if (access(P.bin, X_OK) == -1) {
		log_error("no redis-server at %s (%s): install it (apt-get install redis-server), "
		    "set redis_server, or point `redis` at a running server", P.bin, strerror(errno));
		return -1;
	}
	if ((size_t)snprintf(tmpl, sizeof(tmpl), "%s/roomd.XXXXXX", cfg->run_dir) >= sizeof(tmpl) - 20) {
		log_error("run_dir %s is too long for a unix socket path", cfg->run_dir);
		return -1;
	}
	if (mkdtemp(tmpl) == NULL) {
		log_errno(LOG_LVL_ERROR, "mkdtemp(%s) failed", tmpl);
		return -1;
	}
	snprintf(P.dir, sizeof(P.dir), "%s", tmpl);
	snprintf(P.sock, sizeof(P.sock), "%s/redis.sock", P.dir);
	snprintf(P.exe, sizeof(P.exe), "%s/roomd-redis", P.dir);
	if (symlink(P.bin, P.exe) == -1) {
		log_errno(LOG_LVL_WARNING, "symlink(%s, %s) failed; the server keeps its own name",
		    P.bin, P.exe);
		P.exe[0] = '\0';
	}
	if (cfg->user != NULL && geteuid() == 0) {
		/* The server drops to `user`: give it its directory, still closed to everyone else. */
		struct passwd *pw = getpwnam(cfg->user);

		if (pw == NULL || chown(P.dir, pw->pw_uid, pw->pw_gid) == -1)
			log_errno(LOG_LVL_WARNING, "chown(%s, %s) failed", P.dir, cfg->user);
	}
	if (spawn() == -1)
		return -1;
	if (wait_ready(5000) == -1) {
		log_error("the private redis-server did not answer within 5s; see %s/redis.log", P.dir);
		redisproc_stop();
		return -1;
	}
	log_notice("private redis-server (pid %d) on %s", (int)P.pid, P.sock);
	redisproc_apply(cfg);
	return 0;
}

void
redisproc_apply(struct config *cfg)
{
	if (P.sock[0] == '\0' || cfg->redis != NULL)
		return;
	memset(&cfg->redis_addr, 0, sizeof(cfg->redis_addr));
	cfg->redis_addr.is_unix = 1;
	snprintf(cfg->redis_addr.path, sizeof(cfg->redis_addr.path), "%s", P.sock);
	P.cfg = cfg;
}

int
redisproc_reaped(pid_t pid, int status)
{
	if (pid == 0 || pid != P.pid)
		return 0;
	P.pid = 0;
	if (P.stopping)
		return 1;
	if (WIFEXITED(status))
		log_error("private redis-server exited with status %d; restarting it", WEXITSTATUS(status));
	else
		log_error("private redis-server killed by signal %d; restarting it",
		    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	/*
	 * Workers keep their clients and reconnect with backoff, so there is no
	 * need to wait for it here (the master must stay responsive); only a
	 * crash loop is slowed down, by at most a second.
	 */
	if (P.restarts++ > 0)
		sleep_ms(P.restarts < 10 ? 100 * P.restarts : 1000);
	if (spawn() == 0)
		log_notice("private redis-server restarted (pid %d)", (int)P.pid);
	return 1;
}

void
redisproc_stop(void)
{
	char path[300];

	P.stopping = 1;
	if (P.pid != 0) {
		kill(P.pid, SIGTERM);
		for (int i = 0; i < 80 && waitpid(P.pid, NULL, WNOHANG) == 0; i++)
			sleep_ms(25);
		if (waitpid(P.pid, NULL, WNOHANG) == 0) {
			kill(P.pid, SIGKILL);
			waitpid(P.pid, NULL, 0);
		}
		P.pid = 0;
	}
	if (P.dir[0] != '\0') {
		const char *files[] = { "redis.sock", "redis.log", "dump.rdb", "roomd-redis" };

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", P.dir, files[i]);
			unlink(path);
		}
		if (rmdir(P.dir) == -1)
			log_errno(LOG_LVL_WARNING, "rmdir(%s) failed", P.dir);
		P.dir[0] = '\0';
	}
}
