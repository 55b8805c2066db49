/*
 * test_http.c: the request-head parser (request lines, header rules, limits,
 * line endings, targets) and the RFC 6455 4.2.1 upgrade checks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "tap.h"

#define UPG_HDRS "Host: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

static struct http_req req;

static int
parse(const char *s)
{
	return http_parse(&req, s, strlen(s));
}

/* A field of req as a NUL-terminated string (static buffer). */
static const char *
str(const char *p, size_t n)
{
	static char b[4][256];
	static int k;

	k = (k + 1) & 3;
	if (p == NULL)
		return "(null)";
	snprintf(b[k], sizeof(b[k]), "%.*s", (int)n, p);
	return b[k];
}

static const char *
hdr(const char *name)
{
	size_t n = 0;
	const char *v = http_header(&req, name, &n);

	return v == NULL ? "(none)" : str(v, n);
}

static void
test_request_line(void)
{
	is_int(parse("GET /echo HTTP/1.1\r\nHost: a\r\n\r\n"), 0, "plain request parses");
	is_str(str(req.method, req.method_len), "GET", "method");
	is_str(str(req.path, req.path_len), "/echo", "path");
	ok(req.query == NULL, "no query");
	is_int(req.minor, 1, "HTTP/1.1 minor");
	is_int(req.nhdr, 1, "one header");
	is_str(hdr("host"), "a", "header names are case-insensitive");

	is_int(parse("GET / HTTP/1.0\r\n\r\n"), 0, "HTTP/1.0 parses");
	is_int(req.minor, 0, "HTTP/1.0 minor");
	is_int(parse("PATCH /x HTTP/1.1\r\n\r\n"), 0, "any token method parses");
	ok(http_method_is(&req, "PATCH") && !http_method_is(&req, "patch") && !http_method_is(&req, "PAT"),
	    "http_method_is is exact");
	is_int(parse("GET / HTTP/2.0\r\n\r\n"), 505, "HTTP/2.0 -> 505");
	is_int(parse("GET / HTTP/0.9\r\n\r\n"), 505, "HTTP/0.9 -> 505");
	is_int(parse("GET / HTTP/1.1 \r\n\r\n"), 400, "trailing space after version -> 400");
	is_int(parse("GET / http/1.1\r\n\r\n"), 400, "lower-case version -> 400");
	is_int(parse("GET / HTTP/1.10\r\n\r\n"), 400, "two-digit minor -> 400");
	is_int(parse("GET / HTTP/1\r\n\r\n"), 400, "short version -> 400");
	is_int(parse("GET /\r\n\r\n"), 400, "no version -> 400");
	is_int(parse("GET  / HTTP/1.1\r\n\r\n"), 400, "double space -> 400");
	is_int(parse(" GET / HTTP/1.1\r\n\r\n"), 400, "leading space -> 400");
	is_int(parse("G(T / HTTP/1.1\r\n\r\n"), 400, "method with a separator -> 400");
	is_int(parse("GET * HTTP/1.1\r\n\r\n"), 400, "asterisk-form -> 400");
	is_int(parse("GET echo HTTP/1.1\r\n\r\n"), 400, "relative target -> 400");
	is_int(parse("GET /a\x01 HTTP/1.1\r\n\r\n"), 400, "control byte in target -> 400");
	is_int(parse("GET /a\x7f HTTP/1.1\r\n\r\n"), 400, "DEL in target -> 400");
	is_int(parse("GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), 400, "raw non-ASCII in target -> 400");
	is_int(parse("GET /a\rb HTTP/1.1\r\n\r\n"), 400, "bare CR in target -> 400");
	is_int(parse("\r\n\r\nGET / HTTP/1.1\r\n\r\n"), 0, "empty lines before the request line are skipped");
	is_int(parse("\r\n"), 400, "only an empty line -> 400");
	is_int(parse(""), 400, "nothing -> 400");
	is_int(parse("GET / HTTP/1.1\r\nHost: a\r\n"), 400, "no blank line (incomplete head) -> 400");

	/* Targets: query split, fragments, absolute-form. */
	is_int(parse("GET /echo?room=a&x=%20y HTTP/1.1\r\n\r\n"), 0, "target with a query");
	is_str(str(req.path, req.path_len), "/echo", "path before the query");
	is_str(str(req.query, req.query_len), "room=a&x=%20y", "query after '?'");
	is_int(parse("GET /echo? HTTP/1.1\r\n\r\n"), 0, "empty query");
	ok(req.query != NULL && req.query_len == 0, "empty query is present and empty");
	is_int(parse("GET /echo?a?b HTTP/1.1\r\n\r\n"), 0, "two question marks");
	is_str(str(req.query, req.query_len), "a?b", "query keeps later '?'");
	is_int(parse("GET /echo#frag HTTP/1.1\r\n\r\n"), 0, "fragment in target");
	is_str(str(req.path, req.path_len), "/echo", "fragment dropped");
	is_int(parse("GET /echo?q=1#frag HTTP/1.1\r\n\r\n"), 0, "query and fragment");
	is_str(str(req.query, req.query_len), "q=1", "fragment dropped from the query");
	is_int(parse("GET http://example.com:8080/echo?x=1 HTTP/1.1\r\n\r\n"), 0, "absolute-form target");
	is_str(str(req.path, req.path_len), "/echo", "absolute-form path");
	is_str(str(req.query, req.query_len), "x=1", "absolute-form query");
	is_int(parse("GET HTTPS://example.com/a/b HTTP/1.1\r\n\r\n"), 0, "absolute-form, https, upper case");
	is_str(str(req.path, req.path_len), "/a/b", "absolute-form https path");
	is_int(parse("GET http://example.com HTTP/1.1\r\n\r\n"), 0, "absolute-form without a path");
	is_str(str(req.path, req.path_len), "/", "absolute-form without a path is /");
	is_int(parse("GET https:// HTTP/1.1\r\n\r\n"), 0, "absolute-form with nothing after the scheme");
	is_str(str(req.path, req.path_len), "/", "... is /");
	is_int(parse("GET http:/x HTTP/1.1\r\n\r\n"), 400, "not quite absolute-form -> 400");
}

static void
test_headers(void)
{
	char *big;
	size_t o;

	is_int(parse("GET / HTTP/1.1\r\nA: 1\r\nB:2\r\nC: \t 3 \t\r\nD:\r\nE: x y\r\n\r\n"), 0, "header forms");
	is_int(req.nhdr, 5, "five headers");
	is_str(hdr("A"), "1", "value after ': '");
	is_str(hdr("b"), "2", "value right after ':'");
	is_str(hdr("C"), "3", "OWS trimmed on both sides");
	is_str(hdr("D"), "", "empty value");
	is_str(hdr("E"), "x y", "inner space kept");
	is_str(hdr("F"), "(none)", "absent header");
	is_int(parse("GET / HTTP/1.1\nA: 1\nB: 2\n\n"), 0, "bare LF line endings");
	is_int(req.nhdr, 2, "bare LF: two headers");
	is_str(hdr("B"), "2", "bare LF: no CR kept");
	is_int(parse("GET / HTTP/1.1\r\nA: 1\nB: 2\r\n\n"), 0, "mixed line endings");
	is_str(hdr("a"), "1", "mixed: A");
	is_int(parse("GET / HTTP/1.1\r\nA: 1\r\n continued\r\n\r\n"), 400, "obs-fold (space) -> 400");
	is_int(parse("GET / HTTP/1.1\r\nA: 1\r\n\tcontinued\r\n\r\n"), 400, "obs-fold (tab) -> 400");
	is_int(parse("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400, "first header line folded -> 400");
	is_int(parse("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400, "space before colon -> 400");
	is_int(parse("GET / HTTP/1.1\r\n: a\r\n\r\n"), 400, "empty header name -> 400");
	is_int(parse("GET / HTTP/1.1\r\nno colon\r\n\r\n"), 400, "no colon -> 400");
	is_int(parse("GET / HTTP/1.1\r\nA(b: 1\r\n\r\n"), 400, "separator in name -> 400");
	is_int(parse("GET / HTTP/1.1\r\nA: x\001y\r\n\r\n"), 400, "control byte in value -> 400");
	is_int(parse("GET / HTTP/1.1\r\nA: x\x7fy\r\n\r\n"), 400, "DEL in value -> 400");
	is_int(parse("GET / HTTP/1.1\r\nA: x\ry\r\n\r\n"), 400, "bare CR in value -> 400");
	is_int(http_parse(&req, "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n", 27), 400, "NUL in value -> 400");
	is_int(parse("GET / HTTP/1.1\r\nUser-Agent: caf\xc3\xa9 \x80\xff\r\n\r\n"), 0,
	    "obs-text (bytes >= 0x80) in a value is allowed (RFC 7230 3.2)");
	is_str(hdr("user-agent"), "caf\xc3\xa9 \x80\xff", "obs-text kept");
	is_int(parse("GET / HTTP/1.1\r\nA\xc3\xa9: 1\r\n\r\n"), 400, "non-ASCII in a name -> 400");

	/* Exactly 64 headers pass; 65 -> 431. */
	big = malloc(8192);
	for (int count = 63; count <= 66; count++) {
		o = (size_t)snprintf(big, 8192, "GET / HTTP/1.1\r\n");
		for (int i = 0; i < count; i++)
			o += (size_t)snprintf(big + o, 8192 - o, "X-H%d: %d\r\n", i, i);
		o += (size_t)snprintf(big + o, 8192 - o, "\r\n");
		is_int(http_parse(&req, big, o), count <= HTTP_MAX_HEADERS ? 0 : 431, "%d headers -> %d", count,
		    count <= HTTP_MAX_HEADERS ? 0 : 431);
		if (count == HTTP_MAX_HEADERS)
			is_str(hdr("x-h63"), "63", "the 64th header is kept");
	}
	free(big);

	/* Repeated headers and token lists. */
	is_int(parse("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nX: a\r\nx: b\r\n"
	    "Connection: close\r\n\r\n"), 0, "repeated headers");
	is_int(http_header_count(&req, "x"), 2, "header count");
	is_str(hdr("X"), "a", "first value wins");
	ok(http_header_has_token(&req, "Connection", "upgrade"), "token in a list, any case");
	ok(http_header_has_token(&req, "connection", "KEEP-ALIVE"), "first token");
	ok(http_header_has_token(&req, "Connection", "close"), "token in a second occurrence");
	ok(!http_header_has_token(&req, "Connection", "Upgrad"), "prefix is not a token");
	ok(!http_header_has_token(&req, "Connection", "keep"), "partial token");
	ok(!http_header_has_token(&req, "Connection", "alive, Upgrade"), "a list is not one token");
	is_int(parse("GET / HTTP/1.1\r\nConnection: ,,keep-alive ,\t upgrade\t,\r\n\r\n"), 0, "odd list");
	ok(http_header_has_token(&req, "Connection", "Upgrade"), "token among empty elements and OWS");
	ok(http_header_has_token(&req, "Connection", "keep-alive"), "token with trailing space");
	is_int(parse("GET / HTTP/1.1\r\nConnection: Upgrades\r\n\r\n"), 0, "near-miss token");
	ok(!http_header_has_token(&req, "Connection", "Upgrade"), "Upgrades is not Upgrade");
	is_int(parse("GET / HTTP/1.1\r\nConnection:\r\n\r\n"), 0, "empty token list");
	ok(!http_header_has_token(&req, "Connection", "Upgrade"), "empty list has no tokens");
}

/* Expected status for a full handshake head. */
static int
upgrade(const char *head, struct ws_upgrade *u)
{
	int rc = parse(head);

	if (rc != 0)
		return -rc;
	http_check_upgrade(&req, u);
	return u->status;
}

static void
test_upgrade(void)
{
	struct ws_upgrade u;
	char key_out[29];

	http_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, key_out);
	is_str(key_out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "RFC 6455 sample accept key");

	is_int(upgrade("GET /chat HTTP/1.1\r\n" UPG_HDRS "\r\n", &u), 0, "RFC sample handshake upgrades");
	is_str(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "accept value in the upgrade result");
	ok(u.reason == NULL, "no reason on success");
	ok(http_wants_websocket(&req), "wants websocket");
	is_int(upgrade("GET /chat HTTP/1.1\nHost: a\nUpgrade: WebSocket\nConnection: keep-alive, Upgrade\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n", &u), 0,
	    "bare LF, Upgrade in another case, Connection: keep-alive, Upgrade");
	is_int(upgrade("GET /chat HTTP/1.1\r\nhost: a\r\nupgrade: h2c, websocket\r\nconnection: upgrade\r\n"
	    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n", &u), 0,
	    "lower-case names, Upgrade list");

	is_int(upgrade("POST /chat HTTP/1.1\r\n" UPG_HDRS "\r\n", &u), 405, "POST -> 405");
	is_int(upgrade("get /chat HTTP/1.1\r\n" UPG_HDRS "\r\n", &u), 405, "lower-case method -> 405");
	is_int(upgrade("GET /chat HTTP/1.0\r\n" UPG_HDRS "\r\n", &u), 400, "HTTP/1.0 -> 400");
	is_int(upgrade("GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", &u), 400,
	    "no Host -> 400");
	is_int(upgrade("GET /chat HTTP/1.1\r\nHost: b\r\n" UPG_HDRS "\r\n", &u), 400, "two Hosts -> 400");
	is_int(upgrade("GET /chat HTTP/1.1\r\nHost: a\r\n\r\n", &u), 426, "plain GET -> 426");
	ok(!http_wants_websocket(&req), "plain GET does not want websocket");
	is_int(upgrade("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websockets\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", &u), 426,
	    "Upgrade: websockets -> 426");
	is_int(upgrade("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", &u), 400,
	    "no Connection -> 400");
	is_int(upgrade("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", &u), 400,
	    "Connection without Upgrade -> 400");

	/* Version 13 only. */
	{
		static const char *vers[] = { "8", "12", "14", "013", "13 ", "13, 8", "", "thirteen" };
		char head[512];

		for (size_t i = 0; i < sizeof(vers) / sizeof(vers[0]); i++) {
			snprintf(head, sizeof(head), "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			    "Sec-WebSocket-Version: %s\r\n\r\n", vers[i]);
			is_int(upgrade(head, &u), strcmp(vers[i], "13 ") == 0 ? 0 : 426,
			    "Sec-WebSocket-Version '%s'", vers[i]);
		}
		is_int(upgrade("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", &u), 426, "no version -> 426");
		is_int(upgrade("GET /chat HTTP/1.1\r\n" UPG_HDRS "Sec-WebSocket-Version: 13\r\n\r\n", &u), 426,
		    "two version headers -> 426");
	}

	/* The key: base64 of exactly 16 bytes. */
	{
		static const struct { const char *key; int status; } keys[] = {
			{ "dGhlIHNhbXBsZSBub25jZQ==", 0 },
			{ "AAAAAAAAAAAAAAAAAAAAAA==", 0 },
			{ "/////////////////////w==", 0 },
			{ "+++++++++++++++++++++g==", 0 },
			{ "dGhlIHNhbXBsZSBub25jZR==", 400 },	/* low bits set: not 16 bytes */
			{ "dGhlIHNhbXBsZSBub25jZQ=", 400 },
			{ "dGhlIHNhbXBsZSBub25jZQ", 400 },
			{ "dGhlIHNhbXBsZSBub25jZQ===", 400 },
			{ "dGhlIHNhbXBsZSBub25jZQ==dGhl", 400 },
			{ "dGhlIHNhbXBsZSBub25j", 400 },
			{ "dGhlIHNhbXBsZSBub25jZ.==", 400 },
			{ "dGhlIHNhbXBsZSBub2-jZQ==", 400 },
			{ "dGhlIHNhbXBsZSBub25jZXh4eA==", 400 },	/* 19 bytes */
			{ "dGhlIHNhbXBsZSBub25=ZQ==", 400 },
			{ "", 400 },
		};
		char head[512];

		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			snprintf(head, sizeof(head), "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
			    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
			    keys[i].key);
			is_int(upgrade(head, &u), keys[i].status, "Sec-WebSocket-Key '%s'", keys[i].key);
		}
		is_int(upgrade("GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		    "Sec-WebSocket-Version: 13\r\n\r\n", &u), 400, "no key -> 400");
		is_int(upgrade("GET /chat HTTP/1.1\r\n" UPG_HDRS "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n",
		    &u), 400, "two keys -> 400");
		ok(u.reason != NULL && u.accept[0] == '\0', "a refusal has a reason and no accept value");
	}

	is_str(http_status_text(426), "Upgrade Required", "status text 426");
	is_str(http_status_text(431), "Request Header Fields Too Large", "status text 431");
	is_str(http_status_text(299), "Unknown", "status text unknown");
}

/* Body framing (RFC 9112 6): what http_parse accepts, and what a handler may read. */
static void
test_framing(void)
{
	static const struct {
		const char	*hdrs;		/* header lines after the request line */
		int		 minor;
		int		 status;	/* http_parse */
		enum http_body	 body;
		uint64_t	 len;
	} cases[] = {
		{ "Host: a\r\n", 1, 0, HTTP_BODY_NONE, 0 },
		{ "Content-Length: 0\r\n", 1, 0, HTTP_BODY_LENGTH, 0 },
		{ "Content-Length: 42\r\n", 1, 0, HTTP_BODY_LENGTH, 42 },
		{ "Content-Length: 0042\r\n", 1, 0, HTTP_BODY_LENGTH, 42 },
		{ "Content-Length: 42\r\n", 0, 0, HTTP_BODY_LENGTH, 42 },
		{ "Content-Length: 7\r\ncontent-length: 7\r\n", 1, 0, HTTP_BODY_LENGTH, 7 },
		{ "Content-Length: 999999999999999999\r\n", 1, 0, HTTP_BODY_LENGTH, 999999999999999999ULL },
		{ "Content-Length: 1000000000000000000\r\n", 1, 400, HTTP_BODY_NONE, 0 },	/* 19 digits */
		{ "Content-Length: 99999999999999999999999\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: 7\r\nContent-Length: 8\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: 7, 7\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: 7, 8\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: +7\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: -1\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: 0x10\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: 1 0\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length:\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: chunked\r\n", 1, 0, HTTP_BODY_CHUNKED, 0 },
		{ "Transfer-Encoding: CHUNKED \r\n", 1, 0, HTTP_BODY_CHUNKED, 0 },
		{ "Transfer-Encoding: ,chunked\r\n", 1, 0, HTTP_BODY_CHUNKED, 0 },
		{ "Transfer-Encoding: gzip, chunked\r\n", 1, 501, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", 1, 501, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: chunked, gzip\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: chunked, chunked\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: gzip\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding:\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: xchunked\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: chunked\r\n", 0, 400, HTTP_BODY_NONE, 0 },
		{ "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", 1, 400, HTTP_BODY_NONE, 0 },
		{ "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", 1, 400, HTTP_BODY_NONE, 0 },
	};
	char head[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(head, sizeof(head), "GET /app.js HTTP/1.%d\r\n%s\r\n", cases[i].minor, cases[i].hdrs);
		is_int(parse(head), cases[i].status, "framing %zu: parse of HTTP/1.%d %s", i, cases[i].minor,
		    str(cases[i].hdrs, strcspn(cases[i].hdrs, "\r")));
		if (cases[i].status != 0)
			continue;
		ok(req.body == cases[i].body && req.body_len == cases[i].len,
		    "framing %zu: body %d of %llu bytes", i, (int)req.body, (unsigned long long)req.body_len);
	}

	/* What a handler may read: no route reads a body yet (max 0). */
	is_int(parse("GET / HTTP/1.1\r\n\r\n"), 0, "no body");
	is_int(http_body_status(&req, 0), 0, "no body: fine where none is read");
	is_int(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 0, "empty body");
	is_int(http_body_status(&req, 0), 0, "Content-Length 0: fine where none is read");
	is_int(parse("GET / HTTP/1.1\r\nContent-Length: 1\r\n\r\n"), 0, "a body of 1 byte");
	is_int(http_body_status(&req, 0), 413, "a body where none is read: 413");
	is_int(http_body_status(&req, 1), 0, "a body up to the handler's limit may be read");
	is_int(parse("POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n"), 0, "a body of 1025 bytes");
	is_int(http_body_status(&req, 1024), 413, "a body over the handler's limit: 413");
	is_int(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 0, "chunked");
	is_int(http_body_status(&req, 0), 501, "chunked where none is read: 501");
	is_int(http_body_status(&req, 1 << 20), 501, "chunked is never decoded: 501");
}

/* Every status roomd can send goes out with its reason phrase (429 once went out as "Unknown"). */
static void
test_status_text(void)
{
	static const struct {
		int		 status;
		const char	*text;
		const char	*where;
	} sent[] = {
		{ 101, "Switching Protocols", "front.c: the upgrade" },
		{ 200, "OK", "front.c: files, health, readiness, metrics" },
		{ 304, "Not Modified", "www.c: conditional GET" },
		{ 400, "Bad Request", "http.c: parse, upgrade checks, framing; www.c: bad path" },
		{ 401, "Unauthorized", "front.c: check_auth under auth_failure http" },
		{ 403, "Forbidden", "front.c: Origin; www.c: path; a route's admit" },
		{ 404, "Not Found", "front.c: no route; www.c: no file" },
		{ 405, "Method Not Allowed", "front.c, http.c: not GET or HEAD" },
		{ 413, "Content Too Large", "http.c: a body where none is read" },
		{ 426, "Upgrade Required", "http.c: no Upgrade, wrong version" },
		{ 429, "Too Many Requests", "front.c: max_sessions_per_ip, max_new_sessions_per_ip" },
		{ 431, "Request Header Fields Too Large", "http.c, front.c: head too large" },
		{ 501, "Not Implemented", "http.c: a transfer coding roomd does not implement" },
		{ 503, "Service Unavailable", "front.c: draining, not ready, connection limits" },
		{ 505, "HTTP Version Not Supported", "http.c: not HTTP/1.x" },
	};

	for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
		is_str(http_status_text(sent[i].status), sent[i].text, "status %d (%s)", sent[i].status,
		    sent[i].where);
	/* Every other status RFC 9110 registers has its name too, should one come into use. */
	is_str(http_status_text(422), "Unprocessable Content", "RFC 9110 names: 422");
	is_str(http_status_text(308), "Permanent Redirect", "RFC 9110 names: 308");
}

/* http_head_end in one call == in pieces split anywhere. */
static void
test_head_end(void)
{
	static const char *heads[] = {
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\n",
		"GET / HTTP/1.1\n\n",
		"\n\n",
	};
	static const char tail[] = "\x81\x85\x01\x02\x03\x04" "abcde\r\n\r\n";
	char buf[256];
	int wrong = 0, cases = 0;

	for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
		size_t hn = strlen(heads[h]), n;

		memcpy(buf, heads[h], hn);
		memcpy(buf + hn, tail, sizeof(tail) - 1);
		n = hn + sizeof(tail) - 1;
		is_int(http_head_end(buf, n, 0), hn, "head end of head %zu in one call", h);
		is_int(http_head_end(buf, hn - 1, 0), 0, "head %zu minus one byte is incomplete", h);
		/* Two calls, split at every point. */
		for (size_t s = 0; s <= n; s++) {
			size_t first = http_head_end(buf, s, 0);

			cases++;
			if (first != 0) {
				if (first != hn || s < hn)
					wrong++;
			} else if (http_head_end(buf, n, s) != hn)
				wrong++;
		}
		/* Byte by byte, as a server reading 1-byte segments would. */
		{
			size_t got = 0;

			for (size_t k = 1; k <= n && got == 0; k++)
				got = http_head_end(buf, k, k - 1);
			cases++;
			if (got != hn)
				wrong++;
		}
	}
	is_int(wrong, 0, "http_head_end agrees across splits and byte-wise feeding (%d cases)", cases);
	is_int(http_head_end("GET / HTTP/1.1\r\nA: b\r\n", 23, 0), 0, "no blank line yet");
	is_int(http_head_end("GET / HTTP/1.1\r\n\r", 17, 0), 0, "blank line's CR alone is not the end");
	is_int(http_head_end("", 0, 0), 0, "empty buffer");
	is_int(http_head_end("a\r\r\nb", 5, 0), 0, "CR CR LF is not a blank line");
}

int
main(void)
{
	test_request_line();
	test_headers();
	test_upgrade();
	test_head_end();
	test_framing();
	test_status_text();
	http_cleanup();
	return tap_done();
}
