/*
 * test_wsc.c: roomd-bench's client codec where it meets permessage-deflate:
 * the judgement of the server's extension answer, the handshake check with
 * and without the offer, compression round trips, inflate limits and bad
 * data, and the decoder's reading of RSV1 (a compressed message's first
 * frame only, and only when agreed).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "bench/wsc.h"
#include "tap.h"

#define S(lit)	(lit), sizeof(lit) - 1

static const char key[] = "dGhlIHNhbXBsZSBub25jZQ==";

/* A 101 answer to key with an optional extensions line; returns its length. */
static size_t
answer(char *out, size_t cap, const char *ext)
{
	char acc[29];
	int n;

	http_accept_key(key, strlen(key), acc);
	n = snprintf(out, cap, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n", acc,
	    ext ? "Sec-WebSocket-Extensions: " : "", ext ? ext : "", ext ? "\r\n" : "");
	return n > 0 ? (size_t)n : 0;
}

static void
test_answers(void)
{
	ok(wsc_pmd_accepted(S("permessage-deflate; server_no_context_takeover")), "minimal answer");
	ok(wsc_pmd_accepted(S("permessage-deflate;server_no_context_takeover;client_no_context_takeover")),
	    "both no_context_takeover, no spaces");
	ok(wsc_pmd_accepted(S("Permessage-Deflate ; SERVER_NO_CONTEXT_TAKEOVER ; server_max_window_bits=10")),
	    "case-insensitive, spaces, a smaller server window");
	ok(wsc_pmd_accepted(S("permessage-deflate; server_no_context_takeover; server_max_window_bits=\"8\"")),
	    "quoted window bits");
	ok(!wsc_pmd_accepted(S("permessage-deflate")), "server keeps context: refused");
	ok(!wsc_pmd_accepted(S("permessage-deflate; server_no_context_takeover; client_max_window_bits=10")),
	    "client_max_window_bits was not offered");
	ok(!wsc_pmd_accepted(S("permessage-deflate; server_no_context_takeover; server_no_context_takeover")),
	    "repeated parameter");
	ok(!wsc_pmd_accepted(S("permessage-deflate; server_no_context_takeover; server_max_window_bits=16")),
	    "window bits out of range");
	ok(!wsc_pmd_accepted(S("permessage-deflate; server_no_context_takeover; server_max_window_bits=")),
	    "empty window bits");
	ok(!wsc_pmd_accepted(S("permessage-deflate; server_no_context_takeover, x-other")),
	    "a second extension");
	ok(!wsc_pmd_accepted(S("x-webkit-deflate-frame")), "another extension");
	ok(!wsc_pmd_accepted(S("")), "empty value");
}

static void
test_handshake(void)
{
	char buf[512], req[1024];
	const char *why = NULL;
	int deflate = -1;
	size_t n;

	ok(wsc_request(req, sizeof(req), "127.0.0.1", 80, "/", key, 1) > 0 &&
	    strstr(req, "\r\nSec-WebSocket-Extensions: " WSC_PMD_OFFER "\r\n") != NULL,
	    "the request carries the offer");
	ok(wsc_request(req, sizeof(req), "127.0.0.1", 80, "/", key, 0) > 0 &&
	    strstr(req, "Extensions") == NULL, "no offer without deflate");
	n = answer(buf, sizeof(buf), NULL);
	ok(wsc_response_check(buf, n, key, 1, &deflate, &why) == 0 && deflate == 0,
	    "offer declined: open, uncompressed");
	n = answer(buf, sizeof(buf), "permessage-deflate; server_no_context_takeover");
	ok(wsc_response_check(buf, n, key, 1, &deflate, &why) == 0 && deflate == 1, "offer taken");
	ok(wsc_response_check(buf, n, key, 0, &deflate, &why) == -1 &&
	    strcmp(why, "extension accepted that was not offered") == 0, "taken but never offered");
	n = answer(buf, sizeof(buf), "permessage-deflate; server_no_context_takeover\r\n"
	    "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover");
	ok(wsc_response_check(buf, n, key, 1, &deflate, &why) == -1, "answered twice");
	n = answer(buf, sizeof(buf), "permessage-deflate; client_max_window_bits=9");
	ok(wsc_response_check(buf, n, key, 1, &deflate, &why) == -1 &&
	    strcmp(why, "permessage-deflate accepted with parameters not offered") == 0,
	    "a parameter not offered fails the handshake");
}

static void
test_round_trip(void)
{
	struct wsc_pmd z;
	uint8_t big[100000], copy[sizeof(big)];
	const uint8_t *c, *p;
	const char *why;
	size_t clen, plen;

	memset(&z, 0, sizeof(z));
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)("roomd-bench "[i % 12] ^ (i % 7 == 0 ? (i >> 8) : 0));
	for (int round = 0; round < 2; round++) {
		c = wsc_pmd_deflate(&z, big, sizeof(big), &clen);
		ok(c != NULL && clen < sizeof(big) / 4, "compressed %zu bytes to %zu", sizeof(big), clen);
		ok(clen < 4 || memcmp(c + clen - 4, "\0\0\377\377", 4) != 0, "trailer taken off");
		memcpy(copy, c, clen);
		p = wsc_pmd_inflate(&z, copy, clen, sizeof(big), &plen, &why);
		ok(p != NULL && plen == sizeof(big) && memcmp(p, big, plen) == 0,
		    "inflated back, round %d (streams reset between messages)", round);
	}
	c = wsc_pmd_deflate(&z, (const uint8_t *)"", 0, &clen);
	ok(c != NULL, "an empty message compresses");
	memcpy(copy, c, clen);
	p = wsc_pmd_inflate(&z, copy, clen, 10, &plen, &why);
	ok(p != NULL && plen == 0, "and inflates to nothing");

	c = wsc_pmd_deflate(&z, big, sizeof(big), &clen);
	memcpy(copy, c, clen);
	p = wsc_pmd_inflate(&z, copy, clen, sizeof(big) - 1, &plen, &why);
	ok(p == NULL && strcmp(why, "inflated message over the size limit") == 0,
	    "one byte over the limit is refused");
	memset(copy, 0xff, 64);
	p = wsc_pmd_inflate(&z, copy, 64, sizeof(big), &plen, &why);
	ok(p == NULL && strcmp(why, "bad deflate data") == 0, "garbage is bad deflate data");
	c = wsc_pmd_deflate(&z, (const uint8_t *)"hello", 5, &clen);
	memcpy(copy, c, clen);
	p = wsc_pmd_inflate(&z, copy, clen, 100, &plen, &why);
	ok(p != NULL && plen == 5 && memcmp(p, "hello", 5) == 0, "the stream is usable after errors");
	wsc_pmd_free(&z);
	wsc_pmd_free(&z);
	ok(1, "freeing twice is harmless");
}

/* Decode all of buf; the last event that is not NEED. */
static struct wsc_ev
decode_all(struct wsc_decoder *d, uint8_t *buf, size_t len, int *messages)
{
	struct wsc_ev ev, last;
	size_t off = 0;

	memset(&last, 0, sizeof(last));
	*messages = 0;
	for (;;) {
		off += wsc_decode(d, buf + off, len - off, &ev);
		if (ev.type == WSC_NEED)
			return last;
		last = ev;
		*messages += ev.type == WSC_MESSAGE;
		if (ev.type == WSC_ERROR)
			return last;
	}
}

static void
test_decoder_rsv(void)
{
	struct wsc_decoder d;
	struct wsc_ev ev;
	int n;
	uint8_t one[] = { 0xc1, 3, 'a', 'b', 'c' };			/* FIN RSV1 text */
	uint8_t frag[] = { 0x41, 1, 'a', 0x89, 0, 0x80, 1, 'b' };	/* RSV1 text, ping, continuation */
	uint8_t badcont[] = { 0x41, 1, 'a', 0xc0, 1, 'b' };		/* RSV1 on a continuation */
	uint8_t ping[] = { 0xc9, 0 };					/* RSV1 on a ping */
	uint8_t rsv2[] = { 0xa1, 1, 'a' };				/* RSV2 */

	wsc_decoder_init(&d, 0);
	ev = decode_all(&d, one, sizeof(one), &n);
	ok(n == 1 && ev.compressed == 0 && d.proto_errors == 1, "RSV1 without agreement: an error");
	wsc_decoder_free(&d);

	wsc_decoder_init(&d, 0);
	d.pmd = 1;
	ev = decode_all(&d, one, sizeof(one), &n);
	ok(n == 1 && ev.compressed == 1 && ev.len == 3 && d.proto_errors == 0, "compressed message");
	ev = decode_all(&d, rsv2, sizeof(rsv2), &n);
	ok(n == 1 && ev.compressed == 0 && d.proto_errors == 1, "RSV2 is an error, even agreed");
	ev = decode_all(&d, frag, sizeof(frag), &n);
	ok(n == 1 && ev.compressed == 1 && ev.len == 2 && memcmp(ev.data, "ab", 2) == 0 &&
	    d.proto_errors == 1, "fragments: RSV1 on the first marks the message");
	ev = decode_all(&d, (uint8_t[]){ 0x81, 1, 'z' }, 3, &n);
	ok(n == 1 && ev.compressed == 0, "the next message is plain again");
	ev = decode_all(&d, badcont, sizeof(badcont), &n);
	ok(d.proto_errors == 2, "RSV1 on a continuation is an error");
	ev = decode_all(&d, ping, sizeof(ping), &n);
	ok(ev.type == WSC_CONTROL && d.proto_errors == 3, "RSV1 on a control frame is an error");
	wsc_decoder_free(&d);
}

int
main(void)
{
	test_answers();
	test_handshake();
	test_round_trip();
	test_decoder_rsv();
	http_cleanup();
	return tap_done();
}
