/* cli.c - the technician commands: status, read, write, probe (SPEC §2, §7).
 *
 * Each is one exchange on the control socket: a JSON request line out, a
 * JSON reply line back, within CLI_TIMEOUT_MS overall, so that a stuck agent
 * never hangs a technician's terminal or a Nagios check. Numbers are printed
 * through codec_format, like the agent publishes them (jansson would print
 * 0.1 as 0.10000000000000001). */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bus.h"
#include "codec.h"
#include "config.h"
#include "payload.h"

#define CLI_TIMEOUT_MS 5000
#define REPLY_MAX (64 * 1024 * 1024) /* a status with thousands of devices fits */
#define PROBE_DEFAULT 4
#define VALUE_MAX (CODEC_STR_MAX * 6 + 16)
#define LABEL_W 16 /* "Health          : " as chronyc aligns its labels */

static int64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((format(printf, 3, 4)))
static void set_msg(char *msg, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
}

/* ---- the exchange -------------------------------------------------------- */

static void connect_error(int err, const char *path, char *msg, size_t n)
{
    if (err == ENOENT || err == ECONNREFUSED)
        set_msg(msg, n, "cannot reach the agent at %s: %s (is mbgate running? "
                "systemctl status mbgate)", path,
                err == ENOENT ? "no such socket" : "nobody listening");
    else if (err == EACCES || err == EPERM)
        set_msg(msg, n, "permission denied on %s: join group mbgate "
                "(sudo usermod -aG mbgate $USER, then log in again)", path);
    else
        set_msg(msg, n, "cannot reach the agent at %s: %s", path, strerror(err));
}

static void timeout_error(const char *path, char *msg, size_t n)
{
    set_msg(msg, n, "no answer from the agent at %s within %d s "
            "(is it stuck? journalctl -u mbgate)", path, CLI_TIMEOUT_MS / 1000);
}

/* Wait for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mono_now();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int rc = poll(&p, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        return rc < 0 ? -1 : rc > 0;
    }
}

static int connect_agent(const char *path, int64_t deadline, char *msg, size_t n)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof addr.sun_path) {
        set_msg(msg, n, "socket path too long (at most %zu bytes): %s",
                sizeof addr.sun_path - 1, path);
        return -1;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_msg(msg, n, "cannot create a socket: %s", strerror(errno));
        return -1;
    }
    /* Non-blocking: a blocking connect waits without limit while the
     * agent's backlog is full (it is not accepting: stuck). */
    while (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && mono_now() < deadline) {
            poll(NULL, 0, 20);
            continue;
        }
        if (errno == EAGAIN)
            timeout_error(path, msg, n);
        else
            connect_error(errno, path, msg, n);
        close(fd);
        return -1;
    }
    return fd;
}

/* Send request (one line, newline added) and return the reply line (NUL
 * terminated, newline removed) in *out. -1 with msg filled on failure. */
static int exchange(const char *path, const char *request, char **out, size_t *outlen,
                    char *msg, size_t n)
{
    int64_t deadline = mono_now() + CLI_TIMEOUT_MS;
    char *buf = NULL;
    size_t len = 0, cap = 0, sent = 0, reqlen = strlen(request);
    int fd = connect_agent(path, deadline, msg, n);
    if (fd < 0)
        return -1;

    char *req = malloc(reqlen + 1);
    if (!req) {
        set_msg(msg, n, "out of memory");
        goto fail;
    }
    memcpy(req, request, reqlen);
    req[reqlen++] = '\n';
    while (sent < reqlen) {
        ssize_t w = send(fd, req + sent, reqlen - sent, MSG_NOSIGNAL);
        if (w >= 0) {
            sent += (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            set_msg(msg, n, "the agent at %s closed the connection: %s", path, strerror(errno));
            goto fail;
        }
        if (wait_fd(fd, POLLOUT, deadline) <= 0) {
            timeout_error(path, msg, n);
            goto fail;
        }
    }
    free(req);
    req = NULL;

    for (;;) {
        if (len + 4096 + 1 > cap) {
            if (cap >= REPLY_MAX) {
                set_msg(msg, n, "the agent at %s sent a reply over %d MB", path, REPLY_MAX >> 20);
                goto fail;
            }
            cap = cap ? cap * 2 : 64 * 1024;
            char *p = realloc(buf, cap);
            if (!p) {
                set_msg(msg, n, "out of memory");
                goto fail;
            }
            buf = p;
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r > 0) {
            char *nl = memchr(buf + len, '\n', (size_t)r);
            len += (size_t)r;
            if (nl) {
                len = (size_t)(nl - buf);
                break;
            }
            continue;
        }
        if (r == 0) {
            set_msg(msg, n, "the agent at %s closed the connection %s (journalctl -u mbgate)",
                    path, len ? "in the middle of its reply" : "without answering");
            goto fail;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            set_msg(msg, n, "the agent at %s closed the connection: %s", path, strerror(errno));
            goto fail;
        }
        if (wait_fd(fd, POLLIN, deadline) <= 0) {
            timeout_error(path, msg, n);
            goto fail;
        }
    }
    buf[len] = '\0';
    close(fd);
    *out = buf;
    *outlen = len;
    return 0;

fail:
    free(req);
    free(buf);
    close(fd);
    return -1;
}

/* Exchange and parse; the reply must be a JSON object. NULL with msg filled
 * on failure. raw (optional) gets the reply text, to be freed by the caller;
 * rounded (optional) tells that an integer was too large for jansson. */
static json_t *ask(const char *path, json_t *request, char **raw, bool *rounded,
                   char *msg, size_t n)
{
    char *text = NULL, *line = NULL;
    size_t len = 0;
    json_t *reply = NULL;
    json_error_t e;

    if (!(text = json_dumps(request, JSON_COMPACT))) {
        set_msg(msg, n, "out of memory");
        goto out;
    }
    if (exchange(path, text, &line, &len, msg, n) < 0)
        goto out;
    reply = json_loadb(line, len, 0, &e);
    /* Only a uint64 past 2^63 defeats jansson's integers: show it rounded
     * rather than not at all. */
    if (!reply && (reply = json_loadb(line, len, JSON_DECODE_INT_AS_REAL, NULL)) && rounded)
        *rounded = true;
    if (!reply || !json_is_object(reply)) {
        set_msg(msg, n, "unreadable reply from the agent at %s: %s", path,
                reply ? "not a JSON object" : e.text);
        json_decref(reply);
        reply = NULL;
        goto out;
    }
    if (raw) {
        *raw = line;
        line = NULL;
    }
out:
    free(text);
    free(line);
    return reply;
}

/* ---- formatting ---------------------------------------------------------- */

static json_int_t geti(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v)
           : json_is_real(v) ? (json_int_t)json_real_value(v) : 0;
}

static double getd(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static bool getb(const json_t *o, const char *k)
{
    return json_is_true(json_object_get(o, k));
}

/* "5.0" -> "5": round numbers read better without the decimal. */
static void one_decimal(double x, const char *unit, char *buf, size_t n)
{
    snprintf(buf, n, "%.1f", x);
    size_t l = strlen(buf);
    if (l > 2 && !strcmp(buf + l - 2, ".0"))
        buf[l - 2] = '\0';
    l = strlen(buf);
    snprintf(buf + l, n - l, " %s", unit);
}

/* A duration in the largest fitting unit: "0.4 s", "12 s", "3.2 min",
 * "2 h", "3.5 d"; one decimal below ten units, none above. */
static void duration_text(double s, char *buf, size_t n)
{
    double x;
    const char *unit;
    if (s < 0) /* clocks of agent and CLI disagree a little */
        s = 0;
    if (s < 59.5)
        x = s, unit = "s";
    else if (s < 59.5 * 60)
        x = s / 60, unit = "min";
    else if (s < 23.5 * 3600)
        x = s / 3600, unit = "h";
    else
        x = s / 86400, unit = "d";
    if (x < 9.95)
        one_decimal(x, unit, buf, n);
    else
        snprintf(buf, n, "%.0f %s", x, unit);
}

static void ago_text(int64_t ts, int64_t now, char *buf, size_t n)
{
    if (ts <= 0) {
        snprintf(buf, n, "never");
        return;
    }
    duration_text((double)(now - ts) / 1000.0, buf, n);
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, " ago");
}

/* Uptime in two units: "45 s", "12 min", "3 h 12 min", "4 d 3 h". */
static void uptime_text(int64_t s, char *buf, size_t n)
{
    if (s < 60)
        snprintf(buf, n, "%" PRId64 " s", s);
    else if (s < 3600)
        snprintf(buf, n, "%" PRId64 " min", s / 60);
    else if (s < 86400)
        snprintf(buf, n, "%" PRId64 " h %" PRId64 " min", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, n, "%" PRId64 " d %" PRId64 " h", s / 86400, s % 86400 / 3600);
}

static void bytes_text(int64_t b, char *buf, size_t n)
{
    if (b < 1024)
        snprintf(buf, n, "%" PRId64 " bytes", b);
    else if (b < 1024 * 1024)
        snprintf(buf, n, "%.1f kB", (double)b / 1024);
    else if (b < 1024LL * 1024 * 1024)
        snprintf(buf, n, "%.1f MB", (double)b / (1024 * 1024));
    else
        snprintf(buf, n, "%.1f GB", (double)b / (1024 * 1024 * 1024));
}

static void ms_text(double ms, char *buf, size_t n)
{
    if (ms < 100)
        snprintf(buf, n, "%.1f ms", ms);
    else
        snprintf(buf, n, "%.0f ms", ms);
}

static const char *plural(json_int_t k, const char *one, const char *many)
{
    return k == 1 ? one : many;
}

static void label(const char *name)
{
    printf("%-*s: ", LABEL_W, name);
}

/* ---- status -------------------------------------------------------------- */

#define DEV_COLS 8
#define CELL_MAX 200

static void print_devices(const json_t *devices, int64_t now)
{
    static const char *head[DEV_COLS] = { "Device", "State", "Last good", "Period",
                                          "p50", "p99", "Errors", "Last error" };
    size_t rows = json_array_size(devices) + 1;
    char (*cell)[DEV_COLS][CELL_MAX] = calloc(rows, sizeof *cell);
    int width[DEV_COLS] = { 0 };
    if (!cell)
        return;
    for (int k = 0; k < DEV_COLS; k++)
        snprintf(cell[0][k], CELL_MAX, "%s", head[k]);
    for (size_t r = 1; r < rows; r++) {
        const json_t *d = json_array_get(devices, r - 1);
        char (*c)[CELL_MAX] = cell[r];
        json_int_t poll_ms = geti(d, "poll_ms");
        bool polled = geti(d, "polls") > 0;
        snprintf(c[0], CELL_MAX, "%s", jstr(d, "name"));
        snprintf(c[1], CELL_MAX, "%s", jstr(d, "state"));
        ago_text(geti(d, "last_good_ts"), now, c[2], CELL_MAX);
        if (poll_ms < 10000 || poll_ms % 1000)
            snprintf(c[3], CELL_MAX, "%" JSON_INTEGER_FORMAT " ms", poll_ms);
        else
            snprintf(c[3], CELL_MAX, "%" JSON_INTEGER_FORMAT " s", poll_ms / 1000);
        if (polled) {
            ms_text(getd(d, "latency_p50_ms"), c[4], CELL_MAX);
            ms_text(getd(d, "latency_p99_ms"), c[5], CELL_MAX);
        } else {
            snprintf(c[4], CELL_MAX, "-");
            snprintf(c[5], CELL_MAX, "-");
        }
        snprintf(c[6], CELL_MAX, "%" JSON_INTEGER_FORMAT, geti(d, "errors"));
        if (*jstr(d, "last_error")) {
            char when[32];
            ago_text(geti(d, "last_error_ts"), now, when, sizeof when);
            snprintf(c[7], CELL_MAX, "%.150s (%s)", jstr(d, "last_error"), when);
        }
    }
    for (size_t r = 0; r < rows; r++)
        for (int k = 0; k < DEV_COLS; k++)
            if ((int)strlen(cell[r][k]) > width[k])
                width[k] = (int)strlen(cell[r][k]);
    for (size_t r = 0; r < rows; r++) {
        char line[DEV_COLS * (CELL_MAX + 2) + 1];
        size_t l = 0;
        for (int k = 0; k < DEV_COLS; k++)
            l += (size_t)snprintf(line + l, sizeof line - l, "%-*s",
                                  k < DEV_COLS - 1 ? width[k] + 2 : 0, cell[r][k]);
        while (l > 0 && line[l - 1] == ' ')
            line[--l] = '\0';
        printf("%s\n", line);
    }
    free(cell);
}

static void print_status(const json_t *st)
{
    const json_t *health = json_object_get(st, "health");
    const json_t *broker = json_object_get(st, "broker");
    const json_t *outbox = json_object_get(st, "outbox");
    const json_t *sp = json_object_get(st, "setpoints");
    const json_t *devices = json_object_get(st, "devices");
    int64_t now = wall_now();
    char a[64], b[64];

    uptime_text(geti(st, "uptime_s"), a, sizeof a);
    printf("mbgate %s, gateway %s, up %s\n", jstr(st, "version"), jstr(st, "gateway"), a);

    label("Health");
    printf("%s", jstr(health, "status"));
    const json_t *reasons = json_object_get(health, "reasons");
    for (size_t i = 0; i < json_array_size(reasons); i++)
        printf("%s%s", i ? ", " : " (", json_string_value(json_array_get(reasons, i)) ?: "?");
    printf("%s\n", json_array_size(reasons) ? ")" : "");

    label("Broker");
    bool connected = getb(broker, "connected");
    json_int_t reconnects = geti(broker, "reconnects");
    printf("%s %s", connected ? "connected to" : "disconnected from", jstr(broker, "address"));
    if (geti(broker, "since_ts") > 0) {
        ago_text(geti(broker, "since_ts"), now, a, sizeof a);
        printf(" since %s", a);
    }
    printf(", %" JSON_INTEGER_FORMAT " %s", reconnects, plural(reconnects, "reconnect", "reconnects"));
    if (!connected && *jstr(broker, "last_error")) {
        ago_text(geti(broker, "last_error_ts"), now, a, sizeof a);
        printf("; last error: %s (%s)", jstr(broker, "last_error"), a);
    }
    printf("\n");

    label("Messages");
    printf("%" JSON_INTEGER_FORMAT " published, %" JSON_INTEGER_FORMAT " acknowledged, %"
           JSON_INTEGER_FORMAT " in flight\n",
           geti(broker, "published"), geti(broker, "acked"), geti(broker, "inflight"));

    label("Outbox");
    json_int_t pending = geti(outbox, "pending");
    printf("%" JSON_INTEGER_FORMAT " %s pending", pending, plural(pending, "sample", "samples"));
    if (pending > 0 && geti(outbox, "oldest_ts") > 0) {
        ago_text(geti(outbox, "oldest_ts"), now, a, sizeof a);
        printf(" (oldest %s)", a);
    }
    bytes_text(geti(outbox, "file_bytes"), b, sizeof b);
    printf(", %s on disk, %" JSON_INTEGER_FORMAT " dropped", b, geti(outbox, "dropped"));
    if (getb(outbox, "dropping"))
        printf(", DROPPING samples");
    if (getb(outbox, "disk_full"))
        printf(", disk full");
    if (getb(outbox, "growing"))
        printf(", backlog growing");
    printf("\n");

    label("Setpoints");
    printf("%" JSON_INTEGER_FORMAT " ok, %" JSON_INTEGER_FORMAT " rejected",
           geti(sp, "ok"), geti(sp, "rejected"));
    if (*jstr(sp, "last")) {
        ago_text(geti(sp, "last_ts"), now, a, sizeof a);
        printf("; last: %s, %s", jstr(sp, "last"), a);
    }
    printf("\n");

    if (json_array_size(devices) > 0) {
        printf("\n");
        print_devices(devices, now);
    }
}

int cli_status(const char *socket_path, bool json)
{
    char msg[512], *raw = NULL;
    int rc = CLI_UNKNOWN;
    json_t *req = json_pack("{s:s}", "cmd", "status");
    json_t *st = req ? ask(socket_path, req, &raw, NULL, msg, sizeof msg) : NULL;
    if (!req)
        set_msg(msg, sizeof msg, "out of memory");
    if (st && json_is_false(json_object_get(st, "ok"))) {
        set_msg(msg, sizeof msg, "the agent at %s refused: %s: %s", socket_path,
                jstr(st, "error"), jstr(st, "detail"));
        goto unknown;
    }
    const json_t *code = st ? json_object_get(json_object_get(st, "health"), "code") : NULL;
    if (st && (!json_is_integer(code) || json_integer_value(code) < 0 ||
               json_integer_value(code) > 2)) {
        set_msg(msg, sizeof msg, "unreadable status from the agent at %s: no health code", socket_path);
        goto unknown;
    }
    if (!st)
        goto unknown;
    rc = (int)json_integer_value(code);
    if (json)
        printf("%s\n", raw); /* exactly as received: scripts may diff it */
    else
        print_status(st);
    goto out;

unknown:
    fprintf(stderr, "mbgate: %s\n", msg);
    if (!json) /* monitoring reads stdout; JSON consumers must not get text */
        printf("UNKNOWN: %s\n", msg);
out:
    fflush(stdout);
    free(raw);
    json_decref(st);
    json_decref(req);
    return rc;
}

/* ---- read, write --------------------------------------------------------- */

/* Send a read/write/probe request: the {"ok":true} reply, or NULL after
 * one line on stderr ("mbgate: WHAT: code: detail" for a refusal). */
static json_t *ask_ok(const char *socket_path, json_t *req, bool *rounded, const char *what)
{
    char msg[512];
    json_t *reply = ask(socket_path, req, NULL, rounded, msg, sizeof msg);
    if (!reply) {
        fprintf(stderr, "mbgate: %s\n", msg);
        return NULL;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        const char *detail = jstr(reply, "detail");
        fprintf(stderr, "mbgate: %s: %s%s%s\n", what,
                *jstr(reply, "error") ? jstr(reply, "error") : "error", *detail ? ": " : "", detail);
        json_decref(reply);
        return NULL;
    }
    return reply;
}

int cli_read(const char *socket_path, const char *dev, const char *tag)
{
    char what[2 * CFG_NAME_MAX + 16], v[VALUE_MAX];
    bool rounded = false;
    int rc = 1;
    json_t *req = json_pack("{s:s,s:s,s:s}", "cmd", "read", "device", dev, "tag", tag);
    json_t *reply = NULL;
    snprintf(what, sizeof what, "read %s/%s", dev, tag);
    if (!req) { /* jansson refuses names that are not UTF-8 */
        fprintf(stderr, "mbgate: %s: device and tag must be valid names\n", what);
        return CLI_USAGE;
    }
    if (!(reply = ask_ok(socket_path, req, &rounded, what)))
        goto out;
    payload_json_text(json_object_get(reply, "v"), v, sizeof v);
    /* A uint64 past 2^63: jansson only has int64, say it is not exact. */
    printf("%s/%s = %s%s\n", dev, tag, v, rounded ? " (rounded: over 2^63)" : "");
    rc = 0;
out:
    json_decref(reply);
    json_decref(req);
    return rc;
}

int cli_write(const char *socket_path, const char *dev, const char *tag, const char *value_text)
{
    char what[2 * CFG_NAME_MAX + VALUE_MAX + 32], shown[VALUE_MAX], back[VALUE_MAX];
    int rc = 1;
    json_t *req = NULL, *reply = NULL;
    /* 42, 21.5, true, "x" as JSON; anything else (abc) as the string it is. */
    json_t *value = json_loads(value_text, JSON_DECODE_ANY, NULL);
    if (!value)
        value = json_string(value_text);
    if (!value) {
        fprintf(stderr, "mbgate: write %s/%s: the value is not valid UTF-8 text\n", dev, tag);
        return CLI_USAGE;
    }
    payload_json_text(value, shown, sizeof shown);
    snprintf(what, sizeof what, "write %s/%s = %s", dev, tag, shown);
    req = json_pack("{s:s,s:s,s:s,s:O}", "cmd", "write", "device", dev, "tag", tag, "value", value);
    if (!req) {
        fprintf(stderr, "mbgate: %s: device and tag must be valid names\n", what);
        rc = CLI_USAGE;
        goto out;
    }
    if (!(reply = ask_ok(socket_path, req, NULL, what)))
        goto out;
    const json_t *v = json_object_get(reply, "v");
    if (v && !json_is_null(v)) {
        payload_json_text(v, back, sizeof back);
        printf("%s/%s = %s: ok (read back %s)\n", dev, tag, shown, back);
    } else {
        printf("%s/%s = %s: ok\n", dev, tag, shown);
    }
    rc = 0;
out:
    json_decref(reply);
    json_decref(req);
    json_decref(value);
    return rc;
}

/* ---- probe --------------------------------------------------------------- */

/* A decoded value as the agent would publish it; floats that would go out
 * as null are named, since that is what a technician needs to see. */
static void decoded_text(const codec_value *v, char *buf, size_t n)
{
    double d = codec_number(v);
    if ((v->kind == CV_F32 || v->kind == CV_F64) && !isfinite(d))
        snprintf(buf, n, "%s", isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
    else if (codec_format(v, buf, n) < 0)
        snprintf(buf, n, "?");
}

static void decode_text(const uint16_t *regs, codec_type t, codec_order o,
                        char *buf, size_t n)
{
    codec_value v;
    if (codec_decode(regs, t, o, 0, -1, &v) < 0)
        snprintf(buf, n, "?");
    else
        decoded_text(&v, buf, n);
}

static char printable(unsigned byte)
{
    return byte >= 0x20 && byte < 0x7F ? (char)byte : '.';
}

static void print_bits(cfg_table t, unsigned address, const uint16_t *regs, size_t n)
{
    char ref[16];
    printf("%-8s%-7s%s\n", "ref", "addr", "bits");
    for (size_t i = 0; i < n; i += 8) {
        config_modicon(t, address + (unsigned)i, ref, sizeof ref);
        printf("%-8s%-7u", ref, address + (unsigned)i);
        for (size_t k = i; k < n && k < i + 8; k++)
            printf("%s%u", k > i ? " " : "", regs[k] ? 1u : 0u);
        printf("\n");
    }
}

/* One block: a row per type, a column per byte order, all decoded from the
 * registers at regs. */
/* Column width: the longest text of a 32-bit value ("-1.17549435e-38") or a
 * 64-bit one ("-2.2250738585072014e-308") and two spaces, the same for every
 * block so that the columns line up all the way down. */
#define W32 17
#define W64 26

static void print_wide(const char *title, const codec_type *types, int ntypes,
                       const uint16_t *regs, int w)
{
    static const codec_order orders[4] = { CO_ABCD, CO_CDAB, CO_BADC, CO_DCBA };
    char val[3][4][48];
    for (int r = 0; r < ntypes; r++)
        for (int o = 0; o < 4; o++)
            decode_text(regs, types[r], orders[o], val[r][o], sizeof val[r][o]);
    printf("%-18s", title);
    for (int o = 0; o < 3; o++)
        printf("%-*s", w, codec_order_name(orders[o]));
    printf("%s\n", codec_order_name(orders[3]));
    for (int r = 0; r < ntypes; r++) {
        printf("  %-16s", codec_type_name(types[r]));
        for (int o = 0; o < 3; o++)
            printf("%-*s", w, val[r][o]);
        printf("%s\n", val[r][3]);
    }
}

static void print_registers(cfg_table t, unsigned address, const uint16_t *regs, size_t n)
{
    static const codec_type t32[] = { CT_FLOAT32, CT_INT32, CT_UINT32 };
    static const codec_type t64[] = { CT_FLOAT64, CT_INT64, CT_UINT64 };
    char ref[16], i16[16], u16[16], title[48], ascii[2 * BUS_PROBE_MAX + 1];
    char str[CODEC_STR_MAX * 6 + 16];
    codec_value v;

    printf("%-8s%-7s%-8s%-8s%-8s%s\n", "ref", "addr", "hex", "int16", "uint16", "ascii");
    for (size_t i = 0; i < n; i++) {
        config_modicon(t, address + (unsigned)i, ref, sizeof ref);
        decode_text(&regs[i], CT_INT16, CO_ABCD, i16, sizeof i16);
        decode_text(&regs[i], CT_UINT16, CO_ABCD, u16, sizeof u16);
        ascii[2 * i] = printable(regs[i] >> 8); /* high byte first, as strings */
        ascii[2 * i + 1] = printable(regs[i] & 0xFF);
        printf("%-8s%-7u0x%04X  %-8s%-8s%c%c\n", ref, address + (unsigned)i, regs[i], i16, u16,
               ascii[2 * i], ascii[2 * i + 1]);
    }
    ascii[2 * n] = '\0';
    printf("\n%-18s%s\n", "ascii", ascii);
    /* What a string tag over these registers would publish. */
    if (codec_decode(regs, CT_STRING, CO_ABCD, (unsigned)(2 * n), -1, &v) == 0) {
        decoded_text(&v, str, sizeof str);
        printf("%-18s%s\n", "string", str);
    }
    for (size_t i = 0; i + 2 <= n; i++) {
        config_modicon(t, address + (unsigned)i, ref, sizeof ref);
        snprintf(title, sizeof title, "32-bit at %s", ref);
        printf("\n");
        print_wide(title, t32, 3, &regs[i], W32);
    }
    for (size_t i = 0; i + 4 <= n; i++) {
        config_modicon(t, address + (unsigned)i, ref, sizeof ref);
        snprintf(title, sizeof title, "64-bit at %s", ref);
        printf("\n");
        print_wide(title, t64, 3, &regs[i], W64);
    }
}

int cli_probe(const char *socket_path, const char *dev, const char *table,
              unsigned address, unsigned count)
{
    static const char *const kinds[] = { "coil", "discrete input", "input register",
                                         "holding register" };
    char what[CFG_NAME_MAX + 64], first[16], last[16];
    uint16_t regs[BUS_PROBE_MAX];
    cfg_table t;
    int rc = 1;
    json_t *req = NULL, *reply = NULL;

    if (count == 0)
        count = PROBE_DEFAULT;
    if (config_table_parse(table, &t) < 0) {
        fprintf(stderr, "mbgate: probe: unknown table \"%s\" (expected coil, discrete, input or holding)\n", table);
        return CLI_USAGE;
    }
    if (count > BUS_PROBE_MAX) {
        fprintf(stderr, "mbgate: probe: COUNT %u is too large (expected 1..%d)\n", count, BUS_PROBE_MAX);
        return CLI_USAGE;
    }
    if (address > 65535 || address + count > 65536) {
        fprintf(stderr, "mbgate: probe: ADDRESS %u%s goes past 65535 (expected 0-based "
                "addresses 0..65535)\n", address, address > 65535 ? "" : " + COUNT");
        return CLI_USAGE;
    }
    snprintf(what, sizeof what, "probe %s %s %u", dev, table, address);
    req = json_pack("{s:s,s:s,s:s,s:I,s:I}", "cmd", "probe", "device", dev, "table", table,
                    "address", (json_int_t)address, "count", (json_int_t)count);
    if (!req) {
        fprintf(stderr, "mbgate: %s: the device must be a valid name\n", what);
        return CLI_USAGE;
    }
    if (!(reply = ask_ok(socket_path, req, NULL, what)))
        goto out;
    const json_t *jr = json_object_get(reply, "regs");
    size_t n = json_array_size(jr);
    if (n == 0 || n > BUS_PROBE_MAX) {
        fprintf(stderr, "mbgate: %s: unreadable reply from the agent (no registers)\n", what);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_int_t r = json_integer_value(json_array_get(jr, i));
        regs[i] = (uint16_t)(r < 0 || r > 0xFFFF ? 0 : r);
    }
    config_modicon(t, address, first, sizeof first);
    config_modicon(t, address + (unsigned)n - 1, last, sizeof last);
    if (n == 1)
        printf("%s: %s %u (%s)\n\n", dev, kinds[t], address, first);
    else
        printf("%s: %ss %u..%u (%s..%s)\n\n", dev, kinds[t], address, address + (unsigned)n - 1,
               first, last);
    if (config_table_is_bits(t))
        print_bits(t, address, regs, n);
    else
        print_registers(t, address, regs, n);
    rc = 0;
out:
    json_decref(reply);
    json_decref(req);
    return rc;
}
