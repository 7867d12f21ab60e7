/* outbox.c - delivery engine: store, live queue, backlog and in-flight window. */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"

#define LIVE_MAX 20000     /* stored samples waiting live before they become backlog */
#define MEM_MAX 100000     /* samples held in memory while the disk is full */
#define BACKLOG_BATCH 512  /* rows read from the store at a time */
#define DISK_RETRY_MS 5000
#define CAP_CHECK_MS 1000

typedef struct {
    int mid;
    sample *s;
} flight;

typedef struct {
    sample *head, **tail;
    size_t n;
} fifo;

struct outbox {
    const config *cfg;
    store *st;
    bool connected;
    fifo live;            /* fresh samples, published first */
    fifo back;            /* backlog rows read ahead from the store */
    int64_t cursor;       /* last backlog id read */
    int64_t live_floor;   /* ids from here on are live, below it backlog */
    bool backlog_done;
    flight *fl;
    size_t nfl, maxfl, back_window;
    int64_t *del;         /* acknowledged ids awaiting a batched delete */
    size_t ndel, capdel;
    bool mem_mode;        /* disk full: holding samples in memory */
    int64_t mem_n, mem_retry_at;
    double tokens;        /* replay_rate bucket */
    int64_t tokens_at, cap_at;
    int64_t dropped, last_drop, episode_drops;
    int64_t published, acked;
};

static void fifo_init(fifo *f)
{
    f->head = NULL;
    f->tail = &f->head;
    f->n = 0;
}

static void fifo_push(fifo *f, sample *s)
{
    s->next = NULL;
    *f->tail = s;
    f->tail = &s->next;
    f->n++;
}

static void fifo_push_front(fifo *f, sample *s)
{
    s->next = f->head;
    if (!f->head)
        f->tail = &s->next;
    f->head = s;
    f->n++;
}

static sample *fifo_pop(fifo *f)
{
    sample *s = f->head;
    if (!s)
        return NULL;
    f->head = s->next;
    if (!f->head)
        f->tail = &f->head;
    f->n--;
    s->next = NULL;
    return s;
}

/* dst = src; the tail pointer must not point into src's storage. */
static void fifo_move(fifo *dst, fifo *src)
{
    *dst = *src;
    if (!dst->head)
        dst->tail = &dst->head;
    fifo_init(src);
}

static void fifo_clear(fifo *f)
{
    sample_free_list(f->head);
    fifo_init(f);
}

outbox *outbox_open(const config *cfg, char *err, size_t errlen)
{
    outbox *ob = calloc(1, sizeof *ob);
    if (!ob)
        goto oom;
    ob->cfg = cfg;
    ob->maxfl = cfg->mqtt.max_inflight;
    /* backlog never takes the whole window, so live samples always get through */
    ob->back_window = ob->maxfl > 4 ? ob->maxfl * 3 / 4 : 1;
    ob->fl = calloc(ob->maxfl, sizeof *ob->fl);
    if (!ob->fl)
        goto oom;
    fifo_init(&ob->live);
    fifo_init(&ob->back);
    ob->st = store_open(cfg->gateway.state_dir, cfg->buffer.sync_full, err, errlen);
    if (!ob->st) {
        free(ob->fl);
        free(ob);
        return NULL;
    }
    ob->dropped = store_counter(ob->st, "dropped");
    int64_t rows, oldest, used, file;
    store_stats(ob->st, &rows, &oldest, &used, &file);
    if (rows)
        log_info("outbox: %lld samples from before are waiting for the broker", (long long)rows);
    return ob;
oom:
    if (ob)
        free(ob);
    snprintf(err, errlen, "outbox: out of memory");
    return NULL;
}

static void flush_deletes(outbox *ob)
{
    if (ob->ndel && store_delete(ob->st, ob->del, ob->ndel) == 0)
        ob->ndel = 0;
}

void outbox_close(outbox *ob)
{
    if (!ob)
        return;
    flush_deletes(ob);
    for (size_t i = 0; i < ob->nfl; i++)
        free(ob->fl[i].s);
    fifo_clear(&ob->live);
    fifo_clear(&ob->back);
    if (ob->mem_n)
        log_warn("outbox: %lld samples held in memory (disk full) are lost at exit",
                 (long long)ob->mem_n);
    store_close(ob->st);
    free(ob->fl);
    free(ob->del);
    free(ob);
}

static void count_drops(outbox *ob, int64_t n, const char *why)
{
    if (n <= 0)
        return;
    if (ob->episode_drops == 0)
        log_warn("outbox: dropping oldest samples: %s", why);
    ob->episode_drops += n;
    ob->dropped += n;
    ob->last_drop = mono_ms();
    store_set_counter(ob->st, "dropped", ob->dropped);
}

/* Keep at most MEM_MAX memory-held samples: drop the oldest of them. */
static void trim_memory(outbox *ob)
{
    int64_t n = 0;
    for (sample **p = &ob->live.head; *p && ob->mem_n > MEM_MAX;) {
        if ((*p)->id == 0) {
            sample *s = *p;
            *p = s->next;
            free(s);
            ob->live.n--;
            ob->mem_n--;
            n++;
        } else {
            p = &(*p)->next;
        }
    }
    ob->live.tail = &ob->live.head;
    while (*ob->live.tail)
        ob->live.tail = &(*ob->live.tail)->next;
    count_drops(ob, n, "disk full and memory reserve exhausted");
}

static bool store_list(outbox *ob, sample *list)
{
    int64_t now = mono_ms();
    if (ob->mem_mode && now < ob->mem_retry_at)
        return false;
    if (store_put(ob->st, list) == 0) {
        if (ob->mem_mode)
            log_info("outbox: disk writable again, storing samples on disk");
        ob->mem_mode = false;
        return true;
    }
    if (!ob->mem_mode)
        log_error("outbox: cannot write %s/outbox.db (%s): holding samples in memory "
                  "(up to %d), oldest dropped beyond that",
                  ob->cfg->gateway.state_dir,
                  store_disk_full(ob->st) ? "disk full" : "write error", MEM_MAX);
    ob->mem_mode = true;
    ob->mem_retry_at = now + DISK_RETRY_MS;
    return false;
}

void outbox_add(outbox *ob, sample *list)
{
    if (!list)
        return;
    bool stored = store_list(ob, list);
    sample *next;
    for (sample *s = list; s; s = next) {
        next = s->next;
        if (stored && !ob->connected) {
            free(s); /* safe in the store: it goes out as backlog */
            continue;
        }
        if (!stored) {
            s->hist = !ob->connected;
            ob->mem_n++;
        }
        fifo_push(&ob->live, s);
    }
    if (ob->mem_n > MEM_MAX)
        trim_memory(ob);
    if (ob->live.n > LIVE_MAX && !ob->mem_mode) {
        /* the broker cannot keep up: what waits live is stored, so let it
         * become backlog instead of growing memory */
        fifo keep;
        fifo_init(&keep);
        for (sample *s; (s = fifo_pop(&ob->live));)
            if (s->id)
                free(s);
            else
                fifo_push(&keep, s);
        fifo_move(&ob->live, &keep);
        ob->live_floor = store_next_id(ob->st);
        ob->backlog_done = false;
    }
}

void outbox_connected(outbox *ob, bool up)
{
    ob->connected = up;
    fifo_clear(&ob->back);
    ob->cursor = 0;
    ob->backlog_done = false;
    ob->live_floor = store_next_id(ob->st);
    if (up)
        return;
    /* unacknowledged: stored ones become backlog, memory-held ones wait */
    fifo mem;
    fifo_init(&mem);
    for (size_t i = 0; i < ob->nfl; i++) {
        sample *s = ob->fl[i].s;
        if (s->id)
            free(s);
        else
            fifo_push(&mem, s);
    }
    ob->nfl = 0;
    for (sample *s; (s = fifo_pop(&ob->live));) {
        if (s->id) {
            free(s);
        } else {
            s->hist = true;
            fifo_push(&mem, s);
        }
    }
    fifo_move(&ob->live, &mem);
}

static bool in_flight(const outbox *ob, int64_t id)
{
    for (size_t i = 0; i < ob->nfl; i++)
        if (ob->fl[i].s->id == id)
            return true;
    return false;
}

static void refill_backlog(outbox *ob)
{
    flush_deletes(ob); /* never read back a row whose ack is pending */
    sample *list = store_read(ob->st, ob->cursor, ob->live_floor, BACKLOG_BATCH);
    if (!list) {
        ob->backlog_done = true;
        return;
    }
    sample *next;
    for (sample *s = list; s; s = next) {
        next = s->next;
        ob->cursor = s->id;
        if (in_flight(ob, s->id)) {
            free(s);
            continue;
        }
        s->hist = true;
        fifo_push(&ob->back, s);
    }
}

static bool replay_token(outbox *ob, int64_t now)
{
    unsigned rate = ob->cfg->buffer.replay_rate;
    if (rate == 0)
        return true;
    if (ob->tokens_at == 0 || now < ob->tokens_at)
        ob->tokens_at = now;
    ob->tokens += (double)(now - ob->tokens_at) * rate / 1000.0;
    ob->tokens_at = now;
    if (ob->tokens > rate)
        ob->tokens = rate;
    if (ob->tokens < 1)
        return false;
    ob->tokens -= 1;
    return true;
}

sample *outbox_next(outbox *ob, int64_t mono_now)
{
    if (!ob->connected || ob->nfl >= ob->maxfl)
        return NULL;
    sample *s = fifo_pop(&ob->live);
    if (s)
        return s;
    if (ob->nfl >= ob->back_window)
        return NULL;
    if (!ob->back.head && !ob->backlog_done)
        refill_backlog(ob);
    if (!ob->back.head || !replay_token(ob, mono_now))
        return NULL;
    return fifo_pop(&ob->back);
}

void outbox_sent(outbox *ob, sample *s, int mid)
{
    ob->fl[ob->nfl].mid = mid;
    ob->fl[ob->nfl].s = s;
    ob->nfl++;
    ob->published++;
}

void outbox_failed(outbox *ob, sample *s)
{
    fifo_push_front(s->hist && s->id ? &ob->back : &ob->live, s);
}

/* Remove the in-flight sample published as mid; NULL if none is. */
static sample *take_inflight(outbox *ob, int mid)
{
    for (size_t i = 0; i < ob->nfl; i++)
        if (ob->fl[i].mid == mid) {
            sample *s = ob->fl[i].s;
            ob->fl[i] = ob->fl[--ob->nfl];
            return s;
        }
    return NULL;
}

void outbox_acked(outbox *ob, int mid)
{
    sample *s = take_inflight(ob, mid);
    if (!s)
        return;
    ob->acked++;
    if (s->id) {
        if (ob->ndel == ob->capdel) {
            size_t cap = ob->capdel ? ob->capdel * 2 : 1024;
            int64_t *d = realloc(ob->del, cap * sizeof *d);
            if (!d) {
                free(s); /* the row stays: delivered twice rather than lost */
                return;
            }
            ob->del = d;
            ob->capdel = cap;
        }
        ob->del[ob->ndel++] = s->id;
    } else {
        ob->mem_n--;
    }
    free(s);
}

void outbox_refused(outbox *ob, int mid)
{
    sample *s = take_inflight(ob, mid);
    if (!s)
        return;
    if (s->id) {
        free(s);
    } else {
        s->hist = true; /* memory-held: it must not be lost either */
        fifo_push(&ob->back, s);
    }
}

static void enforce_caps(outbox *ob)
{
    int64_t rows, oldest, used, file;
    store_stats(ob->st, &rows, &oldest, &used, &file);
    int64_t cap = (int64_t)ob->cfg->buffer.max_mb * 1024 * 1024;
    if (used > cap && rows > 0) {
        /* drop a share proportional to the excess, plus a margin */
        int64_t n = rows * (used - cap) / used + rows / 100 + 1;
        char why[128];
        snprintf(why, sizeof why, "outbox reached buffer.max_mb = %u", ob->cfg->buffer.max_mb);
        /* what the backlog already read is as good as sent: never count it dropped */
        count_drops(ob, store_drop_oldest(ob->st, n, ob->cursor), why);
    }
    if (ob->cfg->buffer.max_age_s) {
        char why[128];
        snprintf(why, sizeof why, "older than buffer.max_age_s = %u s", ob->cfg->buffer.max_age_s);
        count_drops(ob, store_drop_before(ob->st, now_ms() - (int64_t)ob->cfg->buffer.max_age_s * 1000,
                                           ob->cursor), why);
    }
}

void outbox_tick(outbox *ob, int64_t mono_now)
{
    /* every loop turn, so that a crash re-sends only what was in flight;
     * acks arrive in batches (mqtt_ack_batch), so one turn deletes many */
    flush_deletes(ob);
    if (mono_now < ob->cap_at)
        return;
    ob->cap_at = mono_now + CAP_CHECK_MS;
    enforce_caps(ob);
    if (ob->episode_drops && mono_now - ob->last_drop > 60000) {
        log_info("outbox: stopped dropping; %lld samples dropped in that episode",
                 (long long)ob->episode_drops);
        ob->episode_drops = 0;
    }
}

void outbox_stats_get(outbox *ob, outbox_stats *o)
{
    int64_t rows, used;
    store_stats(ob->st, &rows, &o->oldest_ts, &used, &o->file_bytes);
    o->pending = rows + ob->mem_n;
    if (ob->mem_n && ob->live.head && (!o->oldest_ts || ob->live.head->ts < o->oldest_ts))
        o->oldest_ts = ob->live.head->ts;
    o->dropped = ob->dropped;
    o->dropping = ob->last_drop && mono_ms() - ob->last_drop < 60000;
    o->disk_full = ob->mem_mode;
    o->inflight = (int64_t)ob->nfl;
    o->published = ob->published;
    o->acked = ob->acked;
}

size_t outbox_inflight(const outbox *ob) { return ob->nfl; }

int64_t outbox_counter(outbox *ob, const char *key) { return store_counter(ob->st, key); }

void outbox_set_counter(outbox *ob, const char *key, int64_t v)
{
    store_set_counter(ob->st, key, v);
}
