/* codec.c - register <-> value conversion and number formatting. */
#include "codec.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUM_MAX 40 /* longest number text we produce, with its NUL */

static const char *const type_names[] = {
    "bool", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "float32", "float64", "string"
};
static const char *const order_names[] = { "ABCD", "CDAB", "BADC", "DCBA" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int find_name(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (int)i;
    return -1;
}

int codec_type_parse(const char *name, codec_type *out)
{
    int i = find_name(type_names, COUNT(type_names), name);
    if (i < 0)
        return -1;
    *out = (codec_type)i;
    return 0;
}

const char *codec_type_name(codec_type t)
{
    return (unsigned)t < COUNT(type_names) ? type_names[t] : "?";
}

int codec_order_parse(const char *name, codec_order *out)
{
    int i = find_name(order_names, COUNT(order_names), name);
    if (i < 0)
        return -1;
    *out = (codec_order)i;
    return 0;
}

const char *codec_order_name(codec_order o)
{
    return (unsigned)o < COUNT(order_names) ? order_names[o] : "?";
}

unsigned codec_regs(codec_type t, unsigned length)
{
    switch (t) {
    case CT_BOOL: case CT_INT16: case CT_UINT16:
        return 1;
    case CT_INT32: case CT_UINT32: case CT_FLOAT32:
        return 2;
    case CT_INT64: case CT_UINT64: case CT_FLOAT64:
        return 4;
    case CT_STRING:
        return (length + 1) / 2;
    }
    return 0;
}

static codec_kind raw_kind(codec_type t)
{
    switch (t) {
    case CT_BOOL:
        return CV_BOOL;
    case CT_INT16: case CT_INT32: case CT_INT64:
        return CV_INT;
    case CT_UINT16: case CT_UINT32: case CT_UINT64:
        return CV_UINT;
    case CT_FLOAT32:
        return CV_F32;
    case CT_FLOAT64:
        return CV_F64;
    case CT_STRING:
        return CV_STR;
    }
    return CV_NONE;
}

static uint16_t swap16(uint16_t w)
{
    return (uint16_t)(w << 8 | w >> 8);
}

/* Word i of n is the i-th most significant 16 bits of the value (ABCD);
 * CDAB and DCBA put the least significant word first, BADC and DCBA swap
 * the bytes inside each word. */
static uint64_t get_words(const uint16_t *regs, unsigned n, codec_order o)
{
    bool rev = o == CO_CDAB || o == CO_DCBA;
    bool swap = o == CO_BADC || o == CO_DCBA;
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t w = regs[rev ? n - 1 - i : i];
        v = v << 16 | (swap ? swap16(w) : w);
    }
    return v;
}

static void put_words(uint64_t v, unsigned n, codec_order o, uint16_t *regs)
{
    bool rev = o == CO_CDAB || o == CO_DCBA;
    bool swap = o == CO_BADC || o == CO_DCBA;
    for (unsigned i = 0; i < n; i++) {
        uint16_t w = (uint16_t)(v >> 16 * (n - 1 - i));
        regs[rev ? n - 1 - i : i] = swap ? swap16(w) : w;
    }
}

static bool string_ok(unsigned length)
{
    return length > 0 && length <= CODEC_STR_MAX;
}

int codec_decode(const uint16_t *regs, codec_type t, codec_order o,
                 unsigned length, int bit, codec_value *out)
{
    if ((unsigned)o >= COUNT(order_names) || (t == CT_BOOL && bit > 15) ||
        (t == CT_STRING && !string_ok(length)) || raw_kind(t) == CV_NONE)
        return -1;
    out->kind = raw_kind(t);
    switch (t) {
    case CT_BOOL:
        out->b = bit < 0 ? regs[0] != 0 : (regs[0] >> bit & 1) != 0;
        break;
    case CT_INT16:
        out->i = (int16_t)regs[0];
        break;
    case CT_UINT16:
        out->u = regs[0];
        break;
    case CT_INT32:
        out->i = (int32_t)(uint32_t)get_words(regs, 2, o);
        break;
    case CT_UINT32:
        out->u = get_words(regs, 2, o);
        break;
    case CT_INT64:
        out->i = (int64_t)get_words(regs, 4, o);
        break;
    case CT_UINT64:
        out->u = get_words(regs, 4, o);
        break;
    case CT_FLOAT32: {
        uint32_t w = (uint32_t)get_words(regs, 2, o);
        memcpy(&out->f32, &w, sizeof w);
        break;
    }
    case CT_FLOAT64: {
        uint64_t w = get_words(regs, 4, o);
        memcpy(&out->f64, &w, sizeof w);
        break;
    }
    case CT_STRING: {
        unsigned i = 0;
        for (; i < length; i++) {
            uint16_t r = regs[i / 2];
            char c = (char)(i % 2 ? r & 0xFF : r >> 8);
            if (c == '\0')
                break;
            out->s[i] = c;
        }
        out->s[i] = '\0';
        break;
    }
    }
    return 0;
}

int codec_encode(const codec_value *raw, codec_type t, codec_order o,
                 unsigned length, uint16_t *regs)
{
    if ((unsigned)o >= COUNT(order_names) || raw->kind != raw_kind(t))
        return -1;
    switch (t) {
    case CT_BOOL:
        regs[0] = raw->b ? 1 : 0;
        return 0;
    case CT_INT16:
        if (raw->i < INT16_MIN || raw->i > INT16_MAX)
            return -1;
        regs[0] = (uint16_t)raw->i;
        return 0;
    case CT_UINT16:
        if (raw->u > UINT16_MAX)
            return -1;
        regs[0] = (uint16_t)raw->u;
        return 0;
    case CT_INT32:
        if (raw->i < INT32_MIN || raw->i > INT32_MAX)
            return -1;
        put_words((uint32_t)raw->i, 2, o, regs);
        return 0;
    case CT_UINT32:
        if (raw->u > UINT32_MAX)
            return -1;
        put_words(raw->u, 2, o, regs);
        return 0;
    case CT_INT64:
        put_words((uint64_t)raw->i, 4, o, regs);
        return 0;
    case CT_UINT64:
        put_words(raw->u, 4, o, regs);
        return 0;
    case CT_FLOAT32: {
        uint32_t w;
        memcpy(&w, &raw->f32, sizeof w);
        put_words(w, 2, o, regs);
        return 0;
    }
    case CT_FLOAT64: {
        uint64_t w;
        memcpy(&w, &raw->f64, sizeof w);
        put_words(w, 4, o, regs);
        return 0;
    }
    case CT_STRING: {
        size_t len = strnlen(raw->s, sizeof raw->s);
        /* Truncating a setpoint string would write something else. */
        if (!string_ok(length) || len > length)
            return -1;
        for (unsigned i = 0; i < codec_regs(t, length); i++) {
            unsigned char hi = 2 * i < len ? (unsigned char)raw->s[2 * i] : 0;
            unsigned char lo = 2 * i + 1 < len ? (unsigned char)raw->s[2 * i + 1] : 0;
            regs[i] = (uint16_t)(hi << 8 | lo);
        }
        return 0;
    }
    }
    return -1; /* unknown type: raw_kind gave CV_NONE and the kinds matched */
}

void codec_scale(const codec_value *raw, double scale, double offset,
                 codec_value *eng)
{
    /* Bools and strings have no scale; codec_unscale mirrors this. */
    if ((scale == 1 && offset == 0) || raw->kind == CV_NONE ||
        raw->kind == CV_BOOL || raw->kind == CV_STR) {
        if (eng != raw)
            *eng = *raw;
        return;
    }
    double d = codec_number(raw) * scale + offset;
    eng->kind = CV_REAL;
    eng->f64 = d;
}

double codec_number(const codec_value *v)
{
    switch (v->kind) {
    case CV_BOOL:
        return v->b ? 1 : 0;
    case CV_INT:
        return (double)v->i;
    case CV_UINT:
        return (double)v->u;
    case CV_F32:
        return v->f32;
    case CV_F64: case CV_REAL:
        return v->f64;
    case CV_NONE: case CV_STR:
        break;
    }
    return NAN;
}

/* Rewrites printf's "%e" text as a JSON number the way JavaScript prints
 * numbers: plain notation for exponents -6..20, else d.ddde+X. Done by hand
 * because the locale may make printf's decimal point a comma. */
static void layout(const char *e, char *out)
{
    char dig[NUM_MAX];
    int k = 0;
    if (*e == '-')
        *out++ = *e++;
    for (; *e != 'e'; e++)
        if (*e >= '0' && *e <= '9')
            dig[k++] = *e;
    int x = atoi(e + 1);
    while (k > 1 && dig[k - 1] == '0')
        k--;
    if (x < -6 || x > 20) {
        *out++ = dig[0];
        if (k > 1) {
            *out++ = '.';
            memcpy(out, dig + 1, (size_t)k - 1);
            out += k - 1;
        }
        snprintf(out, 16, "e%c%d", x < 0 ? '-' : '+', abs(x));
        return;
    }
    if (x < 0) {
        memcpy(out, "0.", 2);
        out += 2;
        for (int i = 0; i < -x - 1; i++)
            *out++ = '0';
    }
    for (int i = 0; i < k || i <= x; i++) {
        if (i == x + 1 && x >= 0)
            *out++ = '.';
        *out++ = i < k ? dig[i] : '0';
    }
    *out = '\0';
}

/* Shortest round trip for CV_F32 / CV_F64, 15 digits for CV_REAL. */
static void format_number(double d, codec_kind k, char *out)
{
    int maxp = k == CV_F32 ? 9 : k == CV_F64 ? 17 : 15;
    char e[NUM_MAX];
    for (int p = k == CV_REAL ? maxp : 1;; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (p == maxp ||
            (k == CV_F32 ? strtof(e, NULL) == (float)d : strtod(e, NULL) == d))
            break;
    }
    /* 15 digits can round a value near DBL_MAX up past it: use 17 */
    if (k == CV_REAL && isinf(strtod(e, NULL)))
        snprintf(e, sizeof e, "%.16e", d);
    layout(e, out);
}

typedef struct {
    char *buf;
    size_t n, len;
} sink;

static void put(sink *o, const void *s, size_t k)
{
    if (o->len + k < o->n)
        memcpy(o->buf + o->len, s, k);
    o->len += k;
}

/* Length of the valid UTF-8 sequence at s, 0 if invalid (overlongs,
 * surrogates and code points past U+10FFFF included). */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned lo = 0x80, hi = 0xBF;
    size_t k;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        k = 2;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        k = 3;
        lo = s[0] == 0xE0 ? 0xA0 : lo;
        hi = s[0] == 0xED ? 0x9F : hi;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        k = 4;
        lo = s[0] == 0xF0 ? 0x90 : lo;
        hi = s[0] == 0xF4 ? 0x8F : hi;
    } else {
        return 0;
    }
    if (avail < k || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return k;
}

/* PLC strings are arbitrary bytes; the JSON must stay valid anyway. */
static void put_string(sink *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t len = strnlen(str, CODEC_STR_MAX + 1);
    put(o, "\"", 1);
    for (size_t i = 0; i < len;) {
        size_t k = s[i] < 0x80 ? 1 : utf8_len(s + i, len - i);
        if (s[i] == '"' || s[i] == '\\') {
            char esc[2] = { '\\', (char)s[i] };
            put(o, esc, 2);
        } else if (s[i] < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", s[i]);
            put(o, esc, 6);
        } else if (k == 0) {
            put(o, "\xEF\xBF\xBD", 3); /* U+FFFD */
            k = 1;
        } else {
            put(o, s + i, k);
        }
        i += k;
    }
    put(o, "\"", 1);
}

int codec_format(const codec_value *v, char *buf, size_t n)
{
    sink o = { buf, n, 0 };
    char t[NUM_MAX];
    switch (v->kind) {
    case CV_NONE:
        put(&o, "null", 4);
        break;
    case CV_BOOL:
        put(&o, v->b ? "true" : "false", v->b ? 4 : 5);
        break;
    case CV_INT:
        put(&o, t, (size_t)snprintf(t, sizeof t, "%" PRId64, v->i));
        break;
    case CV_UINT:
        put(&o, t, (size_t)snprintf(t, sizeof t, "%" PRIu64, v->u));
        break;
    case CV_F32: case CV_F64: case CV_REAL: {
        double d = codec_number(v);
        if (!isfinite(d)) {
            put(&o, "null", 4);
            break;
        }
        format_number(d, v->kind, t);
        put(&o, t, strlen(t));
        break;
    }
    case CV_STR:
        put_string(&o, v->s);
        break;
    default:
        return -1;
    }
    if (o.len >= n) {
        if (n > 0)
            buf[0] = '\0';
        return -1;
    }
    buf[o.len] = '\0';
    return (int)o.len;
}

__attribute__((format(printf, 3, 4)))
static int fail(char *detail, size_t dlen, const char *fmt, ...)
{
    if (detail && dlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, dlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Whole numbers in full (64-bit limits need every digit), others as
 * CV_REAL would print them. */
static void number_text(double d, char *out)
{
    if (d == nearbyint(d) && fabs(d) < 1e21)
        snprintf(out, NUM_MAX, "%.0f", d);
    else
        format_number(d, CV_REAL, out);
}

static int unscale_int(double r, const char *what, codec_type t,
                       codec_value *raw, char *detail, size_t dlen)
{
    const char *name = codec_type_name(t);
    double n = nearbyint(r);
    if (fabs(r - n) > 1e-9 * fmax(1, fabs(r)))
        return fail(detail, dlen, "%s is not a whole number for %s", what, name);
    int bits = 16 * (int)codec_regs(t, 0);
    bool sign = raw_kind(t) == CV_INT;
    uint64_t max = UINT64_MAX >> (64 - bits + sign);
    double hi = ldexp(1, bits - sign); /* max + 1, exact in a double */
    if (sign && n < -hi)
        return fail(detail, dlen, "%s < %s min %" PRId64, what, name,
                    -(int64_t)max - 1);
    if (!sign && n < 0)
        return fail(detail, dlen, "%s < %s min 0", what, name);
    if (n >= hi)
        return fail(detail, dlen, "%s > %s max %" PRIu64, what, name, max);
    if (sign)
        raw->i = (int64_t)n;
    else
        raw->u = (uint64_t)n;
    return 0;
}

int codec_unscale(double eng, double scale, double offset, codec_type t,
                  codec_value *raw, char *detail, size_t dlen)
{
    codec_kind k = raw_kind(t);
    char a[NUM_MAX], b[NUM_MAX], what[2 * NUM_MAX + 16];
    raw->kind = CV_NONE;
    if (k == CV_NONE || k == CV_STR)
        return fail(detail, dlen, "%s is not a numeric type", codec_type_name(t));
    if (!isfinite(eng))
        return fail(detail, dlen, "value is not a finite number");
    number_text(eng, a);
    if (k == CV_BOOL) {
        /* codec_scale never scales bools, so neither do we. */
        if (eng != 0 && eng != 1)
            return fail(detail, dlen, "%s is not 0 or 1 for bool", a);
        raw->b = eng == 1;
    } else {
        double r = (eng - offset) / scale;
        if (!isfinite(r))
            return fail(detail, dlen, "%s has no finite raw value", a);
        number_text(r, b);
        if (scale == 1 && offset == 0)
            snprintf(what, sizeof what, "%s", a);
        else
            snprintf(what, sizeof what, "%s (raw %s)", a, b);
        if (k == CV_F32) {
            /* Checked before the cast: converting past FLT_MAX is undefined. */
            if (fabs(r) > FLT_MAX)
                return fail(detail, dlen, "%s is out of float32 range", what);
            raw->f32 = (float)r;
        } else if (k == CV_F64) {
            raw->f64 = r;
        } else if (unscale_int(r, what, t, raw, detail, dlen) != 0) {
            return -1;
        }
    }
    raw->kind = k;
    if (detail && dlen > 0)
        detail[0] = '\0';
    return 0;
}
