/*
 * main.c: command-line flags, -t/-T/-v/-h, then the startup sequence:
 * config, log, daemonize, listen, pidfile, and the master loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <zlib.h>

#include "config.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "priv.h"
#include "tls.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG SYSCONFDIR "/roomd.conf"

#define MAX_OVERRIDES 64

/* What the command line said, re-applied over the file on every reload. */
static struct {
	const char	*config;
	int		 config_given;
	const char	*key[MAX_OVERRIDES];
	char		*value[MAX_OVERRIDES];
	int		 n;
	int		 listen_given;
} opt;

static void NORETURN
usage(int status)
{
	fprintf(status == 0 ? stdout : stderr,
	    "usage: roomd [-dhtTv] [-c file] [-l address] [-o 'key value'] [-w workers]\n");
	exit(status);
}

#ifdef HAVE_SYSTEMD
#define SYSTEMD_FACT "libsystemd " LIBSYSTEMD_VERSION " (sd_notify)"
#else
#define SYSTEMD_FACT "no systemd support"
#endif

static void
version(void)
{
	printf("roomd %s\n", PACKAGE_VERSION);
	printf("libevent %s, hiredis %d.%d.%d, json-c %s, %s, zlib %s, %s\n", event_get_version(),
	    HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, json_c_version(),
	    OpenSSL_version(OPENSSL_VERSION), zlibVersion(), SYSTEMD_FACT);
}

static void
add_override(const char *key, const char *value)
{
	if (opt.n >= MAX_OVERRIDES) {
		fprintf(stderr, "roomd: too many command-line settings (at most %d)\n", MAX_OVERRIDES);
		exit(1);
	}
	opt.key[opt.n] = key;
	if ((opt.value[opt.n] = strdup(value)) == NULL) {
		fprintf(stderr, "roomd: out of memory\n");
		exit(1);
	}
	opt.n++;
}

/* Build the configuration: defaults, the file, then the command line. */
static struct config *
load_config(char *err, size_t errlen)
{
	struct config *c = cfg_new();

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (opt.config != NULL && cfg_load_file(c, opt.config, err, errlen) == -1)
		goto bad;
	if (opt.listen_given)
		cfg_clear_listen(c);	/* -l replaces the file's listen lines (api_listen's stay) */
	for (int i = 0; i < opt.n; i++) {
		char *sp, buf[1024];
		const char *key = opt.key[i], *val = opt.value[i];

		if (key == NULL) {	/* -o 'key value' */
			snprintf(buf, sizeof(buf), "%s", val);
			if ((sp = strpbrk(buf, " \t")) == NULL) {
				snprintf(err, errlen, "command line: -o wants 'key value', got '%s'", val);
				goto bad;
			}
			*sp++ = '\0';
			while (*sp == ' ' || *sp == '\t')
				sp++;
			if (cfg_set(c, "command line", 0, buf, sp, err, errlen) == -1)
				goto bad;
		} else if (cfg_set(c, "command line", 0, key, val, err, errlen) == -1)
			goto bad;
	}
	if (cfg_finish(c, err, errlen) == -1)
		goto bad;
	if (tls_wanted(c)) {
		/* Load the certificate now: a bad one is a config error, at start and on reload. */
		char why[CFG_ERR_LEN];
		SSL_CTX *ctx = tls_ctx_new(c, why, sizeof(why));

		if (ctx == NULL) {
			snprintf(err, errlen, "%s: %s", c->path != NULL ? c->path : "config", why);
			goto bad;
		}
		SSL_CTX_free(ctx);
	}
	/* Settings that do nothing where they are: said, not refused (as ssl_certificate without ssl). */
	if (!c->redis_addr.tls && (c->redis_tls_ca != NULL || c->redis_tls_cert != NULL || c->redis_tls_key != NULL))
		log_warn("%s: redis_tls_ca, redis_tls_cert and redis_tls_key are not used: Redis is not reached "
		    "over TLS (redis_tls no, no rediss:// address)", c->path != NULL ? c->path : "config");
	if (c->redis_sentinel_password != NULL && c->redis_addr.mode != REDISURL_SENTINEL)
		log_warn("%s: redis_sentinel_password is not used: redis is not a sentinel:// address",
		    c->path != NULL ? c->path : "config");
	if (c->redis_addr.tls) {
		char why[CFG_ERR_LEN];
		SSL_CTX *ctx = tls_client_ctx_new(c, why, sizeof(why));

		if (ctx == NULL) {
			snprintf(err, errlen, "%s: %s", c->path != NULL ? c->path : "config", why);
			goto bad;
		}
		SSL_CTX_free(ctx);
	}
	return c;
bad:
	cfg_free(c);
	return NULL;
}

static void
raise_fd_limit(const struct config *cfg)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)(cfg->worker_connections > 0 ? cfg->worker_connections :
	    cfg->max_connections) + 128;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_errno(LOG_LVL_WARNING, "setrlimit(RLIMIT_NOFILE, %llu) failed",
			    (unsigned long long)rl.rlim_max);
	}
	if (rl.rlim_cur < want)
		log_warn("open file limit %llu is below what max_connections %d needs per worker (%llu)",
		    (unsigned long long)rl.rlim_cur, cfg->max_connections, (unsigned long long)want);
}

static void
daemonize(void)
{
	pid_t pid;
	int fd;

	if ((pid = fork()) == -1)
		fatal("fork() failed");
	if (pid > 0)
		_exit(0);
	if (setsid() == -1)
		fatal("setsid() failed");
	if ((pid = fork()) == -1)
		fatal("fork() failed");
	if (pid > 0)
		_exit(0);
	if (chdir("/") == -1)
		fatal("chdir(/) failed");
	if ((fd = open("/dev/null", O_RDWR)) == -1)
		fatal("open(/dev/null) failed");
	if (dup2(fd, STDIN_FILENO) == -1 || dup2(fd, STDOUT_FILENO) == -1 ||
	    dup2(fd, STDERR_FILENO) == -1)
		fatal("dup2() failed");
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Write the pidfile, refusing to clobber one of a live process. */
static int
write_pidfile(const char *path)
{
	char buf[32];
	FILE *f;
	long old;
	int n;

	if ((f = fopen(path, "r")) != NULL) {
		if (fscanf(f, "%ld", &old) == 1 && old > 0 && kill((pid_t)old, 0) == 0 &&
		    (pid_t)old != getpid()) {
			fclose(f);
			log_error("pidfile %s names a running process (pid %ld): is roomd running already?",
			    path, old);
			return -1;
		}
		fclose(f);
	}
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if ((f = fopen(path, "w")) == NULL) {
		log_errno(LOG_LVL_ERROR, "open(%s) failed", path);
		return -1;
	}
	if (fwrite(buf, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
		log_errno(LOG_LVL_ERROR, "writing pidfile %s failed", path);
		return -1;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	char err[CFG_ERR_LEN];
	struct config *cfg;
	struct listeners ls;
	struct sigaction sa;
	char *abs_config = NULL, *self = NULL, *pidcopy = NULL, **xargv = NULL;
	struct master_exec ex;
	const char *up;
	int ch, test = 0, dump = 0, rc;

	while ((ch = getopt(argc, argv, "c:dhl:o:tTvw:")) != -1) {
		switch (ch) {
		case 'c':
			opt.config = optarg;
			opt.config_given = 1;
			break;
		case 'd':
			add_override("daemonize", "yes");
			break;
		case 'h':
			usage(0);
		case 'l':
			add_override("listen", optarg);
			opt.listen_given = 1;
			break;
		case 'o':
			add_override(NULL, optarg);
			break;
		case 't':
			test = 1;
			break;
		case 'T':
			test = dump = 1;
			break;
		case 'v':
			version();
			return 0;
		case 'w':
			add_override("workers", optarg);
			break;
		default:
			usage(1);
		}
	}
	if (optind != argc)
		usage(1);
	if (!opt.config_given && access(DEFAULT_CONFIG, R_OK) == 0)
		opt.config = DEFAULT_CONFIG;
	/* The binary's own path, for SIGUSR2, before any chdir. */
	if (strchr(argv[0], '/') != NULL)
		self = realpath(argv[0], NULL);
	/* Reloads happen after daemonize's chdir("/"): remember where the file is. */
	if (opt.config != NULL && opt.config[0] != '/' && (abs_config = realpath(opt.config, NULL)) != NULL)
		opt.config = abs_config;

	if ((cfg = load_config(err, sizeof(err))) == NULL) {
		fprintf(stderr, "roomd: %s\n", err);
		rc = 1;
		goto out;
	}
	if (test) {
		if (dump) {
			cfg_dump(cfg, stdout);
			fflush(stdout);
		}
		fprintf(stderr, "roomd: configuration %s is valid\n",
		    opt.config != NULL ? opt.config : "(built-in defaults)");
		cfg_free(cfg);
		rc = 0;
		goto out;
	}

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);

	log_set_level((enum log_level)cfg->log_level);
	log_set_json(cfg->log_format == CFG_LOG_JSON);
	if (log_open(cfg->log_file) == -1) {
		fprintf(stderr, "roomd: cannot open log_file %s: %s\n", cfg->log_file, strerror(errno));
		cfg_free(cfg);
		rc = 1;
		goto out;
	}
	priv_chown(cfg->log_file, cfg->user);
	log_notice("roomd %s starting (libevent %s, hiredis %d.%d.%d, json-c %s, %s); %d worker(s); config %s",
	    PACKAGE_VERSION, event_get_version(), HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH,
	    json_c_version(), OpenSSL_version(OPENSSL_VERSION), cfg->workers,
	    opt.config != NULL ? opt.config : "(built-in defaults)");
	raise_fd_limit(cfg);
	if (listen_open(&ls, cfg, cfg->workers, getenv("ROOMD_LISTEN_FDS")) == -1) {
		log_error("cannot listen; exiting");
		cfg_free(cfg);
		rc = 1;
		goto out;
	}
	/* Detach only once binding worked, so a failure shows in the exit status. */
	if (cfg->daemonize)
		daemonize();
	if (cfg->pidfile != NULL && write_pidfile(cfg->pidfile) == -1) {
		listen_close(&ls);
		cfg_free(cfg);
		rc = 1;
		goto out;
	}
	/*
	 * For SIGUSR2: the binary at this path, run again with the same arguments
	 * and a trailing -c with the config's absolute path (the last -c wins).
	 */
	memset(&ex, 0, sizeof(ex));
	ex.path = self != NULL ? self : argv[0];
	if ((xargv = calloc((size_t)argc + 3, sizeof(*xargv))) == NULL)
		fatalx("out of memory");
	for (int i = 0; i < argc; i++)
		xargv[i] = argv[i];
	if (opt.config != NULL) {
		xargv[argc] = (char *)(uintptr_t)"-c";
		xargv[argc + 1] = (char *)(uintptr_t)opt.config;
	}
	ex.argv = xargv;
	if (cfg->pidfile != NULL && (pidcopy = strdup(cfg->pidfile)) == NULL)
		fatalx("out of memory");
	ex.pidfile = pidcopy;
	if ((up = getenv("ROOMD_UPGRADE_FROM")) != NULL)
		ex.upgrade_from = (pid_t)atoi(up);
	unsetenv("ROOMD_LISTEN_FDS");
	unsetenv("ROOMD_UPGRADE_FROM");
	rc = master_run(cfg, &ls, load_config, &ex);
	free(pidcopy);
	free(xargv);
out:
	for (int i = 0; i < opt.n; i++)
		free(opt.value[i]);
	free(abs_config);
	free(self);
	log_close();
	return rc;
}
