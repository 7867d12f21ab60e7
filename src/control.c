/* control.c - the control socket (SPEC §7): the agent's side.
 *
 * Runs on the agent's event loop thread, so nothing here may block: every
 * socket is non-blocking, a client that is slow to read keeps its replies in
 * its own output buffer, and a client that stops making progress is closed.
 * Requests of one client are answered strictly in order: while one of its
 * commands is on the bus, its later requests wait in its input buffer. */
#include "control.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "payload.h"

#define IN_CAP (CONTROL_MAX_REQUEST + 1) /* a request and its newline */
#define OUT_HIGH (1024 * 1024)   /* stop taking requests while this much is unsent */
#define ACCEPT_BURST 64          /* connections accepted per control_handle */
#define ACCEPT_PAUSE_MS 1000     /* out of fds: retry later instead of spinning */
#define VALUE_TEXT_MAX (CODEC_STR_MAX * 6 + 16) /* worst case escaped string */

typedef struct {
    int fd;              /* -1: free slot */
    int id;
    pid_t pid;           /* the peer, for the log */
    uid_t uid;
    char *in;            /* IN_CAP bytes, unprocessed input only */
    size_t in_len;
    char *out;           /* replies not yet taken by the socket */
    size_t out_off, out_len, out_cap;
    bool waiting;        /* a submitted command is on the bus */
    bool in_process;     /* inside process_input: no re-entry from a hook */
    bool eof;            /* the peer shut down its sending side */
    bool closing;        /* close once the output is flushed */
    int64_t last_io;     /* mono ms of the last progress */
} client;

struct control {
    int fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    dev_t dev;           /* our socket file, so close removes only ours */
    ino_t ino;
    control_hooks hooks;
    void *ctx;
    client clients[CONTROL_MAX_CLIENTS];
    int next_id;
    int64_t accept_paused_until;
};

static int64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((format(printf, 3, 4)))
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- the listening socket ------------------------------------------------ */

/* Is something listening at addr? A socket file left by a crashed agent
 * refuses the connection; a second agent must not steal a live one. */
static bool socket_is_live(const struct sockaddr_un *addr)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int rc = connect(fd, (const struct sockaddr *)addr, sizeof *addr);
    bool live = rc == 0 || errno == EAGAIN; /* EAGAIN: listening, backlog full */
    close(fd);
    return live;
}

/* Make room for the socket at path: nothing there, or a stale socket that is
 * removed. Symlinks and other files are refused rather than followed or
 * deleted: the path comes from a config file, and a mistake there must not
 * cost anyone a file. */
static int clear_path(const char *path, const struct sockaddr_un *addr,
                      char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0; /* a missing parent directory is reported by bind */
        set_err(err, errlen, "cannot create control socket %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISLNK(st.st_mode)) {
        set_err(err, errlen, "refusing control socket %s: it is a symbolic link "
                "(remove it, or set control.socket to another path)", path);
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        set_err(err, errlen, "refusing control socket %s: it exists and is not a socket "
                "(remove it, or set control.socket to another path)", path);
        return -1;
    }
    if (socket_is_live(addr)) {
        set_err(err, errlen, "control socket %s is in use: is another mbgate running?", path);
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        set_err(err, errlen, "cannot remove stale control socket %s: %s", path, strerror(errno));
        return -1;
    }
    log_info("control: removed stale socket %s", path);
    return 0;
}

control *control_open(const char *path, const control_hooks *hooks, void *ctx,
                      char *err, size_t errlen)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat st;
    control *c = NULL;
    bool bound = false;

    if (!path || !*path || strlen(path) >= sizeof addr.sun_path) {
        set_err(err, errlen, "control socket path %s is %s (at most %zu bytes)",
                path ? path : "(null)", path && *path ? "too long" : "empty",
                sizeof addr.sun_path - 1);
        return NULL;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    if (!(c = calloc(1, sizeof *c))) {
        set_err(err, errlen, "cannot create control socket %s: out of memory", path);
        return NULL;
    }
    c->fd = -1;
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
        c->clients[i].fd = -1;
    c->hooks = *hooks;
    c->ctx = ctx;
    c->next_id = 1;
    memcpy(c->path, addr.sun_path, sizeof c->path);

    if (clear_path(path, &addr, err, errlen) < 0)
        goto fail;
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        set_err(err, errlen, "cannot create control socket %s: %s", path, strerror(errno));
        goto fail;
    }
    /* Process-wide umask is not touched (other threads create files): the
     * socket is chmod-ed between bind and listen, before anyone can connect. */
    if (bind(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        set_err(err, errlen, "cannot create control socket %s: %s", path, strerror(errno));
        goto fail;
    }
    bound = true;
    if (chmod(path, 0660) < 0 || lstat(path, &st) < 0) {
        set_err(err, errlen, "cannot set mode 0660 on control socket %s: %s", path, strerror(errno));
        goto fail;
    }
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    if (listen(c->fd, CONTROL_MAX_CLIENTS) < 0) {
        set_err(err, errlen, "cannot listen on control socket %s: %s", path, strerror(errno));
        goto fail;
    }
    log_debug("control: listening on %s", path);
    return c;

fail:
    if (c->fd >= 0)
        close(c->fd);
    if (bound)
        unlink(path);
    free(c);
    return NULL;
}

/* ---- clients ------------------------------------------------------------- */

static void client_close(client *cl, const char *why)
{
    if (cl->fd < 0)
        return;
    log_debug("control: client %d closed (%s)", cl->id, why);
    close(cl->fd);
    free(cl->in);
    free(cl->out);
    memset(cl, 0, sizeof *cl);
    cl->fd = -1;
}

void control_close(control *c)
{
    struct stat st;
    if (!c)
        return;
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
        client_close(&c->clients[i], "shutdown");
    close(c->fd);
    /* Only our own socket: a newer agent may already have replaced it. */
    if (lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
        unlink(c->path);
    free(c);
}

static client *client_by_id(control *c, int id)
{
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
        if (c->clients[i].fd >= 0 && c->clients[i].id == id)
            return &c->clients[i];
    return NULL;
}

/* Queue bytes for the client; the caller flushes. */
static int out_append(client *cl, const char *s, size_t n)
{
    if (cl->out_off > 0 && cl->out_off == cl->out_len)
        cl->out_off = cl->out_len = 0;
    if (cl->out_len + n > cl->out_cap) {
        if (cl->out_off > 0) { /* reclaim what was already sent */
            memmove(cl->out, cl->out + cl->out_off, cl->out_len - cl->out_off);
            cl->out_len -= cl->out_off;
            cl->out_off = 0;
        }
        size_t cap = cl->out_cap ? cl->out_cap : 4096;
        while (cap < cl->out_len + n)
            cap *= 2;
        if (cap != cl->out_cap) {
            char *p = realloc(cl->out, cap);
            if (!p)
                return -1;
            cl->out = p;
            cl->out_cap = cap;
        }
    }
    memcpy(cl->out + cl->out_len, s, n);
    cl->out_len += n;
    return 0;
}

static size_t out_pending(const client *cl)
{
    return cl->out_len - cl->out_off;
}

/* Write what the socket takes. -1 when the client is gone. */
static int flush(client *cl)
{
    while (out_pending(cl) > 0) {
        ssize_t w = send(cl->fd, cl->out + cl->out_off, out_pending(cl),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        cl->out_off += (size_t)w;
        cl->last_io = mono_now();
    }
    return 0;
}

/* Append obj as one line; flags as for json_dumps. */
static void reply_json(client *cl, const json_t *obj, size_t flags)
{
    char *s = json_dumps(obj, flags | JSON_COMPACT);
    if (!s || out_append(cl, s, strlen(s)) < 0 || out_append(cl, "\n", 1) < 0) {
        log_warn("control: client %d: out of memory for a reply", cl->id);
        cl->closing = true;
    }
    free(s);
}

/* A JSON string for any C text: invalid UTF-8 (from a PLC or the OS) must not
 * lose the whole reply, so it degrades to '?'. */
static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *t = strdup(s);
    if (!t)
        return json_string("");
    for (char *p = t; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(t);
    free(t);
    return j;
}

__attribute__((format(printf, 3, 4)))
static void reply_error(client *cl, const char *code, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_object_set_new(o, "ok", json_false());
    json_object_set_new(o, "error", json_string(code));
    json_object_set_new(o, "detail", json_text(detail));
    reply_json(cl, o, 0);
    json_decref(o);
}

/* A JSON value as short text for the log. */
static void value_text(const json_t *v, char *buf, size_t n)
{
    payload_json_text(v, buf, n);
    if (strlen(buf) > 80)
        memcpy(buf + 77, "...", 4);
}

__attribute__((format(printf, 3, 4)))
static const char *because(char *why, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return why;
}

/* The request's shape, checked here so that every hook gets well-formed
 * requests: device and tag strings, a value for write, a known table and an
 * address range within the Modbus space for probe. NULL when fine. */
static const char *check_request(const char *cmd, const json_t *req, char *why, size_t n)
{
    const json_t *dev = json_object_get(req, "device");
    if (!json_is_string(dev) || !*json_string_value(dev))
        return because(why, n, "\"device\" must be a device name");
    if (!strcmp(cmd, "read") || !strcmp(cmd, "write")) {
        const json_t *tag = json_object_get(req, "tag");
        if (!json_is_string(tag) || !*json_string_value(tag))
            return because(why, n, "\"tag\" must be a tag name");
        if (!strcmp(cmd, "write") && !json_object_get(req, "value"))
            return because(why, n, "missing \"value\" (expected a JSON value like 42, 21.5, true or \"text\")");
        return NULL;
    }
    const json_t *table = json_object_get(req, "table");
    const json_t *addr = json_object_get(req, "address");
    const json_t *count = json_object_get(req, "count");
    cfg_table t;
    if (!json_is_string(table) || config_table_parse(json_string_value(table), &t) < 0)
        return because(why, n, "\"table\" must be coil, discrete, input or holding");
    if (!json_is_integer(addr) || json_integer_value(addr) < 0 || json_integer_value(addr) > 65535)
        return because(why, n, "\"address\" must be an integer 0..65535");
    if (count && (!json_is_integer(count) || json_integer_value(count) < 1 ||
                  json_integer_value(count) > BUS_PROBE_MAX))
        return because(why, n, "\"count\" must be an integer 1..%d", BUS_PROBE_MAX);
    if (json_integer_value(addr) + (count ? json_integer_value(count) : 1) > 65536)
        return because(why, n, "address + count goes past 65535");
    return NULL;
}

static void handle_request(control *c, client *cl, const char *line, size_t len)
{
    json_error_t e;
    char why[256];
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &e);
    if (!req) {
        reply_error(cl, "bad_request", "invalid JSON at column %d: %s", e.column, e.text);
        return;
    }
    const json_t *jcmd = json_object_get(req, "cmd");
    const char *cmd = json_string_value(jcmd);
    if (!json_is_object(req) || !cmd) {
        reply_error(cl, "bad_request", "expected an object with \"cmd\" "
                    "(status, read, write or probe), like {\"cmd\":\"status\"}");
        goto done;
    }
    if (!strcmp(cmd, "status")) {
        json_t *st = c->hooks.status ? c->hooks.status(c->ctx) : NULL;
        if (st) /* 15 digits: latencies read 2.1, not 2.1000000000000001 */
            reply_json(cl, st, JSON_REAL_PRECISION(15));
        else
            reply_error(cl, "internal", "the agent could not build its status");
        json_decref(st);
    } else if (!strcmp(cmd, "read") || !strcmp(cmd, "write") || !strcmp(cmd, "probe")) {
        if (check_request(cmd, req, why, sizeof why)) {
            reply_error(cl, "bad_request", "%s: %s", cmd, why);
            goto done;
        }
        if (!strcmp(cmd, "write")) { /* who asked, for the audit trail */
            char v[96];
            value_text(json_object_get(req, "value"), v, sizeof v);
            log_info("control: client %d (uid %u, pid %d) asks to write %s/%s = %s", cl->id,
                     (unsigned)cl->uid, (int)cl->pid,
                     json_string_value(json_object_get(req, "device")),
                     json_string_value(json_object_get(req, "tag")), v);
        }
        /* Set before the hook: its reply may come back before it returns. */
        cl->waiting = true;
        json_t *r = c->hooks.submit ? c->hooks.submit(c->ctx, cl->id, cmd, req) : NULL;
        if (r || !c->hooks.submit) {
            cl->waiting = false;
            if (r)
                reply_json(cl, r, 0);
            else
                reply_error(cl, "internal", "the agent cannot run commands");
            json_decref(r);
        }
    } else {
        reply_error(cl, "bad_request", "unknown cmd \"%.64s\" (expected status, read, write or probe)", cmd);
    }
done:
    json_decref(req);
}

/* Answer the buffered requests, in order, as far as the client allows. */
static void process_input(control *c, client *cl)
{
    if (cl->in_process)
        return;
    cl->in_process = true;
    while (cl->fd >= 0 && !cl->waiting && !cl->closing && out_pending(cl) < OUT_HIGH) {
        char *nl = memchr(cl->in, '\n', cl->in_len);
        size_t len, used;
        if (nl) {
            len = (size_t)(nl - cl->in);
            used = len + 1;
        } else if (cl->in_len == IN_CAP) {
            reply_error(cl, "bad_request", "request longer than %d bytes", CONTROL_MAX_REQUEST);
            log_warn("control: client %d sent a request over %d bytes: closing it",
                     cl->id, CONTROL_MAX_REQUEST);
            cl->in_len = 0;
            cl->closing = true;
            break;
        } else if (cl->eof && cl->in_len > 0) {
            len = used = cl->in_len; /* a last request without newline */
        } else {
            break;
        }
        if (len > 0 && cl->in[len - 1] == '\r') /* typed through a terminal */
            len--;
        /* Consumed before handling, so a hook's re-entry sees a clean buffer. */
        char *line = malloc(len + 1);
        if (!line) {
            cl->closing = true;
            break;
        }
        memcpy(line, cl->in, len);
        line[len] = '\0';
        memmove(cl->in, cl->in + used, cl->in_len - used);
        cl->in_len -= used;
        if (len > 0)
            handle_request(c, cl, line, len);
        free(line);
    }
    cl->in_process = false;
}

/* Flush, then close the client if it is done. */
static void settle(client *cl)
{
    if (cl->fd < 0)
        return;
    if (flush(cl) < 0) {
        client_close(cl, strerror(errno));
        return;
    }
    if (out_pending(cl) > 0 || cl->waiting)
        return;
    if (cl->closing)
        client_close(cl, "request refused");
    else if (cl->eof && cl->in_len == 0)
        client_close(cl, "end of requests");
}

/* Answer what can be answered and write what the socket takes, until
 * neither moves: output that drained lets held-back requests through. */
static void progress(control *c, client *cl)
{
    while (cl->fd >= 0) {
        size_t in = cl->in_len, out;
        process_input(c, cl);
        out = out_pending(cl);
        settle(cl);
        if (cl->fd < 0 || (cl->in_len == in && out_pending(cl) == out))
            return;
    }
}

static void client_read(control *c, client *cl)
{
    while (cl->in_len < IN_CAP) {
        ssize_t r = recv(cl->fd, cl->in + cl->in_len, IN_CAP - cl->in_len, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            client_close(cl, strerror(errno));
            return;
        }
        if (r == 0) {
            cl->eof = true;
            break;
        }
        cl->in_len += (size_t)r;
        cl->last_io = mono_now();
        /* Hand complete requests over before the buffer fills with a pipeline. */
        if (memchr(cl->in + cl->in_len - (size_t)r, '\n', (size_t)r))
            process_input(c, cl);
        if (cl->fd < 0 || cl->closing)
            return;
    }
}

_Static_assert(CONTROL_MAX_CLIENTS == 32, "the busy reply names the limit");

static void refuse_busy(int fd)
{
    static const char busy[] = "{\"ok\":false,\"error\":\"busy\",\"detail\":\"too many "
                               "control clients (at most 32)\"}\n";
    ssize_t w = send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w; /* best effort: the client sees the close either way */
    close(fd);
}

static void accept_clients(control *c)
{
    int64_t now = mono_now();
    if (now < c->accept_paused_until)
        return;
    for (int k = 0; k < ACCEPT_BURST; k++) {
        int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE and friends: the connection stays queued and the
                 * listener stays readable; pause rather than spin. */
                log_warn("control: cannot accept a client: %s", strerror(errno));
                c->accept_paused_until = now + ACCEPT_PAUSE_MS;
            }
            return;
        }
        client *cl = NULL;
        for (int i = 0; i < CONTROL_MAX_CLIENTS && !cl; i++)
            if (c->clients[i].fd < 0)
                cl = &c->clients[i];
        char *in = cl ? malloc(IN_CAP) : NULL;
        if (!in) {
            log_warn("control: refusing a client: %s", cl ? "out of memory" : "too many clients");
            refuse_busy(fd);
            continue;
        }
        memset(cl, 0, sizeof *cl);
        cl->fd = fd;
        cl->in = in;
        cl->id = c->next_id;
        /* Ids are never reused, so a late bus reply cannot reach a newcomer
         * (after 2^31 connections the count restarts). */
        c->next_id = c->next_id == INT32_MAX ? 1 : c->next_id + 1;
        cl->last_io = now;
        struct ucred cred;
        socklen_t cl_len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl_len) == 0) {
            cl->pid = cred.pid;
            cl->uid = cred.uid;
        }
        log_debug("control: client %d connected (uid %u, pid %d)", cl->id,
                  (unsigned)cl->uid, (int)cl->pid);
    }
}

int control_pollfds(control *c, struct pollfd *fds, int max)
{
    int n = 0;
    if (!c || max <= 0)
        return 0;
    if (mono_now() >= c->accept_paused_until)
        fds[n++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
    for (int i = 0; i < CONTROL_MAX_CLIENTS && n < max; i++) {
        const client *cl = &c->clients[i];
        if (cl->fd < 0)
            continue;
        short ev = 0;
        /* Input is taken only while there is room for it and it could be
         * answered; a peer that hangs up is still seen (POLLHUP). */
        if (!cl->eof && !cl->closing && cl->in_len < IN_CAP)
            ev |= POLLIN;
        if (out_pending(cl) > 0)
            ev |= POLLOUT;
        fds[n++] = (struct pollfd){ .fd = cl->fd, .events = ev };
    }
    return n;
}

void control_handle(control *c, const struct pollfd *fds, int n)
{
    bool listener = false;
    if (!c)
        return;
    for (int k = 0; k < n; k++) {
        if (!fds[k].revents)
            continue;
        if (fds[k].fd == c->fd) {
            listener = true;
            continue;
        }
        client *cl = NULL;
        for (int i = 0; i < CONTROL_MAX_CLIENTS && !cl; i++)
            if (c->clients[i].fd == fds[k].fd)
                cl = &c->clients[i];
        if (!cl)
            continue;
        short re = fds[k].revents;
        if (re & (POLLERR | POLLNVAL)) {
            client_close(cl, "socket error");
            continue;
        }
        if (re & POLLHUP) {
            /* Gone for good: whatever it still asked for has nobody to
             * answer to, and a write nobody waits for is not performed. */
            client_close(cl, "hung up");
            continue;
        }
        if (re & POLLIN)
            client_read(c, cl);
        progress(c, cl);
    }
    if (listener)
        accept_clients(c);

    /* A client that makes no progress for CONTROL_IDLE_MS holds a slot for
     * nothing: silent, stuck mid-request, or not reading its replies. One
     * whose command is on the bus is not to blame (the bus has deadlines). */
    int64_t now = mono_now();
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        client *cl = &c->clients[i];
        if (cl->fd >= 0 && !cl->waiting && now - cl->last_io > CONTROL_IDLE_MS)
            client_close(cl, "idle");
    }
}

void control_reply_cmd(control *c, int client_id, const bus_cmd *cmd)
{
    char v[VALUE_TEXT_MAX], line[VALUE_TEXT_MAX + 128];
    client *cl = c ? client_by_id(c, client_id) : NULL;
    if (!cl) /* the client left meanwhile */
        return;
    if (!cl->waiting) {
        log_warn("control: client %d: a reply it did not wait for, dropped", client_id);
        return;
    }
    cl->waiting = false;
    if (cmd->code != SP_OK) {
        reply_error(cl, setpoint_code_name(cmd->code), "%s", cmd->detail);
    } else if (cmd->op == CMD_PROBE) {
        unsigned n = cmd->count > BUS_PROBE_MAX ? BUS_PROBE_MAX : cmd->count;
        json_t *o = json_object(), *regs = json_array();
        json_object_set_new(o, "ok", json_true());
        json_object_set_new(o, "table", json_string(config_table_name(cmd->table)));
        json_object_set_new(o, "address", json_integer(cmd->addr));
        for (unsigned i = 0; i < n; i++)
            json_array_append_new(regs, json_integer(cmd->regs[i]));
        json_object_set_new(o, "regs", regs);
        json_object_set_new(o, "ts", json_integer(cmd->ts));
        reply_json(cl, o, JSON_PRESERVE_ORDER);
        json_decref(o);
    } else {
        /* Built as text: going through a json_t would reprint the value with
         * 17 digits (0.1 as 0.10000000000000001), against SPEC §4. */
        if (codec_format(&cmd->value, v, sizeof v) < 0)
            snprintf(v, sizeof v, "null");
        int k = snprintf(line, sizeof line, "{\"ok\":true,\"v\":%s,\"ts\":%" PRId64 "}\n",
                         v, cmd->ts);
        if (out_append(cl, line, (size_t)k) < 0)
            cl->closing = true;
    }
    cl->last_io = mono_now(); /* the bus time was not the client's idling */
    /* Called from inside a hook (the reply came back at once): the request
     * loop that is running picks up from here. */
    if (cl->in_process)
        return;
    progress(c, cl); /* and the requests that waited behind this one */
}
