/*
 * routes.h: which handler serves each route kind (config.h's enum
 * route_kind), in one place. The worker hands this table to its loop.
 */
#ifndef ROOMD_ROUTES_H
#define ROOMD_ROUTES_H

#include "ws.h"

/* Indexed by enum route_kind; NULL for ROUTE_OFF. */
extern const struct route_ops *const routes_table[];

#endif
