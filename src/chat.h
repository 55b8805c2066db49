/*
 * chat.h: the chat and broadcast routes. chat speaks the tutorial JSON
 * protocol (enter, message, out, who, heartbeat) over rooms; broadcast
 * relays every message verbatim to the room its URL names.
 */
#ifndef ROOMD_CHAT_H
#define ROOMD_CHAT_H

#include "ws.h"

extern const struct route_ops chat_route;
extern const struct route_ops broadcast_route;

#endif
