/*
 * fuzz_http.c: libFuzzer target for the request-head parser and the upgrade
 * checks. http_head_end must agree in one call and byte by byte; a parsed
 * head must only point inside the buffer; statuses come from a fixed set;
 * the body framing reported agrees with the headers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

static int
inside(const char *b, size_t n, const char *p, size_t len)
{
	return p >= b && p <= b + n && len <= (size_t)(b + n - p);
}

/*
 * The framing a parsed head reports matches its headers: a body is announced
 * by exactly one kind of header, chunked only in HTTP/1.1, and a handler
 * that reads no body lets only an empty one through.
 */
static void
check_framing(const struct http_req *r)
{
	int cl = http_header_count(r, "Content-Length"), te = http_header_count(r, "Transfer-Encoding");
	int st = http_body_status(r, 0);

	switch (r->body) {
	case HTTP_BODY_NONE:
		CHECK(cl == 0 && te == 0 && r->body_len == 0 && st == 0);
		break;
	case HTTP_BODY_LENGTH:
		CHECK(cl > 0 && te == 0 && r->body_len < 1000000000000000000ULL);
		CHECK(st == (r->body_len == 0 ? 0 : 413));
		CHECK(http_body_status(r, r->body_len) == 0);
		break;
	case HTTP_BODY_CHUNKED:
		CHECK(cl == 0 && te > 0 && r->minor >= 1 && r->body_len == 0);
		CHECK(http_header_has_token(r, "Transfer-Encoding", "chunked") && st == 501);
		break;
	default:
		CHECK(!"unknown framing");
	}
	CHECK(strcmp(http_status_text(st == 0 ? 200 : st), "Unknown") != 0);
}

static void
check_parse(const char *buf, size_t n)
{
	struct http_req r;
	struct ws_upgrade u;
	int rc = http_parse(&r, buf, n);
	size_t vl;

	CHECK(rc == 0 || rc == 400 || rc == 431 || rc == 501 || rc == 505);
	CHECK(strcmp(http_status_text(rc == 0 ? 101 : rc), "Unknown") != 0);
	if (rc != 0)
		return;
	check_framing(&r);
	CHECK(r.nhdr >= 0 && r.nhdr <= HTTP_MAX_HEADERS);
	CHECK(r.method_len > 0 && inside(buf, n, r.method, r.method_len));
	CHECK(r.path_len > 0 && r.path[0] == '/');
	/* The path is in the buffer, except the "/" of an absolute-form target without one. */
	CHECK(inside(buf, n, r.path, r.path_len) || (r.path_len == 1 && r.path[0] == '/'));
	CHECK(r.query == NULL || inside(buf, n, r.query, r.query_len));
	CHECK(r.minor >= 0 && r.minor <= 9);
	for (int i = 0; i < r.nhdr; i++) {
		CHECK(r.hdr[i].nlen > 0 && inside(buf, n, r.hdr[i].name, r.hdr[i].nlen));
		CHECK(inside(buf, n, r.hdr[i].value, r.hdr[i].vlen));
		CHECK(memchr(r.hdr[i].value, '\n', r.hdr[i].vlen) == NULL);
		CHECK(memchr(r.hdr[i].value, '\r', r.hdr[i].vlen) == NULL);
	}
	(void)http_header(&r, "Host", &vl);
	(void)http_header_count(&r, "Sec-WebSocket-Key");
	(void)http_header_has_token(&r, "Connection", "Upgrade");
	(void)http_header_has_token(&r, "Sec-WebSocket-Protocol", "echo");
	(void)http_wants_websocket(&r);
	http_check_upgrade(&r, &u);
	CHECK(u.status == 0 || u.status == 400 || u.status == 405 || u.status == 426);
	if (u.status == 0) {
		CHECK(u.reason == NULL);
		CHECK(strlen(u.accept) == 28 && u.accept[27] == '=');
		CHECK(http_method_is(&r, "GET") && r.minor >= 1 && http_wants_websocket(&r));
	} else
		CHECK(u.reason != NULL && u.accept[0] == '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so that any over-read trips ASan. */
	char *buf = malloc(size + 1);
	size_t end, inc = 0;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	end = http_head_end(buf, size, 0);
	CHECK(end <= size);
	/* Incremental: as a server reading 1-byte segments would call it. */
	for (size_t k = 1; k <= size && inc == 0; k++)
		inc = http_head_end(buf, k, k - 1);
	CHECK(inc == end);
	/* In two pieces, split at a point taken from the input. */
	if (size > 0) {
		size_t cut = data[0] % (size + 1), first = http_head_end(buf, cut, 0);

		CHECK(first != 0 ? first == end : http_head_end(buf, size, cut) == end);
	}
	if (end > 0) {
		char *head = malloc(end);

		if (head != NULL) {
			memcpy(head, buf, end);
			check_parse(head, end);
			free(head);
		}
	}
	/* The whole input too: incomplete heads and trailing bytes must be safe. */
	check_parse(buf, size);
	free(buf);
	return 0;
}
