/* sparkplug.c - the Sparkplug B 3.0 edge node session. */
#include "sparkplug.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "spb.h"

#define NS "spBv1.0"
#define REBIRTH "Node Control/Rebirth"
#define BIRTH_WINDOW_MS 60000

typedef struct {
    char *text;        /* last value as JSON text; NULL when unknown or bad */
    int64_t ts;        /* of that value (0: never seen) */
    bool good;
    int64_t birth_ts;  /* ts of the value in this session's DBIRTH; -1: none */
    bool bad_sent;     /* the last metric sent for the tag said Quality bad */
} tag_state;

typedef struct {
    size_t ntags;      /* kept here: the config may be freed before a reload */
    tag_state *tags;
    uint64_t alias_base; /* alias of tag t = alias_base + t */
    bool up;           /* the PLC answers */
    bool born;         /* DBIRTH sent in this session (and no DDEATH since) */
    bool pending;      /* came up while born: DBIRTH due before its next DDATA */
    uint64_t dropped;  /* samples dropped while not born (logged once per episode) */
} dev_state;

struct sparkplug {
    const config *base;    /* group, edge node, host: fixed at startup */
    const config *cfg;     /* devices and tags (changes on reload) */
    mqtt *mq;
    outbox *ob;
    dev_state *devs;       /* [cfg->ndevices] */
    size_t ndevs;
    int64_t bdseq;         /* of the current session (the last Will) */
    unsigned seq;          /* next seq */
    bool connected;
    bool host_online;      /* true when no primary host is configured */
    int64_t host_ts;       /* timestamp of the last STATE we acted on */
    bool born;             /* NBIRTH sent in this session */
    char topic[CFG_TEXT_MAX * 3 + 32];
    char state_topic[CFG_TEXT_MAX + 32];
    uint8_t *will;
    size_t will_len;
};

/* ---- per-device state ---------------------------------------------------- */

static void free_devs(sparkplug *sp)
{
    for (size_t d = 0; sp->devs && d < sp->ndevs; d++) {
        for (size_t t = 0; sp->devs[d].tags && t < sp->devs[d].ntags; t++)
            free(sp->devs[d].tags[t].text);
        free(sp->devs[d].tags);
    }
    free(sp->devs);
    sp->devs = NULL;
    sp->ndevs = 0;
}

static int alloc_devs(sparkplug *sp, const config *cfg)
{
    sp->cfg = cfg;
    sp->devs = calloc(cfg->ndevices + 1, sizeof *sp->devs);
    if (!sp->devs)
        return -1;
    sp->ndevs = cfg->ndevices;
    uint64_t next = 1; /* aliases unique across the node; node metrics have none */
    for (size_t d = 0; d < cfg->ndevices; d++) {
        dev_state *ds = &sp->devs[d];
        ds->alias_base = next;
        next += cfg->devices[d].ntags;
        ds->tags = calloc(cfg->devices[d].ntags + 1, sizeof *ds->tags);
        if (!ds->tags)
            return -1;
        ds->ntags = cfg->devices[d].ntags;
        for (size_t t = 0; t < ds->ntags; t++)
            ds->tags[t].birth_ts = -1;
    }
    return 0;
}

sparkplug *sparkplug_new(const config *cfg, mqtt *mq, outbox *ob, char *err, size_t errlen)
{
    sparkplug *sp = calloc(1, sizeof *sp);
    if (!sp || alloc_devs(sp, cfg) < 0) {
        sparkplug_free(sp);
        snprintf(err, errlen, "sparkplug: out of memory");
        return NULL;
    }
    sp->base = cfg;
    sp->mq = mq;
    sp->ob = ob;
    /* the last bdSeq used (kept across restarts): the next session uses +1 */
    sp->bdseq = outbox_counter(ob, "bdseq") % 256;
    snprintf(sp->state_topic, sizeof sp->state_topic, NS "/STATE/%s",
             cfg->mqtt.sparkplug_cfg.primary_host_id);
    return sp;
}

void sparkplug_free(sparkplug *sp)
{
    if (!sp)
        return;
    free_devs(sp);
    free(sp->will);
    free(sp);
}

static const char *node_topic(sparkplug *sp, const char *type)
{
    snprintf(sp->topic, sizeof sp->topic, NS "/%s/%s/%s", sp->base->mqtt.sparkplug_cfg.group_id,
             type, sp->base->mqtt.sparkplug_cfg.edge_node_id);
    return sp->topic;
}

static const char *device_topic(sparkplug *sp, const char *type, const char *dev)
{
    snprintf(sp->topic, sizeof sp->topic, NS "/%s/%s/%s/%s", sp->base->mqtt.sparkplug_cfg.group_id,
             type, sp->base->mqtt.sparkplug_cfg.edge_node_id, dev);
    return sp->topic;
}

static bool is_ready(const sparkplug *sp) { return sp->connected && sp->host_online && sp->born; }

bool sparkplug_host_offline(const sparkplug *sp) { return sp->connected && !sp->host_online; }

/* Encode and publish at QoS 0, unretained, with the next seq; -1 when not
 * sent (then the seq is not used up, so the sequence stays gapless), -2
 * when it cannot be encoded (retrying would not help). */
static int send(sparkplug *sp, const char *topic, const spb_metric *m, size_t n, int *mid)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int dummy, rc;
    if (spb_encode((uint64_t)now_ms(), (int)sp->seq, m, n, &buf, &len) < 0) {
        log_error("sparkplug: cannot encode %s: %s", topic, strerror(errno));
        return -2;
    }
    rc = mqtt_publish(sp->mq, topic, buf, (int)len, 0, false, NULL, mid ? mid : &dummy);
    free(buf);
    if (rc == 0)
        sp->seq = (sp->seq + 1) % 256;
    return rc;
}

/* The NDEATH payload of the current session: only bdSeq, no seq. */
static int encode_ndeath(sparkplug *sp, uint8_t **buf, size_t *len)
{
    codec_value bd = { .kind = CV_INT, .i = sp->bdseq };
    spb_metric m = { .name = "bdSeq", .datatype = SPB_DT_INT64, .value = &bd,
                     .timestamp = (uint64_t)now_ms(), .quality = -1 };
    return spb_encode((uint64_t)now_ms(), -1, &m, 1, buf, len);
}

/* An NDEATH published by us (clean shutdown, primary host gone): QoS 1 like
 * the Will, with the bdSeq of this session's NBIRTH. */
static void publish_ndeath(sparkplug *sp)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int mid;
    if (encode_ndeath(sp, &buf, &len) == 0)
        mqtt_publish(sp->mq, node_topic(sp, "NDEATH"), buf, (int)len, 1, false, NULL, &mid);
    free(buf);
}

/* ---- metrics ------------------------------------------------------------- */

/* The metric datatype of a tag: scaled values are doubles. */
static uint32_t tag_datatype(const cfg_tag *t)
{
    if (t->type != CT_BOOL && t->type != CT_STRING && (t->scale != 1 || t->offset != 0))
        return SPB_DT_DOUBLE;
    return spb_datatype(t->type);
}

/* A sample's JSON text back into a value of the tag's metric datatype. */
static int value_of(const cfg_tag *t, const char *text, codec_value *v)
{
    char *end = NULL;
    uint32_t dt = tag_datatype(t);
    errno = 0;
    switch (dt) {
    case SPB_DT_BOOLEAN:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return -1;
        v->kind = CV_BOOL;
        v->b = strcmp(text, "true") == 0;
        return 0;
    case SPB_DT_STRING: {
        json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
        if (!json_is_string(j)) {
            json_decref(j);
            return -1;
        }
        v->kind = CV_STR;
        snprintf(v->s, sizeof v->s, "%s", json_string_value(j));
        json_decref(j);
        return 0;
    }
    case SPB_DT_FLOAT:
        v->kind = CV_F32;
        v->f32 = strtof(text, &end);
        break;
    case SPB_DT_DOUBLE:
        v->kind = CV_F64;
        v->f64 = strtod(text, &end);
        break;
    case SPB_DT_UINT16: case SPB_DT_UINT32: case SPB_DT_UINT64:
        if (*text == '-')
            return -1;
        v->kind = CV_UINT;
        v->u = strtoull(text, &end, 10);
        /* a sample taken before a reload changed the tag's type may not fit */
        if (v->u > (dt == SPB_DT_UINT16 ? UINT16_MAX : dt == SPB_DT_UINT32 ? UINT32_MAX : UINT64_MAX))
            return -1;
        break;
    default: {
        v->kind = CV_INT;
        v->i = strtoll(text, &end, 10);
        int64_t max = dt == SPB_DT_INT16 ? INT16_MAX : dt == SPB_DT_INT32 ? INT32_MAX : INT64_MAX;
        if (v->i > max || v->i < -max - 1)
            return -1;
        break;
    }
    }
    return end && end != text && *end == 0 && !errno ? 0 : -1;
}

/* Metric m for tag t of device d (v: storage for its value). Births carry
 * the name, datatype, engUnit and Quality; data only the alias, plus Quality
 * when the value is bad or good again after a bad one. */
static void tag_metric(sparkplug *sp, size_t d, size_t t, const char *text, bool good,
                       int64_t ts, bool birth, codec_value *v, spb_metric *m)
{
    const cfg_tag *tag = &sp->cfg->devices[d].tags[t];
    tag_state *st = &sp->devs[d].tags[t];
    memset(m, 0, sizeof *m);
    m->name = birth ? tag->name : NULL;
    m->has_alias = true;
    m->alias = sp->devs[d].alias_base + t;
    m->datatype = tag_datatype(tag);
    m->value = good && text && value_of(tag, text, v) == 0 ? v : NULL;
    m->timestamp = (uint64_t)(ts > 0 ? ts : now_ms());
    m->has_props = birth || !m->value || st->bad_sent;
    m->eng_unit = birth && *tag->unit ? tag->unit : NULL;
    m->quality = m->value ? SPB_QUALITY_GOOD : SPB_QUALITY_BAD;
}

/* DBIRTH of device d: 0 sent, -1 not sent (retry), -2 cannot be sent. */
static int dbirth(sparkplug *sp, size_t d)
{
    const cfg_device *dev = &sp->cfg->devices[d];
    dev_state *ds = &sp->devs[d];
    spb_metric *m = calloc(ds->ntags + 1, sizeof *m);
    codec_value *v = calloc(ds->ntags + 1, sizeof *v);
    int rc = -1;
    if (m && v) {
        for (size_t t = 0; t < ds->ntags; t++) {
            tag_state *st = &ds->tags[t];
            tag_metric(sp, d, t, st->text, st->good, st->ts, true, &v[t], &m[t]);
        }
        rc = send(sp, device_topic(sp, "DBIRTH", dev->name), m, ds->ntags, NULL);
        if (rc == 0) {
            ds->born = true;
            ds->pending = false;
            for (size_t t = 0; t < ds->ntags; t++) {
                ds->tags[t].birth_ts = ds->tags[t].ts ? ds->tags[t].ts : -1;
                ds->tags[t].bad_sent = m[t].value == NULL;
            }
            if (ds->dropped)
                log_info("sparkplug: %s: %" PRIu64 " samples taken while it had no DBIRTH "
                         "were not published", dev->name, ds->dropped);
            ds->dropped = 0;
        }
    } else {
        log_error("sparkplug: out of memory for the DBIRTH of %s", dev->name);
    }
    if (rc < 0) /* -1: retry before its next DDATA; -2: not born, its data is dropped */
        ds->pending = rc == -1 && ds->up;
    free(m);
    free(v);
    return rc;
}

/* NBIRTH with seq 0 and this session's bdSeq, then a DBIRTH per device that
 * is up, back to back: nothing else is published in between. */
static void births(sparkplug *sp)
{
    outbox_stats os;
    outbox_stats_get(sp->ob, &os);
    codec_value bd = { .kind = CV_INT, .i = sp->bdseq }, rebirth = { .kind = CV_BOOL, .b = false },
                ver = { .kind = CV_STR }, depth = { .kind = CV_INT, .i = os.pending };
    snprintf(ver.s, sizeof ver.s, "%s", MBGATE_VERSION);
    uint64_t now = (uint64_t)now_ms();
    spb_metric m[] = {
        { .name = "bdSeq", .datatype = SPB_DT_INT64, .value = &bd, .timestamp = now, .quality = -1 },
        { .name = REBIRTH, .datatype = SPB_DT_BOOLEAN, .value = &rebirth,
          .timestamp = now, .quality = -1 },
        { .name = "Node Info/Version", .datatype = SPB_DT_STRING, .value = &ver, .timestamp = now,
          .quality = -1 },
        { .name = "Node Info/Buffer Depth", .datatype = SPB_DT_INT64, .value = &depth,
          .timestamp = now, .quality = -1 },
    };
    sp->born = false;
    for (size_t d = 0; d < sp->ndevs; d++) {
        sp->devs[d].born = false;
        sp->devs[d].pending = false;
    }
    sp->seq = 0;
    if (send(sp, node_topic(sp, "NBIRTH"), m, sizeof m / sizeof *m, NULL) < 0)
        return;
    sp->born = true;
    size_t n = 0;
    for (size_t d = 0; d < sp->ndevs; d++)
        if (sp->devs[d].up) {
            dbirth(sp, d);
            n++;
        }
    log_info("sparkplug: NBIRTH (bdSeq %" PRId64 ") and %zu device births sent", sp->bdseq, n);
}

/* Data flows (the outbox publishes) when connected, born, and the primary
 * host (if any) is online. */
static void update_flow(sparkplug *sp, bool was_ready)
{
    bool ready = is_ready(sp);
    if (ready != was_ready)
        outbox_connected(sp->ob, ready);
}

/* The session ends for the host (NDEATH published or the connection lost):
 * no device is born any more. */
static void unborn(sparkplug *sp)
{
    sp->born = false;
    for (size_t d = 0; d < sp->ndevs; d++) {
        sp->devs[d].born = false;
        sp->devs[d].pending = false;
    }
}

void sparkplug_set_config(sparkplug *sp, const config *cfg)
{
    bool ready = is_ready(sp);
    /* sp->cfg may already be freed: free_devs only uses our own counts */
    free_devs(sp);
    if (alloc_devs(sp, cfg) < 0) {
        log_error("sparkplug: out of memory after reload: no device births until a restart");
        free_devs(sp); /* ndevs 0: every device lookup fails */
    }
    /* new aliases: a rebirth (the devices get theirs as they come up) */
    if (ready)
        births(sp);
    update_flow(sp, ready);
}

/* ---- session ------------------------------------------------------------- */

void sparkplug_will(sparkplug *sp, const char **topic, const void **payload, int *len)
{
    /* each MQTT CONNECT gets the next bdSeq (255 wraps to 0), kept across restarts */
    sp->bdseq = (sp->bdseq + 1) % 256;
    outbox_set_counter(sp->ob, "bdseq", sp->bdseq);
    free(sp->will);
    sp->will = NULL;
    if (encode_ndeath(sp, &sp->will, &sp->will_len) < 0) {
        *topic = NULL;
        return;
    }
    *topic = node_topic(sp, "NDEATH");
    *payload = sp->will;
    *len = (int)sp->will_len;
}

void sparkplug_connected(sparkplug *sp)
{
    const typeof(sp->base->mqtt.sparkplug_cfg) *c = &sp->base->mqtt.sparkplug_cfg;
    char t[CFG_TEXT_MAX * 3 + 32];
    sp->connected = true;
    unborn(sp);
    /* commands (and STATE) are subscribed before NBIRTH, so none is missed after it */
    mqtt_subscribe(sp->mq, node_topic(sp, "NCMD"), 1);
    snprintf(t, sizeof t, NS "/%s/DCMD/%s/+", c->group_id, c->edge_node_id);
    mqtt_subscribe(sp->mq, t, 1);
    if (*c->primary_host_id) {
        sp->host_online = false;
        mqtt_subscribe(sp->mq, sp->state_topic, 1);
        log_info("sparkplug: waiting for primary host %s to be online", c->primary_host_id);
        return;
    }
    sp->host_online = true;
    births(sp);
    update_flow(sp, false);
}

void sparkplug_disconnected(sparkplug *sp)
{
    bool ready = is_ready(sp);
    sp->connected = false;
    unborn(sp);
    update_flow(sp, ready);
}

static ssize_t device_index(sparkplug *sp, const char *dev)
{
    const cfg_device *d = config_device(sp->cfg, dev);
    return d && (size_t)(d - sp->cfg->devices) < sp->ndevs ? d - sp->cfg->devices : -1;
}

void sparkplug_device_state(sparkplug *sp, const char *dev, bool up)
{
    ssize_t d = device_index(sp, dev);
    if (d < 0 || sp->devs[d].up == up)
        return;
    dev_state *ds = &sp->devs[d];
    ds->up = up;
    if (up) {
        /* the DBIRTH waits for the device's first values (observed with the
         * samples that follow this event) and goes out before its first DDATA */
        ds->pending = is_ready(sp) && !ds->born;
        return;
    }
    for (size_t t = 0; t < ds->ntags; t++)
        ds->tags[t].good = false;
    ds->pending = false;
    if (ds->born && is_ready(sp)) {
        /* DDEATH carries only the timestamp and seq */
        send(sp, device_topic(sp, "DDEATH", dev), NULL, 0, NULL);
    }
    ds->born = false;
}

void sparkplug_observe(sparkplug *sp, const sample *s)
{
    ssize_t d = device_index(sp, s->dev);
    const cfg_tag *t = d >= 0 ? config_tag(&sp->cfg->devices[d], s->tag) : NULL;
    if (!t)
        return;
    tag_state *st = &sp->devs[d].tags[t - sp->cfg->devices[d].tags];
    free(st->text);
    st->text = s->good && s->val ? strdup(s->val) : NULL;
    st->ts = s->ts;
    st->good = s->good && st->text;
}

int sparkplug_publish(sparkplug *sp, const sample *s, int *mid)
{
    ssize_t d = device_index(sp, s->dev);
    const cfg_tag *t = d >= 0 ? config_tag(&sp->cfg->devices[d], s->tag) : NULL;
    *mid = -1; /* "nothing to send, done with it" unless published below */
    if (!t)
        return 0; /* a tag removed by a reload */
    dev_state *ds = &sp->devs[d];
    if (!is_ready(sp))
        return -1; /* not now: the outbox keeps it */
    if (ds->pending && ds->up && dbirth(sp, (size_t)d) == -1)
        return -1; /* the DBIRTH did not go out: retry, DBIRTH first */
    if (!ds->born) {
        /* no DDATA without a DBIRTH in this session (a device that is down) */
        ds->dropped++;
        return 0;
    }
    size_t ti = (size_t)(t - sp->cfg->devices[d].tags);
    tag_state *st = &ds->tags[ti];
    bool hist = s->hist;
    if (!hist && st->birth_ts >= 0 && s->ts == st->birth_ts)
        return 0; /* this very sample is the value in the DBIRTH */
    if (!hist && st->birth_ts >= 0 && s->ts < st->birth_ts && s->ts > st->birth_ts - BIRTH_WINDOW_MS)
        hist = true; /* queued before the DBIRTH and older than its value: live data stays
                        in order (a window, so that a wall clock set back does not make
                        every later sample historical) */
    codec_value v;
    spb_metric m;
    tag_metric(sp, (size_t)d, ti, s->val, s->good, s->ts, false, &v, &m);
    m.is_historical = hist;
    int rc = send(sp, device_topic(sp, "DDATA", s->dev), &m, 1, mid);
    if (rc == -2) {
        *mid = -1; /* cannot be encoded: logged, dropped */
        return 0;
    }
    if (rc < 0)
        return -1;
    if (!hist)
        st->bad_sent = m.value == NULL;
    return 0;
}

/* ---- incoming ------------------------------------------------------------ */

static void on_state(sparkplug *sp, const struct mosquitto_message *m)
{
    json_error_t e;
    json_t *j = json_loadb(m->payload, (size_t)m->payloadlen, 0, &e);
    json_t *on = json_object_get(j, "online"), *ts = json_object_get(j, "timestamp");
    if (!json_is_boolean(on) || !json_is_integer(ts)) {
        log_warn("sparkplug: ignoring a STATE on %s that is not {\"online\":bool,"
                 "\"timestamp\":ms}", m->topic);
        json_decref(j);
        return;
    }
    int64_t stamp = json_integer_value(ts);
    bool online = json_is_true(on);
    json_decref(j);
    /* only the latest STATE counts (a host's death has the same timestamp as its birth) */
    if (stamp < sp->host_ts) {
        log_info("sparkplug: ignoring a stale STATE (%s, timestamp %" PRId64 " older than %" PRId64 ")",
                 online ? "online" : "offline", stamp, sp->host_ts);
        return;
    }
    sp->host_ts = stamp;
    bool ready = is_ready(sp), was = sp->host_online;
    sp->host_online = online;
    if (online && sp->connected && !sp->born) {
        log_info("sparkplug: primary host %s is online: sending births",
                 sp->base->mqtt.sparkplug_cfg.primary_host_id);
        births(sp);
    } else if (!online && was) {
        log_info("sparkplug: primary host %s is offline: NDEATH, holding data",
                 sp->base->mqtt.sparkplug_cfg.primary_host_id);
        if (sp->born && sp->connected)
            publish_ndeath(sp);
        unborn(sp);
    }
    update_flow(sp, ready);
}

/* The tag a DCMD metric names: by name, else by alias. */
static const cfg_tag *cmd_tag(sparkplug *sp, ssize_t d, const spb_cmd *c)
{
    if (d < 0)
        return NULL;
    const cfg_device *dev = &sp->cfg->devices[d];
    const dev_state *ds = &sp->devs[d];
    if (*c->name)
        return config_tag(dev, c->name);
    if (c->has_alias && c->alias >= ds->alias_base && c->alias < ds->alias_base + ds->ntags)
        return &dev->tags[c->alias - ds->alias_base];
    return NULL;
}

/* DCMD: every metric, by name or alias, becomes a write request for the
 * setpoint pipeline (which validates, audits and counts refusals). */
static void on_dcmd(sparkplug *sp, const char *dev, const spb_cmd *c, size_t n, int64_t ts,
                    sparkplug_write_fn write, void *ctx)
{
    ssize_t d = device_index(sp, dev);
    for (size_t i = 0; i < n; i++) {
        const cfg_tag *t = cmd_tag(sp, d, &c[i]);
        char json[CODEC_STR_MAX * 6 + 16];
        if (spb_cmd_json(&c[i], json, sizeof json) < 0)
            snprintf(json, sizeof json, "null");
        if (!t)
            log_warn("sparkplug: DCMD for %s: unknown metric %s%s (alias %" PRIu64 ")", dev,
                     *c[i].name ? c[i].name : "-", c[i].has_alias ? "" : ", no alias",
                     c[i].alias);
        write(ctx, d >= 0 ? &sp->cfg->devices[d] : NULL, t, json, ts);
    }
}

void sparkplug_message(sparkplug *sp, const struct mosquitto_message *m,
                       sparkplug_write_fn write, void *ctx)
{
    const typeof(sp->base->mqtt.sparkplug_cfg) *c = &sp->base->mqtt.sparkplug_cfg;
    char pre[CFG_TEXT_MAX * 3 + 32];
    if (strncmp(m->topic, NS "/STATE/", strlen(NS "/STATE/")) == 0) {
        if (*c->primary_host_id && strcmp(m->topic, sp->state_topic) == 0)
            on_state(sp, m);
        return;
    }
    snprintf(pre, sizeof pre, NS "/%s/DCMD/%s/", c->group_id, c->edge_node_id);
    bool ncmd = strcmp(m->topic, node_topic(sp, "NCMD")) == 0;
    bool dcmd = !ncmd && strncmp(m->topic, pre, strlen(pre)) == 0;
    if (!ncmd && !dcmd)
        return;
    spb_cmd *cmds = NULL;
    char err[200];
    int n = spb_decode_cmd(m->payload, (size_t)m->payloadlen, &cmds, err, sizeof err);
    if (n < 0) {
        log_warn("sparkplug: refused command on %s: %s", m->topic, err);
        return;
    }
    int64_t ts = 0; /* payload timestamps are not exposed: staleness is the broker's */
    if (ncmd) {
        bool rebirth = false;
        for (int i = 0; i < n; i++) {
            if (strcmp(cmds[i].name, REBIRTH) == 0 && !cmds[i].is_null &&
                cmds[i].kind == SPB_BOOL) {
                rebirth |= cmds[i].b;
            } else {
                log_warn("sparkplug: NCMD: unsupported metric %s",
                         *cmds[i].name ? cmds[i].name : "(alias only)");
            }
        }
        if (rebirth) {
            log_info("sparkplug: rebirth requested");
            if (is_ready(sp))
                births(sp); /* synchronously: no data between the command and the births */
        }
    } else {
        on_dcmd(sp, m->topic + strlen(pre), cmds, (size_t)n, ts, write, ctx);
    }
    free(cmds);
}

void sparkplug_shutdown(sparkplug *sp)
{
    if (!sp->connected)
        return;
    /* the bdSeq of this session's Will and NBIRTH */
    publish_ndeath(sp);
    bool ready = is_ready(sp);
    unborn(sp);
    update_flow(sp, ready);
}
