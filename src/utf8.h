/*
 * utf8.h: an incremental, fail-fast UTF-8 validator (Unicode Table 3-7):
 * it rejects the first byte that cannot continue a valid sequence, even when
 * the text arrives in pieces.
 */
#ifndef ROOMD_UTF8_H
#define ROOMD_UTF8_H

#include <stddef.h>
#include <stdint.h>

struct utf8 {
	uint8_t	need;	/* continuation bytes still expected */
	uint8_t	lo, hi;	/* allowed range of the next continuation byte */
};

static inline void utf8_reset(struct utf8 *u) { u->need = 0; u->lo = 0x80; u->hi = 0xbf; }
/* Feed bytes; 0 while valid so far, -1 at the first invalid byte. */
int utf8_feed(struct utf8 *, const uint8_t *, size_t);
/* Whether the text fed so far ends on a character boundary. */
static inline int utf8_complete(const struct utf8 *u) { return u->need == 0; }
/* Validate a whole string. */
int utf8_valid(const uint8_t *, size_t);

#endif
