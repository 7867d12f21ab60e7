/* sample.h - a sample on its way from a bus thread to the broker.
 *
 * A sample is one tag's value (or, in the device layout, one device's
 * values) already rendered as JSON text by the bus thread, so that the
 * outbox stores, and the publisher sends, the same bytes whatever happens
 * to the configuration in between. */
#ifndef MBGATE_SAMPLE_H
#define MBGATE_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

typedef struct sample {
    struct sample *next; /* list link, owned by whoever holds the sample */
    int64_t id;          /* outbox row id; 0 while not stored */
    int64_t ts;          /* ms since the epoch, when the PLC answered */
    bool good;           /* quality */
    bool hist;           /* delivered from the backlog (taken while offline) */
    uint8_t type;        /* codec_type of the tag (device layout: 0) */
    char dev[CFG_NAME_MAX];
    char tag[CFG_NAME_MAX]; /* "" for a device-layout sample */
    const char *val;     /* JSON text: the value or the values object; NULL when bad */
    const char *err;     /* error text when bad, else NULL */
    char data[];         /* storage for val and err */
} sample;

/* One allocation holding everything; NULL on out-of-memory. */
sample *sample_new(const char *dev, const char *tag, int64_t ts, bool good,
                   uint8_t type, const char *val, const char *err);
void sample_free_list(sample *s);

/* Wall clock in ms since the epoch, and the monotonic clock in ms. */
int64_t now_ms(void);
int64_t mono_ms(void);

#endif
