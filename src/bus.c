/* bus.c - link threads: polling, commands, reconnects and device backoff. */
#include "bus.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modbus.h>

#include "log.h"
#include "plan.h"

#define LINK_BACKOFF_MIN_MS 500
#define LINK_BACKOFF_MAX_MS 10000
#define DEV_BACKOFF_MIN_MS 1000
#define DEV_BACKOFF_MAX_MS 30000
#define FRAME_ERRORS_MAX 3  /* bad frames in a row, whoever sent them: reopen the link */
#define FRAME_SETTLE_MS 100 /* after a bad frame: quiet time before the line is flushed */
#define LAT_N 256
#define MAX_WAIT_MS 1000 /* wake at least this often, for the watchdog */

typedef struct {
    bool published;     /* a value has been published since the last bad one */
    bool bad_sent;
    double last_num;
    char *last_text;    /* strings: last published text */
    int64_t last_pub;   /* mono ms */
} tag_state;

typedef struct {
    cfg_table table;
    unsigned poll_ms;
    plan_req *reqs;
    int nreqs;
    size_t *tags;       /* indexes into the device's tags */
    size_t ntags;
    int64_t due;        /* mono ms */
} group;

typedef struct {
    const cfg_device *cfg;
    group *groups;
    size_t ngroups;
    tag_state *ts;
    bool state_known, up;
    int64_t retry_at;   /* mono ms: backed off until then */
    unsigned backoff_ms;
    bool no_mask_write; /* FC22 refused once: use read + write */
    bool no_answer;     /* its last request got no reply at all (timeout, garbage) */
    char *acc;          /* device layout: this cycle's values, "{…" so far */
    size_t acclen, acccap;
    int64_t acc_ts;
    /* statistics, read by the agent thread under the link's lock */
    bus_dev_stats st;
    double lat[LAT_N];
    unsigned nlat, lat_pos;
} device;

typedef struct mblink {
    bus *owner;
    char key[CFG_PATH_MAX + 16];
    const cfg_device *first;
    device *devs;
    size_t ndevs;
    modbus_t *ctx;
    bool connected;
    bool down_logged;        /* "link down" said; "up again" once anything answers */
    bool rs485_warned;
    int64_t connect_at;      /* mono ms of the next open attempt */
    unsigned backoff_ms;
    int64_t last_frame;      /* mono us of the end of the last frame on the line */
    unsigned frame_errors;   /* bad frames in a row on the link */
    int last_errno;          /* errno of the last attempt, 0 when it succeeded */
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;    /* commands and statistics */
    pthread_cond_t wake;
    queue_item *cmds, **cmds_tail;
    bool stop;
    atomic_llong progress;
    uint16_t *regs;          /* 65536 registers of scratch */
    uint8_t *bits;
} mblink;

struct bus {
    const config *cfg;
    queue *out;
    mblink *links;
    size_t nlinks;
};

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- planning ---------------------------------------------------------- */

static int build_groups(device *d, char *err, size_t errlen)
{
    const cfg_device *c = d->cfg;
    d->groups = calloc(c->ntags ? c->ntags : 1, sizeof *d->groups);
    d->ts = calloc(c->ntags ? c->ntags : 1, sizeof *d->ts);
    if (!d->groups || !d->ts)
        goto oom;
    for (size_t i = 0; i < c->ntags; i++) {
        const cfg_tag *t = &c->tags[i];
        group *g = NULL;
        for (size_t k = 0; k < d->ngroups; k++)
            if (d->groups[k].table == t->table && d->groups[k].poll_ms == t->poll_ms)
                g = &d->groups[k];
        if (!g) {
            g = &d->groups[d->ngroups++];
            g->table = t->table;
            g->poll_ms = t->poll_ms;
            g->tags = calloc(c->ntags, sizeof *g->tags);
            if (!g->tags)
                goto oom;
        }
        g->tags[g->ntags++] = i;
    }
    for (size_t k = 0; k < d->ngroups; k++) {
        group *g = &d->groups[k];
        plan_item *items = calloc(g->ntags, sizeof *items);
        g->reqs = calloc(g->ntags, sizeof *g->reqs);
        if (!items || !g->reqs) {
            free(items);
            goto oom;
        }
        for (size_t j = 0; j < g->ntags; j++) {
            items[j].addr = c->tags[g->tags[j]].address;
            items[j].count = c->tags[g->tags[j]].count;
        }
        unsigned max = config_table_is_bits(g->table) ? c->max_read_bits : c->max_read_registers;
        g->nreqs = plan_build(items, g->ntags, max, c->max_gap, g->reqs);
        free(items);
        if (g->nreqs < 0) {
            snprintf(err, errlen, "%s: cannot plan reads of %s table", c->name,
                     config_table_name(g->table));
            return -1;
        }
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

static void free_device(device *d)
{
    for (size_t k = 0; k < d->ngroups; k++) {
        free(d->groups[k].reqs);
        free(d->groups[k].tags);
    }
    if (d->ts)
        for (size_t i = 0; i < d->cfg->ntags; i++)
            free(d->ts[i].last_text);
    free(d->groups);
    free(d->ts);
    free(d->acc);
}

/* ---- events ------------------------------------------------------------ */

static void emit_state(mblink *l, device *d, bool up, const char *error)
{
    if (d->state_known && d->up == up)
        return;
    pthread_mutex_lock(&l->lock);
    d->state_known = true;
    d->up = up;
    d->st.known = true;
    d->st.up = up;
    pthread_mutex_unlock(&l->lock);
    if (up)
        log_info("%s: up (%s)", d->cfg->name, l->key);
    else
        log_warn("%s: down: %s", d->cfg->name, error);
    bus_state *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->q.kind = EV_STATE;
    snprintf(e->dev, sizeof e->dev, "%s", d->cfg->name);
    e->up = up;
    e->ts = now_ms();
    snprintf(e->error, sizeof e->error, "%s", up ? "" : error);
    queue_push(l->owner->out, &e->q);
}

static void emit_samples(mblink *l, sample *list)
{
    if (!list)
        return;
    bus_samples *e = malloc(sizeof *e);
    if (!e) {
        sample_free_list(list);
        return;
    }
    e->q.kind = EV_SAMPLES;
    e->list = list;
    queue_push(l->owner->out, &e->q);
}

static void note_error(mblink *l, device *d, const char *msg)
{
    pthread_mutex_lock(&l->lock);
    d->st.errors++;
    snprintf(d->st.last_error, sizeof d->st.last_error, "%s", msg);
    d->st.last_error_ts = now_ms();
    pthread_mutex_unlock(&l->lock);
}

static void note_latency(mblink *l, device *d, double ms)
{
    pthread_mutex_lock(&l->lock);
    d->lat[d->lat_pos] = ms;
    d->lat_pos = (d->lat_pos + 1) % LAT_N;
    if (d->nlat < LAT_N)
        d->nlat++;
    pthread_mutex_unlock(&l->lock);
}

/* The short error text of a "device: what: error" message. */
static const char *short_error(const char *msg)
{
    const char *e = strrchr(msg, ':');
    return e && e[1] ? e + 2 : msg;
}

/* The error of a bad-quality sample: "timeout" when the device did not
 * answer (SPEC §4), else the short text; the log, P/D/status and the
 * status command keep the detail ("timeout after 1000 ms"). */
static const char *tag_error(const char *msg)
{
    const char *e = short_error(msg);
    return strncmp(e, "timeout", 7) == 0 ? "timeout" : e;
}

/* A device went down: each of its tags publishes one bad-quality sample. */
static void mark_all_bad(mblink *l, device *d, const char *msg)
{
    sample *head = NULL, **tail = &head;
    int64_t ts = now_ms();
    if (l->owner->cfg->mqtt.layout_device)
        return; /* P/D/status says it; the device message has no per-tag quality */
    for (size_t i = 0; i < d->cfg->ntags; i++) {
        tag_state *s = &d->ts[i];
        if (s->bad_sent)
            continue;
        s->bad_sent = true;
        s->published = false;
        *tail = sample_new(d->cfg->name, d->cfg->tags[i].name, ts, false,
                           (uint8_t)d->cfg->tags[i].type, NULL, tag_error(msg));
        if (*tail)
            tail = &(*tail)->next;
    }
    emit_samples(l, head);
}

/* ---- the link ---------------------------------------------------------- */

static void sleep_until_us(int64_t t)
{
    struct timespec ts = { t / 1000000, (t % 1000000) * 1000 };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void set_timeout(modbus_t *ctx, unsigned ms)
{
    modbus_set_response_timeout(ctx, ms / 1000, (ms % 1000) * 1000);
}

static void link_close(mblink *l)
{
    if (l->ctx) {
        modbus_close(l->ctx);
        modbus_free(l->ctx);
        l->ctx = NULL;
    }
    l->connected = false;
}

/* Open the port or connect. Nothing is reported here: the caller knows
 * whether a failure takes the devices down. The serial path is opened as
 * given on every attempt, so a by-id symlink is re-resolved when the adapter
 * comes back under a new ttyUSBn. */
static int link_open(mblink *l, char *msg, size_t mlen)
{
    const cfg_device *c = l->first;
    if (c->transport == TRANSPORT_TCP) {
        char port[16];
        snprintf(port, sizeof port, "%u", c->port);
        l->ctx = modbus_new_tcp_pi(c->host, port);
    } else {
        l->ctx = modbus_new_rtu(c->serial, (int)c->baud, c->parity, (int)c->data_bits,
                                (int)c->stop_bits);
    }
    if (!l->ctx) {
        snprintf(msg, mlen, "cannot create a Modbus context: %s", modbus_strerror(errno));
        return -1;
    }
    set_timeout(l->ctx, c->timeout_ms); /* also the TCP connect timeout */
    if (modbus_connect(l->ctx) < 0) {
        snprintf(msg, mlen, "cannot %s: %s", c->transport == TRANSPORT_TCP ? "connect" : "open",
                 modbus_strerror(errno));
        link_close(l);
        return -1;
    }
    /* adapters that switch direction in hardware (and PTYs) have no RS-485
     * mode; they work without it, so say it once and go on */
    if (c->transport == TRANSPORT_RTU && c->rs485 &&
        modbus_rtu_set_serial_mode(l->ctx, MODBUS_RTU_RS485) < 0 && !l->rs485_warned) {
        log_warn("%s: RS-485 mode not supported by the port (%s); using it as it is",
                 l->key, modbus_strerror(errno));
        l->rs485_warned = true;
    }
    l->connected = true;
    l->frame_errors = 0;
    l->last_frame = mono_us(); /* the line gets its silence before the first frame */
    log_debug("%s: link open", l->key);
    return 0;
}

/* Close the link and schedule the next attempt: 0.5 s doubling to 10 s,
 * back to the minimum once anything on the link answers again. */
static void link_lost(mblink *l, const char *msg)
{
    link_close(l);
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : LINK_BACKOFF_MIN_MS;
    if (l->backoff_ms > LINK_BACKOFF_MAX_MS)
        l->backoff_ms = LINK_BACKOFF_MAX_MS;
    l->connect_at = mono_ms() + l->backoff_ms;
    if (!l->down_logged)
        log_warn("%s: link down: %s; reopening with backoff up to %.0f s", l->key, msg,
                 LINK_BACKOFF_MAX_MS / 1000.0);
    l->down_logged = true;
}

/* The link itself failed: every device on it is down until it is reopened,
 * with an error that names the link ("tcp:10.0.0.5:502: cannot connect: ..."). */
static void link_fail(mblink *l, const char *why)
{
    char msg[sizeof l->key + 220];
    snprintf(msg, sizeof msg, "%s: %s", l->key, why);
    link_lost(l, why);
    for (size_t i = 0; i < l->ndevs; i++) {
        note_error(l, &l->devs[i], msg);
        emit_state(l, &l->devs[i], false, msg);
        mark_all_bad(l, &l->devs[i], msg);
    }
}

/* Something on the link answered (data or an exception): the link works. */
static void link_answered(mblink *l)
{
    l->frame_errors = 0;
    l->backoff_ms = 0;
    if (l->down_logged)
        log_info("%s: link up again", l->key);
    l->down_logged = false;
}

/* A TCP connection is presumed dead (half-open: the PLC went away without a
 * FIN) only when the last request of every device on it got no reply at all.
 * A silent unit id behind a gateway leaves the connection to the others. */
static bool link_silent(const mblink *l)
{
    for (size_t i = 0; i < l->ndevs; i++)
        if (!l->devs[i].no_answer)
            return false;
    return true;
}

/* Wait out the RTU inter-frame silence (libmodbus does not enforce it). */
static void frame_gap(mblink *l, const cfg_device *c)
{
    if (c->transport == TRANSPORT_RTU)
        sleep_until_us(l->last_frame + c->frame_gap_us);
}

typedef enum { IO_OK, IO_TIMEOUT, IO_EXCEPTION, IO_LINK } io_result;

/* What one failed attempt says about the device and the link. */
typedef enum {
    F_EXCEPTION, /* the device answered with an exception: it is there */
    F_GATEWAY,   /* a gateway answered that the device behind it did not */
    F_SILENT,    /* no answer within the timeout */
    F_FRAME,     /* garbage: bad CRC, someone else's or a late answer */
    F_LINK       /* the port or connection is broken */
} failure;

static failure classify(int e)
{
    if (e == ETIMEDOUT)
        return F_SILENT;
    if (e == EMBXGPATH || e == EMBXGTAR)
        return F_GATEWAY;
    if ((e >= EMBXILFUN && e < EMBXGPATH) || e == EMBMDATA)
        return F_EXCEPTION;
    if (e == EMBBADCRC || e == EMBBADDATA || e == EMBBADEXC || e == EMBUNKEXC ||
        e == EMBBADSLAVE)
        return F_FRAME;
    return F_LINK; /* EPIPE, ECONNRESET, EBADF, EIO (port gone), ... */
}

typedef struct {
    int fc;             /* 1,2,3,4 read; 5,6,15,16 write; 22 mask */
    unsigned addr, count;
    uint16_t *regs;
    uint8_t *bits;
    uint16_t and_mask, or_mask;
} xfer;

static int do_xfer(modbus_t *ctx, const xfer *x)
{
    switch (x->fc) {
    case 1: return modbus_read_bits(ctx, (int)x->addr, (int)x->count, x->bits);
    case 2: return modbus_read_input_bits(ctx, (int)x->addr, (int)x->count, x->bits);
    case 3: return modbus_read_registers(ctx, (int)x->addr, (int)x->count, x->regs);
    case 4: return modbus_read_input_registers(ctx, (int)x->addr, (int)x->count, x->regs);
    case 5: return modbus_write_bit(ctx, (int)x->addr, x->bits[0]);
    case 6: return modbus_write_register(ctx, (int)x->addr, x->regs[0]);
    case 15: return modbus_write_bits(ctx, (int)x->addr, (int)x->count, x->bits);
    case 16: return modbus_write_registers(ctx, (int)x->addr, (int)x->count, x->regs);
    case 22: return modbus_mask_write_register(ctx, (int)x->addr, x->and_mask, x->or_mask);
    }
    errno = EINVAL;
    return -1;
}

static const char *fc_name(int fc)
{
    switch (fc) {
    case 1: return "read coils";
    case 2: return "read discrete";
    case 3: return "read holding";
    case 4: return "read input";
    case 5: return "write coil";
    case 6: return "write register";
    case 15: return "write coils";
    case 16: return "write registers";
    default: return "mask write";
    }
}

/* Run one Modbus transaction for device d, with its retries. Timeouts and
 * garbage are the device's problem (IO_TIMEOUT: the caller backs it off); a
 * broken port or connection is the link's (IO_LINK: already reported for
 * every device on it). */
static io_result transact(mblink *l, device *d, const xfer *x, char *msg, size_t mlen)
{
    const cfg_device *c = d->cfg;
    /* a device known to be down is only probed: one attempt, one timeout */
    unsigned attempts = d->state_known && !d->up ? 1 : c->retries + 1;
    failure f = F_LINK;
    int e = 0;
    char what[64];
    snprintf(what, sizeof what, "%s %u..%u", fc_name(x->fc), x->addr, x->addr + x->count - 1);
    if (!l->connected) {
        snprintf(msg, mlen, "%s: %s: link down", c->name, what);
        return IO_LINK;
    }
    for (unsigned i = 0; i < attempts; i++) {
        modbus_set_slave(l->ctx, (int)c->unit_id);
        set_timeout(l->ctx, c->timeout_ms);
        frame_gap(l, c);
        int64_t t0 = mono_us();
        int rc = do_xfer(l->ctx, x);
        e = errno;
        l->last_frame = mono_us();
        l->last_errno = rc < 0 ? e : 0;
        atomic_store(&l->progress, mono_ms());
        if (rc >= 0) {
            note_latency(l, d, (double)(l->last_frame - t0) / 1000.0);
            link_answered(l);
            d->no_answer = false;
            return IO_OK;
        }
        f = classify(e);
        if (f == F_EXCEPTION || f == F_GATEWAY)
            link_answered(l);
        if (f == F_EXCEPTION)
            break;
        if (f == F_FRAME && ++l->frame_errors >= FRAME_ERRORS_MAX) {
            /* the line or the stream is out of step: start afresh */
            snprintf(msg, mlen, "%s: %s: %u bad frames in a row (%s)", c->name, what,
                     l->frame_errors, modbus_strerror(e));
            f = F_LINK;
        } else if (f == F_LINK) {
            snprintf(msg, mlen, "%s: %s: %s", c->name, what, modbus_strerror(e));
        }
        if (f == F_LINK) {
            /* libmodbus keeps failing on a broken context: reopen it, at once
             * while retries are left (a PLC that dropped an idle connection,
             * or rebooted, costs no outage) */
            char scratch[200];
            link_close(l);
            if (i + 1 < attempts && link_open(l, scratch, sizeof scratch) == 0)
                continue;
            break;
        }
        if (f == F_FRAME) {
            /* let the rest of the garbage (or a late answer) arrive, then drop
             * it, so that it is not taken for the next answer */
            sleep_until_us(mono_us() + 1000 * (int64_t)(c->timeout_ms < FRAME_SETTLE_MS
                                                       ? c->timeout_ms : FRAME_SETTLE_MS));
        }
        modbus_flush(l->ctx);
    }
    /* a gateway's exception is a reply: the connection is alive */
    d->no_answer = f == F_SILENT || f == F_FRAME;
    if (f == F_LINK) {
        link_fail(l, msg);
        return IO_LINK;
    }
    if (f == F_SILENT)
        snprintf(msg, mlen, "%s: %s: timeout after %u ms", c->name, what, c->timeout_ms);
    else
        snprintf(msg, mlen, "%s: %s: %s", c->name, what, modbus_strerror(e));
    if (f == F_EXCEPTION)
        return IO_EXCEPTION;
    if (d->no_answer && c->transport == TRANSPORT_TCP && link_silent(l)) {
        /* on a serial bus silence is per slave; a TCP connection nobody
         * answers on may be half-open: reconnect (the devices' own backoff
         * decides when they are probed again) */
        char why[260];
        snprintf(why, sizeof why, "no device answers (%s)", short_error(msg));
        link_lost(l, why);
    }
    return IO_TIMEOUT;
}

/* ---- polling ----------------------------------------------------------- */

static char *json_value(const codec_value *v, char *buf, size_t n)
{
    if (codec_format(v, buf, n) < 0)
        snprintf(buf, n, "null");
    return buf;
}

/* Should this good value be published now (deadband, heartbeat)? */
static bool passes_filter(const cfg_tag *t, tag_state *s, const codec_value *v,
                          const char *text, int64_t now)
{
    if (!s->published || !t->has_deadband)
        return true;
    if (t->heartbeat_s && now - s->last_pub >= (int64_t)t->heartbeat_s * 1000)
        return true;
    double x = codec_number(v);
    if (isnan(x))
        return !s->last_text || strcmp(s->last_text, text) != 0;
    double dv = fabs(x - s->last_num);
    return t->deadband == 0 ? x != s->last_num : dv > t->deadband;
}

static void remember(tag_state *s, const codec_value *v, const char *text, int64_t now)
{
    s->published = true;
    s->bad_sent = false;
    s->last_num = codec_number(v);
    s->last_pub = now;
    if (v->kind == CV_STR) {
        free(s->last_text);
        s->last_text = strdup(text);
    }
}

static int decode_tag(const cfg_tag *t, const uint16_t *regs, const uint8_t *bits,
                      codec_value *eng)
{
    codec_value raw;
    if (config_table_is_bits(t->table)) {
        raw.kind = CV_BOOL;
        raw.b = bits[t->address] != 0;
    } else if (codec_decode(&regs[t->address], t->type, t->order, t->length, t->bit, &raw) < 0) {
        return -1;
    }
    codec_scale(&raw, t->scale, t->offset, eng);
    return 0;
}

/* Device layout: add "name":value to this cycle's message. */
static void accumulate(device *d, const char *name, const char *text, int64_t ts)
{
    size_t need = d->acclen + strlen(name) + strlen(text) + 8;
    if (need > d->acccap) {
        char *n = realloc(d->acc, need * 2);
        if (!n)
            return;
        d->acc = n;
        d->acccap = need * 2;
    }
    d->acclen += (size_t)sprintf(d->acc + d->acclen, "%s\"%s\":%s", d->acclen ? "," : "{",
                                 name, text);
    d->acc_ts = ts;
}

/* Device layout: one message per device per cycle. */
static void flush_device(mblink *l, device *d)
{
    if (!d->acclen)
        return;
    strcpy(d->acc + d->acclen, "}");
    emit_samples(l, sample_new(d->cfg->name, "", d->acc_ts, true, 0, d->acc, NULL));
    d->acclen = 0;
}

/* Build samples for a group's tags; ok[j] says whether tag j was read. */
static sample *group_samples(mblink *l, device *d, group *g, const bool *ok,
                             const char *error, int64_t ts)
{
    const cfg_device *c = d->cfg;
    const bool dev_layout = l->owner->cfg->mqtt.layout_device;
    sample *head = NULL, **tail = &head;
    int64_t now = mono_ms();
    static __thread char text[CODEC_STR_MAX * 6 + 16];

    for (size_t j = 0; j < g->ntags; j++) {
        const cfg_tag *t = &c->tags[g->tags[j]];
        tag_state *s = &d->ts[g->tags[j]];
        codec_value v;
        sample *smp = NULL;
        if (!ok[j] || decode_tag(t, l->regs, l->bits, &v) < 0) {
            if (s->bad_sent || dev_layout)
                continue;
            s->bad_sent = true;
            s->published = false;
            smp = sample_new(c->name, t->name, ts, false, (uint8_t)t->type, NULL,
                             error ? error : "decode error");
        } else {
            json_value(&v, text, sizeof text);
            if (!passes_filter(t, s, &v, text, now))
                continue;
            remember(s, &v, text, now);
            if (dev_layout) {
                accumulate(d, t->name, text, ts);
                continue;
            }
            smp = sample_new(c->name, t->name, ts, true, (uint8_t)t->type, text, NULL);
        }
        if (smp) {
            *tail = smp;
            tail = &smp->next;
        }
    }
    return head;
}

static void device_failed(mblink *l, device *d, const char *msg, int64_t now)
{
    note_error(l, d, msg);
    emit_state(l, d, false, msg);
    mark_all_bad(l, d, msg);
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : DEV_BACKOFF_MIN_MS;
    if (d->backoff_ms > DEV_BACKOFF_MAX_MS)
        d->backoff_ms = DEV_BACKOFF_MAX_MS;
    d->retry_at = now + d->backoff_ms;
}

static int read_fc(cfg_table t)
{
    switch (t) {
    case TABLE_COIL: return 1;
    case TABLE_DISCRETE: return 2;
    case TABLE_HOLDING: return 3;
    default: return 4;
    }
}

static void poll_group(mblink *l, device *d, group *g)
{
    bool *ok = calloc(g->ntags ? g->ntags : 1, sizeof *ok);
    char msg[200] = "";
    io_result failed = IO_OK; /* IO_TIMEOUT or IO_LINK ends the device's cycle */
    int64_t ts = 0;
    if (!ok)
        return;
    for (int r = 0; r < g->nreqs && failed == IO_OK; r++) {
        xfer x = { .fc = read_fc(g->table), .addr = g->reqs[r].addr,
                   .count = g->reqs[r].count, .regs = l->regs + g->reqs[r].addr,
                   .bits = l->bits + g->reqs[r].addr };
        io_result res = transact(l, d, &x, msg, sizeof msg);
        if (res == IO_OK) {
            ts = now_ms();
            for (size_t j = 0; j < g->ntags; j++) {
                const cfg_tag *t = &d->cfg->tags[g->tags[j]];
                if (t->address >= x.addr && t->address + t->count <= x.addr + x.count)
                    ok[j] = true;
            }
        } else if (res != IO_EXCEPTION) {
            failed = res;
        } else {
            note_error(l, d, msg);
            log_debug("%s", msg);
        }
    }
    if (!ts)
        ts = now_ms();
    pthread_mutex_lock(&l->lock);
    d->st.polls++;
    if (failed == IO_OK)
        d->st.last_good_ts = ts;
    pthread_mutex_unlock(&l->lock);
    if (failed != IO_OK && ts) {
        /* what the PLC answered before it failed is as good as any sample */
        emit_samples(l, group_samples(l, d, g, ok, tag_error(msg), ts));
    }
    if (failed == IO_TIMEOUT) {
        device_failed(l, d, msg, mono_ms());
    } else if (failed == IO_OK) {
        d->backoff_ms = 0;
        emit_state(l, d, true, NULL);
        emit_samples(l, group_samples(l, d, g, ok, *msg ? tag_error(msg) : NULL, ts));
    }
    free(ok);
}

/* ---- commands ---------------------------------------------------------- */

static void cmd_fail(bus_cmd *cmd, sp_code code, const char *msg)
{
    cmd->code = code;
    snprintf(cmd->detail, sizeof cmd->detail, "%s", short_error(msg));
}

static sp_code io_code(io_result r)
{
    return r == IO_EXCEPTION ? SP_MODBUS_EXCEPTION : r == IO_LINK ? SP_DEVICE_DOWN : SP_TIMEOUT;
}

/* Read a tag's registers/bits into the scratch area and decode it. */
static io_result read_tag(mblink *l, device *d, const cfg_tag *t, codec_value *eng,
                          char *msg, size_t mlen)
{
    xfer x = { .fc = read_fc(t->table), .addr = t->address, .count = t->count,
               .regs = l->regs + t->address, .bits = l->bits + t->address };
    io_result r = transact(l, d, &x, msg, mlen);
    if (r == IO_OK && decode_tag(t, l->regs, l->bits, eng) < 0) {
        snprintf(msg, mlen, "%s: %s: cannot decode", d->cfg->name, t->name);
        return IO_EXCEPTION;
    }
    return r;
}

static io_result write_bit_in_register(mblink *l, device *d, const cfg_tag *t, bool on,
                                       char *msg, size_t mlen)
{
    uint16_t mask = (uint16_t)(1u << t->bit);
    xfer x = { .fc = 22, .addr = t->address, .count = 1,
               .and_mask = (uint16_t)~mask, .or_mask = on ? mask : 0 };
    if (!d->no_mask_write) {
        io_result r = transact(l, d, &x, msg, mlen);
        if (r != IO_EXCEPTION || l->last_errno != EMBXILFUN)
            return r;
        d->no_mask_write = true;
        log_info("%s: no mask write (FC22) support: bit writes use read + write", d->cfg->name);
    }
    /* same thread as polling, so nothing of ours can slip in between */
    uint16_t reg;
    xfer rd = { .fc = 3, .addr = t->address, .count = 1, .regs = &reg };
    io_result r = transact(l, d, &rd, msg, mlen);
    if (r != IO_OK)
        return r;
    reg = on ? (uint16_t)(reg | mask) : (uint16_t)(reg & ~mask);
    xfer wr = { .fc = d->cfg->write_multiple ? 16 : 6, .addr = t->address, .count = 1, .regs = &reg };
    return transact(l, d, &wr, msg, mlen);
}

static io_result write_tag(mblink *l, device *d, const cfg_tag *t, const codec_value *raw,
                           char *msg, size_t mlen)
{
    const cfg_device *c = d->cfg;
    uint16_t regs[CODEC_STR_MAX / 2 + 4];
    uint8_t bit;
    if (t->table == TABLE_COIL) {
        bit = raw->b;
        xfer x = { .fc = c->write_multiple ? 15 : 5, .addr = t->address, .count = 1, .bits = &bit };
        return transact(l, d, &x, msg, mlen);
    }
    if (t->bit >= 0)
        return write_bit_in_register(l, d, t, raw->b, msg, mlen);
    if (codec_encode(raw, t->type, t->order, t->length, regs) < 0) {
        snprintf(msg, mlen, "%s: %s: cannot encode", c->name, t->name);
        return IO_EXCEPTION;
    }
    xfer x = { .fc = (t->count > 1 || c->write_multiple) ? 16 : 6, .addr = t->address,
               .count = t->count, .regs = regs };
    return transact(l, d, &x, msg, mlen);
}

static bool same_value(const codec_value *a, const codec_value *b)
{
    if (a->kind == CV_STR || b->kind == CV_STR)
        return a->kind == b->kind && strcmp(a->s, b->s) == 0;
    if (a->kind == CV_F32 && b->kind == CV_F32)
        return memcmp(&a->f32, &b->f32, sizeof a->f32) == 0;
    double x = codec_number(a), y = codec_number(b);
    return x == y || fabs(x - y) <= 1e-9 * fmax(fabs(x), fabs(y));
}

static void publish_now(mblink *l, device *d, const cfg_tag *t, const codec_value *eng, int64_t ts)
{
    char text[CODEC_STR_MAX * 6 + 16];
    json_value(eng, text, sizeof text);
    remember(&d->ts[t - d->cfg->tags], eng, text, mono_ms());
    if (l->owner->cfg->mqtt.layout_device) {
        accumulate(d, t->name, text, ts);
        flush_device(l, d);
    } else {
        emit_samples(l, sample_new(d->cfg->name, t->name, ts, true, (uint8_t)t->type, text, NULL));
    }
}

static void run_write(mblink *l, device *d, bus_cmd *cmd)
{
    char msg[200];
    const cfg_tag *t = cmd->tag;
    io_result r = write_tag(l, d, t, &cmd->raw, msg, sizeof msg);
    if (r != IO_OK) {
        cmd_fail(cmd, io_code(r), msg);
        return;
    }
    codec_value want;
    codec_scale(&cmd->raw, t->scale, t->offset, &want);
    cmd->value = want;
    cmd->ts = now_ms();
    if (t->verify) {
        codec_value got;
        r = read_tag(l, d, t, &got, msg, sizeof msg);
        if (r != IO_OK) {
            cmd_fail(cmd, io_code(r), msg);
            return;
        }
        cmd->ts = now_ms();
        cmd->value = got;
        if (!same_value(&got, &want)) {
            char a[64], b[64];
            codec_format(&got, a, sizeof a);
            codec_format(&want, b, sizeof b);
            cmd->code = SP_VERIFY_FAILED;
            snprintf(cmd->detail, sizeof cmd->detail, "read back %s, expected %s", a, b);
            publish_now(l, d, t, &got, cmd->ts);
            return;
        }
    }
    publish_now(l, d, t, &cmd->value, cmd->ts);
    cmd->code = SP_OK;
}

static void run_probe(mblink *l, device *d, bus_cmd *cmd)
{
    char msg[200];
    uint8_t bits[BUS_PROBE_MAX];
    xfer x = { .fc = read_fc(cmd->table), .addr = cmd->addr, .count = cmd->count,
               .regs = cmd->regs, .bits = bits };
    io_result r = transact(l, d, &x, msg, sizeof msg);
    if (r != IO_OK) {
        cmd_fail(cmd, io_code(r), msg);
        return;
    }
    if (config_table_is_bits(cmd->table))
        for (unsigned i = 0; i < cmd->count; i++)
            cmd->regs[i] = bits[i];
    cmd->ts = now_ms();
    cmd->code = SP_OK;
}

static void run_command(mblink *l, bus_cmd *cmd)
{
    device *d = NULL;
    for (size_t i = 0; i < l->ndevs; i++)
        if (l->devs[i].cfg == cmd->dev)
            d = &l->devs[i];
    int64_t t0 = mono_us();
    if (mono_ms() > cmd->deadline) {
        cmd->code = SP_TIMEOUT;
        snprintf(cmd->detail, sizeof cmd->detail, "link busy: not started in time, not executed");
    } else if (!l->connected || !d || (d->state_known && !d->up)) {
        cmd->code = SP_DEVICE_DOWN;
        snprintf(cmd->detail, sizeof cmd->detail, "%s is down", cmd->dev->name);
    } else if (cmd->op == CMD_WRITE) {
        run_write(l, d, cmd);
    } else if (cmd->op == CMD_READ) {
        char msg[200];
        io_result r = read_tag(l, d, cmd->tag, &cmd->value, msg, sizeof msg);
        cmd->ts = now_ms();
        if (r == IO_OK)
            cmd->code = SP_OK;
        else
            cmd_fail(cmd, io_code(r), msg);
    } else {
        run_probe(l, d, cmd);
    }
    cmd->ms = (double)(mono_us() - t0) / 1000.0;
    cmd->q.kind = EV_CMD;
    queue_push(l->owner->out, &cmd->q);
}

static bool run_commands(mblink *l)
{
    pthread_mutex_lock(&l->lock);
    queue_item *c = l->cmds;
    l->cmds = NULL;
    l->cmds_tail = &l->cmds;
    pthread_mutex_unlock(&l->lock);
    bool any = c != NULL;
    while (c) {
        queue_item *n = c->next;
        run_command(l, (bus_cmd *)c);
        c = n;
    }
    return any;
}

/* ---- the thread -------------------------------------------------------- */

/* Next due time of a group on the monotonic clock; late cycles are skipped
 * and counted, never run in a burst. */
static void schedule(mblink *l, device *d, group *g, int64_t now)
{
    g->due += g->poll_ms;
    if (g->due <= now) {
        int64_t missed = (now - g->due) / g->poll_ms + 1;
        g->due += missed * g->poll_ms;
        pthread_mutex_lock(&l->lock);
        d->st.skipped += (uint64_t)missed;
        pthread_mutex_unlock(&l->lock);
    }
}

static int64_t poll_due(mblink *l, int64_t now)
{
    int64_t next = now + MAX_WAIT_MS;
    if (!l->connected)
        return l->connect_at < next ? l->connect_at : next;
    for (size_t i = 0; i < l->ndevs; i++) {
        device *d = &l->devs[i];
        for (size_t k = 0; k < d->ngroups; k++) {
            int64_t due = d->groups[k].due;
            if (d->retry_at > due)
                due = d->retry_at;
            if (due < next)
                next = due;
        }
    }
    return next;
}

static void poll_devices(mblink *l)
{
    for (size_t i = 0; i < l->ndevs && l->connected; i++) {
        device *d = &l->devs[i];
        for (size_t k = 0; k < d->ngroups && l->connected; k++) {
            group *g = &d->groups[k];
            int64_t now = mono_ms();
            if (g->due > now || d->retry_at > now)
                continue;
            bool was_down = d->state_known && !d->up;
            poll_group(l, d, g);
            schedule(l, d, g, mono_ms());
            if (run_commands(l) && !l->connected)
                break;
            if (was_down && !d->up)
                break; /* one probe per backoff period, not one per group */
        }
        flush_device(l, d);
    }
}

static void wait_until(mblink *l, int64_t due)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (due <= now)
        return;
    int64_t ns = (int64_t)ts.tv_nsec + (due - now) * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&l->lock);
    if (!l->cmds && !l->stop)
        pthread_cond_timedwait(&l->wake, &l->lock, &ts);
    pthread_mutex_unlock(&l->lock);
}

static void *link_thread(void *arg)
{
    mblink *l = arg;
    int64_t start = mono_ms();
    for (size_t i = 0; i < l->ndevs; i++)
        for (size_t k = 0; k < l->devs[i].ngroups; k++)
            l->devs[i].groups[k].due = start;
    for (;;) {
        pthread_mutex_lock(&l->lock);
        bool stop = l->stop;
        pthread_mutex_unlock(&l->lock);
        if (stop)
            break;
        int64_t now = mono_ms();
        atomic_store(&l->progress, now);
        if (!l->connected && now >= l->connect_at) {
            char msg[200];
            if (link_open(l, msg, sizeof msg) < 0)
                link_fail(l, msg);
        }
        run_commands(l);
        if (l->connected)
            poll_devices(l);
        wait_until(l, poll_due(l, mono_ms()));
    }
    link_close(l);
    return NULL;
}

/* ---- API --------------------------------------------------------------- */

static mblink *find_link(bus *b, const cfg_device *dev, size_t *idx)
{
    for (size_t i = 0; i < b->nlinks; i++)
        for (size_t j = 0; j < b->links[i].ndevs; j++)
            if (b->links[i].devs[j].cfg == dev) {
                *idx = j;
                return &b->links[i];
            }
    return NULL;
}

static int add_devices(bus *b, char *err, size_t errlen)
{
    const config *cfg = b->cfg;
    char key[sizeof b->links[0].key];
    for (size_t i = 0; i < cfg->ndevices; i++) {
        const cfg_device *dev = &cfg->devices[i];
        config_link_key(dev, key, sizeof key);
        mblink *l = NULL;
        for (size_t k = 0; k < b->nlinks; k++)
            if (strcmp(b->links[k].key, key) == 0)
                l = &b->links[k];
        if (!l) {
            l = &b->links[b->nlinks++];
            snprintf(l->key, sizeof l->key, "%s", key);
            l->owner = b;
            l->first = dev;
            l->devs = calloc(cfg->ndevices, sizeof *l->devs);
            l->regs = calloc(65536, sizeof *l->regs);
            l->bits = calloc(65536, sizeof *l->bits);
            l->cmds_tail = &l->cmds;
            pthread_mutex_init(&l->lock, NULL);
            pthread_condattr_t ca;
            pthread_condattr_init(&ca);
            pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
            pthread_cond_init(&l->wake, &ca);
            pthread_condattr_destroy(&ca);
            if (!l->devs || !l->regs || !l->bits) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        }
        device *d = &l->devs[l->ndevs++];
        d->cfg = dev;
        d->st.poll_ms = dev->poll_ms;
        if (build_groups(d, err, errlen) < 0)
            return -1;
    }
    return 0;
}

bus *bus_start(const config *cfg, queue *out, char *err, size_t errlen)
{
    bus *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->cfg = cfg;
    b->out = out;
    b->links = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *b->links);
    if (!b->links || add_devices(b, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < b->nlinks; i++) {
        atomic_store(&b->links[i].progress, mono_ms());
        int rc = pthread_create(&b->links[i].thread, NULL, link_thread, &b->links[i]);
        if (rc) {
            snprintf(err, errlen, "cannot start thread for %s: %s", b->links[i].key, strerror(rc));
            goto fail;
        }
        b->links[i].started = true;
    }
    return b;
fail:
    bus_stop(b);
    return NULL;
}

void bus_stop(bus *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->nlinks; i++) {
        mblink *l = &b->links[i];
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_signal(&l->wake);
        pthread_mutex_unlock(&l->lock);
    }
    for (size_t i = 0; i < b->nlinks; i++) {
        mblink *l = &b->links[i];
        if (l->started)
            pthread_join(l->thread, NULL);
        for (queue_item *c = l->cmds, *n; c; c = n) {
            n = c->next;
            /* every command gets an answer, never a late execution */
            ((bus_cmd *)c)->code = SP_TIMEOUT;
            snprintf(((bus_cmd *)c)->detail, sizeof ((bus_cmd *)c)->detail, "agent stopping or reloading: not executed");
            queue_push(b->out, c);
        }
        for (size_t j = 0; j < l->ndevs; j++)
            free_device(&l->devs[j]);
        free(l->devs);
        free(l->regs);
        free(l->bits);
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->wake);
    }
    free(b->links);
    free(b);
}

void bus_submit(bus *b, bus_cmd *cmd)
{
    size_t idx;
    mblink *l = find_link(b, cmd->dev, &idx);
    cmd->q.kind = EV_CMD;
    if (!l) {
        cmd->code = SP_UNKNOWN_TAG;
        snprintf(cmd->detail, sizeof cmd->detail, "unknown device");
        queue_push(b->out, &cmd->q);
        return;
    }
    pthread_mutex_lock(&l->lock);
    bool down = l->devs[idx].st.known && !l->devs[idx].st.up;
    if (!down) {
        cmd->q.next = NULL;
        *l->cmds_tail = &cmd->q;
        l->cmds_tail = &cmd->q.next;
        pthread_cond_signal(&l->wake);
    }
    pthread_mutex_unlock(&l->lock);
    if (down) {
        cmd->code = SP_DEVICE_DOWN;
        snprintf(cmd->detail, sizeof cmd->detail, "%s is down", cmd->dev->name);
        queue_push(b->out, &cmd->q);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bus_device_stats(bus *b, const char *name, bus_dev_stats *out)
{
    for (size_t i = 0; i < b->nlinks; i++) {
        mblink *l = &b->links[i];
        for (size_t j = 0; j < l->ndevs; j++) {
            device *d = &l->devs[j];
            if (strcmp(d->cfg->name, name) != 0)
                continue;
            double lat[LAT_N];
            pthread_mutex_lock(&l->lock);
            *out = d->st;
            unsigned n = d->nlat;
            memcpy(lat, d->lat, n * sizeof *lat);
            pthread_mutex_unlock(&l->lock);
            qsort(lat, n, sizeof *lat, cmp_double);
            out->p50_ms = n ? lat[(n - 1) / 2] : 0;
            out->p99_ms = n ? lat[(n * 99 + 99) / 100 - 1] : 0;
            return 0;
        }
    }
    return -1;
}

int64_t bus_oldest_progress(bus *b)
{
    int64_t oldest = mono_ms();
    for (size_t i = 0; i < b->nlinks; i++) {
        int64_t p = atomic_load(&b->links[i].progress);
        if (p < oldest)
            oldest = p;
    }
    return oldest;
}
