/* test_spb.c - unit tests for src/spb.c (Sparkplug B payloads).
 *
 * Encoded payloads are read back with the protobuf-c code generated from
 * the official sparkplug_b.proto; command payloads are built with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sparkplug_b.pb-c.h"
#include "spb.h"

typedef Org__Eclipse__Tahu__Protobuf__Payload Payload;
typedef Org__Eclipse__Tahu__Protobuf__Payload__Metric Metric;
typedef Org__Eclipse__Tahu__Protobuf__Payload__PropertyValue PropertyValue;

#define MV(x) ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_##x
#define PV(x) ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__PROPERTY_VALUE__VALUE_##x
#define TS 1700000000123ULL

static codec_value vb(bool b) { codec_value v = { .kind = CV_BOOL, .b = b }; return v; }
static codec_value vi(int64_t i) { codec_value v = { .kind = CV_INT, .i = i }; return v; }
static codec_value vu(uint64_t u) { codec_value v = { .kind = CV_UINT, .u = u }; return v; }
static codec_value vf(float f) { codec_value v = { .kind = CV_F32, .f32 = f }; return v; }
static codec_value vd(double d) { codec_value v = { .kind = CV_F64, .f64 = d }; return v; }
static codec_value vr(double d) { codec_value v = { .kind = CV_REAL, .f64 = d }; return v; }

static codec_value vs(const char *s)
{
    codec_value v = { .kind = CV_STR };
    snprintf(v.s, sizeof v.s, "%s", s);
    return v;
}

static spb_metric named(const char *name, uint64_t alias, uint32_t dt,
                        const codec_value *v)
{
    spb_metric m = { .name = name, .has_alias = true, .alias = alias,
                     .datatype = dt, .value = v, .timestamp = TS + alias,
                     .quality = -1 };
    return m;
}

/* Encode and read back with the generated unpacker. */
static Payload *encode(int seq, const spb_metric *m, size_t n)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(spb_encode(TS, seq, m, n, &buf, &len), 0);
    assert_non_null(buf);
    Payload *p = org__eclipse__tahu__protobuf__payload__unpack(NULL, len, buf);
    free(buf);
    assert_non_null(p);
    assert_true(p->has_timestamp);
    assert_true(p->timestamp == TS);
    assert_int_equal(p->n_metrics, n);
    return p;
}

static void unpacked_free(Payload *p)
{
    org__eclipse__tahu__protobuf__payload__free_unpacked(p, NULL);
}

/* The fields every encoded metric carries, as spb_metric asked. */
static void check_common(const Metric *pm, const spb_metric *m)
{
    if (m->name) {
        assert_non_null(pm->name);
        assert_string_equal(pm->name, m->name);
        assert_true(pm->has_datatype);
        assert_int_equal(pm->datatype, m->datatype);
    } else {
        assert_null(pm->name);
        assert_false(pm->has_datatype);
    }
    assert_int_equal(pm->has_alias, m->has_alias);
    if (m->has_alias)
        assert_true(pm->alias == m->alias);
    assert_true(pm->has_timestamp);
    assert_true(pm->timestamp == m->timestamp);
    assert_int_equal(pm->has_is_historical, m->is_historical);
    assert_int_equal(pm->is_historical, m->is_historical);
    assert_false(pm->has_is_transient);
    assert_null(pm->metadata);
}

static void test_datatype_map(void **state)
{
    (void)state;
    assert_int_equal(spb_datatype(CT_BOOL), 11);
    assert_int_equal(spb_datatype(CT_INT16), 2);
    assert_int_equal(spb_datatype(CT_UINT16), 6);
    assert_int_equal(spb_datatype(CT_INT32), 3);
    assert_int_equal(spb_datatype(CT_UINT32), 7);
    assert_int_equal(spb_datatype(CT_INT64), 4);
    assert_int_equal(spb_datatype(CT_UINT64), 8);
    assert_int_equal(spb_datatype(CT_FLOAT32), 9);
    assert_int_equal(spb_datatype(CT_FLOAT64), 10);
    assert_int_equal(spb_datatype(CT_STRING), 12);
    assert_int_equal(spb_datatype((codec_type)99), 0);
}

static void test_encode_every_datatype(void **state)
{
    (void)state;
    codec_value v[] = {
        vb(true), vi(-2), vu(65535), vi(INT32_MIN), vu(4000000000u),
        vi(INT64_MIN), vu(UINT64_MAX), vf(123.456f), vd(0.1), vs("h\xC3\xA9llo \"q\""),
        vi(-128), vu(255), vr(21.5), vr(0.1), vi(INT32_MAX), vu(0),
    };
    spb_metric m[] = {
        named("b", 1, spb_datatype(CT_BOOL), &v[0]),
        named("i16", 2, spb_datatype(CT_INT16), &v[1]),
        named("u16", 3, spb_datatype(CT_UINT16), &v[2]),
        named("i32", 4, spb_datatype(CT_INT32), &v[3]),
        named("u32", 5, spb_datatype(CT_UINT32), &v[4]),
        named("i64", 6, spb_datatype(CT_INT64), &v[5]),
        named("u64", 7, spb_datatype(CT_UINT64), &v[6]),
        named("f32", 8, spb_datatype(CT_FLOAT32), &v[7]),
        named("f64", 9, spb_datatype(CT_FLOAT64), &v[8]),
        named("str", 10, spb_datatype(CT_STRING), &v[9]),
        named("i8", 11, SPB_DT_INT8, &v[10]),
        named("u8", 12, SPB_DT_UINT8, &v[11]),
        named("scaled", 13, SPB_DT_DOUBLE, &v[12]),
        named("scaled_f", 14, SPB_DT_FLOAT, &v[13]),
        named("i32max", 15, SPB_DT_INT32, &v[14]),
        named("u32zero", 16, SPB_DT_UINT32, &v[15]),
    };
    size_t n = sizeof m / sizeof m[0];
    Payload *p = encode(42, m, n);
    assert_true(p->has_seq);
    assert_true(p->seq == 42);
    assert_null(p->uuid);
    assert_false(p->has_body);
    for (size_t i = 0; i < n; i++) {
        check_common(p->metrics[i], &m[i]);
        assert_false(p->metrics[i]->has_is_null);
        assert_null(p->metrics[i]->properties);
    }
    Metric **pm = p->metrics;
    assert_int_equal(pm[0]->value_case, MV(BOOLEAN_VALUE));
    assert_true(pm[0]->boolean_value);
    assert_int_equal(pm[1]->value_case, MV(INT_VALUE));
    assert_int_equal(pm[1]->int_value, 0xFFFFFFFEu);          /* Int16 -2 */
    assert_int_equal(pm[2]->value_case, MV(INT_VALUE));
    assert_int_equal(pm[2]->int_value, 65535);
    assert_int_equal(pm[3]->value_case, MV(INT_VALUE));
    assert_int_equal(pm[3]->int_value, 0x80000000u);
    assert_int_equal(pm[4]->value_case, MV(LONG_VALUE));        /* UInt32 */
    assert_true(pm[4]->long_value == 4000000000u);
    assert_int_equal(pm[5]->value_case, MV(LONG_VALUE));
    assert_true(pm[5]->long_value == 0x8000000000000000u);      /* Int64 min */
    assert_int_equal(pm[6]->value_case, MV(LONG_VALUE));
    assert_true(pm[6]->long_value == UINT64_MAX);
    assert_int_equal(pm[7]->value_case, MV(FLOAT_VALUE));
    assert_true(pm[7]->float_value == 123.456f);
    assert_int_equal(pm[8]->value_case, MV(DOUBLE_VALUE));
    assert_true(pm[8]->double_value == 0.1);
    assert_int_equal(pm[9]->value_case, MV(STRING_VALUE));
    assert_string_equal(pm[9]->string_value, "h\xC3\xA9llo \"q\"");
    assert_int_equal(pm[10]->value_case, MV(INT_VALUE));
    assert_int_equal(pm[10]->int_value, 0xFFFFFF80u);         /* Int8 -128 */
    assert_int_equal(pm[11]->value_case, MV(INT_VALUE));
    assert_int_equal(pm[11]->int_value, 255);
    assert_int_equal(pm[12]->value_case, MV(DOUBLE_VALUE));    /* CV_REAL */
    assert_true(pm[12]->double_value == 21.5);
    assert_int_equal(pm[13]->value_case, MV(FLOAT_VALUE));     /* CV_REAL as Float */
    assert_true(pm[13]->float_value == 0.1f);
    assert_int_equal(pm[14]->value_case, MV(INT_VALUE));
    assert_int_equal(pm[14]->int_value, 0x7FFFFFFFu);
    assert_int_equal(pm[15]->value_case, MV(LONG_VALUE));
    assert_true(pm[15]->long_value == 0);
    unpacked_free(p);
}

/* DDATA: alias only, so neither name nor datatype on the wire. */
static void test_encode_alias_only(void **state)
{
    (void)state;
    codec_value v[] = { vi(-2), vu(4000000000u), vf(123.456f) };
    spb_metric m[] = {
        named(NULL, 100, SPB_DT_INT16, &v[0]),
        named(NULL, 101, SPB_DT_UINT32, &v[1]),
        named(NULL, 102, SPB_DT_FLOAT, &v[2]),
    };
    Payload *p = encode(7, m, 3);
    for (size_t i = 0; i < 3; i++)
        check_common(p->metrics[i], &m[i]);
    assert_int_equal(p->metrics[0]->int_value, 0xFFFFFFFEu);
    assert_true(p->metrics[1]->long_value == 4000000000u);
    assert_true(p->metrics[2]->float_value == 123.456f);
    unpacked_free(p);
}

static void test_encode_null(void **state)
{
    (void)state;
    codec_value none = { .kind = CV_NONE };
    spb_metric m[] = {
        named("a", 1, SPB_DT_FLOAT, NULL),
        named("b", 2, SPB_DT_STRING, &none),
        named(NULL, 3, SPB_DT_INT16, NULL),
    };
    Payload *p = encode(0, m, 3);
    for (size_t i = 0; i < 3; i++) {
        check_common(p->metrics[i], &m[i]);
        assert_true(p->metrics[i]->has_is_null);
        assert_true(p->metrics[i]->is_null);
        assert_int_equal(p->metrics[i]->value_case, MV(_NOT_SET));
    }
    unpacked_free(p);
}

static void check_props(const Metric *pm, const char *unit, int quality)
{
    const Org__Eclipse__Tahu__Protobuf__Payload__PropertySet *ps = pm->properties;
    size_t k = 0;
    assert_non_null(ps);
    assert_int_equal(ps->n_keys, ps->n_values);
    if (unit) {
        const PropertyValue *pv = ps->values[k];
        assert_string_equal(ps->keys[k], "engUnit");
        assert_true(pv->has_type);
        assert_int_equal(pv->type, 12);
        assert_false(pv->has_is_null);
        assert_int_equal(pv->value_case, PV(STRING_VALUE));
        assert_string_equal(pv->string_value, unit);
        k++;
    }
    if (quality >= 0) {
        const PropertyValue *pv = ps->values[k];
        assert_string_equal(ps->keys[k], "Quality");
        assert_true(pv->has_type);
        assert_int_equal(pv->type, 3);
        assert_false(pv->has_is_null);
        assert_int_equal(pv->value_case, PV(INT_VALUE));
        assert_int_equal(pv->int_value, (uint32_t)quality);
        k++;
    }
    assert_int_equal(ps->n_keys, k);
}

static void test_encode_properties(void **state)
{
    (void)state;
    codec_value v = vr(21.5);
    spb_metric m[5];
    for (size_t i = 0; i < 5; i++)
        m[i] = named("t", i + 1, SPB_DT_DOUBLE, &v);
    m[0].has_props = true;                 /* both */
    m[0].eng_unit = "\xC2\xB0" "C";
    m[0].quality = SPB_QUALITY_GOOD;
    m[1].has_props = true;                 /* Quality only, bad */
    m[1].quality = SPB_QUALITY_BAD;
    m[2].has_props = true;                 /* engUnit only */
    m[2].eng_unit = "bar";
    m[3].has_props = true;                 /* nothing to say: no set */
    m[4].eng_unit = "bar";                 /* has_props false: ignored */
    m[4].quality = SPB_QUALITY_GOOD;
    Payload *p = encode(1, m, 5);
    check_props(p->metrics[0], "\xC2\xB0" "C", 192);
    check_props(p->metrics[1], NULL, 0);
    check_props(p->metrics[2], "bar", -1);
    assert_null(p->metrics[3]->properties);
    assert_null(p->metrics[4]->properties);
    for (size_t i = 0; i < 5; i++) {
        check_common(p->metrics[i], &m[i]);
        assert_true(p->metrics[i]->double_value == 21.5);
    }
    unpacked_free(p);
}

static void test_encode_historical(void **state)
{
    (void)state;
    codec_value v = vi(5);
    spb_metric m[2] = { named(NULL, 1, SPB_DT_INT32, &v),
                        named(NULL, 1, SPB_DT_INT32, &v) };
    m[0].is_historical = true;
    m[0].timestamp = 1000;
    Payload *p = encode(3, m, 2);
    check_common(p->metrics[0], &m[0]);
    check_common(p->metrics[1], &m[1]);
    assert_true(p->metrics[0]->has_is_historical);
    assert_true(p->metrics[0]->is_historical);
    assert_false(p->metrics[1]->has_is_historical);
    unpacked_free(p);
}

static void test_encode_seq(void **state)
{
    (void)state;
    codec_value bd = vi(3);
    spb_metric m = named("bdSeq", 0, SPB_DT_INT64, &bd);
    m.has_alias = false;
    Payload *p = encode(-1, &m, 1);        /* NDEATH: no seq at all */
    assert_false(p->has_seq);
    check_common(p->metrics[0], &m);
    assert_true(p->metrics[0]->long_value == 3);
    unpacked_free(p);

    p = encode(0, &m, 1);
    assert_true(p->has_seq);
    assert_true(p->seq == 0);
    unpacked_free(p);
    p = encode(255, &m, 1);
    assert_true(p->seq == 255);
    unpacked_free(p);

    uint8_t sentinel, *buf = &sentinel;
    size_t len = 1;
    errno = 0;
    assert_int_equal(spb_encode(TS, 256, &m, 1, &buf, &len), -1);
    assert_int_equal(errno, EINVAL);
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(spb_encode(TS, -2, &m, 1, &buf, &len), -1);
}

/* NBIRTH node metrics as the agent will send them. */
static void test_encode_node_metrics(void **state)
{
    (void)state;
    codec_value bd = vu(17), rebirth = vb(false), ver = vs("0.1.0");
    spb_metric m[] = {
        named("bdSeq", 0, SPB_DT_INT64, &bd),
        named("Node Control/Rebirth", 1, SPB_DT_BOOLEAN, &rebirth),
        named("Properties/Version", 2, SPB_DT_STRING, &ver),
    };
    m[0].has_alias = false;
    Payload *p = encode(0, m, 3);
    for (size_t i = 0; i < 3; i++)
        check_common(p->metrics[i], &m[i]);
    assert_true(p->metrics[0]->long_value == 17);
    assert_int_equal(p->metrics[1]->value_case, MV(BOOLEAN_VALUE));
    assert_false(p->metrics[1]->boolean_value);
    assert_string_equal(p->metrics[2]->string_value, "0.1.0");
    unpacked_free(p);
}

static void test_encode_empty(void **state)
{
    (void)state;
    Payload *p = encode(9, NULL, 0);
    assert_true(p->seq == 9);
    unpacked_free(p);
}

static void expect_encode_fails(uint32_t dt, codec_value v)
{
    spb_metric m = named("x", 1, dt, &v);
    uint8_t *buf = NULL;
    size_t len = 0;
    errno = 0;
    assert_int_equal(spb_encode(TS, 0, &m, 1, &buf, &len), -1);
    assert_int_equal(errno, EINVAL);
    assert_null(buf);
}

static void test_encode_rejects(void **state)
{
    (void)state;
    expect_encode_fails(SPB_DT_INT16, vi(40000));
    expect_encode_fails(SPB_DT_INT16, vu(32768));
    expect_encode_fails(SPB_DT_INT8, vi(-129));
    expect_encode_fails(SPB_DT_UINT16, vi(-1));
    expect_encode_fails(SPB_DT_UINT16, vu(65536));
    expect_encode_fails(SPB_DT_UINT32, vu(4294967296u));
    expect_encode_fails(SPB_DT_INT64, vu((uint64_t)INT64_MAX + 1));
    expect_encode_fails(SPB_DT_INT32, vr(1.0));
    expect_encode_fails(SPB_DT_BOOLEAN, vi(1));
    expect_encode_fails(SPB_DT_STRING, vi(1));
    expect_encode_fails(SPB_DT_FLOAT, vi(1));
    expect_encode_fails(SPB_DT_DOUBLE, vs("1"));
    expect_encode_fails(SPB_DT_DATETIME, vu(1));
    expect_encode_fails(SPB_DT_UNKNOWN, vu(1));

    codec_value v = vi(1);
    spb_metric m = named(NULL, 0, SPB_DT_INT32, &v);
    m.has_alias = false;               /* neither name nor alias */
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(spb_encode(TS, 0, &m, 1, &buf, &len), -1);
    assert_int_equal(errno, EINVAL);
}

/* Command payloads built with the generated API. */

static Metric *cmd_metric(const char *name, bool has_alias, uint64_t alias,
                          uint32_t dt)
{
    Metric *m = calloc(1, sizeof *m);
    assert_non_null(m);
    org__eclipse__tahu__protobuf__payload__metric__init(m);
    m->name = (char *)name;
    m->has_alias = has_alias;
    m->alias = alias;
    m->has_datatype = dt != 0;
    m->datatype = dt;
    return m;
}

/* Pack metrics into a payload and decode it; frees the metrics. */
static int decode(Metric **ms, size_t n, spb_cmd **out, char *err, size_t errlen)
{
    Payload p = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__INIT;
    p.has_timestamp = true;
    p.timestamp = TS;
    p.has_seq = true;
    p.seq = 0;
    p.n_metrics = n;
    p.metrics = ms;
    size_t len = org__eclipse__tahu__protobuf__payload__get_packed_size(&p);
    uint8_t *buf = malloc(len + 1);
    assert_non_null(buf);
    assert_int_equal(org__eclipse__tahu__protobuf__payload__pack(&p, buf), len);
    for (size_t i = 0; i < n; i++)
        free(ms[i]);
    err[0] = '\0';
    int r = spb_decode_cmd(buf, len, out, err, errlen);
    free(buf);
    return r;
}

static spb_cmd decode_one(Metric *m)
{
    spb_cmd *out = NULL, c;
    char err[256];
    int r = decode(&m, 1, &out, err, sizeof err);
    if (r != 1)
        fail_msg("decode: %d %s", r, err);
    c = out[0];
    free(out);
    return c;
}

static void decode_fails(Metric *m, const char *why)
{
    spb_cmd sentinel, *out = &sentinel;
    char err[256];
    assert_int_equal(decode(&m, 1, &out, err, sizeof err), -1);
    assert_null(out);
    if (!strstr(err, why))
        fail_msg("error \"%s\" lacks \"%s\"", err, why);
}

static void test_decode_rebirth_by_name(void **state)
{
    (void)state;
    Metric *m = cmd_metric("Node Control/Rebirth", false, 0, SPB_DT_BOOLEAN);
    m->value_case = MV(BOOLEAN_VALUE);
    m->boolean_value = true;
    spb_cmd c = decode_one(m);
    assert_string_equal(c.name, "Node Control/Rebirth");
    assert_false(c.has_alias);
    assert_int_equal(c.datatype, SPB_DT_BOOLEAN);
    assert_false(c.is_null);
    assert_int_equal(c.kind, SPB_BOOL);
    assert_true(c.b);
}

static void test_decode_int16_negative_by_alias(void **state)
{
    (void)state;
    Metric *m = cmd_metric(NULL, true, 7, SPB_DT_INT16);
    m->value_case = MV(INT_VALUE);
    m->int_value = 0xFFFFFFFEu;                 /* Tahu: sign-extended */
    spb_cmd c = decode_one(m);
    assert_string_equal(c.name, "");
    assert_true(c.has_alias);
    assert_true(c.alias == 7);
    assert_int_equal(c.datatype, SPB_DT_INT16);
    assert_int_equal(c.kind, SPB_INT);
    assert_true(c.i == -2);

    m = cmd_metric(NULL, true, 7, SPB_DT_INT16);
    m->value_case = MV(INT_VALUE);
    m->int_value = 0xFFFE;                      /* zero-extended form */
    c = decode_one(m);
    assert_true(c.i == -2);

    m = cmd_metric(NULL, true, 7, SPB_DT_INT8);
    m->value_case = MV(INT_VALUE);
    m->int_value = 0xFFFFFF80u;
    c = decode_one(m);
    assert_true(c.i == -128);

    m = cmd_metric(NULL, true, 7, SPB_DT_INT32);
    m->value_case = MV(INT_VALUE);
    m->int_value = 0x80000000u;
    c = decode_one(m);
    assert_true(c.i == INT32_MIN);

    m = cmd_metric(NULL, true, 7, SPB_DT_INT16);
    m->value_case = MV(INT_VALUE);
    m->int_value = 0x10000;
    decode_fails(m, "out of range for Int16");

    m = cmd_metric(NULL, true, 7, SPB_DT_INT16);
    m->value_case = MV(INT_VALUE);
    m->int_value = 0xFFFF7FFFu;                 /* -32769 */
    decode_fails(m, "-32769 out of range for Int16");
}

static void test_decode_unsigned_and_64(void **state)
{
    (void)state;
    Metric *m = cmd_metric("u32", false, 0, SPB_DT_UINT32);
    m->value_case = MV(LONG_VALUE);
    m->long_value = 4000000000u;
    spb_cmd c = decode_one(m);
    assert_int_equal(c.kind, SPB_UINT);
    assert_true(c.u == 4000000000u);

    m = cmd_metric("u32", false, 0, SPB_DT_UINT32);   /* older encoders */
    m->value_case = MV(INT_VALUE);
    m->int_value = 4000000000u;
    c = decode_one(m);
    assert_true(c.u == 4000000000u);

    m = cmd_metric("u32", false, 0, SPB_DT_UINT32);
    m->value_case = MV(LONG_VALUE);
    m->long_value = 4294967296u;
    decode_fails(m, "out of range for UInt32");

    m = cmd_metric("u16", false, 0, SPB_DT_UINT16);
    m->value_case = MV(INT_VALUE);
    m->int_value = 70000;
    decode_fails(m, "70000 out of range for UInt16");

    m = cmd_metric("i64", false, 0, SPB_DT_INT64);
    m->value_case = MV(LONG_VALUE);
    m->long_value = 0x8000000000000000u;
    c = decode_one(m);
    assert_int_equal(c.kind, SPB_INT);
    assert_true(c.i == INT64_MIN);

    m = cmd_metric("u64", false, 0, SPB_DT_UINT64);
    m->value_case = MV(LONG_VALUE);
    m->long_value = UINT64_MAX;
    c = decode_one(m);
    assert_int_equal(c.kind, SPB_UINT);
    assert_true(c.u == UINT64_MAX);

    m = cmd_metric("i32", false, 0, SPB_DT_INT32);   /* Int32 in long_value */
    m->value_case = MV(LONG_VALUE);
    m->long_value = (uint64_t)-5;
    c = decode_one(m);
    assert_true(c.i == -5);
}

static void test_decode_real_and_string(void **state)
{
    (void)state;
    Metric *m = cmd_metric("sp", true, 3, SPB_DT_DOUBLE);
    m->value_case = MV(DOUBLE_VALUE);
    m->double_value = 21.5;
    spb_cmd c = decode_one(m);
    assert_int_equal(c.kind, SPB_DOUBLE);
    assert_true(c.d == 21.5);
    assert_int_equal(c.datatype, SPB_DT_DOUBLE);

    m = cmd_metric("f", true, 4, SPB_DT_FLOAT);
    m->value_case = MV(FLOAT_VALUE);
    m->float_value = 123.456f;
    c = decode_one(m);
    assert_int_equal(c.kind, SPB_DOUBLE);
    assert_true(c.d == (double)123.456f);
    assert_int_equal(c.datatype, SPB_DT_FLOAT);

    m = cmd_metric("s", true, 5, SPB_DT_STRING);
    m->value_case = MV(STRING_VALUE);
    m->string_value = "txt \xE2\x82\xAC";
    c = decode_one(m);
    assert_int_equal(c.kind, SPB_STRING);
    assert_string_equal(c.s, "txt \xE2\x82\xAC");

    m = cmd_metric("s", true, 5, SPB_DT_TEXT);
    m->value_case = MV(STRING_VALUE);
    m->string_value = "";
    c = decode_one(m);
    assert_int_equal(c.kind, SPB_STRING);
    assert_string_equal(c.s, "");

    char big[CODEC_STR_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';                 /* 257 bytes */
    m = cmd_metric("s", true, 5, SPB_DT_STRING);
    m->value_case = MV(STRING_VALUE);
    m->string_value = big;
    decode_fails(m, "string longer than 256 bytes");

    big[CODEC_STR_MAX] = '\0';                  /* 256 bytes: fine */
    m = cmd_metric("s", true, 5, SPB_DT_STRING);
    m->value_case = MV(STRING_VALUE);
    m->string_value = big;
    c = decode_one(m);
    assert_int_equal(strlen(c.s), CODEC_STR_MAX);

    static const char *const bad_utf8[] = {
        "\xFF", "a\xC3", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82",
    };
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        m = cmd_metric("s", true, 5, SPB_DT_STRING);
        m->value_case = MV(STRING_VALUE);
        m->string_value = (char *)bad_utf8[i];
        decode_fails(m, "not UTF-8");
    }
}

static void test_decode_inferred_datatype(void **state)
{
    (void)state;
    static const struct { int vc; uint32_t dt; spb_kind kind; } cases[] = {
        { MV(INT_VALUE), SPB_DT_INT32, SPB_INT },
        { MV(LONG_VALUE), SPB_DT_INT64, SPB_INT },
        { MV(FLOAT_VALUE), SPB_DT_FLOAT, SPB_DOUBLE },
        { MV(DOUBLE_VALUE), SPB_DT_DOUBLE, SPB_DOUBLE },
        { MV(BOOLEAN_VALUE), SPB_DT_BOOLEAN, SPB_BOOL },
        { MV(STRING_VALUE), SPB_DT_STRING, SPB_STRING },
    };
    for (size_t k = 0; k < 2; k++) {           /* absent, then Unknown (0) */
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            Metric *m = cmd_metric(NULL, true, i, 0);
            m->has_datatype = k == 1;
            m->value_case = cases[i].vc;
            switch (m->value_case) {
            case MV(INT_VALUE): m->int_value = 0xFFFFFFFEu; break;
            case MV(LONG_VALUE): m->long_value = (uint64_t)-3; break;
            case MV(FLOAT_VALUE): m->float_value = 1.5f; break;
            case MV(DOUBLE_VALUE): m->double_value = 2.5; break;
            case MV(BOOLEAN_VALUE): m->boolean_value = true; break;
            default: m->string_value = "on"; break;
            }
            spb_cmd c = decode_one(m);
            assert_int_equal(c.datatype, cases[i].dt);
            assert_int_equal(c.kind, cases[i].kind);
            char json[64];
            assert_true(spb_cmd_json(&c, json, sizeof json) > 0);
            static const char *const want[] = { "-2", "-3", "1.5", "2.5", "true", "\"on\"" };
            assert_string_equal(json, want[i]);
        }
    }
}

static void test_decode_null_and_missing(void **state)
{
    (void)state;
    Metric *m = cmd_metric("n", false, 0, SPB_DT_INT16);
    m->has_is_null = true;
    m->is_null = true;
    spb_cmd c = decode_one(m);
    assert_true(c.is_null);
    assert_int_equal(c.datatype, SPB_DT_INT16);
    char json[16];
    assert_int_equal(spb_cmd_json(&c, json, sizeof json), 4);
    assert_string_equal(json, "null");

    m = cmd_metric("n", false, 0, SPB_DT_INT16);
    decode_fails(m, "metric 0 \"n\": missing value");

    m = cmd_metric("n", false, 0, 0);               /* no datatype, no value */
    decode_fails(m, "missing value");

    m = cmd_metric("b", false, 0, SPB_DT_BOOLEAN);
    m->value_case = MV(INT_VALUE);
    m->int_value = 1;
    decode_fails(m, "does not match datatype 11");

    m = cmd_metric("f", false, 0, SPB_DT_FLOAT);
    m->value_case = MV(DOUBLE_VALUE);
    m->double_value = 1;
    decode_fails(m, "does not match datatype 9");

    m = cmd_metric("i", false, 0, SPB_DT_INT32);
    m->value_case = MV(DOUBLE_VALUE);
    m->double_value = 1;
    decode_fails(m, "needs int_value or long_value");

    m = cmd_metric("ds", false, 0, 16);             /* DataSet */
    m->value_case = MV(BYTES_VALUE);
    decode_fails(m, "unsupported datatype 16");

    m = cmd_metric("dt", false, 0, SPB_DT_DATETIME);
    m->value_case = MV(LONG_VALUE);
    decode_fails(m, "unsupported datatype 13");

    m = cmd_metric(NULL, false, 0, SPB_DT_BOOLEAN);
    m->value_case = MV(BOOLEAN_VALUE);
    decode_fails(m, "metric 0: neither name nor alias");

    char name[129];
    memset(name, 'n', 128);
    name[128] = '\0';
    m = cmd_metric(name, false, 0, SPB_DT_BOOLEAN);
    m->value_case = MV(BOOLEAN_VALUE);
    decode_fails(m, "name longer than 127 bytes");
    name[127] = '\0';
    m = cmd_metric(name, false, 0, SPB_DT_BOOLEAN);
    m->value_case = MV(BOOLEAN_VALUE);
    c = decode_one(m);
    assert_string_equal(c.name, name);
}

static void test_decode_garbage(void **state)
{
    (void)state;
    static const char *const junk[] = {
        "{\"v\":1}", "true", "42", "\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
        "\x12\x05\x0a", /* metrics field cut short */
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        spb_cmd sentinel, *out = &sentinel;
        char err[64] = "";
        assert_int_equal(spb_decode_cmd((const uint8_t *)junk[i], strlen(junk[i]),
                                        &out, err, sizeof err), -1);
        assert_null(out);
        assert_string_equal(err, "not a Sparkplug B payload");
    }
    /* An empty payload is valid: no metrics. */
    spb_cmd sentinel, *out = &sentinel;
    char err[64];
    assert_int_equal(spb_decode_cmd(NULL, 0, &out, err, sizeof err), 0);
    assert_null(out);
}

static void many(size_t n, int want)
{
    Metric **ms = calloc(n, sizeof *ms);
    assert_non_null(ms);
    for (size_t i = 0; i < n; i++) {
        ms[i] = cmd_metric(NULL, true, i, SPB_DT_UINT16);
        ms[i]->value_case = MV(INT_VALUE);
        ms[i]->int_value = (uint32_t)i;
    }
    spb_cmd *out = NULL;
    char err[128];
    assert_int_equal(decode(ms, n, &out, err, sizeof err), want);
    free(ms);
    if (want < 0) {
        assert_null(out);
        assert_string_equal(err, "1001 metrics (at most 1000)");
        return;
    }
    for (size_t i = 0; i < n; i++)
        assert_true(out[i].alias == i && out[i].u == i);
    free(out);
}

static void test_decode_metric_limit(void **state)
{
    (void)state;
    many(1000, 1000);
    many(1001, -1);
}

/* What the agent sends decodes back to what it meant. */
static void test_encode_decode_round_trip(void **state)
{
    (void)state;
    codec_value v[] = { vb(true), vi(-2), vs("a\"b"), vf(123.456f), vu(4000000000u) };
    spb_metric m[] = {
        named("Node Control/Rebirth", 1, SPB_DT_BOOLEAN, &v[0]),
        named("i16", 2, SPB_DT_INT16, &v[1]),
        named("s", 3, SPB_DT_STRING, &v[2]),
        named("f", 4, SPB_DT_FLOAT, &v[3]),
        named("u32", 5, SPB_DT_UINT32, &v[4]),
    };
    uint8_t *buf;
    size_t len;
    assert_int_equal(spb_encode(TS, 5, m, 5, &buf, &len), 0);
    spb_cmd *c;
    char err[128];
    assert_int_equal(spb_decode_cmd(buf, len, &c, err, sizeof err), 5);
    free(buf);
    static const char *const want[] = { "true", "-2", "\"a\\\"b\"", "123.456", "4000000000" };
    for (size_t i = 0; i < 5; i++) {
        char json[64];
        assert_string_equal(c[i].name, m[i].name);
        assert_true(c[i].has_alias && c[i].alias == m[i].alias);
        assert_int_equal(c[i].datatype, m[i].datatype);
        assert_int_equal(spb_cmd_json(&c[i], json, sizeof json), (int)strlen(want[i]));
        assert_string_equal(json, want[i]);
    }
    free(c);
}

static void test_cmd_json(void **state)
{
    (void)state;
    char buf[300];
    spb_cmd c = { .datatype = SPB_DT_BOOLEAN, .kind = SPB_BOOL, .b = false };
    assert_int_equal(spb_cmd_json(&c, buf, sizeof buf), 5);
    assert_string_equal(buf, "false");

    c = (spb_cmd){ .datatype = SPB_DT_INT64, .kind = SPB_INT, .i = INT64_MIN };
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "-9223372036854775808");

    c = (spb_cmd){ .datatype = SPB_DT_UINT64, .kind = SPB_UINT, .u = UINT64_MAX };
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "18446744073709551615");

    c = (spb_cmd){ .datatype = SPB_DT_UINT16, .kind = SPB_UINT, .u = 42 };
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "42");

    c = (spb_cmd){ .datatype = SPB_DT_DOUBLE, .kind = SPB_DOUBLE, .d = 21.5 };
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "21.5");

    c = (spb_cmd){ .datatype = SPB_DT_DOUBLE, .kind = SPB_DOUBLE, .d = 0.1 };
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "0.1");

    c = (spb_cmd){ .datatype = SPB_DT_FLOAT, .kind = SPB_DOUBLE, .d = 123.456f };
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "123.456");

    c = (spb_cmd){ .datatype = SPB_DT_DOUBLE, .kind = SPB_DOUBLE, .d = 123.456f };
    spb_cmd_json(&c, buf, sizeof buf);          /* as a Double it is not 123.456 */
    assert_string_not_equal(buf, "123.456");

    c = (spb_cmd){ .datatype = SPB_DT_STRING, .kind = SPB_STRING };
    snprintf(c.s, sizeof c.s, "t\"x\\t\n");
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "\"t\\\"x\\\\t\\u000a\"");

    c = (spb_cmd){ .datatype = SPB_DT_STRING, .is_null = true };
    spb_cmd_json(&c, buf, sizeof buf);
    assert_string_equal(buf, "null");

    c = (spb_cmd){ .datatype = SPB_DT_INT32, .kind = SPB_INT, .i = -12345 };
    assert_int_equal(spb_cmd_json(&c, buf, 6), -1);   /* needs 7 with the NUL */
    assert_int_equal(spb_cmd_json(&c, buf, 7), 6);
    assert_string_equal(buf, "-12345");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_datatype_map),
        cmocka_unit_test(test_encode_every_datatype),
        cmocka_unit_test(test_encode_alias_only),
        cmocka_unit_test(test_encode_null),
        cmocka_unit_test(test_encode_properties),
        cmocka_unit_test(test_encode_historical),
        cmocka_unit_test(test_encode_seq),
        cmocka_unit_test(test_encode_node_metrics),
        cmocka_unit_test(test_encode_empty),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_decode_rebirth_by_name),
        cmocka_unit_test(test_decode_int16_negative_by_alias),
        cmocka_unit_test(test_decode_unsigned_and_64),
        cmocka_unit_test(test_decode_real_and_string),
        cmocka_unit_test(test_decode_inferred_datatype),
        cmocka_unit_test(test_decode_null_and_missing),
        cmocka_unit_test(test_decode_garbage),
        cmocka_unit_test(test_decode_metric_limit),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_cmd_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
