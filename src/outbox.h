/* outbox.h - delivery engine between the bus threads and the broker.
 *
 * Every sample is committed to the store before it may be published and is
 * deleted only once the broker acknowledged it. Live samples go first;
 * what was stored while the broker was unreachable (the backlog) follows,
 * oldest first, flagged hist, at buffer.replay_rate, within a bounded
 * in-flight window. If the disk is full the outbox holds samples in memory
 * (bounded, oldest dropped and counted) and retries the disk. */
#ifndef MBGATE_OUTBOX_H
#define MBGATE_OUTBOX_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "sample.h"

typedef struct outbox outbox;

typedef struct {
    int64_t pending;      /* samples not yet acknowledged (stored + in memory) */
    int64_t oldest_ts;    /* ts of the oldest pending sample, 0 if none */
    int64_t file_bytes;   /* outbox.db + WAL on disk */
    int64_t dropped;      /* total dropped to caps or a full disk (persisted) */
    bool dropping;        /* dropped within the last minute */
    bool disk_full;       /* holding samples in memory */
    int64_t inflight;
    int64_t published, acked;
} outbox_stats;

outbox *outbox_open(const config *cfg, char *err, size_t errlen);
void outbox_close(outbox *ob);

/* Take ownership of a list of fresh samples: commit them in one transaction
 * and queue them for live publishing if the broker is connected. */
void outbox_add(outbox *ob, sample *list);

/* The broker connection came up / went down. Going down turns every
 * unacknowledged sample into backlog. */
void outbox_connected(outbox *ob, bool up);

/* The next sample to publish now, or NULL (nothing due, window full, rate
 * limit). The outbox keeps ownership. The caller publishes it and reports
 * outbox_sent() with the message id, or outbox_failed() to retry later. */
sample *outbox_next(outbox *ob, int64_t mono_now);
void outbox_sent(outbox *ob, sample *s, int mid);
void outbox_failed(outbox *ob, sample *s);

/* The broker acknowledged message mid. */
void outbox_acked(outbox *ob, int mid);

/* The broker refused message mid: it leaves the in-flight window (so a
 * refusing ACL cannot stall everything) but stays stored, to be sent again
 * after the next reconnect. */
void outbox_refused(outbox *ob, int mid);

/* Housekeeping, called at least every 100 ms: batched deletes, caps,
 * disk retries. */
void outbox_tick(outbox *ob, int64_t mono_now);

void outbox_stats_get(outbox *ob, outbox_stats *out);

/* Messages published and not yet acknowledged (cheap: no store query). */
size_t outbox_inflight(const outbox *ob);

/* Persistent counters shared with other modules (Sparkplug bdSeq). */
int64_t outbox_counter(outbox *ob, const char *key);
void outbox_set_counter(outbox *ob, const char *key, int64_t v);

#endif
