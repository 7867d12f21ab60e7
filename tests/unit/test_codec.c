/* test_codec.c - unit tests for src/codec.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

static const codec_order orders[] = { CO_ABCD, CO_CDAB, CO_BADC, CO_DCBA };

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

static float f32_bits(uint32_t w) { float f; memcpy(&f, &w, 4); return f; }
static uint32_t bits_f32(float f) { uint32_t w; memcpy(&w, &f, 4); return w; }
static double f64_bits(uint64_t w) { double d; memcpy(&d, &w, 8); return d; }
static uint64_t bits_f64(double d) { uint64_t w; memcpy(&w, &d, 8); return w; }

static const char *fmt(codec_value v)
{
    static char buf[2048];
    int n = codec_format(&v, buf, sizeof buf);
    assert_true(n >= 0);
    assert_int_equal((size_t)n, strlen(buf));
    return buf;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '0')
        s++;
    else if (*s >= '1' && *s <= '9')
        while (*s >= '0' && *s <= '9')
            s++;
    else
        return false;
    if (*s == '.') {
        if (*++s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ---- names ---- */

static void test_type_names(void **state)
{
    (void)state;
    static const char *const names[] = { "bool", "int16", "uint16", "int32",
        "uint32", "int64", "uint64", "float32", "float64", "string" };
    for (int i = 0; i < 10; i++) {
        codec_type t = CT_STRING;
        assert_int_equal(codec_type_parse(names[i], &t), 0);
        assert_int_equal(t, (codec_type)i);
        assert_string_equal(codec_type_name(t), names[i]);
    }
    codec_type t = CT_INT16;
    assert_int_equal(codec_type_parse("float", &t), -1);
    assert_int_equal(codec_type_parse("Float32", &t), -1);
    assert_int_equal(codec_type_parse("", &t), -1);
    assert_int_equal(codec_type_parse(NULL, &t), -1);
    assert_int_equal(t, CT_INT16);
    assert_string_equal(codec_type_name((codec_type)10), "?");
    assert_string_equal(codec_type_name((codec_type)-1), "?");
}

static void test_order_names(void **state)
{
    (void)state;
    static const char *const names[] = { "ABCD", "CDAB", "BADC", "DCBA" };
    for (int i = 0; i < 4; i++) {
        codec_order o = CO_DCBA;
        assert_int_equal(codec_order_parse(names[i], &o), 0);
        assert_int_equal(o, orders[i]);
        assert_string_equal(codec_order_name(o), names[i]);
    }
    codec_order o = CO_BADC;
    assert_int_equal(codec_order_parse("abcd", &o), -1);
    assert_int_equal(codec_order_parse("ABDC", &o), -1);
    assert_int_equal(codec_order_parse(NULL, &o), -1);
    assert_int_equal(o, CO_BADC);
    assert_string_equal(codec_order_name((codec_order)4), "?");
}

static void test_regs(void **state)
{
    (void)state;
    assert_int_equal(codec_regs(CT_BOOL, 0), 1);
    assert_int_equal(codec_regs(CT_INT16, 0), 1);
    assert_int_equal(codec_regs(CT_UINT16, 0), 1);
    assert_int_equal(codec_regs(CT_INT32, 0), 2);
    assert_int_equal(codec_regs(CT_UINT32, 0), 2);
    assert_int_equal(codec_regs(CT_FLOAT32, 0), 2);
    assert_int_equal(codec_regs(CT_INT64, 0), 4);
    assert_int_equal(codec_regs(CT_UINT64, 0), 4);
    assert_int_equal(codec_regs(CT_FLOAT64, 0), 4);
    assert_int_equal(codec_regs(CT_STRING, 1), 1);
    assert_int_equal(codec_regs(CT_STRING, 2), 1);
    assert_int_equal(codec_regs(CT_STRING, 3), 2);
    assert_int_equal(codec_regs(CT_STRING, 16), 8);
    assert_int_equal(codec_regs(CT_STRING, CODEC_STR_MAX), CODEC_STR_MAX / 2);
    assert_int_equal(codec_regs((codec_type)42, 4), 0);
}

/* ---- byte orders ---- */

static void test_spec_float32_orders(void **state)
{
    (void)state;
    static const uint16_t regs[4][2] = {
        { 0x42F6, 0xE979 }, { 0xE979, 0x42F6 }, { 0xF642, 0x79E9 }, { 0x79E9, 0xF642 },
    };
    for (int i = 0; i < 4; i++) {
        codec_value v;
        assert_int_equal(codec_decode(regs[i], CT_FLOAT32, orders[i], 0, -1, &v), 0);
        assert_int_equal(v.kind, CV_F32);
        assert_int_equal(bits_f32(v.f32), 0x42F6E979);
        assert_string_equal(fmt(v), "123.456");

        uint16_t out[2] = { 0, 0 };
        codec_value in = vf(123.456f);
        assert_int_equal(codec_encode(&in, CT_FLOAT32, orders[i], 0, out), 0);
        assert_memory_equal(out, regs[i], sizeof out);
    }
}

static void test_64bit_orders(void **state)
{
    (void)state;
    static const uint16_t regs[4][4] = {
        { 0x0102, 0x0304, 0x0506, 0x0708 },
        { 0x0708, 0x0506, 0x0304, 0x0102 },
        { 0x0201, 0x0403, 0x0605, 0x0807 },
        { 0x0807, 0x0605, 0x0403, 0x0201 },
    };
    for (int i = 0; i < 4; i++) {
        codec_value v;
        assert_int_equal(codec_decode(regs[i], CT_UINT64, orders[i], 0, -1, &v), 0);
        assert_int_equal(v.kind, CV_UINT);
        assert_true(v.u == 0x0102030405060708u);
        assert_int_equal(codec_decode(regs[i], CT_INT64, orders[i], 0, -1, &v), 0);
        assert_int_equal(v.kind, CV_INT);
        assert_true(v.i == 0x0102030405060708);

        /* 1.0 is 0x3FF0000000000000 */
        static const uint16_t one[4][4] = {
            { 0x3FF0, 0, 0, 0 }, { 0, 0, 0, 0x3FF0 }, { 0xF03F, 0, 0, 0 }, { 0, 0, 0, 0xF03F },
        };
        assert_int_equal(codec_decode(one[i], CT_FLOAT64, orders[i], 0, -1, &v), 0);
        assert_int_equal(v.kind, CV_F64);
        assert_true(v.f64 == 1.0);

        uint16_t out[4];
        codec_value in = vu(0x0102030405060708u);
        assert_int_equal(codec_encode(&in, CT_UINT64, orders[i], 0, out), 0);
        assert_memory_equal(out, regs[i], sizeof out);
    }
}

static void test_32bit_int_orders(void **state)
{
    (void)state;
    static const uint16_t regs[4][2] = {
        { 0xFFFE, 0x1DC0 }, { 0x1DC0, 0xFFFE }, { 0xFEFF, 0xC01D }, { 0xC01D, 0xFEFF },
    };
    for (int i = 0; i < 4; i++) {
        codec_value v;
        assert_int_equal(codec_decode(regs[i], CT_INT32, orders[i], 0, -1, &v), 0);
        assert_int_equal(v.kind, CV_INT);
        assert_true(v.i == -123456);
        assert_int_equal(codec_decode(regs[i], CT_UINT32, orders[i], 0, -1, &v), 0);
        assert_int_equal(v.kind, CV_UINT);
        assert_true(v.u == 0xFFFE1DC0u);
    }
}

/* ---- round trips ---- */

static void roundtrip(codec_value in, codec_type t)
{
    for (int o = 0; o < 4; o++) {
        uint16_t regs[4] = { 0xAAAA, 0xAAAA, 0xAAAA, 0xAAAA };
        codec_value out;
        memset(&out, 0x5A, sizeof out);
        assert_int_equal(codec_encode(&in, t, orders[o], 0, regs), 0);
        assert_int_equal(codec_decode(regs, t, orders[o], 0, -1, &out), 0);
        assert_int_equal(out.kind, in.kind);
        switch (in.kind) {
        case CV_INT: assert_true(out.i == in.i); break;
        case CV_UINT: assert_true(out.u == in.u); break;
        case CV_F32: assert_int_equal(bits_f32(out.f32), bits_f32(in.f32)); break;
        case CV_F64: assert_true(bits_f64(out.f64) == bits_f64(in.f64)); break;
        default: fail();
        }
        for (unsigned r = codec_regs(t, 0); r < 4; r++)
            assert_int_equal(regs[r], 0xAAAA); /* nothing written past the value */
    }
}

static void test_roundtrip_ints(void **state)
{
    (void)state;
    static const int64_t s16[] = { INT16_MIN, -1, 0, 1, 1234, INT16_MAX };
    static const uint64_t u16[] = { 0, 1, 0x8000, 0xBEEF, UINT16_MAX };
    static const int64_t s32[] = { INT32_MIN, -123456, -1, 0, 1, 0x12345678, INT32_MAX };
    static const uint64_t u32[] = { 0, 1, 0x80000000u, 0xDEADBEEFu, UINT32_MAX };
    static const int64_t s64[] = { INT64_MIN, INT64_MIN + 1, -1, 0, 1,
                                   0x0102030405060708, INT64_MAX };
    static const uint64_t u64[] = { 0, 1, 0x8000000000000000u,
                                    0xFEDCBA9876543210u, UINT64_MAX };
    for (size_t i = 0; i < sizeof s16 / sizeof *s16; i++)
        roundtrip(vi(s16[i]), CT_INT16);
    for (size_t i = 0; i < sizeof u16 / sizeof *u16; i++)
        roundtrip(vu(u16[i]), CT_UINT16);
    for (size_t i = 0; i < sizeof s32 / sizeof *s32; i++)
        roundtrip(vi(s32[i]), CT_INT32);
    for (size_t i = 0; i < sizeof u32 / sizeof *u32; i++)
        roundtrip(vu(u32[i]), CT_UINT32);
    for (size_t i = 0; i < sizeof s64 / sizeof *s64; i++)
        roundtrip(vi(s64[i]), CT_INT64);
    for (size_t i = 0; i < sizeof u64 / sizeof *u64; i++)
        roundtrip(vu(u64[i]), CT_UINT64);
}

static void test_roundtrip_floats(void **state)
{
    (void)state;
    const float f[] = { 0.0f, -0.0f, 1.0f, -1.0f, 123.456f, 0.1f, FLT_MIN,
                        FLT_TRUE_MIN, -FLT_TRUE_MIN, FLT_MAX, -FLT_MAX,
                        INFINITY, -INFINITY, NAN, f32_bits(0x7FC00001u),
                        f32_bits(0xFF800001u) };
    const double d[] = { 0.0, -0.0, 1.0, -1.0, 123.456, 0.1, DBL_MIN,
                         DBL_TRUE_MIN, -DBL_TRUE_MIN, DBL_MAX, -DBL_MAX,
                         INFINITY, -INFINITY, NAN, f64_bits(0x7FF0000000000001u),
                         f64_bits(0xFFF8000000000123u) };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        roundtrip(vf(f[i]), CT_FLOAT32);
    for (size_t i = 0; i < sizeof d / sizeof *d; i++)
        roundtrip(vd(d[i]), CT_FLOAT64);
}

/* encode(decode(regs)) gives back the registers, for every bit pattern kind. */
static void test_registers_roundtrip(void **state)
{
    (void)state;
    static const codec_type types[] = { CT_INT16, CT_UINT16, CT_INT32, CT_UINT32,
        CT_INT64, CT_UINT64, CT_FLOAT32, CT_FLOAT64 };
    for (int n = 0; n < 2000; n++) {
        uint64_t r = rnd();
        uint16_t regs[4] = { (uint16_t)r, (uint16_t)(r >> 16), (uint16_t)(r >> 32),
                             (uint16_t)(r >> 48) };
        for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
            for (int o = 0; o < 4; o++) {
                codec_value v;
                uint16_t out[4] = { regs[0] ^ 1, regs[1] ^ 1, regs[2] ^ 1, regs[3] ^ 1 };
                assert_int_equal(codec_decode(regs, types[t], orders[o], 0, -1, &v), 0);
                assert_int_equal(codec_encode(&v, types[t], orders[o], 0, out), 0);
                assert_memory_equal(out, regs, codec_regs(types[t], 0) * 2);
            }
        }
    }
}

static void test_int16_negative(void **state)
{
    (void)state;
    codec_value v;
    uint16_t r = 0xFFFE;
    assert_int_equal(codec_decode(&r, CT_INT16, CO_ABCD, 0, -1, &v), 0);
    assert_int_equal(v.kind, CV_INT);
    assert_true(v.i == -2);
    assert_string_equal(fmt(v), "-2");
    r = 0x8000;
    assert_int_equal(codec_decode(&r, CT_INT16, CO_DCBA, 0, -1, &v), 0);
    assert_true(v.i == INT16_MIN);
    /* 16-bit values ignore the byte order */
    r = 0x1234;
    assert_int_equal(codec_decode(&r, CT_UINT16, CO_BADC, 0, -1, &v), 0);
    assert_int_equal(v.kind, CV_UINT);
    assert_true(v.u == 0x1234);
    r = 0xFFFF;
    assert_int_equal(codec_decode(&r, CT_UINT16, CO_ABCD, 0, -1, &v), 0);
    assert_string_equal(fmt(v), "65535");
    codec_value in = vi(-2);
    assert_int_equal(codec_encode(&in, CT_INT16, CO_DCBA, 0, &r), 0);
    assert_int_equal(r, 0xFFFE);
}

/* ---- bool ---- */

static void test_bool(void **state)
{
    (void)state;
    codec_value v;
    uint16_t r = 0x0001;
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, 0, &v), 0);
    assert_int_equal(v.kind, CV_BOOL);
    assert_true(v.b);
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, 15, &v), 0);
    assert_false(v.b);
    r = 0x8000;
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, 15, &v), 0);
    assert_true(v.b);
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, 0, &v), 0);
    assert_false(v.b);
    r = 0x0008;
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, 3, &v), 0);
    assert_true(v.b);
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, 2, &v), 0);
    assert_false(v.b);
    /* bit < 0: whole register */
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, -1, &v), 0);
    assert_true(v.b);
    assert_string_equal(fmt(v), "true");
    r = 0;
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, -1, &v), 0);
    assert_false(v.b);
    assert_string_equal(fmt(v), "false");
    assert_int_equal(codec_decode(&r, CT_BOOL, CO_ABCD, 0, 16, &v), -1);

    codec_value in = vb(true);
    r = 0x1234;
    assert_int_equal(codec_encode(&in, CT_BOOL, CO_ABCD, 0, &r), 0);
    assert_int_equal(r, 1);
    in = vb(false);
    assert_int_equal(codec_encode(&in, CT_BOOL, CO_ABCD, 0, &r), 0);
    assert_int_equal(r, 0);
    in = vi(1);
    assert_int_equal(codec_encode(&in, CT_BOOL, CO_ABCD, 0, &r), -1);
}

/* ---- strings ---- */

static void test_string_decode(void **state)
{
    (void)state;
    codec_value v;
    const uint16_t abc[] = { 0x4142, 0x4344 };
    assert_int_equal(codec_decode(abc, CT_STRING, CO_ABCD, 3, -1, &v), 0);
    assert_int_equal(v.kind, CV_STR);
    assert_string_equal(v.s, "ABC"); /* odd length: low byte of the last register unused */
    assert_int_equal(codec_decode(abc, CT_STRING, CO_DCBA, 4, -1, &v), 0);
    assert_string_equal(v.s, "ABCD"); /* full length, no NUL; order ignored */
    const uint16_t nul[] = { 0x4142, 0x0043 };
    assert_int_equal(codec_decode(nul, CT_STRING, CO_ABCD, 4, -1, &v), 0);
    assert_string_equal(v.s, "AB"); /* stops at the first NUL */
    const uint16_t lownul[] = { 0x4100, 0x4243 };
    assert_int_equal(codec_decode(lownul, CT_STRING, CO_ABCD, 4, -1, &v), 0);
    assert_string_equal(v.s, "A");
    const uint16_t sp[] = { 0x4120, 0x2020 };
    assert_int_equal(codec_decode(sp, CT_STRING, CO_ABCD, 4, -1, &v), 0);
    assert_string_equal(v.s, "A   "); /* trailing spaces kept */
    const uint16_t empty[] = { 0x0041 };
    assert_int_equal(codec_decode(empty, CT_STRING, CO_ABCD, 2, -1, &v), 0);
    assert_string_equal(v.s, "");
    assert_string_equal(fmt(v), "\"\"");

    uint16_t big[CODEC_STR_MAX / 2];
    for (size_t i = 0; i < CODEC_STR_MAX / 2; i++)
        big[i] = 0x7A7A;
    assert_int_equal(codec_decode(big, CT_STRING, CO_ABCD, CODEC_STR_MAX, -1, &v), 0);
    assert_int_equal(strlen(v.s), CODEC_STR_MAX);
    assert_int_equal(codec_decode(big, CT_STRING, CO_ABCD, 0, -1, &v), -1);
    assert_int_equal(codec_decode(big, CT_STRING, CO_ABCD, CODEC_STR_MAX + 1, -1, &v), -1);
}

static void test_string_encode(void **state)
{
    (void)state;
    uint16_t regs[4] = { 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF };
    codec_value in = vs("ABC");
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, 3, regs), 0);
    assert_int_equal(regs[0], 0x4142);
    assert_int_equal(regs[1], 0x4300);
    assert_int_equal(regs[2], 0xFFFF);

    in = vs("A");
    assert_int_equal(codec_encode(&in, CT_STRING, CO_CDAB, 8, regs), 0);
    assert_int_equal(regs[0], 0x4100);
    assert_int_equal(regs[1], 0);
    assert_int_equal(regs[2], 0);
    assert_int_equal(regs[3], 0);

    in = vs("ABCDEFGH");
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, 8, regs), 0);
    codec_value out;
    assert_int_equal(codec_decode(regs, CT_STRING, CO_ABCD, 8, -1, &out), 0);
    assert_string_equal(out.s, "ABCDEFGH");

    in = vs("\xC3\xA9t\xC3\xA9");
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, 7, regs), 0);
    assert_int_equal(codec_decode(regs, CT_STRING, CO_ABCD, 7, -1, &out), 0);
    assert_string_equal(out.s, in.s);

    in = vs("ABCDE");
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, 4, regs), -1); /* too long */
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, 0, regs), -1);
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, CODEC_STR_MAX + 1, regs), -1);

    uint16_t big[CODEC_STR_MAX / 2];
    memset(in.s, 'x', CODEC_STR_MAX);
    in.s[CODEC_STR_MAX] = '\0';
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, CODEC_STR_MAX, big), 0);
    assert_int_equal(big[CODEC_STR_MAX / 2 - 1], 0x7878);

    in = vi(1);
    assert_int_equal(codec_encode(&in, CT_STRING, CO_ABCD, 4, regs), -1);
}

static void test_string_format(void **state)
{
    (void)state;
    static const struct { const char *in, *out; } cases[] = {
        { "plain", "\"plain\"" },
        { "say \"hi\"", "\"say \\\"hi\\\"\"" },
        { "a\\b", "\"a\\\\b\"" },
        { "\x01\n\t\x1f", "\"\\u0001\\u000a\\u0009\\u001f\"" },
        { "del\x7f", "\"del\x7f\"" },
        { "caf\xC3\xA9", "\"caf\xC3\xA9\"" },                    /* U+00E9 */
        { "\xE2\x82\xAC", "\"\xE2\x82\xAC\"" },                  /* U+20AC */
        { "\xE0\xA4\x85", "\"\xE0\xA4\x85\"" },                  /* U+0905 */
        { "\xED\x9F\xBF", "\"\xED\x9F\xBF\"" },                  /* U+D7FF */
        { "\xF0\x9F\x98\x80", "\"\xF0\x9F\x98\x80\"" },          /* U+1F600 */
        { "\xF4\x8F\xBF\xBF", "\"\xF4\x8F\xBF\xBF\"" },          /* U+10FFFF */
        { "\xF3\xA0\x80\x81", "\"\xF3\xA0\x80\x81\"" },          /* U+E0001 */
        { "a\x80z", "\"a\xEF\xBF\xBDz\"" },                      /* lone continuation */
        { "\xC0\xAF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\"" },          /* overlong '/' */
        { "\xC1\xBF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\"" },
        { "\xE0\x80\xAF", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"" }, /* overlong */
        { "\xED\xA0\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"" }, /* surrogate */
        { "\xF0\x80\x80\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"" },
        { "\xF4\x90\x80\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"" },
        { "\xF5\x80", "\"\xEF\xBF\xBD\xEF\xBF\xBD\"" },
        { "\xFF", "\"\xEF\xBF\xBD\"" },
        { "x\xE2\x82", "\"x\xEF\xBF\xBD\xEF\xBF\xBD\"" },         /* truncated at the end */
        { "\xE2\x82" "A", "\"\xEF\xBF\xBD\xEF\xBF\xBD" "A\"" },   /* bad third byte */
        { "\xF0\x9F\x98" "A", "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "A\"" },
        { "\xC3" "A", "\"\xEF\xBF\xBD" "A\"" },                   /* bad second byte */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_equal(fmt(vs(cases[i].in)), cases[i].out);

    /* An unterminated s[] is read up to its size, no further. */
    codec_value v = { .kind = CV_STR };
    memset(v.s, 'q', sizeof v.s);
    const char *out = fmt(v);
    assert_int_equal(strlen(out), CODEC_STR_MAX + 1 + 2);

    /* Worst case: every byte escaped as \u00XX. */
    memset(v.s, 0x01, CODEC_STR_MAX);
    v.s[CODEC_STR_MAX] = '\0';
    char buf[6 * CODEC_STR_MAX + 3];
    assert_int_equal(codec_format(&v, buf, sizeof buf), 6 * CODEC_STR_MAX + 2);
    assert_int_equal(codec_format(&v, buf, sizeof buf - 1), -1);
}

/* ---- number formatting ---- */

static void test_format_ints(void **state)
{
    (void)state;
    assert_string_equal(fmt(vi(0)), "0");
    assert_string_equal(fmt(vi(-1)), "-1");
    assert_string_equal(fmt(vi(INT64_MIN)), "-9223372036854775808");
    assert_string_equal(fmt(vi(INT64_MAX)), "9223372036854775807");
    assert_string_equal(fmt(vu(UINT64_MAX)), "18446744073709551615");
    assert_string_equal(fmt(vu(0)), "0");
    codec_value none = { .kind = CV_NONE };
    assert_string_equal(fmt(none), "null");
}

static void test_format_f32(void **state)
{
    (void)state;
    static const struct { float f; const char *s; } cases[] = {
        { 123.456f, "123.456" },
        { 0.1f, "0.1" },
        { 1e-7f, "1e-7" },
        { 1e-6f, "0.000001" },
        { 1.5e-6f, "0.0000015" },
        { 3.0f, "3" },
        { -3.0f, "-3" },
        { 100.0f, "100" },
        { 0.0f, "0" },
        { -0.0f, "-0" },
        { 0.5f, "0.5" },
        { 16777216.0f, "16777216" },
        { 1e20f, "100000000000000000000" },
        { 1e21f, "1e+21" },
        { 1.5e30f, "1.5e+30" },
        { FLT_MAX, "3.4028235e+38" },
        { FLT_MIN, "1.1754944e-38" },
        { FLT_TRUE_MIN, "1e-45" },
        { -FLT_TRUE_MIN, "-1e-45" },
        { 21.5f, "21.5" },
        { 1.1f, "1.1" },
        { 3.14159274f, "3.1415927" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_equal(fmt(vf(cases[i].f)), cases[i].s);
    assert_string_equal(fmt(vf(NAN)), "null");
    assert_string_equal(fmt(vf(-NAN)), "null");
    assert_string_equal(fmt(vf(INFINITY)), "null");
    assert_string_equal(fmt(vf(-INFINITY)), "null");
}

static void test_format_f64(void **state)
{
    (void)state;
    static const struct { double d; const char *s; } cases[] = {
        { 0.1, "0.1" },
        { 0.1 + 0.2, "0.30000000000000004" },
        { 123.456, "123.456" },
        { 1e20, "100000000000000000000" },
        { 1e21, "1e+21" },
        { 1e-7, "1e-7" },
        { 1.25e-6, "0.00000125" },
        { 3.0, "3" },
        { -0.0, "-0" },
        { 9007199254740993.0, "9007199254740992" },
        { DBL_MAX, "1.7976931348623157e+308" },
        { -DBL_MAX, "-1.7976931348623157e+308" },
        { DBL_TRUE_MIN, "5e-324" },
        { DBL_MIN, "2.2250738585072014e-308" },
        { (double)123.456f, "123.45600128173828" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_string_equal(fmt(vd(cases[i].d)), cases[i].s);
    assert_string_equal(fmt(vd(NAN)), "null");
    assert_string_equal(fmt(vd(-INFINITY)), "null");
}

static void test_format_real(void **state)
{
    (void)state;
    assert_string_equal(fmt(vr(215 * 0.1)), "21.5");
    assert_string_equal(fmt(vr(0.1 + 0.2)), "0.3");
    assert_string_equal(fmt(vr(1.0 / 3)), "0.333333333333333");
    assert_string_equal(fmt(vr(-2.5)), "-2.5");
    assert_string_equal(fmt(vr(0)), "0");
    assert_string_equal(fmt(vr(1e300)), "1e+300");
    assert_string_equal(fmt(vr(123456789012345678.0)), "123456789012346000");
    assert_string_equal(fmt(vr(1e-10)), "1e-10");
    assert_string_equal(fmt(vr(NAN)), "null");
    assert_string_equal(fmt(vr(INFINITY)), "null");
}

/* Every finite float32 prints as valid JSON that reads back bit for bit,
 * with no more digits than needed. */
static void test_format_f32_random(void **state)
{
    (void)state;
    for (int n = 0; n < 200000; n++) {
        float f = f32_bits((uint32_t)rnd());
        if (!isfinite(f))
            continue;
        const char *s = fmt(vf(f));
        assert_true(json_number(s));
        assert_int_equal(bits_f32(strtof(s, NULL)), bits_f32(f));
        char shorter[64];
        for (int p = 1; p <= 9; p++) {
            snprintf(shorter, sizeof shorter, "%.*e", p - 1, (double)f);
            if (strtof(shorter, NULL) == f) {
                /* our output has exactly p significant digits */
                const char *a = s + (*s == '-');
                char digits[64];
                int k = 0;
                for (; *a && *a != 'e'; a++)
                    if (*a >= '0' && *a <= '9' && (k > 0 || *a != '0'))
                        digits[k++] = *a;
                while (k > 1 && digits[k - 1] == '0')
                    k--;
                assert_true(k == p || (f == 0 && k == 0));
                break;
            }
        }
    }
}

static void test_format_f64_random(void **state)
{
    (void)state;
    for (int n = 0; n < 100000; n++) {
        double d = f64_bits(rnd());
        if (!isfinite(d))
            continue;
        const char *s = fmt(vd(d));
        assert_true(json_number(s));
        assert_true(bits_f64(strtod(s, NULL)) == bits_f64(d));
        assert_true(strlen(s) <= 25); /* -0.00000dddddddddddddddd */
        d = (double)(rnd() % 2000000) / 1000.0; /* typical process values */
        s = fmt(vd(d));
        assert_true(json_number(s));
        assert_true(strtod(s, NULL) == d);
        s = fmt(vr(d * 0.1 + 3));
        assert_true(json_number(s));
    }
}

static void test_format_buffer(void **state)
{
    (void)state;
    char buf[16];
    codec_value v = vf(123.456f);
    assert_int_equal(codec_format(&v, buf, 8), 7);
    assert_string_equal(buf, "123.456");
    assert_int_equal(codec_format(&v, buf, 7), -1);
    assert_string_equal(buf, "");
    assert_int_equal(codec_format(&v, NULL, 0), -1);
    v = vb(false);
    assert_int_equal(codec_format(&v, buf, 6), 5);
    assert_int_equal(codec_format(&v, buf, 5), -1);
    v = vs("abc");
    assert_int_equal(codec_format(&v, buf, 6), 5);
    assert_string_equal(buf, "\"abc\"");
    assert_int_equal(codec_format(&v, buf, 5), -1);
    v.kind = (codec_kind)99;
    assert_int_equal(codec_format(&v, buf, sizeof buf), -1);
}

/* ---- decode / encode errors ---- */

static void test_codec_errors(void **state)
{
    (void)state;
    uint16_t regs[4] = { 0 };
    codec_value v;
    assert_int_equal(codec_decode(regs, CT_FLOAT32, (codec_order)4, 0, -1, &v), -1);
    assert_int_equal(codec_decode(regs, (codec_type)10, CO_ABCD, 0, -1, &v), -1);

    codec_value in = vf(1.0f);
    assert_int_equal(codec_encode(&in, CT_FLOAT32, (codec_order)7, 0, regs), -1);
    assert_int_equal(codec_encode(&in, CT_FLOAT64, CO_ABCD, 0, regs), -1);
    in = vd(1.0);
    assert_int_equal(codec_encode(&in, CT_FLOAT32, CO_ABCD, 0, regs), -1);
    in = vi(1);
    assert_int_equal(codec_encode(&in, CT_UINT16, CO_ABCD, 0, regs), -1);
    in = vu(1);
    assert_int_equal(codec_encode(&in, CT_INT32, CO_ABCD, 0, regs), -1);
    in.kind = CV_NONE;
    assert_int_equal(codec_encode(&in, (codec_type)10, CO_ABCD, 0, regs), -1);
    in = vr(1);
    assert_int_equal(codec_encode(&in, CT_FLOAT64, CO_ABCD, 0, regs), -1);

    /* values that do not fit the register type */
    static const struct { codec_value v; codec_type t; } bad[] = {
        { { .kind = CV_INT, .i = INT16_MAX + 1 }, CT_INT16 },
        { { .kind = CV_INT, .i = INT16_MIN - 1 }, CT_INT16 },
        { { .kind = CV_UINT, .u = UINT16_MAX + 1 }, CT_UINT16 },
        { { .kind = CV_INT, .i = (int64_t)INT32_MAX + 1 }, CT_INT32 },
        { { .kind = CV_INT, .i = (int64_t)INT32_MIN - 1 }, CT_INT32 },
        { { .kind = CV_UINT, .u = (uint64_t)UINT32_MAX + 1 }, CT_UINT32 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(codec_encode(&bad[i].v, bad[i].t, CO_ABCD, 0, regs), -1);
}

/* ---- scale / number / unscale ---- */

static void test_number(void **state)
{
    (void)state;
    assert_true(codec_number(&(codec_value){ .kind = CV_BOOL, .b = true }) == 1);
    assert_true(codec_number(&(codec_value){ .kind = CV_BOOL, .b = false }) == 0);
    assert_true(codec_number(&(codec_value){ .kind = CV_INT, .i = -7 }) == -7);
    assert_true(codec_number(&(codec_value){ .kind = CV_UINT, .u = UINT64_MAX }) == 18446744073709551616.0);
    assert_true(codec_number(&(codec_value){ .kind = CV_F32, .f32 = 0.5f }) == 0.5);
    assert_true(codec_number(&(codec_value){ .kind = CV_F64, .f64 = 0.1 }) == 0.1);
    assert_true(codec_number(&(codec_value){ .kind = CV_REAL, .f64 = 21.5 }) == 21.5);
    assert_true(isnan(codec_number(&(codec_value){ .kind = CV_STR })));
    assert_true(isnan(codec_number(&(codec_value){ .kind = CV_NONE })));
    assert_true(isnan(codec_number(&(codec_value){ .kind = (codec_kind)99 })));
}

static void test_scale(void **state)
{
    (void)state;
    codec_value raw = vf(123.456f), eng;
    codec_scale(&raw, 1, 0, &eng);
    assert_int_equal(eng.kind, CV_F32); /* unscaled keeps its kind and format */
    assert_string_equal(fmt(eng), "123.456");

    raw = vi(215);
    codec_scale(&raw, 0.1, 0, &eng);
    assert_int_equal(eng.kind, CV_REAL);
    assert_string_equal(fmt(eng), "21.5");

    raw = vi(-40);
    codec_scale(&raw, 1, 273.15, &eng);
    assert_string_equal(fmt(eng), "233.15");

    raw = vu(1000);
    codec_scale(&raw, 0.01, -5, &eng);
    assert_string_equal(fmt(eng), "5");

    raw = vd(2.5);
    codec_scale(&raw, 2, 0, &eng);
    assert_int_equal(eng.kind, CV_REAL);
    assert_string_equal(fmt(eng), "5");

    raw = vi(7);
    codec_scale(&raw, 1, 0, &eng);
    assert_int_equal(eng.kind, CV_INT);
    assert_true(eng.i == 7);

    raw = vb(true);
    codec_scale(&raw, 10, 1, &eng);
    assert_int_equal(eng.kind, CV_BOOL);
    assert_true(eng.b);

    raw = vs("txt");
    codec_scale(&raw, 10, 1, &eng);
    assert_int_equal(eng.kind, CV_STR);
    assert_string_equal(eng.s, "txt");

    raw.kind = CV_NONE;
    codec_scale(&raw, 10, 1, &eng);
    assert_int_equal(eng.kind, CV_NONE);

    /* in place */
    raw = vi(3);
    codec_scale(&raw, 1, 0, &raw);
    assert_int_equal(raw.kind, CV_INT);
    codec_scale(&raw, 0.5, 0, &raw);
    assert_int_equal(raw.kind, CV_REAL);
    assert_true(raw.f64 == 1.5);
}

static void unscale_ok(double eng, double scale, double offset, codec_type t,
                       codec_value *raw)
{
    char detail[128] = "junk";
    assert_int_equal(codec_unscale(eng, scale, offset, t, raw, detail, sizeof detail), 0);
    assert_string_equal(detail, "");
}

static void unscale_err(double eng, double scale, double offset, codec_type t,
                        const char *want)
{
    char detail[128] = "";
    codec_value raw = vi(5);
    assert_int_equal(codec_unscale(eng, scale, offset, t, &raw, detail, sizeof detail), -1);
    assert_int_equal(raw.kind, CV_NONE);
    assert_string_equal(detail, want);
}

static void test_unscale_ok(void **state)
{
    (void)state;
    codec_value raw;
    unscale_ok(21.5, 0.1, 0, CT_INT16, &raw);
    assert_int_equal(raw.kind, CV_INT);
    assert_true(raw.i == 215);
    unscale_ok(-21.5, 0.1, 0, CT_INT16, &raw);
    assert_true(raw.i == -215);
    unscale_ok(233.15, 1, 273.15, CT_INT16, &raw);
    assert_true(raw.i == -40);
    unscale_ok(0, 1, 0, CT_UINT16, &raw);
    assert_int_equal(raw.kind, CV_UINT);
    assert_true(raw.u == 0);
    unscale_ok(-0.0, 1, 0, CT_UINT16, &raw);
    assert_true(raw.u == 0);
    unscale_ok(65535, 1, 0, CT_UINT16, &raw);
    assert_true(raw.u == 65535);
    unscale_ok(-32768, 1, 0, CT_INT16, &raw);
    assert_true(raw.i == INT16_MIN);
    unscale_ok(32767, 1, 0, CT_INT16, &raw);
    assert_true(raw.i == INT16_MAX);
    unscale_ok(-2147483648.0, 1, 0, CT_INT32, &raw);
    assert_true(raw.i == INT32_MIN);
    unscale_ok(2147483647.0, 1, 0, CT_INT32, &raw);
    assert_true(raw.i == INT32_MAX);
    unscale_ok(4294967295.0, 1, 0, CT_UINT32, &raw);
    assert_true(raw.u == UINT32_MAX);
    unscale_ok(-9223372036854775808.0, 1, 0, CT_INT64, &raw);
    assert_true(raw.i == INT64_MIN);
    unscale_ok(9223372036854774784.0, 1, 0, CT_INT64, &raw); /* largest double < 2^63 */
    assert_true(raw.i == 9223372036854774784);
    unscale_ok(18446744073709549568.0, 1, 0, CT_UINT64, &raw); /* largest double < 2^64 */
    assert_true(raw.u == 18446744073709549568u);
    unscale_ok(1 + 1e-12, 1, 0, CT_INT32, &raw); /* within 1e-9: whole */
    assert_true(raw.i == 1);
    unscale_ok(1e12 + 0.0005, 1, 0, CT_INT64, &raw); /* relative tolerance */
    assert_true(raw.i == 1000000000000);

    unscale_ok(123.456, 1, 0, CT_FLOAT32, &raw);
    assert_int_equal(raw.kind, CV_F32);
    assert_int_equal(bits_f32(raw.f32), 0x42F6E979);
    unscale_ok(FLT_MAX, 1, 0, CT_FLOAT32, &raw);
    assert_true(raw.f32 == FLT_MAX);
    unscale_ok(-FLT_MAX, 1, 0, CT_FLOAT32, &raw);
    unscale_ok(1e-50, 1, 0, CT_FLOAT32, &raw); /* underflows to 0: still a float */
    assert_true(raw.f32 == 0);
    unscale_ok(21.5, 0.5, 1, CT_FLOAT64, &raw);
    assert_int_equal(raw.kind, CV_F64);
    assert_true(raw.f64 == 41);
    unscale_ok(DBL_MAX, 1, 0, CT_FLOAT64, &raw);
    assert_true(raw.f64 == DBL_MAX);

    unscale_ok(1, 1, 0, CT_BOOL, &raw);
    assert_int_equal(raw.kind, CV_BOOL);
    assert_true(raw.b);
    unscale_ok(0, 10, 5, CT_BOOL, &raw); /* bools are never scaled */
    assert_false(raw.b);

    /* round trip with codec_scale: raw 215 * 0.1 -> 21.5 -> raw 215 */
    codec_value r215 = vi(215), eng;
    codec_scale(&r215, 0.1, 0, &eng);
    unscale_ok(codec_number(&eng), 0.1, 0, CT_INT16, &raw);
    assert_true(raw.i == 215);
    for (int i = -32768; i <= 32767; i += 7) {
        codec_value ri = vi(i);
        codec_scale(&ri, 0.1, 0, &eng);
        unscale_ok(codec_number(&eng), 0.1, 0, CT_INT16, &raw);
        assert_true(raw.i == i);
    }

    /* detail may be absent */
    assert_int_equal(codec_unscale(5, 1, 0, CT_UINT16, &raw, NULL, 0), 0);
    assert_int_equal(codec_unscale(5.5, 1, 0, CT_UINT16, &raw, NULL, 0), -1);
    char d1[1] = { 'x' };
    assert_int_equal(codec_unscale(5.5, 1, 0, CT_UINT16, &raw, d1, 0), -1);
    assert_int_equal(codec_unscale(5, 1, 0, CT_UINT16, &raw, d1, 0), 0);
    assert_int_equal(d1[0], 'x');
}

/* Regression (fuzz): 15 digits rounded a value near DBL_MAX past it, and
 * the JSON number read back as infinity. */
static void test_real_near_dbl_max(void **state)
{
    (void)state;
    char buf[64];
    codec_value v = { .kind = CV_REAL, .f64 = DBL_MAX };
    assert_true(codec_format(&v, buf, sizeof buf) > 0);
    assert_true(isfinite(strtod(buf, NULL)));
    assert_true(strtod(buf, NULL) == DBL_MAX);
}

static void test_unscale_errors(void **state)
{
    (void)state;
    unscale_err(NAN, 1, 0, CT_INT16, "value is not a finite number");
    unscale_err(INFINITY, 1, 0, CT_FLOAT64, "value is not a finite number");
    unscale_err(-INFINITY, 1, 0, CT_FLOAT32, "value is not a finite number");
    unscale_err(1.5, 1, 0, CT_INT16, "1.5 is not a whole number for int16");
    unscale_err(0.5, 1, 0, CT_UINT64, "0.5 is not a whole number for uint64");
    unscale_err(21.55, 0.1, 0, CT_INT16, "21.55 (raw 215.5) is not a whole number for int16");
    unscale_err(70000, 1, 0, CT_UINT16, "70000 > uint16 max 65535");
    unscale_err(65536, 1, 0, CT_UINT16, "65536 > uint16 max 65535");
    unscale_err(-1, 1, 0, CT_UINT16, "-1 < uint16 min 0");
    unscale_err(32768, 1, 0, CT_INT16, "32768 > int16 max 32767");
    unscale_err(-32769, 1, 0, CT_INT16, "-32769 < int16 min -32768");
    unscale_err(3277, 0.1, 0, CT_INT16, "3277 (raw 32770) > int16 max 32767");
    unscale_err(2147483648.0, 1, 0, CT_INT32, "2147483648 > int32 max 2147483647");
    unscale_err(-2147483649.0, 1, 0, CT_INT32, "-2147483649 < int32 min -2147483648");
    unscale_err(4294967296.0, 1, 0, CT_UINT32, "4294967296 > uint32 max 4294967295");
    unscale_err(-1, 1, 0, CT_UINT32, "-1 < uint32 min 0");
    unscale_err(9223372036854775808.0, 1, 0, CT_INT64,
                "9223372036854775808 > int64 max 9223372036854775807");
    unscale_err(-9223372036854777856.0, 1, 0, CT_INT64,
                "-9223372036854777856 < int64 min -9223372036854775808");
    unscale_err(18446744073709551616.0, 1, 0, CT_UINT64,
                "18446744073709551616 > uint64 max 18446744073709551615");
    unscale_err(-1, 1, 0, CT_UINT64, "-1 < uint64 min 0");
    unscale_err(1e300, 1, 0, CT_INT64, "1e+300 > int64 max 9223372036854775807");
    unscale_err(1e39, 1, 0, CT_FLOAT32, "1e+39 is out of float32 range");
    unscale_err(-3.5e38, 1, 0, CT_FLOAT32, "-3.5e+38 is out of float32 range");
    unscale_err(5, 0, 0, CT_INT16, "5 has no finite raw value");
    unscale_err(DBL_MAX, 0.5, 0, CT_FLOAT64, "1.7976931348623157e+308 has no finite raw value");
    unscale_err(2, 1, 0, CT_BOOL, "2 is not 0 or 1 for bool");
    unscale_err(0.5, 1, 0, CT_BOOL, "0.5 is not 0 or 1 for bool");
    unscale_err(1, 1, 0, CT_STRING, "string is not a numeric type");
    unscale_err(1, 1, 0, (codec_type)10, "? is not a numeric type");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_order_names),
        cmocka_unit_test(test_regs),
        cmocka_unit_test(test_spec_float32_orders),
        cmocka_unit_test(test_64bit_orders),
        cmocka_unit_test(test_32bit_int_orders),
        cmocka_unit_test(test_roundtrip_ints),
        cmocka_unit_test(test_roundtrip_floats),
        cmocka_unit_test(test_registers_roundtrip),
        cmocka_unit_test(test_int16_negative),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_string_decode),
        cmocka_unit_test(test_string_encode),
        cmocka_unit_test(test_string_format),
        cmocka_unit_test(test_format_ints),
        cmocka_unit_test(test_format_f32),
        cmocka_unit_test(test_format_f64),
        cmocka_unit_test(test_format_real),
        cmocka_unit_test(test_format_f32_random),
        cmocka_unit_test(test_format_f64_random),
        cmocka_unit_test(test_format_buffer),
        cmocka_unit_test(test_codec_errors),
        cmocka_unit_test(test_number),
        cmocka_unit_test(test_scale),
        cmocka_unit_test(test_unscale_ok),
        cmocka_unit_test(test_unscale_errors),
        cmocka_unit_test(test_real_near_dbl_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
