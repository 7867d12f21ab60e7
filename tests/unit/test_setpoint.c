/* test_setpoint.c - setpoint parsing, validation and rate limiting (SPEC §5).
 *
 * Tags are built by hand, so no config file is involved. Details produced by
 * codec_unscale are only checked for being present: their wording belongs to
 * the codec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "setpoint.h"

#define NOW 1795743898123LL

static cfg_tag make_tag(codec_type type)
{
    cfg_tag t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "t_%s", codec_type_name(type));
    t.table = type == CT_BOOL ? TABLE_COIL : TABLE_HOLDING;
    t.bit = -1;
    t.type = type;
    t.order = CO_ABCD;
    t.length = type == CT_STRING ? 16 : 0;
    t.count = 1;
    t.scale = 1.0;
    t.offset = 0.0;
    t.writable = true;
    t.verify = true;
    return t;
}

static sp_policy make_policy(void)
{
    sp_policy p = { .enabled = true, .accept_retained = false, .max_age_s = 30,
                    .retained = false, .now_ms = NOW };
    return p;
}

/* Parse then, if that passed, check: the path an MQTT command takes. */
static sp_code run_policy(const cfg_tag *tag, const sp_policy *p, const char *payload,
                          sp_command *cmd, char *detail, size_t dlen)
{
    sp_code rc = setpoint_parse(payload, strlen(payload), cmd, detail, dlen);
    if (rc != SP_OK)
        return rc;
    return setpoint_check(tag, p, cmd, detail, dlen);
}

static sp_code run(const cfg_tag *tag, const char *payload, sp_command *cmd,
                   char *detail, size_t dlen)
{
    sp_policy p = make_policy();
    return run_policy(tag, &p, payload, cmd, detail, dlen);
}

/* Code of payload against a fresh tag of type; detail must be non-empty on
 * any rejection. */
static sp_code code_of(const cfg_tag *tag, const char *payload)
{
    sp_command cmd;
    char detail[256];
    sp_code rc = run(tag, payload, &cmd, detail, sizeof detail);
    if (rc != SP_OK)
        assert_true(detail[0] != '\0');
    else
        assert_int_not_equal(cmd.raw.kind, CV_NONE);
    return rc;
}

static sp_code parse_n(const char *payload, size_t len, sp_command *cmd, char *detail,
                       size_t dlen)
{
    return setpoint_parse(payload, len, cmd, detail, dlen);
}

static sp_code parse_s(const char *payload, sp_command *cmd, char *detail, size_t dlen)
{
    return parse_n(payload, strlen(payload), cmd, detail, dlen);
}

/* ---- names ------------------------------------------------------------ */

static void test_code_names(void **state)
{
    (void)state;
    assert_string_equal(setpoint_code_name(SP_OK), "ok");
    assert_string_equal(setpoint_code_name(SP_DISABLED), "disabled");
    assert_string_equal(setpoint_code_name(SP_UNKNOWN_TAG), "unknown_tag");
    assert_string_equal(setpoint_code_name(SP_NOT_WRITABLE), "not_writable");
    assert_string_equal(setpoint_code_name(SP_BAD_PAYLOAD), "bad_payload");
    assert_string_equal(setpoint_code_name(SP_BAD_TYPE), "bad_type");
    assert_string_equal(setpoint_code_name(SP_OUT_OF_RANGE), "out_of_range");
    assert_string_equal(setpoint_code_name(SP_NOT_REPRESENTABLE), "not_representable");
    assert_string_equal(setpoint_code_name(SP_STALE), "stale");
    assert_string_equal(setpoint_code_name(SP_RETAINED), "retained");
    assert_string_equal(setpoint_code_name(SP_RATE_LIMITED), "rate_limited");
    assert_string_equal(setpoint_code_name(SP_DEVICE_DOWN), "device_down");
    assert_string_equal(setpoint_code_name(SP_TIMEOUT), "timeout");
    assert_string_equal(setpoint_code_name(SP_MODBUS_EXCEPTION), "modbus_exception");
    assert_string_equal(setpoint_code_name(SP_VERIFY_FAILED), "verify_failed");
}

/* ---- the gate checks and their order ------------------------------------ */

static void test_disabled(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_UINT16);
    sp_policy p = make_policy();
    p.enabled = false;
    sp_command cmd;
    char d[256];
    assert_int_equal(run_policy(&tag, &p, "42", &cmd, d, sizeof d), SP_DISABLED);
    assert_true(d[0] != '\0');
    assert_int_equal(cmd.raw.kind, CV_NONE);
    /* disabled comes before every other check */
    assert_int_equal(run_policy(NULL, &p, "42", &cmd, d, sizeof d), SP_DISABLED);
}

static void test_unknown_tag(void **state)
{
    (void)state;
    sp_policy p = make_policy();
    sp_command cmd;
    char d[256];
    assert_int_equal(run_policy(NULL, &p, "{\"v\":42,\"id\":\"c1\"}", &cmd, d, sizeof d),
                     SP_UNKNOWN_TAG);
    assert_string_equal(cmd.id, "c1");
    assert_true(d[0] != '\0');
}

static void test_not_writable(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_UINT16);
    tag.writable = false;
    sp_policy p = make_policy();
    p.retained = true; /* not_writable is checked before retained */
    sp_command cmd;
    char d[256];
    assert_int_equal(run_policy(&tag, &p, "42", &cmd, d, sizeof d), SP_NOT_WRITABLE);
    assert_non_null(strstr(d, "t_uint16"));
}

/* The gate alone: what the agent asks before it looks at a bad payload. */
static void test_gate_without_payload(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_UINT16), ro = make_tag(CT_UINT16);
    ro.writable = false;
    sp_policy p = make_policy();
    char d[256] = "left over";
    assert_int_equal(setpoint_gate(&tag, &p, d, sizeof d), SP_OK);
    assert_string_equal(d, "");
    p.retained = true;
    assert_int_equal(setpoint_gate(&tag, &p, d, sizeof d), SP_RETAINED);
    assert_int_equal(setpoint_gate(&ro, &p, d, sizeof d), SP_NOT_WRITABLE);
    assert_int_equal(setpoint_gate(NULL, &p, d, sizeof d), SP_UNKNOWN_TAG);
    p.enabled = false;
    assert_int_equal(setpoint_gate(NULL, &p, d, sizeof d), SP_DISABLED);
    p = make_policy();
    p.retained = true;
    p.accept_retained = true;
    assert_int_equal(setpoint_gate(&tag, &p, NULL, 0), SP_OK);
}

static void test_retained(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_UINT16);
    sp_policy p = make_policy();
    p.retained = true;
    sp_command cmd;
    char d[256];
    /* retained is checked before stale and bad_type */
    char old[64];
    snprintf(old, sizeof old, "{\"v\":\"x\",\"ts\":%lld}", NOW - 3600000LL);
    assert_int_equal(run_policy(&tag, &p, old, &cmd, d, sizeof d), SP_RETAINED);
    assert_int_equal(run_policy(&tag, &p, "42", &cmd, d, sizeof d), SP_RETAINED);
    assert_int_equal(cmd.raw.kind, CV_NONE);

    p.accept_retained = true;
    assert_int_equal(run_policy(&tag, &p, "42", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_UINT);
    assert_int_equal(cmd.raw.u, 42);
    /* a live command is fine whatever accept_retained says */
    p.accept_retained = false;
    p.retained = false;
    assert_int_equal(run_policy(&tag, &p, "42", &cmd, d, sizeof d), SP_OK);
}

static sp_code with_ts(const sp_policy *p, long long ts, char *d, size_t dlen)
{
    cfg_tag tag = make_tag(CT_UINT16);
    char payload[96];
    snprintf(payload, sizeof payload, "{\"v\":7,\"id\":\"s\",\"ts\":%lld}", ts);
    sp_command cmd;
    return run_policy(&tag, p, payload, &cmd, d, dlen);
}

static void test_stale(void **state)
{
    (void)state;
    sp_policy p = make_policy();
    char d[256];
    assert_int_equal(with_ts(&p, NOW - 45200, d, sizeof d), SP_STALE);
    assert_string_equal(d, "command is 45.2 s old (max 30 s)");
    assert_int_equal(with_ts(&p, NOW - 30000, d, sizeof d), SP_OK); /* boundary */
    assert_int_equal(with_ts(&p, NOW - 30001, d, sizeof d), SP_STALE);
    assert_int_equal(with_ts(&p, 0, d, sizeof d), SP_STALE);
    /* a clock running ahead must not let commands through */
    assert_int_equal(with_ts(&p, NOW + 120000, d, sizeof d), SP_STALE);
    assert_string_equal(d, "command ts is 120.0 s in the future (max 30 s)");
    assert_int_equal(with_ts(&p, NOW + 30000, d, sizeof d), SP_OK);
    assert_int_equal(with_ts(&p, NOW + 30001, d, sizeof d), SP_STALE);
    assert_int_equal(with_ts(&p, INT64_MAX, d, sizeof d), SP_STALE);
    /* a wildly wrong local clock must not overflow */
    p.now_ms = INT64_MIN;
    assert_int_equal(with_ts(&p, INT64_MAX, d, sizeof d), SP_STALE);
}

static void test_stale_off(void **state)
{
    (void)state;
    sp_policy p = make_policy();
    char d[256];
    cfg_tag tag = make_tag(CT_UINT16);
    sp_command cmd;
    /* no ts: nothing to judge the age by */
    assert_int_equal(run_policy(&tag, &p, "{\"v\":7}", &cmd, d, sizeof d), SP_OK);
    assert_false(cmd.has_ts);
    /* max_age_s 0: no age check */
    p.max_age_s = 0;
    assert_int_equal(with_ts(&p, 0, d, sizeof d), SP_OK);
    assert_int_equal(with_ts(&p, NOW + 86400000LL, d, sizeof d), SP_OK);
}

static void test_stale_before_bad_type(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_UINT16);
    sp_command cmd;
    char d[256], payload[96];
    snprintf(payload, sizeof payload, "{\"v\":\"x\",\"ts\":%lld}", NOW - 60000);
    assert_int_equal(run(&tag, payload, &cmd, d, sizeof d), SP_STALE);
}

/* ---- bad_payload -------------------------------------------------------- */

static void expect_bad(const char *payload, size_t len, const char *want_in_detail)
{
    sp_command cmd;
    char d[256];
    assert_int_equal(parse_n(payload, len, &cmd, d, sizeof d), SP_BAD_PAYLOAD);
    assert_true(d[0] != '\0');
    if (want_in_detail && !strstr(d, want_in_detail))
        fail_msg("detail \"%s\" lacks \"%s\"", d, want_in_detail);
}

static void expect_bad_s(const char *payload, const char *want_in_detail)
{
    expect_bad(payload, strlen(payload), want_in_detail);
}

static void test_bad_payload_empty(void **state)
{
    (void)state;
    expect_bad("", 0, "empty payload");
    expect_bad(NULL, 0, "empty payload");
    expect_bad_s("   ", NULL);
    expect_bad_s("\n", NULL);
}

static void test_bad_payload_size(void **state)
{
    (void)state;
    static char buf[SP_PAYLOAD_MAX + 2];
    sp_command cmd;
    char d[256];
    /* exactly the limit: valid JSON padded with whitespace is accepted */
    memset(buf, ' ', sizeof buf);
    memcpy(buf, "42", 2);
    assert_int_equal(parse_n(buf, SP_PAYLOAD_MAX, &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_INT);
    assert_int_equal(cmd.i, 42);
    /* one byte more is refused, however valid */
    assert_int_equal(parse_n(buf, SP_PAYLOAD_MAX + 1, &cmd, d, sizeof d), SP_BAD_PAYLOAD);
    assert_string_equal(d, "payload of 4097 bytes exceeds 4096");
}

static void test_bad_payload_json(void **state)
{
    (void)state;
    expect_bad_s("{", "invalid JSON");
    expect_bad_s("42 43", "invalid JSON");
    expect_bad_s("tru", "invalid JSON");
    expect_bad_s("'text'", "invalid JSON");
    expect_bad_s("{\"v\":1,}", "invalid JSON");
    expect_bad_s("{v:1}", "invalid JSON");
    expect_bad_s("0x10", "invalid JSON");
    expect_bad_s("{\"v\":1,\"v\":2}", "duplicate");
    /* a NUL byte would make jansson stop early: "1\0" must not read as 1 */
    expect_bad("1\0", 2, "NUL");
    expect_bad("{\"v\":1}\0{\"v\":9}", 16, "NUL");
    expect_bad_s("\"a\\u0000b\"", NULL);
}

static void test_bad_payload_utf8(void **state)
{
    (void)state;
    expect_bad_s("\"\xff\"", "UTF-8");
    expect_bad_s("{\"v\":\"ab\xc3\"}", "UTF-8");
    expect_bad_s("{\"v\":\"\xed\xa0\x80\"}", "UTF-8"); /* encoded surrogate */
    expect_bad_s("\"\xc0\xaf\"", "UTF-8");               /* overlong '/' */
}

static void test_bad_payload_values(void **state)
{
    (void)state;
    expect_bad_s("null", "null");
    expect_bad_s("{\"v\":null}", "null");
    expect_bad_s("[1]", "array");
    expect_bad_s("[]", "array");
    expect_bad_s("{\"v\":[1]}", "array");
    expect_bad_s("{\"v\":{\"x\":1}}", "object");
    expect_bad_s("{}", "without \"v\"");
}

static void test_bad_payload_members(void **state)
{
    (void)state;
    expect_bad_s("{\"value\":1}", "unknown member \"value\"");
    expect_bad_s("{\"v\":1,\"value\":2}", "unknown member \"value\"");
    expect_bad_s("{\"v\":1,\"V\":2}", "unknown member \"V\"");
    expect_bad_s("{\"v\":1,\"id\":5}", "\"id\" must be a string");
    expect_bad_s("{\"v\":1,\"id\":null}", "\"id\" must be a string");
    expect_bad_s("{\"v\":1,\"ts\":\"1795743898123\"}", "\"ts\" must be a number");
    expect_bad_s("{\"v\":1,\"ts\":-1}", "\"ts\" must not be negative");
    expect_bad_s("{\"v\":1,\"ts\":-0.5}", "\"ts\" must not be negative");
    expect_bad_s("{\"v\":1,\"ts\":1e19}", "\"ts\" is out of range");
    expect_bad_s("{\"v\":1,\"ts\":true}", "\"ts\" must be a number");
}

/* A real "ts" (Python's time.time() * 1000) counts to the millisecond. */
static void test_ts_real(void **state)
{
    (void)state;
    sp_command cmd;
    char d[256];
    assert_int_equal(parse_s("{\"v\":1,\"ts\":1795743898123.9}", &cmd, d, sizeof d), SP_OK);
    assert_true(cmd.has_ts);
    assert_int_equal(cmd.ts, 1795743898123LL);
    assert_int_equal(parse_s("{\"v\":1,\"ts\":1.7e12}", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.ts, 1700000000000LL);
    cfg_tag tag = make_tag(CT_UINT16);
    sp_policy p = make_policy();
    char old[64];
    snprintf(old, sizeof old, "{\"v\":1,\"ts\":%lld.5}", NOW - 31000LL);
    assert_int_equal(run_policy(&tag, &p, old, &cmd, d, sizeof d), SP_STALE);
}

static void test_bad_payload_id_length(void **state)
{
    (void)state;
    char id[SP_ID_MAX + 2], payload[SP_ID_MAX + 64];
    sp_command cmd;
    char d[256];
    memset(id, 'a', SP_ID_MAX);
    id[SP_ID_MAX] = '\0';
    snprintf(payload, sizeof payload, "{\"v\":1,\"id\":\"%s\"}", id);
    assert_int_equal(parse_s(payload, &cmd, d, sizeof d), SP_OK);
    assert_string_equal(cmd.id, id);

    strcat(id, "a");
    snprintf(payload, sizeof payload, "{\"v\":1,\"id\":\"%s\"}", id);
    assert_int_equal(parse_s(payload, &cmd, d, sizeof d), SP_BAD_PAYLOAD);
    assert_string_equal(d, "\"id\" of 129 bytes exceeds 128");
    assert_string_equal(cmd.id, "");
}

static void test_bad_payload_non_finite(void **state)
{
    (void)state;
    expect_bad_s("NaN", NULL);
    expect_bad_s("nan", NULL);
    expect_bad_s("Infinity", NULL);
    expect_bad_s("-Infinity", NULL);
    expect_bad_s("{\"v\":NaN}", NULL);
    expect_bad_s("1e400", "out of range");
    expect_bad_s("-1e400", "out of range");
    expect_bad_s("{\"v\":1e309}", "out of range");
}

/* Beyond int64 jansson has no integer: such numbers are read as reals, so
 * a float64 tag takes them and a 64-bit integer tag refuses them as not
 * representable (a double cannot tell which integer was meant). */
static void test_integers_beyond_int64(void **state)
{
    (void)state;
    sp_command cmd;
    char d[256];
    assert_int_equal(setpoint_parse("18446744073709551615", 20, &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_REAL);
    assert_true(cmd.d == 18446744073709551615.0);
    assert_int_equal(setpoint_parse("-9223372036854775809", 20, &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_REAL);
    const char *obj = "{\"v\":10000000000000000000}";
    assert_int_equal(setpoint_parse(obj, strlen(obj), &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_REAL);
}

static void test_bad_payload_long_string(void **state)
{
    (void)state;
    char payload[CODEC_STR_MAX + 8];
    sp_command cmd;
    char d[256];
    payload[0] = '"';
    memset(payload + 1, 'x', CODEC_STR_MAX);
    payload[CODEC_STR_MAX + 1] = '"';
    payload[CODEC_STR_MAX + 2] = '\0';
    assert_int_equal(parse_s(payload, &cmd, d, sizeof d), SP_OK);
    assert_int_equal(strlen(cmd.s), CODEC_STR_MAX);

    memmove(payload + 2, payload + 1, CODEC_STR_MAX + 2);
    payload[1] = 'x';
    assert_int_equal(parse_s(payload, &cmd, d, sizeof d), SP_BAD_PAYLOAD);
    assert_string_equal(d, "string of 257 bytes exceeds 256");
}

static void test_bad_payload_no_detail_buffer(void **state)
{
    (void)state;
    sp_command cmd;
    assert_int_equal(setpoint_parse("{", 1, &cmd, NULL, 0), SP_BAD_PAYLOAD);
    cfg_tag tag = make_tag(CT_UINT16);
    sp_policy p = make_policy();
    assert_int_equal(setpoint_parse("70000", 5, &cmd, NULL, 0), SP_OK);
    assert_int_equal(setpoint_check(&tag, &p, &cmd, NULL, 0), SP_NOT_REPRESENTABLE);
    /* a tiny buffer truncates, never overflows */
    char d[4];
    assert_int_equal(setpoint_parse("{", 1, &cmd, d, sizeof d), SP_BAD_PAYLOAD);
    assert_int_equal(strlen(d), 3);
}

/* ---- accepted forms ----------------------------------------------------- */

static void test_bare_values(void **state)
{
    (void)state;
    sp_command cmd;
    char d[256];
    assert_int_equal(parse_s("42", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_INT);
    assert_int_equal(cmd.i, 42);
    assert_true(cmd.d == 42.0);
    assert_string_equal(cmd.id, "");
    assert_false(cmd.has_ts);

    assert_int_equal(parse_s(" -7 \r\n", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_INT);
    assert_int_equal(cmd.i, -7);

    assert_int_equal(parse_s("21.5", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_REAL);
    assert_true(cmd.d == 21.5);

    assert_int_equal(parse_s("true", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_BOOL);
    assert_true(cmd.b);
    assert_int_equal(parse_s("false", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_BOOL);
    assert_false(cmd.b);

    assert_int_equal(parse_s("\"text\"", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_STR);
    assert_string_equal(cmd.s, "text");

    assert_int_equal(parse_s("\"gr\\u00fc\\u00df\"", &cmd, d, sizeof d), SP_OK);
    assert_string_equal(cmd.s, "gr\xc3\xbc\xc3\x9f");

    assert_int_equal(parse_s("9223372036854775807", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_INT);
    assert_true(cmd.i == INT64_MAX);
    assert_int_equal(parse_s("1e-400", &cmd, d, sizeof d), SP_OK); /* underflow is 0 */
    assert_int_equal(cmd.kind, SPV_REAL);
}

static void test_object_form(void **state)
{
    (void)state;
    sp_command cmd;
    char d[256];
    assert_int_equal(parse_s("{\"v\":42,\"id\":\"any-string\",\"ts\":1795743898123}",
                             &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_INT);
    assert_int_equal(cmd.i, 42);
    assert_string_equal(cmd.id, "any-string");
    assert_true(cmd.has_ts);
    assert_true(cmd.ts == 1795743898123LL);

    /* member order does not matter; only v is required */
    assert_int_equal(parse_s("{\"ts\":0,\"id\":\"\",\"v\":\"s\"}", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_STR);
    assert_true(cmd.has_ts);
    assert_true(cmd.ts == 0);
    assert_int_equal(parse_s("{\"v\":true}", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.kind, SPV_BOOL);
    assert_string_equal(cmd.id, "");
    assert_false(cmd.has_ts); /* nothing left over from the previous command */
}

static void test_id_carried_into_rejections(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_UINT16);
    tag.has_max = true;
    tag.max = 1500;
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "{\"id\":\"c7\",\"v\":\"x\"}", &cmd, d, sizeof d), SP_BAD_TYPE);
    assert_string_equal(cmd.id, "c7");
    assert_int_equal(run(&tag, "{\"v\":1600,\"id\":\"c8\"}", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    assert_string_equal(cmd.id, "c8");
    /* parse failures after the id still carry it */
    assert_int_equal(parse_s("{\"v\":1,\"id\":\"c9\",\"value\":2}", &cmd, d, sizeof d),
                     SP_BAD_PAYLOAD);
    assert_string_equal(cmd.id, "c9");
    assert_int_equal(parse_s("{\"id\":\"c10\"}", &cmd, d, sizeof d), SP_BAD_PAYLOAD);
    assert_string_equal(cmd.id, "c10");
    assert_int_equal(parse_s("{\"id\":\"c11\",\"v\":null}", &cmd, d, sizeof d), SP_BAD_PAYLOAD);
    assert_string_equal(cmd.id, "c11");
    assert_int_equal(parse_s("{\"id\":\"c12\",\"v\":1,\"ts\":-5}", &cmd, d, sizeof d),
                     SP_BAD_PAYLOAD);
    assert_string_equal(cmd.id, "c12");
    sp_policy p = make_policy();
    p.enabled = false;
    assert_int_equal(run_policy(&tag, &p, "{\"id\":\"c13\",\"v\":1}", &cmd, d, sizeof d),
                     SP_DISABLED);
    assert_string_equal(cmd.id, "c13");
}

/* ---- bad_type ------------------------------------------------------------ */

static void test_bad_type_bool(void **state)
{
    (void)state;
    cfg_tag coil = make_tag(CT_BOOL);
    cfg_tag bit = make_tag(CT_BOOL);
    bit.table = TABLE_HOLDING;
    bit.bit = 3;
    const cfg_tag *tags[] = { &coil, &bit };
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(code_of(tags[i], "1"), SP_BAD_TYPE);
        assert_int_equal(code_of(tags[i], "0"), SP_BAD_TYPE);
        assert_int_equal(code_of(tags[i], "1.0"), SP_BAD_TYPE);
        assert_int_equal(code_of(tags[i], "\"true\""), SP_BAD_TYPE);
        assert_int_equal(code_of(tags[i], "\"on\""), SP_BAD_TYPE);
        assert_int_equal(code_of(tags[i], "true"), SP_OK);
        assert_int_equal(code_of(tags[i], "{\"v\":false}"), SP_OK);
    }
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&coil, "1", &cmd, d, sizeof d), SP_BAD_TYPE);
    assert_string_equal(d, "expected a boolean for bool tag, got number");
    assert_int_equal(cmd.raw.kind, CV_NONE);
}

static void test_bad_type_numeric(void **state)
{
    (void)state;
    const codec_type types[] = { CT_INT16, CT_UINT16, CT_INT32, CT_UINT32,
                                 CT_INT64, CT_UINT64, CT_FLOAT32, CT_FLOAT64 };
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        cfg_tag tag = make_tag(types[i]);
        assert_int_equal(code_of(&tag, "true"), SP_BAD_TYPE);
        assert_int_equal(code_of(&tag, "false"), SP_BAD_TYPE);
        assert_int_equal(code_of(&tag, "\"5\""), SP_BAD_TYPE);
        assert_int_equal(code_of(&tag, "{\"v\":\"\"}"), SP_BAD_TYPE);
        assert_int_equal(code_of(&tag, "5"), SP_OK);
    }
    cfg_tag f = make_tag(CT_FLOAT32);
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&f, "\"21.5\"", &cmd, d, sizeof d), SP_BAD_TYPE);
    assert_string_equal(d, "expected a number for float32 tag, got string");
    assert_int_equal(run(&f, "true", &cmd, d, sizeof d), SP_BAD_TYPE);
    assert_string_equal(d, "expected a number for float32 tag, got boolean");
}

static void test_bad_type_string(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_STRING);
    assert_int_equal(code_of(&tag, "5"), SP_BAD_TYPE);
    assert_int_equal(code_of(&tag, "5.5"), SP_BAD_TYPE);
    assert_int_equal(code_of(&tag, "true"), SP_BAD_TYPE);
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "12", &cmd, d, sizeof d), SP_BAD_TYPE);
    assert_string_equal(d, "expected a string for string tag, got number");
}

/* ---- out_of_range -------------------------------------------------------- */

static void test_out_of_range(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_UINT16);
    tag.has_min = tag.has_max = true;
    tag.min = 0;
    tag.max = 1500;
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "1600", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    assert_string_equal(d, "1600 > max 1500");
    assert_int_equal(cmd.raw.kind, CV_NONE);
    assert_int_equal(run(&tag, "-5", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    assert_string_equal(d, "-5 < min 0");
    assert_int_equal(run(&tag, "1500.0000001", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    assert_string_equal(d, "1500.0000001 > max 1500");
    assert_int_equal(run(&tag, "-1e-9", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    assert_string_equal(d, "-1e-09 < min 0");
    assert_int_equal(run(&tag, "1500", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.u, 1500);
    assert_int_equal(run(&tag, "0", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(run(&tag, "1500.0", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.u, 1500);
}

static void test_out_of_range_float_limits(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_FLOAT64);
    tag.has_min = tag.has_max = true;
    tag.min = -10.25;
    tag.max = 10.25;
    assert_int_equal(code_of(&tag, "10.25"), SP_OK);
    assert_int_equal(code_of(&tag, "-10.25"), SP_OK);
    assert_int_equal(code_of(&tag, "10.250000000001"), SP_OUT_OF_RANGE);
    assert_int_equal(code_of(&tag, "-10.250000000001"), SP_OUT_OF_RANGE);
    assert_int_equal(code_of(&tag, "11"), SP_OUT_OF_RANGE);
    assert_int_equal(code_of(&tag, "-11"), SP_OUT_OF_RANGE);
    assert_int_equal(code_of(&tag, "1e300"), SP_OUT_OF_RANGE);
    /* only one limit set */
    tag.has_min = false;
    assert_int_equal(code_of(&tag, "-1e300"), SP_OK);
}

static void test_out_of_range_engineering_units(void **state)
{
    (void)state;
    /* limits apply to the engineering value, before inverse scaling */
    cfg_tag tag = make_tag(CT_INT16);
    tag.scale = 0.1;
    tag.has_min = tag.has_max = true;
    tag.min = -50;
    tag.max = 150;
    assert_int_equal(code_of(&tag, "150"), SP_OK);
    assert_int_equal(code_of(&tag, "150.1"), SP_OUT_OF_RANGE);
    assert_int_equal(code_of(&tag, "-50"), SP_OK);
    assert_int_equal(code_of(&tag, "-50.1"), SP_OUT_OF_RANGE);
}

static void test_out_of_range_exact_int64(void **state)
{
    (void)state;
    /* 2^53 + 1 would round onto a max of 2^53 if compared as a double */
    cfg_tag tag = make_tag(CT_INT64);
    tag.has_min = tag.has_max = true;
    tag.max = 9007199254740992.0;
    tag.min = -9007199254740992.0;
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "9007199254740992", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(run(&tag, "9007199254740993", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    assert_non_null(strstr(d, "9007199254740993 > max "));
    assert_int_equal(run(&tag, "-9007199254740993", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    /* fractional limit: 10.5 lets 10 through, not 11 */
    tag.max = 10.5;
    tag.min = -10.5;
    assert_int_equal(run(&tag, "10", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(run(&tag, "11", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    assert_int_equal(run(&tag, "-10", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(run(&tag, "-11", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
    /* limits beyond int64 never exclude an int64 */
    tag.max = 1e19;
    tag.min = -1e19;
    assert_int_equal(run(&tag, "9223372036854775807", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(run(&tag, "-9223372036854775808", &cmd, d, sizeof d), SP_OK);
    tag.max = -1e19;
    assert_int_equal(run(&tag, "-9223372036854775808", &cmd, d, sizeof d), SP_OUT_OF_RANGE);
}

/* ---- not_representable and the raw value --------------------------------- */

static void expect_int(codec_type t, const char *payload, int64_t raw)
{
    cfg_tag tag = make_tag(t);
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, payload, &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_INT);
    assert_true(cmd.raw.i == raw);
}

static void expect_uint(codec_type t, const char *payload, uint64_t raw)
{
    cfg_tag tag = make_tag(t);
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, payload, &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_UINT);
    assert_true(cmd.raw.u == raw);
}

static void expect_unrep(const cfg_tag *tag, const char *payload)
{
    sp_command cmd;
    char d[256];
    assert_int_equal(run(tag, payload, &cmd, d, sizeof d), SP_NOT_REPRESENTABLE);
    assert_true(d[0] != '\0');
    assert_int_equal(cmd.raw.kind, CV_NONE);
}

static void expect_unrep_t(codec_type t, const char *payload)
{
    cfg_tag tag = make_tag(t);
    expect_unrep(&tag, payload);
}

static void test_not_representable_fraction(void **state)
{
    (void)state;
    const codec_type ints[] = { CT_INT16, CT_UINT16, CT_INT32, CT_UINT32, CT_INT64, CT_UINT64 };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        expect_unrep_t(ints[i], "1.5");
        expect_unrep_t(ints[i], "0.001");
    }
    /* a whole real is fine */
    expect_int(CT_INT16, "7.0", 7);
    expect_uint(CT_UINT16, "7e2", 700);
}

static void test_not_representable_int_edges(void **state)
{
    (void)state;
    expect_int(CT_INT16, "32767", 32767);
    expect_int(CT_INT16, "-32768", -32768);
    expect_unrep_t(CT_INT16, "32768");
    expect_unrep_t(CT_INT16, "-32769");

    expect_uint(CT_UINT16, "65535", 65535);
    expect_uint(CT_UINT16, "0", 0);
    expect_unrep_t(CT_UINT16, "65536");
    expect_unrep_t(CT_UINT16, "70000");
    expect_unrep_t(CT_UINT16, "-1");

    expect_int(CT_INT32, "2147483647", 2147483647);
    expect_int(CT_INT32, "-2147483648", INT32_MIN);
    expect_unrep_t(CT_INT32, "2147483648");
    expect_unrep_t(CT_INT32, "-2147483649");

    expect_uint(CT_UINT32, "4294967295", 4294967295u);
    expect_unrep_t(CT_UINT32, "4294967296");
    expect_unrep_t(CT_UINT32, "-1");

    /* 64-bit integers unscaled are written exactly as sent */
    expect_int(CT_INT64, "9223372036854775807", INT64_MAX);
    expect_int(CT_INT64, "-9223372036854775808", INT64_MIN);
    expect_int(CT_INT64, "9007199254740993", 9007199254740993LL);
    expect_uint(CT_UINT64, "9223372036854775807", (uint64_t)INT64_MAX);
    expect_uint(CT_UINT64, "9007199254740993", 9007199254740993ULL);
    expect_unrep_t(CT_UINT64, "-1");
    cfg_tag tag = make_tag(CT_UINT64);
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "-1", &cmd, d, sizeof d), SP_NOT_REPRESENTABLE);
    assert_string_equal(d, "-1 < uint64 min 0");
}

static void test_not_representable_scaled_edges(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_INT16);
    tag.scale = 0.1;
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "3276.7", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_INT);
    assert_int_equal(cmd.raw.i, 32767);
    assert_int_equal(run(&tag, "-3276.8", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.i, -32768);
    expect_unrep(&tag, "3276.8");
    expect_unrep(&tag, "-3276.9");

    tag = make_tag(CT_UINT16);
    tag.scale = 10;
    assert_int_equal(run(&tag, "655350", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_UINT);
    assert_int_equal(cmd.raw.u, 65535);
    expect_unrep(&tag, "655360");
    expect_unrep(&tag, "655355"); /* 65535.5 raw */

    tag = make_tag(CT_INT32);
    tag.scale = 0.01;
    assert_int_equal(run(&tag, "21474836.47", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.i, 2147483647);
    expect_unrep(&tag, "21474836.48");

    tag = make_tag(CT_UINT32);
    tag.scale = 2;
    assert_int_equal(run(&tag, "8589934590", &cmd, d, sizeof d), SP_OK);
    assert_true(cmd.raw.u == 4294967295u);
    expect_unrep(&tag, "8589934592");
}

static void test_scaling_round_trip(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_INT16);
    tag.scale = 0.1;
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "21.5", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_INT);
    assert_int_equal(cmd.raw.i, 215);
    assert_int_equal(run(&tag, "{\"v\":21}", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.i, 210);
    expect_unrep(&tag, "21.55");

    /* offset: raw = (eng - offset) / scale */
    tag = make_tag(CT_UINT16);
    tag.offset = -40;
    assert_int_equal(run(&tag, "-40", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.u, 0);
    assert_int_equal(run(&tag, "65495", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.u, 65535);
    expect_unrep(&tag, "-41");
    expect_unrep(&tag, "65496");

    tag = make_tag(CT_INT16);
    tag.scale = 0.5;
    tag.offset = 100;
    assert_int_equal(run(&tag, "110.5", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.i, 21);
    expect_unrep(&tag, "110.25");

    /* scaled 64-bit: the exact path is only for unscaled tags */
    tag = make_tag(CT_INT64);
    tag.scale = 0.001;
    assert_int_equal(run(&tag, "1234.567", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_INT);
    assert_true(cmd.raw.i == 1234567);
}

static void test_not_representable_beyond_double_precision(void **state)
{
    (void)state;
    /* beyond 2^53, a raw integer computed through a double is a guess */
    cfg_tag tag = make_tag(CT_INT64);
    expect_unrep(&tag, "9007199254740993.0");
    expect_unrep(&tag, "1e18");
    expect_int(CT_INT64, "1e15", 1000000000000000LL);
    expect_uint(CT_UINT64, "1e15", 1000000000000000ULL);
    tag.scale = 0.5;
    expect_unrep(&tag, "1e16");     /* raw 2e16 */
    expect_unrep(&tag, "-1e16");
    tag = make_tag(CT_UINT64);
    expect_unrep(&tag, "1.8446744073709552e19");
    expect_unrep(&tag, "1e30");
    tag.scale = 10;
    expect_unrep(&tag, "100000000000000000"); /* raw 1e16 */
}

static void test_floats(void **state)
{
    (void)state;
    cfg_tag f32 = make_tag(CT_FLOAT32);
    cfg_tag f64 = make_tag(CT_FLOAT64);
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&f32, "21.5", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_F32);
    assert_true(cmd.raw.f32 == 21.5f);
    assert_int_equal(run(&f32, "3e38", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(run(&f32, "-42", &cmd, d, sizeof d), SP_OK);
    assert_true(cmd.raw.f32 == -42.0f);
    expect_unrep(&f32, "1e300");
    expect_unrep(&f32, "-1e300");
    expect_unrep(&f32, "1e39");

    assert_int_equal(run(&f64, "1e300", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_F64);
    assert_true(cmd.raw.f64 == 1e300);
    assert_int_equal(run(&f64, "-1.7976931348623157e308", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(run(&f64, "123", &cmd, d, sizeof d), SP_OK);
    assert_true(cmd.raw.f64 == 123.0);

    /* scaled float */
    f32.scale = 2;
    f32.offset = 1;
    assert_int_equal(run(&f32, "43", &cmd, d, sizeof d), SP_OK);
    assert_true(cmd.raw.f32 == 21.0f);
}

static void test_strings(void **state)
{
    (void)state;
    cfg_tag tag = make_tag(CT_STRING); /* length 16 */
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&tag, "\"hello\"", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_STR);
    assert_string_equal(cmd.raw.s, "hello");
    assert_int_equal(run(&tag, "\"\"", &cmd, d, sizeof d), SP_OK);
    assert_string_equal(cmd.raw.s, "");
    assert_int_equal(run(&tag, "\"0123456789abcdef\"", &cmd, d, sizeof d), SP_OK);
    assert_string_equal(cmd.raw.s, "0123456789abcdef");
    assert_int_equal(run(&tag, "\"0123456789abcdefg\"", &cmd, d, sizeof d),
                     SP_NOT_REPRESENTABLE);
    assert_string_equal(d, "string of 17 bytes exceeds length 16");
    assert_int_equal(run(&tag, "\"01234567890123456789\"", &cmd, d, sizeof d),
                     SP_NOT_REPRESENTABLE);
    assert_string_equal(d, "string of 20 bytes exceeds length 16");
    assert_int_equal(cmd.raw.kind, CV_NONE);
    /* the length is in bytes: nine two-byte characters do not fit */
    assert_int_equal(run(&tag, "\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"",
                         &cmd, d, sizeof d), SP_NOT_REPRESENTABLE);
    assert_string_equal(d, "string of 18 bytes exceeds length 16");
    /* range limits do not apply to strings */
    tag.has_min = tag.has_max = true;
    tag.min = 0;
    tag.max = 1;
    assert_int_equal(run(&tag, "\"zz\"", &cmd, d, sizeof d), SP_OK);
}

static void test_bools(void **state)
{
    (void)state;
    cfg_tag coil = make_tag(CT_BOOL);
    /* min/max make no sense for bools and must not reject them */
    coil.has_min = coil.has_max = true;
    coil.min = 5;
    coil.max = 6;
    sp_command cmd;
    char d[256];
    assert_int_equal(run(&coil, "true", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_BOOL);
    assert_true(cmd.raw.b);
    assert_string_equal(d, "");
    cfg_tag bit = make_tag(CT_BOOL);
    bit.table = TABLE_HOLDING;
    bit.bit = 15;
    assert_int_equal(run(&bit, "{\"v\":false,\"id\":\"b\"}", &cmd, d, sizeof d), SP_OK);
    assert_int_equal(cmd.raw.kind, CV_BOOL);
    assert_false(cmd.raw.b);
}

/* ---- rate limiting ------------------------------------------------------- */

static void test_rate_burst_and_refill(void **state)
{
    (void)state;
    sp_bucket b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 10; i++)
        assert_true(setpoint_rate_ok(&b, 10, NOW));
    assert_false(setpoint_rate_ok(&b, 10, NOW));
    assert_false(setpoint_rate_ok(&b, 10, NOW + 50));  /* half a token */
    assert_true(setpoint_rate_ok(&b, 10, NOW + 100));
    assert_false(setpoint_rate_ok(&b, 10, NOW + 100));
    assert_true(setpoint_rate_ok(&b, 10, NOW + 200));
    /* a long pause refills to the burst, not beyond */
    int passed = 0;
    for (int i = 0; i < 20; i++)
        passed += setpoint_rate_ok(&b, 10, NOW + 3600000);
    assert_int_equal(passed, 10);
}

static void test_rate_steady(void **state)
{
    (void)state;
    sp_bucket b;
    memset(&b, 0, sizeof b);
    /* one command every 100 ms at max_rate 10 never runs dry */
    for (int i = 0; i < 1000; i++)
        assert_true(setpoint_rate_ok(&b, 10, NOW + i * 100LL));
    /* 20 per second over 10 s gets through ~10 per second plus the burst */
    memset(&b, 0, sizeof b);
    int passed = 0;
    for (int i = 0; i < 200; i++)
        passed += setpoint_rate_ok(&b, 10, NOW + i * 50LL);
    assert_in_range(passed, 105, 110);
}

static void test_rate_unlimited(void **state)
{
    (void)state;
    sp_bucket b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 10000; i++)
        assert_true(setpoint_rate_ok(&b, 0, NOW));
}

static void test_rate_clock_backwards(void **state)
{
    (void)state;
    sp_bucket b;
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 10; i++)
        assert_true(setpoint_rate_ok(&b, 10, NOW));
    /* stepping back neither refills the bucket ... */
    assert_false(setpoint_rate_ok(&b, 10, NOW - 5000));
    /* ... nor locks the tag out until the old time comes round again */
    assert_true(setpoint_rate_ok(&b, 10, NOW - 5000 + 100));
    assert_false(setpoint_rate_ok(&b, 10, NOW - 5000 + 100));
    /* absurd clocks do not overflow */
    assert_true(setpoint_rate_ok(&b, 10, INT64_MAX));
    assert_true(setpoint_rate_ok(&b, 10, INT64_MIN));
}

static void test_rate_first_call_primes(void **state)
{
    (void)state;
    sp_bucket b;
    memset(&b, 0, sizeof b);
    /* any first time, even 0 or negative, starts with a full bucket */
    assert_true(setpoint_rate_ok(&b, 1, -123));
    assert_false(setpoint_rate_ok(&b, 1, -123));
    assert_true(setpoint_rate_ok(&b, 1, -123 + 1000));
}

static void test_rate_lowered(void **state)
{
    (void)state;
    sp_bucket b;
    memset(&b, 0, sizeof b);
    assert_true(setpoint_rate_ok(&b, 100, NOW));
    /* a full bucket from a higher rate is capped to the new burst */
    int passed = 0;
    for (int i = 0; i < 100; i++)
        passed += setpoint_rate_ok(&b, 5, NOW);
    assert_int_equal(passed, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_disabled),
        cmocka_unit_test(test_unknown_tag),
        cmocka_unit_test(test_not_writable),
        cmocka_unit_test(test_retained),
        cmocka_unit_test(test_gate_without_payload),
        cmocka_unit_test(test_stale),
        cmocka_unit_test(test_stale_off),
        cmocka_unit_test(test_stale_before_bad_type),
        cmocka_unit_test(test_bad_payload_empty),
        cmocka_unit_test(test_bad_payload_size),
        cmocka_unit_test(test_bad_payload_json),
        cmocka_unit_test(test_bad_payload_utf8),
        cmocka_unit_test(test_bad_payload_values),
        cmocka_unit_test(test_bad_payload_members),
        cmocka_unit_test(test_ts_real),
        cmocka_unit_test(test_bad_payload_id_length),
        cmocka_unit_test(test_bad_payload_non_finite),
        cmocka_unit_test(test_integers_beyond_int64),
        cmocka_unit_test(test_bad_payload_long_string),
        cmocka_unit_test(test_bad_payload_no_detail_buffer),
        cmocka_unit_test(test_bare_values),
        cmocka_unit_test(test_object_form),
        cmocka_unit_test(test_id_carried_into_rejections),
        cmocka_unit_test(test_bad_type_bool),
        cmocka_unit_test(test_bad_type_numeric),
        cmocka_unit_test(test_bad_type_string),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_out_of_range_float_limits),
        cmocka_unit_test(test_out_of_range_engineering_units),
        cmocka_unit_test(test_out_of_range_exact_int64),
        cmocka_unit_test(test_not_representable_fraction),
        cmocka_unit_test(test_not_representable_int_edges),
        cmocka_unit_test(test_not_representable_scaled_edges),
        cmocka_unit_test(test_scaling_round_trip),
        cmocka_unit_test(test_not_representable_beyond_double_precision),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_bools),
        cmocka_unit_test(test_rate_burst_and_refill),
        cmocka_unit_test(test_rate_steady),
        cmocka_unit_test(test_rate_unlimited),
        cmocka_unit_test(test_rate_clock_backwards),
        cmocka_unit_test(test_rate_first_call_primes),
        cmocka_unit_test(test_rate_lowered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
