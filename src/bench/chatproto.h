/*
 * chatproto.h: roomd's chat JSON as the load tool needs it: the enter and
 * pong requests it sends, and a tolerant scan of the events it receives.
 */
#ifndef ROOMD_BENCH_CHATPROTO_H
#define ROOMD_BENCH_CHATPROTO_H

#include <stddef.h>
#include <stdint.h>

enum cp_event {
	CP_OTHER,		/* valid-looking but not one we know */
	CP_ENTER,
	CP_OUT,
	CP_MESSAGE,
	CP_HEARTBEAT_PING,	/* {"event":"heartbeat","message":"ping"}: answer it */
	CP_HEARTBEAT_OTHER,
	CP_ERROR,
};

struct cp_info {
	const char	*name;		/* "name", else "message" (enter) */
	size_t		 name_len;
	long long	 num;		/* -1 when absent */
};

/* The answer to a JSON heartbeat. */
#define CP_PONG		"{\"event\":\"heartbeat\",\"message\":\"pong\"}"

/* Classify a server event (no allocation; keys in any order, whitespace allowed). */
enum cp_event cp_parse(const uint8_t *p, size_t len, struct cp_info *);
/* {"event":"enter","message":"<np><i>","roomid":"<rp><room>"}; returns length or -1. */
int cp_enter(char *out, size_t cap, const char *name_prefix, uint32_t i,
    const char *room_prefix, uint32_t room) __attribute__((warn_unused_result));
/* Whether name equals name_prefix followed by the decimal i. */
int cp_name_is(const char *name, size_t len, const char *name_prefix, uint32_t i);
/* Find a string value by key: sets the raw (still escaped) value; returns 0 or -1. */
int cp_find_str(const uint8_t *p, size_t len, const char *key, const char **v, size_t *vlen);

#endif
