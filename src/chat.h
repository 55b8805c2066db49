/*
 * chat.h: the chat and broadcast routes. Turns a session's messages into
 * room actions (the tutorial JSON protocol, or verbatim relay) and keeps the
 * per-session state: memberships and the JSON heartbeat.
 */
#ifndef ROOMD_CHAT_H
#define ROOMD_CHAT_H

#include <stddef.h>
#include <stdint.h>

struct session;

/* The session was upgraded on a chat or broadcast route. */
void chat_open(struct session *);
/* Whether the session's token allows the broadcast room its URL names (1 without a token). */
int chat_broadcast_allowed(struct session *);
/* A complete message arrived. */
void chat_message(struct session *, int opcode, const uint8_t *data, size_t len);
/* Timers: the JSON heartbeat. */
void chat_tick(struct session *, uint64_t now);
/* Leave every room now (graceful stop: others hear "out" before we close). */
void chat_leave_all(struct session *);
/* The session is gone: leave rooms and free the state. */
void chat_free(struct session *);
/* The session's rooms, comma-separated and escaped for a log line. */
void chat_rooms(struct session *, char *buf, size_t len);

#endif
