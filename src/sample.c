/* sample.c - samples and clocks. */
#include "sample.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

sample *sample_new(const char *dev, const char *tag, int64_t ts, bool good,
                   uint8_t type, const char *val, const char *err)
{
    size_t lv = val ? strlen(val) + 1 : 0, le = err ? strlen(err) + 1 : 0;
    sample *s = malloc(sizeof *s + lv + le);
    if (!s)
        return NULL;
    s->next = NULL;
    s->id = 0;
    s->ts = ts;
    s->good = good;
    s->hist = false;
    s->type = type;
    snprintf(s->dev, sizeof s->dev, "%s", dev);
    snprintf(s->tag, sizeof s->tag, "%s", tag ? tag : "");
    s->val = val ? memcpy(s->data, val, lv) : NULL;
    s->err = err ? memcpy(s->data + lv, err, le) : NULL;
    return s;
}

void sample_free_list(sample *s)
{
    while (s) {
        sample *n = s->next;
        free(s);
        s = n;
    }
}

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t now_ms(void) { return clock_ms(CLOCK_REALTIME); }
int64_t mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
