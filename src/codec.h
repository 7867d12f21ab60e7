/* codec.h - register <-> value conversion and number formatting (SPEC §3, §4).
 *
 * Pure functions: no I/O, no allocation. Registers are host-order uint16_t
 * exactly as libmodbus returns them; byte orders follow SPEC §3, where
 * float32 123.456 = 0x42F6E979 reads as ABCD [0x42F6,0xE979],
 * CDAB [0xE979,0x42F6], BADC [0xF642,0x79E9], DCBA [0x79E9,0xF642]. */
#ifndef MBGATE_CODEC_H
#define MBGATE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CODEC_STR_MAX 256 /* longest string tag, in bytes */

typedef enum {
    CT_BOOL, CT_INT16, CT_UINT16, CT_INT32, CT_UINT32,
    CT_INT64, CT_UINT64, CT_FLOAT32, CT_FLOAT64, CT_STRING
} codec_type;

typedef enum { CO_ABCD, CO_CDAB, CO_BADC, CO_DCBA } codec_order;

/* A decoded value. Raw values keep their natural kind; scaled values
 * (scale != 1 or offset != 0) become CV_REAL. */
typedef enum {
    CV_NONE,   /* no value (bad quality) */
    CV_BOOL,
    CV_INT,    /* signed integer types */
    CV_UINT,   /* unsigned integer types */
    CV_F32,    /* float32, formatted as shortest float32 round trip */
    CV_F64,    /* float64, formatted as shortest double round trip */
    CV_REAL,   /* result of scaling, formatted with 15 significant digits */
    CV_STR
} codec_kind;

typedef struct {
    codec_kind kind;
    union {
        bool b;
        int64_t i;
        uint64_t u;
        float f32;
        double f64; /* CV_F64 and CV_REAL */
    };
    char s[CODEC_STR_MAX + 1]; /* CV_STR, NUL-terminated */
} codec_value;

/* Names as used in the config ("float32", "ABCD"); -1 when unknown. */
int codec_type_parse(const char *name, codec_type *out);
const char *codec_type_name(codec_type t);
int codec_order_parse(const char *name, codec_order *out);
const char *codec_order_name(codec_order o);

/* Registers a value of type t occupies (string: length bytes, 2 a register;
 * bool: 1, meaning one bit or one register holding a bit). */
unsigned codec_regs(codec_type t, unsigned length);

/* Decode registers into a raw value. For CT_BOOL the caller passes one
 * register and bit 0..15 (or bit < 0: non-zero register is true).
 * Strings: high byte first, stop at the first NUL, trailing spaces kept.
 * Returns 0, or -1 for an unsupported combination. */
int codec_decode(const uint16_t *regs, codec_type t, codec_order o,
                 unsigned length, int bit, codec_value *out);

/* Encode a raw value (kind matching t: CV_BOOL, CV_INT, CV_UINT, CV_F32,
 * CV_F64, CV_STR) into codec_regs(t, length) registers. Strings are padded
 * with NUL bytes. CT_BOOL writes 0 or 1 (bit-in-register writes are the
 * caller's read-modify-write). Returns 0, or -1 on a kind mismatch. */
int codec_encode(const codec_value *raw, codec_type t, codec_order o,
                 unsigned length, uint16_t *regs);

/* Engineering value = raw * scale + offset. With scale 1 and offset 0 the
 * value is copied unchanged; otherwise numbers become CV_REAL. */
void codec_scale(const codec_value *raw, double scale, double offset,
                 codec_value *eng);

/* The engineering value as a double (bool 0/1); NaN for strings/none. */
double codec_number(const codec_value *v);

/* Inverse of codec_scale for a write: the raw value for type t that
 * represents engineering value eng exactly. Integers must come out whole
 * (within 1e-9 relative) and in the type's range; float32 must be finite
 * and within float range. Returns 0, or -1 with a human detail
 * ("1.5 is not a whole int16", "70000 > int16 max 65535"). */
int codec_unscale(double eng, double scale, double offset, codec_type t,
                  codec_value *raw, char *detail, size_t dlen);

/* Write v as JSON text (number, true/false, escaped "string", or null for
 * CV_NONE). Numbers per SPEC §4: integers as integers, float32 as the
 * shortest decimal that reads back to the same float32, doubles likewise,
 * CV_REAL with at most 15 significant digits; non-finite prints null.
 * Returns the length written (like snprintf), or -1 if it did not fit. */
int codec_format(const codec_value *v, char *buf, size_t n);

#endif
