/* fuzz_control.c - libFuzzer target: the control socket (SPEC §7) as a
 * hostile local client sees it.
 *
 * One control_open() for the whole run, on a socket in a fresh temporary
 * directory, with stub hooks. Each input is one client connection: the
 * bytes are sent as they are (in chunks, while the server is pumped the way
 * the agent's loop does it: control_pollfds, poll, control_handle), then the
 * client shuts down its sending side and reads until the server closes.
 * Every reply line must be a JSON object, the server must finish the
 * connection by itself, and no slot may leak.
 *
 * The stub submit hook takes every path control.c has for a bus command:
 * "probe" is answered later (after the next pump), "read" is answered from
 * inside the hook (re-entrant control_reply_cmd), "write" goes through
 * setpoint_parse like the agent and is answered later with the parsed value
 * (or an immediate error object), a tag named "gone" gets a reply for a
 * client id that does not exist. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "control.h"
#include "log.h"
#include "setpoint.h"

static control *ctl;
static char dir[64], path[128];

#define MAX_DEFERRED 64
static bus_cmd deferred[MAX_DEFERRED];
static int deferred_client[MAX_DEFERRED];
static int ndeferred;

static json_t *stub_status(void *ctx)
{
    (void)ctx;
    return json_pack("{s:s,s:f,s:{s:i,s:s}}", "version", "0.1.0", "latency", 2.1,
                     "health", "code", 0, "status", "OK");
}

static void fill_value(bus_cmd *cmd, const json_t *req)
{
    const char *tag = json_string_value(json_object_get(req, "tag"));
    cmd->value.kind = CV_NONE;
    if (!tag)
        return;
    size_t n = strlen(tag);
    switch (n % 5) {
    case 0: cmd->value.kind = CV_INT; cmd->value.i = -(int64_t)n; break;
    case 1: cmd->value.kind = CV_F32; cmd->value.f32 = 0.1f * (float)n; break;
    case 2: cmd->value.kind = CV_REAL; cmd->value.f64 = 1e300 * (double)n; break;
    case 3: cmd->value.kind = CV_BOOL; cmd->value.b = true; break;
    default: /* the tag name itself, whatever bytes it holds */
        cmd->value.kind = CV_STR;
        snprintf(cmd->value.s, sizeof cmd->value.s, "%s", tag);
    }
}

static json_t *stub_submit(void *ctx, int client, const char *cmd, const json_t *req)
{
    (void)ctx;
    bus_cmd c;
    memset(&c, 0, sizeof c);
    c.ts = 1795743898123LL;
    const char *tag = json_string_value(json_object_get(req, "tag"));
    if (!strcmp(cmd, "read")) {
        c.op = CMD_READ;
        fill_value(&c, req);
        if (tag && !strcmp(tag, "down")) {
            c.code = SP_DEVICE_DOWN;
            snprintf(c.detail, sizeof c.detail, "device %s is down \xff", tag);
        }
        /* the bus answered at once: the reply re-enters control.c */
        control_reply_cmd(ctl, tag && !strcmp(tag, "gone") ? client + 1000 : client, &c);
        if (tag && !strcmp(tag, "gone"))
            control_reply_cmd(ctl, client, &c);
        return NULL;
    }
    if (!strcmp(cmd, "write")) {
        char *text = json_dumps(json_object_get(req, "value"), JSON_ENCODE_ANY);
        sp_command sc;
        char detail[256];
        sp_code rc = text ? setpoint_parse(text, strlen(text), &sc, detail, sizeof detail)
                          : SP_BAD_PAYLOAD;
        free(text);
        if (rc != SP_OK)
            return json_pack("{s:b,s:s,s:s}", "ok", 0, "error", setpoint_code_name(rc),
                             "detail", detail);
        c.op = CMD_WRITE;
        switch (sc.kind) {
        case SPV_BOOL: c.value.kind = CV_BOOL; c.value.b = sc.b; break;
        case SPV_INT: c.value.kind = CV_INT; c.value.i = sc.i; break;
        case SPV_REAL: c.value.kind = CV_F64; c.value.f64 = sc.d; break;
        case SPV_STR: c.value.kind = CV_STR; memcpy(c.value.s, sc.s, sizeof c.value.s); break;
        }
    } else if (!strcmp(cmd, "probe")) {
        c.op = CMD_PROBE;
        c.addr = (unsigned)json_integer_value(json_object_get(req, "address"));
        json_t *cnt = json_object_get(req, "count");
        c.count = cnt ? (unsigned)json_integer_value(cnt) : 1;
        for (unsigned i = 0; i < BUS_PROBE_MAX; i++)
            c.regs[i] = (uint16_t)(c.addr + i);
        if (c.addr == 13) {
            c.code = SP_MODBUS_EXCEPTION;
            snprintf(c.detail, sizeof c.detail, "illegal data address");
        }
    } else {
        abort(); /* control.c hands only read/write/probe to submit */
    }
    if (ndeferred == MAX_DEFERRED)
        return json_pack("{s:b,s:s}", "ok", 0, "error", "busy");
    deferred[ndeferred] = c;
    deferred_client[ndeferred] = client;
    ndeferred++;
    return NULL;
}

static const control_hooks hooks = { stub_status, stub_submit };

static int64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pump(int ms)
{
    struct pollfd fds[CONTROL_MAX_CLIENTS + 1];
    int n = control_pollfds(ctl, fds, CONTROL_MAX_CLIENTS + 1);
    if (poll(fds, (nfds_t)n, ms) < 0 && errno != EINTR)
        abort();
    control_handle(ctl, fds, n);
    /* the bus finishes what was submitted, in order */
    int k = ndeferred;
    ndeferred = 0;
    for (int i = 0; i < k; i++)
        control_reply_cmd(ctl, deferred_client[i], &deferred[i]);
}

static void cleanup(void)
{
    control_close(ctl); /* removes the socket file */
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    char err[256];
    log_init(LOG_CRIT); /* quiet: only what a fuzzer must see */
    snprintf(dir, sizeof dir, "/tmp/mbgate-fuzz-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/ctl.sock", dir);
    ctl = control_open(path, &hooks, NULL, err, sizeof err);
    if (!ctl) {
        fprintf(stderr, "control_open: %s\n", err);
        abort();
    }
    atexit(cleanup);
    return 0;
}

/* Replies seen so far on this connection, checked line by line. */
typedef struct {
    char buf[1 << 16];
    size_t len;
    size_t lines;
} replies;

static void take_lines(replies *r)
{
    char *start = r->buf, *nl;
    while ((nl = memchr(start, '\n', r->len - (size_t)(start - r->buf)))) {
        json_error_t e;
        json_t *j = json_loadb(start, (size_t)(nl - start), 0, &e);
        if (!j || !json_is_object(j)) {
            fprintf(stderr, "control reply is not a JSON object (%s): %.*s\n",
                    j ? "not an object" : e.text, (int)(nl - start), start);
            abort();
        }
        json_decref(j);
        r->lines++;
        start = nl + 1;
    }
    size_t rest = r->len - (size_t)(start - r->buf);
    memmove(r->buf, start, rest);
    r->len = rest;
    if (r->len == sizeof r->buf) {
        fprintf(stderr, "control reply line over %zu bytes\n", sizeof r->buf);
        abort();
    }
}

/* Read what is there; 1 on EOF. */
static int drain(int fd, replies *r)
{
    for (;;) {
        ssize_t n = recv(fd, r->buf + r->len, sizeof r->buf - r->len, MSG_DONTWAIT);
        if (n > 0) {
            r->len += (size_t)n;
            take_lines(r);
            continue;
        }
        if (n == 0)
            return 1;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == ECONNRESET)
            return 1;
        abort();
    }
}

static replies rep;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        abort();
    fcntl(fd, F_SETFL, O_NONBLOCK);
    rep.len = rep.lines = 0;

    int64_t deadline = mono() + 10000;
    size_t off = 0;
    bool shut = false, eof = false;
    while (!eof) {
        if (!shut) {
            while (off < size) {
                ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w > 0) {
                    off += (size_t)w;
                    continue;
                }
                if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                    break;
                off = size; /* EPIPE/ECONNRESET: the server closed on us */
            }
            if (off == size) {
                shutdown(fd, SHUT_WR);
                shut = true;
            }
        }
        pump(0);
        eof = drain(fd, &rep);
        if (!eof && mono() > deadline) {
            fprintf(stderr, "control never finished a %zu-byte connection\n", size);
            abort();
        }
    }
    close(fd);
    /* the server sees the close and frees the slot */
    for (int i = 0; i < 4; i++)
        pump(0);
    ndeferred = 0;
    struct pollfd fds[CONTROL_MAX_CLIENTS + 1];
    int n = control_pollfds(ctl, fds, CONTROL_MAX_CLIENTS + 1);
    if (n > 1) {
        fprintf(stderr, "control holds %d client slots after the client left\n", n - 1);
        abort();
    }
    return 0;
}
