/*
 * deflate.c: RFC 7692 negotiation and the per-worker zlib streams.
 *
 * We always answer server_no_context_takeover (compressing each message on
 * its own is what lets a broadcast be compressed once) and
 * client_no_context_takeover (so the client's messages can be inflated with
 * one shared stream, and an idle connection holds no zlib memory at all).
 * zlib cannot compress with an 8-bit window, so offers that demand
 * server_max_window_bits=8 are declined.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "deflate.h"

static z_stream zd[16];		/* deflate, by window bits 9..15 (made on first use) */
static int zd_ready[16];
static z_stream zi;		/* inflate, largest window */
static int zi_ready;
static int zlevel = 6;

/* Trim spaces and tabs from both ends of [*s, *e). */
static void
trim(const char **s, const char **e)
{
	while (*s < *e && (**s == ' ' || **s == '\t'))
		(*s)++;
	while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
		(*e)--;
}

/* Parse "8".."15" (optionally quoted); -1 if not. */
static int
bits_value(const char *v, const char *e)
{
	int n = 0;

	if (e - v >= 2 && *v == '"' && e[-1] == '"') {
		v++;
		e--;
	}
	if (v == e || e - v > 2)
		return -1;
	for (const char *p = v; p < e; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		n = n * 10 + (*p - '0');
	}
	if ((e - v == 2 && *v == '0') || n < 8 || n > 15)
		return -1;
	return n;
}

/*
 * Judge one offer [s, e): 1 and p filled if acceptable, 0 if declined. An
 * unknown or repeated parameter or a bad value declines the offer (7.1).
 */
static int
judge(const char *s, const char *e, const struct deflate_config *cf, struct deflate_params *p, int *sbits_out)
{
	const char *semi, *name_e, *eq;
	int snc = 0, cnc = 0, sbits = 0, cbits = 0;

	if ((semi = memchr(s, ';', (size_t)(e - s))) == NULL)
		semi = e;
	name_e = semi;
	trim(&s, &name_e);
	if (name_e - s != 18 || strncasecmp(s, "permessage-deflate", 18) != 0)
		return 0;
	for (s = semi; s < e; s = semi) {
		const char *ps = s + 1, *pe, *v = NULL, *ve = NULL;

		if ((semi = memchr(ps, ';', (size_t)(e - ps))) == NULL)
			semi = e;
		pe = semi;
		if ((eq = memchr(ps, '=', (size_t)(pe - ps))) != NULL) {
			v = eq + 1;
			ve = pe;
			pe = eq;
			trim(&v, &ve);
		}
		trim(&ps, &pe);
		if (pe - ps == 26 && strncasecmp(ps, "server_no_context_takeover", 26) == 0) {
			if (snc++ || v != NULL)
				return 0;
		} else if (pe - ps == 26 && strncasecmp(ps, "client_no_context_takeover", 26) == 0) {
			if (cnc++ || v != NULL)
				return 0;
		} else if (pe - ps == 22 && strncasecmp(ps, "server_max_window_bits", 22) == 0) {
			if (sbits != 0 || v == NULL || (sbits = bits_value(v, ve)) < 0)
				return 0;
		} else if (pe - ps == 22 && strncasecmp(ps, "client_max_window_bits", 22) == 0) {
			/* Any value is fine: one inflater with a 15-bit window reads them all. */
			if (cbits != 0 || (v != NULL && bits_value(v, ve) < 0))
				return 0;
			cbits = 1;
		} else
			return 0;
	}
	if (sbits == 8)
		return 0;	/* zlib cannot compress with a 256-byte window */
	memset(p, 0, sizeof(*p));
	p->enabled = 1;
	p->server_bits = sbits > 0 && sbits < cf->window_bits ? sbits : cf->window_bits;
	p->client_bits = 15;
	p->client_no_context = 1;
	*sbits_out = sbits;
	return 1;
}

int
deflate_negotiate(const char *offers, size_t len, const struct deflate_config *cf, struct deflate_params *p,
    char *resp, size_t resplen)
{
	const char *s = offers, *e = offers + len, *comma;
	int n, sbits;

	for (; s < e; s = comma + 1) {
		/* Offers are comma-separated; parameter values here never hold commas. */
		if ((comma = memchr(s, ',', (size_t)(e - s))) == NULL)
			comma = e;
		if (judge(s, comma, cf, p, &sbits)) {
			/*
			 * Both no_context_takeover parameters always (7.1.1); the
			 * window bits only echoed when offered (7.1.2.1), and never a
			 * client_max_window_bits: we need no limit on the client.
			 */
			n = snprintf(resp, resplen,
			    "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
			if (sbits > 0 && n > 0 && (size_t)n < resplen)
				snprintf(resp + n, resplen - (size_t)n, "; server_max_window_bits=%d", p->server_bits);
			return 1;
		}
		if (comma == e)
			break;
	}
	memset(p, 0, sizeof(*p));
	return 0;
}

int
deflate_init(int level, int max_bits)
{
	zlevel = level;
	(void)max_bits;
	if (!zi_ready) {
		memset(&zi, 0, sizeof(zi));
		if (inflateInit2(&zi, -15) != Z_OK)
			return -1;
		zi_ready = 1;
	}
	return 0;
}

void
deflate_free(void)
{
	for (int b = 0; b < 16; b++) {
		if (zd_ready[b]) {
			deflateEnd(&zd[b]);
			zd_ready[b] = 0;
		}
	}
	if (zi_ready) {
		inflateEnd(&zi);
		zi_ready = 0;
	}
}

size_t
deflate_bound(size_t inlen)
{
	return inlen + inlen / 1000 + 64;
}

long
deflate_compress(int bits, const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	z_stream *z;
	size_t n;

	if (bits < 9 || bits > 15)
		return -1;
	z = &zd[bits];
	if (!zd_ready[bits]) {
		memset(z, 0, sizeof(*z));
		if (deflateInit2(z, zlevel, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			return -1;
		zd_ready[bits] = 1;
	} else if (deflateReset(z) != Z_OK)
		return -1;
	z->next_in = (Bytef *)(uintptr_t)in;
	z->avail_in = (uInt)inlen;
	z->next_out = out;
	z->avail_out = (uInt)outlen;
	if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0 || z->avail_out == 0)
		return -1;
	n = outlen - z->avail_out;
	/* RFC 7692 7.2.1: drop the 00 00 ff ff that ends a sync flush. */
	if (n < 4 || memcmp(out + n - 4, "\x00\x00\xff\xff", 4) != 0)
		return -1;
	return (long)(n - 4);
}

int
deflate_inflate(const uint8_t *in, size_t inlen, size_t max, uint8_t **out, size_t *outcap, size_t *outlen)
{
	static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
	size_t have = 0;
	int rc = Z_OK;

	if (!zi_ready || inflateReset(&zi) != Z_OK)
		return DEFLATE_BAD;
	/* The message, then the 00 00 ff ff the sender removed (RFC 7692 7.2.2). */
	for (int part = 0; part < 2; part++) {
		zi.next_in = (Bytef *)(uintptr_t)(part == 0 ? in : tail);
		zi.avail_in = (uInt)(part == 0 ? inlen : sizeof(tail));
		while (zi.avail_in > 0 && rc != Z_STREAM_END) {
			if (have == *outcap) {
				size_t ncap = *outcap < 4096 ? 4096 : *outcap * 2;
				uint8_t *nb;

				if (ncap > max + 1)
					ncap = max + 1;	/* one byte past the limit tells us it was passed */
				if (ncap <= have)
					return DEFLATE_TOO_BIG;
				if ((nb = realloc(*out, ncap)) == NULL)
					return DEFLATE_TOO_BIG;
				*out = nb;
				*outcap = ncap;
			}
			zi.next_out = *out + have;
			zi.avail_out = (uInt)(*outcap - have);
			rc = inflate(&zi, Z_SYNC_FLUSH);
			have = *outcap - zi.avail_out;
			if (have > max)
				return DEFLATE_TOO_BIG;
			if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
				return DEFLATE_BAD;
			if (rc == Z_BUF_ERROR && zi.avail_out != 0)
				return DEFLATE_BAD;
		}
	}
	*outlen = have;
	return DEFLATE_OK;
}
