/* spb.c - Sparkplug B payload encoding and command decoding. */
#include "spb.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparkplug_b.pb-c.h"

typedef Org__Eclipse__Tahu__Protobuf__Payload Payload;
typedef Org__Eclipse__Tahu__Protobuf__Payload__Metric Metric;
typedef Org__Eclipse__Tahu__Protobuf__Payload__PropertySet PropertySet;
typedef Org__Eclipse__Tahu__Protobuf__Payload__PropertyValue PropertyValue;

#define DT(x) ((int)ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__##x)
#define MV(x) ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_##x

/* spb.h spells the datatypes without the generated header; keep them equal. */
_Static_assert(SPB_DT_INT8 == DT(Int8) && SPB_DT_INT16 == DT(Int16) &&
               SPB_DT_INT32 == DT(Int32) && SPB_DT_INT64 == DT(Int64) &&
               SPB_DT_UINT8 == DT(UInt8) && SPB_DT_UINT16 == DT(UInt16) &&
               SPB_DT_UINT32 == DT(UInt32) && SPB_DT_UINT64 == DT(UInt64) &&
               SPB_DT_FLOAT == DT(Float) && SPB_DT_DOUBLE == DT(Double) &&
               SPB_DT_BOOLEAN == DT(Boolean) && SPB_DT_STRING == DT(String) &&
               SPB_DT_DATETIME == DT(DateTime) && SPB_DT_TEXT == DT(Text),
               "spb.h DataType values");

uint32_t spb_datatype(codec_type t)
{
    switch (t) {
    case CT_BOOL:    return SPB_DT_BOOLEAN;
    case CT_INT16:   return SPB_DT_INT16;
    case CT_UINT16:  return SPB_DT_UINT16;
    case CT_INT32:   return SPB_DT_INT32;
    case CT_UINT32:  return SPB_DT_UINT32;
    case CT_INT64:   return SPB_DT_INT64;
    case CT_UINT64:  return SPB_DT_UINT64;
    case CT_FLOAT32: return SPB_DT_FLOAT;
    case CT_FLOAT64: return SPB_DT_DOUBLE;
    case CT_STRING:  return SPB_DT_STRING;
    }
    return SPB_DT_UNKNOWN;
}

/* Width and signedness of the integer datatypes; false for the others. */
static bool int_type(uint32_t dt, unsigned *bits, bool *is_signed)
{
    static const unsigned width[] = { 8, 16, 32, 64 };
    if (dt >= SPB_DT_INT8 && dt <= SPB_DT_UINT64) {
        *bits = width[(dt - SPB_DT_INT8) % 4];
        *is_signed = dt <= SPB_DT_INT64;
        return true;
    }
    return false;
}

/* The value of v as the bits of an integer datatype, if it is in range. */
static int int_bits(const codec_value *v, unsigned bits, bool is_signed,
                    uint64_t *out)
{
    uint64_t max = is_signed ? (UINT64_MAX >> (65 - bits))
                             : (UINT64_MAX >> (64 - bits));
    if (v->kind == CV_UINT) {
        if (v->u > max)
            return -1;
        *out = v->u;
        return 0;
    }
    if (v->kind != CV_INT)
        return -1;
    if (is_signed ? (v->i < -(int64_t)max - 1 || v->i > (int64_t)max)
                  : (v->i < 0 || (uint64_t)v->i > max))
        return -1;
    *out = (uint64_t)v->i; /* two's complement; int_value keeps the low 32 */
    return 0;
}

static int set_value(Metric *pm, uint32_t dt, const codec_value *v)
{
    unsigned bits;
    bool is_signed;
    uint64_t u;

    if (int_type(dt, &bits, &is_signed)) {
        if (int_bits(v, bits, is_signed, &u) < 0)
            return -1;
        /* Tahu/Ignition: UInt32 rides in long_value like the 64-bit types */
        if (bits < 32 || dt == SPB_DT_INT32) {
            pm->value_case = MV(INT_VALUE);
            pm->int_value = (uint32_t)u;
        } else {
            pm->value_case = MV(LONG_VALUE);
            pm->long_value = u;
        }
        return 0;
    }
    switch (dt) {
    case SPB_DT_BOOLEAN:
        if (v->kind != CV_BOOL)
            return -1;
        pm->value_case = MV(BOOLEAN_VALUE);
        pm->boolean_value = v->b;
        return 0;
    case SPB_DT_FLOAT:
    case SPB_DT_DOUBLE:
        if (v->kind != CV_F32 && v->kind != CV_F64 && v->kind != CV_REAL)
            return -1;
        if (dt == SPB_DT_FLOAT) {
            pm->value_case = MV(FLOAT_VALUE);
            pm->float_value = (float)codec_number(v);
        } else {
            pm->value_case = MV(DOUBLE_VALUE);
            pm->double_value = codec_number(v);
        }
        return 0;
    case SPB_DT_STRING:
        if (v->kind != CV_STR)
            return -1;
        pm->value_case = MV(STRING_VALUE);
        pm->string_value = (char *)v->s; /* only read by pack */
        return 0;
    }
    return -1;
}

/* One metric and the property set hanging off it, so that a payload needs
 * two allocations whatever its size. */
typedef struct {
    Metric m;
    PropertySet props;
    PropertyValue pv[2];
    PropertyValue *pvp[2];
    char *keys[2];
} metric_slot;

static void add_prop(metric_slot *s, const char *key, PropertyValue *pv)
{
    s->keys[s->props.n_keys] = (char *)key;
    s->pvp[s->props.n_values] = pv;
    s->props.n_keys++;
    s->props.n_values++;
}

static int fill_metric(metric_slot *s, const spb_metric *in)
{
    Metric *pm = &s->m;
    org__eclipse__tahu__protobuf__payload__metric__init(pm);
    if (!in->name && !in->has_alias)
        return -1;
    pm->name = (char *)in->name; /* const: protobuf-c only reads it */
    pm->has_alias = in->has_alias;
    pm->alias = in->alias;
    pm->has_timestamp = true;
    pm->timestamp = in->timestamp;
    pm->has_datatype = in->name != NULL;
    pm->datatype = in->datatype;
    pm->has_is_historical = in->is_historical;
    pm->is_historical = in->is_historical;
    if (!in->value || in->value->kind == CV_NONE) {
        pm->has_is_null = true;
        pm->is_null = true;
    } else if (set_value(pm, in->datatype, in->value) < 0) {
        return -1;
    }
    if (!in->has_props || (!in->eng_unit && in->quality < 0))
        return 0;

    org__eclipse__tahu__protobuf__payload__property_set__init(&s->props);
    s->props.keys = s->keys;
    s->props.values = s->pvp;
    if (in->eng_unit) {
        PropertyValue *pv = &s->pv[0];
        org__eclipse__tahu__protobuf__payload__property_value__init(pv);
        pv->has_type = true;
        pv->type = SPB_DT_STRING;
        pv->value_case = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_STRING_VALUE;
        pv->string_value = (char *)in->eng_unit;
        add_prop(s, "engUnit", pv);
    }
    if (in->quality >= 0) {
        PropertyValue *pv = &s->pv[1];
        org__eclipse__tahu__protobuf__payload__property_value__init(pv);
        pv->has_type = true;
        pv->type = SPB_DT_INT32;
        pv->value_case = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_INT_VALUE;
        pv->int_value = (uint32_t)in->quality;
        add_prop(s, "Quality", pv);
    }
    pm->properties = &s->props;
    return 0;
}

int spb_encode(uint64_t timestamp, int seq, const spb_metric *m, size_t n,
               uint8_t **out, size_t *len)
{
    Payload p = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__INIT;
    metric_slot *slots = NULL;
    Metric **ptrs = NULL;
    uint8_t *buf = NULL;
    int err = EINVAL;

    *out = NULL;
    *len = 0;
    if (seq < -1 || seq > 255)
        goto fail;
    p.has_timestamp = true;
    p.timestamp = timestamp;
    p.has_seq = seq >= 0;
    p.seq = seq >= 0 ? (uint64_t)seq : 0;
    if (n > 0) {
        slots = calloc(n, sizeof *slots);
        ptrs = calloc(n, sizeof *ptrs);
        if (!slots || !ptrs) {
            err = ENOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (fill_metric(&slots[i], &m[i]) < 0)
            goto fail;
        ptrs[i] = &slots[i].m;
    }
    p.n_metrics = n;
    p.metrics = ptrs;

    size_t size = org__eclipse__tahu__protobuf__payload__get_packed_size(&p);
    buf = malloc(size > 0 ? size : 1); /* an empty payload is still a buffer */
    if (!buf) {
        err = ENOMEM;
        goto fail;
    }
    *len = org__eclipse__tahu__protobuf__payload__pack(&p, buf);
    *out = buf;
    free(slots);
    free(ptrs);
    return 0;

fail:
    free(slots);
    free(ptrs);
    errno = err;
    return -1;
}

__attribute__((format(printf, 3, 4)))
static int fail_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Strict UTF-8 (RFC 3629): a command string must not reach a PLC mangled. */
static bool utf8_valid(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s++, more;
        uint32_t cp, min;
        if (c < 0x80)
            continue;
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1; cp = c & 0x1F; min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2; cp = c & 0x0F; min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3; cp = c & 0x07; min = 0x10000;
        } else {
            return false;
        }
        for (unsigned k = 0; k < more; k++, s++) {
            if ((*s & 0xC0) != 0x80) /* also stops at the NUL */
                return false;
            cp = cp << 6 | (*s & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
    }
    return true;
}

/* The datatype a metric without one implies by its value field. */
static uint32_t infer_datatype(const Metric *pm)
{
    switch (pm->value_case) {
    case MV(INT_VALUE):     return SPB_DT_INT32;
    case MV(LONG_VALUE):    return SPB_DT_INT64;
    case MV(FLOAT_VALUE):   return SPB_DT_FLOAT;
    case MV(DOUBLE_VALUE):  return SPB_DT_DOUBLE;
    case MV(BOOLEAN_VALUE): return SPB_DT_BOOLEAN;
    case MV(STRING_VALUE):  return SPB_DT_STRING;
    default:                return SPB_DT_UNKNOWN;
    }
}

static int read_int(const Metric *pm, unsigned bits, bool is_signed,
                    spb_cmd *c, char *err, size_t errlen)
{
    uint64_t raw, sign = (uint64_t)1 << (bits - 1);
    bool wide = pm->value_case == MV(LONG_VALUE);

    if (!wide && pm->value_case != MV(INT_VALUE))
        return fail_msg(err, errlen, "datatype %" PRIu32 " needs int_value or long_value",
                        c->datatype);
    raw = wide ? pm->long_value : pm->int_value;
    if (!is_signed) {
        if (bits < 64 && raw >> bits)
            return fail_msg(err, errlen, "%" PRIu64 " out of range for UInt%u", raw, bits);
        c->kind = SPB_UINT;
        c->u = raw;
        return 0;
    }
    int64_t v;
    if (wide)
        v = (int64_t)raw;
    else if (bits < 32 && raw >> bits == 0)
        v = (int64_t)(raw ^ sign) - (int64_t)sign; /* zero-extended Int8/16 */
    else
        v = (int32_t)(uint32_t)raw; /* the Tahu form: sign-extended to 32 bits */
    if (bits < 64 && (v < -(int64_t)sign || v > (int64_t)(sign - 1)))
        return fail_msg(err, errlen, "%" PRId64 " out of range for Int%u", v, bits);
    c->kind = SPB_INT;
    c->i = v;
    return 0;
}

static int read_metric(const Metric *pm, spb_cmd *c, char *err, size_t errlen)
{
    unsigned bits;
    bool is_signed;

    if ((!pm->name || !*pm->name) && !pm->has_alias)
        return fail_msg(err, errlen, "neither name nor alias");
    if (pm->name && strlen(pm->name) >= sizeof c->name)
        return fail_msg(err, errlen, "name longer than %zu bytes", sizeof c->name - 1);
    snprintf(c->name, sizeof c->name, "%s", pm->name ? pm->name : "");
    c->has_alias = pm->has_alias;
    c->alias = pm->alias;
    c->datatype = pm->has_datatype && pm->datatype != SPB_DT_UNKNOWN
                      ? pm->datatype : infer_datatype(pm);
    if (pm->has_is_null && pm->is_null) {
        c->is_null = true;
        return 0;
    }
    if (pm->value_case == MV(_NOT_SET))
        return fail_msg(err, errlen, "missing value");
    if (int_type(c->datatype, &bits, &is_signed))
        return read_int(pm, bits, is_signed, c, err, errlen);

    switch (c->datatype) {
    case SPB_DT_BOOLEAN:
        if (pm->value_case != MV(BOOLEAN_VALUE))
            break;
        c->kind = SPB_BOOL;
        c->b = pm->boolean_value;
        return 0;
    case SPB_DT_FLOAT:
        if (pm->value_case != MV(FLOAT_VALUE))
            break;
        c->kind = SPB_DOUBLE;
        c->d = pm->float_value;
        return 0;
    case SPB_DT_DOUBLE:
        if (pm->value_case != MV(DOUBLE_VALUE))
            break;
        c->kind = SPB_DOUBLE;
        c->d = pm->double_value;
        return 0;
    case SPB_DT_STRING:
    case SPB_DT_TEXT:
        if (pm->value_case != MV(STRING_VALUE))
            break;
        if (strlen(pm->string_value) > CODEC_STR_MAX)
            return fail_msg(err, errlen, "string longer than %d bytes", CODEC_STR_MAX);
        if (!utf8_valid((const unsigned char *)pm->string_value))
            return fail_msg(err, errlen, "string is not UTF-8");
        c->kind = SPB_STRING;
        snprintf(c->s, sizeof c->s, "%s", pm->string_value);
        return 0;
    default:
        return fail_msg(err, errlen, "unsupported datatype %" PRIu32, c->datatype);
    }
    return fail_msg(err, errlen, "value field %d does not match datatype %" PRIu32,
                    (int)pm->value_case, c->datatype);
}

int spb_decode_cmd(const uint8_t *buf, size_t len, spb_cmd **out,
                   char *err, size_t errlen)
{
    Payload *p = NULL;
    spb_cmd *cmds = NULL;
    char why[160];
    size_t n;

    *out = NULL;
    p = org__eclipse__tahu__protobuf__payload__unpack(NULL, len, buf);
    if (!p) {
        fail_msg(err, errlen, "not a Sparkplug B payload");
        goto fail;
    }
    n = p->n_metrics;
    if (n > SPB_CMD_METRICS_MAX) {
        fail_msg(err, errlen, "%zu metrics (at most %d)", n, SPB_CMD_METRICS_MAX);
        goto fail;
    }
    if (n > 0 && !(cmds = calloc(n, sizeof *cmds))) {
        fail_msg(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const Metric *pm = p->metrics[i];
        if (read_metric(pm, &cmds[i], why, sizeof why) < 0) {
            fail_msg(err, errlen, "metric %zu%s%.128s%s: %s", i,
                     pm->name ? " \"" : "", pm->name ? pm->name : "",
                     pm->name ? "\"" : "", why);
            goto fail;
        }
    }
    org__eclipse__tahu__protobuf__payload__free_unpacked(p, NULL);
    *out = cmds;
    return (int)n;

fail:
    if (p)
        org__eclipse__tahu__protobuf__payload__free_unpacked(p, NULL);
    free(cmds);
    return -1;
}

int spb_cmd_json(const spb_cmd *c, char *buf, size_t n)
{
    codec_value v = { .kind = CV_NONE };

    if (!c->is_null) {
        switch (c->kind) {
        case SPB_BOOL:
            v.kind = CV_BOOL;
            v.b = c->b;
            break;
        case SPB_INT:
            v.kind = CV_INT;
            v.i = c->i;
            break;
        case SPB_UINT:
            v.kind = CV_UINT;
            v.u = c->u;
            break;
        case SPB_DOUBLE:
            /* a Float prints as the float32 it is: 123.456, not 123.45600128 */
            if (c->datatype == SPB_DT_FLOAT) {
                v.kind = CV_F32;
                v.f32 = (float)c->d;
            } else {
                v.kind = CV_F64;
                v.f64 = c->d;
            }
            break;
        case SPB_STRING:
            v.kind = CV_STR;
            memcpy(v.s, c->s, sizeof v.s);
            break;
        }
    }
    return codec_format(&v, buf, n);
}
