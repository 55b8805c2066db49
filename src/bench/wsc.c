/*
 * wsc.c: client-side WebSocket handshake and framing on buffers. The decoder
 * accepts any split of the server's byte stream: headers are assembled in a
 * small array, a message that arrives whole in one buffer is handed out in
 * place, anything else is assembled in a per-connection buffer; control
 * frames may interleave with the fragments of a message. permessage-deflate
 * compresses and inflates whole messages with zlib, resetting the streams
 * for each, as both no_context_takeover parameters allow.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "../http.h"
#include "../ws_frame.h"
#include "wsc.h"

void
wsc_make_key(const uint8_t nonce[16], char key[WSC_KEY_LEN + 1])
{
	/* EVP_EncodeBlock writes 24 characters and a NUL for 16 bytes. */
	(void)EVP_EncodeBlock((unsigned char *)key, nonce, 16);
	key[WSC_KEY_LEN] = '\0';
}

int
wsc_request(char *out, size_t cap, const char *host, int port, const char *path,
    const char *key, int deflate)
{
	int n;

	n = snprintf(out, cap,
	    "GET %s HTTP/1.1\r\n"
	    "Host: %s:%d\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "%s"
	    "User-Agent: roomd-bench\r\n"
	    "\r\n", path, host, port, key,
	    deflate ? "Sec-WebSocket-Extensions: " WSC_PMD_OFFER "\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

/* Whether line[0..len) is header name (case-insensitive) followed by ':'; sets the trimmed value. */
static int
header_value(const char *line, size_t len, const char *name, const char **v, size_t *vlen)
{
	size_t nl = strlen(name), a, b;

	if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return 0;
	a = nl + 1;
	b = len;
	while (a < b && (line[a] == ' ' || line[a] == '\t'))
		a++;
	while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t'))
		b--;
	*v = line + a;
	*vlen = b - a;
	return 1;
}

/* The next ;-separated token of [*p, e), trimmed; *p moves past its ';'. */
static size_t
next_param(const char **p, const char *e, const char **tok)
{
	const char *s = *p, *t;

	if ((t = memchr(s, ';', (size_t)(e - s))) == NULL)
		t = e;
	*p = t < e ? t + 1 : e;
	while (s < t && (*s == ' ' || *s == '\t'))
		s++;
	while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
		t--;
	*tok = s;
	return (size_t)(t - s);
}

int
wsc_pmd_accepted(const char *v, size_t len)
{
	const char *p = v, *e = v + len, *tok;
	size_t n;
	int snc = 0, cnc = 0, sbits = 0;

	n = next_param(&p, e, &tok);
	if (n != 18 || strncasecmp(tok, "permessage-deflate", 18) != 0)
		return 0;
	while (p < e) {
		n = next_param(&p, e, &tok);
		if (n == 26 && strncasecmp(tok, "server_no_context_takeover", 26) == 0 && !snc++)
			continue;
		if (n == 26 && strncasecmp(tok, "client_no_context_takeover", 26) == 0 && !cnc++)
			continue;
		if (n > 23 && strncasecmp(tok, "server_max_window_bits=", 23) == 0 && !sbits++) {
			/* Any window the server compresses with inflates with ours (15). */
			const char *d = tok + 23, *de = tok + n;

			if (de - d >= 2 && *d == '"' && de[-1] == '"') {
				d++;
				de--;
			}
			if ((de - d == 1 && *d >= '8' && *d <= '9') ||
			    (de - d == 2 && d[0] == '1' && d[1] >= '0' && d[1] <= '5'))
				continue;
		}
		return 0;	/* unknown, repeated or not offered (client_max_window_bits) */
	}
	return snc;		/* without it the server may keep context we do not keep */
}

int
wsc_response_check(const char *head, size_t len, const char *key, int offered,
    int *deflate, const char **why)
{
	char want[29];
	const char *p = head, *end = head + len, *eol, *v;
	size_t vlen;
	int accept_ok = 0, first = 1;

	*deflate = 0;
	http_accept_key(key, strlen(key), want);
	while (p < end) {
		eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		size_t ll = (size_t)(eol - p);
		if (ll > 0 && p[ll - 1] == '\r')
			ll--;
		if (first) {
			if (ll < 12 || memcmp(p, "HTTP/1.1 ", 9) != 0) {
				*why = "not an HTTP/1.1 response";
				return -1;
			}
			if (memcmp(p + 9, "101", 3) != 0) {
				*why = "status is not 101";
				return -1;
			}
			first = 0;
		} else if (header_value(p, ll, "Sec-WebSocket-Accept", &v, &vlen)) {
			if (vlen != strlen(want) || memcmp(v, want, vlen) != 0) {
				*why = "wrong Sec-WebSocket-Accept";
				return -1;
			}
			accept_ok = 1;
		} else if (header_value(p, ll, "Sec-WebSocket-Extensions", &v, &vlen) && vlen > 0) {
			if (!offered) {
				*why = "extension accepted that was not offered";
				return -1;
			}
			if (*deflate || !wsc_pmd_accepted(v, vlen)) {
				*why = "permessage-deflate accepted with parameters not offered";
				return -1;
			}
			*deflate = 1;
		}
		p = eol + 1;
	}
	if (!accept_ok) {
		*why = first ? "empty response" : "no Sec-WebSocket-Accept";
		return -1;
	}
	return 0;
}

size_t
wsc_frame_size(uint64_t len)
{
	return (len < 126 ? 2 : len <= 0xffff ? 4 : 10) + 4 + (size_t)len;
}

size_t
wsc_frame(uint8_t *out, int opcode, int rsv1, const void *payload, size_t len,
    uint32_t maskkey)
{
	uint8_t mask[4];
	size_t h;

	memcpy(mask, &maskkey, 4);
	h = ws_header_masked(out, 1, opcode, len, mask);
	if (rsv1)
		out[0] |= 0x40;
	if (len > 0) {
		memcpy(out + h, payload, len);
		ws_unmask(out + h, len, mask, 0);	/* XOR: masking is its own inverse */
	}
	return h + len;
}

void
wsc_decoder_init(struct wsc_decoder *d, uint64_t max_message)
{
	memset(d, 0, sizeof(*d));
	d->max_message = max_message ? max_message : WSC_DEFAULT_MAX_MESSAGE;
}

void
wsc_decoder_free(struct wsc_decoder *d)
{
	free(d->msg);
	d->msg = NULL;
	d->msg_len = d->msg_cap = 0;
}

/* Length of the header whose first two bytes are h (2 to 14). */
static size_t
header_len(const uint8_t *h)
{
	size_t n = 2;

	if ((h[1] & 0x7f) == 126)
		n += 2;
	else if ((h[1] & 0x7f) == 127)
		n += 8;
	if (h[1] & 0x80)
		n += 4;
	return n;
}

static size_t
fail(struct wsc_ev *ev, const char *why, size_t used)
{
	ev->type = WSC_ERROR;
	ev->error = why;
	return used;
}

/* Start the frame whose header is complete in d->hdr. Returns NULL or an error. */
static const char *
frame_begin(struct wsc_decoder *d)
{
	const uint8_t *h = d->hdr;
	uint64_t len = h[1] & 0x7f;
	size_t off = 2;

	d->fin = h[0] >> 7;
	d->op = h[0] & 0x0f;
	d->masked = h[1] >> 7;
	d->skip = 0;
	/* RSV1 may open a compressed data message; any other RSV bit is an error. */
	if ((h[0] & 0x70) != 0 && ((h[0] & 0x70) != 0x40 || !d->pmd ||
	    (d->op != 0x1 && d->op != 0x2)))
		d->proto_errors++;
	if (len == 126) {
		len = ((uint64_t)h[2] << 8) | h[3];
		off = 4;
	} else if (len == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = (len << 8) | h[2 + i];
		off = 10;
		if (len >> 63)
			return "64-bit length with the top bit set";
	}
	if (d->masked) {
		memcpy(d->mask, h + off, 4);
		d->masked_frames++;
		d->proto_errors++;
	}
	d->left = len;
	d->pos = 0;
	if (d->op >= 0x8) {
		if ((d->op != 0x8 && d->op != 0x9 && d->op != 0xa) || !d->fin || len > WSC_MAX_CONTROL) {
			d->proto_errors++;
			d->skip = 1;
		}
		d->ctl_len = 0;
	} else if (d->op == 0x0) {
		if (d->msg_op == 0) {
			d->proto_errors++;	/* continuation of nothing */
			d->skip = 1;
		}
	} else if (d->op == 0x1 || d->op == 0x2) {
		if (d->msg_op != 0) {
			d->proto_errors++;	/* new message inside another: drop the old */
			d->msg_len = 0;
		}
		d->msg_op = d->op;
		d->msg_compressed = d->pmd && (h[0] & 0x40);
		if (!d->fin)
			d->fragmented++;
	} else {
		d->proto_errors++;		/* reserved data opcode */
		d->skip = 1;
	}
	if (!d->skip && d->op < 0x8 && d->msg_len + len > d->max_message)
		return "message over the size limit";
	d->in_payload = 1;
	d->hdr_have = 0;
	return NULL;
}

/* Append n payload bytes to the message buffer, unmasking them. Returns -1 without memory. */
static int
msg_append(struct wsc_decoder *d, const uint8_t *p, size_t n)
{
	if (d->msg_len + n > d->msg_cap) {
		size_t cap = d->msg_cap ? d->msg_cap : 256;
		uint8_t *nb;

		while (cap < d->msg_len + n)
			cap *= 2;
		nb = realloc(d->msg, cap);
		if (nb == NULL)
			return -1;
		d->msg = nb;
		d->msg_cap = cap;
	}
	memcpy(d->msg + d->msg_len, p, n);
	if (d->masked)
		ws_unmask(d->msg + d->msg_len, n, d->mask, d->pos);
	d->msg_len += n;
	return 0;
}

size_t
wsc_decode(struct wsc_decoder *d, uint8_t *buf, size_t len, struct wsc_ev *ev)
{
	size_t used = 0, take;
	const char *err;

	ev->type = WSC_NEED;
	if (d->msg_emitted) {
		d->msg_emitted = 0;
		d->msg_len = 0;
		d->msg_op = 0;
		d->msg_compressed = 0;
	}
	for (;;) {
		if (!d->in_payload) {
			/* Assemble the header: two bytes say how long it is. */
			while (d->hdr_have < 2 && used < len)
				d->hdr[d->hdr_have++] = buf[used++];
			if (d->hdr_have < 2)
				return used;
			size_t need = header_len(d->hdr);
			while (d->hdr_have < need && used < len)
				d->hdr[d->hdr_have++] = buf[used++];
			if (d->hdr_have < need)
				return used;
			if ((err = frame_begin(d)) != NULL)
				return fail(ev, err, used);
		}
		take = len - used;
		if (take > d->left)
			take = (size_t)d->left;
		if (d->skip) {
			used += take;
			d->left -= take;
			if (d->left > 0)
				return used;
			d->in_payload = 0;
			continue;
		}
		if (d->op >= 0x8) {
			memcpy(d->ctl + d->ctl_len, buf + used, take);
			if (d->masked)
				ws_unmask(d->ctl + d->ctl_len, take, d->mask, d->pos);
			d->ctl_len += take;
			d->pos += take;
			d->left -= take;
			used += take;
			if (d->left > 0)
				return used;
			d->in_payload = 0;
			ev->type = WSC_CONTROL;
			ev->opcode = d->op;
			ev->data = d->ctl;
			ev->len = d->ctl_len;
			return used;
		}
		if (d->fin && d->msg_len == 0 && take == d->left) {
			/* The whole message is in buf: hand it out in place. */
			if (d->masked)
				ws_unmask(buf + used, take, d->mask, d->pos);
			ev->type = WSC_MESSAGE;
			ev->opcode = d->msg_op;
			ev->compressed = d->msg_compressed;
			ev->data = buf + used;
			ev->len = take;
			used += take;
			d->left = 0;
			d->in_payload = 0;
			d->msg_op = 0;
			d->msg_compressed = 0;
			return used;
		}
		if (take > 0 && msg_append(d, buf + used, take) < 0)
			return fail(ev, "out of memory", used);
		d->pos += take;
		d->left -= take;
		used += take;
		if (d->left > 0)
			return used;
		d->in_payload = 0;
		if (d->fin) {
			ev->type = WSC_MESSAGE;
			ev->opcode = d->msg_op;
			ev->compressed = d->msg_compressed;
			ev->data = d->msg ? d->msg : (const uint8_t *)"";
			ev->len = d->msg_len;
			d->msg_emitted = 1;
			return used;
		}
		if (used == len)
			return used;
	}
}

void
wsc_pmd_free(struct wsc_pmd *z)
{
	if (z->zd_ready)
		(void)deflateEnd(&z->zd);
	if (z->zi_ready)
		(void)inflateEnd(&z->zi);
	z->zd_ready = z->zi_ready = 0;
	free(z->dbuf);
	free(z->ibuf);
	z->dbuf = z->ibuf = NULL;
	z->dcap = z->icap = 0;
}

/* Make *buf hold at least n bytes. Returns 0 or -1. */
static int
pmd_reserve(uint8_t **buf, size_t *cap, size_t n)
{
	uint8_t *nb;

	if (n <= *cap)
		return 0;
	if ((nb = realloc(*buf, n)) == NULL)
		return -1;
	*buf = nb;
	*cap = n;
	return 0;
}

const uint8_t *
wsc_pmd_deflate(struct wsc_pmd *z, const uint8_t *in, size_t len, size_t *outlen)
{
	size_t bound, n;

	if (len > UINT32_MAX / 2)
		return NULL;		/* one deflate() call; roomd-bench sends at most 16 MiB */
	if (!z->zd_ready) {
		/* Level 1: the generator's CPU is not what is measured. Raw deflate, 15-bit window. */
		memset(&z->zd, 0, sizeof(z->zd));
		if (deflateInit2(&z->zd, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			return NULL;
		z->zd_ready = 1;
	} else if (deflateReset(&z->zd) != Z_OK)
		return NULL;
	bound = deflateBound(&z->zd, (uLong)len) + 16;	/* and the sync flush's empty block */
	if (pmd_reserve(&z->dbuf, &z->dcap, bound) < 0)
		return NULL;
	z->zd.next_in = (Bytef *)(uintptr_t)in;
	z->zd.avail_in = (uInt)len;
	z->zd.next_out = z->dbuf;
	z->zd.avail_out = (uInt)bound;
	if (deflate(&z->zd, Z_SYNC_FLUSH) != Z_OK || z->zd.avail_in != 0 || z->zd.avail_out == 0)
		return NULL;
	n = bound - z->zd.avail_out;
	if (n >= 4 && memcmp(z->dbuf + n - 4, "\0\0\377\377", 4) == 0)
		n -= 4;
	*outlen = n;
	return z->dbuf;
}

const uint8_t *
wsc_pmd_inflate(struct wsc_pmd *z, const uint8_t *in, size_t len, uint64_t max, size_t *outlen,
    const char **why)
{
	static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
	const uint8_t *part[2] = { in, tail };
	size_t partlen[2] = { len, sizeof(tail) }, have = 0;
	int rc;

	*why = "out of memory";
	if (len > UINT32_MAX / 2 || max > UINT32_MAX / 2) {
		*why = "compressed message too long";
		return NULL;
	}
	if (!z->zi_ready) {
		memset(&z->zi, 0, sizeof(z->zi));
		if (inflateInit2(&z->zi, -15) != Z_OK)
			return NULL;
		z->zi_ready = 1;
	} else if (inflateReset(&z->zi) != Z_OK)
		return NULL;
	/* RFC 7692 7.2.2: append 00 00 ff ff, then inflate; the output may grow to max. */
	for (int i = 0; i < 2; i++) {
		z->zi.next_in = (Bytef *)(uintptr_t)part[i];
		z->zi.avail_in = (uInt)partlen[i];
		do {
			if (have == z->icap) {
				size_t cap = z->icap ? z->icap * 2 : 1024;

				if (cap > max + 1)
					cap = (size_t)max + 1;
				if (cap <= have || pmd_reserve(&z->ibuf, &z->icap, cap) < 0)
					return NULL;
			}
			z->zi.next_out = z->ibuf + have;
			z->zi.avail_out = (uInt)(z->icap - have);
			rc = inflate(&z->zi, Z_SYNC_FLUSH);
			have = z->icap - z->zi.avail_out;
			if (have > max) {
				*why = "inflated message over the size limit";
				return NULL;
			}
			if (rc == Z_STREAM_END)
				goto done;	/* a final block: what follows is not ours to read */
			if ((rc != Z_OK && rc != Z_BUF_ERROR) ||
			    (rc == Z_BUF_ERROR && z->zi.avail_in > 0 && z->zi.avail_out > 0)) {
				*why = "bad deflate data";
				return NULL;
			}
		} while (z->zi.avail_in > 0 || z->zi.avail_out == 0);
	}
done:
	*outlen = have;
	return z->ibuf != NULL ? z->ibuf : (const uint8_t *)"";
}
