/*
 * log.c: the process-wide logger. Each line is written with one write(2) on an
 * O_APPEND descriptor, so lines from the master and every worker never interleave.
 */

#include <errno.h>
#include <fcntl.h>
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
} lg = { LOG_LVL_INFO, STDERR_FILENO, 0, NULL, "master" };

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
	static const int sysprio[] = {
		LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR, LOG_ALERT,
	};
	char line[2048], msg[1800];
	struct timeval tv;
	struct tm tm;
	int saved = errno, n;

	if (l < lg.level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (lg.use_syslog) {
		syslog(sysprio[l], "%s [%s] %s", lg.role, level_names[l], msg);
		errno = saved;
		return;
	}
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
	    "%04d-%02d-%02d %02d:%02d:%02d.%03d %d %s [%s] %s\n",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000), (int)getpid(),
	    lg.role, level_names[l], msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* Nothing sensible to do if the log itself cannot be written. */
	if (write(lg.fd, line, (size_t)n) < 0)
		(void)0;
	errno = saved;
}

void
log_msg(enum log_level l, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(l, fmt, ap);
	va_end(ap);
}

void
log_errno(enum log_level l, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_msg(l, "%s (%d: %s)", buf, e, strerror(e));
}

void
fatal(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_msg(LOG_LVL_ERROR, "%s (%d: %s)", buf, e, strerror(e));
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
		size_t need = (c >= 0x20 && c < 0x7f && c != '\\') ? 1 : 4;

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
