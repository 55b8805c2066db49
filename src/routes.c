/*
 * routes.c: the binding of route kinds to their handlers. Adding a route
 * kind means a handler table (struct route_ops) and one line here.
 */
#include "chat.h"
#include "config.h"
#include "echo.h"
#include "routes.h"

const struct route_ops *const routes_table[] = {
	[ROUTE_CHAT] = &chat_route,
	[ROUTE_ECHO] = &echo_route,
	[ROUTE_BROADCAST] = &broadcast_route,
	[ROUTE_OFF] = NULL,
};

_Static_assert(sizeof(routes_table) / sizeof(routes_table[0]) == ROUTE_OFF + 1,
    "every route kind has an entry");
