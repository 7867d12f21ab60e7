/* fuzz_spb.c - libFuzzer target: Sparkplug B NCMD/DCMD payloads (SPEC §8).
 *
 * spb_decode_cmd() on arbitrary bytes; every decoded metric must respect the
 * limits spb.h promises, spb_cmd_json() must give valid JSON that
 * setpoint_parse() takes (the DCMD path of the agent), and a metric that
 * spb_encode() can write back must decode to the same command. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec.h"
#include "setpoint.h"
#include "spb.h"

/* FUZZ_TOLERATE_KNOWN=1: let the bugs reported in issue #10 pass, so that a
 * long run can look for new ones (the regression seeds keep them failing
 * in `run.sh smoke` until they are fixed). */
static bool known;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    known = getenv("FUZZ_TOLERATE_KNOWN") != NULL;
    return 0;
}

static void check_json(const spb_cmd *c)
{
    char buf[CODEC_STR_MAX * 6 + 64];
    int n = spb_cmd_json(c, buf, sizeof buf);
    if (n < 0 || (size_t)n != strlen(buf)) {
        fprintf(stderr, "spb_cmd_json failed (%d)\n", n);
        abort();
    }
    /* what the agent does with a DCMD metric (sparkplug.c on_dcmd): the
     * JSON text goes through setpoint_parse like an MQTT command. Every
     * finite value that the metric carries must get through it; refusing
     * it as bad_payload refuses a legitimate write. */
    sp_command cmd;
    char detail[256];
    sp_code rc = setpoint_parse(buf, (size_t)n, &cmd, detail, sizeof detail);
    bool finite = c->is_null || c->kind != SPB_DOUBLE || isfinite(c->d);
    if (!c->is_null && finite && rc != SP_OK &&
        !(known && strstr(detail, "number out of range"))) {
        fprintf(stderr, "DCMD value (datatype %u) as text %s is refused by setpoint_parse: "
                "%s\n", c->datatype, buf, detail);
        abort();
    }
    /* and the text is JSON (numbers past int64 read as reals: valid JSON
     * that only jansson's integers cannot hold) */
    json_error_t e;
    json_t *j = json_loads(buf, JSON_DECODE_ANY, &e);
    if (!j && json_error_code(&e) == json_error_numeric_overflow)
        j = json_loads(buf, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &e);
    if (!j) {
        fprintf(stderr, "spb_cmd_json gave invalid JSON (%s): %s\n", e.text, buf);
        abort();
    }
    json_decref(j);
}

static void to_value(const spb_cmd *c, codec_value *v)
{
    memset(v, 0, sizeof *v);
    switch (c->kind) {
    case SPB_BOOL: v->kind = CV_BOOL; v->b = c->b; break;
    case SPB_INT: v->kind = CV_INT; v->i = c->i; break;
    case SPB_UINT: v->kind = CV_UINT; v->u = c->u; break;
    case SPB_DOUBLE: v->kind = CV_F64; v->f64 = c->d; break;
    case SPB_STRING: v->kind = CV_STR; memcpy(v->s, c->s, sizeof v->s); break;
    }
}

static bool same(const spb_cmd *a, const spb_cmd *b)
{
    if (strcmp(a->name, b->name) || a->has_alias != b->has_alias ||
        (a->has_alias && a->alias != b->alias) || a->is_null != b->is_null)
        return false;
    if (a->is_null)
        return true;
    if (a->kind != b->kind) {
        /* an alias-only metric is encoded without its datatype (Sparkplug
         * 3.0 DATA style), so it comes back with the one inferred from the
         * value field: UInt32 in long_value reads as Int64. Same number. */
        if (a->kind == SPB_UINT && b->kind == SPB_INT)
            return b->i >= 0 && (uint64_t)b->i == a->u;
        if (a->kind == SPB_INT && b->kind == SPB_UINT)
            return a->i >= 0 && (uint64_t)a->i == b->u;
        return false;
    }
    switch (a->kind) {
    case SPB_BOOL: return a->b == b->b;
    case SPB_INT: return a->i == b->i;
    case SPB_UINT: return a->u == b->u;
    case SPB_DOUBLE: return memcmp(&a->d, &b->d, sizeof a->d) == 0 || (isnan(a->d) && isnan(b->d));
    case SPB_STRING: return strcmp(a->s, b->s) == 0;
    }
    return false;
}

/* Encode the command back (as a DATA-style metric with its name/alias and
 * datatype); if that works it must decode to the same command. */
static void round_trip(const spb_cmd *c)
{
    codec_value v;
    spb_metric m = { .quality = -1, .timestamp = 1795743898123ULL };
    if (!c->is_null)
        to_value(c, &v);
    m.name = c->name[0] ? c->name : NULL;
    m.has_alias = c->has_alias;
    m.alias = c->alias;
    m.datatype = c->datatype;
    m.value = c->is_null ? NULL : &v;
    if (!m.name && !m.has_alias)
        abort(); /* decode promises a name or an alias */
    uint8_t *buf = NULL;
    size_t len = 0;
    if (spb_encode(1795743898123ULL, 0, &m, 1, &buf, &len) != 0)
        return;
    spb_cmd *back = NULL;
    char err[256];
    int n = spb_decode_cmd(buf, len, &back, err, sizeof err);
    if (n != 1 || !same(c, &back[0])) {
        fprintf(stderr, "spb round trip differs (n=%d%s%s) for datatype %u\n", n,
                n < 0 ? ": " : "", n < 0 ? err : "", c->datatype);
        abort();
    }
    free(back);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    spb_cmd *cmds = (spb_cmd *)1;
    char err[256] = "";
    int n = spb_decode_cmd(data, size, &cmds, err, sizeof err);
    if (n < 0) {
        if (cmds != NULL || !err[0])
            abort();
        return 0;
    }
    if (n > SPB_CMD_METRICS_MAX || (n == 0) != (cmds == NULL))
        abort();
    for (int i = 0; i < n; i++) {
        const spb_cmd *c = &cmds[i];
        if (strnlen(c->name, sizeof c->name) >= sizeof c->name)
            abort();
        if (!c->name[0] && !c->has_alias && known)
            continue;
        if (!c->name[0] && !c->has_alias) {
            fprintf(stderr, "metric %d decoded with neither a name nor an alias\n", i);
            abort(); /* spb.h: "Each metric needs a name or an alias" */
        }
        if (!c->is_null && c->kind == SPB_STRING &&
            strnlen(c->s, sizeof c->s) > CODEC_STR_MAX)
            abort();
        check_json(c);
        round_trip(c);
        /* short buffers never overflow */
        char small[8];
        spb_cmd_json(c, small, sizeof small);
        spb_cmd_json(c, NULL, 0);
    }
    free(cmds);
    return 0;
}
