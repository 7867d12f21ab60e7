/* check.c - `mbgate check` report. */
#include "check.h"

#include <stdlib.h>
#include <sys/stat.h>

#include "plan.h"

static void print_tags(const cfg_device *d, FILE *out)
{
    fprintf(out, "  %-20s %-8s %7s %-8s %-8s %-5s %s\n", "tag", "table", "address", "ref",
            "type", "order", "notes");
    for (size_t i = 0; i < d->ntags; i++) {
        const cfg_tag *t = &d->tags[i];
        char ref[16], type[32];
        config_modicon(t->table, t->address, ref, sizeof ref);
        if (t->bit >= 0)
            snprintf(type, sizeof type, "bool.%d", t->bit);
        else if (t->type == CT_STRING)
            snprintf(type, sizeof type, "string%u", t->length);
        else
            snprintf(type, sizeof type, "%s", codec_type_name(t->type));
        fprintf(out, "  %-20s %-8s %7u %-8s %-8s %-5s", t->name, config_table_name(t->table),
                t->address, ref, type, t->count > 1 && t->type != CT_STRING ? codec_order_name(t->order) : "-");
        if (t->scale != 1 || t->offset != 0)
            fprintf(out, " x%g%+g", t->scale, t->offset);
        if (*t->unit)
            fprintf(out, " [%s]", t->unit);
        if (t->poll_ms != d->poll_ms)
            fprintf(out, " every %u ms", t->poll_ms);
        if (t->writable)
            fprintf(out, " writable");
        fputc('\n', out);
    }
}

/* The planner's requests for one (table, interval) group of a device. */
static int print_group(const cfg_device *d, cfg_table table, unsigned poll_ms, FILE *out)
{
    plan_item *items = calloc(d->ntags, sizeof *items);
    plan_req *reqs = calloc(d->ntags, sizeof *reqs);
    size_t n = 0;
    int nreq = -1;
    if (!items || !reqs)
        goto out;
    for (size_t i = 0; i < d->ntags; i++)
        if (d->tags[i].table == table && d->tags[i].poll_ms == poll_ms)
            items[n++] = (plan_item){ d->tags[i].address, d->tags[i].count };
    bool bits = config_table_is_bits(table);
    nreq = plan_build(items, n, bits ? d->max_read_bits : d->max_read_registers, d->max_gap, reqs);
    for (int r = 0; r < nreq; r++) {
        char a[16], b[16];
        config_modicon(table, reqs[r].addr, a, sizeof a);
        config_modicon(table, reqs[r].addr + reqs[r].count - 1, b, sizeof b);
        fprintf(out, "    every %5u ms  FC%02d %-8s %5u..%-5u  %s..%s  (%u %s)\n", poll_ms,
                table == TABLE_COIL ? 1 : table == TABLE_DISCRETE ? 2 : table == TABLE_HOLDING ? 3 : 4,
                config_table_name(table), reqs[r].addr, reqs[r].addr + reqs[r].count - 1, a, b,
                reqs[r].count, bits ? "bits" : "registers");
    }
out:
    free(items);
    free(reqs);
    return nreq < 0 ? 0 : nreq;
}

/* Groups are (table, poll_ms); the total is split by poll rate when tags
 * poll at different rates, since "per cycle" then differs per rate. */
static void print_plan(const cfg_device *d, FILE *out)
{
    int total = 0, *per_rate = calloc(d->ntags + 1, sizeof *per_rate);
    size_t nrates = 0;
    fprintf(out, "  read plan:\n");
    for (size_t i = 0; i < d->ntags; i++) {
        const cfg_tag *t = &d->tags[i];
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = d->tags[j].table == t->table && d->tags[j].poll_ms == t->poll_ms;
        if (seen)
            continue;
        int n = print_group(d, t->table, t->poll_ms, out);
        total += n;
        size_t r = 0;
        while (d->tags[r].poll_ms != t->poll_ms)
            r++; /* the first tag of this rate holds its count */
        if (per_rate)
            per_rate[r] += n;
        nrates += r == i;
    }
    fprintf(out, "  %d request%s per device cycle", total, total == 1 ? "" : "s");
    for (size_t i = 0, k = 0; per_rate && nrates > 1 && i < d->ntags; i++)
        if (per_rate[i])
            fprintf(out, "%s%d every %u ms", k++ ? ", " : ": ", per_rate[i], d->tags[i].poll_ms);
    fprintf(out, "\n");
    free(per_rate);
}

static int warn_readable(const char *what, const char *path, FILE *err)
{
    struct stat sb;
    if (!*path || stat(path, &sb) < 0 || !(sb.st_mode & S_IROTH))
        return 0;
    fprintf(err, "warning: %s %s is readable by every user (chmod o-r %s)\n", what, path, path);
    return 1;
}

int check_print(const config *cfg, FILE *out, FILE *err)
{
    int warnings = 0;
    fprintf(out, "%s: OK\n", cfg->path);
    fprintf(out, "gateway %s, broker %s:%u%s, prefix %s, format %s%s, qos %d\n", cfg->gateway.id,
            cfg->mqtt.brokers[0].host, cfg->mqtt.brokers[0].port,
            cfg->mqtt.nbrokers > 1 ? " (+ failover)" : "", cfg->mqtt.topic_prefix,
            cfg->mqtt.sparkplug ? "sparkplug" : "json",
            cfg->mqtt.sparkplug ? "" : cfg->mqtt.layout_device ? "/device" : "/tag", cfg->mqtt.qos);
    for (size_t i = 0; i < cfg->ndevices; i++) {
        const cfg_device *d = &cfg->devices[i];
        fputc('\n', out);
        if (d->transport == TRANSPORT_TCP)
            fprintf(out, "device %s: tcp %s:%u", d->name, d->host, d->port);
        else
            fprintf(out, "device %s: rtu %s %u %u%c%u", d->name, d->serial, d->baud, d->data_bits,
                    d->parity, d->stop_bits);
        fprintf(out, ", unit %u, poll %u ms, timeout %u ms, %u retr%s, %zu tags\n", d->unit_id,
                d->poll_ms, d->timeout_ms, d->retries, d->retries == 1 ? "y" : "ies", d->ntags);
        print_tags(d, out);
        print_plan(d, out);
    }
    if (cfg->mqtt.tls.insecure)
        fprintf(err, "warning: mqtt.tls.insecure = true: the broker's certificate is not checked\n"), warnings++;
    warnings += warn_readable("password_file", cfg->mqtt.password_file, err);
    if (*cfg->mqtt.password_file)
        warnings += warn_readable("config", cfg->path, err);
    warnings += warn_readable("tls key_file", cfg->mqtt.tls.key_file, err);
    return warnings;
}
