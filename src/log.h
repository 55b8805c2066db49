/*
 * log.h: leveled logging to stderr, a file or syslog; one line per call:
 * "time pid role [level] message". fatal()/fatalx() end the process (startup only).
 */
#ifndef ROOMD_LOG_H
#define ROOMD_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level {
	LOG_LVL_DEBUG,
	LOG_LVL_INFO,
	LOG_LVL_NOTICE,
	LOG_LVL_WARNING,
	LOG_LVL_ERROR,
	LOG_LVL_ALERT,
};

#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))
#define MUST_CHECK __attribute__((warn_unused_result))

/* Open the destination: NULL or "stderr", "syslog", or a file path. */
int log_open(const char *dest) MUST_CHECK;
/* Close and open the same destination again (SIGUSR1, logrotate). */
int log_reopen(void) MUST_CHECK;
void log_close(void);
void log_set_level(enum log_level);
int log_enabled(enum log_level);
/* Role shown on every line: "master", "worker 3", "redis". */
void log_set_role(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Lines as text (default) or as one JSON object each (log shippers). */
void log_set_json(int);
/*
 * A structured line: event name plus n key/value pairs; text mode writes
 * "event k=v ...", JSON mode writes each pair as its own field.
 */
void log_kv(enum log_level, const char *event, const char *const *keys, const char *const *vals, int n);
/* Parse "debug", "info", ... ; -1 if unknown. */
int log_level_parse(const char *);
const char *log_level_name(enum log_level);

void log_msg(enum log_level, const char *fmt, ...) PRINTF_LIKE(2, 3);
void log_vmsg(enum log_level, const char *fmt, va_list) PRINTF_LIKE(2, 0);
/* Like log_msg but appends " (errno: strerror)" of the current errno. */
void log_errno(enum log_level, const char *fmt, ...) PRINTF_LIKE(2, 3);

#define log_debug(...)	do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)	log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_notice(...)	log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_warn(...)	log_msg(LOG_LVL_WARNING, __VA_ARGS__)
#define log_error(...)	log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_alert(...)	log_msg(LOG_LVL_ALERT, __VA_ARGS__)

/* Log at error level with errno text and exit(1). */
void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2) NORETURN;
/* Log at error level without errno text and exit(1). */
void fatalx(const char *fmt, ...) PRINTF_LIKE(1, 2) NORETURN;

/*
 * Copy untrusted bytes into dst as printable ASCII (\xNN escapes), always
 * NUL-terminated, truncated with "..." when dst is too small. Returns dst.
 */
char *log_escape(char *dst, size_t dstlen, const void *src, size_t srclen);

#endif
