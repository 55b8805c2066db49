/*
 * proto.h: the chat protocol's JSON, with no I/O. Parses client events
 * (enter, message, out, heartbeat, who) with their bounds, and writes the
 * server's events into a reusable buffer.
 */
#ifndef ROOMD_PROTO_H
#define ROOMD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "jbuf.h"
#include "log.h"

enum chat_event { CHAT_ENTER, CHAT_MESSAGE, CHAT_OUT, CHAT_HEARTBEAT, CHAT_WHO, CHAT_REFRESH, CHAT_HISTORY };

/*
 * The first byte of a guest's name inside roomd (never in a name a client
 * gives: names hold no control characters): its events say "guest":true.
 */
#define PROTO_GUEST	'\x01'

/* Offsets a client may name: JavaScript's safe integers, so every client reads them exactly. */
#define PROTO_MAX_OFFSET	9007199254740991ULL
#define PROTO_MAX_EPOCH		24

struct chat_req {
	enum chat_event	 ev;
	const char	*message;	/* enter: the name; message: the text */
	size_t		 message_len;
	const char	*roomid;	/* NULL when absent */
	size_t		 roomid_len;
	const char	*token;		/* refresh: the new token */
	size_t		 token_len;
	int		 since;		/* enter: the client's last position follows */
	uint64_t	 since_offset;
	const char	*since_epoch;
	size_t		 since_epoch_len;
	unsigned	 history;	/* enter: the last messages wanted; history: how many (limit) */
	uint64_t	 before;	/* history: messages before this offset; 0: up to now */
};

struct proto_limits {
	size_t	max_name;
	size_t	max_roomid;
	size_t	max_token;
	unsigned max_history;	/* history a client may ask for at once; 0: history is off */
};

struct proto;	/* a parser (holds a json-c tokener); one per worker */
struct json_object;

struct proto *proto_new(void);
void proto_free(struct proto *);
/*
 * Parse len bytes as one JSON value (strict JSON, nested at most 16 deep;
 * white space may follow it): 0 with *out (NULL for null; held by the
 * parser until its next parse), or -1 if the bytes are not that.
 */
int proto_json(struct proto *, const char *json, size_t len, struct json_object **out);
/* An object's optional string member: 1 found, 0 absent, -1 of another type. */
int proto_get_string(struct json_object *, const char *key, const char **s, size_t *len);
/* An object's optional whole-number member in [0, max]: 1 found, 0 absent, -1 of another type or out of range. */
int proto_get_uint(struct json_object *, const char *key, uint64_t max, uint64_t *v);
/*
 * Parse one client text message. On success fills req (pointers valid until
 * the next call) and returns 0; on bad input returns -1 with a short error
 * code ("bad_json", "not_object", "unknown_event", "bad_field") and a
 * human-readable reason.
 */
int proto_parse(struct proto *, const char *json, size_t len, const struct proto_limits *,
    struct chat_req *req, const char **code, char *why, size_t whylen);
/* Whether s is a valid name or room id: non-empty, <= max bytes, no control characters. */
int proto_valid_label(const char *s, size_t len, size_t max);

/* The tutorial's way to say a token is missing or bad (then the server closes with 4001). */
#define PROTO_NOAUTH	"{\"event\":\"noAuth\",\"message\":\"a valid token is required\"}"

/* Server events (each replaces the buffer's contents). num < 0 leaves num out. */
void proto_enter(struct jbuf *, const char *name, size_t nl, const char *room, size_t rl, long num);
void proto_out(struct jbuf *, const char *name, size_t nl, const char *room, size_t rl, long num);
/* A chat message event without its end: Redis adds ,"num":N,"offset":N} as it stores it. */
void proto_message_head(struct jbuf *, const char *name, size_t nl, const char *text, size_t tl,
    const char *room, size_t rl, const char *id, uint64_t ts_ms);
/* Whether a client caught up ("recovered"), and the room's position after it. */
void proto_recovered(struct jbuf *, const char *room, size_t rl, int recovered, uint64_t offset,
    const char *epoch, long long count, long num);
/* history: begin, then one proto_history_message per stored message event (JSON), then end. */
void proto_history_begin(struct jbuf *, const char *room, size_t rl);
void proto_history_message(struct jbuf *, const char *json, size_t len, int first);
void proto_history_end(struct jbuf *, uint64_t offset, const char *epoch, long num);
/* The answer to a refresh: the new token holds until exp (seconds since the epoch; 0: no expiry). */
void proto_refreshed(struct jbuf *, long long exp, long num);
/* The JSON heartbeat: the server's ping, or its pong to a client's ping. */
void proto_heartbeat(struct jbuf *, int pong, long num);
void proto_error(struct jbuf *, const char *code, const char *message);
/* who: the names (n of them, of a room of total), and which are guests'. */
void proto_who(struct jbuf *, const char *room, size_t rl, const char *const *names, const size_t *lens,
    size_t n, long total);

#endif
