/*
 * utf8.c: the validator. ASCII runs are checked eight bytes at a time; other
 * bytes walk the well-formed sequence table of Unicode 15, section 3.9.
 */
#include <string.h>

#include "utf8.h"

int
utf8_feed(struct utf8 *u, const uint8_t *p, size_t n)
{
	const uint8_t *e;

	if (n == 0)
		return 0;	/* p may be NULL: no pointer arithmetic on it */
	e = p + n;
	while (p < e) {
		uint8_t b;

		if (u->need == 0) {
			/* Fast path: eight ASCII bytes at a time. */
			while (e - p >= 8) {
				uint64_t v;

				memcpy(&v, p, 8);
				if (v & 0x8080808080808080ULL)
					break;
				p += 8;
			}
			if (p == e)
				break;
			b = *p++;
			if (b < 0x80)
				continue;
			u->lo = 0x80;
			u->hi = 0xbf;
			if (b >= 0xc2 && b <= 0xdf)
				u->need = 1;
			else if (b >= 0xe0 && b <= 0xef) {
				u->need = 2;
				if (b == 0xe0)
					u->lo = 0xa0;	/* no overlongs */
				else if (b == 0xed)
					u->hi = 0x9f;	/* no surrogates */
			} else if (b >= 0xf0 && b <= 0xf4) {
				u->need = 3;
				if (b == 0xf0)
					u->lo = 0x90;	/* no overlongs */
				else if (b == 0xf4)
					u->hi = 0x8f;	/* nothing above U+10FFFF */
			} else
				return -1;
			continue;
		}
		b = *p++;
		if (b < u->lo || b > u->hi)
			return -1;
		u->need--;
		u->lo = 0x80;
		u->hi = 0xbf;
	}
	return 0;
}

int
utf8_valid(const uint8_t *p, size_t n)
{
	struct utf8 u;

	utf8_reset(&u);
	return utf8_feed(&u, p, n) == 0 && utf8_complete(&u);
}
