/* setpoint.c - validation of setpoint commands (SPEC §5).
 *
 * Every rule here stands between an MQTT message and a write to a PLC, so
 * the parser is strict: anything ambiguous is refused with a detail that
 * tells the sender what to fix. */
#include "setpoint.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Doubles hold every integer below 2^53 exactly; above it a raw integer
 * computed through a double may not be the one the sender meant. */
#define EXACT_DOUBLE_LIMIT 9007199254740992.0 /* 2^53 */

const char *setpoint_code_name(sp_code c)
{
    switch (c) {
    case SP_OK: return "ok";
    case SP_DISABLED: return "disabled";
    case SP_UNKNOWN_TAG: return "unknown_tag";
    case SP_NOT_WRITABLE: return "not_writable";
    case SP_BAD_PAYLOAD: return "bad_payload";
    case SP_BAD_TYPE: return "bad_type";
    case SP_OUT_OF_RANGE: return "out_of_range";
    case SP_NOT_REPRESENTABLE: return "not_representable";
    case SP_STALE: return "stale";
    case SP_RETAINED: return "retained";
    case SP_RATE_LIMITED: return "rate_limited";
    case SP_DEVICE_DOWN: return "device_down";
    case SP_TIMEOUT: return "timeout";
    case SP_MODBUS_EXCEPTION: return "modbus_exception";
    case SP_VERIFY_FAILED: return "verify_failed";
    }
    return "unknown"; /* a value outside the enum: never crash a result */
}

/* Write a detail (callers may pass NULL/0 when they do not want one) and
 * return code, so every rejection is a one-liner. */
static sp_code fail(sp_code code, char *detail, size_t dlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static sp_code fail(sp_code code, char *detail, size_t dlen, const char *fmt, ...)
{
    if (detail && dlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, dlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- parsing ---------------------------------------------------------- */

static const char *json_kind_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* jansson's text names the problem ("real number overflow near '1e400'");
 * the prefix tells the sender which class of mistake it was. */
static sp_code json_failure(const json_error_t *err, char *detail, size_t dlen)
{
    const char *what = "invalid JSON";
    switch (json_error_code(err)) {
    case json_error_invalid_utf8: what = "invalid UTF-8"; break;
    case json_error_numeric_overflow: what = "number out of range"; break;
    case json_error_duplicate_key: what = "duplicate member"; break;
    default: break;
    }
    return fail(SP_BAD_PAYLOAD, detail, dlen, "%s: %s", what, err->text);
}

/* The value itself: a boolean, a finite number or a string. Containers and
 * null have no meaning as a register value. */
static sp_code parse_value(const json_t *v, sp_command *cmd, char *detail, size_t dlen)
{
    switch (json_typeof(v)) {
    case JSON_TRUE:
    case JSON_FALSE:
        cmd->kind = SPV_BOOL;
        cmd->b = json_is_true(v);
        return SP_OK;
    case JSON_INTEGER:
        cmd->kind = SPV_INT;
        cmd->i = json_integer_value(v);
        cmd->d = (double)cmd->i;
        return SP_OK;
    case JSON_REAL:
        cmd->kind = SPV_REAL;
        cmd->d = json_real_value(v);
        /* jansson refuses NaN/Infinity/1e400 already; keep the rule local */
        if (!isfinite(cmd->d))
            return fail(SP_BAD_PAYLOAD, detail, dlen, "value is not a finite number");
        return SP_OK;
    case JSON_STRING: {
        size_t n = json_string_length(v);
        if (n > CODEC_STR_MAX)
            return fail(SP_BAD_PAYLOAD, detail, dlen,
                        "string of %zu bytes exceeds %d", n, CODEC_STR_MAX);
        cmd->kind = SPV_STR;
        memcpy(cmd->s, json_string_value(v), n);
        cmd->s[n] = '\0';
        return SP_OK;
    }
    default:
        return fail(SP_BAD_PAYLOAD, detail, dlen,
                    "value must be a boolean, number or string, got %s",
                    json_kind_name(v));
    }
}

static sp_code parse_id(const json_t *id, sp_command *cmd, char *detail, size_t dlen)
{
    if (!json_is_string(id))
        return fail(SP_BAD_PAYLOAD, detail, dlen, "\"id\" must be a string, got %s",
                    json_kind_name(id));
    size_t n = json_string_length(id);
    if (n > SP_ID_MAX)
        return fail(SP_BAD_PAYLOAD, detail, dlen, "\"id\" of %zu bytes exceeds %d",
                    n, SP_ID_MAX);
    memcpy(cmd->id, json_string_value(id), n);
    cmd->id[n] = '\0';
    return SP_OK;
}

/* ms since the epoch: an integer as SPEC shows it, or a real such as
 * Python's time.time() * 1000 (its fraction of a millisecond is dropped). */
static sp_code parse_ts(const json_t *ts, sp_command *cmd, char *detail, size_t dlen)
{
    if (!json_is_number(ts))
        return fail(SP_BAD_PAYLOAD, detail, dlen,
                    "\"ts\" must be a number (ms since the epoch), got %s", json_kind_name(ts));
    if (json_number_value(ts) < 0)
        return fail(SP_BAD_PAYLOAD, detail, dlen, "\"ts\" must not be negative");
    if (json_is_real(ts) && json_real_value(ts) >= 9.2e18)
        return fail(SP_BAD_PAYLOAD, detail, dlen, "\"ts\" is out of range");
    cmd->has_ts = true;
    cmd->ts = json_is_integer(ts) ? json_integer_value(ts) : (int64_t)json_real_value(ts);
    return SP_OK;
}

/* {"v":…, "id":"…", "ts":…}. The id is taken first so that every later
 * rejection can still be correlated by the sender. Unknown members are
 * refused: a typo such as "value" must not pass as a command without "v". */
static sp_code parse_object(json_t *obj, sp_command *cmd, char *detail, size_t dlen)
{
    const json_t *id = json_object_get(obj, "id");
    if (id) {
        sp_code rc = parse_id(id, cmd, detail, dlen);
        if (rc != SP_OK)
            return rc;
    }
    const char *key;
    json_t *member;
    json_object_foreach(obj, key, member) {
        if (strcmp(key, "v") && strcmp(key, "id") && strcmp(key, "ts"))
            return fail(SP_BAD_PAYLOAD, detail, dlen,
                        "unknown member \"%s\" (expected v, id, ts)", key);
    }
    const json_t *ts = json_object_get(obj, "ts");
    if (ts) {
        sp_code rc = parse_ts(ts, cmd, detail, dlen);
        if (rc != SP_OK)
            return rc;
    }
    const json_t *v = json_object_get(obj, "v");
    if (!v)
        return fail(SP_BAD_PAYLOAD, detail, dlen, "object without \"v\"");
    return parse_value(v, cmd, detail, dlen);
}

sp_code setpoint_parse(const void *payload, size_t len, sp_command *cmd,
                       char *detail, size_t dlen)
{
    memset(cmd, 0, sizeof *cmd);
    cmd->raw.kind = CV_NONE;
    if (detail && dlen)
        detail[0] = '\0';

    if (!payload || len == 0)
        return fail(SP_BAD_PAYLOAD, detail, dlen, "empty payload");
    if (len > SP_PAYLOAD_MAX)
        return fail(SP_BAD_PAYLOAD, detail, dlen, "payload of %zu bytes exceeds %d",
                    len, SP_PAYLOAD_MAX);
    /* jansson stops at a NUL byte, so "1\0" would parse as 1: refuse it */
    if (memchr(payload, '\0', len))
        return fail(SP_BAD_PAYLOAD, detail, dlen, "payload contains a NUL byte");

    json_error_t err;
    json_t *root = json_loadb(payload, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    /* integers beyond int64 are still numbers: read them as reals, and let
     * the representability check decide */
    if (!root && json_error_code(&err) == json_error_numeric_overflow)
        root = json_loadb(payload, len,
                          JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    if (!root)
        return json_failure(&err, detail, dlen);
    sp_code rc = json_is_object(root) ? parse_object(root, cmd, detail, dlen)
                                      : parse_value(root, cmd, detail, dlen);
    json_decref(root);
    return rc;
}

/* ---- checking --------------------------------------------------------- */

static sp_code check_stale(const sp_policy *p, const sp_command *cmd,
                           char *detail, size_t dlen)
{
    if (!cmd->has_ts || p->max_age_s == 0)
        return SP_OK;
    /* doubles: no int64 overflow for absurd clocks, exact to the ms for
     * any realistic epoch */
    double age_ms = (double)p->now_ms - (double)cmd->ts;
    double max_ms = p->max_age_s * 1000.0;
    if (age_ms > max_ms)
        return fail(SP_STALE, detail, dlen, "command is %.1f s old (max %u s)",
                    age_ms / 1000.0, p->max_age_s);
    /* a sender whose clock runs ahead must not smuggle old commands in */
    if (-age_ms > max_ms)
        return fail(SP_STALE, detail, dlen, "command ts is %.1f s in the future (max %u s)",
                    -age_ms / 1000.0, p->max_age_s);
    return SP_OK;
}

static const char *cmd_kind_name(sp_vkind k)
{
    switch (k) {
    case SPV_BOOL: return "boolean";
    case SPV_INT:
    case SPV_REAL: return "number";
    case SPV_STR: return "string";
    }
    return "unknown";
}

/* Bool tags (coils, bits) take only true/false: a stray 0/1 or "on" is more
 * likely a wrong topic than an intended switch. */
static sp_code check_type(const cfg_tag *tag, const sp_command *cmd,
                          char *detail, size_t dlen)
{
    const char *want;
    bool ok;
    if (tag->type == CT_BOOL) {
        want = "a boolean";
        ok = cmd->kind == SPV_BOOL;
    } else if (tag->type == CT_STRING) {
        want = "a string";
        ok = cmd->kind == SPV_STR;
    } else {
        want = "a number";
        ok = cmd->kind == SPV_INT || cmd->kind == SPV_REAL;
    }
    if (ok)
        return SP_OK;
    return fail(SP_BAD_TYPE, detail, dlen, "expected %s for %s tag, got %s", want,
                codec_type_name(tag->type), cmd_kind_name(cmd->kind));
}

/* Exact comparison of an int64 with a double (-1, 0, 1): converting a large
 * i to double could round it onto the limit and let it through. */
static int cmp_int_double(int64_t i, double x)
{
    if (x >= 9223372036854775808.0) /* 2^63: above every int64 */
        return -1;
    if (x < -9223372036854775808.0)
        return 1;
    double fl = floor(x);
    int64_t f = (int64_t)fl;
    if (i != f)
        return i < f ? -1 : 1;
    return fl == x ? 0 : -1;
}

/* value <op> limit, exactly for integers; op is +1 for "above", -1 for "below" */
static bool beyond(const sp_command *cmd, double limit, int op)
{
    int c = cmd->kind == SPV_INT ? cmp_int_double(cmd->i, limit)
                                 : (cmd->d > limit) - (cmd->d < limit);
    return c == op;
}

static void format_value(const sp_command *cmd, char *buf, size_t n)
{
    if (cmd->kind == SPV_INT)
        snprintf(buf, n, "%" PRId64, cmd->i);
    else
        snprintf(buf, n, "%.15g", cmd->d);
}

static sp_code check_range(const cfg_tag *tag, const sp_command *cmd,
                           char *detail, size_t dlen)
{
    char v[32];
    format_value(cmd, v, sizeof v);
    if (tag->has_min && beyond(cmd, tag->min, -1))
        return fail(SP_OUT_OF_RANGE, detail, dlen, "%s < min %.15g", v, tag->min);
    if (tag->has_max && beyond(cmd, tag->max, +1))
        return fail(SP_OUT_OF_RANGE, detail, dlen, "%s > max %.15g", v, tag->max);
    return SP_OK;
}

static bool is_64bit_int(codec_type t)
{
    return t == CT_INT64 || t == CT_UINT64;
}

/* An integer command for an unscaled 64-bit tag is written as sent: going
 * through a double would turn 9007199254740993 into ...992. */
static sp_code exact_int64(const cfg_tag *tag, sp_command *cmd, char *detail, size_t dlen)
{
    if (tag->type == CT_INT64) {
        cmd->raw.kind = CV_INT;
        cmd->raw.i = cmd->i;
        return SP_OK;
    }
    if (cmd->i < 0)
        return fail(SP_NOT_REPRESENTABLE, detail, dlen, "%" PRId64 " < uint64 min 0", cmd->i);
    cmd->raw.kind = CV_UINT;
    cmd->raw.u = (uint64_t)cmd->i;
    return SP_OK;
}

/* Beyond 2^53 a raw integer computed in double arithmetic (scaling, or a
 * JSON real) can no longer be told apart from its neighbours. */
static bool exact_through_double(const codec_value *raw)
{
    if (raw->kind == CV_INT)
        return fabs((double)raw->i) < EXACT_DOUBLE_LIMIT;
    if (raw->kind == CV_UINT)
        return (double)raw->u < EXACT_DOUBLE_LIMIT;
    return true;
}

static sp_code to_raw_number(const cfg_tag *tag, sp_command *cmd, char *detail, size_t dlen)
{
    bool identity = tag->scale == 1.0 && tag->offset == 0.0;
    if (cmd->kind == SPV_INT && identity && is_64bit_int(tag->type))
        return exact_int64(tag, cmd, detail, dlen);

    char why[160] = "";
    if (codec_unscale(cmd->d, tag->scale, tag->offset, tag->type, &cmd->raw,
                      why, sizeof why) != 0) {
        cmd->raw.kind = CV_NONE;
        return fail(SP_NOT_REPRESENTABLE, detail, dlen, "%s", why);
    }
    if (is_64bit_int(tag->type) && !exact_through_double(&cmd->raw)) {
        cmd->raw.kind = CV_NONE;
        return fail(SP_NOT_REPRESENTABLE, detail, dlen,
                    "%.15g cannot be converted exactly to %s (raw beyond 2^53)",
                    cmd->d, codec_type_name(tag->type));
    }
    return SP_OK;
}

static sp_code to_raw_string(const cfg_tag *tag, sp_command *cmd, char *detail, size_t dlen)
{
    size_t n = strlen(cmd->s);
    if (n > tag->length)
        return fail(SP_NOT_REPRESENTABLE, detail, dlen,
                    "string of %zu bytes exceeds length %u", n, tag->length);
    cmd->raw.kind = CV_STR;
    memcpy(cmd->raw.s, cmd->s, n + 1);
    return SP_OK;
}

static sp_code to_raw(const cfg_tag *tag, sp_command *cmd, char *detail, size_t dlen)
{
    if (tag->type == CT_BOOL) {
        cmd->raw.kind = CV_BOOL;
        cmd->raw.b = cmd->b;
        return SP_OK;
    }
    if (tag->type == CT_STRING)
        return to_raw_string(tag, cmd, detail, dlen);
    return to_raw_number(tag, cmd, detail, dlen);
}

sp_code setpoint_gate(const cfg_tag *tag, const sp_policy *policy, char *detail, size_t dlen)
{
    if (detail && dlen)
        detail[0] = '\0';
    if (!policy->enabled)
        return fail(SP_DISABLED, detail, dlen, "setpoints are disabled (setpoints.enabled)");
    if (!tag)
        return fail(SP_UNKNOWN_TAG, detail, dlen, "no such tag");
    if (!tag->writable)
        return fail(SP_NOT_WRITABLE, detail, dlen, "tag %s is not writable", tag->name);
    if (policy->retained && !policy->accept_retained)
        return fail(SP_RETAINED, detail, dlen,
                    "retained command refused (setpoints.accept_retained is false)");
    return SP_OK;
}

sp_code setpoint_check(const cfg_tag *tag, const sp_policy *policy,
                       sp_command *cmd, char *detail, size_t dlen)
{
    cmd->raw.kind = CV_NONE;
    sp_code rc = setpoint_gate(tag, policy, detail, dlen);
    if (rc == SP_OK)
        rc = check_stale(policy, cmd, detail, dlen);
    if (rc == SP_OK)
        rc = check_type(tag, cmd, detail, dlen);
    if (rc == SP_OK && tag->type != CT_BOOL && tag->type != CT_STRING)
        rc = check_range(tag, cmd, detail, dlen);
    if (rc == SP_OK)
        rc = to_raw(tag, cmd, detail, dlen);
    return rc;
}

/* ---- rate limiting ---------------------------------------------------- */

bool setpoint_rate_ok(sp_bucket *b, unsigned max_rate, int64_t now_ms)
{
    if (max_rate == 0)
        return true;
    if (!b->primed) {
        b->tokens = max_rate;
        b->last_ms = now_ms;
        b->primed = true;
    }
    /* a clock stepped backwards only re-anchors: no refill, no lock-out */
    double elapsed = (double)now_ms - (double)b->last_ms;
    if (elapsed > 0)
        b->tokens += elapsed * max_rate / 1000.0;
    b->last_ms = now_ms;
    /* also caps a bucket left fuller by a larger max_rate */
    if (b->tokens > max_rate)
        b->tokens = max_rate;
    if (b->tokens < 1.0)
        return false;
    b->tokens -= 1.0;
    return true;
}
