/* countsub.c - the bench's counting MQTT subscriber (libmosquitto, QoS 1).
 *
 *   countsub -p PORT [-h HOST] [-t FILTER]...
 *
 * Subscribes at QoS 1 and counts every PUBLISH: messages, samples (a
 * device-layout message {"ts":..,"values":{...}} counts one sample per value),
 * backlog messages ("hist":true) and live ones. For live messages it keeps a
 * histogram of latency = receive wall clock - the payload's "ts" (ms).
 *
 * Driven by one-word commands on stdin, each answered by one JSON line on
 * stdout:  stats | lat | latreset | quit.  "ready" is printed once the
 * subscription is acknowledged. Python paho cannot count 50k msg/s; this
 * drains the socket with mosquitto_loop_read until EAGAIN on each wake-up.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

#define LAT_BUCKET_US 100      /* histogram resolution: 0.1 ms */
#define LAT_BUCKETS 600000     /* up to 60 s */

static uint64_t msgs, samples, hist, live, hist_samples;
static double first_hist_t, last_hist_t, first_t, last_t;
static uint64_t *lat;          /* LAT_BUCKETS counters */
static uint64_t lat_n, lat_over;
static double lat_max_ms;
static int subscribed;
static char **filters;
static int nfilters;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *find(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (p[i] == needle[0] && memcmp(p + i, needle, k) == 0)
            return p + i;
    return NULL;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg)
{
    (void)m;
    (void)obj;
    const char *p = msg->payload;
    size_t n = (size_t)msg->payloadlen;
    double t = now_s(), mt = mono_s();
    if (!p || n == 0)
        return;
    msgs++;
    if (!first_t)
        first_t = mt;
    last_t = mt;
    uint64_t ns = 1;
    const char *vals = find(p, n, "\"values\":{");
    if (vals) {
        /* device layout: one sample per "name": inside values */
        ns = 0;
        for (const char *q = vals + 10; q + 1 < p + n; q++)
            if (q[0] == '"' && q[1] == ':')
                ns++;
        if (find(p, n, "\"hist\":true"))
            ns--; /* "hist": after the values object */
    }
    samples += ns;
    bool is_hist = find(p, n, "\"hist\":true") != NULL;
    if (is_hist) {
        hist++;
        hist_samples += ns;
        if (!first_hist_t)
            first_hist_t = mt;
        last_hist_t = mt;
        return;
    }
    live++;
    const char *ts = find(p, n, "\"ts\":");
    if (!ts)
        return;
    long long v = strtoll(ts + 5, NULL, 10);
    if (v <= 0)
        return;
    double ms = t * 1000.0 - (double)v;
    if (ms < 0)
        ms = 0;
    if (ms > lat_max_ms)
        lat_max_ms = ms;
    size_t b = (size_t)(ms * 1000.0 / LAT_BUCKET_US);
    if (b >= LAT_BUCKETS) {
        lat_over++;
        b = LAT_BUCKETS - 1;
    }
    lat[b]++;
    lat_n++;
}

static void on_connect(struct mosquitto *m, void *obj, int rc)
{
    (void)obj;
    if (rc != 0) {
        fprintf(stderr, "countsub: connection refused (%d)\n", rc);
        exit(2);
    }
    for (int i = 0; i < nfilters; i++)
        mosquitto_subscribe(m, NULL, filters[i], 1);
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int qn, const int *q)
{
    (void)m;
    (void)obj;
    (void)mid;
    (void)qn;
    (void)q;
    if (++subscribed == nfilters) {
        printf("ready\n");
        fflush(stdout);
    }
}

static double pct(double p)
{
    if (!lat_n)
        return -1;
    uint64_t want = (uint64_t)(p * (double)lat_n);
    if (want >= lat_n)
        want = lat_n - 1;
    uint64_t acc = 0;
    for (size_t b = 0; b < LAT_BUCKETS; b++) {
        acc += lat[b];
        if (acc > want)
            return (b + 0.5) * LAT_BUCKET_US / 1000.0;
    }
    return lat_max_ms;
}

static void command(const char *c)
{
    if (strncmp(c, "stats", 5) == 0) {
        printf("{\"t\":%.6f,\"msgs\":%llu,\"samples\":%llu,\"hist\":%llu,\"hist_samples\":%llu,"
               "\"live\":%llu,\"first_t\":%.6f,\"last_t\":%.6f,\"first_hist_t\":%.6f,"
               "\"last_hist_t\":%.6f}\n",
               mono_s(), (unsigned long long)msgs, (unsigned long long)samples,
               (unsigned long long)hist, (unsigned long long)hist_samples,
               (unsigned long long)live, first_t, last_t, first_hist_t, last_hist_t);
    } else if (strncmp(c, "latreset", 8) == 0) {
        memset(lat, 0, LAT_BUCKETS * sizeof *lat);
        lat_n = lat_over = 0;
        lat_max_ms = 0;
        first_hist_t = 0; /* the next backlog message starts a new drain */
        printf("{\"ok\":true}\n");
    } else if (strncmp(c, "lat", 3) == 0) {
        printf("{\"n\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"over\":%llu}\n",
               (unsigned long long)lat_n, pct(0.50), pct(0.90), pct(0.99), lat_max_ms,
               (unsigned long long)lat_over);
    } else if (strncmp(c, "quit", 4) == 0) {
        exit(0);
    } else {
        printf("{\"error\":\"unknown command\"}\n");
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 1883, opt;
    filters = calloc((size_t)argc + 1, sizeof *filters);
    lat = calloc(LAT_BUCKETS, sizeof *lat);
    if (!filters || !lat)
        return 1;
    while ((opt = getopt(argc, argv, "h:p:t:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 't': filters[nfilters++] = optarg; break;
        default:
            fprintf(stderr, "usage: countsub -p PORT [-h HOST] [-t FILTER]...\n");
            return 2;
        }
    }
    if (!nfilters)
        filters[nfilters++] = "#";
    mosquitto_lib_init();
    char id[64];
    snprintf(id, sizeof id, "bench-countsub-%d", (int)getpid());
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    if (!m)
        return 1;
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    mosquitto_message_callback_set(m, on_message);
    if (mosquitto_connect(m, host, port, 60) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "countsub: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    char line[256];
    size_t ll = 0;
    for (;;) {
        struct pollfd fds[2] = {
            { mosquitto_socket(m), (short)(POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)), 0 },
            { STDIN_FILENO, POLLIN, 0 },
        };
        if (poll(fds, 2, 200) < 0 && errno != EINTR)
            return 1;
        if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
            /* drain what the socket holds: loop_read reads one packet per
             * call for a QoS 1 subscriber */
            for (int i = 0; i < 4096; i++) {
                errno = 0;
                uint64_t before = msgs;
                int rc = mosquitto_loop_read(m, 1);
                if (rc != MOSQ_ERR_SUCCESS) {
                    fprintf(stderr, "countsub: connection lost (%s)\n", mosquitto_strerror(rc));
                    return 1;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK || (msgs == before && errno))
                    break;
            }
        }
        if (fds[0].revents & POLLOUT || mosquitto_want_write(m))
            mosquitto_loop_write(m, 1);
        mosquitto_loop_misc(m);
        if (fds[1].revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(STDIN_FILENO, line + ll, sizeof line - 1 - ll);
            if (r <= 0)
                return 0; /* stdin closed: the bench is gone */
            ll += (size_t)r;
            line[ll] = 0;
            char *nl;
            while ((nl = strchr(line, '\n'))) {
                *nl = 0;
                command(line);
                size_t used = (size_t)(nl + 1 - line);
                memmove(line, nl + 1, ll - used + 1);
                ll -= used;
            }
            if (ll >= sizeof line - 1)
                ll = 0;
        }
    }
}
