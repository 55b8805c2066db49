/*
 * listen.c: binding. Before building a SO_REUSEPORT group the master probes
 * the address with a plain socket, so that a second roomd (or anything else)
 * already listening there is an error instead of a silent share of the port.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "listen.h"
#include "log.h"

#define LISTEN_BACKLOG	4096

/* "1.2.3.4:80" / "[::1]:80" of a sockaddr, for logs. */
static const char *
addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(s4->sin_port));
	}
	return buf;
}

static int
open_one(const struct cfg_listen *l, int reuseport, int do_listen)
{
	int fd, one = 1;
	char a[80];

	addr_str((const struct sockaddr *)&l->addr, a, sizeof(a));
	fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_errno(LOG_LVL_ERROR, "socket() for %s failed", a);
		return -1;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) ||
	    (l->addr.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)) {
		log_errno(LOG_LVL_ERROR, "setsockopt() on %s failed", a);
		close(fd);
		return -1;
	}
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) == -1) {
		log_errno(LOG_LVL_ERROR, "bind(%s) failed", a);
		close(fd);
		return -1;
	}
	if (do_listen && listen(fd, LISTEN_BACKLOG) == -1) {
		log_errno(LOG_LVL_ERROR, "listen(%s) failed", a);
		close(fd);
		return -1;
	}
	return fd;
}

/* Take the first inherited socket bound to addr out of the list; -1 if none. */
static int
adopt(int *inh, int ninh, const struct cfg_listen *l)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	for (int i = 0; i < ninh; i++) {
		if (inh[i] < 0)
			continue;
		sl = sizeof(ss);
		if (getsockname(inh[i], (struct sockaddr *)&ss, &sl) == 0 && sl == l->addrlen &&
		    memcmp(&ss, &l->addr, sl) == 0) {
			int fd = inh[i];

			inh[i] = -1;
			if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
				log_errno(LOG_LVL_WARNING, "fcntl(%d, FD_CLOEXEC) failed", fd);
			return fd;
		}
	}
	return -1;
}

int
listen_open(struct listeners *ls, const struct config *cfg, int nslots, const char *inherited)
{
	int inh[256], ninh = 0, fd, adopted;
	const char *p = inherited;
	char *end;

	ls->nslots = nslots;
	ls->naddr = cfg->nlisten;
	if ((ls->fd = malloc(sizeof(int) * (size_t)(nslots * cfg->nlisten))) == NULL) {
		log_error("out of memory for listening sockets");
		return -1;
	}
	for (int i = 0; i < nslots * cfg->nlisten; i++)
		ls->fd[i] = -1;
	while (p != NULL && *p != '\0' && ninh < (int)(sizeof(inh) / sizeof(inh[0]))) {
		long v = strtol(p, &end, 10);

		if (end == p || v < 0 || v > 65535)
			break;
		inh[ninh++] = (int)v;
		p = *end == ',' ? end + 1 : end;
	}
	for (int a = 0; a < cfg->nlisten; a++) {
		adopted = 0;
		for (int s = 0; s < nslots; s++) {
			if ((fd = adopt(inh, ninh, &cfg->listen[a])) >= 0) {
				ls->fd[s * ls->naddr + a] = fd;
				adopted++;
			}
		}
		/* A plain bind fails if anyone else listens here already (not for our own group). */
		if (adopted == 0) {
			if ((fd = open_one(&cfg->listen[a], 0, 0)) == -1) {
				listen_close(ls);
				return -1;
			}
			close(fd);
		}
		for (int s = 0; s < nslots; s++) {
			if (ls->fd[s * ls->naddr + a] >= 0)
				continue;
			if ((fd = open_one(&cfg->listen[a], 1, 1)) == -1) {
				listen_close(ls);
				return -1;
			}
			ls->fd[s * ls->naddr + a] = fd;
		}
		log_notice("listening on %s (%d SO_REUSEPORT sockets%s)", cfg->listen[a].spec, nslots,
		    adopted > 0 ? ", inherited from the previous binary" : "");
	}
	/* Inherited sockets for addresses no longer configured close now. */
	for (int i = 0; i < ninh; i++)
		if (inh[i] >= 0)
			close(inh[i]);
	return 0;
}

int
listen_export(const struct listeners *ls, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (int i = 0; i < ls->nslots * ls->naddr; i++) {
		int n;

		if (ls->fd[i] < 0)
			continue;
		if (fcntl(ls->fd[i], F_SETFD, 0) == -1)
			return -1;
		n = snprintf(buf + o, len - o, "%s%d", o > 0 ? "," : "", ls->fd[i]);
		if (n < 0 || (size_t)n >= len - o)
			return -1;
		o += (size_t)n;
	}
	return 0;
}

void
listen_keep_slot(struct listeners *ls, int slot)
{
	for (int s = 0; s < ls->nslots; s++) {
		if (s == slot)
			continue;
		for (int a = 0; a < ls->naddr; a++) {
			close(ls->fd[s * ls->naddr + a]);
			ls->fd[s * ls->naddr + a] = -1;
		}
	}
}

void
listen_close_slot(struct listeners *ls, int slot)
{
	for (int a = 0; ls->fd != NULL && slot >= 0 && slot < ls->nslots && a < ls->naddr; a++) {
		if (ls->fd[slot * ls->naddr + a] >= 0)
			close(ls->fd[slot * ls->naddr + a]);
		ls->fd[slot * ls->naddr + a] = -1;
	}
}

void
listen_close(struct listeners *ls)
{
	if (ls->fd == NULL)
		return;
	for (int i = 0; i < ls->nslots * ls->naddr; i++)
		if (ls->fd[i] >= 0)
			close(ls->fd[i]);
	free(ls->fd);
	ls->fd = NULL;
}
