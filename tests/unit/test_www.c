/*
 * test_www.c: static-file paths. www_resolve (percent-decoding, index.html,
 * every way out of www_root refused: "..", %2e%2e, %2f, NUL, backslash, and
 * the length bound), then www_lookup on a scratch directory: types, a
 * symlink out of the root, directories, conditional requests.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "www.h"
#include "tap.h"

/* www_resolve on a C string; the status, out filled. */
static int
resolve(const char *path, char *out, size_t outlen)
{
	size_t n = strlen(path);
	char *copy = tap_dup(path, n);
	int rc;

	rc = www_resolve(copy, n, out, outlen);
	free(copy);
	return rc;
}

static void
test_resolve(void)
{
	static const struct { const char *in, *out; } good[] = {
		{ "/", "/index.html" },
		{ "/app.js", "/app.js" },
		{ "/sub/", "/sub/index.html" },
		{ "/a%20b.css", "/a b.css" },
		{ "/a+b", "/a+b" },			/* '+' is not a space in a path */
		{ "/%25", "/%" },
		{ "/%41%62", "/Ab" },
		{ "/%c3%a9t%C3%A9", "/\xc3\xa9t\xc3\xa9" },
		{ "%2fa", "/a" },			/* an encoded first '/' is a '/' */
		{ "//x", "//x" },
		{ "/...", "/..." },			/* not a dot segment */
		{ "/..a/b..", "/..a/b.." },
		{ "/.well-known/x", "/.well-known/x" },
		{ "/a/.b", "/a/.b" },
		{ "/dir.d/", "/dir.d/index.html" },
	};
	static const struct { const char *in; int status; } bad[] = {
		{ "", 400 }, { "a", 400 }, { "index.html", 400 }, { "%", 400 }, { "/%", 400 }, { "/%4", 400 },
		{ "/%zz", 400 }, { "/%4g", 400 }, { "/%%41", 400 }, { "/a%00b", 400 }, { "/%00", 400 },
		{ "/a%5cb", 400 }, { "/a%5Cb", 400 }, { "/a\\b", 400 }, { "%5c/a", 400 }, { "%2e/", 400 },
		{ "/.", 403 }, { "/..", 403 }, { "/./", 403 }, { "/../", 403 }, { "/../etc/passwd", 403 },
		{ "/a/..", 403 }, { "/a/../b", 403 }, { "/a/./b", 403 }, { "//..//x", 403 },
		{ "/%2e%2e/x", 403 }, { "/%2E%2E/x", 403 }, { "/.%2e/x", 403 }, { "/%2e/x", 403 },
		{ "/..%2fetc", 403 }, { "/a%2f..%2fb", 403 }, { "/%2e%2e%2fetc%2fpasswd", 403 },
	};
	char out[PATH_MAX], path[PATH_MAX + 8], small[32];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		out[0] = '\0';
		is_int(resolve(good[i].in, out, sizeof(out)), 0, "'%s' resolves", good[i].in);
		is_str(out, good[i].out, "'%s' resolves to what it should", good[i].in);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(resolve(bad[i].in, out, sizeof(out)), bad[i].status, "'%s' is %d", bad[i].in, bad[i].status);
	/* Only plen bytes are read: "/a" out of "/a/../x". */
	is_int(www_resolve("/a/../x", 2, out, sizeof(out)), 0, "only plen bytes are read");
	is_str(out, "/a", "and only they count");

	/* The bound: outlen - 17 decoded bytes fit, one more does not; index.html always fits. */
	memset(path, 'x', sizeof(path));
	path[0] = '/';
	path[sizeof(out) - 17] = '\0';
	is_int(resolve(path, out, sizeof(out)), 0, "PATH_MAX - 17 bytes fit");
	path[sizeof(out) - 17] = 'x';
	path[sizeof(out) - 16] = '\0';
	is_int(resolve(path, out, sizeof(out)), 400, "PATH_MAX - 16 bytes do not");
	memset(path, 'x', sizeof(path));
	path[0] = '/';
	path[sizeof(out) - 18] = '/';
	path[sizeof(out) - 17] = '\0';
	is_int(resolve(path, out, sizeof(out)), 0, "a directory path of PATH_MAX - 17 bytes fits");
	is_int((int)strlen(out), (int)sizeof(out) - 17 + 10, "with index.html after it");
	is_int(resolve("/abcdefghijklmn", small, sizeof(small)), 0, "15 bytes in a 32-byte buffer");
	is_int(resolve("/abcdefghijklmn/", small, sizeof(small)), 400, "16 do not");
	is_int(resolve("/", small, 18), 0, "'/' in 18 bytes");
	is_str(small, "/index.html", "is /index.html");
	is_int(resolve("/", small, 17), 400, "not in 17");
	is_int(resolve("/", small, 0), 400, "nor in 0");
}

static char root[] = "/tmp/roomd-test-www-XXXXXX";

static void
put(const char *rel, const char *text)
{
	char p[PATH_MAX];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", root, rel);
	if ((f = fopen(p, "w")) == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
		printf("Bail out! cannot write %s: %s\n", p, strerror(errno));
		exit(1);
	}
}

/* www_lookup of path; the status; closes any fd, checks it is only open on a 200. */
static int
lookup(const char *path, const char *inm, const char *ims, struct www_reply *r)
{
	www_lookup(root, path, strlen(path), inm, inm != NULL ? strlen(inm) : 0, ims,
	    ims != NULL ? strlen(ims) : 0, r);
	if ((r->status == 200) != (r->fd >= 0))
		printf("#   status %d with fd %d\n", r->status, r->fd);
	if (r->fd >= 0)
		close(r->fd);
	return (r->status == 200) == (r->fd >= 0) ? r->status : -1;
}

static void
test_lookup(void)
{
	struct www_reply r;
	char p[PATH_MAX], etag[64], *e;

	if (mkdtemp(root) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		exit(1);
	}
	snprintf(p, sizeof(p), "%s/sub", root);
	if (mkdir(p, 0755) == -1) {
		printf("Bail out! mkdir: %s\n", strerror(errno));
		exit(1);
	}
	put("index.html", "<p>hi</p>\n");
	put("app.JS", "x");
	put("sub/index.html", "sub\n");
	put("noext", "n");
	snprintf(p, sizeof(p), "%s/out", root);
	if (symlink("/etc/hostname", p) == -1) {
		printf("Bail out! symlink: %s\n", strerror(errno));
		exit(1);
	}

	is_int(lookup("/", NULL, NULL, &r), 200, "/ is index.html");
	ok(r.size == 10, "its size");
	ok(strstr(r.headers, "Content-Type: text/html; charset=utf-8\r\n") != NULL, "text/html");
	ok(strstr(r.headers, "X-Content-Type-Options: nosniff\r\n") != NULL, "nosniff");
	is_int(lookup("/app.JS", NULL, NULL, &r), 200, "a file with an upper-case extension");
	ok(strstr(r.headers, "Content-Type: text/javascript; charset=utf-8\r\n") != NULL, "is JavaScript");
	is_int(lookup("/noext", NULL, NULL, &r), 200, "a file without an extension");
	ok(strstr(r.headers, "Content-Type: application/octet-stream\r\n") != NULL, "is octet-stream");
	is_int(lookup("/sub/", NULL, NULL, &r), 200, "a directory's index.html");
	is_int(lookup("/sub", NULL, NULL, &r), 404, "a directory itself is not a file");
	is_int(lookup("/missing", NULL, NULL, &r), 404, "a missing file");
	is_int(lookup("/out", NULL, NULL, &r), 403, "a symlink out of the root");
	is_int(lookup("/../etc/hostname", NULL, NULL, &r), 403, "a dot segment");
	is_int(lookup("/a%00", NULL, NULL, &r), 400, "a NUL");
	www_lookup(NULL, "/", 1, NULL, 0, NULL, 0, &r);
	ok(r.status == 404 && r.fd == -1, "no root: 404");

	/* Conditional requests. */
	is_int(lookup("/", NULL, NULL, &r), 200, "(again, for the ETag)");
	etag[0] = '\0';
	if ((e = strstr(r.headers, "ETag: ")) != NULL)
		snprintf(etag, sizeof(etag), "%.*s", (int)strcspn(e + 6, "\r"), e + 6);
	ok(etag[0] == '"', "an ETag is given: %s", etag);
	is_int(lookup("/", etag, NULL, &r), 304, "If-None-Match with it: 304");
	is_int(lookup("/", "\"other\", *", NULL, &r), 304, "If-None-Match *: 304");
	is_int(lookup("/", "\"other\"", NULL, &r), 200, "If-None-Match another tag: 200");
	is_int(lookup("/", NULL, "Fri, 01 Jan 2100 00:00:00 GMT", &r), 304, "If-Modified-Since later: 304");
	is_int(lookup("/", NULL, "Thu, 01 Jan 1970 00:00:00 GMT", &r), 200, "If-Modified-Since 1970: 200");
	is_int(lookup("/", NULL, "yesterday", &r), 200, "an unreadable date: 200");
	is_int(lookup("/", "\"other\"", "Fri, 01 Jan 2100 00:00:00 GMT", &r), 200,
	    "If-None-Match wins over If-Modified-Since");

	/* Clean up. */
	{
		static const char *const made[] = { "index.html", "app.JS", "sub/index.html", "noext", "out", "sub" };

		for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
			snprintf(p, sizeof(p), "%s/%s", root, made[i]);
			if ((i + 1 < sizeof(made) / sizeof(made[0]) ? unlink(p) : rmdir(p)) == -1)
				printf("# cannot remove %s: %s\n", p, strerror(errno));
		}
		if (rmdir(root) == -1)
			printf("# cannot remove %s: %s\n", root, strerror(errno));
	}
}

int
main(void)
{
	test_resolve();
	test_lookup();
	return tap_done();
}
