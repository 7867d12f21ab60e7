/* test_config.c - unit tests for the config loader (src/config.c).
 *
 * Each test writes a config to a temp file, loads it, and checks either the
 * resolved model or the exact "FILE:LINE: path: message" of every error.
 * Most documents are built by doc(), whose line numbers are fixed:
 *   1 gateway   2 TOP   3 devices = ( {   4 DEV   5 tags = (   6.. TAGS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define TCP "name = \"plc\"; host = \"10.0.0.1\";"
#define RTU "name = \"m\"; transport = \"rtu\"; serial = \"/dev/ttyUSB0\";"
#define TAG "{ name = \"t\"; table = \"holding\"; " /* + address, type */

static char err[16384];
static char path[64];

static const char *doc(const char *top, const char *dev, const char *tags)
{
    static char buf[8192];

    snprintf(buf, sizeof buf,
             "gateway = { id = \"gw\"; };\n"
             "%s\n"
             "devices = ( {\n"
             "  %s\n"
             "  tags = (\n"
             "%s\n"
             "  ); } );\n",
             top, dev, tags);
    return buf;
}

/* Write text to a fresh temp file and load it; path names it afterwards. */
static config *load_len(const char *text, size_t errlen)
{
    size_t len = strlen(text);
    config *cfg;
    int fd;

    strcpy(path, "/tmp/mbgate-test-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    memset(err, 'x', sizeof err);
    cfg = config_load(path, err, errlen);
    unlink(path);
    return cfg;
}

static config *load(const char *text)
{
    return load_len(text, sizeof err);
}

static config *load_ok(const char *text)
{
    config *cfg = load(text);

    if (!cfg)
        fail_msg("config rejected:\n%s\n--- text:\n%s", err, text);
    assert_string_equal(err, "");
    return cfg;
}

static int count_lines(const char *s)
{
    int n = *s ? 1 : 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Some error line starts with "FILE:LINE: " and contains needle. */
static bool has_error(int line, const char *needle)
{
    char prefix[128];
    size_t plen = (size_t)snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);

    for (const char *l = err; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *end = strchr(l, '\n');
        size_t len = end ? (size_t)(end - l) : strlen(l);
        char one[2048];

        snprintf(one, sizeof one, "%.*s", (int)len, l);
        if (!strncmp(one, prefix, plen) && strstr(one, needle))
            return true;
    }
    return false;
}

/* text is rejected with exactly one error, at line, containing needle. */
static void fails(const char *text, int line, const char *needle)
{
    config *cfg = load(text);

    if (cfg)
        fail_msg("accepted, expected line %d: %s\n--- text:\n%s", line, needle, text);
    if (count_lines(err) != 1 || !has_error(line, needle))
        fail_msg("expected one error \"%s:%d: ...%s...\", got:\n%s\n--- text:\n%s",
                 path, line, needle, err, text);
}

static const char *srcdir(void)
{
    const char *d = getenv("MBGATE_SRCDIR");

    return d && *d ? d : ".";
}

/* ---- valid configs and resolved defaults ---- */

static void test_shipped_example(void **state)
{
    char p[1024];
    config *cfg;
    const cfg_device *d;

    (void)state;
    snprintf(p, sizeof p, "%s/conf/mbgate.conf", srcdir());
    cfg = config_load(p, err, sizeof err);
    if (!cfg)
        fail_msg("%s", err);
    assert_string_equal(cfg->gateway.id, "gw-line3");
    assert_int_equal(cfg->mqtt.nbrokers, 1);
    assert_false(cfg->mqtt.tls.enabled);
    assert_false(cfg->mqtt.sparkplug);
    assert_non_null(d = config_device(cfg, "plc1"));
    assert_string_equal(d->host, "192.168.1.10");
    assert_int_equal(d->port, 502);
    assert_true(d->ntags >= 6);
    config_free(cfg);
}

static void test_demo(void **state)
{
    char p[1024];
    config *cfg;
    const cfg_device *d;
    const cfg_tag *t;

    (void)state;
    snprintf(p, sizeof p, "%s/conf/demo.conf", srcdir());
    cfg = config_load(p, err, sizeof err);
    if (!cfg)
        fail_msg("%s", err);
    assert_string_equal(cfg->gateway.id, "demo");
    assert_string_equal(cfg->gateway.state_dir, "/tmp/mbgate-demo");
    assert_string_equal(cfg->control.socket, "/tmp/mbgate-demo/mbgate.sock");
    assert_string_equal(cfg->mqtt.brokers[0].host, "127.0.0.1");
    assert_int_equal(cfg->mqtt.brokers[0].port, 1883);
    assert_string_equal(cfg->mqtt.topic_prefix, "mbgate/demo");
    assert_true(cfg->ndevices >= 1);
    d = &cfg->devices[0];
    assert_string_equal(d->host, "127.0.0.1");
    assert_int_equal(d->port, 1502);
    assert_int_equal(d->poll_ms, 1000);

    assert_non_null(t = config_tag(d, "temperature"));
    assert_int_equal(t->type, CT_FLOAT32);
    assert_int_equal(t->sim, SIM_DRIFT);
    assert_true(t->has_min && t->has_max && t->has_deadband && t->min < t->max);
    assert_non_null(t = config_tag(d, "counter"));
    assert_int_equal(t->sim, SIM_COUNTER);
    assert_non_null(t = config_tag(d, "run"));
    assert_true(t->table == TABLE_COIL && t->type == CT_BOOL && t->writable);
    assert_non_null(t = config_tag(d, "alarm"));
    assert_true(t->bit >= 0 && t->type == CT_BOOL);
    assert_non_null(t = config_tag(d, "setpoint"));
    assert_true(t->writable && t->has_min && t->has_max && t->type == CT_UINT16);
    assert_non_null(t = config_tag(d, "serial_no"));
    assert_int_equal(t->type, CT_STRING);
    assert_int_equal(t->count, (t->length + 1) / 2);
    assert_non_null(t = config_tag(d, "pressure"));
    assert_int_equal(t->type, CT_INT16);
    assert_true(t->scale != 1);
    config_free(cfg);
}

static void test_defaults(void **state)
{
    config *cfg;
    const cfg_device *d;
    const cfg_tag *t;

    (void)state;
    cfg = load_ok(doc("", TCP " byte_order = \"CDAB\"; poll_ms = 500;",
                      TAG "address = 0; type = \"float32\"; },\n"
                      "{ name = \"s\"; table = \"holding\"; address = 10; type = \"string\"; length = 15; },\n"
                      "{ name = \"c\"; table = \"coil\"; address = 3; type = \"bool\"; },\n"
                      "{ name = \"b\"; table = \"input\"; address = 7; bit = 4; type = \"bool\"; },\n"
                      "{ name = \"w\"; table = \"input\"; address = 8; type = \"bool\"; },\n"
                      "{ name = \"n\"; table = \"input\"; address = 9; type = \"int16\"; poll_ms = 60000;"
                      " byte_order = \"DCBA\"; }"));
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->gateway.state_dir, "/var/lib/mbgate");
    assert_int_equal(cfg->gateway.log_level, LOG_INFO_L);
    assert_int_equal(cfg->mqtt.nbrokers, 1);
    assert_string_equal(cfg->mqtt.brokers[0].host, "localhost");
    assert_int_equal(cfg->mqtt.brokers[0].port, 1883);
    assert_string_equal(cfg->mqtt.client_id, "mbgate-gw");
    assert_string_equal(cfg->mqtt.topic_prefix, "mbgate/gw");
    assert_string_equal(cfg->mqtt.sparkplug_cfg.edge_node_id, "gw");
    assert_false(cfg->mqtt.v5);
    assert_int_equal(cfg->mqtt.keepalive, 30);
    assert_int_equal(cfg->mqtt.qos, 1);
    assert_false(cfg->mqtt.retain);
    assert_false(cfg->mqtt.sparkplug);
    assert_false(cfg->mqtt.layout_device);
    assert_int_equal(cfg->mqtt.max_inflight, 100);
    assert_false(cfg->mqtt.tls.enabled);
    assert_int_equal(cfg->buffer.max_mb, 256);
    assert_int_equal(cfg->buffer.max_age_s, 0);
    assert_false(cfg->buffer.sync_full);
    assert_int_equal(cfg->buffer.replay_rate, 0);
    assert_true(cfg->setpoints.enabled);
    assert_int_equal(cfg->setpoints.max_age_s, 30);
    assert_false(cfg->setpoints.accept_retained);
    assert_int_equal(cfg->setpoints.max_rate, 10);
    assert_string_equal(cfg->control.socket, "/run/mbgate/mbgate.sock");
    assert_int_equal(cfg->status.publish_interval_s, 30);

    d = &cfg->devices[0];
    assert_int_equal(d->transport, TRANSPORT_TCP);
    assert_int_equal(d->port, 502);
    assert_int_equal(d->unit_id, 1);
    assert_int_equal(d->timeout_ms, 1000);
    assert_int_equal(d->retries, 1);
    assert_int_equal(d->order, CO_CDAB);
    assert_int_equal(d->max_read_registers, 125);
    assert_int_equal(d->max_read_bits, 2000);
    assert_int_equal(d->max_gap, 16);
    assert_false(d->write_multiple);
    assert_int_equal(d->line, 3);
    assert_int_equal(d->ntags, 6);

    t = config_tag(d, "t");
    assert_int_equal(t->count, 2);
    assert_int_equal(t->order, CO_CDAB); /* the device's */
    assert_int_equal(t->poll_ms, 500);   /* the device's */
    assert_int_equal(t->bit, -1);
    assert_true(t->scale == 1 && t->offset == 0);
    assert_false(t->has_min || t->has_max || t->has_deadband || t->has_sim_value);
    assert_false(t->writable);
    assert_true(t->verify);
    assert_int_equal(t->sim, SIM_DRIFT);
    assert_int_equal(t->line, 6);
    t = config_tag(d, "s");
    assert_int_equal(t->count, 8);
    assert_int_equal(t->length, 15);
    assert_int_equal(t->sim, SIM_FIXED);
    t = config_tag(d, "c");
    assert_int_equal(t->count, 1);
    assert_int_equal(t->sim, SIM_TOGGLE);
    t = config_tag(d, "b");
    assert_int_equal(t->bit, 4);
    assert_int_equal(t->count, 1);
    assert_int_equal(config_tag(d, "w")->bit, -1); /* whole register: non-zero is true */
    t = config_tag(d, "n");
    assert_int_equal(t->poll_ms, 60000);
    assert_int_equal(t->order, CO_DCBA);
    assert_null(config_tag(d, "nope"));
    assert_null(config_device(cfg, "nope"));
    config_free(cfg);
}

static void test_every_type_name(void **state)
{
    static const char *const names[] = { "bool", "int16", "uint16", "int32", "uint32",
        "int64", "uint64", "float32", "float64", "string" };
    char tag[256];

    (void)state;
    for (int i = 0; i < 10; i++) {
        codec_type want;
        config *cfg;

        snprintf(tag, sizeof tag, TAG "address = 0; type = \"%s\"; %s }", names[i],
                 i == 9 ? "length = 4;" : "");
        cfg = load_ok(doc("", TCP, tag));
        assert_int_equal(codec_type_parse(names[i], &want), 0);
        assert_int_equal(cfg->devices[0].tags[0].type, want);
        assert_int_equal(cfg->devices[0].tags[0].count, codec_regs(want, 4));
        config_free(cfg);
    }
}

static void test_rtu_frame_gap(void **state)
{
    config *cfg;
    char key[64];

    (void)state;
    cfg = load_ok("gateway = { id = \"gw\"; };\n"
                  "devices = (\n"
                  "{ name = \"a\"; transport = \"rtu\"; serial = \"/dev/ttyUSB0\"; unit_id = 1; },\n"
                  "{ name = \"b\"; transport = \"rtu\"; serial = \"/dev/ttyUSB1\"; baud = 9600;"
                  " parity = \"even\"; unit_id = 2; },\n"
                  "{ name = \"c\"; transport = \"rtu\"; serial = \"/dev/ttyUSB2\"; baud = 38400; },\n"
                  "{ name = \"d\"; transport = \"rtu\"; serial = \"/dev/ttyUSB3\"; frame_gap_ms = 5;"
                  " data_bits = 7; stop_bits = 2; parity = \"odd\"; rs485 = true; },\n"
                  "{ name = \"e\"; transport = \"rtu\"; serial = \"/dev/ttyUSB0\"; unit_id = 5; }\n"
                  ");\n");
    assert_int_equal(cfg->devices[0].baud, 19200);
    assert_int_equal(cfg->devices[0].parity, 'N');
    assert_int_equal(cfg->devices[0].data_bits, 8);
    assert_int_equal(cfg->devices[0].stop_bits, 1);
    assert_int_equal(cfg->devices[0].frame_gap_us, 1823); /* 3.5 * 10 bits at 19200 */
    assert_int_equal(cfg->devices[1].parity, 'E');
    assert_int_equal(cfg->devices[1].frame_gap_us, 4011); /* 3.5 * 11 bits at 9600 */
    assert_int_equal(cfg->devices[2].frame_gap_us, 1750); /* the floor above 19200 */
    assert_int_equal(cfg->devices[3].frame_gap_us, 5000); /* given, as an int */
    assert_int_equal(cfg->devices[3].parity, 'O');
    assert_true(cfg->devices[3].rs485);
    assert_int_equal(cfg->devices[0].ntags, 0);
    config_link_key(&cfg->devices[0], key, sizeof key);
    assert_string_equal(key, "rtu:/dev/ttyUSB0");
    config_free(cfg);
}

static void test_mqtt_brokers_and_tls(void **state)
{
    config *cfg;

    (void)state;
    cfg = load_ok(doc("mqtt = { brokers = (\"a.example:8884\", \"b.example\", \"[::1]:1884\");"
                      " tls = { ca_file = \"/etc/ca.pem\"; }; protocol = \"5\"; qos = 2;"
                      " topic_prefix = \"site/a\"; client_id = \"x\"; format = \"sparkplug\";"
                      " sparkplug = { group_id = \"plant1\"; primary_host_id = \"scada\"; }; };",
                      TCP, ""));
    assert_int_equal(cfg->mqtt.nbrokers, 3);
    assert_string_equal(cfg->mqtt.brokers[0].host, "a.example");
    assert_int_equal(cfg->mqtt.brokers[0].port, 8884);
    assert_string_equal(cfg->mqtt.brokers[1].host, "b.example");
    assert_int_equal(cfg->mqtt.brokers[1].port, 8883); /* tls default */
    assert_string_equal(cfg->mqtt.brokers[2].host, "::1");
    assert_int_equal(cfg->mqtt.brokers[2].port, 1884);
    assert_true(cfg->mqtt.tls.enabled);
    assert_true(cfg->mqtt.tls.verify_hostname);
    assert_false(cfg->mqtt.tls.insecure);
    assert_string_equal(cfg->mqtt.tls.ca_file, "/etc/ca.pem");
    assert_true(cfg->mqtt.v5);
    assert_int_equal(cfg->mqtt.qos, 2);
    assert_string_equal(cfg->mqtt.topic_prefix, "site/a");
    assert_string_equal(cfg->mqtt.client_id, "x");
    assert_true(cfg->mqtt.sparkplug);
    assert_string_equal(cfg->mqtt.sparkplug_cfg.edge_node_id, "gw");
    assert_string_equal(cfg->mqtt.sparkplug_cfg.primary_host_id, "scada");
    config_free(cfg);

    cfg = load_ok(doc("mqtt = { host = \"broker\"; tls = { insecure = true; }; };", TCP, ""));
    assert_string_equal(cfg->mqtt.brokers[0].host, "broker");
    assert_int_equal(cfg->mqtt.brokers[0].port, 8883);
    assert_true(cfg->mqtt.tls.insecure);
    config_free(cfg);
}

static void test_int_for_float(void **state)
{
    config *cfg;
    const cfg_tag *t;

    (void)state;
    cfg = load_ok(doc("", TCP, TAG "address = 0; type = \"int16\"; scale = 2; offset = -5; min = 0;"
                      " max = 100; deadband = 1; sim_value = 7; }"));
    t = &cfg->devices[0].tags[0];
    assert_true(t->scale == 2.0 && t->offset == -5.0 && t->min == 0 && t->max == 100.0);
    assert_true(t->has_deadband && t->deadband == 1.0);
    assert_true(t->has_sim_value && t->sim_value == 7.0);
    config_free(cfg);
}

static void test_sim_values(void **state)
{
    config *cfg;
    const cfg_device *d;

    (void)state;
    cfg = load_ok(doc("", TCP,
                      TAG "address = 0; type = \"uint64\"; sim = \"counter\"; sim_value = 5000000000L; },\n"
                      "{ name = \"b\"; table = \"coil\"; address = 0; type = \"bool\"; sim_value = true; },\n"
                      "{ name = \"s\"; table = \"holding\"; address = 9; type = \"string\"; length = 4;"
                      " sim_value = \"ab\"; },\n"
                      "{ name = \"f\"; table = \"holding\"; address = 20; type = \"float64\";"
                      " sim = \"fixed\"; sim_value = 1.5; }"));
    d = &cfg->devices[0];
    assert_true(d->tags[0].sim_value == 5e9);
    assert_int_equal(d->tags[0].sim, SIM_COUNTER);
    assert_true(d->tags[1].has_sim_value && d->tags[1].sim_value == 1);
    assert_string_equal(d->tags[2].sim_text, "ab");
    assert_true(d->tags[3].sim_value == 1.5);
    assert_int_equal(d->tags[3].sim, SIM_FIXED);
    config_free(cfg);

    fails(doc("", TCP, TAG "address = 0; type = \"float32\"; sim = \"counter\"; }"), 6,
          "devices.[0].tags.[0].sim: \"counter\" not applicable to type float32");
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; sim = \"toggle\"; }"), 6, "\"toggle\" not applicable to type uint16");
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; sim_value = \"x\"; }"), 6,
          "sim_value: wrong type string (expected a number)");
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; sim_value = true; }"), 6, "sim_value: wrong type bool");
    fails(doc("", TCP, TAG "address = 0; type = \"string\"; length = 2; sim_value = \"abc\"; }"), 6,
          "sim_value: too long, 3 characters (expected at most length 2)");
}

static void test_aliases_allowed(void **state)
{
    config *cfg;

    (void)state;
    cfg = load_ok(doc("", TCP,
                      TAG "address = 0; type = \"float32\"; },\n"
                      "{ name = \"u\"; table = \"holding\"; address = 0; type = \"float32\"; byte_order = \"CDAB\"; },\n"
                      "{ name = \"w\"; table = \"holding\"; address = 2; type = \"uint16\"; },\n"
                      "{ name = \"x\"; table = \"holding\"; address = 2; type = \"uint16\"; writable = true; },\n"
                      "{ name = \"b0\"; table = \"holding\"; address = 2; bit = 0; type = \"bool\"; },\n"
                      "{ name = \"b1\"; table = \"holding\"; address = 0; bit = 0; type = \"bool\"; },\n"
                      "{ name = \"i\"; table = \"input\"; address = 0; type = \"int16\"; },\n"
                      "{ name = \"c1\"; table = \"coil\"; address = 0; type = \"bool\"; },\n"
                      "{ name = \"c2\"; table = \"coil\"; address = 0; type = \"bool\"; writable = true; }"));
    config_free(cfg);
}

/* ---- one test per kind of error ---- */

static void test_missing_file(void **state)
{
    (void)state;
    assert_null(config_load("/tmp/mbgate-no-such-file.conf", err, sizeof err));
    assert_string_equal(err, "/tmp/mbgate-no-such-file.conf: cannot read: No such file or directory");
    assert_null(config_load("/tmp", err, sizeof err));
    assert_string_equal(err, "/tmp: cannot read: Is a directory");
}

static void test_syntax_error(void **state)
{
    (void)state;
    fails("gateway = { id = \"gw\"; };\nmqtt = { host = ; };\n", 2, "syntax error");
    fails("gateway = { id = \"gw\"; };\n\ngateway = { id = \"x\"; };\n", 3,
          "duplicate setting name");
}

static void test_unknown_key(void **state)
{
    (void)state;
    fails(doc("bogus = 1;", TCP, ""), 2, "bogus: unknown key (expected one of gateway, mqtt,");
    fails(doc("mqtt = { tls = { ca = \"x\"; }; };", TCP, ""), 2,
          "mqtt.tls.ca: unknown key (expected one of ca_file, ca_path,");
    fails(doc("", TCP " pol_ms = 100;", ""), 4, "devices.[0].pol_ms: unknown key");
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; scal = 2; }"), 6,
          "devices.[0].tags.[0].scal: unknown key (expected one of name, table, address,");
}

static void test_wrong_type(void **state)
{
    (void)state;
    fails(doc("", TCP " port = \"502\";", ""), 4,
          "devices.[0].port: wrong type string (expected an integer 1..65535)");
    fails(doc("", TCP " poll_ms = 1500.0;", ""), 4,
          "devices.[0].poll_ms: wrong type float (expected an integer >= 10)");
    fails(doc("mqtt = { retain = 1; };", TCP, ""), 2,
          "mqtt.retain: wrong type integer (expected true or false)");
    fails(doc("status = 5;", TCP, ""), 2, "status: wrong type integer (expected a group");
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; scale = \"2\"; }"), 6, "scale: wrong type string (expected a number)");
    fails(doc("", TCP, TAG "address = 0; type = 3; }"), 6, "type: wrong type integer (expected one of bool,");
    fails("gateway = { id = \"gw\"; };\ndevices = ( { " TCP "\n tags = 3; } );\n", 3,
          "devices.[0].tags: wrong type integer (expected a list");
}

static void test_unknown_value(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"float\"; }"), 6,
          "devices.[0].tags.[0].type: unknown type \"float\" (expected bool, int16, uint16, "
          "int32, uint32, int64, uint64, float32, float64, string)");
    fails(doc("", TCP, "{ name = \"t\"; table = \"holdings\"; address = 0; type = \"uint16\"; }"), 6,
          "unknown table \"holdings\" (expected coil, discrete, input, holding)");
    fails(doc("", TCP " byte_order = \"ABDC\";", ""), 4,
          "unknown byte_order \"ABDC\" (expected ABCD, CDAB, BADC, DCBA)");
    fails(doc("", "name = \"x\"; transport = \"udp\";", ""), 4, "unknown transport \"udp\"");
    fails(doc("mqtt = { protocol = \"5.0\"; };", TCP, ""), 2,
          "unknown protocol \"5.0\" (expected 3.1.1, 5)");
    fails(doc("buffer = { sync = \"always\"; };", TCP, ""), 2, "unknown sync \"always\"");
}

static void test_log_level(void **state)
{
    (void)state;
    fails("gateway = {\n  id = \"gw\";\n  log_level = \"verbose\";\n};\n"
          "devices = ( { " TCP " } );\n", 3,
          "gateway.log_level: unknown log_level \"verbose\" (expected error, warning, info, debug)");
}

static void test_duplicate_device(void **state)
{
    (void)state;
    fails("gateway = { id = \"gw\"; };\ndevices = (\n"
          "  { name = \"a\"; host = \"h1\"; },\n"
          "  { name = \"b\"; host = \"h2\"; },\n"
          "  { name = \"a\";\n    host = \"h3\"; }\n);\n",
          5, "devices.[2].name: duplicate device name \"a\" (expected unique names; first at line 3)");
}

static void test_duplicate_tag(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; },\n"
              "{ name = \"u\"; table = \"coil\"; address = 0; type = \"bool\"; },\n"
              "{ name = \"t\"; table = \"coil\"; address = 1; type = \"bool\"; }"),
          8, "devices.[0].tags.[2].name: duplicate tag name \"t\"");
    /* The same tag name in two devices is fine. */
    config_free(load_ok("gateway = { id = \"gw\"; };\ndevices = (\n"
                        "{ name = \"a\"; host = \"h\"; tags = ( " TAG "address = 0; type = \"uint16\"; } ); },\n"
                        "{ name = \"b\"; host = \"h\"; unit_id = 2; tags = ( " TAG "address = 0; type = \"uint16\"; } ); } );\n"));
}

static void test_reserved_status(void **state)
{
    (void)state;
    fails(doc("", "name = \"status\"; host = \"h\";", ""), 4,
          "devices.[0].name: reserved name \"status\"");
    fails(doc("", TCP, "{ name = \"status\"; table = \"coil\"; address = 0; type = \"bool\"; }"),
          6, "devices.[0].tags.[0].name: reserved name \"status\"");
}

static void test_invalid_name(void **state)
{
    (void)state;
    fails("gateway = { id = \"gw 1\"; };\ndevices = ( { " TCP " } );\n", 1,
          "gateway.id: invalid name \"gw 1\" (expected letters, digits, '_' and '-' only)");
    fails(doc("", "name = \"a/b\"; host = \"h\";", ""), 4, "devices.[0].name: invalid name \"a/b\"");
    fails(doc("", TCP, "{ name = \"t.x\"; table = \"coil\"; address = 0; type = \"bool\"; }"), 6,
          "devices.[0].tags.[0].name: invalid name \"t.x\"");
    fails(doc("", TCP, "{ name = \"\"; table = \"coil\"; address = 0; type = \"bool\"; }"), 6,
          "name: empty (expected a non-empty string)");
    fails("gateway = { id = \"0123456789012345678901234567890123456789012345678901234567890123\"; };\n"
          "devices = ( { " TCP " } );\n", 1, "gateway.id: too long, 64 characters (expected at most 63)");
}

static void test_overlap(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "type = \"float32\"; address = 100; },\n"
              "{ name = \"i\"; table = \"holding\";\n"
              "  address = 101; type = \"int16\"; }"),
          8, "devices.[0].tags.[1].address: holding 101 (int16) overlaps tag \"t\" at "
             "holding 100..101 (float32) (expected only same-type aliases)");
    /* A whole-register bool is a type like any other. */
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; },\n{ name = \"b\"; table = \"holding\"; address = 0; type = \"bool\"; }"),
          7, "overlaps tag \"t\"");
}

static void test_bit_on_bit_table(void **state)
{
    (void)state;
    fails(doc("", TCP, "{ name = \"c\"; table = \"coil\"; address = 0; bit = 1; type = \"bool\"; }"),
          6, "devices.[0].tags.[0].bit: not applicable to table coil");
    fails(doc("", TCP, "{ name = \"d\"; table = \"discrete\"; address = 0; bit = 1; type = \"bool\"; }"),
          6, "bit: not applicable to table discrete");
}

static void test_bit_out_of_range(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"bool\"; bit = 16; }"), 6,
          "devices.[0].tags.[0].bit: 16 out of range (expected 0..15)");
    fails(doc("", TCP, TAG "address = 0; type = \"bool\"; bit = -1; }"), 6, "bit: -1 out of range");
}

static void test_bit_with_non_bool(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; bit = 3; }"), 6,
          "devices.[0].tags.[0].bit: not applicable to type uint16 (expected bit only with type bool");
}

static void test_non_bool_on_bit_table(void **state)
{
    (void)state;
    fails(doc("", TCP, "{ name = \"c\"; table = \"coil\"; address = 0; type = \"int16\"; }"), 6,
          "devices.[0].tags.[0].type: type int16 on table coil (expected bool)");
}

static void test_writable_read_only(void **state)
{
    (void)state;
    fails(doc("", TCP, "{ name = \"i\"; table = \"input\"; address = 0; type = \"int16\";\n"
                       "  writable = true; }"),
          7, "devices.[0].tags.[0].writable: table input is read-only");
    fails(doc("", TCP, "{ name = \"d\"; table = \"discrete\"; address = 0; type = \"bool\"; writable = true; }"),
          6, "writable: table discrete is read-only");
    /* writable = false on a read-only table says nothing wrong. */
    config_free(load_ok(doc("", TCP, "{ name = \"i\"; table = \"input\"; address = 0;"
                                     " type = \"int16\"; writable = false; }")));
}

static void test_string_length(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"string\"; }"), 6,
          "devices.[0].tags.[0]: missing required key \"length\" (for type string)");
    fails(doc("", TCP, TAG "address = 0; type = \"string\"; length = 0; }"), 6,
          "length: 0 out of range (expected 1..256)");
    fails(doc("", TCP, TAG "address = 0; type = \"string\"; length = 257; }"), 6,
          "length: 257 out of range (expected 1..256)");
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; length = 2; }"), 6,
          "length: not applicable to type uint16 (expected length only with type string)");
}

static void test_address_past_end(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "type = \"float32\"; address = 65535; }"), 6,
          "devices.[0].tags.[0].address: holding 65535 + 2 registers ends past 65535");
    fails(doc("", TCP, TAG "type = \"uint16\"; address = 65536; }"), 6, "address: 65536 out of range (expected 0..65535)");
    config_free(load_ok(doc("", TCP, TAG "type = \"uint16\"; address = 65535; }")));
}

static void test_tag_too_big_for_one_read(void **state)
{
    (void)state;
    fails(doc("", TCP " max_read_registers = 4;", TAG "address = 0; type = \"string\"; length = 10; }"), 6,
          "devices.[0].tags.[0]: spans 5 registers, more than max_read_registers 4");
    fails(doc("", TCP, TAG "address = 0; type = \"string\"; length = 256; }"), 6,
          "spans 128 registers, more than max_read_registers 125");
}

/* Out-of-range numbers: key, where it goes (top/device/tag), and the message. */
static void test_out_of_range(void **state)
{
    static const struct {
        const char *top, *dev, *tag, *msg;
        int line;
    } cases[] = {
        { "", TCP " port = 0;", "", "devices.[0].port: 0 out of range (expected 1..65535)", 4 },
        { "", TCP " port = 65536;", "", "port: 65536 out of range (expected 1..65535)", 4 },
        { "", TCP " unit_id = 256;", "", "unit_id: 256 out of range (expected 0..255)", 4 },
        { "", TCP " poll_ms = 9;", "", "poll_ms: 9 out of range (expected >= 10)", 4 },
        { "", TCP " timeout_ms = 5;", "", "timeout_ms: 5 out of range (expected >= 10)", 4 },
        { "", TCP " retries = 11;", "", "retries: 11 out of range (expected 0..10)", 4 },
        { "", TCP " max_read_registers = 126;", "", "126 out of range (expected 1..125)", 4 },
        { "", TCP " max_read_registers = 0;", "", "0 out of range (expected 1..125)", 4 },
        { "", TCP " max_read_bits = 2001;", "", "2001 out of range (expected 1..2000)", 4 },
        { "", TCP " max_gap = 126;", "", "max_gap: 126 out of range (expected 0..125)", 4 },
        { "", RTU " baud = 0;", "", "baud: 0 out of range (expected >= 1)", 4 },
        { "", RTU " data_bits = 6;", "", "data_bits: 6 out of range (expected 7..8)", 4 },
        { "", RTU " stop_bits = 3;", "", "stop_bits: 3 out of range (expected 1..2)", 4 },
        { "", RTU " parity = \"mark\";", "", "unknown parity \"mark\" (expected none, even, odd)", 4 },
        { "", RTU " frame_gap_ms = -1;", "", "frame_gap_ms: -1 out of range (expected 0..1000)", 4 },
        { "mqtt = { qos = 3; };", TCP, "", "mqtt.qos: 3 out of range (expected 0..2)", 2 },
        { "mqtt = { keepalive = 4; };", TCP, "", "keepalive: 4 out of range (expected 5..65535)", 2 },
        { "mqtt = { port = 0; };", TCP, "", "mqtt.port: 0 out of range (expected 1..65535)", 2 },
        { "mqtt = { max_inflight = 0; };", TCP, "", "max_inflight: 0 out of range", 2 },
        { "buffer = { max_mb = 0; };", TCP, "", "buffer.max_mb: 0 out of range (expected >= 1)", 2 },
        { "setpoints = { max_rate = 0; };", TCP, "", "max_rate: 0 out of range (expected >= 1)", 2 },
        { "status = { publish_interval_s = 0; };", TCP, "", "publish_interval_s: 0 out of range", 2 },
        { "", TCP, TAG "address = 0; type = \"uint16\"; poll_ms = 5; }", "tags.[0].poll_ms: 5 out of range (expected >= 10)", 6 },
        { "", TCP, TAG "address = 0; type = \"uint16\"; heartbeat_s = -1; }", "heartbeat_s: -1 out of range (expected >= 0)", 6 },
        { "", TCP, TAG "type = \"uint16\"; address = -1; }", "address: -1 out of range (expected 0..65535)", 6 },
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        fails(doc(cases[i].top, cases[i].dev, cases[i].tag), cases[i].line, cases[i].msg);
}

static void test_rtu_unit_id_zero(void **state)
{
    config *cfg;

    (void)state;
    fails(doc("", RTU " unit_id = 0;", ""), 4,
          "devices.[0].unit_id: 0 out of range for transport \"rtu\" (expected 1..247)");
    cfg = load_ok(doc("", TCP " unit_id = 0;", ""));
    assert_int_equal(cfg->devices[0].unit_id, 0);
    config_free(cfg);
}

static void test_scale_zero(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; scale = 0.0; }"), 6,
          "devices.[0].tags.[0].scale: 0 out of range (expected a non-zero number)");
    fails(doc("", TCP, TAG "address = 0; type = \"bool\"; scale = 2; }"), 6,
          "scale: not applicable to type bool (expected a numeric type)");
}

static void test_min_above_max(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; min = 10;\n  max = 5; }"), 6,
          "devices.[0].tags.[0].min: min 10 > max 5 (expected min <= max)");
}

static void test_negative_deadband(void **state)
{
    (void)state;
    fails(doc("", TCP, TAG "address = 0; type = \"uint16\"; deadband = -0.5; }"), 6,
          "devices.[0].tags.[0].deadband: -0.5 out of range (expected >= 0)");
}

static void test_missing_required(void **state)
{
    (void)state;
    fails("gateway = { id = \"gw\"; };\n", 1, "missing required key \"devices\"");
    fails("devices = ( { " TCP " } );\n", 1, "missing required key \"gateway\"");
    fails("gateway = { state_dir = \"/x\"; };\ndevices = ( { " TCP " } );\n", 1,
          "gateway: missing required key \"id\"");
    fails("gateway = { id = \"gw\"; };\ndevices = ( );\n", 2,
          "devices: empty (expected at least one device)");
    fails("gateway = { id = \"gw\"; };\ndevices = { name = \"a\"; };\n", 2,
          "devices: wrong type group (expected a list");
    fails(doc("", "host = \"h\";", ""), 3, "devices.[0]: missing required key \"name\"");
    fails(doc("", "name = \"a\";", ""), 3, "devices.[0]: missing required key \"host\" (for transport \"tcp\")");
    fails(doc("", "name = \"a\"; transport = \"rtu\";", ""), 3,
          "devices.[0]: missing required key \"serial\" (for transport \"rtu\")");
    fails(doc("", TCP, "{ table = \"coil\"; address = 0; type = \"bool\"; }"), 6,
          "devices.[0].tags.[0]: missing required key \"name\"");
    fails(doc("", TCP, "{ name = \"t\"; address = 0; type = \"bool\"; }"), 6, "missing required key \"table\"");
    fails(doc("", TCP, "{ name = \"t\"; table = \"coil\"; type = \"bool\"; }"), 6, "missing required key \"address\"");
    fails(doc("", TCP, "{ name = \"t\"; table = \"coil\"; address = 0; }"), 6, "missing required key \"type\"");
}

static void test_not_applicable_to_transport(void **state)
{
    (void)state;
    fails(doc("", TCP " baud = 9600;", ""), 4,
          "devices.[0].baud: not applicable to transport \"tcp\" (expected only with transport \"rtu\")");
    fails(doc("", TCP " serial = \"/dev/ttyS0\";", ""), 4, "serial: not applicable to transport \"tcp\"");
    fails(doc("", RTU " host = \"h\";", ""), 4,
          "devices.[0].host: not applicable to transport \"rtu\" (expected only with transport \"tcp\")");
    fails(doc("", RTU " port = 502;", ""), 4, "port: not applicable to transport \"rtu\"");
}

static void test_shared_serial_port(void **state)
{
    (void)state;
    fails("gateway = { id = \"gw\"; };\ndevices = (\n"
          "  { name = \"a\"; transport = \"rtu\"; serial = \"/dev/ttyUSB0\"; baud = 9600; },\n"
          "  { name = \"b\"; transport = \"rtu\"; serial = \"/dev/ttyUSB0\"; unit_id = 2; }\n);\n",
          4, "devices.[1]: serial settings differ from device \"a\" on /dev/ttyUSB0");
}

static void test_sparkplug_without_group(void **state)
{
    (void)state;
    fails(doc("mqtt = { format = \"sparkplug\"; };", TCP, ""), 2,
          "mqtt.format: \"sparkplug\" needs mqtt.sparkplug.group_id");
    fails(doc("mqtt = { sparkplug = { group_id = \"a/b\"; }; };", TCP, ""), 2,
          "mqtt.sparkplug.group_id: invalid id \"a/b\" (expected no '/', '+' or '#')");
}

static void test_layout_device_with_sparkplug(void **state)
{
    (void)state;
    fails(doc("mqtt = { format = \"sparkplug\"; layout = \"device\"; sparkplug = { group_id = \"g\"; }; };",
              TCP, ""), 2, "mqtt.layout: \"device\" not applicable with format \"sparkplug\"");
}

static void test_password_inline(void **state)
{
    (void)state;
    fails(doc("mqtt = { username = \"u\"; password = \"secret\"; };", TCP, ""), 2,
          "mqtt.password: not supported (use password_file)");
}

static void test_tls_cert_without_key(void **state)
{
    (void)state;
    fails(doc("mqtt = { tls = { cert_file = \"/c.pem\"; }; };", TCP, ""), 2,
          "mqtt.tls.cert_file: cert_file without key_file (expected both or neither)");
    fails(doc("mqtt = { tls = { key_file = \"/c.key\"; }; };", TCP, ""), 2,
          "mqtt.tls.key_file: key_file without cert_file");
}

static void test_broker_errors(void **state)
{
    (void)state;
    fails(doc("mqtt = { host = \"h\"; brokers = (\"a:1883\"); };", TCP, ""), 2,
          "mqtt.brokers: not applicable with mqtt.host/port");
    fails(doc("mqtt = { brokers = (\"a:1883\", \"b:0\"); };", TCP, ""), 2,
          "mqtt.brokers.[1]: invalid broker \"b:0\" (expected \"host:port\" with port 1..65535)");
    fails(doc("mqtt = { brokers = (\":1883\"); };", TCP, ""), 2, "invalid broker \":1883\"");
    fails(doc("mqtt = { brokers = (\"a:x\"); };", TCP, ""), 2, "invalid broker \"a:x\"");
    fails(doc("mqtt = { brokers = (); };", TCP, ""), 2, "mqtt.brokers: empty");
    fails(doc("mqtt = { brokers = (1883); };", TCP, ""), 2, "mqtt.brokers.[0]: wrong type integer");
}

static void test_text_limits(void **state)
{
    char top[256];

    (void)state;
    snprintf(top, sizeof top, "control = { socket = \"/run/%0120d\"; };", 0);
    fails(doc(top, TCP, ""), 2, "control.socket: too long, 125 characters (expected at most 107)");
    fails(doc("mqtt = { topic_prefix = \"a/#\"; };", TCP, ""), 2,
          "mqtt.topic_prefix: invalid topic \"a/#\"");
    fails(doc("mqtt = { topic_prefix = \"a/\"; };", TCP, ""), 2, "invalid topic \"a/\"");
    fails(doc("gateway = { id = \"x\"; };", TCP, ""), 2, "duplicate setting name");
}

static void test_multiple_errors(void **state)
{
    (void)state;
    assert_null(load(doc("bogus = true;", TCP " port = 0;",
                         TAG "address = 0; type = \"float\"; },\n"
                         "{ name = \"t\"; table = \"coil\"; address = 0; type = \"bool\"; },\n"
                         "{ name = \"w\"; table = \"input\"; address = 0; type = \"int16\"; writable = true; }")));
    assert_int_equal(count_lines(err), 5);
    assert_true(has_error(2, "bogus: unknown key"));
    assert_true(has_error(4, "devices.[0].port: 0 out of range"));
    assert_true(has_error(6, "devices.[0].tags.[0].type: unknown type \"float\""));
    assert_true(has_error(7, "devices.[0].tags.[1].name: duplicate tag name \"t\""));
    assert_true(has_error(8, "devices.[0].tags.[2].writable: table input is read-only"));
}

static void test_error_buffer_bounds(void **state)
{
    const char *text = doc("bogus = true;", TCP " port = 0;", "");
    size_t first;

    (void)state;
    assert_null(load(text));
    assert_int_equal(count_lines(err), 2);
    first = strchr(err, '\n') - err;

    /* Room for the first line only: the second is dropped whole. */
    assert_null(load_len(text, first + 5));
    assert_int_equal(strlen(err), first);
    assert_int_equal(err[first + 5], 'x');

    /* Not even room for one: cut, terminated, nothing written past. */
    assert_null(load_len(text, 10));
    assert_int_equal(strlen(err), 9);
    assert_int_equal(err[10], 'x');

    assert_null(load_len(text, 0));
    assert_int_equal(err[0], 'x');
    assert_null(config_load("/tmp/mbgate-no-such-file.conf", NULL, 0));
}

static void test_helpers(void **state)
{
    static const struct { cfg_table t; unsigned addr; const char *ref; } refs[] = {
        { TABLE_HOLDING, 100, "40101" }, { TABLE_INPUT, 10, "30011" },
        { TABLE_COIL, 0, "00001" }, { TABLE_DISCRETE, 5, "10006" },
        { TABLE_HOLDING, 9998, "49999" }, { TABLE_HOLDING, 9999, "410000" },
        { TABLE_HOLDING, 65535, "465536" },
    };
    static const char *const names[] = { "coil", "discrete", "input", "holding" };
    char buf[64];
    cfg_table t;
    cfg_device d = { .transport = TRANSPORT_TCP, .host = "10.0.0.1", .port = 502 };

    (void)state;
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        config_modicon(refs[i].t, refs[i].addr, buf, sizeof buf);
        assert_string_equal(buf, refs[i].ref);
    }
    for (int i = 0; i < 4; i++) {
        assert_string_equal(config_table_name((cfg_table)i), names[i]);
        assert_int_equal(config_table_parse(names[i], &t), 0);
        assert_int_equal(t, i);
    }
    assert_int_equal(config_table_parse("register", &t), -1);
    assert_true(config_table_is_bits(TABLE_COIL) && config_table_is_bits(TABLE_DISCRETE));
    assert_false(config_table_is_bits(TABLE_INPUT) || config_table_is_bits(TABLE_HOLDING));
    assert_true(config_table_is_writable(TABLE_COIL) && config_table_is_writable(TABLE_HOLDING));
    assert_false(config_table_is_writable(TABLE_INPUT) || config_table_is_writable(TABLE_DISCRETE));
    config_link_key(&d, buf, sizeof buf);
    assert_string_equal(buf, "tcp:10.0.0.1:502");
    config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_example),
        cmocka_unit_test(test_demo),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_type_name),
        cmocka_unit_test(test_rtu_frame_gap),
        cmocka_unit_test(test_mqtt_brokers_and_tls),
        cmocka_unit_test(test_int_for_float),
        cmocka_unit_test(test_sim_values),
        cmocka_unit_test(test_aliases_allowed),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_unknown_value),
        cmocka_unit_test(test_log_level),
        cmocka_unit_test(test_duplicate_device),
        cmocka_unit_test(test_duplicate_tag),
        cmocka_unit_test(test_reserved_status),
        cmocka_unit_test(test_invalid_name),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_bit_on_bit_table),
        cmocka_unit_test(test_bit_out_of_range),
        cmocka_unit_test(test_bit_with_non_bool),
        cmocka_unit_test(test_non_bool_on_bit_table),
        cmocka_unit_test(test_writable_read_only),
        cmocka_unit_test(test_string_length),
        cmocka_unit_test(test_address_past_end),
        cmocka_unit_test(test_tag_too_big_for_one_read),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_rtu_unit_id_zero),
        cmocka_unit_test(test_scale_zero),
        cmocka_unit_test(test_min_above_max),
        cmocka_unit_test(test_negative_deadband),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_not_applicable_to_transport),
        cmocka_unit_test(test_shared_serial_port),
        cmocka_unit_test(test_sparkplug_without_group),
        cmocka_unit_test(test_layout_device_with_sparkplug),
        cmocka_unit_test(test_password_inline),
        cmocka_unit_test(test_tls_cert_without_key),
        cmocka_unit_test(test_broker_errors),
        cmocka_unit_test(test_text_limits),
        cmocka_unit_test(test_multiple_errors),
        cmocka_unit_test(test_error_buffer_bounds),
        cmocka_unit_test(test_helpers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
