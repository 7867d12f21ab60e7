/* fuzz_setpoint.c - libFuzzer target: setpoint_parse() + setpoint_check()
 * on arbitrary MQTT payloads, against hand-built tags of every shape that
 * SPEC §5 validates differently. A command that passes must be writable:
 * codec_encode() accepts its raw value, the registers decode back to the
 * same raw value, and the engineering value stays within min/max. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "setpoint.h"

static cfg_tag tags[8];
static size_t ntags;

static cfg_tag *add(const char *name, codec_type t)
{
    cfg_tag *g = &tags[ntags++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->table = TABLE_HOLDING;
    g->bit = -1;
    g->type = t;
    g->order = CO_ABCD;
    g->scale = 1;
    g->writable = true;
    g->verify = true;
    g->poll_ms = 1000;
    g->count = codec_regs(t, 0);
    return g;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    cfg_tag *g;
    g = add("i16_scaled", CT_INT16);          /* raw x 0.1 + 5, 0..1500 */
    g->scale = 0.1; g->offset = 5; g->has_min = g->has_max = true; g->min = 0; g->max = 1500;
    g = add("f32_range", CT_FLOAT32);         /* -40..125.5 */
    g->order = CO_CDAB; g->has_min = g->has_max = true; g->min = -40; g->max = 125.5;
    g = add("bit3", CT_BOOL);                 /* a bit inside a holding register */
    g->bit = 3;
    g = add("coil", CT_BOOL);
    g->table = TABLE_COIL;
    g = add("str8", CT_STRING);
    g->length = 8; g->count = codec_regs(CT_STRING, 8);
    g = add("u64", CT_UINT64);
    g->order = CO_DCBA;
    g = add("i32_neg_scale", CT_INT32);       /* scale -0.001, no limits */
    g->scale = -0.001;
    g = add("ro_u16", CT_UINT16);
    g->writable = false;
    return 0;
}

static bool same_raw(const codec_value *a, const codec_value *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case CV_BOOL: return a->b == b->b;
    case CV_INT: return a->i == b->i;
    case CV_UINT: return a->u == b->u;
    case CV_F32: return memcmp(&a->f32, &b->f32, sizeof a->f32) == 0;
    case CV_F64: case CV_REAL: return memcmp(&a->f64, &b->f64, sizeof a->f64) == 0;
    case CV_STR: return strcmp(a->s, b->s) == 0;
    default: return false;
    }
}

static void check_ok(const cfg_tag *t, const sp_command *cmd)
{
    uint16_t regs[CODEC_STR_MAX / 2 + 4];
    codec_value back, eng;
    char json[1024];

    if (codec_encode(&cmd->raw, t->type, t->order, t->length, regs) != 0) {
        fprintf(stderr, "accepted for %s but codec_encode refuses it\n", t->name);
        abort();
    }
    if (t->type == CT_BOOL)
        return; /* bit tags are read-modify-written by the bus */
    if (codec_decode(regs, t->type, t->order, t->length, t->bit, &back) != 0 ||
        !same_raw(&back, &cmd->raw)) {
        fprintf(stderr, "%s: raw value does not survive encode/decode\n", t->name);
        abort();
    }
    codec_scale(&back, t->scale, t->offset, &eng);
    if (codec_format(&eng, json, sizeof json) < 0)
        abort();
    if (t->type == CT_STRING)
        return;
    double v = codec_number(&eng);
    double tol = 1e-6 * fmax(1.0, fmax(fabs(t->min), fabs(t->max)));
    if ((t->has_min && v < t->min - tol) || (t->has_max && v > t->max + tol)) {
        fprintf(stderr, "%s: accepted value writes %s, outside [%g, %g]\n",
                t->name, json, t->min, t->max);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sp_command cmd;
    char detail[256];
    sp_code rc = setpoint_parse(data, size, &cmd, detail, sizeof detail);
    if (rc != SP_OK) {
        if (rc != SP_BAD_PAYLOAD || !detail[0])
            abort(); /* parse only ever says bad_payload, with a reason */
        if (strlen(cmd.id) > SP_ID_MAX)
            abort();
        return 0;
    }
    if (size > SP_PAYLOAD_MAX || strlen(cmd.id) > SP_ID_MAX)
        abort();
    sp_policy pol = { .enabled = true, .max_age_s = 30, .now_ms = 1795743898123LL };
    for (size_t i = 0; i < ntags; i++) {
        sp_command c = cmd;
        rc = setpoint_check(&tags[i], &pol, &c, detail, sizeof detail);
        if (rc == SP_OK)
            check_ok(&tags[i], &c);
        else if (!detail[0] || !strcmp(setpoint_code_name(rc), "unknown"))
            abort();
    }
    /* policy paths: disabled, retained, no age check */
    sp_policy off = pol;
    off.enabled = false;
    sp_command c = cmd;
    if (setpoint_check(&tags[0], &off, &c, detail, sizeof detail) != SP_DISABLED)
        abort();
    off = pol;
    off.retained = true;
    c = cmd;
    if (setpoint_check(&tags[0], &off, &c, detail, sizeof detail) != SP_RETAINED)
        abort();
    off.accept_retained = true;
    off.max_age_s = 0;
    c = cmd;
    rc = setpoint_check(&tags[1], &off, &c, detail, sizeof detail);
    if (rc == SP_OK)
        check_ok(&tags[1], &c);
    c = cmd;
    if (setpoint_check(NULL, &pol, &c, detail, sizeof detail) != SP_UNKNOWN_TAG)
        abort();
    return 0;
}
