/*
 * clock.h: the one clock of the process. Monotonic milliseconds (coarse:
 * cheap enough for every read), monotonic microseconds (precise, for
 * measuring), and wall-clock milliseconds for timestamps clients see.
 */
#ifndef ROOMD_CLOCK_H
#define ROOMD_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds (CLOCK_MONOTONIC_COARSE: a few ms of resolution). */
uint64_t clock_ms(void);
/* Monotonic microseconds (CLOCK_MONOTONIC). */
uint64_t clock_us(void);
/* Milliseconds since the epoch (CLOCK_REALTIME_COARSE). */
uint64_t clock_wall_ms(void);

#endif
