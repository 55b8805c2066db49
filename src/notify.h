/*
 * notify.h: tell a service manager (systemd) what the master is doing, with
 * libsystemd's sd_notify: ready, reloading, stopping, a status line, watchdog
 * pings and a new main PID. Built without libsystemd, every call is nothing.
 */
#ifndef ROOMD_NOTIFY_H
#define ROOMD_NOTIFY_H

#include <stdint.h>
#include <sys/types.h>

#include "log.h"

#ifdef HAVE_SYSTEMD

/* Read NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID once, in the master. */
void notify_init(void);
/* 1 if a service manager listens (NOTIFY_SOCKET is set), else 0. */
int notify_on(void);
/* The watchdog timeout in ms that pings must beat, or 0 if none is asked for. */
uint64_t notify_watchdog_ms(void);
/* READY=1 (startup, or the end of a reload) with MAINPID and a status line. */
void notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC of now. */
void notify_reloading(void);
/* STOPPING=1: a stop has begun. */
void notify_stopping(const char *status);
/* STATUS=, only when it differs from the last one sent. */
void notify_status(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* WATCHDOG=1. */
void notify_watchdog(void);
/* MAINPID=pid: another process is the service now (a binary upgrade). */
void notify_mainpid(pid_t pid, const char *status);
/* In a child about to exec a new master: the watchdog is its job now. */
void notify_pass_env(void);
/* In a child about to exec another program (redis-server): not its business. */
void notify_drop_env(void);

#else

static inline void notify_init(void) {}
static inline int notify_on(void) { return 0; }
static inline uint64_t notify_watchdog_ms(void) { return 0; }
static inline void notify_ready(const char *status) { (void)status; }
static inline void notify_reloading(void) {}
static inline void notify_stopping(const char *status) { (void)status; }
static inline void PRINTF_LIKE(1, 2) notify_status(const char *fmt, ...) { (void)fmt; }
static inline void notify_watchdog(void) {}
static inline void notify_mainpid(pid_t pid, const char *status) { (void)pid; (void)status; }
static inline void notify_pass_env(void) {}
static inline void notify_drop_env(void) {}

#endif

#endif
