/* fuzz_codec.c - libFuzzer target: the register codec (SPEC §3, §4).
 *
 * Input layout (missing bytes read as 0):
 *   [0] type (mod 11: one past CT_STRING tests the refusal path)
 *   [1] byte order (mod 5: one invalid)   [2] bit (int8)   [3..4] length
 *   [5..12] scale  [13..20] offset  [21..28] an engineering value (doubles)
 *   [29..]  registers, big-endian pairs
 * Every decoded value, raw and scaled, is formatted with codec_format into
 * buffers of every size up to its length (heap buffers of exactly that size,
 * so ASan sees any write past n) and must be valid JSON for jansson.
 * codec_unscale gets the arbitrary doubles for every type; what it accepts
 * must encode. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"

#define NREGS (CODEC_STR_MAX / 2 + 8)

typedef struct {
    const uint8_t *p;
    size_t n, off;
} rd;

static uint8_t u8(rd *r) { return r->off < r->n ? r->p[r->off++] : 0; }

static double dbl(rd *r)
{
    uint64_t w = 0;
    for (int i = 0; i < 8; i++)
        w = w << 8 | u8(r);
    double d;
    memcpy(&d, &w, sizeof d);
    return d;
}

/* FUZZ_TOLERATE_KNOWN=1: let the bug reported in issue #10 pass (CV_REAL
 * near DBL_MAX printed past it), so that a long run looks for new ones. */
static bool known;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    known = getenv("FUZZ_TOLERATE_KNOWN") != NULL;
    return 0;
}

static void must_be_json(const char *text, const codec_value *v)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j && json_error_code(&e) == json_error_numeric_overflow &&
        (v->kind == CV_UINT || v->kind == CV_F32 || v->kind == CV_F64 || v->kind == CV_REAL)) {
        /* valid JSON beyond jansson's json_int_t (uint64 past 2^63, or a
         * float printed in plain notation like 18446744000000000000, as
         * JavaScript does up to 1e21): read it as a real, as cli.c does */
        j = json_loads(text, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
        if (j && json_is_real(j)) {
            json_decref(j);
            return;
        }
    }
    if (!j && known && v->kind == CV_REAL && json_error_code(&e) == json_error_numeric_overflow)
        return;
    if (!j) {
        fprintf(stderr, "codec_format (kind %d) produced invalid JSON: %s\n  %s\n",
                v->kind, e.text, text);
        abort();
    }
    if (v->kind == CV_STR && !json_is_string(j))
        abort();
    if ((v->kind == CV_INT || v->kind == CV_UINT) && !json_is_integer(j))
        abort(); /* integers print as integers (SPEC §4) */
    json_decref(j);
}

static void check_format(const codec_value *v)
{
    char big[CODEC_STR_MAX * 6 + 64];
    int len = codec_format(v, big, sizeof big);
    if (len < 0 || (size_t)len != strlen(big)) {
        fprintf(stderr, "codec_format: %d for kind %d\n", len, v->kind);
        abort();
    }
    must_be_json(big, v);
    /* Short buffers: -1 and no write past n; exactly len + 1 fits. */
    for (size_t n = 0; n <= (size_t)len + 1; n += (n < 8 || n + 8 > (size_t)len) ? 1 : 7) {
        char *b = n ? malloc(n) : NULL;
        int r = codec_format(v, b, n);
        if (n <= (size_t)len ? r != -1 : (r != len || strcmp(b, big)))
            abort();
        free(b);
    }
    if (v->kind == CV_F32 || v->kind == CV_F64) {
        /* shortest round trip: the text reads back to the same value */
        double d = v->kind == CV_F32 ? (double)v->f32 : v->f64;
        if (isfinite(d)) {
            if (v->kind == CV_F32 ? strtof(big, NULL) != v->f32 : strtod(big, NULL) != d) {
                fprintf(stderr, "%s does not read back\n", big);
                abort();
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r = { data, size, 0 };
    uint16_t regs[NREGS] = { 0 };
    codec_value raw, eng;

    codec_type t = (codec_type)(u8(&r) % 11);
    codec_order o = (codec_order)(u8(&r) % 5);
    int bit = (int8_t)u8(&r);
    unsigned length = u8(&r);
    length = length << 8 | u8(&r);
    length %= CODEC_STR_MAX + 8;
    double scale = dbl(&r), offset = dbl(&r), x = dbl(&r);
    for (size_t i = 0; i < NREGS; i++) {
        regs[i] = (uint16_t)(u8(&r) << 8);
        regs[i] |= u8(&r);
    }

    memset(&raw, 0xA5, sizeof raw);
    unsigned need = codec_regs(t, length);
    if (need > NREGS)
        abort();
    if (codec_decode(regs, t, o, length, bit, &raw) == 0) {
        if (t > CT_STRING || o > CO_DCBA)
            abort(); /* an unsupported combination was accepted */
        if (raw.kind == CV_STR && strlen(raw.s) > length)
            abort();
        check_format(&raw);
        /* encode(decode(regs)) gives the registers back (bit-in-register
         * bools and strings cut at a NUL excepted) */
        uint16_t again[NREGS];
        if (t != CT_BOOL && t != CT_STRING) {
            if (codec_encode(&raw, t, o, length, again) != 0 ||
                memcmp(again, regs, need * sizeof *regs))
                abort();
        }
        if (t == CT_STRING && codec_encode(&raw, t, o, length, again) != 0)
            abort();
        codec_scale(&raw, scale, offset, &eng);
        check_format(&eng);
        codec_value self = raw;
        codec_scale(&self, scale, offset, &self); /* in place */
        if (self.kind != eng.kind)
            abort();
    }

    /* arbitrary doubles, every type */
    for (int k = 0; k <= CT_STRING + 1; k++) {
        char detail[256];
        codec_value u;
        uint16_t out[NREGS];
        memset(&u, 0x5A, sizeof u);
        detail[0] = '\0';
        if (codec_unscale(x, scale, offset, (codec_type)k, &u, detail, sizeof detail) == 0) {
            if (k >= CT_STRING)
                abort();
            if (codec_encode(&u, (codec_type)k, CO_ABCD, 0, out) != 0) {
                fprintf(stderr, "unscale(%.17g, %.17g, %.17g, %s) gives a raw value "
                        "codec_encode refuses\n", x, scale, offset,
                        codec_type_name((codec_type)k));
                abort();
            }
            check_format(&u);
        } else if (!detail[0] || u.kind != CV_NONE) {
            abort();
        }
    }
    return 0;
}
