/*
 * test_utf8.c: the incremental UTF-8 validator against the Unicode table of
 * well-formed sequences, at every split point, and its fail-fast promise.
 */
#include <stdint.h>
#include <string.h>

#include "utf8.h"
#include "tap.h"

struct seq {
	const char	*name;
	const char	*bytes;
	size_t		 len;
	int		 valid;		/* whole string valid and complete */
	int		 bad_at;	/* invalid: index of the first byte utf8_feed must reject; -1: only incomplete */
};

#define S(s) s, sizeof(s) - 1

static const struct seq table[] = {
	{ "empty", S(""), 1, 0 },
	{ "ASCII", S("hello, world"), 1, 0 },
	{ "NUL and DEL", S("\x00\x7f"), 1, 0 },
	{ "long ASCII run (fast path)", S("abcdefghijklmnopqrstuvwxyz0123456789"), 1, 0 },
	{ "U+0080", S("\xc2\x80"), 1, 0 },
	{ "U+07FF", S("\xdf\xbf"), 1, 0 },
	{ "U+0800", S("\xe0\xa0\x80"), 1, 0 },
	{ "U+0FFF", S("\xe0\xbf\xbf"), 1, 0 },
	{ "U+1000", S("\xe1\x80\x80"), 1, 0 },
	{ "U+D7FF", S("\xed\x9f\xbf"), 1, 0 },
	{ "U+E000", S("\xee\x80\x80"), 1, 0 },
	{ "U+FFFD", S("\xef\xbf\xbd"), 1, 0 },
	{ "U+FFFF", S("\xef\xbf\xbf"), 1, 0 },
	{ "U+10000", S("\xf0\x90\x80\x80"), 1, 0 },
	{ "U+3FFFF", S("\xf0\xbf\xbf\xbf"), 1, 0 },
	{ "U+40000", S("\xf1\x80\x80\x80"), 1, 0 },
	{ "U+FFFFF", S("\xf3\xbf\xbf\xbf"), 1, 0 },
	{ "U+100000", S("\xf4\x80\x80\x80"), 1, 0 },
	{ "U+10FFFF", S("\xf4\x8f\xbf\xbf"), 1, 0 },
	{ "mixed text", S("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 ok \xf0\x9f\x98\x80!"), 1, 0 },
	{ "ASCII then 4-byte after 8-byte run", S("01234567\xf0\x9f\x98\x80"), 1, 0 },

	/* Overlong forms. */
	{ "overlong C0 80", S("\xc0\x80"), 0, 0 },
	{ "overlong C1 BF", S("\xc1\xbf"), 0, 0 },
	{ "overlong E0 80 80", S("\xe0\x80\x80"), 0, 1 },
	{ "overlong E0 9F BF", S("\xe0\x9f\xbf"), 0, 1 },
	{ "overlong F0 80 80 80", S("\xf0\x80\x80\x80"), 0, 1 },
	{ "overlong F0 8F BF BF", S("\xf0\x8f\xbf\xbf"), 0, 1 },
	/* Surrogates. */
	{ "surrogate ED A0 80", S("\xed\xa0\x80"), 0, 1 },
	{ "surrogate ED AF BF", S("\xed\xaf\xbf"), 0, 1 },
	{ "surrogate ED B0 80", S("\xed\xb0\x80"), 0, 1 },
	{ "surrogate ED BF BF", S("\xed\xbf\xbf"), 0, 1 },
	{ "surrogate pair", S("\xed\xa0\x80\xed\xb0\x80"), 0, 1 },
	/* Above U+10FFFF. */
	{ "F4 90 80 80", S("\xf4\x90\x80\x80"), 0, 1 },
	{ "F4 BF BF BF", S("\xf4\xbf\xbf\xbf"), 0, 1 },
	{ "F5", S("\xf5\x80\x80\x80"), 0, 0 },
	{ "F7", S("\xf7\xbf\xbf\xbf"), 0, 0 },
	{ "F8 (5-byte form)", S("\xf8\x88\x80\x80\x80"), 0, 0 },
	{ "FC (6-byte form)", S("\xfc\x84\x80\x80\x80\x80"), 0, 0 },
	{ "FE", S("\xfe"), 0, 0 },
	{ "FF", S("\xff"), 0, 0 },
	/* Lone and misplaced continuation bytes. */
	{ "lone 80", S("\x80"), 0, 0 },
	{ "lone BF", S("\xbf"), 0, 0 },
	{ "continuation after ASCII", S("ab\x80"), 0, 2 },
	{ "extra continuation", S("\xc2\x80\x80"), 0, 2 },
	{ "ASCII inside a 2-byte sequence", S("\xc2" "a"), 0, 1 },
	{ "ASCII inside a 3-byte sequence", S("\xe1\x80" "a"), 0, 2 },
	{ "ASCII inside a 4-byte sequence", S("\xf1\x80\x80" "a"), 0, 3 },
	{ "lead inside a sequence", S("\xe1\xc2\x80"), 0, 1 },
	{ "invalid after a long ASCII run", S("0123456789abcdef\xff" "0123456789"), 0, 16 },
	/* Truncated at the end: valid so far, but not complete. */
	{ "truncated C2", S("\xc2"), 0, -1 },
	{ "truncated E1 80", S("\xe1\x80"), 0, -1 },
	{ "truncated E0 A0", S("\xe0\xa0"), 0, -1 },
	{ "truncated F0 90 80", S("\xf0\x90\x80"), 0, -1 },
	{ "truncated F4 8F", S("\xf4\x8f"), 0, -1 },
	{ "truncated after text", S("text \xf0\x9f\x98"), 0, -1 },
};

/* Feed s in pieces cut at the given positions; returns -1 and *at on failure. */
static int
feed_split(const uint8_t *s, size_t n, const size_t *cuts, int ncuts, size_t *at, int *complete)
{
	struct utf8 u;
	size_t prev = 0;

	utf8_reset(&u);
	for (int i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : n;

		if (utf8_feed(&u, s + prev, end - prev) == -1) {
			*at = end;
			return -1;
		}
		prev = end;
	}
	*complete = utf8_complete(&u);
	return 0;
}

/* The whole table in one call, and byte by byte to find where it fails. */
static void
test_table(void)
{
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const struct seq *t = &table[i];
		const uint8_t *s = (const uint8_t *)t->bytes;
		struct utf8 u;
		int fail_at = -1;

		is_int(utf8_valid(s, t->len), t->valid, "utf8_valid: %s", t->name);
		/* Fail fast: one byte at a time, the first rejected byte is the bad one. */
		utf8_reset(&u);
		for (size_t k = 0; k < t->len; k++) {
			if (utf8_feed(&u, s + k, 1) == -1) {
				fail_at = (int)k;
				break;
			}
		}
		if (t->valid)
			ok(fail_at == -1 && utf8_complete(&u), "byte-wise valid: %s", t->name);
		else if (t->bad_at >= 0)
			is_int(fail_at, t->bad_at, "byte-wise rejects at the first bad byte: %s", t->name);
		else
			ok(fail_at == -1 && !utf8_complete(&u), "byte-wise incomplete, not invalid: %s", t->name);
	}
}

/* Every single split point, and every pair of split points, of valid multi-byte text. */
static void
test_splits(void)
{
	static const char text[] = "a\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xef\xbf\xbd"
	    "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xce\xba\xe1\xbd\xb9";
	const uint8_t *s = (const uint8_t *)text;
	size_t n = sizeof(text) - 1, at, cuts[2];
	int bad = 0, incomplete = 0, complete;

	for (size_t a = 0; a <= n; a++) {
		cuts[0] = a;
		if (feed_split(s, n, cuts, 1, &at, &complete) == -1)
			bad++;
		else if (!complete)
			incomplete++;
		for (size_t b = a; b <= n; b++) {
			cuts[1] = b;
			if (feed_split(s, n, cuts, 2, &at, &complete) == -1)
				bad++;
			else if (!complete)
				incomplete++;
		}
	}
	is_int(bad, 0, "valid text accepted at every split (1 and 2 cuts)");
	is_int(incomplete, 0, "valid text complete at every split");

	/* Every prefix of a valid string is "valid so far"; only boundaries are complete. */
	{
		static const size_t boundaries[] = { 0, 1, 3, 5, 8, 11, 14, 18, 22, 24, 27 };
		int wrong = 0;

		for (size_t k = 0; k <= n; k++) {
			struct utf8 u;
			int bnd = 0;

			utf8_reset(&u);
			if (utf8_feed(&u, s, k) == -1)
				wrong++;
			for (size_t j = 0; j < sizeof(boundaries) / sizeof(boundaries[0]); j++)
				bnd |= boundaries[j] == k;
			if (utf8_complete(&u) != bnd)
				wrong++;
		}
		is_int(wrong, 0, "every prefix is valid so far; complete exactly at character boundaries");
	}

	/* Every split of every invalid table entry still fails, at the same point. */
	{
		int wrong = 0;

		for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
			const struct seq *t = &table[i];

			if (t->valid || t->bad_at < 0)
				continue;
			for (size_t a = 0; a <= t->len; a++) {
				cuts[0] = a;
				if (feed_split((const uint8_t *)t->bytes, t->len, cuts, 1, &at, &complete) == 0)
					wrong++;
				/* The piece that holds the bad byte is the one rejected. */
				else if (at != (a > (size_t)t->bad_at ? a : t->len))
					wrong++;
			}
		}
		is_int(wrong, 0, "invalid sequences rejected in the piece holding the bad byte, at every split");
	}
}

/* Every byte value as a lead byte, checked against an independent classification. */
static void
test_lead_bytes(void)
{
	int wrong = 0;

	for (int b = 0; b < 256; b++) {
		uint8_t c = (uint8_t)b;
		struct utf8 u;
		int rc, want_ok = b < 0x80 || (b >= 0xc2 && b <= 0xf4);

		utf8_reset(&u);
		rc = utf8_feed(&u, &c, 1);
		if ((rc == 0) != want_ok)
			wrong++;
		if (rc == 0 && utf8_complete(&u) != (b < 0x80))
			wrong++;
	}
	is_int(wrong, 0, "all 256 lead bytes classified");
}

/* Exhaustive: every 2- and 3-byte sequence against a reference decoder. */
static int
ref_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t len;

		if (s[i] < 0x80) {
			i++;
			continue;
		} else if ((s[i] & 0xe0) == 0xc0) {
			len = 2;
			cp = s[i] & 0x1f;
		} else if ((s[i] & 0xf0) == 0xe0) {
			len = 3;
			cp = s[i] & 0x0f;
		} else if ((s[i] & 0xf8) == 0xf0) {
			len = 4;
			cp = s[i] & 0x07;
		} else
			return 0;
		if (i + len > n)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
			return 0;
		if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

static void
test_exhaustive(void)
{
	uint8_t s[4];
	int wrong = 0;
	long n4 = 0;

	for (int a = 0; a < 256; a++)
		for (int b = 0; b < 256; b++) {
			s[0] = (uint8_t)a;
			s[1] = (uint8_t)b;
			if (utf8_valid(s, 2) != ref_valid(s, 2))
				wrong++;
			for (int c = 0x70; c < 0xd0; c++) {
				s[2] = (uint8_t)c;
				if (utf8_valid(s, 3) != ref_valid(s, 3))
					wrong++;
			}
		}
	is_int(wrong, 0, "every 2-byte and most 3-byte strings agree with a reference decoder");
	wrong = 0;
	for (int a = 0xf0; a < 0xf8; a++)
		for (int b = 0x7f; b < 0xc1; b++)
			for (int c = 0x7f; c < 0xc1; c += 3)
				for (int d = 0x7f; d < 0xc1; d += 5) {
					s[0] = (uint8_t)a;
					s[1] = (uint8_t)b;
					s[2] = (uint8_t)c;
					s[3] = (uint8_t)d;
					n4++;
					if (utf8_valid(s, 4) != ref_valid(s, 4))
						wrong++;
				}
	is_int(wrong, 0, "%ld 4-byte strings agree with a reference decoder", n4);
}

int
main(void)
{
	test_table();
	test_splits();
	test_lead_bytes();
	test_exhaustive();
	return tap_done();
}
