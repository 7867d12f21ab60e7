/* agent.c - the agent's event loop: samples in, messages out, commands back. */
#include "agent.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <jansson.h>
#include <mqtt_protocol.h>
#include <systemd/sd-daemon.h>

#include "bus.h"
#include "control.h"
#include "log.h"
#include "mqtt.h"
#include "outbox.h"
#include "payload.h"
#include "setpoint.h"
#include "sparkplug.h"

#define MSG_MAX (64 * 1024)
#define GROW_WINDOW_S 5 /* backlog "growing": more pending than this many seconds ago */

typedef struct {
    bool known, up;
    int64_t ts;
    char error[160];
} dev_state;

typedef struct {
    sp_bucket bucket;  /* setpoints.max_rate */
    int64_t retained;  /* mqtt.retain: ts of the newest sample published retained */
} tag_state;

/* Where a command came from, so its result goes back there. */
typedef struct {
    char topic[CFG_TEXT_MAX * 2];   /* P/D/T/set/result */
    char response_topic[CFG_TEXT_MAX * 2];
    void *corr;
    uint16_t corr_len;
    char id[SP_ID_MAX + 1];
    int64_t t0;                     /* mono ms received */
    int client;                     /* control client id, or an ORIGIN_ */
} cmd_origin;

#define ORIGIN_MQTT (-1)      /* P/D/T/set: result on P/D/T/set/result */
#define ORIGIN_SPARKPLUG (-2) /* DCMD: no result message, DDATA shows the write */

typedef struct agent {
    config *base;                   /* startup config: gateway, mqtt, buffer, control */
    config *cfg;                    /* current devices and setpoint policy (SIGHUP) */
    const char *path;
    queue q;
    bus *bus;
    outbox *ob;
    mqtt *mq;
    control *ctl;
    sparkplug *sp;                  /* NULL in the JSON format */
    dev_state *states;
    tag_state **tags;               /* [device][tag], [device][ntags]: the device topic */
    bool pubacks;                   /* data at QoS >= 1: acks are PUBACKs worth batching */
    int sigfd;
    bool stopping;
    int64_t started_mono;
    int64_t next_status, next_notify;
    uint64_t sp_ok, sp_rejected;
    char sp_last[300];
    int64_t sp_last_ts;
    char status_topic[CFG_TEXT_MAX + 16];
    int64_t pending_hist[GROW_WINDOW_S]; /* pending, one a second, for "backlog growing" */
    unsigned pending_pos;
} agent;

/* ---- helpers ------------------------------------------------------------ */

static void publish_simple(agent *a, const char *topic, const char *payload, int qos, bool retain)
{
    int mid;
    mqtt_publish(a->mq, topic, payload, (int)strlen(payload), qos, retain, NULL, &mid);
}

static void publish_device_state(agent *a, size_t i)
{
    char topic[CFG_TEXT_MAX * 2], body[512];
    const dev_state *s = &a->states[i];
    if (a->sp) {
        if (s->known)
            sparkplug_device_state(a->sp, a->cfg->devices[i].name, s->up);
        return;
    }
    if (!s->known || !mqtt_is_connected(a->mq))
        return;
    snprintf(topic, sizeof topic, "%s/%s/status", a->base->mqtt.topic_prefix, a->cfg->devices[i].name);
    if (payload_device_state(s->up, s->ts, s->error, body, sizeof body) > 0)
        publish_simple(a, topic, body, 1, true);
}

static void status_json(agent *a, char *buf, size_t n)
{
    outbox_stats os;
    outbox_stats_get(a->ob, &os);
    size_t up = 0, down = 0;
    for (size_t i = 0; i < a->cfg->ndevices; i++) {
        if (a->states[i].known && a->states[i].up)
            up++;
        else if (a->states[i].known)
            down++;
    }
    snprintf(buf, n,
             "{\"state\":\"online\",\"ts\":%lld,\"version\":\"%s\",\"uptime_s\":%lld,"
             "\"devices_up\":%zu,\"devices_down\":%zu,\"published\":%lld,\"acked\":%lld,"
             "\"pending\":%lld,\"dropped\":%lld,\"setpoints_ok\":%llu,\"setpoints_rejected\":%llu}",
             (long long)now_ms(), MBGATE_VERSION, (long long)(mono_ms() - a->started_mono) / 1000,
             up, down, (long long)os.published, (long long)os.acked, (long long)os.pending,
             (long long)os.dropped, (unsigned long long)a->sp_ok,
             (unsigned long long)a->sp_rejected);
}

static void publish_status(agent *a)
{
    char body[1024];
    if (!mqtt_is_connected(a->mq) || a->sp)
        return;
    status_json(a, body, sizeof body);
    publish_simple(a, a->status_topic, body, 1, true);
}

/* ---- setpoints ---------------------------------------------------------- */

/* The result of SPEC §5; the value is formatted by the codec (shortest
 * round trip), which jansson's number output is not. */
static void result_payload(const bus_cmd *c, const char *id, char *buf, size_t n)
{
    char idj[SP_ID_MAX * 6 + 3], v[CODEC_STR_MAX * 6 + 16], detail[600];
    payload_string(id, idj, sizeof idj);
    if (c->code == SP_OK) {
        if (codec_format(&c->value, v, sizeof v) < 0)
            snprintf(v, sizeof v, "null");
        snprintf(buf, n, "{\"id\":%s,\"ok\":true,\"v\":%s,\"ts\":%lld}", idj, v, (long long)c->ts);
    } else {
        payload_string(c->detail, detail, sizeof detail);
        snprintf(buf, n, "{\"id\":%s,\"ok\":false,\"error\":\"%s\",\"detail\":%s}", idj,
                 setpoint_code_name(c->code), detail);
    }
}

static void audit(agent *a, const bus_cmd *c, const char *dev, const char *tag,
                  const char *shown, const char *id, double ms)
{
    char line[600];
    if (c->code == SP_OK)
        snprintf(line, sizeof line, "setpoint %s/%s = %s (id %s): ok in %.1f ms", dev, tag,
                 shown, *id ? id : "-", ms);
    else
        snprintf(line, sizeof line, "setpoint %s/%s = %s (id %s): rejected: %s %s", dev, tag,
                 shown, *id ? id : "-", setpoint_code_name(c->code), c->detail);
    payload_utf8_clean(line); /* raw payload bytes, or a cut in mid-character */
    log_info("%s", line);
    if (c->code == SP_OK)
        a->sp_ok++;
    else
        a->sp_rejected++;
    snprintf(a->sp_last, sizeof a->sp_last, "%s", line + 9);
    a->sp_last_ts = now_ms();
}

static void send_result(agent *a, const bus_cmd *c, cmd_origin *o)
{
    char body[1024];
    result_payload(c, o->id, body, sizeof body);
    int mid;
    mqtt_publish(a->mq, o->topic, body, (int)strlen(body), 1, false, NULL, &mid);
    if (*o->response_topic) {
        mosquitto_property *props = NULL;
        if (o->corr)
            mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, o->corr, o->corr_len);
        mqtt_publish(a->mq, o->response_topic, body, (int)strlen(body), 1, false, props, &mid);
        mosquitto_property_free_all(&props);
    }
}

static void free_origin(cmd_origin *o)
{
    if (o) {
        free(o->corr);
        free(o);
    }
}

/* setpoints.max_rate, per tag, whoever asks (MQTT, Sparkplug, mbgate write). */
static bool rate_ok(agent *a, const cfg_device *d, const cfg_tag *t, char *detail, size_t dlen)
{
    if (setpoint_rate_ok(&a->tags[d - a->cfg->devices][t - d->tags].bucket,
                         a->cfg->setpoints.max_rate, mono_ms()))
        return true;
    snprintf(detail, dlen, "more than %u commands per second", a->cfg->setpoints.max_rate);
    return false;
}

/* Split "P/D/T/set" into device and tag; -1 if it is not ours. */
static int parse_set_topic(agent *a, const char *topic, char *dev, char *tag)
{
    size_t pl = strlen(a->base->mqtt.topic_prefix);
    if (strncmp(topic, a->base->mqtt.topic_prefix, pl) != 0 || topic[pl] != '/')
        return -1;
    const char *p = topic + pl + 1, *s1 = strchr(p, '/'), *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (!s1 || !s2 || strcmp(s2, "/set") != 0 || s1 - p >= CFG_NAME_MAX || s2 - s1 - 1 >= CFG_NAME_MAX)
        return -1;
    memcpy(dev, p, (size_t)(s1 - p));
    dev[s1 - p] = 0;
    memcpy(tag, s1 + 1, (size_t)(s2 - s1 - 1));
    tag[s2 - s1 - 1] = 0;
    return 0;
}

/* The commanded value for the audit line (the payload may be an object). */
static void command_text(const sp_command *cmd, char *buf, size_t n)
{
    codec_value v = { .kind = CV_STR };
    switch (cmd->kind) {
    case SPV_BOOL: v.kind = CV_BOOL; v.b = cmd->b; break;
    case SPV_INT: v.kind = CV_INT; v.i = cmd->i; break;
    case SPV_REAL: v.kind = CV_F64; v.f64 = cmd->d; break;
    case SPV_STR: snprintf(v.s, sizeof v.s, "%s", cmd->s); break;
    }
    if (codec_format(&v, buf, n) < 0)
        snprintf(buf, n, "?");
}

/* Validate a setpoint command and hand it to the link's thread; a refusal
 * is audited and answered at once. Takes ownership of o. */
static void run_setpoint(agent *a, cmd_origin *o, const char *dev, const char *tag,
                         const void *payload, size_t len, bool retained)
{
    bus_cmd *c = calloc(1, sizeof *c);
    if (!c) {
        free_origin(o);
        return;
    }
    const cfg_device *d = config_device(a->cfg, dev);
    const cfg_tag *t = d ? config_tag(d, tag) : NULL;
    sp_command cmd;
    char shown[CODEC_STR_MAX * 6 + 16];
    snprintf(shown, sizeof shown, "%.*s", len > 60 ? 60 : (int)len, payload ? (const char *)payload : "");
    for (char *p = shown; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = '?';
    char why[sizeof c->detail];
    sp_code parsed = setpoint_parse(payload ? payload : "", len, &cmd, why, sizeof why);
    if (!*o->id)
        snprintf(o->id, sizeof o->id, "%s", cmd.id);
    if (parsed == SP_OK)
        command_text(&cmd, shown, sizeof shown);
    sp_policy pol = { a->cfg->setpoints.enabled, a->cfg->setpoints.accept_retained,
                      a->cfg->setpoints.max_age_s, retained, now_ms() };
    /* the id is parsed first so that every refusal carries it, but a bad
     * payload is judged after disabled/unknown_tag/not_writable/retained */
    sp_code code = setpoint_gate(t, &pol, c->detail, sizeof c->detail);
    if (code == SP_OK && parsed != SP_OK) {
        code = parsed;
        snprintf(c->detail, sizeof c->detail, "%s", why);
    }
    if (code == SP_OK)
        code = setpoint_check(t, &pol, &cmd, c->detail, sizeof c->detail);
    if (code == SP_OK && !rate_ok(a, d, t, c->detail, sizeof c->detail))
        code = SP_RATE_LIMITED;
    if (code != SP_OK) {
        c->code = code;
        audit(a, c, dev, tag, shown, o->id, 0);
        if (o->client == ORIGIN_MQTT)
            send_result(a, c, o);
        free_origin(o);
        free(c);
        return;
    }
    c->op = CMD_WRITE;
    c->dev = d;
    c->tag = t;
    c->raw = cmd.raw;
    c->deadline = o->t0 + (int64_t)d->timeout_ms * (d->retries + 1);
    c->origin = o;
    bus_submit(a->bus, c);
}

static cmd_origin *new_origin(int client)
{
    cmd_origin *o = calloc(1, sizeof *o);
    if (o) {
        o->client = client;
        o->t0 = mono_ms();
    }
    return o;
}

/* A Sparkplug DCMD metric: the same pipeline; accepted writes show as DDATA. */
static void sparkplug_write(void *ctx, const cfg_device *d, const cfg_tag *t, const char *json, int64_t ts)
{
    (void)ts;
    agent *a = ctx;
    cmd_origin *o = new_origin(ORIGIN_SPARKPLUG);
    if (!o)
        return;
    snprintf(o->id, sizeof o->id, "DCMD");
    run_setpoint(a, o, d ? d->name : "?", t ? t->name : "?", json, strlen(json), false);
}

static void on_message(void *ctx, const struct mosquitto_message *m, const mosquitto_property *props)
{
    agent *a = ctx;
    char dev[CFG_NAME_MAX], tag[CFG_NAME_MAX];
    if (a->sp) {
        sparkplug_message(a->sp, m, sparkplug_write, a);
        return;
    }
    if (parse_set_topic(a, m->topic, dev, tag) < 0)
        return;
    cmd_origin *o = new_origin(ORIGIN_MQTT);
    if (!o)
        return;
    snprintf(o->topic, sizeof o->topic, "%s/result", m->topic);
    char *rt = NULL;
    if (mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &rt, false)) {
        snprintf(o->response_topic, sizeof o->response_topic, "%s", rt);
        free(rt);
        mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &o->corr, &o->corr_len, false);
    }
    run_setpoint(a, o, dev, tag, m->payload, (size_t)m->payloadlen, m->retain);
}

static void command_done(agent *a, bus_cmd *c)
{
    cmd_origin *o = c->origin;
    if (c->op == CMD_WRITE) {
        /* every write is audited, whoever asked */
        char shown[CODEC_STR_MAX * 6 + 16];
        codec_value eng;
        codec_scale(&c->raw, c->tag->scale, c->tag->offset, &eng);
        codec_format(&eng, shown, sizeof shown);
        audit(a, c, c->dev->name, c->tag->name, shown, o->client >= 0 ? "mbgate write" : o->id, c->ms);
    }
    if (o->client >= 0)
        control_reply_cmd(a->ctl, o->client, c);
    else if (o->client == ORIGIN_MQTT)
        send_result(a, c, o);
    free_origin(o);
    free(c);
}

/* ---- control socket hooks ----------------------------------------------- */

/* Sparkplug with a primary host: connected, but the host is offline. */
static bool host_offline(const agent *a) { return a->sp && sparkplug_host_offline(a->sp); }

/* Undeliverable samples piling up: nothing goes out (the broker or the
 * primary host is away) and more is pending now than GROW_WINDOW_S
 * seconds ago. */
static bool backlog_growing(const agent *a, const outbox_stats *os, const mqtt_stats *ms)
{
    if ((ms->connected && !host_offline(a)) || os->pending == 0 || a->pending_pos < GROW_WINDOW_S)
        return false;
    return os->pending > a->pending_hist[a->pending_pos % GROW_WINDOW_S];
}

static json_t *health(agent *a, const outbox_stats *os, const mqtt_stats *ms)
{
    json_t *reasons = json_array();
    int code = 0;
    size_t down = 0;
    for (size_t i = 0; i < a->cfg->ndevices; i++)
        if (a->states[i].known && !a->states[i].up) {
            char r[CFG_NAME_MAX + 8];
            snprintf(r, sizeof r, "%s down", a->cfg->devices[i].name);
            json_array_append_new(reasons, json_string(r));
            down++;
            code = 1;
        }
    if (!ms->connected) {
        json_array_append_new(reasons, json_string("broker disconnected"));
        code = code < 1 ? 1 : code;
    } else if (host_offline(a)) {
        json_array_append_new(reasons, json_string("primary host offline: data held"));
        code = code < 1 ? 1 : code;
    }
    if (backlog_growing(a, os, ms)) {
        json_array_append_new(reasons, json_string("backlog growing"));
        code = code < 1 ? 1 : code;
    }
    if (os->dropping || os->disk_full) {
        json_array_append_new(reasons, json_string(os->disk_full ? "disk full: outbox in memory"
                                                                   : "outbox dropping samples"));
        code = 2;
    }
    if (a->cfg->ndevices && down == a->cfg->ndevices) {
        json_array_append_new(reasons, json_string("every device down"));
        code = 2;
    }
    static const char *names[] = { "OK", "WARNING", "CRITICAL" };
    return json_pack("{s:i,s:s,s:o}", "code", code, "status", names[code], "reasons", reasons);
}

static json_t *hook_status(void *ctx)
{
    agent *a = ctx;
    outbox_stats os;
    mqtt_stats ms;
    outbox_stats_get(a->ob, &os);
    mqtt_stats_get(a->mq, &ms);
    payload_utf8_clean(ms.last_error);
    json_t *devs = json_array();
    for (size_t i = 0; i < a->cfg->ndevices; i++) {
        bus_dev_stats d = { 0 };
        bus_device_stats(a->bus, a->cfg->devices[i].name, &d);
        payload_utf8_clean(d.last_error);
        const dev_state *s = &a->states[i];
        json_array_append_new(devs, json_pack(
            "{s:s,s:s,s:I,s:i,s:f,s:f,s:I,s:I,s:I,s:s,s:I}",
            "name", a->cfg->devices[i].name,
            "state", !s->known ? "unknown" : s->up ? "up" : "down",
            "last_good_ts", (json_int_t)d.last_good_ts, "poll_ms", (int)d.poll_ms,
            "latency_p50_ms", d.p50_ms, "latency_p99_ms", d.p99_ms,
            "polls", (json_int_t)d.polls, "errors", (json_int_t)d.errors,
            "skipped", (json_int_t)d.skipped, "last_error", d.last_error,
            "last_error_ts", (json_int_t)d.last_error_ts));
    }
    return json_pack(
        "{s:s,s:s,s:I,s:o,"
        "s:{s:b,s:s,s:I,s:I,s:I,s:I,s:I,s:s,s:I},"
        "s:{s:I,s:I,s:I,s:I,s:b,s:b,s:b},"
        "s:o,s:{s:I,s:I,s:s,s:I}}",
        "version", MBGATE_VERSION, "gateway", a->base->gateway.id,
        "uptime_s", (json_int_t)((mono_ms() - a->started_mono) / 1000),
        "health", health(a, &os, &ms),
        "broker", "connected", ms.connected, "address", ms.broker, "since_ts", (json_int_t)ms.since,
        "reconnects", (json_int_t)ms.reconnects, "published", (json_int_t)os.published,
        "acked", (json_int_t)os.acked, "inflight", (json_int_t)os.inflight,
        "last_error", ms.last_error, "last_error_ts", (json_int_t)ms.last_error_ts,
        "outbox", "pending", (json_int_t)os.pending, "oldest_ts", (json_int_t)os.oldest_ts,
        "file_bytes", (json_int_t)os.file_bytes, "dropped", (json_int_t)os.dropped,
        "dropping", os.dropping, "disk_full", os.disk_full, "growing", backlog_growing(a, &os, &ms),
        "devices", devs,
        "setpoints", "ok", (json_int_t)a->sp_ok, "rejected", (json_int_t)a->sp_rejected,
        "last", a->sp_last, "last_ts", (json_int_t)a->sp_last_ts);
}

static json_t *reply_error(sp_code code, const char *detail)
{
    return json_pack("{s:b,s:s,s:s}", "ok", 0, "error", setpoint_code_name(code), "detail", detail);
}

static json_t *hook_submit(void *ctx, int client, const char *op, const json_t *req)
{
    agent *a = ctx;
    const char *dn = json_string_value(json_object_get(req, "device"));
    const cfg_device *d = dn ? config_device(a->cfg, dn) : NULL;
    if (!d) {
        /* the MQTT path's code for it too: P/D/T/set of an unknown D is unknown_tag */
        char why[CFG_NAME_MAX + 32] = "no device given";
        if (dn)
            snprintf(why, sizeof why, "unknown device %.*s", CFG_NAME_MAX, dn);
        return reply_error(SP_UNKNOWN_TAG, why);
    }
    bus_cmd *c = calloc(1, sizeof *c);
    cmd_origin *o = new_origin(client);
    if (!c || !o) {
        free(c);
        free(o);
        return reply_error(SP_TIMEOUT, "out of memory");
    }
    c->dev = d;
    c->origin = o;
    c->deadline = o->t0 + (int64_t)d->timeout_ms * (d->retries + 1);
    json_t *err = NULL;
    if (strcmp(op, "probe") == 0) {
        const char *tn = json_string_value(json_object_get(req, "table"));
        json_int_t addr = json_integer_value(json_object_get(req, "address"));
        json_int_t cnt = json_integer_value(json_object_get(req, "count"));
        c->op = CMD_PROBE;
        if (!tn || config_table_parse(tn, &c->table) < 0)
            err = reply_error(SP_BAD_PAYLOAD, "table must be coil, discrete, input or holding");
        else if (addr < 0 || cnt < 1 || cnt > BUS_PROBE_MAX || addr + cnt > 65536)
            err = reply_error(SP_BAD_PAYLOAD, "address 0..65535 and count 1..125 expected");
        c->addr = (unsigned)addr;
        c->count = (unsigned)cnt;
    } else {
        const char *tn = json_string_value(json_object_get(req, "tag"));
        c->tag = tn ? config_tag(d, tn) : NULL;
        c->op = strcmp(op, "write") == 0 ? CMD_WRITE : CMD_READ;
        if (!c->tag) {
            err = reply_error(SP_UNKNOWN_TAG, tn ? tn : "no tag given");
        } else if (c->op == CMD_WRITE) {
            /* the same validation as an MQTT setpoint */
            sp_command cmd = { 0 };
            sp_policy pol = { a->cfg->setpoints.enabled, true, 0, false, now_ms() };
            char *text = json_dumps(json_object_get(req, "value"), JSON_ENCODE_ANY);
            sp_code code = setpoint_gate(c->tag, &pol, c->detail, sizeof c->detail);
            if (code == SP_OK)
                code = text ? setpoint_parse(text, strlen(text), &cmd, c->detail, sizeof c->detail)
                            : SP_BAD_PAYLOAD;
            if (code == SP_OK)
                code = setpoint_check(c->tag, &pol, &cmd, c->detail, sizeof c->detail);
            if (code == SP_OK && !rate_ok(a, d, c->tag, c->detail, sizeof c->detail))
                code = SP_RATE_LIMITED;
            if (code != SP_OK) {
                c->code = code;
                audit(a, c, d->name, tn, text ? text : "?", "mbgate write", 0);
                err = reply_error(code, c->detail);
            }
            free(text);
            c->raw = cmd.raw;
        }
    }
    if (err) {
        free(c);
        free(o);
        return err;
    }
    bus_submit(a->bus, c);
    return NULL;
}

/* ---- events ------------------------------------------------------------- */

static void handle_events(agent *a)
{
    queue_item *it = queue_take(&a->q);
    sample *batch = NULL, **tail = &batch;
    while (it) {
        queue_item *next = it->next;
        if (it->kind == EV_SAMPLES) {
            bus_samples *e = (bus_samples *)it;
            for (sample *x = e->list; a->sp && x; x = x->next)
                sparkplug_observe(a->sp, x);
            *tail = e->list;
            while (*tail)
                tail = &(*tail)->next;
            free(e);
        } else if (it->kind == EV_STATE) {
            bus_state *e = (bus_state *)it;
            const cfg_device *d = config_device(a->cfg, e->dev);
            if (d) {
                size_t i = (size_t)(d - a->cfg->devices);
                a->states[i] = (dev_state){ true, e->up, e->ts, "" };
                snprintf(a->states[i].error, sizeof a->states[i].error, "%s", e->error);
                publish_device_state(a, i);
            }
            free(e);
        } else {
            command_done(a, (bus_cmd *)it);
        }
        it = next;
    }
    /* everything that arrived together is one transaction */
    outbox_add(a->ob, batch);
}

/* mqtt.retain: the broker keeps the last message of a topic. After an
 * outage live samples go first and the older backlog follows, so a sample
 * is retained only if it is not older than the newest one retained so far:
 * an old value never replaces a newer one at the broker. */
static bool retain_sample(agent *a, const sample *s)
{
    if (!a->base->mqtt.retain)
        return false;
    const cfg_device *d = a->tags ? config_device(a->cfg, s->dev) : NULL;
    const cfg_tag *t = d && *s->tag ? config_tag(d, s->tag) : NULL;
    if (!d || (*s->tag && !t))
        return !s->hist; /* gone in a reload: no state kept */
    tag_state *ts = &a->tags[d - a->cfg->devices][t ? (size_t)(t - d->tags) : d->ntags];
    if (s->ts < ts->retained)
        return false;
    ts->retained = s->ts;
    return true;
}

static void publish_pending(agent *a)
{
    static char topic[CFG_TEXT_MAX * 3], body[MSG_MAX];
    sample *s;
    while ((s = outbox_next(a->ob, mono_ms()))) {
        int mid = 0, len;
        if (a->sp) {
            if (sparkplug_publish(a->sp, s, &mid) < 0) {
                outbox_failed(a->ob, s);
                return;
            }
        } else if ((len = payload_sample(s, body, sizeof body)) < 0 ||
                   payload_topic(a->base->mqtt.topic_prefix, s, topic, sizeof topic) < 0 ||
                   mqtt_publish(a->mq, topic, body, len, a->base->mqtt.qos, retain_sample(a, s),
                                NULL, &mid) < 0) {
            outbox_failed(a->ob, s);
            return;
        }
        outbox_sent(a->ob, s, mid);
        if (mid < 0)
            outbox_acked(a->ob, mid); /* nothing to send (a tag removed by a reload) */
    }
}

static void on_connected(void *ctx)
{
    agent *a = ctx;
    char birth[256], sub[CFG_TEXT_MAX + 16];
    if (a->sp) {
        sparkplug_connected(a->sp);
        return;
    }
    snprintf(birth, sizeof birth, "{\"state\":\"online\",\"ts\":%lld,\"version\":\"%s\"}",
             (long long)now_ms(), MBGATE_VERSION);
    publish_simple(a, a->status_topic, birth, 1, true);
    for (size_t i = 0; i < a->cfg->ndevices; i++)
        publish_device_state(a, i);
    /* subscribed even when disabled, so that commands are answered "disabled" */
    snprintf(sub, sizeof sub, "%s/+/+/set", a->base->mqtt.topic_prefix);
    mqtt_subscribe(a->mq, sub, 1);
    outbox_connected(a->ob, true);
    a->next_status = mono_ms() + (int64_t)a->base->status.publish_interval_s * 1000;
}

static void on_will(void *ctx, const char **topic, const void **payload, int *len, bool *retain)
{
    agent *a = ctx;
    static const char offline[] = "{\"state\":\"offline\"}";
    if (a->sp) {
        *retain = false;
        sparkplug_will(a->sp, topic, payload, len);
        return;
    }
    *topic = a->status_topic;
    *payload = offline;
    *len = (int)sizeof offline - 1;
    *retain = true;
}

static void on_disconnected(void *ctx)
{
    agent *a = ctx;
    if (a->sp)
        sparkplug_disconnected(a->sp);
    else
        outbox_connected(a->ob, false);
}

static void on_acked(void *ctx, int mid) { outbox_acked(((agent *)ctx)->ob, mid); }

static void on_refused(void *ctx, int mid) { outbox_refused(((agent *)ctx)->ob, mid); }

/* ---- life cycle --------------------------------------------------------- */

static int alloc_device_state(agent *a)
{
    a->states = calloc(a->cfg->ndevices + 1, sizeof *a->states);
    a->tags = calloc(a->cfg->ndevices + 1, sizeof *a->tags);
    if (!a->states || !a->tags)
        return -1;
    for (size_t i = 0; i < a->cfg->ndevices; i++) {
        a->tags[i] = calloc(a->cfg->devices[i].ntags + 1, sizeof **a->tags);
        if (!a->tags[i])
            return -1;
    }
    return 0;
}

static void free_device_state(agent *a)
{
    if (a->tags)
        for (size_t i = 0; i < a->cfg->ndevices; i++)
            free(a->tags[i]);
    free(a->tags);
    free(a->states);
    a->tags = NULL;
    a->states = NULL;
}

/* Stop the link threads and take in what they produced. */
static void stop_bus(agent *a)
{
    bus_stop(a->bus);
    a->bus = NULL;
    handle_events(a);
}

static void reload(agent *a)
{
    char err[8192] = "";
    log_info("reloading %s", a->path);
    config *n = config_load(a->path, err, sizeof err);
    if (!n) {
        log_error("reload refused, the running configuration stays:\n%s", err);
        return;
    }
    if (strcmp(n->mqtt.topic_prefix, a->base->mqtt.topic_prefix) != 0 ||
        strcmp(n->gateway.state_dir, a->base->gateway.state_dir) != 0 ||
        strcmp(n->control.socket, a->base->control.socket) != 0 ||
        n->mqtt.nbrokers != a->base->mqtt.nbrokers ||
        strcmp(n->mqtt.brokers[0].host, a->base->mqtt.brokers[0].host) != 0 ||
        n->mqtt.brokers[0].port != a->base->mqtt.brokers[0].port)
        log_warn("reload: gateway, mqtt, buffer and control settings take effect at the next restart");
    stop_bus(a);
    for (size_t i = 0; !a->sp && i < a->cfg->ndevices; i++)
        if (!config_device(n, a->cfg->devices[i].name)) {
            /* a removed device leaves no stale retained status behind */
            char topic[CFG_TEXT_MAX * 2];
            snprintf(topic, sizeof topic, "%s/%s/status", a->base->mqtt.topic_prefix,
                     a->cfg->devices[i].name);
            publish_simple(a, topic, "", 1, true);
        }
    /* per-tag state starts afresh: the new link threads publish every tag
     * at their first poll, which is also the newest value to retain */
    free_device_state(a);
    if (a->cfg != a->base)
        config_free(a->cfg);
    a->cfg = n;
    if (a->sp)
        sparkplug_set_config(a->sp, a->cfg);
    if (alloc_device_state(a) < 0 || !(a->bus = bus_start(a->cfg, &a->q, err, sizeof err))) {
        log_error("reload: %s", *err ? err : "out of memory");
        a->stopping = true;
        return;
    }
    /* same broker session: device states follow from the new link threads */
    log_info("reloaded: %zu devices", a->cfg->ndevices);
}

static void notify(agent *a, int64_t now)
{
    if (now < a->next_notify)
        return;
    a->next_notify = now + 1000;
    outbox_stats os;
    outbox_stats_get(a->ob, &os);
    a->pending_hist[a->pending_pos++ % GROW_WINDOW_S] = os.pending;
    size_t up = 0;
    for (size_t i = 0; i < a->cfg->ndevices; i++)
        up += a->states[i].known && a->states[i].up;
    /* the watchdog is fed only while every link thread makes progress */
    bool alive = now - bus_oldest_progress(a->bus) < 60000;
    sd_notifyf(0, "%sSTATUS=%zu/%zu devices up, broker %s, %lld pending, %lld dropped",
               alive ? "WATCHDOG=1\n" : "", up, a->cfg->ndevices,
               mqtt_is_connected(a->mq) ? "connected" : "disconnected",
               (long long)os.pending, (long long)os.dropped);
}

static int open_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    /* block before any thread starts, so that only signalfd sees them */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a file size limit must give EFBIG, not death */
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void handle_signal(agent *a)
{
    struct signalfd_siginfo si;
    while (read(a->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGHUP) {
            sd_notify(0, "RELOADING=1");
            reload(a);
            sd_notify(0, "READY=1");
        } else {
            log_info("%s: shutting down", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
            a->stopping = true;
        }
    }
}

static void loop(agent *a)
{
    struct pollfd fds[3 + CONTROL_MAX_CLIENTS + 1];
    while (!a->stopping) {
        int n = 0;
        fds[n++] = (struct pollfd){ queue_fd(&a->q), POLLIN, 0 };
        fds[n++] = (struct pollfd){ a->sigfd, POLLIN, 0 };
        int mfd = mqtt_fd(a->mq), mi = -1;
        if (mfd >= 0) {
            mi = n;
            fds[n++] = (struct pollfd){ mfd, (short)(POLLIN | (mqtt_want_write(a->mq) ? POLLOUT : 0)), 0 };
        }
        int ci = n;
        if (a->ctl)
            n += control_pollfds(a->ctl, fds + n, (int)(sizeof fds / sizeof *fds) - n);
        /* Many messages in flight: wake when a quarter of them are acked,
         * not on every PUBACK (in a VM a wake-up costs more than the whole
         * publish), keeping 3/4 of the window busy; a power of two, so that
         * the socket option rarely changes. */
        size_t nfl = outbox_inflight(a->ob);
        unsigned batch = 1;
        while (a->pubacks && nfl >= 32 && batch * 2 <= nfl / 4)
            batch *= 2;
        mqtt_ack_batch(a->mq, batch);
        int timeout = mqtt_timeout(a->mq);
        if (timeout > 100)
            timeout = 100; /* outbox batches are flushed at least every 100 ms */
        if (poll(fds, (nfds_t)n, timeout) < 0 && errno != EINTR) {
            log_error("poll: %s", strerror(errno));
            break;
        }
        if (fds[1].revents)
            handle_signal(a);
        if (fds[0].revents)
            handle_events(a);
        mqtt_io(a->mq, mi >= 0 ? fds[mi].revents : 0);
        if (a->ctl)
            control_handle(a->ctl, fds + ci, n - ci);
        publish_pending(a);
        int64_t now = mono_ms();
        outbox_tick(a->ob, now);
        if (a->base->status.publish_interval_s && now >= a->next_status && mqtt_is_connected(a->mq)) {
            a->next_status = now + (int64_t)a->base->status.publish_interval_s * 1000;
            publish_status(a);
        }
        notify(a, now);
    }
}

static void shutdown_agent(agent *a)
{
    sd_notify(0, "STOPPING=1");
    if (a->bus)
        stop_bus(a);
    if (mqtt_is_connected(a->mq)) {
        /* give what is queued a moment to go out, then say goodbye */
        int64_t end = mono_ms() + 2000;
        mqtt_ack_batch(a->mq, 1);
        while (mono_ms() < end && mqtt_is_connected(a->mq)) {
            publish_pending(a);
            outbox_stats os;
            outbox_stats_get(a->ob, &os);
            if (os.inflight == 0)
                break;
            struct pollfd p = { mqtt_fd(a->mq), (short)(POLLIN | (mqtt_want_write(a->mq) ? POLLOUT : 0)), 0 };
            poll(&p, 1, 50);
            mqtt_io(a->mq, p.revents);
        }
        if (a->sp)
            sparkplug_shutdown(a->sp);
        else
            publish_simple(a, a->status_topic, "{\"state\":\"offline\"}", 1, true);
        mqtt_shutdown(a->mq, 2000);
    }
    outbox_tick(a->ob, mono_ms());
}

int agent_run(const char *path)
{
    agent a = { .path = path, .sigfd = -1 };
    char err[8192] = "";
    int rc = 1;
    /* Samples are allocated by the link threads and freed here: with an
     * arena per thread each arena keeps its own high-water mark. One arena
     * (the lock is taken a few thousand times a second) saves ~2 MB at
     * 10,000 tags. */
    mallopt(M_ARENA_MAX, 1);
    a.started_mono = mono_ms();
    a.base = a.cfg = config_load(path, err, sizeof err);
    if (!a.cfg) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    log_set_level((int[]){ LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG }[a.cfg->gateway.log_level]);
    snprintf(a.status_topic, sizeof a.status_topic, "%s/status", a.cfg->mqtt.topic_prefix);
    a.sigfd = open_signals();
    if (a.sigfd < 0 || queue_init(&a.q) < 0) {
        log_error("cannot set up signals/queue: %s", strerror(errno));
        goto out_cfg;
    }
    if (alloc_device_state(&a) < 0)
        goto out_q;
    if (!(a.ob = outbox_open(a.cfg, err, sizeof err))) {
        log_error("%s", err);
        goto out_q;
    }
    mqtt_callbacks cb = { on_will, on_connected, on_disconnected, on_acked, on_refused, on_message };
    if (!(a.mq = mqtt_new(a.cfg, &cb, &a, err, sizeof err))) {
        log_error("%s", err);
        goto out_ob;
    }
    if (a.cfg->mqtt.sparkplug && !(a.sp = sparkplug_new(a.cfg, a.mq, a.ob, err, sizeof err))) {
        log_error("%s", err);
        goto out_all;
    }
    /* Sparkplug data is QoS 0: "acked" when written, no PUBACK to batch */
    a.pubacks = !a.sp && a.cfg->mqtt.qos >= 1;
    control_hooks hooks = { hook_status, hook_submit };
    if (*a.cfg->control.socket &&
        !(a.ctl = control_open(a.cfg->control.socket, &hooks, &a, err, sizeof err)))
        log_error("%s (status, read, write and probe will not work)", err);
    if (!(a.bus = bus_start(a.cfg, &a.q, err, sizeof err))) {
        log_error("%s", err);
        goto out_all;
    }
    log_info("mbgate %s started: %zu devices, broker %s:%u, prefix %s", MBGATE_VERSION,
             a.cfg->ndevices, a.cfg->mqtt.brokers[0].host, a.cfg->mqtt.brokers[0].port,
             a.cfg->mqtt.topic_prefix);
    sd_notify(0, "READY=1");
    loop(&a);
    shutdown_agent(&a);
    rc = 0;
out_all:
    control_close(a.ctl);
    sparkplug_free(a.sp);
    mqtt_free(a.mq);
out_ob:
    outbox_close(a.ob);
out_q:
    if (a.bus)
        bus_stop(a.bus);
    for (queue_item *it = queue_take(&a.q), *n; it; it = n) {
        n = it->next;
        if (it->kind == EV_SAMPLES)
            sample_free_list(((bus_samples *)it)->list);
        free(it);
    }
    queue_destroy(&a.q);
    free_device_state(&a);
out_cfg:
    if (a.sigfd >= 0)
        close(a.sigfd);
    if (a.cfg != a.base)
        config_free(a.cfg);
    config_free(a.base);
    log_info("stopped");
    return rc;
}
