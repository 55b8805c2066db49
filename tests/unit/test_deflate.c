/*
 * test_deflate.c: permessage-deflate (RFC 7692) in deflate.c: negotiation of
 * every parameter with and without values, declines and the fallback to the
 * next offer, header whitespace and case; compress/inflate round trips at
 * every window, the 00 00 ff ff trailer rule, the exact inflate bound and
 * invalid data. Compressed output is also checked with an independent zlib
 * inflater, and deflate_inflate is fed what an independent deflater made.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "deflate.h"
#include "tap.h"

#define BASE "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

/* ---- negotiation ---- */

struct neg {
	const char	*offers;
	int		 window;	/* deflate_window_bits */
	const char	*resp;		/* NULL: declined */
	int		 server_bits;	/* the window we compress with */
};

static const struct neg negs[] = {
	/* The bare offer and each parameter alone. */
	{ "permessage-deflate", 15, BASE, 15 },
	{ "permessage-deflate; server_no_context_takeover", 15, BASE, 15 },
	{ "permessage-deflate; client_no_context_takeover", 15, BASE, 15 },
	{ "permessage-deflate; client_max_window_bits", 15, BASE, 15 },
	{ "permessage-deflate; client_max_window_bits=8", 15, BASE, 15 },
	{ "permessage-deflate; client_max_window_bits=9", 15, BASE, 15 },
	{ "permessage-deflate; client_max_window_bits=12", 15, BASE, 15 },
	{ "permessage-deflate; client_max_window_bits=15", 15, BASE, 15 },
	{ "permessage-deflate; server_max_window_bits=9", 15, BASE "; server_max_window_bits=9", 9 },
	{ "permessage-deflate; server_max_window_bits=10", 15, BASE "; server_max_window_bits=10", 10 },
	{ "permessage-deflate; server_max_window_bits=11", 15, BASE "; server_max_window_bits=11", 11 },
	{ "permessage-deflate; server_max_window_bits=12", 15, BASE "; server_max_window_bits=12", 12 },
	{ "permessage-deflate; server_max_window_bits=13", 15, BASE "; server_max_window_bits=13", 13 },
	{ "permessage-deflate; server_max_window_bits=14", 15, BASE "; server_max_window_bits=14", 14 },
	{ "permessage-deflate; server_max_window_bits=15", 15, BASE "; server_max_window_bits=15", 15 },
	/* Quoted values are the same values (RFC 7692 7.1). */
	{ "permessage-deflate; server_max_window_bits=\"10\"", 15, BASE "; server_max_window_bits=10", 10 },
	{ "permessage-deflate; client_max_window_bits=\"10\"", 15, BASE, 15 },
	/* The answer is min(offered, deflate_window_bits). */
	{ "permessage-deflate; server_max_window_bits=15", 10, BASE "; server_max_window_bits=10", 10 },
	{ "permessage-deflate; server_max_window_bits=12", 10, BASE "; server_max_window_bits=10", 10 },
	{ "permessage-deflate; server_max_window_bits=9", 10, BASE "; server_max_window_bits=9", 9 },
	{ "permessage-deflate; server_max_window_bits=9", 9, BASE "; server_max_window_bits=9", 9 },
	{ "permessage-deflate", 10, BASE, 10 },
	{ "permessage-deflate", 9, BASE, 9 },
	/* Every parameter together, in any order. */
	{ "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
	  "server_max_window_bits=11; client_max_window_bits=13", 15, BASE "; server_max_window_bits=11", 11 },
	{ "permessage-deflate; client_max_window_bits; server_max_window_bits=12; "
	  "client_no_context_takeover; server_no_context_takeover", 15, BASE "; server_max_window_bits=12", 12 },
	{ "permessage-deflate; client_max_window_bits; client_no_context_takeover", 15, BASE, 15 },
	{ "permessage-deflate; server_no_context_takeover; client_max_window_bits=9", 15, BASE, 15 },
	/* Whitespace and case. */
	{ "  permessage-deflate  ", 15, BASE, 15 },
	{ "\tpermessage-deflate\t;\tclient_max_window_bits\t", 15, BASE, 15 },
	{ "permessage-deflate;server_max_window_bits=10;client_max_window_bits", 15,
	  BASE "; server_max_window_bits=10", 10 },
	{ "permessage-deflate ; server_max_window_bits = 10 ; client_no_context_takeover", 15,
	  BASE "; server_max_window_bits=10", 10 },
	{ "PerMessage-Deflate; Server_Max_Window_Bits=12; CLIENT_NO_CONTEXT_TAKEOVER", 15,
	  BASE "; server_max_window_bits=12", 12 },
	{ "PERMESSAGE-DEFLATE; SERVER_NO_CONTEXT_TAKEOVER; Client_Max_Window_Bits", 15, BASE, 15 },
	/* Declines: unknown, repeated, bad values, missing values, 8 for the server. */
	{ "permessage-deflate; foo", 15, NULL, 0 },
	{ "permessage-deflate; foo=1", 15, NULL, 0 },
	{ "permessage-deflate;", 15, NULL, 0 },
	{ "permessage-deflate; ;", 15, NULL, 0 },
	{ "permessage-deflate; server_no_context_takeover; server_no_context_takeover", 15, NULL, 0 },
	{ "permessage-deflate; client_no_context_takeover; client_no_context_takeover", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", 15, NULL, 0 },
	{ "permessage-deflate; client_max_window_bits; client_max_window_bits", 15, NULL, 0 },
	{ "permessage-deflate; client_max_window_bits=10; client_max_window_bits", 15, NULL, 0 },
	{ "permessage-deflate; server_no_context_takeover=1", 15, NULL, 0 },
	{ "permessage-deflate; server_no_context_takeover=", 15, NULL, 0 },
	{ "permessage-deflate; client_no_context_takeover=true", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=7", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=8", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=16", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=0", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=010", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=abc", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=-10", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=1 0", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=\"\"", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=\"10", 15, NULL, 0 },
	{ "permessage-deflate; client_max_window_bits=7", 15, NULL, 0 },
	{ "permessage-deflate; client_max_window_bits=16", 15, NULL, 0 },
	{ "permessage-deflate; client_max_window_bits=abc", 15, NULL, 0 },
	{ "permessage-deflate; client_max_window_bits=", 15, NULL, 0 },
	{ "permessage-deflate; client_max_window_bits=100", 15, NULL, 0 },
	/* Not our extension. */
	{ "x-webkit-deflate-frame", 15, NULL, 0 },
	{ "permessage-deflatex", 15, NULL, 0 },
	{ "permessage", 15, NULL, 0 },
	{ "deflate-frame; server_max_window_bits=10", 15, NULL, 0 },
	{ "", 15, NULL, 0 },
	{ " ", 15, NULL, 0 },
	{ ",", 15, NULL, 0 },
	/* Fallback: the first acceptable offer wins, declined ones are skipped. */
	{ "permessage-deflate; server_max_window_bits=8, permessage-deflate", 15, BASE, 15 },
	{ "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9", 15,
	  BASE "; server_max_window_bits=9", 9 },
	{ "permessage-deflate; foo, permessage-deflate; client_max_window_bits", 15, BASE, 15 },
	{ "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=11", 15,
	  BASE "; server_max_window_bits=11", 11 },
	{ "permessage-deflate; server_max_window_bits=abc,permessage-deflate; server_max_window_bits=7,"
	  "  permessage-deflate ; server_max_window_bits=13", 15, BASE "; server_max_window_bits=13", 13 },
	{ "permessage-deflate; server_max_window_bits=12, permessage-deflate", 15,
	  BASE "; server_max_window_bits=12", 12 },
	{ "permessage-deflate, permessage-deflate; server_max_window_bits=12", 15, BASE, 15 },
	{ ", permessage-deflate", 15, BASE, 15 },
	{ "permessage-deflate; x=1,", 15, NULL, 0 },
	{ "foo, bar; baz=1, permessage-deflate; server_no_context_takeover=1", 15, NULL, 0 },
	{ "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits=16, "
	  "permessage-deflate; server_no_context_takeover; server_no_context_takeover", 15, NULL, 0 },
};

static void
test_negotiate(void)
{
	for (size_t i = 0; i < sizeof(negs) / sizeof(negs[0]); i++) {
		const struct neg *t = &negs[i];
		struct deflate_config cf = { t->window };
		struct deflate_params p;
		char resp[256];
		int rc;

		memset(&p, 0xa5, sizeof(p));
		strcpy(resp, "untouched");
		rc = deflate_negotiate(t->offers, strlen(t->offers), &cf, &p, resp, sizeof(resp));
		if (t->resp == NULL) {
			is_int(rc, 0, "declined (window %d): [%s]", t->window, t->offers);
			ok(p.enabled == 0 && p.server_bits == 0, "declined leaves params cleared: [%s]", t->offers);
			continue;
		}
		is_int(rc, 1, "accepted (window %d): [%s]", t->window, t->offers);
		is_str(resp, t->resp, "response to [%s]", t->offers);
		ok(p.enabled == 1 && p.client_no_context == 1 && p.client_bits == 15,
		    "params enabled, client_no_context, client_bits 15: [%s]", t->offers);
		is_int(p.server_bits, t->server_bits, "server window for [%s]", t->offers);
		ok(strstr(resp, "client_max_window_bits") == NULL, "never answers client_max_window_bits: [%s]",
		    t->offers);
	}
}

/* Only the first len bytes are the header value: nothing past it is read. */
static void
test_negotiate_bounds(void)
{
	static const char hdr[] = "permessage-deflate; server_max_window_bits=10; foo";
	struct deflate_config cf = { 15 };
	struct deflate_params p;
	char resp[256], *copy;
	size_t n = strlen("permessage-deflate; server_max_window_bits=10");

	/* An exact-size heap copy without a NUL: ASan catches any read past it. */
	copy = malloc(n);
	memcpy(copy, hdr, n);
	is_int(deflate_negotiate(copy, n, &cf, &p, resp, sizeof(resp)), 1, "value bounded by len, not NUL");
	is_str(resp, BASE "; server_max_window_bits=10", "response for the bounded value");
	/* Cut inside the value: "server_max_window_bits=1" is 1, a bad value. */
	is_int(deflate_negotiate(copy, n - 1, &cf, &p, resp, sizeof(resp)), 0, "value cut to =1 declined");
	/* Cut to "server_max_window_bits=": no value, declined. */
	is_int(deflate_negotiate(copy, n - 2, &cf, &p, resp, sizeof(resp)), 0, "value cut to = declined");
	free(copy);
	is_int(deflate_negotiate(hdr, strlen(hdr), &cf, &p, resp, sizeof(resp)), 0, "with the foo it is declined");
	is_int(deflate_negotiate("permessage-deflate", 0, &cf, &p, resp, sizeof(resp)), 0, "empty header value");
}

/* ---- independent zlib helpers ---- */

/* Inflate raw deflate data (plus the trailer) with plain zlib; -1 on error. */
static long
ref_inflate(int bits, const uint8_t *in, size_t inlen, int add_tail, uint8_t *out, size_t outlen)
{
	static const uint8_t tail[4] = { 0x00, 0x00, 0xff, 0xff };
	z_stream z;
	int rc;
	long n;

	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -bits) != Z_OK)
		return -1;
	z.next_out = out;
	z.avail_out = (uInt)outlen;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)inlen;
	rc = inflate(&z, Z_SYNC_FLUSH);
	if (rc == Z_OK && add_tail) {
		z.next_in = (Bytef *)(uintptr_t)tail;
		z.avail_in = 4;
		rc = inflate(&z, Z_SYNC_FLUSH);
	}
	n = rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR ? (long)(outlen - z.avail_out) : -1;
	inflateEnd(&z);
	return n;
}

/* Compress with plain zlib at bits/level; flush is Z_SYNC_FLUSH or Z_FINISH. */
static size_t
ref_deflate(int bits, int level, int flush, const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	z_stream z;
	size_t n;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, level, Z_DEFLATED, -bits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return 0;
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)inlen;
	z.next_out = out;
	z.avail_out = (uInt)outlen;
	deflate(&z, flush);
	n = outlen - z.avail_out;
	deflateEnd(&z);
	return n;
}

static void
fill_text(uint8_t *p, size_t n, unsigned seed)
{
	static const char *words[] = { "the ", "kettle ", "is ", "on, ", "room ", "chat ", "hello ",
	    "deflate ", "window ", "bits\n", "é ", "€ ", "😀 " };
	size_t i = 0;

	while (i < n) {
		const char *w;
		size_t l;

		seed = seed * 1103515245u + 12345u;
		w = words[(seed >> 16) % (sizeof(words) / sizeof(words[0]))];
		l = strlen(w);
		if (l > n - i)
			l = n - i;
		memcpy(p + i, w, l);
		i += l;
	}
}

static void
fill_random(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* ---- round trips ---- */

static void
test_round_trips(void)
{
	static const size_t sizes[] = { 0, 1, 2, 63, 64, 1000, 4095, 4096, 4097, 65535, 65536, 300000 };
	size_t big = 300000, cap = 0, olen;
	uint8_t *in = malloc(big), *z = malloc(deflate_bound(big)), *ref = malloc(big + 16), *out = NULL;
	int all_ok = 1;

	for (int bits = 9; bits <= 15; bits++) {
		for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
			for (int kind = 0; kind < 3; kind++) {
				size_t n = sizes[si];
				long clen;
				int rc;

				if (kind == 0)
					fill_text(in, n, (unsigned)(n + (size_t)bits));
				else if (kind == 1)
					memset(in, 'z', n);
				else
					fill_random(in, n, (unsigned)n);
				clen = deflate_compress(bits, in, n, z, deflate_bound(n));
				if (clen < 0) {
					/* Only incompressible data may miss the bound; it is sent plain. */
					if (kind != 2) {
						ok(0, "bits %d kind %d size %zu: deflate_compress failed", bits, kind, n);
						all_ok = 0;
					}
					continue;
				}
				/* The trailer rule: the sync flush's 00 00 ff ff is never sent. */
				if (clen >= 4 && memcmp(z + clen - 4, "\x00\x00\xff\xff", 4) == 0) {
					ok(0, "bits %d kind %d size %zu: output ends with 00 00 ff ff", bits, kind, n);
					all_ok = 0;
				}
				/* An independent inflater with exactly that window reads it back. */
				if (ref_inflate(bits, z, (size_t)clen, 1, ref, big + 16) != (long)n ||
				    (n > 0 && memcmp(ref, in, n) != 0)) {
					ok(0, "bits %d kind %d size %zu: zlib with window %d cannot read it", bits, kind,
					    n, bits);
					all_ok = 0;
				}
				rc = deflate_inflate(z, (size_t)clen, n, &out, &cap, &olen);
				if (rc != DEFLATE_OK || olen != n || (n > 0 && memcmp(out, in, n) != 0)) {
					ok(0, "bits %d kind %d size %zu: deflate_inflate rc %d len %zu", bits, kind, n, rc,
					    olen);
					all_ok = 0;
				}
			}
		}
		ok(all_ok, "window %d: text, runs and random bytes of 0..300000 round-trip", bits);
	}
	/* Highly compressible data really is compressed, and smaller windows do not break it. */
	memset(in, 'a', 65536);
	for (int bits = 9; bits <= 15; bits++) {
		long clen = deflate_compress(bits, in, 65536, z, deflate_bound(65536));

		ok(clen > 0 && clen < 1024, "window %d: 64 KiB of 'a' compresses to %ld bytes", bits, clen);
	}
	free(in);
	free(z);
	free(ref);
	free(out);
}

/* RFC 7692 7.2.1/7.2.3: empty message, trailer, BFINAL, and inflating what others made. */
static void
test_trailer_rule(void)
{
	uint8_t in[5000], z[6000], *out = NULL;
	size_t cap = 0, olen = 0, n;
	long clen;

	/* The empty message compresses to the single byte 00 (7.2.3.6). */
	clen = deflate_compress(15, (const uint8_t *)"", 0, z, sizeof(z));
	is_int(clen, 1, "empty message compresses to one byte");
	is_int(z[0], 0x00, "that byte is 00");
	is_int(deflate_inflate(z, 1, 100, &out, &cap, &olen), DEFLATE_OK, "inflate the 00 byte");
	is_int(olen, 0, "to nothing");
	/* The RFC's own example: "Hello" (7.2.3.1). */
	clen = deflate_compress(15, (const uint8_t *)"Hello", 5, z, sizeof(z));
	ok(clen > 0, "compress Hello");
	is_int(deflate_inflate((const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 100, &out, &cap, &olen),
	    DEFLATE_OK, "inflate the RFC's Hello");
	ok(olen == 5 && memcmp(out, "Hello", 5) == 0, "RFC 7692 7.2.3.1 Hello");
	/* 7.2.3.3: a stored block "Hello" (no compression) is accepted. */
	is_int(deflate_inflate((const uint8_t *)"\x00\x05\x00\xfa\xffHello\x00", 11, 100, &out, &cap, &olen),
	    DEFLATE_OK, "inflate a stored-block Hello");
	ok(olen == 5 && memcmp(out, "Hello", 5) == 0, "RFC 7692 7.2.3.3 stored Hello");
	/* 7.2.3.4: "Hello" in two blocks. */
	is_int(deflate_inflate((const uint8_t *)"\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00", 13, 100,
	    &out, &cap, &olen), DEFLATE_OK, "inflate Hello in two blocks");
	ok(olen == 5 && memcmp(out, "Hello", 5) == 0, "RFC 7692 7.2.3.4 two-block Hello");
	/* 7.2.3.5: a final block (BFINAL set), as a Z_FINISH sender makes. */
	is_int(deflate_inflate((const uint8_t *)"\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 8, 100, &out, &cap, &olen),
	    DEFLATE_OK, "inflate a BFINAL Hello");
	ok(olen == 5 && memcmp(out, "Hello", 5) == 0, "RFC 7692 7.2.3.5 BFINAL Hello");

	/* Whatever a client's zlib makes, at every window and level, with the trailer stripped or not. */
	fill_text(in, sizeof(in), 7);
	for (int bits = 9; bits <= 15; bits++) {
		int good = 1;

		for (int level = 1; level <= 9; level += 4) {
			n = ref_deflate(bits, level, Z_SYNC_FLUSH, in, sizeof(in), z, sizeof(z));
			if (n < 4 || memcmp(z + n - 4, "\x00\x00\xff\xff", 4) != 0)
				good = 0;
			/* Stripped, as RFC 7692 says. */
			if (deflate_inflate(z, n - 4, sizeof(in), &out, &cap, &olen) != DEFLATE_OK || olen != sizeof(in) ||
			    memcmp(out, in, sizeof(in)) != 0)
				good = 0;
			/* Left on: an extra empty stored block is harmless. */
			if (deflate_inflate(z, n, sizeof(in), &out, &cap, &olen) != DEFLATE_OK || olen != sizeof(in) ||
			    memcmp(out, in, sizeof(in)) != 0)
				good = 0;
			/* Z_FINISH: ends with a final block (7.2.3.5). */
			n = ref_deflate(bits, level, Z_FINISH, in, sizeof(in), z, sizeof(z));
			if (deflate_inflate(z, n, sizeof(in), &out, &cap, &olen) != DEFLATE_OK || olen != sizeof(in) ||
			    memcmp(out, in, sizeof(in)) != 0)
				good = 0;
		}
		ok(good, "window %d: a client's sync-flushed (stripped or not) and finished data inflate", bits);
	}
	/* No context between messages: the same message inflates the same twice, after a different one. */
	n = ref_deflate(15, 6, Z_SYNC_FLUSH, in, 1000, z, sizeof(z));
	is_int(deflate_inflate(z, n - 4, 5000, &out, &cap, &olen), DEFLATE_OK, "first message");
	is_int(deflate_inflate((const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 100, &out, &cap, &olen),
	    DEFLATE_OK, "second message");
	is_int(deflate_inflate(z, n - 4, 5000, &out, &cap, &olen), DEFLATE_OK, "the first again");
	ok(olen == 1000 && memcmp(out, in, 1000) == 0, "the same bytes: no inflate context kept");
	free(out);
}

/* The inflated size is bounded exactly: max bytes are fine, max+1 is TOO_BIG. */
static void
test_inflate_bound(void)
{
	static const size_t maxes[] = { 1, 125, 4095, 4096, 4097, 8191, 8192, 8193, 65536, 100000, 1048576 };
	size_t zcap = deflate_bound(1048577) + 64, cap, olen;
	uint8_t *in = malloc(1048577), *z = malloc(zcap), *out;
	int rc;

	fill_text(in, 1048577, 3);
	for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
		size_t max = maxes[i], n;

		/* A fresh buffer, and one already bigger than max from an earlier message. */
		for (int fresh = 0; fresh < 2; fresh++) {
			out = NULL;
			cap = 0;
			if (!fresh) {
				cap = max + 5000;
				out = malloc(cap);
			}
			n = ref_deflate(15, 6, Z_SYNC_FLUSH, in, max, z, zcap) - 4;
			olen = 12345;
			rc = deflate_inflate(z, n, max, &out, &cap, &olen);
			is_int(rc, DEFLATE_OK, "max %zu (%s buffer): exactly max bytes inflate", max, fresh ? "new" : "big");
			ok(olen == max && memcmp(out, in, max) == 0, "max %zu: the bytes are right", max);
			if (fresh)
				ok(cap <= max + 1, "max %zu: the buffer grew to %zu, not past max+1", max, cap);
			n = ref_deflate(15, 6, Z_SYNC_FLUSH, in, max + 1, z, zcap) - 4;
			rc = deflate_inflate(z, n, max, &out, &cap, &olen);
			is_int(rc, DEFLATE_TOO_BIG, "max %zu (%s buffer): max+1 bytes are too big", max,
			    fresh ? "new" : "big");
			if (fresh)
				ok(cap <= max + 1, "max %zu: too big without growing past max+1 (%zu)", max, cap);
			free(out);
		}
	}
	/* A bomb: 64 MiB of zeros, about 64 KiB compressed, stops at the limit. */
	{
		size_t big = 64u << 20, n;
		uint8_t *zeros = calloc(1, big), *zz = malloc(deflate_bound(big));

		n = ref_deflate(15, 9, Z_SYNC_FLUSH, zeros, big, zz, deflate_bound(big)) - 4;
		out = NULL;
		cap = 0;
		rc = deflate_inflate(zz, n, 1 << 20, &out, &cap, &olen);
		is_int(rc, DEFLATE_TOO_BIG, "%zu bytes inflating to 64 MiB with max 1 MiB: too big", n);
		ok(cap <= (1u << 20) + 1, "the bomb's buffer stopped at %zu bytes", cap);
		/* The shared inflater still works after being cut off mid-stream. */
		rc = deflate_inflate((const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 100, &out, &cap, &olen);
		ok(rc == DEFLATE_OK && olen == 5 && memcmp(out, "Hello", 5) == 0, "inflater fine after a bomb");
		free(out);
		free(zeros);
		free(zz);
	}
	free(in);
	free(z);
}

/* Invalid data is DEFLATE_BAD, and the shared inflater recovers. */
static void
test_garbage(void)
{
	static const struct {
		const char	*name;
		const char	*bytes;
		size_t		 len;
	} bad[] = {
		{ "reserved block type 11", "\x07\x00", 2 },
		{ "reserved block type 11, not final", "\x06", 1 },
		{ "stored block LEN/NLEN mismatch", "\x00\x05\x00\x00\x00Hello", 10 },
		{ "all ff", "\xff\xff\xff\xff\xff\xff\xff\xff", 8 },
		{ "distance too far back", "\x4b\x04\x42\x00", 4 },
		{ "text then garbage", "\xf2\x48\xcd\xc9\xc9\x07\x00\xff\xff\xff\xff", 11 },
	};
	uint8_t *out = NULL;
	size_t cap = 0, olen;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = deflate_inflate((const uint8_t *)bad[i].bytes, bad[i].len, 1 << 20, &out, &cap, &olen);

		is_int(rc, DEFLATE_BAD, "garbage: %s", bad[i].name);
		rc = deflate_inflate((const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 100, &out, &cap, &olen);
		ok(rc == DEFLATE_OK && olen == 5 && memcmp(out, "Hello", 5) == 0, "inflater fine after %s", bad[i].name);
	}
	/* Random bytes are never accepted as anything but DEFLATE_OK/DEFLATE_BAD, and never crash. */
	{
		uint8_t junk[512];
		int others = 0, bads = 0;

		for (unsigned seed = 1; seed <= 300; seed++) {
			int rc;

			fill_random(junk, sizeof(junk), seed);
			rc = deflate_inflate(junk, sizeof(junk), 1 << 20, &out, &cap, &olen);
			if (rc == DEFLATE_BAD)
				bads++;
			else if (rc != DEFLATE_OK)
				others++;
		}
		ok(others == 0 && bads > 250, "300 random inputs: %d bad, none odd", bads);
	}
	free(out);
}

static void
test_compress_edges(void)
{
	uint8_t in[2000], z[4000];
	long a, b;

	fill_text(in, sizeof(in), 11);
	is_int(deflate_compress(8, in, 100, z, sizeof(z)), -1, "window 8: refused");
	is_int(deflate_compress(16, in, 100, z, sizeof(z)), -1, "window 16: refused");
	is_int(deflate_compress(0, in, 100, z, sizeof(z)), -1, "window 0: refused");
	is_int(deflate_compress(15, in, sizeof(in), z, 10), -1, "output that does not fit: -1");
	a = deflate_compress(15, in, sizeof(in), z, sizeof(z));
	ok(a > 0, "the same stream works after a short buffer");
	/* No context: compressing the same message twice gives the same bytes. */
	{
		uint8_t z2[4000];

		b = deflate_compress(15, in, sizeof(in), z2, sizeof(z2));
		ok(a == b && memcmp(z, z2, (size_t)a) == 0, "same message, same bytes (no context kept)");
	}
	/* Exactly the needed size (plus the 4-byte trailer) is not enough: zlib needs room to finish. */
	ok(deflate_compress(15, in, sizeof(in), z, (size_t)a + 4) == -1 || deflate_compress(15, in, sizeof(in), z,
	    (size_t)a + 4) == a, "a tight buffer either fits or fails cleanly");
	ok(deflate_compress(15, in, sizeof(in), z, (size_t)a + 5) == a, "one spare byte is enough");
	ok(deflate_bound(0) >= 5, "deflate_bound(0) fits an empty sync flush");
}

int
main(void)
{
	if (deflate_init(3, 15) != 0) {
		printf("Bail out! deflate_init failed\n");
		return 1;
	}
	test_negotiate();
	test_negotiate_bounds();
	test_round_trips();
	test_trailer_rule();
	test_inflate_bound();
	test_garbage();
	test_compress_edges();
	/* deflate_init twice (a reload) is harmless; deflate_free then deflate_init works again. */
	is_int(deflate_init(6, 15), 0, "deflate_init again");
	deflate_free();
	is_int(deflate_init(3, 15), 0, "deflate_init after deflate_free");
	{
		uint8_t *out = NULL;
		size_t cap = 0, olen;

		is_int(deflate_inflate((const uint8_t *)"\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 100, &out, &cap, &olen),
		    DEFLATE_OK, "inflate after re-init");
		free(out);
	}
	deflate_free();
	deflate_free();
	return tap_done();
}
