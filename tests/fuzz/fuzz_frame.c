/*
 * fuzz_frame.c: libFuzzer target for the frame decoder. The input's first
 * bytes pick the limits; the rest is a client byte stream, decoded in one
 * call, byte by byte and in pieces cut at points derived from the input. All
 * three must yield the same messages, control frames and error code, and
 * every event must obey the codec's contract.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "invariant failed: %s (%s:%d)\n", #c, \
	__FILE__, __LINE__); abort(); } } while (0)

struct out {
	uint8_t		*p;	/* normalised events: kind, opcode, u64 length, bytes */
	size_t		 n, cap;
	uint8_t		*msg;
	size_t		 mlen;
	int		 in_msg;
	int		 err;		/* close code of the error, 0 if none */
	size_t		 err_off;	/* stream offset right after the error */
};

static void
put(struct out *o, const void *p, size_t n)
{
	if (o->n + n > o->cap) {
		o->cap = (o->n + n) * 2 + 64;
		o->p = realloc(o->p, o->cap);
		CHECK(o->p != NULL);
	}
	memcpy(o->p + o->n, p, n);
	o->n += n;
}

static void
rec(struct out *o, uint8_t kind, uint8_t op, const uint8_t *d, size_t n)
{
	uint64_t n64 = n;

	put(o, &kind, 1);
	put(o, &op, 1);
	put(o, &n64, 8);
	if (n > 0)
		put(o, d, n);
}

struct cfg {
	uint64_t	max;
	int		rsv1, noutf8;
};

/* Encode payload as one masked frame and check the decoder returns it unchanged. */
static void
roundtrip(const struct cfg *cf, int opcode, int rsv1, const uint8_t *payload, size_t len)
{
	static const uint8_t m[4] = { 0xa5, 0x00, 0x5a, 0xff };
	uint8_t *f = malloc(WS_MAX_HEADER + len + 1);
	struct ws_decoder d;
	struct ws_event ev;
	size_t hl, used;

	CHECK(f != NULL);
	hl = ws_header_masked(f, 1, opcode, len, m);
	if (rsv1)
		f[0] |= 0x40;
	CHECK(hl == (len < 126 ? 6u : len <= 0xffff ? 8u : 14u));
	if (len > 0)
		memcpy(f + hl, payload, len);
	ws_unmask(f + hl, len, m, 0);
	ws_decoder_init(&d, cf->max);
	d.validate_utf8 = (uint8_t)!cf->noutf8;
	d.allow_rsv1 = (uint8_t)rsv1;
	used = ws_decode(&d, f, hl + len, &ev);
	CHECK(used == hl + len && ev.type == WS_EV_DATA && ev.msg_start && ev.msg_end);
	CHECK(ev.len == len && (len == 0 || memcmp(ev.data, payload, len) == 0));
	free(f);
}

static void
event(struct out *o, const struct cfg *cf, const struct ws_event *ev, size_t fed_left)
{
	switch (ev->type) {
	case WS_EV_NEED:
		CHECK(fed_left == 0);
		break;
	case WS_EV_DATA:
		CHECK(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
		CHECK(ev->msg_start == !o->in_msg);
		CHECK(!ev->rsv1 || cf->rsv1);
		if (ev->msg_start)
			o->mlen = 0;
		o->in_msg = 1;
		/*
		 * The decoder's bound: max_message, plus for a compressed message
		 * deflate's worst-case expansion, since ws.c bounds it once inflated.
		 */
		CHECK(o->mlen + ev->len <= cf->max ||
		    (ev->rsv1 && o->mlen + ev->len - cf->max <= (cf->max >> 3) + (cf->max >> 6) + 64));
		if (ev->len > 0) {
			o->msg = realloc(o->msg, o->mlen + ev->len);
			CHECK(o->msg != NULL);
			memcpy(o->msg + o->mlen, ev->data, ev->len);
		}
		o->mlen += ev->len;
		if (ev->msg_end) {
			CHECK(ev->frame_left == 0);
			/* Text delivered whole is valid UTF-8 (unless compressed or unchecked). */
			if (ev->opcode == WS_OP_TEXT && !ev->rsv1 && !cf->noutf8)
				CHECK(utf8_valid(o->mlen > 0 ? o->msg : (const uint8_t *)"", o->mlen));
			rec(o, 'M', (uint8_t)(ev->opcode | (ev->rsv1 ? 0x40 : 0)), o->msg, o->mlen);
			/* Re-encoded as a client frame, the message decodes to itself. */
			if (o->mlen <= 70000)
				roundtrip(cf, ev->opcode, ev->rsv1, o->msg, o->mlen);
			o->in_msg = 0;
		}
		break;
	case WS_EV_CONTROL:
		CHECK(ev->opcode == WS_OP_CLOSE || ev->opcode == WS_OP_PING || ev->opcode == WS_OP_PONG);
		CHECK(ev->len <= WS_MAX_CONTROL);
		if (ev->opcode == WS_OP_CLOSE) {
			uint16_t code = 0;
			const uint8_t *r;
			size_t rl;
			int rc = ws_close_parse(ev->data, ev->len, &code, &r, &rl);

			CHECK(rc == 0 || rc == WS_CLOSE_PROTOCOL || rc == WS_CLOSE_BAD_DATA);
			if (rc == 0) {
				CHECK(ev->len == 0 ? code == WS_CLOSE_NO_STATUS : ws_close_code_valid(code));
				CHECK(rl == (ev->len == 0 ? 0 : ev->len - 2));
				CHECK(utf8_valid(r != NULL ? r : (const uint8_t *)"", rl));
			}
		}
		rec(o, 'C', ev->opcode, ev->data, ev->len);
		break;
	case WS_EV_ERROR:
		CHECK(ev->code == WS_CLOSE_PROTOCOL || ev->code == WS_CLOSE_BAD_DATA ||
		    ev->code == WS_CLOSE_TOO_BIG);
		CHECK(ev->reason != NULL);
		CHECK(ev->code != WS_CLOSE_BAD_DATA || !cf->noutf8);
		o->err = ev->code;
		rec(o, 'E', (uint8_t)(ev->code & 0xff), NULL, 0);
		break;
	}
}

/*
 * Decode s[0..n) cut into pieces: mode 0 one call, 1 byte by byte, 2 pieces
 * whose sizes come from the input bytes themselves.
 */
static void
decode(const struct cfg *cf, const uint8_t *s, size_t n, int mode, struct out *o)
{
	struct ws_decoder d;
	uint8_t *buf = malloc(n + 1);
	size_t pos = 0, piece = 0;

	CHECK(buf != NULL);
	memcpy(buf, s, n);
	memset(o, 0, sizeof(*o));
	ws_decoder_init(&d, cf->max);
	d.allow_rsv1 = (uint8_t)cf->rsv1;
	d.validate_utf8 = (uint8_t)!cf->noutf8;
	while (pos < n && !o->err) {
		size_t take = mode == 0 ? n - pos : mode == 1 ? 1 : 1 + (size_t)(s[(piece * 7 + 3) % n] % 23);
		uint8_t *p;
		size_t left;
		int guard = 0;

		piece++;
		if (take > n - pos)
			take = n - pos;
		p = buf + pos;
		left = take;
		for (;;) {
			struct ws_event ev;
			size_t used = ws_decode(&d, p, left, &ev);

			CHECK(used <= left);
			p += used;
			left -= used;
			event(o, cf, &ev, left);
			if (ev.type == WS_EV_ERROR) {
				o->err_off = (size_t)(p - buf);
				break;
			}
			if (ev.type == WS_EV_NEED)
				break;
			CHECK(++guard < 100000);
		}
		pos += take;
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint64_t maxes[] = { 125, 126, 1000, 65535, 65536, 1 << 20, UINT64_MAX >> 1, UINT64_MAX };
	struct cfg cf;
	struct out a, b, c;

	if (size < 1)
		return 0;
	cf.max = maxes[data[0] & 7];
	cf.rsv1 = (data[0] >> 3) & 1;
	cf.noutf8 = ((data[0] >> 4) & 1) && cf.rsv1;
	data++;
	size--;

	decode(&cf, data, size, 0, &a);
	decode(&cf, data, size, 1, &b);
	decode(&cf, data, size, 2, &c);
	/* The same events however the stream is split. */
	CHECK(a.err == b.err && a.err == c.err);
	CHECK(a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0));
	CHECK(a.n == c.n && (a.n == 0 || memcmp(a.p, c.p, a.n) == 0));
	/* Fail fast: fed byte by byte, an error is never found later than in one call. */
	if (a.err)
		CHECK(b.err_off <= a.err_off && c.err_off <= a.err_off);
	free(a.p);
	free(a.msg);
	free(b.p);
	free(b.msg);
	free(c.p);
	free(c.msg);
	return 0;
}
