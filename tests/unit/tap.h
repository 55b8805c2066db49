/*
 * tap.h: a minimal TAP producer for roomd's C unit tests (automake's TAP
 * driver counts the "ok"/"not ok" lines). Header-only; one per test program.
 */
#ifndef ROOMD_TAP_H
#define ROOMD_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

/* The condition is evaluated once: it may have side effects. */
#define ok(cond, ...) do {						\
	int pass_ = (cond) ? 1 : 0;					\
	tap_n++;							\
	if (pass_)							\
		printf("ok %d - ", tap_n);				\
	else {								\
		tap_failed++;						\
		printf("not ok %d - ", tap_n);				\
	}								\
	printf(__VA_ARGS__);						\
	printf("\n");							\
	if (!pass_)							\
		printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
} while (0)

#define is_int(got, want, ...) do {					\
	long long g_ = (long long)(got), w_ = (long long)(want);	\
	ok(g_ == w_, __VA_ARGS__);					\
	if (g_ != w_)							\
		printf("#   got %lld, want %lld\n", g_, w_);		\
} while (0)

#define is_str(got, want, ...) do {					\
	const char *g_ = (got), *w_ = (want);				\
	int same_ = g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0;	\
	ok(same_, __VA_ARGS__);						\
	if (!same_)							\
		printf("#   got '%s', want '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
} while (0)

/*
 * An exact-size heap copy of n bytes, for feeding a parser: ASan then sees a
 * read past the end that a string literal's NUL would hide. Bails out when
 * out of memory; the caller frees it.
 */
static inline void *
tap_dup(const void *p, size_t n)
{
	void *c = malloc(n > 0 ? n : 1);

	if (c == NULL) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	memcpy(c, p, n);
	return c;
}

/* Print the plan last (TAP allows it) and return the exit status. */
static inline int
tap_done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed != 0;
}

#endif
