/*
 * echo.h: the echo route: every message is sent back to its sender.
 */
#ifndef ROOMD_ECHO_H
#define ROOMD_ECHO_H

#include "ws.h"

extern const struct route_ops echo_route;

#endif
