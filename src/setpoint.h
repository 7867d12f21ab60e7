/* setpoint.h - validation of setpoint commands (SPEC §5).
 *
 * Pure logic: a command's payload is parsed (with jansson) and checked
 * against the tag and the setpoint policy; what comes out is the raw value
 * to write, or one of the SPEC §5 error codes with a human detail. Execution
 * (the Modbus write and read-back) belongs to the bus thread. */
#ifndef MBGATE_SETPOINT_H
#define MBGATE_SETPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"

#define SP_ID_MAX 128      /* longest accepted command id */
#define SP_PAYLOAD_MAX 4096 /* larger payloads are bad_payload */

typedef enum {
    SP_OK = 0,
    SP_DISABLED, SP_UNKNOWN_TAG, SP_NOT_WRITABLE, SP_BAD_PAYLOAD, SP_BAD_TYPE,
    SP_OUT_OF_RANGE, SP_NOT_REPRESENTABLE, SP_STALE, SP_RETAINED,
    SP_RATE_LIMITED, SP_DEVICE_DOWN, SP_TIMEOUT, SP_MODBUS_EXCEPTION,
    SP_VERIFY_FAILED
} sp_code;

/* "out_of_range" etc., as in SPEC §5. */
const char *setpoint_code_name(sp_code c);

typedef enum { SPV_BOOL, SPV_INT, SPV_REAL, SPV_STR } sp_vkind;

typedef struct {
    char id[SP_ID_MAX + 1]; /* "" when the command carried none */
    bool has_ts;
    int64_t ts;             /* ms since the epoch, from the JSON "ts" */
    sp_vkind kind;          /* the JSON value as sent */
    bool b;
    int64_t i;              /* SPV_INT: exact integer */
    double d;               /* SPV_INT and SPV_REAL: the number */
    char s[CODEC_STR_MAX + 1];
    codec_value raw;        /* filled by setpoint_check: what to write */
} sp_command;

/* Parse a payload: a bare JSON value (42, 21.5, true, "text") or an object
 * {"v":…, "id":"…", "ts":…}. Rejects empty, oversized (> SP_PAYLOAD_MAX),
 * invalid UTF-8, non-finite and malformed payloads as SP_BAD_PAYLOAD.
 * The id is filled as soon as it is known, so a rejection can carry it. */
sp_code setpoint_parse(const void *payload, size_t len, sp_command *cmd,
                       char *detail, size_t dlen);

typedef struct {
    bool enabled;          /* setpoints.enabled */
    bool accept_retained;  /* setpoints.accept_retained */
    unsigned max_age_s;    /* setpoints.max_age_s (0: no age check) */
    bool retained;         /* the MQTT message was retained */
    int64_t now_ms;        /* wall clock, ms since the epoch */
} sp_policy;

/* The checks that do not look at the payload, in this order: disabled,
 * unknown_tag (tag NULL), not_writable, retained. They come before the
 * payload's own (bad_payload): garbage sent to a read-only tag is
 * not_writable. */
sp_code setpoint_gate(const cfg_tag *tag, const sp_policy *policy, char *detail, size_t dlen);

/* Check a parsed command for tag (NULL: unknown_tag) under policy, in the
 * order: setpoint_gate's, then stale, bad_type,
 * out_of_range (min/max, engineering units), not_representable (raw type
 * after inverse scaling). On SP_OK cmd->raw holds the raw value. Details
 * read like "1600 > max 1500". Rate limiting is separate. */
sp_code setpoint_check(const cfg_tag *tag, const sp_policy *policy,
                       sp_command *cmd, char *detail, size_t dlen);

/* Per-tag rate limiter: a token bucket of max_rate commands per second
 * (burst max_rate). Returns true and takes a token when allowed. */
typedef struct {
    double tokens;
    int64_t last_ms;
    bool primed;
} sp_bucket;

bool setpoint_rate_ok(sp_bucket *b, unsigned max_rate, int64_t now_ms);

#endif
