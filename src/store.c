/* store.c - the SQLite outbox file. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "log.h"

#define APP_ID 0x6d626774 /* "mbgt": tells our file from a foreign SQLite file */

struct store {
    sqlite3 *db;
    sqlite3_stmt *ins, *del, *sel, *cnt_get, *cnt_set, *begin, *commit;
    char path[1100];
    int64_t next_id;
    int64_t rows;
    bool full;
};

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS outbox("
    " id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, dev TEXT NOT NULL,"
    " tag TEXT NOT NULL, good INTEGER NOT NULL, type INTEGER NOT NULL,"
    " val TEXT, err TEXT);"
    "CREATE TABLE IF NOT EXISTS counters(key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *q;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return v;
}

/* Is this a database we can use: ours, or empty? Sets why when not. */
static bool usable(sqlite3 *db, const char **why)
{
    sqlite3_stmt *q;
    bool ok = false;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &q, NULL) != SQLITE_OK) {
        *why = sqlite3_errmsg(db);
        return false;
    }
    if (sqlite3_step(q) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(q, 0), "ok") == 0)
        ok = true;
    sqlite3_finalize(q);
    if (!ok) {
        *why = "failed its integrity check";
        return false;
    }
    int64_t app = query_int(db, "PRAGMA application_id");
    int64_t tables = query_int(db, "SELECT count(*) FROM sqlite_master");
    if (app != APP_ID && !(app == 0 && tables == 0)) {
        *why = "is not an mbgate outbox";
        return false;
    }
    return true;
}

static int prepare(store *st)
{
    /* the WAL is truncated back to 1 MiB after each checkpoint */
    if (sqlite3_exec(st->db, "PRAGMA journal_mode=WAL; PRAGMA journal_size_limit=1048576", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(st->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    char app[64];
    snprintf(app, sizeof app, "PRAGMA application_id=%d", APP_ID);
    if (sqlite3_exec(st->db, app, NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_prepare_v2(st->db, "INSERT INTO outbox VALUES(?,?,?,?,?,?,?,?)", -1, &st->ins, NULL) ||
        sqlite3_prepare_v2(st->db, "DELETE FROM outbox WHERE id BETWEEN ?1 AND ?2", -1, &st->del, NULL) ||
        sqlite3_prepare_v2(st->db, "BEGIN", -1, &st->begin, NULL) ||
        sqlite3_prepare_v2(st->db, "COMMIT", -1, &st->commit, NULL) ||
        sqlite3_prepare_v2(st->db, "SELECT id,ts,dev,tag,good,type,val,err FROM outbox"
                           " WHERE id>? AND id<? ORDER BY id LIMIT ?", -1, &st->sel, NULL) ||
        sqlite3_prepare_v2(st->db, "SELECT value FROM counters WHERE key=?", -1, &st->cnt_get, NULL) ||
        sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO counters VALUES(?,?)", -1, &st->cnt_set, NULL))
        return -1;
    int64_t max = query_int(st->db, "SELECT coalesce(max(id),0) FROM outbox");
    st->rows = query_int(st->db, "SELECT count(*) FROM outbox");
    if (max < 0 || st->rows < 0)
        return -1;
    st->next_id = max + 1;
    return 0;
}

static void finalize_all(store *st)
{
    sqlite3_finalize(st->ins);
    sqlite3_finalize(st->del);
    sqlite3_finalize(st->sel);
    sqlite3_finalize(st->cnt_get);
    sqlite3_finalize(st->cnt_set);
    sqlite3_finalize(st->begin);
    sqlite3_finalize(st->commit);
    st->ins = st->del = st->sel = st->cnt_get = st->cnt_set = st->begin = st->commit = NULL;
    sqlite3_close(st->db);
    st->db = NULL;
}

/* Move a bad file (and its -wal/-shm) aside so the evidence is kept. */
static void move_aside(const char *path, const char *why)
{
    char bad[1200], a[1200], b[1200];
    snprintf(bad, sizeof bad, "%s.bad-%ld", path, (long)time(NULL));
    log_error("outbox: %s %s: moved aside to %s, starting a fresh outbox", path, why, bad);
    rename(path, bad);
    const char *sfx[] = { "-wal", "-shm" };
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s%s", path, sfx[i]);
        snprintf(b, sizeof b, "%s%s", bad, sfx[i]);
        rename(a, b);
    }
}

static int open_db(store *st, bool sync_full, const char **why)
{
    if (sqlite3_open_v2(st->path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        *why = sqlite3_errmsg(st->db);
        return -1;
    }
    sqlite3_busy_timeout(st->db, 2000);
    if (!usable(st->db, why))
        return -1;
    if (prepare(st) < 0) {
        *why = sqlite3_errmsg(st->db);
        return -1;
    }
    if (sqlite3_exec(st->db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK) {
        *why = sqlite3_errmsg(st->db);
        return -1;
    }
    return 0;
}

store *store_open(const char *dir, bool sync_full, char *err, size_t errlen)
{
    store *st = calloc(1, sizeof *st);
    const char *why = NULL;
    if (!st) {
        snprintf(err, errlen, "outbox: out of memory");
        return NULL;
    }
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "outbox: cannot create %s: %s", dir, strerror(errno));
        goto fail;
    }
    snprintf(st->path, sizeof st->path, "%s/outbox.db", dir);
    if (open_db(st, sync_full, &why) == 0)
        return st;
    char reason[256];
    snprintf(reason, sizeof reason, "%s", why ? why : "cannot be opened");
    finalize_all(st);
    move_aside(st->path, reason);
    if (open_db(st, sync_full, &why) == 0)
        return st;
    snprintf(err, errlen, "outbox: cannot open %s: %s", st->path, why ? why : "unknown error");
    finalize_all(st);
fail:
    free(st);
    return NULL;
}

void store_close(store *st)
{
    if (!st)
        return;
    finalize_all(st);
    free(st);
}

static bool is_full(int rc)
{
    int prim = rc & 0xff;
    return prim == SQLITE_FULL || prim == SQLITE_IOERR;
}

/* BEGIN / COMMIT from prepared statements: sqlite3_exec would parse them
 * on every transaction. */
static int step_or_note(store *st, sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_DONE) {
        st->full = is_full(rc);
        return -1;
    }
    return 0;
}

static void bind_text(sqlite3_stmt *q, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(q, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

int store_put(store *st, sample *list)
{
    int64_t id = st->next_id, n = 0;
    if (step_or_note(st, st->begin) < 0)
        return -1;
    for (sample *s = list; s; s = s->next, n++) {
        sqlite3_bind_int64(st->ins, 1, id + n);
        sqlite3_bind_int64(st->ins, 2, s->ts);
        sqlite3_bind_text(st->ins, 3, s->dev, -1, SQLITE_STATIC);
        sqlite3_bind_text(st->ins, 4, s->tag, -1, SQLITE_STATIC);
        sqlite3_bind_int(st->ins, 5, s->good);
        sqlite3_bind_int(st->ins, 6, s->type);
        bind_text(st->ins, 7, s->val);
        bind_text(st->ins, 8, s->err);
        int rc = sqlite3_step(st->ins);
        sqlite3_reset(st->ins);
        if (rc != SQLITE_DONE) {
            st->full = is_full(rc);
            log_debug("outbox: insert failed: %s", sqlite3_errmsg(st->db));
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    if (step_or_note(st, st->commit) < 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    for (sample *s = list; s; s = s->next)
        s->id = id++;
    st->next_id = id;
    st->rows += n;
    st->full = false;
    return 0;
}

bool store_disk_full(const store *st) { return st->full; }

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Acks come (nearly) in id order: sorted, the ids form a few runs, and a
 * run is one range DELETE instead of one statement per row. */
int store_delete(store *st, int64_t *ids, size_t n)
{
    int64_t gone = 0;
    if (n == 0)
        return 0;
    qsort(ids, n, sizeof *ids, cmp_id);
    if (step_or_note(st, st->begin) < 0)
        return -1;
    for (size_t i = 0, j; i < n; i = j + 1) {
        for (j = i; j + 1 < n && ids[j + 1] <= ids[j] + 1; j++)
            ;
        sqlite3_bind_int64(st->del, 1, ids[i]);
        sqlite3_bind_int64(st->del, 2, ids[j]);
        int rc = sqlite3_step(st->del);
        sqlite3_reset(st->del);
        if (rc != SQLITE_DONE) {
            sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        gone += sqlite3_changes(st->db);
    }
    if (step_or_note(st, st->commit) < 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    st->rows -= gone;
    return 0;
}

static const char *col_text(sqlite3_stmt *q, int i)
{
    return sqlite3_column_type(q, i) == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(q, i);
}

sample *store_read(store *st, int64_t after, int64_t before, int limit)
{
    sample *head = NULL, **tail = &head;
    sqlite3_bind_int64(st->sel, 1, after);
    sqlite3_bind_int64(st->sel, 2, before);
    sqlite3_bind_int(st->sel, 3, limit);
    while (sqlite3_step(st->sel) == SQLITE_ROW) {
        sample *s = sample_new((const char *)sqlite3_column_text(st->sel, 2),
                               (const char *)sqlite3_column_text(st->sel, 3),
                               sqlite3_column_int64(st->sel, 1),
                               sqlite3_column_int(st->sel, 4),
                               (uint8_t)sqlite3_column_int(st->sel, 5),
                               col_text(st->sel, 6), col_text(st->sel, 7));
        if (!s)
            break;
        s->id = sqlite3_column_int64(st->sel, 0);
        *tail = s;
        tail = &s->next;
    }
    sqlite3_reset(st->sel);
    return head;
}

int64_t store_next_id(const store *st) { return st->next_id; }

static int64_t file_size(const char *path, const char *suffix)
{
    char p[1200];
    struct stat sb;
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return stat(p, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

void store_stats(store *st, int64_t *rows, int64_t *oldest_ts, int64_t *used_bytes,
                 int64_t *file_bytes)
{
    *rows = st->rows;
    *oldest_ts = st->rows ? query_int(st->db, "SELECT ts FROM outbox ORDER BY id LIMIT 1") : 0;
    int64_t pages = query_int(st->db, "PRAGMA page_count");
    int64_t freep = query_int(st->db, "PRAGMA freelist_count");
    int64_t psize = query_int(st->db, "PRAGMA page_size");
    *used_bytes = (pages - freep) * psize;
    *file_bytes = file_size(st->path, "") + file_size(st->path, "-wal");
}

static int64_t drop_where(store *st, const char *sql, int64_t arg, int64_t after)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(q, 1, after);
    sqlite3_bind_int64(q, 2, arg);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return -1;
    int64_t n = sqlite3_changes(st->db);
    st->rows -= n;
    return n;
}

int64_t store_drop_oldest(store *st, int64_t n, int64_t after)
{
    return drop_where(st, "DELETE FROM outbox WHERE id IN "
                      "(SELECT id FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2)", n, after);
}

int64_t store_drop_before(store *st, int64_t ts, int64_t after)
{
    return drop_where(st, "DELETE FROM outbox WHERE id > ?1 AND ts < ?2", ts, after);
}

int64_t store_counter(store *st, const char *key)
{
    int64_t v = 0;
    sqlite3_bind_text(st->cnt_get, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st->cnt_get) == SQLITE_ROW)
        v = sqlite3_column_int64(st->cnt_get, 0);
    sqlite3_reset(st->cnt_get);
    return v;
}

int store_set_counter(store *st, const char *key, int64_t value)
{
    sqlite3_bind_text(st->cnt_set, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st->cnt_set, 2, value);
    int rc = sqlite3_step(st->cnt_set);
    sqlite3_reset(st->cnt_set);
    return rc == SQLITE_DONE ? 0 : -1;
}
