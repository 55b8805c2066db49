/*
 * jbuf.h: a growable output buffer, reused across events, and the writers
 * the JSON and text builders use (raw bytes, integers, escaped strings).
 */
#ifndef ROOMD_JBUF_H
#define ROOMD_JBUF_H

#include <stddef.h>

struct jbuf {
	char	*p;
	size_t	 len, cap;
	int	 oom;	/* a write failed: the contents are incomplete */
};

void jbuf_reset(struct jbuf *);
void jbuf_free(struct jbuf *);
void jbuf_add(struct jbuf *, const char *, size_t);
void jbuf_str(struct jbuf *, const char *);	/* a C string, raw */
void jbuf_json(struct jbuf *, const char *, size_t);	/* a quoted, escaped JSON string */
void jbuf_int(struct jbuf *, long long);
size_t jbuf_itoa(char out[24], long long);	/* decimal, no NUL; its length */

#endif
