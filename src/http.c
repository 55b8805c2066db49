/*
 * http.c: a strict, bounded parser for HTTP/1.1 request heads. It works on a
 * complete head (the caller accumulates bytes and finds the end with
 * http_head_end), keeps pointers into the caller's buffer, and never allocates.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>

#include "http.h"

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

size_t
http_head_end(const char *buf, size_t len, size_t from)
{
	size_t i = from > 3 ? from - 3 : 0;

	for (; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 < len && buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* RFC 7230 tchar. */
static int
is_tchar(unsigned char c)
{
	return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Split off one line ending in LF or CRLF; returns its length without the ending. */
static int
next_line(const char **p, const char *end, const char **line, size_t *llen)
{
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));

	if (nl == NULL)
		return -1;
	*line = *p;
	*llen = (size_t)(nl - *p);
	if (*llen > 0 && (*line)[*llen - 1] == '\r')
		(*llen)--;
	*p = nl + 1;
	return 0;
}

static int
parse_request_line(struct http_req *r, const char *l, size_t n)
{
	const char *sp1, *sp2, *t, *q, *e = l + n;
	size_t tlen;

	if ((sp1 = memchr(l, ' ', n)) == NULL || sp1 == l)
		return 400;
	for (const char *c = l; c < sp1; c++)
		if (!is_tchar((unsigned char)*c))
			return 400;
	r->method = l;
	r->method_len = (size_t)(sp1 - l);
	t = sp1 + 1;
	if ((sp2 = memchr(t, ' ', (size_t)(e - t))) == NULL || sp2 == t)
		return 400;
	tlen = (size_t)(sp2 - t);
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			return 400;
	/* Version: HTTP/1.x (HTTP/2+ request lines are flagged with minor 9). */
	if ((size_t)(e - sp2 - 1) != 8 || memcmp(sp2 + 1, "HTTP/", 5) != 0 ||
	    !isdigit((unsigned char)sp2[6]) || sp2[7] != '.' || !isdigit((unsigned char)sp2[8]))
		return 400;
	if (sp2[6] != '1')
		return 505;
	r->minor = sp2[8] - '0';
	/* absolute-form: skip scheme and authority. */
	if (tlen > 7 && (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0)) {
		const char *a = (const char *)memchr(t, ':', tlen) + 3;
		const char *slash = memchr(a, '/', (size_t)(sp2 - a));

		if (slash == NULL) {
			t = "/";
			tlen = 1;
		} else {
			tlen = (size_t)(sp2 - slash);
			t = slash;
		}
	} else if (t[0] != '/')
		return 400;
	if ((q = memchr(t, '#', tlen)) != NULL)
		tlen = (size_t)(q - t);
	r->path = t;
	r->path_len = tlen;
	r->query = NULL;
	r->query_len = 0;
	if ((q = memchr(t, '?', tlen)) != NULL) {
		r->path_len = (size_t)(q - t);
		r->query = q + 1;
		r->query_len = tlen - r->path_len - 1;
	}
	return 0;
}

static int
name_is(const struct http_hdr *h, const char *name)
{
	return strlen(name) == h->nlen && strncasecmp(h->name, name, h->nlen) == 0;
}

/* The next element of a comma list (RFC 9110 5.6.1), blanks trimmed; 0 at its end. */
static int
list_next(const char **p, const char *e, const char **item, size_t *len)
{
	const char *v = *p, *s, *t;

	while (v < e && (*v == ' ' || *v == '\t' || *v == ','))
		v++;
	*p = v;
	if (v == e)
		return 0;
	for (s = v; v < e && *v != ','; v++)
		;
	for (t = v; t > s && (t[-1] == ' ' || t[-1] == '\t'); t--)
		;
	*p = v;
	*item = s;
	*len = (size_t)(t - s);
	return 1;
}

/* A Content-Length value: 1*DIGIT, at most 18 of them (no overflow). -1 if not. */
static int
parse_length(const char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;

	if (n == 0 || n > 18)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	*out = x;
	return 0;
}

/*
 * Check how the body is framed (RFC 9112 6.1-6.3) and record it. Every
 * Transfer-Encoding line is one list (RFC 9110 5.3); its last coding must
 * be chunked, chunked must not come twice, and roomd implements no other.
 */
static int
parse_framing(struct http_req *r)
{
	int te = 0, cl = 0, chunked_last = 0, other = 0;

	r->body = HTTP_BODY_NONE;
	r->body_len = 0;
	for (int i = 0; i < r->nhdr; i++) {
		const struct http_hdr *h = &r->hdr[i];

		if (name_is(h, "Content-Length")) {
			uint64_t n;

			if (parse_length(h->value, h->vlen, &n) == -1 || (cl && n != r->body_len))
				return 400;
			r->body_len = n;
			cl = 1;
		} else if (name_is(h, "Transfer-Encoding")) {
			const char *v = h->value, *item;
			size_t il;

			te = 1;
			while (list_next(&v, h->value + h->vlen, &item, &il)) {
				if (chunked_last)
					return 400;	/* chunked, and then something more */
				if (il == 7 && strncasecmp(item, "chunked", 7) == 0)
					chunked_last = 1;
				else
					other = 1;
			}
		}
	}
	if (te && (cl || r->minor < 1 || !chunked_last))
		return 400;
	if (other)
		return 501;
	if (te)
		r->body = HTTP_BODY_CHUNKED;
	else if (cl)
		r->body = HTTP_BODY_LENGTH;
	return 0;
}

int
http_body_status(const struct http_req *r, uint64_t max_body)
{
	switch (r->body) {
	case HTTP_BODY_NONE:
		return 0;
	case HTTP_BODY_LENGTH:
		return r->body_len <= max_body ? 0 : 413;
	case HTTP_BODY_CHUNKED:
	default:
		return 501;
	}
}

int
http_parse(struct http_req *r, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len, *l;
	size_t n;
	int rc;

	memset(r, 0, sizeof(*r));
	/* Tolerate empty lines before the request line (RFC 7230 3.5). */
	do {
		if (next_line(&p, end, &l, &n) == -1)
			return 400;
	} while (n == 0 && p < end);
	if ((rc = parse_request_line(r, l, n)) != 0)
		return rc;
	for (;;) {
		const char *colon, *v, *ve;

		if (next_line(&p, end, &l, &n) == -1)
			return 400;
		if (n == 0)
			break;
		if (l[0] == ' ' || l[0] == '\t')
			return 400;	/* obsolete line folding */
		if ((colon = memchr(l, ':', n)) == NULL || colon == l)
			return 400;
		for (const char *c = l; c < colon; c++)
			if (!is_tchar((unsigned char)*c))
				return 400;
		v = colon + 1;
		ve = l + n;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		/* Controls but HTAB are refused; obs-text (0x80-0xff) is allowed. */
		for (const char *c = v; c < ve; c++) {
			unsigned char uc = (unsigned char)*c;

			if ((uc < 0x20 && uc != '\t') || uc == 0x7f)
				return 400;
		}
		if (r->nhdr >= HTTP_MAX_HEADERS)
			return 431;
		r->hdr[r->nhdr++] = (struct http_hdr){ l, (size_t)(colon - l), v, (size_t)(ve - v) };
	}
	return parse_framing(r);
}

const char *
http_header(const struct http_req *r, const char *name, size_t *vlen)
{
	for (int i = 0; i < r->nhdr; i++) {
		if (name_is(&r->hdr[i], name)) {
			*vlen = r->hdr[i].vlen;
			return r->hdr[i].value;
		}
	}
	return NULL;
}

int
http_header_count(const struct http_req *r, const char *name)
{
	int n = 0;

	for (int i = 0; i < r->nhdr; i++)
		n += name_is(&r->hdr[i], name);
	return n;
}

int
http_header_has_token(const struct http_req *r, const char *name, const char *token)
{
	size_t tl = strlen(token);

	for (int i = 0; i < r->nhdr; i++) {
		const char *v = r->hdr[i].value, *item;
		size_t il;

		if (!name_is(&r->hdr[i], name))
			continue;
		while (list_next(&v, r->hdr[i].value + r->hdr[i].vlen, &item, &il))
			if (il == tl && strncasecmp(item, token, tl) == 0)
				return 1;
	}
	return 0;
}

int
http_method_is(const struct http_req *r, const char *m)
{
	return strlen(m) == r->method_len && memcmp(r->method, m, r->method_len) == 0;
}

int
http_wants_websocket(const struct http_req *r)
{
	return http_header_has_token(r, "Upgrade", "websocket");
}

/* A Sec-WebSocket-Key must be base64 of exactly 16 bytes: 22 chars and "==". */
static int
key_valid(const char *k, size_t n)
{
	if (n != 24 || k[22] != '=' || k[23] != '=')
		return 0;
	for (size_t i = 0; i < 22; i++)
		if (!isalnum((unsigned char)k[i]) && k[i] != '+' && k[i] != '/')
			return 0;
	/* The last data char carries 2 bits; its low 4 bits must be zero. */
	return strchr("AQgw", k[21]) != NULL;
}

static EVP_MD *sha1;

void
http_cleanup(void)
{
	EVP_MD_free(sha1);
	sha1 = NULL;
}

void
http_accept_key(const char *key, size_t klen, char out[29])
{
	unsigned char md[EVP_MAX_MD_SIZE], in[64 + sizeof(ws_guid)];
	unsigned int mdlen = 0;

	if (klen > 64)
		klen = 64;	/* callers pass validated 24-byte keys */
	memcpy(in, key, klen);
	memcpy(in + klen, ws_guid, sizeof(ws_guid) - 1);
	/*
	 * Fetch SHA-1 once: EVP_sha1() makes OpenSSL 3 look the algorithm up
	 * on every call, which cost more than the digest itself.
	 */
	if (sha1 == NULL && (sha1 = EVP_MD_fetch(NULL, "SHA1", NULL)) == NULL) {
		out[0] = '\0';
		return;
	}
	if (EVP_Digest(in, klen + sizeof(ws_guid) - 1, md, &mdlen, sha1, NULL) != 1 ||
	    mdlen != 20) {
		out[0] = '\0';
		return;
	}
	EVP_EncodeBlock((unsigned char *)out, md, 20);
}

void
http_check_upgrade(const struct http_req *r, struct ws_upgrade *u)
{
	const char *key, *ver;
	size_t klen, vlen;

	memset(u, 0, sizeof(*u));
	u->status = 400;
	if (!http_method_is(r, "GET")) {
		u->status = 405;
		u->reason = "WebSocket handshakes use GET";
		return;
	}
	if (r->minor < 1) {
		u->reason = "WebSocket needs HTTP/1.1";
		return;
	}
	if (http_header_count(r, "Host") != 1) {
		u->reason = "exactly one Host header is required";
		return;
	}
	if (!http_wants_websocket(r)) {
		u->status = 426;
		u->reason = "this path speaks WebSocket: send Upgrade: websocket";
		return;
	}
	if (!http_header_has_token(r, "Connection", "Upgrade")) {
		u->reason = "Connection header must hold the Upgrade token";
		return;
	}
	ver = http_header(r, "Sec-WebSocket-Version", &vlen);
	if (ver == NULL || http_header_count(r, "Sec-WebSocket-Version") != 1 ||
	    vlen != 2 || memcmp(ver, "13", 2) != 0) {
		u->status = 426;
		u->reason = "unsupported Sec-WebSocket-Version: this server speaks 13";
		return;
	}
	key = http_header(r, "Sec-WebSocket-Key", &klen);
	if (key == NULL || http_header_count(r, "Sec-WebSocket-Key") != 1 || !key_valid(key, klen)) {
		u->reason = "Sec-WebSocket-Key must be base64 of 16 bytes";
		return;
	}
	http_accept_key(key, klen, u->accept);
	u->status = 0;
	u->reason = NULL;
}

const char *
http_query_param(const char *q, size_t qlen, const char *name, size_t *vlen)
{
	const char *e = q + qlen, *amp, *eq;
	size_t nl = strlen(name);

	for (; q != NULL && q < e; q = amp + 1) {
		if ((amp = memchr(q, '&', (size_t)(e - q))) == NULL)
			amp = e;
		eq = memchr(q, '=', (size_t)(amp - q));
		if (eq != NULL && (size_t)(eq - q) == nl && memcmp(q, name, nl) == 0) {
			*vlen = (size_t)(amp - eq - 1);
			return eq + 1;
		}
	}
	return NULL;
}

int
http_hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
http_pct_decode(const char *in, size_t n, char *out, size_t outlen, int plus)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)in[i], h, l;

		if (c == '%') {
			if (i + 2 >= n || (h = http_hex_digit(in[i + 1])) < 0 || (l = http_hex_digit(in[i + 2])) < 0)
				return -1;
			c = h << 4 | l;
			i += 2;
		} else if (c == '+' && plus)
			c = ' ';
		if (o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return (int)o;
}

/*
 * Every status registered by RFC 9110 (and 429/431 of RFC 6585), so that
 * whatever roomd answers carries its reason phrase; "Unknown" is left for
 * numbers nobody registered.
 */
const char *
http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 203: return "Non-Authoritative Information";
	case 204: return "No Content";
	case 205: return "Reset Content";
	case 206: return "Partial Content";
	case 300: return "Multiple Choices";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 305: return "Use Proxy";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 407: return "Proxy Authentication Required";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 415: return "Unsupported Media Type";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}
