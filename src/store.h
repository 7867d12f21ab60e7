/* store.h - the SQLite outbox file (state_dir/outbox.db, WAL).
 *
 * Rows are samples waiting for the broker's acknowledgement; a new row's id
 * is above every stored row's (assigned here). Also a small table of
 * persistent counters. Only the publisher thread uses a store. */
#ifndef MBGATE_STORE_H
#define MBGATE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sample.h"

typedef struct store store;

/* Open or create dir/outbox.db. A corrupt or foreign file is renamed to
 * outbox.db.bad-<time> with an error logged, and a fresh one is created.
 * NULL with err filled when even that fails. */
store *store_open(const char *dir, bool sync_full, char *err, size_t errlen);
void store_close(store *st);

/* Insert a list in one transaction, giving each sample its id. -1 when
 * the write failed (then nothing was stored); store_disk_full() tells
 * whether it was for lack of space. */
int store_put(store *st, sample *list);
bool store_disk_full(const store *st);

/* Delete rows by id in one transaction (ids is sorted in place, runs of
 * consecutive ids go as one range); -1 on failure (retry later). */
int store_delete(store *st, int64_t *ids, size_t n);

/* Up to limit rows with after < id < before, oldest first, as a list. */
sample *store_read(store *st, int64_t after, int64_t before, int limit);

/* The next id store_put will assign. */
int64_t store_next_id(const store *st);

/* Rows, oldest ts (0 if none), bytes used by rows and on disk (db + wal). */
void store_stats(store *st, int64_t *rows, int64_t *oldest_ts,
                 int64_t *used_bytes, int64_t *file_bytes);

/* Drop the n oldest rows / rows older than ts, among rows with id > after
 * (rows up to after are already on their way); returns how many went
 * (-1 on error). */
int64_t store_drop_oldest(store *st, int64_t n, int64_t after);
int64_t store_drop_before(store *st, int64_t ts, int64_t after);

/* Persistent counters ("dropped", "bdseq"); get returns 0 when unset. */
int64_t store_counter(store *st, const char *key);
int store_set_counter(store *st, const char *key, int64_t value);

#endif
