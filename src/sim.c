/* sim.c - a Modbus TCP PLC simulator. */
#include "sim.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#include "log.h"
#include "sample.h"

#define DRIFT_MS 500

typedef struct {
    const cfg_device *dev;
    modbus_mapping_t *map;
    double *value;   /* per tag: current engineering value */
    bool *held;      /* per tag: written by a client, no longer simulated */
} unit;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static double lo_of(const cfg_tag *t) { return t->has_min ? t->min : 0; }
static double hi_of(const cfg_tag *t) { return t->has_max ? t->max : 100; }

/* Store tag t's engineering value x into the map. */
static void put(unit *u, const cfg_tag *t, double x)
{
    modbus_mapping_t *m = u->map;
    if (t->table == TABLE_COIL || t->table == TABLE_DISCRETE) {
        uint8_t *bits = t->table == TABLE_COIL ? m->tab_bits : m->tab_input_bits;
        bits[t->address] = x != 0;
        return;
    }
    uint16_t *regs = t->table == TABLE_HOLDING ? m->tab_registers : m->tab_input_registers;
    if (t->bit >= 0) {
        uint16_t mask = (uint16_t)(1u << t->bit);
        regs[t->address] = x != 0 ? (uint16_t)(regs[t->address] | mask) : (uint16_t)(regs[t->address] & ~mask);
        return;
    }
    codec_value raw;
    if (t->type == CT_STRING) {
        raw.kind = CV_STR;
        snprintf(raw.s, sizeof raw.s, "%.*s", (int)t->length, t->sim_text ? t->sim_text : "");
    } else {
        double r = (x - t->offset) / t->scale;
        if (t->type != CT_FLOAT32 && t->type != CT_FLOAT64)
            r = round(r);
        if (codec_unscale(r * t->scale + t->offset, t->scale, t->offset, t->type, &raw, NULL, 0) < 0)
            return;
    }
    codec_encode(&raw, t->type, t->order, t->length, &regs[t->address]);
}

/* Read tag t's current engineering value back from the map (after a write). */
static double get(unit *u, const cfg_tag *t)
{
    modbus_mapping_t *m = u->map;
    codec_value raw, eng;
    if (t->table == TABLE_COIL)
        return m->tab_bits[t->address];
    if (t->table == TABLE_DISCRETE)
        return m->tab_input_bits[t->address];
    uint16_t *regs = t->table == TABLE_HOLDING ? m->tab_registers : m->tab_input_registers;
    if (codec_decode(&regs[t->address], t->type, t->order, t->length, t->bit, &raw) < 0)
        return 0;
    codec_scale(&raw, t->scale, t->offset, &eng);
    return codec_number(&eng);
}

static void initial(unit *u)
{
    for (size_t i = 0; i < u->dev->ntags; i++) {
        const cfg_tag *t = &u->dev->tags[i];
        double x = t->has_sim_value ? t->sim_value
                   : t->sim == SIM_COUNTER || t->type == CT_BOOL ? 0
                   : (lo_of(t) + hi_of(t)) / 2;
        u->value[i] = x;
        put(u, t, x);
    }
}

static void drift(unit *u)
{
    for (size_t i = 0; i < u->dev->ntags; i++) {
        const cfg_tag *t = &u->dev->tags[i];
        if (u->held[i] || t->writable || t->type == CT_STRING)
            continue;
        if (t->sim == SIM_TOGGLE || (t->type == CT_BOOL && t->sim == SIM_DRIFT)) {
            if (rand() % 4 == 0)
                u->value[i] = u->value[i] == 0;
        } else if (t->sim == SIM_DRIFT) {
            double lo = lo_of(t), hi = hi_of(t), step = (hi - lo) / 50;
            double x = u->value[i] + step * ((double)rand() / RAND_MAX - 0.5);
            u->value[i] = x < lo ? lo : x > hi ? hi : x;
        } else {
            continue;
        }
        put(u, t, u->value[i]);
    }
}

static bool overlaps(const cfg_tag *t, cfg_table table, unsigned addr, unsigned count)
{
    return t->table == table && t->address < addr + count && addr < t->address + t->count;
}

/* Before a read: counters covered by it move on by one. After a write:
 * written tags are held at what the client wrote. */
static void on_request(unit *u, const uint8_t *req, int hlen, bool after)
{
    int fc = req[hlen];
    unsigned addr = (unsigned)(req[hlen + 1] << 8 | req[hlen + 2]);
    unsigned count = (unsigned)(req[hlen + 3] << 8 | req[hlen + 4]);
    cfg_table table;
    bool write = false;
    switch (fc) {
    case 1: table = TABLE_COIL; break;
    case 2: table = TABLE_DISCRETE; break;
    case 3: table = TABLE_HOLDING; break;
    case 4: table = TABLE_INPUT; break;
    case 5: table = TABLE_COIL; count = 1; write = true; break;
    case 15: table = TABLE_COIL; write = true; break;
    case 6: case 22: table = TABLE_HOLDING; count = 1; write = true; break;
    case 16: table = TABLE_HOLDING; write = true; break;
    default: return;
    }
    for (size_t i = 0; i < u->dev->ntags; i++) {
        const cfg_tag *t = &u->dev->tags[i];
        if (!overlaps(t, table, addr, count))
            continue;
        if (write && after) {
            u->held[i] = true;
            u->value[i] = get(u, t);
        } else if (!write && !after && t->sim == SIM_COUNTER && !u->held[i]) {
            u->value[i] += 1;
            put(u, t, u->value[i]);
        }
    }
}

static unit *find_unit(unit *units, size_t n, int id)
{
    for (size_t i = 0; i < n; i++)
        if ((int)units[i].dev->unit_id == id)
            return &units[i];
    return n == 1 ? &units[0] : NULL;
}

static int serve(modbus_t *ctx, int server, unit *units, size_t nunits)
{
    fd_set all;
    int maxfd = server;
    uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
    int hlen = modbus_get_header_length(ctx);
    int64_t next_drift = mono_ms() + DRIFT_MS;
    FD_ZERO(&all);
    FD_SET(server, &all);
    while (!stop) {
        fd_set rd = all;
        struct timeval tv = { 0, DRIFT_MS * 1000 };
        int n = select(maxfd + 1, &rd, NULL, NULL, &tv);
        if (n < 0 && errno != EINTR)
            return -1;
        if (mono_ms() >= next_drift) {
            next_drift = mono_ms() + DRIFT_MS;
            for (size_t i = 0; i < nunits; i++)
                drift(&units[i]);
        }
        for (int fd = 0; n > 0 && fd <= maxfd; fd++) {
            if (!FD_ISSET(fd, &rd))
                continue;
            if (fd == server) {
                int c = modbus_tcp_accept(ctx, &server);
                if (c >= 0) {
                    FD_SET(c, &all);
                    if (c > maxfd)
                        maxfd = c;
                }
                continue;
            }
            modbus_set_socket(ctx, fd);
            int len = modbus_receive(ctx, req);
            if (len <= 0) {
                if (len < 0) {
                    close(fd);
                    FD_CLR(fd, &all);
                }
                continue;
            }
            unit *u = find_unit(units, nunits, req[hlen - 1]);
            if (!u) {
                modbus_reply_exception(ctx, req, MODBUS_EXCEPTION_GATEWAY_TARGET);
                continue;
            }
            on_request(u, req, hlen, false);
            modbus_reply(ctx, req, len, u->map);
            on_request(u, req, hlen, true);
        }
    }
    return 0;
}

int sim_run(const config *cfg, const char *listen_on)
{
    char host[CFG_TEXT_MAX] = "127.0.0.1";
    unsigned port = 502;
    int rc = 1, server = -1;
    modbus_t *ctx = NULL;
    unit *units = calloc(cfg->ndevices + 1, sizeof *units);
    size_t nunits = 0;
    if (!units)
        return 1;
    if (listen_on) {
        const char *colon = strrchr(listen_on, ':');
        if (!colon || sscanf(colon + 1, "%u", &port) != 1 || port == 0 || port > 65535) {
            fprintf(stderr, "mbgate sim: --listen %s: expected HOST:PORT\n", listen_on);
            goto out;
        }
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen_on), listen_on);
    } else if (cfg->ndevices && cfg->devices[0].transport == TRANSPORT_TCP) {
        snprintf(host, sizeof host, "%s", cfg->devices[0].host);
        port = cfg->devices[0].port;
    }
    for (size_t i = 0; i < cfg->ndevices; i++) {
        unit *u = &units[nunits++];
        u->dev = &cfg->devices[i];
        u->map = modbus_mapping_new(65536, 65536, 65536, 65536);
        u->value = calloc(u->dev->ntags + 1, sizeof *u->value);
        u->held = calloc(u->dev->ntags + 1, sizeof *u->held);
        if (!u->map || !u->value || !u->held) {
            fprintf(stderr, "mbgate sim: out of memory\n");
            goto out;
        }
        initial(u);
    }
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%u", port);
    ctx = modbus_new_tcp_pi(host, portstr);
    if (!ctx || (server = modbus_tcp_pi_listen(ctx, 16)) < 0) {
        fprintf(stderr, "mbgate sim: cannot listen on %s:%u: %s\n", host, port, modbus_strerror(errno));
        goto out;
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL));
    log_info("sim: serving %zu devices on %s:%u", nunits, host, port);
    rc = serve(ctx, server, units, nunits) < 0 ? 1 : 0;
out:
    if (server >= 0)
        close(server);
    if (ctx)
        modbus_free(ctx);
    for (size_t i = 0; i < nunits; i++) {
        if (units[i].map)
            modbus_mapping_free(units[i].map);
        free(units[i].value);
        free(units[i].held);
    }
    free(units);
    return rc;
}
