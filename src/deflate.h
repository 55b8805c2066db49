/*
 * deflate.h: permessage-deflate (RFC 7692). Parses and answers the client's
 * Sec-WebSocket-Extensions offers, and compresses and inflates messages
 * with per-worker zlib streams: the server never keeps context between
 * messages, so one compressed frame serves every member of a room and no
 * connection holds a compressor.
 */
#ifndef ROOMD_DEFLATE_H
#define ROOMD_DEFLATE_H

#include <stddef.h>
#include <stdint.h>

#include "log.h"

struct deflate_params {
	int	enabled;
	int	server_bits;		/* our window for compressing, 9..15 */
	int	client_bits;		/* the client's window, 8..15 (15 if not limited) */
	int	client_no_context;	/* always asked for: we keep no inflate context */
};

struct deflate_config {
	int	window_bits;		/* the largest window we compress with */
};

/*
 * Pick the first acceptable offer from the Sec-WebSocket-Extensions header
 * values (comma-separated offers, ;-separated parameters). Offers we cannot
 * honour or that are malformed (unknown or repeated parameter, bad value)
 * are declined. Fills p and the response header value (no CRLF) on success
 * and returns 1; returns 0 when no offer is acceptable.
 */
int deflate_negotiate(const char *offers, size_t len, const struct deflate_config *, struct deflate_params *p,
    char *resp, size_t resplen);

/* Per-worker zlib streams; 0 or -1 (out of memory). */
int deflate_init(int level, int max_bits) MUST_CHECK;
void deflate_free(void);
/*
 * Compress a whole message with window bits, no context kept. Returns the
 * compressed length written at out (RFC 7692 trailer removed), or -1 if it
 * does not fit in outlen.
 */
long deflate_compress(int bits, const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen);
/* An upper bound on the compressed size of inlen bytes. */
size_t deflate_bound(size_t inlen);

#define DEFLATE_OK		0
#define DEFLATE_TOO_BIG	1	/* the inflated message would exceed the limit */
#define DEFLATE_BAD		2	/* not valid deflate data */
/*
 * Inflate a whole compressed message into *out (grown with realloc, at most
 * max bytes): stops as soon as the output would pass max. Returns DEFLATE_OK
 * with *outlen set, DEFLATE_TOO_BIG or DEFLATE_BAD.
 */
int deflate_inflate(const uint8_t *in, size_t inlen, size_t max, uint8_t **out, size_t *outcap, size_t *outlen);

#endif
