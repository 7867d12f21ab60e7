/* log.h - one-line log messages to stderr.
 *
 * Under systemd (JOURNAL_STREAM set) each line carries a "<N>" syslog
 * priority prefix for journald; on a terminal it carries a time and level.
 * Thread-safe: every message is a single write(2). */
#ifndef MBGATE_LOG_H
#define MBGATE_LOG_H

#include <syslog.h>

/* level: LOG_ERR, LOG_WARNING, LOG_INFO or LOG_DEBUG; messages above it are dropped. */
void log_init(int level);
void log_set_level(int level);
int log_level(void);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
