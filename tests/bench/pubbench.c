/* pubbench.c - the broker's own limit: a minimal libmosquitto QoS 1 publisher.
 *
 *   pubbench -p PORT [-h HOST] [-x PREFIX] [-d DEVICES] [-n TAGS_PER_DEVICE]
 *            [-w WINDOW] [-s SECONDS] [-q QOS]
 *
 * Publishes, as fast as PUBACKs allow with at most WINDOW messages in flight
 * (mbgate's mqtt.max_inflight default: 100), messages shaped exactly like
 * mbgate's per-tag layout: topic PREFIX/dNN/tNNNN, payload
 * {"v":N,"ts":<ms now>,"q":"good"} with N a per-tag counter (uint16, like the
 * simulator's counter tags), tags in turn. Driven like mbgate drives
 * libmosquitto: non-threaded, one poll loop, mosquitto_loop_read/write/misc,
 * each publish written at once. Stops after SECONDS and prints one JSON line:
 * {"sent":..,"acked":..,"secs":..}.
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

static long inflight;
static unsigned long long acked;
static int connected;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_connect(struct mosquitto *m, void *o, int rc)
{
    (void)m;
    (void)o;
    if (rc) {
        fprintf(stderr, "pubbench: refused (%d)\n", rc);
        exit(2);
    }
    connected = 1;
}

static void on_publish(struct mosquitto *m, void *o, int mid)
{
    (void)m;
    (void)o;
    (void)mid;
    inflight--;
    acked++;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *prefix = "mbgate/bench";
    int port = 1883, ndev = 20, ntags = 500, window = 100, qos = 1, opt;
    double secs = 10;
    while ((opt = getopt(argc, argv, "h:p:x:d:n:w:s:q:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'x': prefix = optarg; break;
        case 'd': ndev = atoi(optarg); break;
        case 'n': ntags = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 's': secs = atof(optarg); break;
        case 'q': qos = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: pubbench -p PORT [-x PREFIX] [-d DEV] [-n TAGS] [-w WINDOW] [-s SECONDS]\n");
            return 2;
        }
    }
    if (ndev < 1 || ntags < 1 || window < 1)
        return 2;
    unsigned *counter = calloc((size_t)ndev * ntags, sizeof *counter);
    if (!counter)
        return 1;
    mosquitto_lib_init();
    char id[64];
    snprintf(id, sizeof id, "bench-pub-%d", (int)getpid());
    struct mosquitto *m = mosquitto_new(id, true, NULL);
    if (!m)
        return 1;
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(m, (unsigned)window);
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_publish_callback_set(m, on_publish);
    if (mosquitto_connect(m, host, port, 30) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "pubbench: cannot connect\n");
        return 1;
    }
    double t0 = 0, end = 0;
    unsigned long long sent = 0;
    size_t next = 0, total = (size_t)ndev * ntags;
    char topic[256], payload[128];
    for (;;) {
        double now = mono_s();
        if (connected && !t0) {
            t0 = now;
            end = t0 + secs;
        }
        if (t0 && now >= end)
            break;
        while (connected && inflight < window) {
            size_t d = next / ntags, t = next % ntags;
            snprintf(topic, sizeof topic, "%s/d%02zu/t%04zu", prefix, d + 1, t + 1);
            counter[next] = (counter[next] + 1) & 0xffff;
            int len = snprintf(payload, sizeof payload, "{\"v\":%u,\"ts\":%lld,\"q\":\"good\"}",
                               counter[next], now_ms());
            next = (next + 1) % total;
            int rc = mosquitto_publish(m, NULL, topic, len, payload, qos, false);
            if (rc != MOSQ_ERR_SUCCESS) {
                fprintf(stderr, "pubbench: publish: %s\n", mosquitto_strerror(rc));
                return 1;
            }
            sent++;
            if (qos > 0)
                inflight++;
            else
                acked++;
        }
        struct pollfd p = { mosquitto_socket(m), (short)(POLLIN | (mosquitto_want_write(m) ? POLLOUT : 0)), 0 };
        if (poll(&p, 1, 100) < 0 && errno != EINTR)
            return 1;
        int rc = MOSQ_ERR_SUCCESS;
        if (p.revents & (POLLIN | POLLERR | POLLHUP))
            rc = mosquitto_loop_read(m, 64);
        if (rc == MOSQ_ERR_SUCCESS && (p.revents & POLLOUT))
            rc = mosquitto_loop_write(m, 64);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_loop_misc(m);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "pubbench: connection lost: %s\n", mosquitto_strerror(rc));
            return 1;
        }
    }
    printf("{\"sent\":%llu,\"acked\":%llu,\"secs\":%.3f}\n", sent, acked, mono_s() - t0);
    fflush(stdout);
    mosquitto_disconnect(m);
    mosquitto_loop_write(m, 1);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return 0;
}
