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

typedef struct {
    char *text;    /* last value as JSON text; NULL when unknown or bad */
    int64_t ts;
    bool good;
} last_value;

struct sparkplug {
    const config *base;    /* group, edge node, host: fixed at startup */
    const config *cfg;     /* devices and tags (changes on reload) */
    mqtt *mq;
    outbox *ob;
    last_value **last;     /* [device][tag] */
    bool *dev_up;
    uint64_t *alias_base;  /* alias of device d's tag t = alias_base[d] + t */
    int64_t bdseq;         /* of the current session */
    unsigned seq;          /* next seq */
    bool connected;
    bool host_online;      /* true when no primary host is configured */
    int64_t host_ts;       /* timestamp of the last STATE we acted on */
    bool born;             /* NBIRTH sent in this session */
    char topic[CFG_TEXT_MAX * 3];
    uint8_t *will;
    size_t will_len;
};

static void free_last(sparkplug *sp)
{
    if (!sp->cfg || !sp->last)
        return;
    for (size_t d = 0; d < sp->cfg->ndevices; d++) {
        for (size_t t = 0; sp->last[d] && t < sp->cfg->devices[d].ntags; t++)
            free(sp->last[d][t].text);
        free(sp->last[d]);
    }
    free(sp->last);
    free(sp->dev_up);
    free(sp->alias_base);
    sp->last = NULL;
    sp->dev_up = NULL;
    sp->alias_base = NULL;
}

static int alloc_last(sparkplug *sp, const config *cfg)
{
    sp->cfg = cfg;
    sp->last = calloc(cfg->ndevices + 1, sizeof *sp->last);
    sp->dev_up = calloc(cfg->ndevices + 1, sizeof *sp->dev_up);
    sp->alias_base = calloc(cfg->ndevices + 1, sizeof *sp->alias_base);
    if (!sp->last || !sp->dev_up || !sp->alias_base)
        return -1;
    uint64_t next = 1;
    for (size_t d = 0; d < cfg->ndevices; d++) {
        sp->alias_base[d] = next;
        next += cfg->devices[d].ntags;
        sp->last[d] = calloc(cfg->devices[d].ntags + 1, sizeof **sp->last);
        if (!sp->last[d])
            return -1;
    }
    return 0;
}

sparkplug *sparkplug_new(const config *cfg, mqtt *mq, outbox *ob, char *err, size_t errlen)
{
    sparkplug *sp = calloc(1, sizeof *sp);
    if (!sp || alloc_last(sp, cfg) < 0) {
        sparkplug_free(sp);
        snprintf(err, errlen, "sparkplug: out of memory");
        return NULL;
    }
    sp->base = cfg;
    sp->mq = mq;
    sp->ob = ob;
    sp->bdseq = outbox_counter(ob, "bdseq");
    return sp;
}

void sparkplug_free(sparkplug *sp)
{
    if (!sp)
        return;
    free_last(sp);
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

static int next_seq(sparkplug *sp)
{
    int s = (int)sp->seq;
    sp->seq = (sp->seq + 1) % 256;
    return s;
}

/* Encode and publish at QoS 0, unretained; -1 when not sent. */
static int send(sparkplug *sp, const char *topic, int seq, const spb_metric *m, size_t n, int *mid)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    int dummy, rc = -1;
    if (spb_encode((uint64_t)now_ms(), seq, m, n, &buf, &len) < 0) {
        log_error("sparkplug: cannot encode %s: %s", topic, strerror(errno));
        return -1;
    }
    rc = mqtt_publish(sp->mq, topic, buf, (int)len, 0, false, NULL, mid ? mid : &dummy);
    free(buf);
    return rc;
}

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
        v->kind = CV_UINT;
        v->u = strtoull(text, &end, 10);
        break;
    default:
        v->kind = CV_INT;
        v->i = strtoll(text, &end, 10);
        break;
    }
    return end && *end == 0 && !errno ? 0 : -1;
}

static void tag_metric(sparkplug *sp, size_t d, size_t t, const char *text, bool good,
                       int64_t ts, bool named, codec_value *v, spb_metric *m)
{
    const cfg_tag *tag = &sp->cfg->devices[d].tags[t];
    memset(m, 0, sizeof *m);
    m->name = named ? tag->name : NULL;
    m->has_alias = true;
    m->alias = sp->alias_base[d] + t;
    m->datatype = tag_datatype(tag);
    m->value = good && text && value_of(tag, text, v) == 0 ? v : NULL;
    m->timestamp = (uint64_t)(ts ? ts : now_ms());
    m->has_props = named || !good;
    m->eng_unit = named && *tag->unit ? tag->unit : NULL;
    m->quality = m->value ? SPB_QUALITY_GOOD : SPB_QUALITY_BAD;
}

static void dbirth(sparkplug *sp, size_t d)
{
    const cfg_device *dev = &sp->cfg->devices[d];
    spb_metric *m = calloc(dev->ntags + 1, sizeof *m);
    codec_value *v = calloc(dev->ntags + 1, sizeof *v);
    if (m && v) {
        for (size_t t = 0; t < dev->ntags; t++) {
            last_value *lv = &sp->last[d][t];
            tag_metric(sp, d, t, lv->text, lv->good, lv->ts, true, &v[t], &m[t]);
        }
        send(sp, device_topic(sp, "DBIRTH", dev->name), next_seq(sp), m, dev->ntags, NULL);
    }
    free(m);
    free(v);
}

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
        { .name = "Node Control/Rebirth", .datatype = SPB_DT_BOOLEAN, .value = &rebirth,
          .timestamp = now, .quality = -1 },
        { .name = "Node Info/Version", .datatype = SPB_DT_STRING, .value = &ver, .timestamp = now,
          .quality = -1 },
        { .name = "Node Info/Buffer Depth", .datatype = SPB_DT_INT64, .value = &depth,
          .timestamp = now, .quality = -1 },
    };
    sp->seq = 0;
    if (send(sp, node_topic(sp, "NBIRTH"), next_seq(sp), m, sizeof m / sizeof *m, NULL) < 0)
        return;
    sp->born = true;
    for (size_t d = 0; d < sp->cfg->ndevices; d++)
        if (sp->dev_up[d])
            dbirth(sp, d);
    log_info("sparkplug: NBIRTH (bdSeq %" PRId64 ") and device births sent", sp->bdseq);
}

/* Data may flow when connected, born, and the primary host (if any) is online. */
static void update_flow(sparkplug *sp, bool was_ready)
{
    bool ready = sp->connected && sp->host_online && sp->born;
    if (ready != was_ready)
        outbox_connected(sp->ob, ready);
}

static bool is_ready(const sparkplug *sp) { return sp->connected && sp->host_online && sp->born; }

void sparkplug_set_config(sparkplug *sp, const config *cfg)
{
    bool ready = is_ready(sp);
    free_last(sp);
    if (alloc_last(sp, cfg) < 0)
        log_error("sparkplug: out of memory after reload");
    if (ready)
        births(sp);
}

void sparkplug_will(sparkplug *sp, const char **topic, const void **payload, int *len)
{
    /* each session gets the next bdSeq, kept across restarts */
    sp->bdseq = (sp->bdseq + 1) % 256;
    outbox_set_counter(sp->ob, "bdseq", sp->bdseq);
    codec_value bd = { .kind = CV_INT, .i = sp->bdseq };
    spb_metric m = { .name = "bdSeq", .datatype = SPB_DT_INT64, .value = &bd,
                     .timestamp = (uint64_t)now_ms(), .quality = -1 };
    free(sp->will);
    sp->will = NULL;
    if (spb_encode((uint64_t)now_ms(), -1, &m, 1, &sp->will, &sp->will_len) < 0) {
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
    char t[CFG_TEXT_MAX * 3];
    sp->connected = true;
    sp->born = false;
    /* commands are subscribed before NBIRTH, so none is missed after it */
    mqtt_subscribe(sp->mq, node_topic(sp, "NCMD"), 1);
    snprintf(t, sizeof t, NS "/%s/DCMD/%s/+", c->group_id, c->edge_node_id);
    mqtt_subscribe(sp->mq, t, 1);
    if (*c->primary_host_id) {
        sp->host_online = false;
        snprintf(t, sizeof t, NS "/STATE/%s", c->primary_host_id);
        mqtt_subscribe(sp->mq, t, 1);
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
    sp->born = false;
    update_flow(sp, ready);
}

static ssize_t device_index(sparkplug *sp, const char *dev)
{
    const cfg_device *d = config_device(sp->cfg, dev);
    return d ? d - sp->cfg->devices : -1;
}

void sparkplug_device_state(sparkplug *sp, const char *dev, bool up)
{
    ssize_t d = device_index(sp, dev);
    if (d < 0 || sp->dev_up[d] == up)
        return;
    sp->dev_up[d] = up;
    if (!up)
        for (size_t t = 0; t < sp->cfg->devices[d].ntags; t++)
            sp->last[d][t].good = false;
    if (!is_ready(sp))
        return;
    if (up) {
        dbirth(sp, (size_t)d);
    } else {
        /* DDEATH carries only the timestamp and seq */
        send(sp, device_topic(sp, "DDEATH", dev), next_seq(sp), NULL, 0, NULL);
    }
}

void sparkplug_observe(sparkplug *sp, const sample *s)
{
    ssize_t d = device_index(sp, s->dev);
    const cfg_tag *t = d >= 0 ? config_tag(&sp->cfg->devices[d], s->tag) : NULL;
    if (!t)
        return;
    last_value *lv = &sp->last[d][t - sp->cfg->devices[d].tags];
    free(lv->text);
    lv->text = s->val ? strdup(s->val) : NULL;
    lv->ts = s->ts;
    lv->good = s->good;
}

int sparkplug_publish(sparkplug *sp, const sample *s, int *mid)
{
    ssize_t d = device_index(sp, s->dev);
    const cfg_tag *t = d >= 0 ? config_tag(&sp->cfg->devices[d], s->tag) : NULL;
    if (!t) {
        *mid = -1; /* a tag removed by a reload: nothing to send, done with it */
        return 0;
    }
    codec_value v;
    spb_metric m;
    tag_metric(sp, (size_t)d, (size_t)(t - sp->cfg->devices[d].tags), s->val, s->good, s->ts,
               false, &v, &m);
    m.is_historical = s->hist;
    return send(sp, device_topic(sp, "DDATA", s->dev), next_seq(sp), &m, 1, mid);
}

static void on_state(sparkplug *sp, const struct mosquitto_message *m)
{
    json_error_t e;
    json_t *j = json_loadb(m->payload, (size_t)m->payloadlen, 0, &e);
    json_t *on = json_object_get(j, "online"), *ts = json_object_get(j, "timestamp");
    if (!json_is_boolean(on)) {
        log_warn("sparkplug: ignoring malformed STATE on %s", m->topic);
        json_decref(j);
        return;
    }
    int64_t stamp = json_is_integer(ts) ? json_integer_value(ts) : 0;
    bool online = json_is_true(on);
    json_decref(j);
    if (stamp < sp->host_ts) {
        log_info("sparkplug: ignoring a stale STATE (%s, older than the last one)",
                 online ? "online" : "offline");
        return;
    }
    sp->host_ts = stamp;
    if (online == sp->host_online)
        return;
    bool ready = is_ready(sp);
    sp->host_online = online;
    log_info("sparkplug: primary host %s is %s", sp->base->mqtt.sparkplug_cfg.primary_host_id,
             online ? "online: sending births" : "offline: holding data");
    if (online && sp->connected)
        births(sp);
    update_flow(sp, ready);
}

/* DCMD: every metric, by name or alias, becomes a write request. */
static void on_dcmd(sparkplug *sp, const char *dev, const spb_cmd *c, size_t n, int64_t ts,
                    sparkplug_write_fn write, void *ctx)
{
    ssize_t d = device_index(sp, dev);
    for (size_t i = 0; i < n; i++) {
        const cfg_tag *t = NULL;
        if (d >= 0 && *c[i].name) {
            t = config_tag(&sp->cfg->devices[d], c[i].name);
        } else if (d >= 0 && c[i].has_alias && c[i].alias >= sp->alias_base[d] &&
                   c[i].alias < sp->alias_base[d] + sp->cfg->devices[d].ntags) {
            t = &sp->cfg->devices[d].tags[c[i].alias - sp->alias_base[d]];
        }
        char json[CODEC_STR_MAX * 6 + 16];
        if (spb_cmd_json(&c[i], json, sizeof json) < 0)
            snprintf(json, sizeof json, "null");
        write(ctx, d >= 0 ? &sp->cfg->devices[d] : NULL, t, json, ts);
    }
}

void sparkplug_message(sparkplug *sp, const struct mosquitto_message *m,
                       sparkplug_write_fn write, void *ctx)
{
    const typeof(sp->base->mqtt.sparkplug_cfg) *c = &sp->base->mqtt.sparkplug_cfg;
    char pre[CFG_TEXT_MAX * 3];
    if (strncmp(m->topic, NS "/STATE/", 13) == 0) {
        on_state(sp, m);
        return;
    }
    spb_cmd *cmds = NULL;
    char err[200];
    int n = spb_decode_cmd(m->payload, (size_t)m->payloadlen, &cmds, err, sizeof err);
    if (n < 0) {
        log_warn("sparkplug: refused command on %s: %s", m->topic, err);
        return;
    }
    int64_t ts = 0; /* payload timestamps are not exposed: staleness is the broker's */
    snprintf(pre, sizeof pre, NS "/%s/DCMD/%s/", c->group_id, c->edge_node_id);
    if (strcmp(m->topic, node_topic(sp, "NCMD")) == 0) {
        for (int i = 0; i < n; i++)
            if (strcmp(cmds[i].name, "Node Control/Rebirth") == 0 && cmds[i].kind == SPB_BOOL &&
                cmds[i].b) {
                log_info("sparkplug: rebirth requested");
                if (is_ready(sp))
                    births(sp);
            }
    } else if (strncmp(m->topic, pre, strlen(pre)) == 0) {
        on_dcmd(sp, m->topic + strlen(pre), cmds, (size_t)n, ts, write, ctx);
    }
    free(cmds);
}

void sparkplug_shutdown(sparkplug *sp)
{
    if (!sp->connected)
        return;
    const char *topic;
    const void *payload;
    int len, mid;
    /* the same bdSeq as this session's Will */
    sp->bdseq = (sp->bdseq + 255) % 256;
    sparkplug_will(sp, &topic, &payload, &len);
    if (topic)
        mqtt_publish(sp->mq, topic, payload, len, 1, false, NULL, &mid);
}
