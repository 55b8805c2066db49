/*
 * test_ws_frame.c: the RFC 6455 frame codec: every length form, masking,
 * every protocol rule that fails a connection (with its close code), UTF-8
 * across fragments and calls, and split-invariance of the decoder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"
#include "tap.h"

#define FIN	0x80
#define RSV1	0x40
#define RSV2	0x20
#define RSV3	0x10

static const uint8_t mask_a[4] = { 0x37, 0xfa, 0x21, 0x3d };

/*
 * Build a client frame: b0 is FIN|RSV|opcode; form is 7, 16 or 64 to force a
 * length encoding (0: minimal). payload NULL writes no payload bytes.
 */
static size_t
mk(uint8_t *out, int b0, uint64_t len, int form, int masked, const void *payload, size_t plen)
{
	size_t o = 2;

	if (form == 0)
		form = len < 126 ? 7 : len <= 0xffff ? 16 : 64;
	out[0] = (uint8_t)b0;
	if (form == 7)
		out[1] = (uint8_t)len;
	else if (form == 16) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		o = 4;
	} else {
		out[1] = 127;
		for (int i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		o = 10;
	}
	if (masked) {
		out[1] |= 0x80;
		memcpy(out + o, mask_a, 4);
		o += 4;
	}
	if (payload != NULL) {
		for (size_t i = 0; i < plen; i++)
			out[o + i] = ((const uint8_t *)payload)[i] ^ (masked ? mask_a[i & 3] : 0);
		o += plen;
	}
	return o;
}

/* A masked frame with its whole payload. */
static size_t
fr(uint8_t *out, int b0, const void *payload, size_t plen)
{
	return mk(out, b0, plen, 0, 1, payload, plen);
}

/* ---- a normalised event log, independent of how the input was split ---- */

struct log {
	uint8_t	*p;
	size_t	 n, cap;
	uint8_t	*msg;		/* message being assembled from DATA pieces */
	size_t	 mlen, mcap;
	int	 in_msg;
	int	 bad_flags;	/* msg_start/msg_end inconsistencies */
	int	 err_code;
	size_t	 err_off;	/* stream offset just after the ERROR call */
	int	 loops_guard;
};

static void
lput(struct log *l, const void *p, size_t n)
{
	if (l->n + n > l->cap) {
		l->cap = (l->n + n) * 2 + 64;
		l->p = realloc(l->p, l->cap);
	}
	memcpy(l->p + l->n, p, n);
	l->n += n;
}

static void
lrec(struct log *l, char kind, int op, const uint8_t *d, size_t n)
{
	uint64_t n64 = n;
	uint8_t o = (uint8_t)op;

	lput(l, &kind, 1);
	lput(l, &o, 1);
	lput(l, &n64, 8);
	if (n > 0)
		lput(l, d, n);
}

static void
log_free(struct log *l)
{
	free(l->p);
	free(l->msg);
	memset(l, 0, sizeof(*l));
}

/* Handle one event into the log; returns 1 when decoding must stop. */
static int
log_event(struct log *l, const struct ws_event *ev)
{
	switch (ev->type) {
	case WS_EV_NEED:
		return 0;
	case WS_EV_DATA:
		if (ev->msg_start != !l->in_msg)
			l->bad_flags++;
		if (ev->msg_start)
			l->mlen = 0;
		l->in_msg = 1;
		if (l->mlen + ev->len > l->mcap) {
			l->mcap = (l->mlen + ev->len) * 2 + 64;
			l->msg = realloc(l->msg, l->mcap);
		}
		if (ev->len > 0)
			memcpy(l->msg + l->mlen, ev->data, ev->len);
		l->mlen += ev->len;
		if (ev->msg_end) {
			lrec(l, 'M', ev->opcode | (ev->rsv1 ? 0x40 : 0), l->msg, l->mlen);
			l->in_msg = 0;
		}
		return 0;
	case WS_EV_CONTROL:
		lrec(l, 'C', ev->opcode, ev->data, ev->len);
		return 0;
	case WS_EV_ERROR:
		lrec(l, 'E', 0, NULL, 0);
		l->err_code = ev->code;
		return 1;
	}
	return 1;
}

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/*
 * Decode in[0..n) fed in pieces: chunk 0 = one call, 1 = byte by byte,
 * k > 1 = random pieces of 1..k bytes. Fills l; returns the decoder's events.
 */
static void
run_dec(struct ws_decoder *d, const uint8_t *in, size_t n, size_t chunk, struct log *l)
{
	uint8_t *buf = malloc(n + 1);
	size_t pos = 0;

	memcpy(buf, in, n);
	memset(l, 0, sizeof(*l));
	while (pos < n) {
		size_t take = chunk == 0 ? n - pos : chunk == 1 ? 1 : 1 + (size_t)(rnd() % chunk);
		uint8_t *p = buf + pos;
		size_t left;
		struct ws_event ev;
		int guard = 0;

		if (take > n - pos)
			take = n - pos;
		left = take;
		for (;;) {
			size_t used = ws_decode(d, p, left, &ev);

			if (used > left) {
				l->loops_guard++;
				goto out;
			}
			p += used;
			left -= used;
			if (log_event(l, &ev)) {
				l->err_off = (size_t)(p - buf);
				goto out;
			}
			if (ev.type == WS_EV_NEED) {
				if (left != 0)
					l->loops_guard++;	/* NEED must mean "all consumed" */
				break;
			}
			if (++guard > 1000000) {
				l->loops_guard++;
				goto out;
			}
		}
		pos += take;
	}
out:
	free(buf);
}

/* Decode a stream in one call with a fresh decoder. */
static void
dec1(const uint8_t *in, size_t n, uint64_t max, struct log *l)
{
	struct ws_decoder d;

	ws_decoder_init(&d, max);
	run_dec(&d, in, n, 0, l);
}

/* Decode in one call and expect an error with code; returns the error offset. */
static size_t
expect_err(const uint8_t *in, size_t n, uint64_t max, int code, const char *what)
{
	struct log l;
	size_t off;

	dec1(in, n, max, &l);
	is_int(l.err_code, code, "%s -> %d", what, code);
	off = l.err_off;
	log_free(&l);
	return off;
}

/* Expect a stream to decode without error into exactly the given log. */
static int
log_is(const struct log *l, const char *kinds)
{
	size_t o = 0;

	for (const char *k = kinds; *k; k++) {
		uint64_t n64;

		if (o + 10 > l->n || l->p[o] != (uint8_t)*k)
			return 0;
		memcpy(&n64, l->p + o + 2, 8);
		o += 10 + (size_t)n64;
	}
	return o == l->n;
}

/* Payload of the i-th record in the log. */
static const uint8_t *
log_rec(const struct log *l, int i, size_t *len, int *op)
{
	size_t o = 0;

	for (;;) {
		uint64_t n64;

		if (o + 10 > l->n)
			return NULL;
		memcpy(&n64, l->p + o + 2, 8);
		if (i-- == 0) {
			*len = (size_t)n64;
			*op = l->p[o + 1];
			return l->p + o + 10;
		}
		o += 10 + (size_t)n64;
	}
}

/* ---- the tests ---- */

static void
test_unmask(void)
{
	uint8_t ref[64 + 8], buf[64 + 8], orig[64 + 8];
	static const uint64_t poss[] = { 0, 1, 2, 3, 4, 5, 6, 7, 1ULL << 32, (1ULL << 32) + 3, UINT64_MAX };
	int wrong = 0, cases = 0;

	for (size_t i = 0; i < sizeof(orig); i++)
		orig[i] = (uint8_t)(i * 37 + 11);
	for (size_t pi = 0; pi < sizeof(poss) / sizeof(poss[0]); pi++)
		for (size_t start = 0; start < 8; start++)
			for (size_t len = 0; len <= 64; len++) {
				memcpy(buf, orig, sizeof(buf));
				memcpy(ref, orig, sizeof(ref));
				for (size_t k = 0; k < len; k++)
					ref[start + k] ^= mask_a[(poss[pi] + k) & 3];
				ws_unmask(buf + start, len, mask_a, poss[pi]);
				cases++;
				if (memcmp(buf, ref, sizeof(buf)) != 0)
					wrong++;
			}
	is_int(wrong, 0, "ws_unmask equals a byte-wise XOR at %d offsets/lengths/alignments", cases);

	/* Unmasking in two parts at every split equals one part. */
	wrong = 0;
	for (size_t cut = 0; cut <= 64; cut++) {
		memcpy(buf, orig, 64);
		memcpy(ref, orig, 64);
		ws_unmask(ref, 64, mask_a, 0);
		ws_unmask(buf, cut, mask_a, 0);
		ws_unmask(buf + cut, 64 - cut, mask_a, cut);
		if (memcmp(buf, ref, 64) != 0)
			wrong++;
	}
	is_int(wrong, 0, "ws_unmask continues correctly at every split");
}

static void
test_lengths(void)
{
	static const uint64_t lens[] = { 0, 1, 125, 126, 127, 65535, 65536, 70000 };
	static const size_t hdrs[] = { 6, 6, 6, 8, 8, 8, 14, 14 };
	uint8_t *payload = malloc(70000), *frame = malloc(70000 + 14);

	for (size_t i = 0; i < 70000; i++)
		payload[i] = (uint8_t)(i * 7 + (i >> 8));
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = fr(frame, FIN | WS_OP_BINARY, payload, (size_t)lens[i]), got;
		struct log l;
		int op = 0;
		const uint8_t *p;

		is_int(n, hdrs[i] + lens[i], "frame of %llu bytes has a %zu-byte header",
		    (unsigned long long)lens[i], hdrs[i]);
		dec1(frame, n, 1 << 20, &l);
		ok(log_is(&l, "M"), "%llu-byte binary frame decodes to one message", (unsigned long long)lens[i]);
		p = log_rec(&l, 0, &got, &op);
		ok(p != NULL && got == lens[i] && op == WS_OP_BINARY &&
		    (got == 0 || memcmp(p, payload, got) == 0), "%llu-byte payload unmasked intact",
		    (unsigned long long)lens[i]);
		log_free(&l);
	}

	/* The server encoder: exact header bytes at the boundaries. */
	{
		uint8_t h[WS_MAX_SERVER_HEADER];

		is_int(ws_header(h, 1, 0, WS_OP_TEXT, 0), 2, "ws_header(0) is 2 bytes");
		ok(h[0] == 0x81 && h[1] == 0, "ws_header(0) bytes");
		is_int(ws_header(h, 1, 0, WS_OP_TEXT, 125), 2, "ws_header(125) is 2 bytes");
		ok(h[1] == 125, "ws_header(125) bytes");
		is_int(ws_header(h, 1, 0, WS_OP_BINARY, 126), 4, "ws_header(126) is 4 bytes");
		ok(h[0] == 0x82 && h[1] == 126 && h[2] == 0 && h[3] == 126, "ws_header(126) bytes");
		is_int(ws_header(h, 0, 0, WS_OP_BINARY, 127), 4, "ws_header(127) is 4 bytes");
		ok(h[0] == 0x02 && h[1] == 126 && h[3] == 127, "ws_header(127, fin=0) bytes");
		is_int(ws_header(h, 1, 0, WS_OP_BINARY, 65535), 4, "ws_header(65535) is 4 bytes");
		ok(h[1] == 126 && h[2] == 0xff && h[3] == 0xff, "ws_header(65535) bytes");
		is_int(ws_header(h, 1, 1, WS_OP_BINARY, 65536), 10, "ws_header(65536) is 10 bytes");
		ok(h[0] == 0xc2 && h[1] == 127 && h[2] == 0 && h[7] == 1 && h[8] == 0 && h[9] == 0,
		    "ws_header(65536, rsv1) bytes");
		is_int(ws_header(h, 1, 0, WS_OP_BINARY, 0x0102030405060708ULL), 10, "ws_header(big) is 10 bytes");
		ok(h[2] == 1 && h[9] == 8, "ws_header(big) is big-endian");
		is_int(WS_MAX_SERVER_HEADER, 10, "WS_MAX_SERVER_HEADER covers the 64-bit form");
	}

	/* ws_header_masked round-trips through the decoder at every length form. */
	{
		static const uint8_t m[4] = { 1, 2, 3, 4 };
		int wrong = 0;

		for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
			size_t hl = ws_header_masked(frame, 1, WS_OP_TEXT, lens[i], m), got;
			struct log l;
			int op = 0;
			const uint8_t *p;

			for (size_t k = 0; k < lens[i]; k++)
				frame[hl + k] = (uint8_t)('a' + k % 26) ^ m[k & 3];
			dec1(frame, hl + (size_t)lens[i], 1 << 20, &l);
			p = log_rec(&l, 0, &got, &op);
			if (!log_is(&l, "M") || got != lens[i] || op != WS_OP_TEXT)
				wrong++;
			else
				for (size_t k = 0; k < got; k++)
					if (p[k] != 'a' + k % 26)
						wrong++;
			if (hl != hdrs[i])
				wrong++;
			log_free(&l);
		}
		is_int(wrong, 0, "ws_header_masked frames decode at every length form");
	}

	/* Header-only inputs: a length form split anywhere asks for more. */
	{
		size_t n = mk(frame, FIN | WS_OP_BINARY, 65536, 0, 1, NULL, 0);
		struct ws_decoder d;
		struct ws_event ev;
		uint8_t copy[16];
		size_t used;

		memcpy(copy, frame, n);
		ws_decoder_init(&d, 1 << 20);
		used = ws_decode(&d, copy, n, &ev);
		ok(used == n && ev.type == WS_EV_NEED, "a bare 64-bit header is consumed and asks for more");
	}

	/* Non-minimal lengths and the top bit. */
	{
		uint8_t pl[200] = { 0 };
		size_t n;

		n = mk(frame, FIN | WS_OP_BINARY, 125, 16, 1, pl, 125);
		expect_err(frame, n, 1 << 20, 1002, "125 in the 16-bit form");
		n = mk(frame, FIN | WS_OP_BINARY, 0, 16, 1, pl, 0);
		expect_err(frame, n, 1 << 20, 1002, "0 in the 16-bit form");
		n = mk(frame, FIN | WS_OP_BINARY, 126, 64, 1, pl, 126);
		expect_err(frame, n, 1 << 20, 1002, "126 in the 64-bit form");
		n = mk(frame, FIN | WS_OP_BINARY, 65535, 64, 1, NULL, 0);
		expect_err(frame, n, 1 << 20, 1002, "65535 in the 64-bit form");
		n = mk(frame, FIN | WS_OP_BINARY, 0x8000000000000000ULL, 64, 1, NULL, 0);
		expect_err(frame, n, UINT64_MAX, 1002, "64-bit length with the top bit set");
		n = mk(frame, FIN | WS_OP_BINARY, UINT64_MAX, 64, 1, NULL, 0);
		expect_err(frame, n, UINT64_MAX, 1002, "64-bit length of all ones");
		n = mk(frame, FIN | WS_OP_BINARY, 0x7fffffffffffffffULL, 64, 1, NULL, 0);
		expect_err(frame, n, 1 << 20, 1009, "largest legal 64-bit length over the limit");
	}
	free(payload);
	free(frame);
}

static void
test_rules(void)
{
	uint8_t f[512], pl[200];
	size_t n;

	memset(pl, 'x', sizeof(pl));
	n = mk(f, FIN | WS_OP_TEXT, 5, 0, 0, "hello", 5);
	expect_err(f, n, 1000, 1002, "unmasked client frame");
	n = mk(f, FIN | WS_OP_PING, 0, 0, 0, "", 0);
	expect_err(f, n, 1000, 1002, "unmasked ping");
	is_int(expect_err(f, 2, 1000, 1002, "unmasked header alone"), 2,
	    "unmasked frame refused from its 2-byte header");

	n = fr(f, FIN | RSV1 | WS_OP_TEXT, "a", 1);
	expect_err(f, n, 1000, 1002, "RSV1 without an extension");
	n = fr(f, FIN | RSV2 | WS_OP_TEXT, "a", 1);
	expect_err(f, n, 1000, 1002, "RSV2");
	n = fr(f, FIN | RSV3 | WS_OP_BINARY, "a", 1);
	expect_err(f, n, 1000, 1002, "RSV3");
	n = fr(f, FIN | RSV2 | WS_OP_PING, "", 0);
	expect_err(f, n, 1000, 1002, "RSV2 on a ping");

	for (int op = 3; op <= 0xf; op++) {
		char what[64];

		if (op >= 8 && op <= 0xa)
			continue;
		n = fr(f, FIN | op, "ab", 2);
		snprintf(what, sizeof(what), "reserved opcode 0x%x", op);
		is_int(expect_err(f, n, 1000, 1002, what), 2, "reserved opcode refused at byte 2");
		n = fr(f, op, "ab", 2);
		snprintf(what, sizeof(what), "reserved opcode 0x%x without FIN", op);
		expect_err(f, n, 1000, 1002, what);
	}

	/* Control frames: at most 125 bytes, never fragmented. */
	{
		static const int ctl[] = { WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG };

		for (int i = 0; i < 3; i++) {
			struct log l;
			size_t got = 0;
			int op = 0;

			n = fr(f, FIN | ctl[i], pl, 126);
			expect_err(f, n, 1000, 1002, "control frame of 126 bytes");
			n = mk(f, FIN | ctl[i], 200, 16, 1, NULL, 0);
			is_int(expect_err(f, n, 1000, 1002, "control frame claiming 200 bytes"), 2,
			    "oversized control frame refused at its second byte");
			n = mk(f, FIN | ctl[i], 125, 64, 1, pl, 125);
			expect_err(f, n, 1000, 1002, "control frame of 125 in the 64-bit form");
			n = fr(f, ctl[i], "", 0);
			expect_err(f, n, 1000, 1002, "fragmented control frame");
			n = fr(f, FIN | ctl[i], pl, 125);
			if (ctl[i] == WS_OP_CLOSE) {
				f[6] = 0x03 ^ mask_a[0];	/* a valid close payload: 1000 + reason */
				f[7] = 0xe8 ^ mask_a[1];
			}
			dec1(f, n, 1000, &l);
			ok(log_is(&l, "C") && log_rec(&l, 0, &got, &op) != NULL && got == 125 && op == ctl[i],
			    "control frame of exactly 125 bytes (opcode %d)", ctl[i]);
			log_free(&l);
			n = fr(f, FIN | ctl[i], "", 0);
			dec1(f, n, 1000, &l);
			ok(log_is(&l, "C") && log_rec(&l, 0, &got, &op) != NULL && got == 0,
			    "empty control frame (opcode %d)", ctl[i]);
			log_free(&l);
		}
	}

	/* Continuation with nothing to continue; a new message inside one. */
	n = fr(f, FIN | WS_OP_CONT, "a", 1);
	expect_err(f, n, 1000, 1002, "continuation with nothing to continue");
	n = fr(f, WS_OP_CONT, "a", 1);
	expect_err(f, n, 1000, 1002, "non-final continuation with nothing to continue");
	n = fr(f, WS_OP_TEXT, "a", 1);
	n += fr(f + n, FIN | WS_OP_TEXT, "b", 1);
	expect_err(f, n, 1000, 1002, "text frame inside a fragmented message");
	n = fr(f, WS_OP_BINARY, "a", 1);
	n += fr(f + n, FIN | WS_OP_BINARY, "b", 1);
	expect_err(f, n, 1000, 1002, "binary frame inside a fragmented message");
	n = fr(f, FIN | WS_OP_TEXT, "a", 1);
	n += fr(f + n, FIN | WS_OP_CONT, "b", 1);
	expect_err(f, n, 1000, 1002, "continuation after a complete message");

	/* RSV1 with permessage-deflate allowed: data only, first frame only. */
	{
		struct ws_decoder d;
		struct log l;
		size_t got = 0;
		int op = 0;

		n = fr(f, RSV1 | WS_OP_TEXT, "\xff", 1);
		n += fr(f + n, FIN | WS_OP_CONT, "\xfe", 1);
		ws_decoder_init(&d, 1000);
		d.allow_rsv1 = 1;
		run_dec(&d, f, n, 0, &l);
		ok(log_is(&l, "M") && log_rec(&l, 0, &got, &op) && op == (WS_OP_TEXT | 0x40) && got == 2,
		    "RSV1 text message passes (compressed bytes are not UTF-8 checked)");
		log_free(&l);

		n = fr(f, RSV1 | WS_OP_TEXT, "a", 1);
		n += fr(f + n, FIN | RSV1 | WS_OP_CONT, "b", 1);
		ws_decoder_init(&d, 1000);
		d.allow_rsv1 = 1;
		run_dec(&d, f, n, 0, &l);
		is_int(l.err_code, 1002, "RSV1 on a continuation frame -> 1002");
		log_free(&l);

		n = fr(f, FIN | RSV1 | WS_OP_PING, "", 0);
		ws_decoder_init(&d, 1000);
		d.allow_rsv1 = 1;
		run_dec(&d, f, n, 0, &l);
		is_int(l.err_code, 1002, "RSV1 on a ping even with the extension -> 1002");
		log_free(&l);
	}
}

static void
test_limits(void)
{
	uint8_t f[4096], pl[2048];
	size_t n, hl;
	struct log l;

	memset(pl, 'y', sizeof(pl));
	n = fr(f, FIN | WS_OP_BINARY, pl, 1000);
	dec1(f, n, 1000, &l);
	ok(log_is(&l, "M"), "message of exactly max_message passes");
	log_free(&l);

	n = fr(f, FIN | WS_OP_BINARY, pl, 1001);
	hl = mk(f, FIN | WS_OP_BINARY, 1001, 0, 1, NULL, 0);
	is_int(expect_err(f, hl, 1000, 1009, "1001-byte frame with max 1000"), hl,
	    "1009 decided from the header alone, before any payload");
	is_int(expect_err(f, n, 1000, 1009, "1001-byte frame, whole"), hl,
	    "no payload consumed before 1009");

	/* Fragments add up. */
	n = fr(f, WS_OP_TEXT, pl, 600);
	hl = fr(f + n, WS_OP_CONT, pl, 400);
	n += hl;
	n += mk(f + n, FIN | WS_OP_CONT, 1, 0, 1, "y", 1);
	{
		size_t off = expect_err(f, n, 1000, 1009, "three fragments of 600+400+1 with max 1000");

		is_int(off, n - 1, "fragment overflow refused at the third header");
	}
	n = fr(f, WS_OP_TEXT, pl, 600);
	n += fr(f + n, WS_OP_CONT, pl, 400);
	n += fr(f + n, FIN | WS_OP_CONT, "", 0);
	dec1(f, n, 1000, &l);
	ok(log_is(&l, "M"), "fragments totalling exactly max_message pass");
	log_free(&l);

	/* Control frames do not count toward the message. */
	n = fr(f, WS_OP_TEXT, pl, 1000);
	n += fr(f + n, FIN | WS_OP_PING, pl, 125);
	n += fr(f + n, FIN | WS_OP_CONT, "", 0);
	dec1(f, n, 1000, &l);
	ok(log_is(&l, "CM"), "a ping inside a full-size message does not count toward it");
	log_free(&l);

	/* A second message starts from zero. */
	n = fr(f, FIN | WS_OP_TEXT, pl, 1000);
	n += fr(f + n, FIN | WS_OP_TEXT, pl, 1000);
	dec1(f, n, 1000, &l);
	ok(log_is(&l, "MM"), "the limit is per message");
	log_free(&l);
}

static void
test_close_parse(void)
{
	/* IANA's registry: 1012 Service Restart, 1013 Try Again Later, 1014 Bad Gateway. */
	static const unsigned good[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
	    1012, 1013, 1014, 3000, 3999, 4000, 4999 };
	static const unsigned bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015, 1016,
	    1100, 2000, 2999, 5000, 65535 };
	uint8_t p[130];
	uint16_t code;
	const uint8_t *reason;
	size_t rlen;
	int rc, wrong = 0;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		p[0] = (uint8_t)(good[i] >> 8);
		p[1] = (uint8_t)good[i];
		memcpy(p + 2, "bye", 3);
		rc = ws_close_parse(p, 5, &code, &reason, &rlen);
		ok(rc == 0 && code == good[i] && rlen == 3 && memcmp(reason, "bye", 3) == 0,
		    "close code %u is valid", good[i]);
		rc = ws_close_parse(p, 2, &code, &reason, &rlen);
		ok(rc == 0 && code == good[i] && rlen == 0, "close code %u without a reason", good[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		p[0] = (uint8_t)(bad[i] >> 8);
		p[1] = (uint8_t)bad[i];
		is_int(ws_close_parse(p, 2, &code, &reason, &rlen), 1002, "close code %u -> 1002", bad[i]);
	}
	/* All 65536 codes against the rule. */
	for (unsigned c = 0; c < 65536; c++) {
		int want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);

		p[0] = (uint8_t)(c >> 8);
		p[1] = (uint8_t)c;
		if ((ws_close_parse(p, 2, &code, &reason, &rlen) == 0) != want || ws_close_code_valid(c) != want)
			wrong++;
	}
	is_int(wrong, 0, "every 16-bit close code classified");

	is_int(ws_close_parse(p, 0, &code, &reason, &rlen), 0, "empty close body is fine");
	is_int(code, 1005, "empty close body means 1005");
	ok(reason == NULL && rlen == 0, "empty close body has no reason");
	p[0] = 0x03;
	is_int(ws_close_parse(p, 1, &code, &reason, &rlen), 1002, "1-byte close body -> 1002");
	p[0] = 0x03;
	p[1] = 0xe8;
	memcpy(p + 2, "ok \xce\xba\xe1\xbd\xb9", 8);
	is_int(ws_close_parse(p, 10, &code, &reason, &rlen), 0, "UTF-8 reason accepted");
	memcpy(p + 2, "bad \xff", 5);
	is_int(ws_close_parse(p, 7, &code, &reason, &rlen), 1007, "invalid UTF-8 reason -> 1007");
	memcpy(p + 2, "cut \xe2\x82", 6);
	is_int(ws_close_parse(p, 8, &code, &reason, &rlen), 1007, "truncated UTF-8 reason -> 1007");
	memcpy(p + 2, "\xed\xa0\x80", 3);
	is_int(ws_close_parse(p, 5, &code, &reason, &rlen), 1007, "surrogate in reason -> 1007");
	memset(p + 2, 'r', 123);
	is_int(ws_close_parse(p, 125, &code, &reason, &rlen), 0, "123-byte reason accepted");
	is_int(rlen, 123, "123-byte reason length");
}

/* Text across fragments and decoder calls: every split of valid text; fail fast on bad text. */
static void
test_text(void)
{
	static const char text[] = "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbfz";
	const size_t tn = sizeof(text) - 1;
	uint8_t f[256];
	size_t n;
	struct log l;
	int wrong = 0, cases = 0;

	/* Every split point of the text into two and three fragments. */
	for (size_t a = 0; a <= tn; a++)
		for (size_t b = a; b <= tn; b++) {
			size_t got = 0;
			int op = 0;
			const uint8_t *p;

			n = fr(f, WS_OP_TEXT, text, a);
			n += fr(f + n, WS_OP_CONT, text + a, b - a);
			n += fr(f + n, FIN | WS_OP_CONT, text + b, tn - b);
			for (size_t chunk = 0; chunk <= 1; chunk++) {
				struct ws_decoder d;

				ws_decoder_init(&d, 1000);
				run_dec(&d, f, n, chunk, &l);
				p = log_rec(&l, 0, &got, &op);
				cases++;
				if (!log_is(&l, "M") || got != tn || memcmp(p, text, tn) != 0 || l.bad_flags)
					wrong++;
				log_free(&l);
			}
		}
	is_int(wrong, 0, "valid text accepted at every fragment split, in one call and byte by byte (%d cases)",
	    cases);

	/* A single frame split across decoder calls at every point. */
	wrong = 0;
	n = fr(f, FIN | WS_OP_TEXT, text, tn);
	for (size_t cut = 0; cut <= n; cut++) {
		struct ws_decoder d;
		struct log a, b;
		uint8_t copy[256];
		struct ws_event ev;
		size_t used, off = 0;
		int err = 0;

		memcpy(copy, f, n);
		ws_decoder_init(&d, 1000);
		memset(&a, 0, sizeof(a));
		while (off < cut && !err) {
			used = ws_decode(&d, copy + off, cut - off, &ev);
			off += used;
			err = log_event(&a, &ev);
			if (ev.type == WS_EV_NEED)
				break;
		}
		while (off < n && !err) {
			used = ws_decode(&d, copy + off, n - off, &ev);
			off += used;
			err = log_event(&a, &ev);
			if (ev.type == WS_EV_NEED)
				break;
		}
		dec1(f, n, 1000, &b);
		if (err || a.n != b.n || memcmp(a.p, b.p, a.n) != 0)
			wrong++;
		log_free(&a);
		log_free(&b);
	}
	is_int(wrong, 0, "one text frame split across two decoder calls at every point");

	/* Invalid text split across fragments: 1007 at the first bad byte. */
	{
		/* E2 82 | 41: the bad byte is in the second fragment. */
		size_t f1, hl2;

		f1 = fr(f, WS_OP_TEXT, "ok\xe2\x82", 4);
		hl2 = mk(f + f1, FIN | WS_OP_CONT, 5, 0, 1, NULL, 0);
		n = f1 + fr(f + f1, FIN | WS_OP_CONT, "Aabcd", 5);
		expect_err(f, n, 1000, 1007, "UTF-8 sequence broken across fragments");
		{
			struct ws_decoder d;

			ws_decoder_init(&d, 1000);
			run_dec(&d, f, n, 1, &l);
			is_int(l.err_code, 1007, "broken sequence across fragments, byte by byte -> 1007");
			is_int(l.err_off, f1 + hl2 + 1, "fail fast: 1007 as soon as the first bad byte arrives");
			log_free(&l);
		}
		/* A bad byte early in a long frame is reported before the rest arrives. */
		{
			uint8_t big[300];
			struct ws_decoder d;
			size_t hl;

			memset(big, 'a', sizeof(big));
			big[10] = 0xc0;
			n = fr(f, FIN | WS_OP_TEXT, big, 200);
			hl = n - 200;
			ws_decoder_init(&d, 1000);
			run_dec(&d, f, n, 1, &l);
			is_int(l.err_off, hl + 11, "fail fast inside one frame (byte 10 of 200)");
			log_free(&l);
			/* ...and in pieces of up to 7 bytes, never later than the piece holding it. */
			ws_decoder_init(&d, 1000);
			run_dec(&d, f, n, 7, &l);
			ok(l.err_code == 1007 && l.err_off >= hl + 11 && l.err_off < hl + 11 + 7,
			    "fail fast with random pieces (at %zu)", l.err_off);
			log_free(&l);
			/* In a non-final fragment, the message end is far away. */
			n = fr(f, WS_OP_TEXT, big, 200);
			ws_decoder_init(&d, 1000);
			run_dec(&d, f, n, 1, &l);
			is_int(l.err_code, 1007, "bad byte in a non-final fragment -> 1007");
			is_int(l.err_off, hl + 11, "... reported at that byte");
			log_free(&l);
		}
		/* Truncated at the message end. */
		n = fr(f, WS_OP_TEXT, "ab\xf0\x9f", 4);
		n += fr(f + n, FIN | WS_OP_CONT, "\x98", 1);
		expect_err(f, n, 1000, 1007, "text ending inside a 4-byte sequence");
		n = fr(f, FIN | WS_OP_TEXT, "\xe2\x82", 2);
		expect_err(f, n, 1000, 1007, "single frame ending inside a 3-byte sequence");
		n = fr(f, WS_OP_TEXT, "\xe2\x82", 2);
		n += fr(f + n, FIN | WS_OP_CONT, "", 0);
		expect_err(f, n, 1000, 1007, "empty final fragment after an incomplete sequence");
		n = fr(f, FIN | WS_OP_TEXT, "\xed\xa0\x80", 3);
		expect_err(f, n, 1000, 1007, "surrogate in text");
		n = fr(f, FIN | WS_OP_TEXT, "\xc0\xaf", 2);
		expect_err(f, n, 1000, 1007, "overlong in text");
		n = fr(f, FIN | WS_OP_TEXT, "\xf4\x90\x80\x80", 4);
		expect_err(f, n, 1000, 1007, "above U+10FFFF in text");
		/* Binary is not text. */
		n = fr(f, FIN | WS_OP_BINARY, "\xff\xfe\xc0", 3);
		dec1(f, n, 1000, &l);
		ok(log_is(&l, "M"), "binary with invalid UTF-8 is fine");
		log_free(&l);
		/* A new text message resets the validator. */
		n = fr(f, FIN | WS_OP_TEXT, "\xc3\xa9", 2);
		n += fr(f + n, FIN | WS_OP_TEXT, "\xc3\xa9", 2);
		dec1(f, n, 1000, &l);
		ok(log_is(&l, "MM"), "two text messages in a row");
		log_free(&l);
	}
}

/* Fragmentation with control frames in between; empty frames. */
static void
test_fragments(void)
{
	uint8_t f[512];
	size_t n, got = 0;
	struct log l;
	const uint8_t *p;
	int op = 0;

	n = fr(f, WS_OP_TEXT, "Hel", 3);
	n += fr(f + n, FIN | WS_OP_PING, "p1", 2);
	n += fr(f + n, WS_OP_CONT, "lo ", 3);
	n += fr(f + n, FIN | WS_OP_PONG, "", 0);
	n += fr(f + n, WS_OP_CONT, "", 0);
	n += fr(f + n, FIN | WS_OP_PING, "p2", 2);
	n += fr(f + n, FIN | WS_OP_CONT, "World", 5);
	n += fr(f + n, FIN | WS_OP_BINARY, "\x00\x01", 2);
	n += fr(f + n, FIN | WS_OP_CLOSE, "\x03\xe8", 2);
	for (size_t chunk = 0; chunk <= 1; chunk++) {
		struct ws_decoder d;

		ws_decoder_init(&d, 1000);
		run_dec(&d, f, n, chunk, &l);
		ok(log_is(&l, "CCCMMC"), "fragmented text with ping/pong between, then binary and close (%s)",
		    chunk ? "byte by byte" : "one call");
		p = log_rec(&l, 0, &got, &op);
		ok(p && op == WS_OP_PING && got == 2 && memcmp(p, "p1", 2) == 0, "first ping payload");
		p = log_rec(&l, 1, &got, &op);
		ok(p && op == WS_OP_PONG && got == 0, "empty pong");
		p = log_rec(&l, 2, &got, &op);
		ok(p && op == WS_OP_PING && got == 2 && memcmp(p, "p2", 2) == 0, "second ping payload");
		p = log_rec(&l, 3, &got, &op);
		ok(p && op == WS_OP_TEXT && got == 11 && memcmp(p, "Hello World", 11) == 0,
		    "reassembled text");
		p = log_rec(&l, 4, &got, &op);
		ok(p && op == WS_OP_BINARY && got == 2 && p[0] == 0 && p[1] == 1, "binary after it");
		p = log_rec(&l, 5, &got, &op);
		ok(p && op == WS_OP_CLOSE && got == 2, "close last");
		is_int(l.bad_flags, 0, "msg_start/msg_end consistent");
		log_free(&l);
	}

	/* Empty messages: one frame, and all-empty fragments. */
	n = fr(f, FIN | WS_OP_TEXT, "", 0);
	n += fr(f + n, WS_OP_BINARY, "", 0);
	n += fr(f + n, WS_OP_CONT, "", 0);
	n += fr(f + n, FIN | WS_OP_CONT, "", 0);
	dec1(f, n, 1000, &l);
	ok(log_is(&l, "MM") && log_rec(&l, 0, &got, &op) && got == 0 && op == WS_OP_TEXT &&
	    log_rec(&l, 1, &got, &op) && got == 0 && op == WS_OP_BINARY, "empty messages, single and fragmented");
	is_int(l.bad_flags, 0, "empty messages have msg_start and msg_end");
	log_free(&l);

	/* The close frame inside a fragmented message is a plain control event. */
	n = fr(f, WS_OP_TEXT, "a", 1);
	n += fr(f + n, FIN | WS_OP_CLOSE, "", 0);
	dec1(f, n, 1000, &l);
	ok(log_is(&l, "C"), "close in the middle of a fragmented message is delivered");
	log_free(&l);

	/* DATA event fields on a two-piece frame. */
	{
		struct ws_decoder d;
		struct ws_event ev;
		uint8_t copy[64];
		size_t used;

		n = fr(f, FIN | WS_OP_BINARY, "abcdefgh", 8);
		memcpy(copy, f, n);
		ws_decoder_init(&d, 1000);
		used = ws_decode(&d, copy, n - 3, &ev);
		ok(used == n - 3 && ev.type == WS_EV_DATA && ev.len == 5 && ev.frame_left == 3 &&
		    ev.msg_start && !ev.msg_end && memcmp(ev.data, "abcde", 5) == 0,
		    "first piece: 5 bytes, 3 left, msg_start");
		used = ws_decode(&d, copy + n - 3, 3, &ev);
		ok(used == 3 && ev.type == WS_EV_DATA && ev.len == 3 && ev.frame_left == 0 &&
		    !ev.msg_start && ev.msg_end && memcmp(ev.data, "fgh", 3) == 0,
		    "second piece: 3 bytes, msg_end");
		used = ws_decode(&d, copy, 0, &ev);
		ok(used == 0 && ev.type == WS_EV_NEED, "nothing more: NEED");
	}
}

/* A long multi-frame stream fed one byte at a time and in random pieces == one call. */
static void
test_split_invariance(void)
{
	uint8_t *f = malloc(1 << 18), pl[70000];
	size_t n = 0;
	struct log whole, part;
	int wrong = 0;

	for (size_t i = 0; i < sizeof(pl); i++)
		pl[i] = (uint8_t)('A' + i % 50);
	n += fr(f + n, FIN | WS_OP_TEXT, "", 0);
	n += fr(f + n, FIN | WS_OP_TEXT, pl, 125);
	n += fr(f + n, FIN | WS_OP_PING, "ping!", 5);
	n += fr(f + n, FIN | WS_OP_BINARY, pl, 126);
	n += fr(f + n, WS_OP_TEXT, pl, 127);
	n += fr(f + n, FIN | WS_OP_PONG, pl, 125);
	n += fr(f + n, WS_OP_CONT, "\xe2\x82", 2);
	n += fr(f + n, FIN | WS_OP_CONT, "\xac", 1);
	n += fr(f + n, FIN | WS_OP_BINARY, pl, 65535);
	n += fr(f + n, FIN | WS_OP_BINARY, pl, 65536);
	n += fr(f + n, FIN | WS_OP_TEXT, pl, 70000);
	n += fr(f + n, FIN | WS_OP_CLOSE, "\x0f\xa0reason", 8);
	dec1(f, n, 1 << 20, &whole);
	ok(log_is(&whole, "MMCMCMMMMC"), "reference stream decodes in one call");
	is_int(whole.bad_flags, 0, "reference stream flags consistent");
	{
		struct ws_decoder d;

		ws_decoder_init(&d, 1 << 20);
		run_dec(&d, f, n, 1, &part);
		ok(part.n == whole.n && memcmp(part.p, whole.p, whole.n) == 0 && !part.bad_flags && !part.loops_guard,
		    "one byte at a time == one call (%zu bytes)", n);
		log_free(&part);
	}
	for (int seed = 0; seed < 200; seed++) {
		struct ws_decoder d;
		size_t chunks[] = { 2, 3, 7, 13, 100, 5000 };

		ws_decoder_init(&d, 1 << 20);
		run_dec(&d, f, n, chunks[seed % 6], &part);
		if (part.n != whole.n || memcmp(part.p, whole.p, whole.n) != 0 || part.bad_flags || part.loops_guard)
			wrong++;
		log_free(&part);
	}
	is_int(wrong, 0, "200 random splittings == one call");

	/* The same with an error at the end: same events, same code. */
	{
		struct ws_decoder d;

		n += fr(f + n, FIN | 0x3, "x", 1);
		log_free(&whole);
		dec1(f, n, 1 << 20, &whole);
		ws_decoder_init(&d, 1 << 20);
		run_dec(&d, f, n, 1, &part);
		ok(whole.err_code == 1002 && part.err_code == 1002 && part.n == whole.n &&
		    memcmp(part.p, whole.p, whole.n) == 0, "error stream: byte by byte == one call");
		log_free(&part);
	}
	log_free(&whole);
	free(f);
}

int
main(void)
{
	test_unmask();
	test_lengths();
	test_rules();
	test_limits();
	test_close_parse();
	test_text();
	test_fragments();
	test_split_invariance();
	return tap_done();
}
