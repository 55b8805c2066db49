/*
 * http.h: HTTP/1.1 request-head parsing (no I/O, bounded) and the WebSocket
 * upgrade checks of RFC 6455 section 4.2.1.
 */
#ifndef ROOMD_HTTP_H
#define ROOMD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS	64

/* How a request's body is framed (RFC 9112 section 6), as http_parse found it. */
enum http_body {
	HTTP_BODY_NONE,		/* neither Content-Length nor Transfer-Encoding */
	HTTP_BODY_LENGTH,	/* Content-Length: body_len bytes follow the head */
	HTTP_BODY_CHUNKED,	/* Transfer-Encoding: chunked */
};

struct http_hdr {
	const char	*name;
	size_t		 nlen;
	const char	*value;
	size_t		 vlen;
};

struct http_req {
	const char	*method;
	size_t		 method_len;
	const char	*path;		/* target without query, origin-form */
	size_t		 path_len;
	const char	*query;		/* after '?', or NULL */
	size_t		 query_len;
	int		 minor;		/* HTTP/1.minor; 9 for any HTTP/2+ line */
	enum http_body	 body;
	uint64_t	 body_len;	/* HTTP_BODY_LENGTH: the Content-Length */
	int		 nhdr;
	struct http_hdr	 hdr[HTTP_MAX_HEADERS];
};

/*
 * Find the end of the request head in buf[0..len), scanning from `from`
 * (bytes before it were scanned already). Returns the head length including
 * the blank line, or 0 if it is not complete yet.
 */
size_t http_head_end(const char *buf, size_t len, size_t from);
/*
 * Parse a complete head. Returns 0, or the HTTP status to answer (400, 431,
 * 501, 505). The body's framing is checked strictly, since a proxy in front
 * that reads it differently would see other requests than roomd does
 * (request smuggling): Content-Length must be plain digits, repeated only
 * with the same value, and never beside Transfer-Encoding (400); a
 * Transfer-Encoding must end in one chunked (400), come in HTTP/1.1 (400),
 * and hold no other coding (501: none is implemented).
 */
int http_parse(struct http_req *, const char *buf, size_t len);
/*
 * Whether a parsed request's body may be read by a handler that takes at
 * most max_body bytes (0: one that reads none): 0 if so (no body, or a
 * Content-Length up to max_body, to be read right after the head), else
 * the status to answer and close with: 413 for a longer Content-Length,
 * 501 for a chunked body (roomd does not decode the chunked coding: senders
 * of bodies must give a Content-Length).
 */
int http_body_status(const struct http_req *, uint64_t max_body);
/* First value of a header (case-insensitive name); NULL if absent. */
const char *http_header(const struct http_req *, const char *name, size_t *vlen);
/* How many times a header occurs. */
int http_header_count(const struct http_req *, const char *name);
/* Whether any occurrence of the header holds token in its comma list (case-insensitive). */
int http_header_has_token(const struct http_req *, const char *name, const char *token);
/* Whether the method is exactly m. */
int http_method_is(const struct http_req *, const char *m);

/* Outcome of the upgrade checks. */
struct ws_upgrade {
	int		 status;	/* 0: upgrade; else the HTTP status to answer */
	const char	*reason;	/* short text for the error body */
	char		 accept[29];	/* Sec-WebSocket-Accept value */
};

/* Check the request as an RFC 6455 opening handshake and compute the accept key. */
void http_check_upgrade(const struct http_req *, struct ws_upgrade *);
/* Whether the request asks for an upgrade to websocket at all. */
int http_wants_websocket(const struct http_req *);
/*
 * base64(SHA-1(key + GUID)) into out[29] ("" if the digest fails). The first
 * call fetches the digest: make it before threads share the function.
 */
void http_accept_key(const char *key, size_t klen, char out[29]);
/* Release the digest http_accept_key keeps (at exit). */
void http_cleanup(void);
/* The raw value of name in a query string (a=1&b=2); NULL if absent. */
const char *http_query_param(const char *query, size_t qlen, const char *name, size_t *vlen);
/*
 * Percent-decode n bytes into out (NUL-terminated); with plus, '+' is a
 * space (query strings). Returns the decoded length, or -1 on a bad escape
 * or when out is too small. The result may hold NUL bytes: callers check.
 */
int http_pct_decode(const char *in, size_t n, char *out, size_t outlen, int plus);
/* The value of a hex digit (either case), or -1 if c is none. */
int http_hex_digit(int c);
/* Reason phrase of a status code. */
const char *http_status_text(int status);

#endif
