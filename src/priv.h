/*
 * priv.h: giving up root. A child of the master (worker, private
 * redis-server) becomes the configured user; files it must reopen are
 * handed to that user first.
 */
#ifndef ROOMD_PRIV_H
#define ROOMD_PRIV_H

#include "log.h"

/* Become user (when running as root; a warning otherwise). 0, or -1 (logged). */
int priv_drop(const char *user) MUST_CHECK;
/* As root, with a user: give path to that user (a log file workers reopen). */
void priv_chown(const char *path, const char *user);

#endif
