/*
 * www.c: static files. The request path is percent-decoded, refused if it
 * holds NUL, a backslash or a dot segment (www_resolve, no I/O), then
 * resolved with realpath() and served only if the result is a regular file
 * inside the real www_root, so a symlink pointing outside is refused too.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "http.h"
#include "www.h"

static const struct {
	const char *ext, *type;
} types[] = {
	{ "html", "text/html; charset=utf-8" },
	{ "css", "text/css; charset=utf-8" },
	{ "js", "text/javascript; charset=utf-8" },
	{ "json", "application/json" },
	{ "txt", "text/plain; charset=utf-8" },
	{ "svg", "image/svg+xml" },
	{ "png", "image/png" },
	{ "ico", "image/x-icon" },
	{ "webmanifest", "application/manifest+json" },
	{ "woff2", "font/woff2" },
};

static const char *
content_type(const char *path)
{
	const char *dot = strrchr(path, '.');

	if (dot != NULL && strchr(dot, '/') == NULL)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcasecmp(dot + 1, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}


/* Whether any segment of a decoded path is "." or "..". */
static int
has_dot_segment(const char *p)
{
	for (const char *s = p; *s != '\0'; ) {
		const char *e;
		size_t n;

		while (*s == '/')
			s++;
		e = strchr(s, '/');
		n = e != NULL ? (size_t)(e - s) : strlen(s);
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return 1;
		s += n;
	}
	return 0;
}

int
www_resolve(const char *path, size_t plen, char *out, size_t outlen)
{
	static const char index_html[] = "index.html";
	int len;

	/* 16 bytes are kept back: room for "index.html" and its NUL. */
	if (outlen <= 16 || (len = http_pct_decode(path, plen, out, outlen - 16, 0)) < 0)
		return 400;
	/* NUL or backslash is never part of a file name here. */
	if (memchr(out, '\0', (size_t)len) != NULL || memchr(out, '\\', (size_t)len) != NULL || out[0] != '/')
		return 400;
	if (has_dot_segment(out))
		return 403;
	if (out[len - 1] == '/')
		memcpy(out + len, index_html, sizeof(index_html));
	return 0;
}

static void
http_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Whether an If-None-Match list holds our tag (or "*"). */
static int
etag_matches(const char *inm, size_t n, const char *tag)
{
	size_t tl = strlen(tag);

	for (size_t i = 0; i < n; i++) {
		if (inm[i] == '*')
			return 1;
		if (i + tl <= n && memcmp(inm + i, tag, tl) == 0)
			return 1;
	}
	return 0;
}

void
www_lookup(const char *root, const char *path, size_t plen, const char *inm, size_t inml,
    const char *ims, size_t imsl, struct www_reply *r)
{
	char dec[PATH_MAX], full[PATH_MAX * 2], real[PATH_MAX], rroot[PATH_MAX];
	char etag[64], lm[64], since[64];
	struct stat st;
	struct tm tm;
	size_t rl;
	int fd;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if ((r->status = www_resolve(path, plen, dec, sizeof(dec))) != 0)
		return;
	r->status = 404;
	if (root == NULL || realpath(root, rroot) == NULL)
		return;
	snprintf(full, sizeof(full), "%s%s", rroot, dec);
	if (realpath(full, real) == NULL)
		return;
	rl = strlen(rroot);
	if (strncmp(real, rroot, rl) != 0 || real[rl] != '/') {
		r->status = 403;	/* a link that leads out of www_root */
		return;
	}
	if ((fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > UINT32_MAX) {
		close(fd);
		return;
	}
	snprintf(etag, sizeof(etag), "\"%llx-%llx\"", (unsigned long long)st.st_size,
	    (unsigned long long)st.st_mtim.tv_sec * 1000000000ULL + (unsigned long long)st.st_mtim.tv_nsec);
	http_date(st.st_mtime, lm, sizeof(lm));
	snprintf(r->headers, sizeof(r->headers),
	    "Content-Type: %s\r\nETag: %s\r\nLast-Modified: %s\r\nCache-Control: no-cache\r\n"
	    "X-Content-Type-Options: nosniff\r\n", content_type(real), etag, lm);
	r->size = (uint64_t)st.st_size;
	r->status = 200;
	if (inm != NULL) {
		if (etag_matches(inm, inml, etag))
			r->status = 304;
	} else if (ims != NULL && imsl < sizeof(since)) {
		memcpy(since, ims, imsl);
		since[imsl] = '\0';
		memset(&tm, 0, sizeof(tm));
		if (strptime(since, "%a, %d %b %Y %H:%M:%S GMT", &tm) != NULL && timegm(&tm) >= st.st_mtime)
			r->status = 304;
	}
	if (r->status == 200)
		r->fd = fd;
	else
		close(fd);
}
