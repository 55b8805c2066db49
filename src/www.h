/*
 * www.h: the web page's static files. Resolves a request path under
 * www_root without letting it escape (.., %2e%2e, NUL, symlinks out), and
 * answers conditional requests (ETag, Last-Modified, 304).
 */
#ifndef ROOMD_WWW_H
#define ROOMD_WWW_H

#include <stddef.h>
#include <stdint.h>

struct www_reply {
	int		 status;	/* 200, 304, 400, 403, 404 */
	int		 fd;		/* the open file for a 200, else -1 */
	uint64_t	 size;
	char		 headers[512];	/* Content-Type, ETag, Last-Modified, Cache-Control lines */
};

/*
 * The pure half of www_lookup: percent-decode path (raw, no query) into
 * out and check it. Returns 0 with out holding "/..." ("index.html" added
 * after a final '/'), or the HTTP status: 400 for a bad %-escape, NUL,
 * backslash, no leading '/' or more than outlen - 17 bytes decoded;
 * 403 for a "." or ".." segment (%2e%2e and %2f included, as they
 * are decoded first). No I/O.
 */
int www_resolve(const char *path, size_t plen, char *out, size_t outlen);

/*
 * Look up path (raw, percent-encoded, no query) under root. inm and ims are
 * the If-None-Match and If-Modified-Since values (NULL if absent). The caller
 * closes reply->fd.
 */
void www_lookup(const char *root, const char *path, size_t plen, const char *inm, size_t inml,
    const char *ims, size_t imsl, struct www_reply *reply);

#endif
