/*
 * ws_frame.c: the frame decoder and encoder. The decoder does no I/O and no
 * allocation: its state is a fixed struct, every length a peer sends is
 * checked against the RFC's rules and the configured limit before anything
 * is buffered, and text is validated as UTF-8 byte by byte so that an
 * invalid byte fails the connection the moment it arrives. The builders
 * write a whole frame into one refcounted block, shared by every receiver.
 */
#include <string.h>

#include "deflate.h"
#include "ws_frame.h"

void
ws_decoder_init(struct ws_decoder *d, uint64_t max_message)
{
	memset(d, 0, sizeof(*d));
	d->max_message = max_message;
	d->validate_utf8 = 1;
	utf8_reset(&d->utf8);
}

void
ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t pos)
{
	unsigned r = (unsigned)(pos & 3);
	uint8_t m[8] = { mask[r], mask[(r + 1) & 3], mask[(r + 2) & 3], mask[(r + 3) & 3] };
	uint64_t m64, v;
	size_t i = 0;

	memcpy(m + 4, m, 4);
	memcpy(&m64, m, 8);
	for (; i + 8 <= n; i += 8) {
		memcpy(&v, p + i, 8);
		v ^= m64;
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] ^= m[i & 7];
}

static size_t
fail(struct ws_event *ev, uint16_t code, const char *reason, size_t used)
{
	ev->type = WS_EV_ERROR;
	ev->code = code;
	ev->reason = reason;
	return used;
}

/*
 * The first two header bytes are in: check every rule they decide (RSV bits,
 * the mask bit, the opcode against the message in progress, control frame
 * size and fragmentation). Checking here, before the extended length and the
 * mask arrive, fails a bad frame at its second byte: an unmasked empty frame
 * has no mask bytes to wait for. Changes no state. 0 or an error code.
 */
static int
header_first(const struct ws_decoder *d, const char **reason)
{
	uint8_t b0 = d->hdr[0], b1 = d->hdr[1], op = b0 & 0x0f, len7 = b1 & 0x7f;
	int fin = (b0 & 0x80) != 0, rsv1 = (b0 & 0x40) != 0;

	if ((b0 & 0x30) || (rsv1 && !d->allow_rsv1)) {
		*reason = "reserved bits set without an extension";
		return 1002;
	}
	if (!(b1 & 0x80)) {
		*reason = "client frames must be masked";
		return 1002;
	}
	switch (op) {
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!fin) {
			*reason = "fragmented control frame";
			return 1002;
		}
		if (len7 > WS_MAX_CONTROL) {
			/* 126 and 127 announce an extended length: over 125 or non-minimal. */
			*reason = "control frame over 125 bytes";
			return 1002;
		}
		if (rsv1) {
			*reason = "RSV1 on a control frame";
			return 1002;
		}
		return 0;
	case WS_OP_CONT:
		if (d->msg_opcode == 0) {
			*reason = "continuation frame with nothing to continue";
			return 1002;
		}
		if (rsv1) {
			*reason = "RSV1 on a continuation frame";
			return 1002;
		}
		return 0;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (d->msg_opcode != 0) {
			*reason = "new data frame inside a fragmented message";
			return 1002;
		}
		return 0;
	default:
		*reason = "reserved opcode";
		return 1002;
	}
}

/*
 * The header is complete in d->hdr (its first two bytes passed header_first):
 * check the length and set up the frame. 0 or an error code.
 */
static int
header_done(struct ws_decoder *d, const char **reason)
{
	uint8_t b0 = d->hdr[0], b1 = d->hdr[1];
	uint64_t len = b1 & 0x7f;
	size_t o = 2;

	d->fin = (b0 & 0x80) != 0;
	d->rsv1 = (b0 & 0x40) != 0;
	d->opcode = b0 & 0x0f;
	if (len == 126) {
		len = (uint64_t)d->hdr[2] << 8 | d->hdr[3];
		o = 4;
		if (len < 126) {
			*reason = "non-minimal 16-bit length";
			return 1002;
		}
	} else if (len == 127) {
		len = 0;
		for (int i = 0; i < 8; i++)
			len = len << 8 | d->hdr[2 + i];
		o = 10;
		if (len >> 63) {
			*reason = "64-bit length with the top bit set";
			return 1002;
		}
		if (len <= 0xffff) {
			*reason = "non-minimal 64-bit length";
			return 1002;
		}
	}
	memcpy(d->mask, d->hdr + o, 4);
	d->left = len;
	d->mask_pos = 0;
	if (d->opcode & 0x8) {
		d->ctl_len = 0;
		return 0;
	}
	if (d->opcode != WS_OP_CONT) {
		d->msg_opcode = d->opcode;
		d->msg_rsv1 = d->rsv1;
		d->msg_len = 0;
		d->msg_started = 0;
		utf8_reset(&d->utf8);
	}
	/*
	 * A compressed message is bounded once inflated (ws.c); on the wire it
	 * may exceed the limit by deflate's worst-case expansion (zlib's
	 * conservative deflateBound), or a message of exactly the limit that
	 * the client could not shrink would be refused.
	 */
	if (len > d->max_message + (d->msg_rsv1 ? (d->max_message >> 3) + (d->max_message >> 6) + 64 : 0) -
	    d->msg_len) {
		*reason = "message too big";
		return 1009;
	}
	d->msg_len += len;
	return 0;
}

/* Bytes of header needed in total, given what has arrived so far. */
static size_t
header_need(const struct ws_decoder *d)
{
	uint8_t l;

	if (d->hdr_have < 2)
		return 2;
	l = d->hdr[1] & 0x7f;
	return 2 + (l == 126 ? 2 : l == 127 ? 8 : 0) + 4;
}

/* Move up to upto - hdr_have header bytes from p[0..n) into d->hdr; returns how many. */
static size_t
header_take(struct ws_decoder *d, const uint8_t *p, size_t n, size_t upto)
{
	size_t take = upto - d->hdr_have;

	if (take > n)
		take = n;
	memcpy(d->hdr + d->hdr_have, p, take);
	d->hdr_have = (uint8_t)(d->hdr_have + take);
	return take;
}

/* Emit a DATA event for p[0..n) of the current frame. */
static size_t
emit_data(struct ws_decoder *d, const uint8_t *p, size_t n, size_t used, struct ws_event *ev)
{
	int last = d->left == 0 && d->fin;

	if (d->msg_opcode == WS_OP_TEXT && d->validate_utf8 && !d->msg_rsv1) {
		if (utf8_feed(&d->utf8, p, n) == -1)
			return fail(ev, 1007, "invalid UTF-8 in text", used);
		if (last && !utf8_complete(&d->utf8))
			return fail(ev, 1007, "text ends inside a UTF-8 sequence", used);
	}
	ev->type = WS_EV_DATA;
	ev->opcode = d->msg_opcode;
	ev->rsv1 = d->msg_rsv1;
	ev->data = p;
	ev->len = n;
	ev->frame_left = d->left;
	ev->msg_start = !d->msg_started;
	ev->msg_end = (uint8_t)last;
	d->msg_started = 1;
	if (d->left == 0)
		d->in_payload = 0;
	if (last)
		d->msg_opcode = 0;
	return used;
}

size_t
ws_decode(struct ws_decoder *d, uint8_t *buf, size_t len, struct ws_event *ev)
{
	size_t used = 0, need, take;
	const char *reason = NULL;
	int code;

	memset(ev, 0, sizeof(*ev));
	while (used < len || (d->in_payload && d->left == 0)) {
		if (!d->in_payload) {
			/* Copy what the header still needs: its first two bytes, then the rest. */
			if (d->hdr_have < 2) {
				used += header_take(d, buf + used, len - used, 2);
				if (d->hdr_have < 2)
					break;
				if ((code = header_first(d, &reason)) != 0)
					return fail(ev, (uint16_t)code, reason, used);
			}
			need = header_need(d);
			used += header_take(d, buf + used, len - used, need);
			if (d->hdr_have < need)
				break;
			d->hdr_have = 0;
			if ((code = header_done(d, &reason)) != 0)
				return fail(ev, (uint16_t)code, reason, used);
			d->in_payload = 1;
			continue;
		}
		take = len - used;
		if (take > d->left)
			take = (size_t)d->left;
		ws_unmask(buf + used, take, d->mask, d->mask_pos);
		d->mask_pos += take;
		d->left -= take;
		if (d->opcode & 0x8) {
			memcpy(d->ctl + d->ctl_len, buf + used, take);
			d->ctl_len = (uint8_t)(d->ctl_len + take);
			used += take;
			if (d->left > 0)
				break;
			d->in_payload = 0;
			ev->type = WS_EV_CONTROL;
			ev->opcode = d->opcode;
			ev->data = d->ctl;
			ev->len = d->ctl_len;
			return used;
		}
		/* A data frame: hand the piece up (an empty non-final frame says nothing). */
		if (take == 0 && !d->fin) {
			d->in_payload = 0;
			continue;
		}
		return emit_data(d, buf + used, take, used + take, ev);
	}
	ev->type = WS_EV_NEED;
	return used;
}

size_t
ws_header(uint8_t *out, int fin, int rsv1, int opcode, uint64_t len)
{
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

size_t
ws_header_masked(uint8_t *out, int fin, int opcode, uint64_t len, const uint8_t mask[4])
{
	size_t n = ws_header(out, fin, 0, opcode, len);

	out[1] |= 0x80;
	memcpy(out + n, mask, 4);
	return n + 4;
}

int
ws_close_code_valid(unsigned code)
{
	/* 1000-1003 and 1007-1014 are assigned in IANA's registry; 1004-1006 and 1015 are never sent. */
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	    (code >= 3000 && code <= 4999);
}

int
ws_close_parse(const uint8_t *p, size_t len, uint16_t *code, const uint8_t **reason, size_t *rlen)
{
	*reason = NULL;
	*rlen = 0;
	if (len == 0) {
		*code = WS_CLOSE_NO_STATUS;
		return 0;
	}
	if (len == 1)
		return WS_CLOSE_PROTOCOL;
	*code = (uint16_t)(p[0] << 8 | p[1]);
	if (!ws_close_code_valid(*code))
		return WS_CLOSE_PROTOCOL;
	if (!utf8_valid(p + 2, len - 2))
		return WS_CLOSE_BAD_DATA;
	*reason = p + 2;
	*rlen = len - 2;
	return 0;
}

struct sbuf *
ws_frame_new(int opcode, const void *payload, size_t len)
{
	struct sbuf *b;
	size_t hl;

	if ((b = sbuf_new(WS_MAX_SERVER_HEADER + len, 0)) == NULL)
		return NULL;
	hl = ws_header(sbuf_ptr(b), 1, 0, opcode, len);
	if (len > 0)
		memcpy(sbuf_ptr(b) + hl, payload, len);
	b->len = (uint32_t)(hl + len);
	return b;
}

struct sbuf *
ws_frame_deflate(int bits, int opcode, const void *payload, size_t len)
{
	uint8_t h[WS_MAX_SERVER_HEADER];
	struct sbuf *b;
	long clen;
	size_t hl;

	if ((b = sbuf_new(deflate_bound(len), WS_MAX_SERVER_HEADER)) == NULL)
		return NULL;
	clen = deflate_compress(bits, payload, len, sbuf_ptr(b), b->cap - b->off);
	if (clen < 0 || (size_t)clen >= len) {
		/* Incompressible, or a zlib failure: the caller sends it plain. */
		sbuf_unref(b);
		return NULL;
	}
	hl = ws_header(h, 1, 1, opcode, (uint64_t)clen);
	b->off -= (uint32_t)hl;
	memcpy(b->data + b->off, h, hl);
	b->len = (uint32_t)(hl + (size_t)clen);
	return b;
}
