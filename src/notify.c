/*
 * notify.c: the master's messages to systemd (see notify.h), sent with
 * libsystemd's sd_notify. Only built with libsystemd; the master decides
 * when each message is due, this file only knows how to say it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "clock.h"
#include "notify.h"

static struct {
	int		on;		/* NOTIFY_SOCKET was set */
	uint64_t	watchdog_ms;
	int		failing;	/* the last send failed: say so again only after a success */
	char		status[256];	/* the last STATUS= sent */
} N;

void
notify_init(void)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	uint64_t usec = 0;
	int r;

	N.on = sock != NULL && sock[0] != '\0';
	if (!N.on)
		return;
	/* 0 if unset or meant for another process (WATCHDOG_PID). */
	if ((r = sd_watchdog_enabled(0, &usec)) < 0) {
		errno = -r;
		log_errno(LOG_LVL_WARNING, "sd_watchdog_enabled() failed: sending no watchdog pings");
	} else if (r > 0)
		N.watchdog_ms = usec < 1000 ? 1 : usec / 1000;
	log_info("telling the service manager at %s about readiness%s", sock,
	    N.watchdog_ms > 0 ? " (with watchdog pings)" : "");
}

int
notify_on(void)
{
	return N.on;
}

uint64_t
notify_watchdog_ms(void)
{
	return N.watchdog_ms;
}

/* One datagram of NAME=value lines; a failure is logged once until the next success. */
static void
send_msg(const char *msg)
{
	int r;

	if (!N.on)
		return;
	if ((r = sd_notify(0, msg)) < 0) {
		if (!N.failing) {
			errno = -r;
			log_errno(LOG_LVL_WARNING, "sd_notify(%.*s) failed", (int)strcspn(msg, "\n"), msg);
		}
		N.failing = 1;
	} else
		N.failing = 0;
}

/* Keep s as the last status, on one line; 0 if it differs from the one before. */
static int
keep_status(const char *s)
{
	char line[sizeof(N.status)];
	size_t i;

	for (i = 0; s[i] != '\0' && i < sizeof(line) - 1; i++)
		line[i] = s[i] == '\n' || s[i] == '\r' ? ' ' : s[i];
	line[i] = '\0';
	if (strcmp(line, N.status) == 0)
		return -1;
	memcpy(N.status, line, i + 1);
	return 0;
}

void
notify_ready(const char *status)
{
	char msg[sizeof(N.status) + 64];

	(void)keep_status(status);
	snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%d\nSTATUS=%s", (int)getpid(), N.status);
	send_msg(msg);
}

void
notify_reloading(void)
{
	char msg[sizeof(N.status) + 64];

	(void)keep_status("reloading the configuration");
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=%s",
	    (unsigned long long)clock_us(), N.status);
	send_msg(msg);
}

void
notify_stopping(const char *status)
{
	char msg[sizeof(N.status) + 32];

	(void)keep_status(status);
	snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", N.status);
	send_msg(msg);
}

void
notify_status(const char *fmt, ...)
{
	char text[sizeof(N.status)], msg[sizeof(N.status) + 16];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (keep_status(text) == -1)
		return;
	snprintf(msg, sizeof(msg), "STATUS=%s", N.status);
	send_msg(msg);
}

void
notify_watchdog(void)
{
	send_msg("WATCHDOG=1");
}

void
notify_mainpid(pid_t pid, const char *status)
{
	char msg[sizeof(N.status) + 64];

	(void)keep_status(status);
	snprintf(msg, sizeof(msg), "MAINPID=%d\nSTATUS=%s", (int)pid, N.status);
	send_msg(msg);
}

void
notify_pass_env(void)
{
	char pid[24];

	/* systemd names the process the watchdog is for; exec keeps our pid. */
	if (N.watchdog_ms > 0 && getenv("WATCHDOG_PID") != NULL) {
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		if (setenv("WATCHDOG_PID", pid, 1) == -1)
			log_errno(LOG_LVL_WARNING, "setenv(WATCHDOG_PID, %s) failed", pid);
	}
}

void
notify_drop_env(void)
{
	(void)unsetenv("NOTIFY_SOCKET");
	(void)unsetenv("WATCHDOG_USEC");
	(void)unsetenv("WATCHDOG_PID");
}
