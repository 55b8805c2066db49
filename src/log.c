/*
 * log.c: the process-wide logger. Each line is written with one write(2) on an
 * O_APPEND descriptor, so lines from the master and every worker never interleave.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

#include "log.h"

static const char *level_names[] = {
	"debug", "info", "notice", "warning", "error", "alert",
};

static struct {
	enum log_level	 level;
	int		 fd;		/* -1 for syslog */
	int		 use_syslog;
	char		*dest;		/* NULL: stderr */
	char		 role[32];
	int		 json;
} lg = { LOG_LVL_INFO, STDERR_FILENO, 0, NULL, "master", 0 };

void
log_set_json(int on)
{
	lg.json = on;
}

/* Append s as a JSON string (quoted, escaped) to buf at *o, bounded by len. */
static void
json_str(char *buf, size_t len, size_t *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	if (*o + 2 >= len)
		return;
	buf[(*o)++] = '"';
	for (; *s != '\0' && *o + 8 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			buf[(*o)++] = '\\';
			buf[(*o)++] = (char)c;
		} else if (c < 0x20) {
			memcpy(buf + *o, "\\u00", 4);
			*o += 4;
			buf[(*o)++] = hex[c >> 4];
			buf[(*o)++] = hex[c & 15];
		} else
			buf[(*o)++] = (char)c;
	}
	buf[(*o)++] = '"';
}

/* Append s to buf at *o, keeping *o <= len - 1 (room for the newline). */
static void
put(char *buf, size_t len, size_t *o, const char *s)
{
	size_t n = strlen(s);

	if (n > len - 1 - *o)
		n = len - 1 - *o;
	memcpy(buf + *o, s, n);
	*o += n;
}

/*
 * The parts of a line's prefix that rarely change are formatted only when
 * they do: the date and time to the second, and the pid (again after a fork).
 * An access line per connection costs a few copies, not a dozen printfs.
 */
static struct {
	time_t	sec;
	char	base[32];	/* "YYYY-MM-DD HH:MM:SS" */
	char	pid[16];
	int	forks_seen;	/* stamp_forget_pid runs in every child */
} stamp = { -1, "", "", 0 };

static void
stamp_forget_pid(void)
{
	stamp.pid[0] = '\0';
}

static void
timestamp(char ts[40])
{
	struct timeval tv;
	struct tm tm;
	size_t n;
	int ms;

	gettimeofday(&tv, NULL);
	if (tv.tv_sec != stamp.sec) {
		localtime_r(&tv.tv_sec, &tm);
		snprintf(stamp.base, sizeof(stamp.base), "%04d-%02d-%02d %02d:%02d:%02d",
		    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
		stamp.sec = tv.tv_sec;
	}
	if (stamp.pid[0] == '\0' || !stamp.forks_seen) {
		/* Without the fork hook the cache could go stale: ask every time. */
		if (!stamp.forks_seen && pthread_atfork(NULL, NULL, stamp_forget_pid) == 0)
			stamp.forks_seen = 1;
		snprintf(stamp.pid, sizeof(stamp.pid), "%d", (int)getpid());
	}
	n = strlen(stamp.base);
	memcpy(ts, stamp.base, n);
	ms = (int)(tv.tv_usec / 1000);
	ts[n] = '.';
	ts[n + 1] = (char)('0' + ms / 100);
	ts[n + 2] = (char)('0' + ms / 10 % 10);
	ts[n + 3] = (char)('0' + ms % 10);
	ts[n + 4] = '\0';
}

/* Write one finished line (text or JSON) to the destination. */
static void
emit(enum log_level l, const char *msg, const char *const *keys, const char *const *vals, int n)
{
	static const int sysprio[] = {
		LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR, LOG_ALERT,
	};
	char line[4096], ts[40];
	const char *pid = stamp.pid;
	size_t o = 0;
	int saved = errno;

	timestamp(ts);
	if (lg.json) {
		o = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"pid\":%s,\"role\":", ts, pid);
		json_str(line, sizeof(line), &o, lg.role);
		o += (size_t)snprintf(line + o, sizeof(line) - o, ",\"level\":\"%s\",", level_names[l]);
		if (keys != NULL) {
			o += (size_t)snprintf(line + o, sizeof(line) - o, "\"event\":");
			json_str(line, sizeof(line), &o, msg);
			for (int i = 0; i < n && o + 16 < sizeof(line); i++) {
				line[o++] = ',';
				json_str(line, sizeof(line), &o, keys[i]);
				line[o++] = ':';
				json_str(line, sizeof(line), &o, vals[i]);
			}
		} else {
			o += (size_t)snprintf(line + o, sizeof(line) - o, "\"msg\":");
			json_str(line, sizeof(line), &o, msg);
		}
		if (o + 2 > sizeof(line))
			o = sizeof(line) - 2;
		line[o++] = '}';
		line[o++] = '\n';
	} else {
		const char *head[] = { ts, " ", pid, " ", lg.role, " [", level_names[l], "] ", msg };

		for (size_t i = 0; i < sizeof(head) / sizeof(head[0]); i++)
			put(line, sizeof(line), &o, head[i]);
		for (int i = 0; keys != NULL && i < n; i++) {
			put(line, sizeof(line), &o, " ");
			put(line, sizeof(line), &o, keys[i]);
			put(line, sizeof(line), &o, "=");
			put(line, sizeof(line), &o, vals[i]);
		}
		line[o++] = '\n';
	}
	if (lg.use_syslog)
		syslog(sysprio[l], "%.*s", (int)o - 1, line);
	else if (write(lg.fd, line, o) < 0)
		(void)0;	/* nothing sensible to do if the log itself cannot be written */
	errno = saved;
}

void
log_kv(enum log_level l, const char *event, const char *const *keys, const char *const *vals, int n)
{
	if (l >= lg.level)
		emit(l, event, keys, vals, n);
}

int
log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return (int)i;
	if (strcasecmp(s, "warn") == 0)
		return LOG_LVL_WARNING;
	return -1;
}

const char *
log_level_name(enum log_level l)
{
	return level_names[l];
}

void
log_set_level(enum log_level l)
{
	lg.level = l;
}

int
log_enabled(enum log_level l)
{
	return l >= lg.level;
}

void
log_set_role(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(lg.role, sizeof(lg.role), fmt, ap);
	va_end(ap);
}

/* Open dest without touching the current state; fill fd and syslog flag. */
static int
open_dest(const char *dest, int *fd, int *use_syslog)
{
	*use_syslog = 0;
	if (dest == NULL || *dest == '\0' || strcmp(dest, "stderr") == 0) {
		*fd = STDERR_FILENO;
		return 0;
	}
	if (strcmp(dest, "syslog") == 0) {
		openlog("roomd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
		*fd = -1;
		*use_syslog = 1;
		return 0;
	}
	*fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	return *fd < 0 ? -1 : 0;
}

int
log_open(const char *dest)
{
	int fd, sl;
	char *copy = NULL;

	if (dest != NULL && (copy = strdup(dest)) == NULL)
		return -1;
	if (open_dest(dest, &fd, &sl) == -1) {
		free(copy);
		return -1;
	}
	log_close();
	lg.fd = fd;
	lg.use_syslog = sl;
	lg.dest = copy;
	return 0;
}

int
log_reopen(void)
{
	int fd, sl;

	if (open_dest(lg.dest, &fd, &sl) == -1)
		return -1;
	if (lg.fd > STDERR_FILENO)
		close(lg.fd);
	lg.fd = fd;
	lg.use_syslog = sl;
	return 0;
}

void
log_close(void)
{
	if (lg.fd > STDERR_FILENO)
		close(lg.fd);
	if (lg.use_syslog)
		closelog();
	lg.fd = STDERR_FILENO;
	lg.use_syslog = 0;
	free(lg.dest);
	lg.dest = NULL;
}

void
log_vmsg(enum log_level l, const char *fmt, va_list ap)
{
	char msg[1800];
	int saved = errno;

	if (l < lg.level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	errno = saved;
	emit(l, msg, NULL, NULL, 0);
}

void
log_msg(enum log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(l, fmt, ap);
	va_end(ap);
}

/* A message with " (errno: text)" of the errno current when called. */
static void log_verrno(enum log_level, const char *, va_list) PRINTF_LIKE(2, 0);
static void
log_verrno(enum log_level l, const char *fmt, va_list ap)
{
	char buf[1024];
	int e = errno;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	log_msg(l, "%s (%d: %s)", buf, e, strerror(e));
}

void
log_errno(enum log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_verrno(l, fmt, ap);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_verrno(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

char *
log_escape(char *dst, size_t dstlen, const void *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = src;
	size_t o = 0;

	if (dstlen == 0)
		return dst;
	for (size_t i = 0; i < srclen; i++) {
		unsigned char c = s[i];
		size_t need = (c > 0x20 && c < 0x7f && c != '\\') ? 1 : 4;

		if (o + need + 4 > dstlen) {
			if (dstlen >= 4) {
				o = o < dstlen - 4 ? o : dstlen - 4;
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (need == 1)
			dst[o++] = (char)c;
		else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	dst[o] = '\0';
	return dst;
}
