/* storebench.c - outbox insert rate: store_put() from src/store.c, as the agent calls it.
 *
 *   storebench -D STATE_DIR [-n SAMPLES] [-b BATCH] [-d DEVICES] [-t TAGS] [-f] [-a AGE_MS] [-L]
 *
 * Commits SAMPLES samples into STATE_DIR/outbox.db in transactions of BATCH
 * samples (one poll cycle's worth), devices dNN / tags tNNNN in turn, like
 * uint16 counter tags, with ts spread over the AGE_MS before now. -f: the
 * agent's buffer.sync = "full". -L: the device layout, one row per device
 * and cycle holding its TAGS values (SAMPLES still counts values; BATCH
 * counts rows). Prints one JSON line {"n":..,"secs":..,"rate":..}
 * (samples committed per second, sample_new included as the bus threads pay
 * it). Linked with build/obj/store.o sample.o log.o, so it measures the
 * agent's own code; it also fills an outbox for the backlog-drain bench.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "sample.h"
#include "store.h"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Sample k of the tag layout: devices dNN / tags tNNNN in turn, values
 * counting up once per round like uint16 counter tags. */
static sample *tag_sample(long k, int ndev, int ntags, int64_t ts)
{
    long total = (long)ndev * ntags;
    char dev[32], tag[32], val[32];
    snprintf(dev, sizeof dev, "d%02ld", (k % total) / ntags + 1);
    snprintf(tag, sizeof tag, "t%04ld", k % ntags + 1);
    snprintf(val, sizeof val, "%ld", (k / total + 1) & 0xffff);
    return sample_new(dev, tag, ts, true, 4, val, NULL);
}

/* Sample k of the device layout: device k % ndev, one cycle of ntags values
 * built in obj. */
static sample *device_sample(long k, int ndev, int ntags, int64_t ts, char *obj)
{
    char dev[32];
    size_t len = 0;
    for (int t = 0; t < ntags; t++)
        len += (size_t)sprintf(obj + len, "%s\"t%04d\":%ld", t ? "," : "{", t + 1,
                               (k / ndev + 1) & 0xffff);
    strcpy(obj + len, "}");
    snprintf(dev, sizeof dev, "d%02ld", k % ndev + 1);
    return sample_new(dev, "", ts, true, 0, obj, NULL);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    long n = 1000000, batch = 500, age_ms = 60000;
    int ndev = 20, ntags = 500, full = 0, devlayout = 0, opt;
    while ((opt = getopt(argc, argv, "D:n:b:d:t:fa:L")) != -1) {
        switch (opt) {
        case 'D': dir = optarg; break;
        case 'n': n = atol(optarg); break;
        case 'b': batch = atol(optarg); break;
        case 'd': ndev = atoi(optarg); break;
        case 't': ntags = atoi(optarg); break;
        case 'f': full = 1; break;
        case 'a': age_ms = atol(optarg); break;
        case 'L': devlayout = 1; break;
        default:
            fprintf(stderr, "usage: storebench -D DIR [-n N] [-b BATCH] [-d DEV] [-t TAGS] [-f] [-a AGE_MS] [-L]\n");
            return 2;
        }
    }
    if (!dir || n < 1 || batch < 1)
        return 2;
    log_init(LOG_WARNING);
    char err[512] = "";
    store *st = store_open(dir, full, err, sizeof err);
    if (!st) {
        fprintf(stderr, "storebench: %s\n", err);
        return 1;
    }
    int64_t t_first = now_ms() - age_ms;
    /* device layout: {"t0001":N,...}, 16 bytes per value at most */
    char *obj = devlayout ? malloc((size_t)ntags * 16 + 2) : NULL;
    if (devlayout && !obj)
        return 1;
    double t0 = mono_s();
    long done = 0; /* values committed */
    for (long k = 0; done < n;) { /* k: samples made */
        sample *head = NULL, **tail = &head;
        long put = 0;
        for (long i = 0; i < batch && done + put < n; i++, k++) {
            int64_t ts = t_first + (int64_t)((double)(done + put) / n * age_ms);
            sample *s = devlayout ? device_sample(k, ndev, ntags, ts, obj)
                                  : tag_sample(k, ndev, ntags, ts);
            if (!s)
                return 1;
            *tail = s;
            tail = &s->next;
            put += devlayout ? ntags : 1;
        }
        if (store_put(st, head) < 0) {
            fprintf(stderr, "storebench: store_put failed after %ld samples\n", done);
            return 1;
        }
        sample_free_list(head);
        done += put;
    }
    free(obj);
    double secs = mono_s() - t0;
    store_close(st);
    printf("{\"n\":%ld,\"batch\":%ld,\"secs\":%.3f,\"rate\":%.0f}\n", done, batch, secs, done / secs);
    return 0;
}
