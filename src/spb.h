/* spb.h - Sparkplug B payloads (SPEC §8): encode and decode, no I/O.
 *
 * Wire format: org.eclipse.tahu.protobuf.Payload from the official Eclipse
 * Tahu sparkplug_b.proto (src/sparkplug_b.proto, compiled by protoc-c).
 * Values go where Eclipse Tahu and Ignition put them: Int8/16/32 and
 * UInt8/16 in int_value (signed types as 32-bit two's complement), UInt32,
 * Int64 and UInt64 in long_value, Float in float_value, Double in
 * double_value, Boolean in boolean_value, String in string_value. */
#ifndef MBGATE_SPB_H
#define MBGATE_SPB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"

/* Sparkplug 3.0 DataType values (the basic types; the rest is refused). */
enum {
    SPB_DT_UNKNOWN = 0,
    SPB_DT_INT8 = 1, SPB_DT_INT16, SPB_DT_INT32, SPB_DT_INT64,
    SPB_DT_UINT8, SPB_DT_UINT16, SPB_DT_UINT32, SPB_DT_UINT64,
    SPB_DT_FLOAT, SPB_DT_DOUBLE, SPB_DT_BOOLEAN, SPB_DT_STRING,
    SPB_DT_DATETIME, SPB_DT_TEXT
};

#define SPB_CMD_METRICS_MAX 1000 /* larger command payloads are refused */
#define SPB_QUALITY_GOOD 192
#define SPB_QUALITY_BAD 0

/* The Sparkplug datatype of a tag type; SPB_DT_UNKNOWN if t is invalid. */
uint32_t spb_datatype(codec_type t);

typedef struct {
    const char *name;          /* NULL in DATA messages: sent by alias only */
    bool has_alias;
    uint64_t alias;
    uint32_t datatype;         /* spb_datatype(), or Int64/Boolean/String etc.
                                  for node metrics (bdSeq, Rebirth, ...) */
    const codec_value *value;  /* NULL or CV_NONE: is_null = true */
    uint64_t timestamp;        /* ms since the epoch */
    bool is_historical;
    bool has_props;            /* add the properties below */
    const char *eng_unit;      /* "engUnit" (String), if non-NULL */
    int quality;               /* "Quality" (Int32): SPB_QUALITY_GOOD/BAD;
                                  -1: none */
} spb_metric;

/* Encode a payload with timestamp, seq (0..255; -1: no seq, as in NDEATH)
 * and n metrics. Every metric gets its timestamp; the datatype is written
 * with the name (births and deaths) and left out of alias-only metrics, as
 * Sparkplug 3.0 recommends for DATA messages. Values must suit the
 * datatype: CV_BOOL for Boolean; CV_INT or CV_UINT in range for the
 * integer types; CV_F32, CV_F64 or CV_REAL for Float (rounded to float)
 * and Double; CV_STR for String. Returns 0 with a malloc'd buffer in *out
 * (free() it), or -1 with errno EINVAL (bad seq, a metric with neither
 * name nor alias, a value that does not suit its datatype) or ENOMEM. */
int spb_encode(uint64_t timestamp, int seq, const spb_metric *m, size_t n,
               uint8_t **out, size_t *len);

typedef enum { SPB_BOOL, SPB_INT, SPB_UINT, SPB_DOUBLE, SPB_STRING } spb_kind;

/* A decoded command metric (NCMD/DCMD). */
typedef struct {
    char name[128];       /* "" when sent by alias only */
    bool has_alias;
    uint64_t alias;
    uint32_t datatype;    /* as sent, or inferred from the value field */
    bool is_null;         /* then kind and the value fields are unset */
    spb_kind kind;
    bool b;               /* SPB_BOOL */
    int64_t i;            /* SPB_INT: Int8..Int64 */
    uint64_t u;           /* SPB_UINT: UInt8..UInt64 */
    double d;             /* SPB_DOUBLE: Float (exactly) or Double */
    char s[CODEC_STR_MAX + 1]; /* SPB_STRING: String or Text, valid UTF-8 */
} spb_cmd;

/* Decode a command payload. Each metric needs a name or an alias and a
 * value in the field its datatype uses (integers are accepted from either
 * int_value or long_value, range-checked; Int8/Int16 also zero-extended);
 * with no datatype it is inferred from the field: int_value Int32,
 * long_value Int64, float_value Float, double_value Double, boolean_value
 * Boolean, string_value String. Returns the number of metrics with a
 * calloc'd array in *out (free() it; NULL when 0), or -1 with a message in
 * err: not a Sparkplug B payload, more than SPB_CMD_METRICS_MAX metrics, a
 * name over 127 bytes, a string over CODEC_STR_MAX bytes or not UTF-8, an
 * unsupported datatype, a missing or mismatched value. */
int spb_decode_cmd(const uint8_t *buf, size_t len, spb_cmd **out,
                   char *err, size_t errlen);

/* The command's value as JSON text for setpoint_parse(): true, -2, 42,
 * 21.5 (Float as the shortest float32 text), "txt" (escaped), null when
 * is_null. Returns the length (like snprintf) or -1 if it did not fit. */
int spb_cmd_json(const spb_cmd *c, char *buf, size_t n);

#endif
