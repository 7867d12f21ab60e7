/* log.c - one-line log messages to stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static atomic_int max_level = LOG_INFO;
static bool journal;

void log_init(int level)
{
    journal = getenv("JOURNAL_STREAM") != NULL;
    max_level = level;
}

void log_set_level(int level) { max_level = level; }

int log_level(void) { return max_level; }

void log_msg(int prio, const char *fmt, ...)
{
    static const char *names[] = { "emerg", "alert", "crit", "error",
                                   "warning", "notice", "info", "debug" };
    char line[2048];
    int n;

    if (prio > max_level)
        return;
    if (journal) {
        n = snprintf(line, sizeof line, "<%d>", prio);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = (int)strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S", &tm);
        n += snprintf(line + n, sizeof line - n, ".%03ld %s: ",
                      ts.tv_nsec / 1000000, names[prio & 7]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* one write keeps lines from different threads whole */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
