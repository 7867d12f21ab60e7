/* Unit tests: topics and JSON payloads (SPEC §4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "payload.h"

static void test_topics(void **state)
{
    (void)state;
    char buf[256];
    sample *s = sample_new("plc1", "temp", 1, true, CT_FLOAT32, "21.5", NULL);
    assert_int_equal(payload_topic("mbgate/gw", s, buf, sizeof buf), 19);
    assert_string_equal(buf, "mbgate/gw/plc1/temp");
    free(s);
    s = sample_new("plc1", "", 1, true, 0, "{}", NULL);
    payload_topic("mbgate/gw", s, buf, sizeof buf);
    assert_string_equal(buf, "mbgate/gw/plc1");
    assert_int_equal(payload_topic("mbgate/gw", s, buf, 10), -1);
    free(s);
}

static void test_good_and_hist(void **state)
{
    (void)state;
    char buf[256];
    sample *s = sample_new("plc1", "temp", 1795743898123LL, true, CT_FLOAT32, "123.456", NULL);
    payload_sample(s, buf, sizeof buf);
    assert_string_equal(buf, "{\"v\":123.456,\"ts\":1795743898123,\"q\":\"good\"}");
    s->hist = true;
    payload_sample(s, buf, sizeof buf);
    assert_string_equal(buf, "{\"v\":123.456,\"ts\":1795743898123,\"q\":\"good\",\"hist\":true}");
    assert_int_equal(payload_sample(s, buf, 20), -1);
    free(s);
}

static void test_bad_quality(void **state)
{
    (void)state;
    char buf[256];
    sample *s = sample_new("plc1", "temp", 5, false, CT_INT16, NULL, "timeout after \"1000\" ms");
    payload_sample(s, buf, sizeof buf);
    assert_string_equal(buf, "{\"v\":null,\"ts\":5,\"q\":\"bad\",\"error\":\"timeout after \\\"1000\\\" ms\"}");
    free(s);
}

static void test_device_layout(void **state)
{
    (void)state;
    char buf[256];
    sample *s = sample_new("plc1", "", 7, true, 0, "{\"temp\":21.5,\"run\":true}", NULL);
    payload_sample(s, buf, sizeof buf);
    assert_string_equal(buf, "{\"ts\":7,\"values\":{\"temp\":21.5,\"run\":true}}");
    s->hist = true;
    payload_sample(s, buf, sizeof buf);
    assert_string_equal(buf, "{\"ts\":7,\"values\":{\"temp\":21.5,\"run\":true},\"hist\":true}");
    free(s);
}

static void test_device_state(void **state)
{
    (void)state;
    char buf[256];
    payload_device_state(true, 9, "ignored", buf, sizeof buf);
    assert_string_equal(buf, "{\"state\":\"up\",\"ts\":9}");
    payload_device_state(false, 9, "connect: Connection refused", buf, sizeof buf);
    assert_string_equal(buf, "{\"state\":\"down\",\"ts\":9,\"error\":\"connect: Connection refused\"}");
    payload_device_state(false, 9, "", buf, sizeof buf);
    assert_string_equal(buf, "{\"state\":\"down\",\"ts\":9}");
}

static void test_string_escape(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(payload_string("a\"b\\c\n\x01", buf, sizeof buf), 21);
    assert_string_equal(buf, "\"a\\\"b\\\\c\\u000a\\u0001\"");
    assert_int_equal(payload_string("abcdef", buf, 5), -1);
    assert_int_equal(payload_string("", buf, 2), -1);
}

static void test_utf8_clean(void **state)
{
    (void)state;
    char ok[] = "d\xc3\xa9j\xc3\xa0 \xe2\x82\xac \xf0\x9f\x98\x80";
    char bad[] = "a\xff" "b\xc3" "c\xe2\x82" "d\xc0\xaf" "e\xed\xa0\x80" "f\xf4\x90\x80\x80";
    char cut[] = "\xc3\xa9\xc3";
    payload_utf8_clean(ok);
    assert_string_equal(ok, "d\xc3\xa9j\xc3\xa0 \xe2\x82\xac \xf0\x9f\x98\x80");
    payload_utf8_clean(bad);
    assert_string_equal(bad, "a?b?c??d??e???f????");
    payload_utf8_clean(cut);
    assert_string_equal(cut, "\xc3\xa9?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topics),        cmocka_unit_test(test_good_and_hist),
        cmocka_unit_test(test_bad_quality),   cmocka_unit_test(test_device_layout),
        cmocka_unit_test(test_device_state),  cmocka_unit_test(test_string_escape),
        cmocka_unit_test(test_utf8_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
