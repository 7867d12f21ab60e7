/* config.c - the libconfig loader of the configuration model (SPEC §3).
 *
 * Each section is described by a key table (name, kind, target field,
 * range). One walker checks every setting of a group against its table, so
 * unknown keys, wrong types, bad values and missing keys are reported alike
 * at every level. Checks that involve several keys run once a group's own
 * keys are in. Errors are collected rather than fatal, so one run of
 * `mbgate check` shows them all. */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#define NOMAX INT_MAX /* "no upper bound" for an integer key */

typedef struct {
    const char *file;
    char *err;
    size_t errlen, used;
    unsigned nerr;
    bool full;
    /* Scratch for keys that are not stored as they are read. */
    char host[CFG_TEXT_MAX]; /* mqtt.host/port, until the broker list is built */
    unsigned port;
    double gap_ms;           /* the current device's frame_gap_ms */
} ctx;

typedef enum {
    K_TEXT, K_UINT, K_REAL, K_BOOL, K_ENUM, /* stored at the key's field */
    K_GROUP, /* a nested group whose table targets the same object */
    K_CALL,  /* loaded by the key's function */
    K_LATER, /* loaded by the caller once the group's other keys are in */
} key_kind;

enum {
    KF_REQUIRED = 1 << 0,
    KF_NAME = 1 << 1,   /* [A-Za-z0-9_-]+ */
    KF_TOPIC = 1 << 2,  /* part of a topic: no wildcards, no trailing '/' */
    KF_LEVEL = 1 << 3,  /* one topic level: no '/', '+', '#' */
    KF_TCP = 1 << 4,    /* device keys that belong to one transport */
    KF_RTU = 1 << 5,
    KF_CTX = 1 << 6,    /* the field is in the ctx scratch, not the target */
    KF_HIDDEN = 1 << 7, /* known only to be refused: not listed as expected */
};

typedef struct keydef keydef;
struct keydef {
    const char *name;
    key_kind kind;
    unsigned flags;
    size_t off, size;           /* the target field */
    double lo, hi;              /* K_UINT/K_REAL range (none when equal);
                                 * K_TEXT: hi caps the length below size */
    const char *const *choices; /* K_ENUM: the stored value is the index */
    const keydef *keys;         /* K_GROUP */
    void (*fn)(ctx *c, const config_setting_t *s, void *obj); /* K_CALL */
};

#define FIELD(T, f) .off = offsetof(T, f), .size = sizeof(((T *)0)->f)
#define TEXT(n, T, f, fl) { .name = n, .kind = K_TEXT, .flags = fl, FIELD(T, f) }
#define UINT(n, T, f, l, h, fl) \
    { .name = n, .kind = K_UINT, .flags = fl, FIELD(T, f), .lo = l, .hi = h }
#define REAL(n, T, f, l, h, fl) \
    { .name = n, .kind = K_REAL, .flags = fl, FIELD(T, f), .lo = l, .hi = h }
#define BOOL(n, T, f, fl) { .name = n, .kind = K_BOOL, .flags = fl, FIELD(T, f) }
#define ENUM(n, T, f, ch, fl) \
    { .name = n, .kind = K_ENUM, .flags = fl, FIELD(T, f), .choices = ch }
#define GROUP(n, k, fl) { .name = n, .kind = K_GROUP, .flags = fl, .keys = k }
#define CALL(n, f, fl) { .name = n, .kind = K_CALL, .flags = fl, .fn = f }
#define LATER(n) { .name = n, .kind = K_LATER }

/* K_ENUM stores an index as int into the model's enums, or into a bool. */
_Static_assert(sizeof(cfg_table) == sizeof(int) && sizeof(cfg_sim) == sizeof(int)
               && sizeof(cfg_transport) == sizeof(int)
               && sizeof(cfg_log_level) == sizeof(int)
               && sizeof(codec_type) == sizeof(int) && sizeof(codec_order) == sizeof(int),
               "enum keys are stored as int");

/* In the order of the enums in config.h and codec.h. */
static const char *const table_names[] = { "coil", "discrete", "input", "holding", NULL };
static const char *const type_names[] = { "bool", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "float32", "float64", "string", NULL };
static const char *const order_names[] = { "ABCD", "CDAB", "BADC", "DCBA", NULL };
static const char *const sim_names[] = { "drift", "toggle", "counter", "fixed", NULL };
static const char *const log_names[] = { "error", "warning", "info", "debug", NULL };
static const char *const transport_names[] = { "tcp", "rtu", NULL };
/* Two-valued keys stored as a bool: index 1 is true. */
static const char *const protocol_names[] = { "3.1.1", "5", NULL };
static const char *const format_names[] = { "json", "sparkplug", NULL };
static const char *const layout_names[] = { "tag", "device", NULL };
static const char *const sync_names[] = { "normal", "full", NULL };

/* ---- error reporting ---- */

/* Append one line; once a line no longer fits, later ones are dropped whole
 * (only a first line longer than the whole buffer is cut). */
static void emit(ctx *c, const char *line)
{
    size_t len = strlen(line), sep = c->used ? 1 : 0;

    c->nerr++;
    if (!c->err || !c->errlen || c->full)
        return;
    if (c->used + sep + len + 1 > c->errlen) {
        c->full = true;
        if (c->used)
            return;
        len = c->errlen - 1;
    }
    if (sep)
        c->err[c->used++] = '\n';
    memcpy(c->err + c->used, line, len);
    c->used += len;
    c->err[c->used] = '\0';
}

/* libconfig's own path syntax: devices.[0].tags.[3].type */
static void path_of(const config_setting_t *s, char *buf, size_t n)
{
    const config_setting_t *p = config_setting_parent(s);
    const char *name = config_setting_name(s);
    size_t len;

    if (!p) {
        *buf = '\0';
        return;
    }
    path_of(p, buf, n);
    len = strlen(buf);
    if (name)
        snprintf(buf + len, n - len, "%s%s", len ? "." : "", name);
    else
        snprintf(buf + len, n - len, "%s[%d]", len ? "." : "", config_setting_index(s));
}

/* "FILE:LINE: path: message" at setting s (the root has no line: use 1). */
__attribute__((format(printf, 3, 4)))
static void report(ctx *c, const config_setting_t *s, const char *fmt, ...)
{
    char path[256], msg[1024], line[1400];
    const char *file = config_setting_source_file(s);
    int lineno = config_setting_source_line(s);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    path_of(s, path, sizeof path);
    snprintf(line, sizeof line, "%s:%d: %s%s%s", file ? file : c->file,
             lineno > 0 ? lineno : 1, path, *path ? ": " : "", msg);
    emit(c, line);
}

/* ---- small helpers ---- */

static config_setting_t *member(const config_setting_t *g, const char *name)
{
    return g && config_setting_is_group(g) ? config_setting_get_member(g, name) : NULL;
}

static const char *type_text(const config_setting_t *s)
{
    static const char *const names[] = { "none", "group", "integer", "integer",
        "float", "string", "bool", "array", "list" };
    int t = config_setting_type(s);

    return t >= 0 && t < (int)(sizeof names / sizeof *names) ? names[t] : "?";
}

static double number(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_FLOAT: return config_setting_get_float(s);
    case CONFIG_TYPE_BOOL: return config_setting_get_bool(s);
    default: return (double)config_setting_get_int64(s);
    }
}

static void join(const char *const *names, char *buf, size_t n)
{
    size_t len = 0;

    *buf = '\0';
    for (; *names && len < n; names++)
        len += snprintf(buf + len, n - len, "%s%s", len ? ", " : "", *names);
}

/* The expected key names of a table, for "unknown key" messages. */
static void key_list(const keydef *keys, char *buf, size_t n)
{
    size_t len = 0;

    *buf = '\0';
    for (; keys->name && len < n; keys++)
        if (!(keys->flags & KF_HIDDEN))
            len += snprintf(buf + len, n - len, "%s%s", len ? ", " : "", keys->name);
}

static void range_text(double lo, double hi, char *buf, size_t n)
{
    if (lo == hi)
        *buf = '\0';
    else if (hi >= NOMAX)
        snprintf(buf, n, " >= %g", lo);
    else
        snprintf(buf, n, " %g..%g", lo, hi);
}

/* The index of s's string among choices, or -1 (reported). */
static int enum_index(ctx *c, const config_setting_t *s, const char *const *choices)
{
    const char *v = config_setting_get_string(s);
    char list[256];

    join(choices, list, sizeof list);
    if (!v) {
        report(c, s, "wrong type %s (expected one of %s)", type_text(s), list);
        return -1;
    }
    for (int i = 0; choices[i]; i++)
        if (!strcmp(v, choices[i]))
            return i;
    report(c, s, "unknown %s \"%s\" (expected %s)", config_setting_name(s), v, list);
    return -1;
}

static bool is_name(const char *v)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";

    return *v && strspn(v, ok) == strlen(v);
}

/* ---- the generic walker ---- */

static void load_keys(ctx *c, const config_setting_t *g, const keydef *keys, void *obj,
                      unsigned scope);

static bool type_ok(const config_setting_t *s, key_kind k)
{
    int t = config_setting_type(s);

    switch (k) {
    case K_TEXT: return t == CONFIG_TYPE_STRING;
    case K_UINT: return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    case K_REAL: return config_setting_is_number(s);
    case K_BOOL: return t == CONFIG_TYPE_BOOL;
    case K_GROUP: return t == CONFIG_TYPE_GROUP;
    default: return true; /* enums, calls and later keys check their own */
    }
}

static void wrong_type(ctx *c, const config_setting_t *s, const keydef *d)
{
    static const char *const what[] = { [K_TEXT] = "a string", [K_UINT] = "an integer",
        [K_REAL] = "a number", [K_BOOL] = "true or false", [K_GROUP] = "a group { ... }" };
    char range[64];

    range_text(d->lo, d->hi, range, sizeof range);
    report(c, s, "wrong type %s (expected %s%s)", type_text(s), what[d->kind],
           d->kind == K_UINT || d->kind == K_REAL ? range : "");
}

static void load_text(ctx *c, const config_setting_t *s, const keydef *d, char *p)
{
    const char *v = config_setting_get_string(s);
    size_t len = strlen(v), max = (d->hi ? (size_t)d->hi : d->size) - 1;

    if (!len)
        report(c, s, "empty (expected a non-empty string)");
    else if (len > max)
        report(c, s, "too long, %zu characters (expected at most %zu)", len, max);
    else if ((d->flags & KF_NAME) && !is_name(v))
        report(c, s, "invalid name \"%s\" (expected letters, digits, '_' and '-' only)", v);
    else if ((d->flags & KF_TOPIC) && (strpbrk(v, "+#") || v[len - 1] == '/'))
        report(c, s, "invalid topic \"%s\" (expected no '+', '#' or trailing '/')", v);
    else if ((d->flags & KF_LEVEL) && strpbrk(v, "/+#"))
        report(c, s, "invalid id \"%s\" (expected no '/', '+' or '#')", v);
    else
        memcpy(p, v, len + 1);
}

static void load_value(ctx *c, const config_setting_t *s, const keydef *d, void *obj)
{
    char *p = (char *)(d->flags & KF_CTX ? (void *)c : obj) + d->off;
    char range[64];
    double v;
    int i;

    if (!type_ok(s, d->kind)) {
        wrong_type(c, s, d);
        return;
    }
    switch (d->kind) {
    case K_TEXT:
        load_text(c, s, d, p);
        break;
    case K_UINT:
    case K_REAL:
        v = number(s);
        if (!isfinite(v) || (d->lo != d->hi && (v < d->lo || v > d->hi))) {
            range_text(d->lo, d->hi, range, sizeof range);
            report(c, s, "%.15g out of range (expected%s)", v, *range ? range : " a finite number");
        } else if (d->kind == K_UINT)
            *(unsigned *)p = (unsigned)v; /* also the model's int fields: in range */
        else
            *(double *)p = v;
        break;
    case K_BOOL:
        *(bool *)p = config_setting_get_bool(s);
        break;
    case K_ENUM:
        if ((i = enum_index(c, s, d->choices)) < 0)
            break;
        if (d->size == sizeof(bool))
            *(bool *)p = i;
        else
            *(int *)p = i;
        break;
    case K_GROUP:
        load_keys(c, s, d->keys, obj, 0);
        break;
    case K_CALL:
        d->fn(c, s, obj);
        break;
    case K_LATER:
        break;
    }
}

/* Load group g's settings into obj per keys. scope (KF_TCP/KF_RTU, or 0
 * when unknown) refuses the other transport's keys. */
static void load_keys(ctx *c, const config_setting_t *g, const keydef *keys, void *obj,
                      unsigned scope)
{
    const unsigned tr = KF_TCP | KF_RTU;
    char list[512];

    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *s = config_setting_get_elem(g, i);
        const keydef *d = keys;

        while (d->name && strcmp(d->name, config_setting_name(s)))
            d++;
        if (!d->name) {
            key_list(keys, list, sizeof list);
            report(c, s, "unknown key (expected one of %s)", list);
        } else if (scope && (d->flags & tr) && !(d->flags & scope)) {
            report(c, s, "not applicable to transport \"%s\" (expected only with transport \"%s\")",
                   scope == KF_TCP ? "tcp" : "rtu", scope == KF_TCP ? "rtu" : "tcp");
        } else {
            load_value(c, s, d, obj);
        }
    }
    for (const keydef *d = keys; d->name; d++)
        if ((d->flags & KF_REQUIRED) && !member(g, d->name))
            report(c, g, "missing required key \"%s\"", d->name);
}

/* ---- mqtt ---- */

static void reject_password(ctx *c, const config_setting_t *s, void *obj)
{
    (void)obj;
    report(c, s, "not supported (use password_file)");
}

/* "host", "host:port", "[v6]:port" or a bare IPv6 address; port 0 = default. */
static void parse_broker(ctx *c, const config_setting_t *s, cfg_broker *b)
{
    const char *v = config_setting_get_string(s), *host, *end, *port = NULL;
    char *stop;
    unsigned long n = 0;

    if (!v) {
        report(c, s, "wrong type %s (expected a string \"host:port\")", type_text(s));
        return;
    }
    host = v;
    if (*v == '[') {
        host = v + 1;
        end = strchr(host, ']');
        if (end && end[1] == ':')
            port = end + 2;
        else if (end && end[1])
            end = NULL;
    } else if ((end = strrchr(v, ':')) && strchr(v, ':') == end) {
        port = end + 1;
    } else {
        end = v + strlen(v);
    }
    if (port) {
        errno = 0;
        n = strtoul(port, &stop, 10);
        if (*port < '0' || *port > '9' || *stop || errno || n < 1 || n > 65535)
            end = NULL;
    }
    if (!end || end == host || (size_t)(end - host) >= sizeof b->host) {
        report(c, s, "invalid broker \"%s\" (expected \"host:port\" with port 1..65535)", v);
        return;
    }
    memcpy(b->host, host, end - host);
    b->port = (unsigned)n;
}

static void load_brokers(ctx *c, const config_setting_t *s, void *obj)
{
    config *cfg = obj;
    int n = config_setting_length(s);

    if (!config_setting_is_list(s) && !config_setting_is_array(s)) {
        report(c, s, "wrong type %s (expected a list of \"host:port\" strings)", type_text(s));
        return;
    }
    if (!n) {
        report(c, s, "empty (expected at least one \"host:port\")");
        return;
    }
    if (!(cfg->mqtt.brokers = calloc(n, sizeof *cfg->mqtt.brokers))) {
        report(c, s, "out of memory");
        return;
    }
    cfg->mqtt.nbrokers = n;
    for (int i = 0; i < n; i++)
        parse_broker(c, config_setting_get_elem(s, i), &cfg->mqtt.brokers[i]);
}

/* Cross-key checks and defaults of the mqtt section. */
static void check_mqtt(ctx *c, const config_setting_t *root, config *cfg)
{
    const config_setting_t *mq = member(root, "mqtt"), *tls = member(mq, "tls"), *m;
    const char *cert = cfg->mqtt.tls.cert_file, *key = cfg->mqtt.tls.key_file;

    cfg->mqtt.tls.enabled = tls != NULL;
    if ((m = member(mq, "brokers")) && (member(mq, "host") || member(mq, "port")))
        report(c, m, "not applicable with mqtt.host/port (expected either brokers or host and port)");
    if (!cfg->mqtt.brokers) {
        if (!(cfg->mqtt.brokers = calloc(1, sizeof *cfg->mqtt.brokers))) {
            report(c, root, "out of memory");
            return;
        }
        cfg->mqtt.nbrokers = 1;
        memcpy(cfg->mqtt.brokers->host, c->host, sizeof c->host);
        cfg->mqtt.brokers->port = c->port;
    }
    for (size_t i = 0; i < cfg->mqtt.nbrokers; i++)
        if (!cfg->mqtt.brokers[i].port)
            cfg->mqtt.brokers[i].port = tls ? 8883 : 1883;
    if (!*cert != !*key)
        report(c, member(tls, *cert ? "cert_file" : "key_file"),
               "%s without %s (expected both or neither)",
               *cert ? "cert_file" : "key_file", *cert ? "key_file" : "cert_file");
    if (cfg->mqtt.sparkplug && !*cfg->mqtt.sparkplug_cfg.group_id)
        report(c, member(mq, "format"), "\"sparkplug\" needs mqtt.sparkplug.group_id "
               "(expected sparkplug = { group_id = \"...\"; })");
    if (cfg->mqtt.sparkplug && cfg->mqtt.layout_device)
        report(c, member(mq, "layout"), "\"device\" not applicable with format \"sparkplug\" "
               "(expected layout only with format \"json\")");
    if (!*cfg->mqtt.client_id)
        snprintf(cfg->mqtt.client_id, sizeof cfg->mqtt.client_id, "mbgate-%s", cfg->gateway.id);
    if (!*cfg->mqtt.topic_prefix)
        snprintf(cfg->mqtt.topic_prefix, sizeof cfg->mqtt.topic_prefix, "mbgate/%s",
                 cfg->gateway.id);
    if (!*cfg->mqtt.sparkplug_cfg.edge_node_id)
        snprintf(cfg->mqtt.sparkplug_cfg.edge_node_id, sizeof cfg->mqtt.sparkplug_cfg.edge_node_id,
                 "%s", cfg->gateway.id);
}

/* ---- tags ---- */

static bool is_bit_tag(const cfg_tag *t)
{
    return t->type == CT_BOOL && t->bit >= 0;
}

/* Different types over shared registers; bit-in-register tags alias
 * anything (a status word next to its alarm bits is common). */
static bool conflicts(const cfg_tag *a, const cfg_tag *b)
{
    return a->count && b->count && a->table == b->table && a->type != b->type
           && !is_bit_tag(a) && !is_bit_tag(b)
           && a->address < b->address + b->count && b->address < a->address + a->count;
}

static void span(const cfg_tag *t, char *buf, size_t n)
{
    if (t->count > 1)
        snprintf(buf, n, "%s %u..%u (%s)", table_names[t->table], t->address,
                 t->address + t->count - 1, type_names[t->type]);
    else
        snprintf(buf, n, "%s %u (%s)", table_names[t->table], t->address, type_names[t->type]);
}

/* The simulator's initial value must suit the tag's type. */
static void load_sim_value(ctx *c, const config_setting_t *s, cfg_tag *t)
{
    const char *v = config_setting_get_string(s);
    bool ok_bool = config_setting_type(s) == CONFIG_TYPE_BOOL && t->type == CT_BOOL;
    bool ok_num = config_setting_is_number(s) && isfinite(number(s));

    if (t->type == CT_STRING ? !v : !ok_num && !ok_bool) {
        report(c, s, "wrong type %s (expected %s)", type_text(s),
               t->type == CT_STRING ? "a string"
               : t->type == CT_BOOL ? "true, false or a number" : "a number");
        return;
    }
    if (v && strlen(v) > t->length) {
        report(c, s, "too long, %zu characters (expected at most length %u)", strlen(v), t->length);
        return;
    }
    if (v) {
        free(t->sim_text);
        t->sim_text = strdup(v); /* NULL on out-of-memory: the simulator then uses "" */
    } else
        t->sim_value = number(s);
    t->has_sim_value = true;
}

static void check_sim(ctx *c, const config_setting_t *ts, cfg_tag *t)
{
    const config_setting_t *m = member(ts, "sim");
    bool isint = t->type >= CT_INT16 && t->type <= CT_UINT64;
    bool isnum = isint || t->type == CT_FLOAT32 || t->type == CT_FLOAT64;

    if (!m)
        t->sim = t->type == CT_BOOL ? SIM_TOGGLE : t->type == CT_STRING ? SIM_FIXED : SIM_DRIFT;
    else if ((t->sim == SIM_DRIFT && !isnum) || (t->sim == SIM_TOGGLE && t->type != CT_BOOL)
             || (t->sim == SIM_COUNTER && !isint))
        report(c, m, "\"%s\" not applicable to type %s (expected drift for numbers, "
               "toggle for bool, counter for integers, fixed for any type)",
               sim_names[t->sim], type_names[t->type]);
    if ((m = member(ts, "sim_value")))
        load_sim_value(c, m, t);
}

/* Checks of one tag that need its other keys and its device's. */
static void check_tag(ctx *c, const config_setting_t *ts, const cfg_device *d, cfg_tag *t)
{
    static const char *const arithmetic[] = { "scale", "offset", "min", "max", NULL };
    const char *type = type_names[t->type], *table = table_names[t->table];
    bool bits = config_table_is_bits(t->table);
    const config_setting_t *m;
    unsigned before = c->nerr, count;

    t->has_min = member(ts, "min");
    t->has_max = member(ts, "max");
    t->has_deadband = member(ts, "deadband");
    if (!strcmp(t->name, "status"))
        report(c, member(ts, "name"), "reserved name \"status\" (expected another name: "
               "P/D/status is the device's status topic)");
    if (bits && t->type != CT_BOOL)
        report(c, member(ts, "type"), "type %s on table %s (expected bool)", type, table);
    if ((m = member(ts, "bit")) && (bits || t->type != CT_BOOL))
        report(c, m, "not applicable to %s %s (expected bit only with type bool on holding or input)",
               bits ? "table" : "type", bits ? table : type);
    if (t->writable && !config_table_is_writable(t->table))
        report(c, member(ts, "writable"), "table %s is read-only "
               "(expected writable only on coil or holding)", table);
    if ((m = member(ts, "length")) && t->type != CT_STRING)
        report(c, m, "not applicable to type %s (expected length only with type string)", type);
    else if (!m && t->type == CT_STRING)
        report(c, ts, "missing required key \"length\" (for type string)");
    for (const char *const *k = arithmetic; *k; k++)
        if ((t->type == CT_BOOL || t->type == CT_STRING) && (m = member(ts, *k)))
            report(c, m, "not applicable to type %s (expected a numeric type)", type);
    if ((m = member(ts, "scale")) && t->scale == 0)
        report(c, m, "0 out of range (expected a non-zero number)");
    if (t->has_min && t->has_max && t->min > t->max)
        report(c, member(ts, "min"), "min %g > max %g (expected min <= max)", t->min, t->max);
    check_sim(c, ts, t);
    if (c->nerr != before)
        return;
    count = bits ? 1 : codec_regs(t->type, t->length);
    if (t->address + count > 65536)
        report(c, member(ts, "address"), "%s %u + %u registers ends past 65535 "
               "(expected address + size <= 65536)", table, t->address, count);
    else if (!bits && count > d->max_read_registers)
        report(c, ts, "spans %u registers, more than max_read_registers %u "
               "(expected a tag that one read request can hold)", count, d->max_read_registers);
    if (c->nerr != before)
        return;
    t->count = count; /* non-zero only for a valid tag: cross-tag checks skip the rest */
    if (!member(ts, "byte_order"))
        t->order = d->order;
    if (!t->poll_ms)
        t->poll_ms = d->poll_ms;
}

static const keydef tag_keys[] = {
    TEXT("name", cfg_tag, name, KF_REQUIRED | KF_NAME),
    ENUM("table", cfg_tag, table, table_names, KF_REQUIRED),
    UINT("address", cfg_tag, address, 0, 65535, KF_REQUIRED),
    ENUM("type", cfg_tag, type, type_names, KF_REQUIRED),
    UINT("bit", cfg_tag, bit, 0, 15, 0),
    UINT("length", cfg_tag, length, 1, CODEC_STR_MAX, 0),
    REAL("scale", cfg_tag, scale, 0, 0, 0),
    REAL("offset", cfg_tag, offset, 0, 0, 0),
    REAL("min", cfg_tag, min, 0, 0, 0),
    REAL("max", cfg_tag, max, 0, 0, 0),
    REAL("deadband", cfg_tag, deadband, 0, INFINITY, 0),
    UINT("heartbeat_s", cfg_tag, heartbeat_s, 0, NOMAX, 0),
    UINT("poll_ms", cfg_tag, poll_ms, 10, NOMAX, 0),
    BOOL("writable", cfg_tag, writable, 0),
    BOOL("verify", cfg_tag, verify, 0),
    TEXT("unit", cfg_tag, unit, 0),
    ENUM("sim", cfg_tag, sim, sim_names, 0),
    LATER("sim_value"),
    ENUM("byte_order", cfg_tag, order, order_names, 0),
    { 0 }
};

static void load_tag(ctx *c, const config_setting_t *ts, const cfg_device *d, cfg_tag *t)
{
    unsigned before = c->nerr;

    *t = (cfg_tag){ .bit = -1, .scale = 1, .verify = true, .line = config_setting_source_line(ts) };
    if (!config_setting_is_group(ts)) {
        report(c, ts, "wrong type %s (expected a group { name = ...; })", type_text(ts));
        return;
    }
    load_keys(c, ts, tag_keys, t, 0);
    if (c->nerr == before)
        check_tag(c, ts, d, t);
}

static void check_tags(ctx *c, const config_setting_t *list, const cfg_device *d)
{
    char a[96], b[96];

    for (size_t i = 1; i < d->ntags; i++) {
        const config_setting_t *ts = config_setting_get_elem(list, i);
        const cfg_tag *t = &d->tags[i];

        for (size_t j = 0; j < i; j++) {
            const cfg_tag *o = &d->tags[j];

            if (*t->name && !strcmp(t->name, o->name)) {
                report(c, member(ts, "name"), "duplicate tag name \"%s\" "
                       "(expected unique names in a device; first at line %d)", t->name, o->line);
            } else if (conflicts(t, o)) {
                span(t, a, sizeof a);
                span(o, b, sizeof b);
                report(c, member(ts, "address"), "%s overlaps tag \"%s\" at %s "
                       "(expected only same-type aliases)", a, o->name, b);
            }
        }
    }
}

static void load_tags(ctx *c, const config_setting_t *s, cfg_device *d)
{
    int n = config_setting_length(s);

    if (!config_setting_is_list(s)) {
        report(c, s, "wrong type %s (expected a list ( { tag }, ... ))", type_text(s));
        return;
    }
    if (n && !(d->tags = calloc(n, sizeof *d->tags))) {
        report(c, s, "out of memory");
        return;
    }
    d->ntags = n;
    for (int i = 0; i < n; i++)
        load_tag(c, config_setting_get_elem(s, i), d, &d->tags[i]);
    check_tags(c, s, d);
}

/* ---- devices ---- */

static void load_parity(ctx *c, const config_setting_t *s, void *obj)
{
    static const char *const names[] = { "none", "even", "odd", NULL };
    int i = enum_index(c, s, names);

    if (i >= 0)
        ((cfg_device *)obj)->parity = "NEO"[i];
}

static const keydef device_keys[] = {
    TEXT("name", cfg_device, name, KF_REQUIRED | KF_NAME),
    ENUM("transport", cfg_device, transport, transport_names, 0),
    TEXT("host", cfg_device, host, KF_TCP),
    UINT("port", cfg_device, port, 1, 65535, KF_TCP),
    TEXT("serial", cfg_device, serial, KF_RTU),
    UINT("baud", cfg_device, baud, 1, NOMAX, KF_RTU),
    CALL("parity", load_parity, KF_RTU),
    UINT("data_bits", cfg_device, data_bits, 7, 8, KF_RTU),
    UINT("stop_bits", cfg_device, stop_bits, 1, 2, KF_RTU),
    BOOL("rs485", cfg_device, rs485, KF_RTU),
    REAL("frame_gap_ms", ctx, gap_ms, 0, 1000, KF_RTU | KF_CTX),
    UINT("unit_id", cfg_device, unit_id, 0, 255, 0),
    UINT("poll_ms", cfg_device, poll_ms, 10, NOMAX, 0),
    UINT("timeout_ms", cfg_device, timeout_ms, 10, NOMAX, 0),
    UINT("retries", cfg_device, retries, 0, 10, 0),
    ENUM("byte_order", cfg_device, order, order_names, 0),
    UINT("max_read_registers", cfg_device, max_read_registers, 1, 125, 0),
    UINT("max_read_bits", cfg_device, max_read_bits, 1, 2000, 0),
    UINT("max_gap", cfg_device, max_gap, 0, 125, 0),
    BOOL("write_multiple", cfg_device, write_multiple, 0),
    LATER("tags"),
    { 0 }
};

/* Modbus RTU inter-frame gap: 3.5 character times, at least 1750 us above
 * 19200 baud (where the spec fixes it). */
static unsigned default_gap_us(const cfg_device *d)
{
    unsigned bits = 1 + d->data_bits + (d->parity != 'N') + d->stop_bits;
    unsigned us = (unsigned)((35ull * bits * 100000 + d->baud - 1) / d->baud);

    return d->baud > 19200 && us < 1750 ? 1750 : us;
}

/* scope: the device's transport as KF_TCP/KF_RTU, 0 when it is invalid. */
static unsigned transport_scope(const config_setting_t *e)
{
    const config_setting_t *m = member(e, "transport");
    const char *tr = m ? config_setting_get_string(m) : "tcp";

    return !tr ? 0 : !strcmp(tr, "tcp") ? KF_TCP : !strcmp(tr, "rtu") ? KF_RTU : 0;
}

static void load_device(ctx *c, const config_setting_t *e, cfg_device *d)
{
    const config_setting_t *m;
    unsigned scope = transport_scope(e);

    *d = (cfg_device){ .port = 502, .baud = 19200, .parity = 'N', .data_bits = 8,
                       .stop_bits = 1, .unit_id = 1, .poll_ms = 1000, .timeout_ms = 1000,
                       .retries = 1, .order = CO_ABCD, .max_read_registers = 125,
                       .max_read_bits = 2000, .max_gap = 16,
                       .line = config_setting_source_line(e) };
    if (!config_setting_is_group(e)) {
        report(c, e, "wrong type %s (expected a group { name = ...; })", type_text(e));
        return;
    }
    load_keys(c, e, device_keys, d, scope);
    if (!strcmp(d->name, "status"))
        report(c, member(e, "name"), "reserved name \"status\" (expected another name: "
               "P/status is the agent's status topic)");
    if (scope == KF_TCP && !member(e, "host"))
        report(c, e, "missing required key \"host\" (for transport \"tcp\")");
    if (scope == KF_RTU && !member(e, "serial"))
        report(c, e, "missing required key \"serial\" (for transport \"rtu\")");
    /* TCP gateways often want 0 or 255; on a serial bus 0 is broadcast */
    if (scope == KF_RTU && (m = member(e, "unit_id")) && (!d->unit_id || d->unit_id > 247))
        report(c, m, "%u out of range for transport \"rtu\" (expected 1..247)", d->unit_id);
    if (scope == KF_RTU)
        d->frame_gap_us = member(e, "frame_gap_ms") ? (unsigned)lround(c->gap_ms * 1000)
                                                   : default_gap_us(d);
    if ((m = member(e, "tags")))
        load_tags(c, m, d);
}

/* Devices on one serial port share one link, so they must agree on it. */
static bool same_serial(const cfg_device *a, const cfg_device *b)
{
    return a->baud == b->baud && a->parity == b->parity && a->data_bits == b->data_bits
           && a->stop_bits == b->stop_bits && a->rs485 == b->rs485
           && a->frame_gap_us == b->frame_gap_us;
}

static void check_devices(ctx *c, const config_setting_t *list, const config *cfg)
{
    char ka[CFG_PATH_MAX + 8], kb[CFG_PATH_MAX + 8];

    for (size_t i = 1; i < cfg->ndevices; i++) {
        const config_setting_t *e = config_setting_get_elem(list, i);
        const cfg_device *d = &cfg->devices[i];

        config_link_key(d, ka, sizeof ka);
        for (size_t j = 0; j < i; j++) {
            const cfg_device *o = &cfg->devices[j];

            config_link_key(o, kb, sizeof kb);
            if (*d->name && !strcmp(d->name, o->name))
                report(c, member(e, "name"), "duplicate device name \"%s\" "
                       "(expected unique names; first at line %d)", d->name, o->line);
            else if (d->transport == TRANSPORT_RTU && !strcmp(ka, kb) && !same_serial(d, o))
                report(c, e, "serial settings differ from device \"%s\" on %s (expected the "
                       "same baud, parity, data_bits, stop_bits, rs485, frame_gap_ms)",
                       o->name, d->serial);
        }
    }
}

static void load_devices(ctx *c, const config_setting_t *s, void *obj)
{
    config *cfg = obj;
    int n = config_setting_length(s);

    if (!config_setting_is_list(s)) {
        report(c, s, "wrong type %s (expected a list ( { device }, ... ))", type_text(s));
        return;
    }
    if (!n) {
        report(c, s, "empty (expected at least one device)");
        return;
    }
    if (!(cfg->devices = calloc(n, sizeof *cfg->devices))) {
        report(c, s, "out of memory");
        return;
    }
    cfg->ndevices = n;
    for (int i = 0; i < n; i++)
        load_device(c, config_setting_get_elem(s, i), &cfg->devices[i]);
    check_devices(c, s, cfg);
}

/* ---- the top level ---- */

static const keydef gateway_keys[] = {
    TEXT("id", config, gateway.id, KF_REQUIRED | KF_NAME),
    TEXT("state_dir", config, gateway.state_dir, 0),
    ENUM("log_level", config, gateway.log_level, log_names, 0),
    { 0 }
};

static const keydef tls_keys[] = {
    TEXT("ca_file", config, mqtt.tls.ca_file, 0),
    TEXT("ca_path", config, mqtt.tls.ca_path, 0),
    TEXT("cert_file", config, mqtt.tls.cert_file, 0),
    TEXT("key_file", config, mqtt.tls.key_file, 0),
    BOOL("verify_hostname", config, mqtt.tls.verify_hostname, 0),
    BOOL("insecure", config, mqtt.tls.insecure, 0),
    { 0 }
};

static const keydef sparkplug_keys[] = {
    TEXT("group_id", config, mqtt.sparkplug_cfg.group_id, KF_LEVEL),
    TEXT("edge_node_id", config, mqtt.sparkplug_cfg.edge_node_id, KF_LEVEL),
    TEXT("primary_host_id", config, mqtt.sparkplug_cfg.primary_host_id, KF_LEVEL),
    { 0 }
};

static const keydef mqtt_keys[] = {
    TEXT("host", ctx, host, KF_CTX),
    UINT("port", ctx, port, 1, 65535, KF_CTX),
    CALL("brokers", load_brokers, 0),
    TEXT("client_id", config, mqtt.client_id, 0),
    TEXT("username", config, mqtt.username, 0),
    TEXT("password_file", config, mqtt.password_file, 0),
    CALL("password", reject_password, KF_HIDDEN),
    ENUM("protocol", config, mqtt.v5, protocol_names, 0),
    UINT("keepalive", config, mqtt.keepalive, 5, 65535, 0),
    UINT("qos", config, mqtt.qos, 0, 2, 0),
    BOOL("retain", config, mqtt.retain, 0),
    TEXT("topic_prefix", config, mqtt.topic_prefix, KF_TOPIC),
    ENUM("format", config, mqtt.sparkplug, format_names, 0),
    ENUM("layout", config, mqtt.layout_device, layout_names, 0),
    UINT("max_inflight", config, mqtt.max_inflight, 1, 65535, 0),
    GROUP("tls", tls_keys, 0),
    GROUP("sparkplug", sparkplug_keys, 0),
    { 0 }
};

static const keydef buffer_keys[] = {
    UINT("max_mb", config, buffer.max_mb, 1, NOMAX, 0),
    UINT("max_age_s", config, buffer.max_age_s, 0, NOMAX, 0),
    ENUM("sync", config, buffer.sync_full, sync_names, 0),
    UINT("replay_rate", config, buffer.replay_rate, 0, NOMAX, 0),
    { 0 }
};

static const keydef setpoint_keys[] = {
    BOOL("enabled", config, setpoints.enabled, 0),
    UINT("max_age_s", config, setpoints.max_age_s, 1, NOMAX, 0),
    BOOL("accept_retained", config, setpoints.accept_retained, 0),
    UINT("max_rate", config, setpoints.max_rate, 1, NOMAX, 0),
    { 0 }
};

static const keydef control_keys[] = {
    /* bind() needs the path to fit a sockaddr_un */
    { .name = "socket", .kind = K_TEXT, FIELD(config, control.socket),
      .hi = sizeof(((struct sockaddr_un *)0)->sun_path) },
    { 0 }
};

static const keydef status_keys[] = {
    UINT("publish_interval_s", config, status.publish_interval_s, 1, NOMAX, 0),
    { 0 }
};

static const keydef root_keys[] = {
    GROUP("gateway", gateway_keys, KF_REQUIRED),
    GROUP("mqtt", mqtt_keys, 0),
    GROUP("buffer", buffer_keys, 0),
    GROUP("setpoints", setpoint_keys, 0),
    GROUP("control", control_keys, 0),
    GROUP("status", status_keys, 0),
    CALL("devices", load_devices, KF_REQUIRED),
    { 0 }
};

static void set_defaults(config *cfg, const char *path)
{
    snprintf(cfg->path, sizeof cfg->path, "%s", path);
    strcpy(cfg->gateway.state_dir, "/var/lib/mbgate");
    cfg->gateway.log_level = LOG_INFO_L;
    cfg->mqtt.keepalive = 30;
    cfg->mqtt.qos = 1;
    cfg->mqtt.max_inflight = 100;
    cfg->mqtt.tls.verify_hostname = true;
    cfg->buffer.max_mb = 256;
    cfg->setpoints.enabled = true;
    cfg->setpoints.max_age_s = 30;
    cfg->setpoints.max_rate = 10;
    strcpy(cfg->control.socket, "/run/mbgate/mbgate.sock");
    cfg->status.publish_interval_s = 30;
}

/* libconfig reports a missing file or a directory only as "file I/O error". */
static bool readable(ctx *c)
{
    char line[CFG_PATH_MAX + 64];
    struct stat st;
    FILE *f = fopen(c->file, "r");
    int e = !f ? errno : fstat(fileno(f), &st) ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;

    if (f)
        fclose(f);
    if (e) {
        snprintf(line, sizeof line, "%s: cannot read: %s", c->file, strerror(e));
        emit(c, line);
    }
    return !e;
}

config *config_load(const char *path, char *err, size_t errlen)
{
    ctx c = { .file = path, .err = err, .errlen = errlen, .host = "localhost" };
    char line[CFG_PATH_MAX + 256];
    config *cfg = NULL;
    config_t lc;

    if (err && errlen)
        *err = '\0';
    if (!readable(&c))
        return NULL;
    config_init(&lc);
    if (!config_read_file(&lc, path)) {
        snprintf(line, sizeof line, "%s:%d: %s",
                 config_error_file(&lc) ? config_error_file(&lc) : path,
                 config_error_line(&lc) > 0 ? config_error_line(&lc) : 1,
                 config_error_text(&lc));
        emit(&c, line);
        goto fail;
    }
    if (!(cfg = calloc(1, sizeof *cfg))) {
        emit(&c, "out of memory");
        goto fail;
    }
    set_defaults(cfg, path);
    load_keys(&c, config_root_setting(&lc), root_keys, cfg, 0);
    check_mqtt(&c, config_root_setting(&lc), cfg);
    if (c.nerr)
        goto fail;
    config_destroy(&lc);
    return cfg;
fail:
    config_destroy(&lc);
    config_free(cfg);
    return NULL;
}

void config_free(config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->ndevices; i++) {
        for (size_t j = 0; cfg->devices[i].tags && j < cfg->devices[i].ntags; j++)
            free(cfg->devices[i].tags[j].sim_text);
        free(cfg->devices[i].tags);
    }
    free(cfg->devices);
    free(cfg->mqtt.brokers);
    free(cfg);
}

/* ---- lookups and names ---- */

const cfg_device *config_device(const config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->ndevices; i++)
        if (!strcmp(cfg->devices[i].name, name))
            return &cfg->devices[i];
    return NULL;
}

const cfg_tag *config_tag(const cfg_device *dev, const char *name)
{
    for (size_t i = 0; i < dev->ntags; i++)
        if (!strcmp(dev->tags[i].name, name))
            return &dev->tags[i];
    return NULL;
}

const char *config_table_name(cfg_table t)
{
    return t <= TABLE_HOLDING ? table_names[t] : "?";
}

int config_table_parse(const char *name, cfg_table *out)
{
    for (int i = 0; table_names[i]; i++)
        if (!strcmp(name, table_names[i])) {
            *out = (cfg_table)i;
            return 0;
        }
    return -1;
}

bool config_table_is_bits(cfg_table t)
{
    return t == TABLE_COIL || t == TABLE_DISCRETE;
}

bool config_table_is_writable(cfg_table t)
{
    return t == TABLE_COIL || t == TABLE_HOLDING;
}

void config_modicon(cfg_table t, unsigned address, char *buf, size_t n)
{
    /* the classic five digits (40101) while they suffice, else six (465536) */
    char prefix = "0134"[t <= TABLE_HOLDING ? t : 0];
    if (address + 1 <= 9999)
        snprintf(buf, n, "%c%04u", prefix, address + 1);
    else
        snprintf(buf, n, "%c%05u", prefix, address + 1);
}

void config_link_key(const cfg_device *dev, char *buf, size_t n)
{
    if (dev->transport == TRANSPORT_RTU)
        snprintf(buf, n, "rtu:%s", dev->serial);
    else
        snprintf(buf, n, "tcp:%s:%u", dev->host, dev->port);
}
