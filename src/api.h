/*
 * api.h: the HTTP API for backends (roomd-api(7)): publish, broadcast,
 * disconnect, rooms, history and info, served by any worker from the state
 * in Redis. The worker's liveness record for /api/info and the control
 * messages of disconnect are kept here too, on every worker.
 */
#ifndef ROOMD_API_H
#define ROOMD_API_H

#include <stdint.h>

#include "log.h"

struct loop;

/*
 * Serve the API's calls on loop (set as its handler) and listen to the
 * control channel; instance names this roomd, wid this worker. After
 * room_init. -1 when out of memory.
 */
int api_init(struct loop *, const char *instance, const char *wid) MUST_CHECK;
/* Once per tick: refresh the liveness record; give up on disconnects that waited too long. */
void api_tick(uint64_t now);
/* After room_shutdown (whose Redis replies still reach the calls in flight): free what is left. */
void api_shutdown(void);

#endif
