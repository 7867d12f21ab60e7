/* test_control.c - the control socket server (SPEC §7), in process.
 *
 * The server runs on a socket in a fresh temporary directory with stub
 * hooks; clients are ordinary AF_UNIX sockets. pump() plays the agent's
 * event loop: control_pollfds, poll, control_handle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"

#define LINE_MAX_T (2 * 1024 * 1024)

typedef struct {
    int submits;
    int last_client;
    char last_cmd[16];
    size_t status_pad;   /* bytes of padding in the status object */
} stub;

typedef struct {
    char dir[64];
    char path[128];
    stub st;
    control *c;
} fixture;

static json_t *stub_status(void *ctx)
{
    stub *s = ctx;
    json_t *o = json_pack("{s:s,s:{s:i,s:s}}", "version", "0.1.0", "health", "code", 0,
                          "status", "OK");
    if (s->status_pad) {
        char *pad = malloc(s->status_pad + 1);
        memset(pad, 'x', s->status_pad);
        pad[s->status_pad] = '\0';
        json_object_set_new(o, "pad", json_string(pad));
        free(pad);
    }
    return o;
}

/* "read" of tag "slow" goes to the bus (NULL); everything else answers at once. */
static json_t *stub_submit(void *ctx, int client, const char *cmd, const json_t *req)
{
    stub *s = ctx;
    s->submits++;
    s->last_client = client;
    snprintf(s->last_cmd, sizeof s->last_cmd, "%s", cmd);
    const char *tag = json_string_value(json_object_get(req, "tag"));
    if (tag && !strcmp(tag, "slow"))
        return NULL;
    if (!strcmp(cmd, "probe"))
        return NULL;
    return json_pack("{s:b,s:s}", "ok", 1, "echo", tag ? tag : "");
}

static const control_hooks hooks = { stub_status, stub_submit };

static int64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One turn of the agent's loop, waiting at most ms. */
static void pump(control *c, int ms)
{
    struct pollfd fds[CONTROL_MAX_CLIENTS + 1];
    int n = control_pollfds(c, fds, CONTROL_MAX_CLIENTS + 1);
    poll(fds, (nfds_t)n, ms);
    control_handle(c, fds, n);
}

/* Pump until the stub has seen n submits in all. */
static void wait_submits(fixture *f, int n)
{
    int64_t end = mono() + 3000;
    while (f->st.submits < n && mono() < end)
        pump(f->c, 10);
    assert_int_equal(f->st.submits, n);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/mbgate-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/mbgate.sock", f->dir);
    f->c = control_open(f->path, &hooks, &f->st, err, sizeof err);
    if (!f->c)
        fail_msg("control_open: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    control_close(f->c);
    unlink(f->path);
    char other[160];
    snprintf(other, sizeof other, "%s/other", f->dir);
    unlink(other);
    rmdir(f->dir);
    free(f);
    return 0;
}

static int connect_to(const char *path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static void send_all(control *c, int fd, const char *s, size_t n)
{
    size_t off = 0;
    int64_t end = mono() + 5000;
    while (off < n && mono() < end) {
        ssize_t w = send(fd, s + off, n - off, MSG_NOSIGNAL);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            break; /* closed by the server: the caller checks */
        else
            pump(c, 10);
    }
}

static void send_str(control *c, int fd, const char *s)
{
    send_all(c, fd, s, strlen(s));
}

/* Read one reply line (without newline) while pumping the server; returns
 * its length, -1 on EOF before a line, -2 on 3 s without progress. Peeks
 * first so that nothing after the newline is consumed. */
static ssize_t read_line(control *c, int fd, char *buf, size_t n)
{
    size_t len = 0;
    int64_t end = mono() + 3000;
    while (mono() < end) {
        if (len == n - 1)
            return -2;
        ssize_t r = recv(fd, buf + len, n - 1 - len, MSG_PEEK);
        if (r > 0) {
            char *nl = memchr(buf + len, '\n', (size_t)r);
            size_t take = nl ? (size_t)(nl - (buf + len)) + 1 : (size_t)r;
            assert_int_equal(recv(fd, buf + len, take, 0), (ssize_t)take);
            len += take;
            if (nl) {
                buf[len - 1] = '\0';
                return (ssize_t)len - 1;
            }
            end = mono() + 3000;
            continue;
        }
        if (r == 0 || (r < 0 && errno != EAGAIN))
            return -1;
        pump(c, 10);
    }
    return -2;
}

/* True if nothing arrives on fd for ms (the server being pumped). */
static bool silent(control *c, int fd, int ms)
{
    char b;
    int64_t end = mono() + ms;
    while (mono() < end) {
        if (recv(fd, &b, 1, MSG_PEEK) != -1 || errno != EAGAIN)
            return false;
        pump(c, 10);
    }
    return true;
}

/* True if the server closed fd (EOF) within a while. */
static bool closed_by_server(control *c, int fd)
{
    char b[4096];
    int64_t end = mono() + 3000;
    while (mono() < end) {
        ssize_t r = recv(fd, b, sizeof b, 0);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return true;
        if (r < 0 && errno != EAGAIN)
            return true;
        pump(c, 10);
    }
    return false;
}

static json_t *parse(const char *line)
{
    json_t *j = json_loads(line, 0, NULL);
    if (!j)
        fail_msg("not JSON: %s", line);
    return j;
}

static void assert_error_code(const char *line, const char *code)
{
    json_t *j = parse(line);
    assert_true(json_is_false(json_object_get(j, "ok")));
    assert_string_equal(json_string_value(json_object_get(j, "error")), code);
    assert_non_null(json_string_value(json_object_get(j, "detail")));
    json_decref(j);
}

/* ---- tests --------------------------------------------------------------- */

static void test_status(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fd = connect_to(f->path);
    send_str(f->c, fd, "{\"cmd\":\"status\"}\n");
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"version\":\"0.1.0\",\"health\":{\"code\":0,\"status\":\"OK\"}}");
    /* The connection stays usable for a second request. */
    send_str(f->c, fd, "{\"cmd\":\"status\"}\r\n");
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    close(fd);
}

static void test_bad_requests(void **state)
{
    fixture *f = *state;
    char line[4096];
    static const char *bad[] = {
        "{\"cmd\":\"status\"\n",                       /* bad JSON */
        "not json at all\n",
        "[1,2]\n",                                     /* not an object */
        "{\"verb\":\"status\"}\n",                     /* no cmd */
        "{\"cmd\":\"reboot\"}\n",                      /* unknown cmd */
        "{\"cmd\":\"read\",\"device\":\"plc1\"}\n",    /* no tag */
        "{\"cmd\":\"write\",\"device\":\"plc1\",\"tag\":\"sp\"}\n", /* no value */
        "{\"cmd\":\"probe\",\"device\":\"plc1\",\"table\":\"nope\",\"address\":0,\"count\":1}\n",
        "{\"cmd\":\"probe\",\"device\":\"plc1\",\"table\":\"holding\",\"address\":0,\"count\":126}\n",
        "{\"cmd\":\"probe\",\"device\":\"plc1\",\"table\":\"holding\",\"address\":65535,\"count\":2}\n",
    };
    int fd = connect_to(f->path);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        send_str(f->c, fd, bad[i]);
        assert_true(read_line(f->c, fd, line, sizeof line) > 0);
        assert_error_code(line, "bad_request");
    }
    assert_int_equal(f->st.submits, 0); /* none reached the agent */
    close(fd);
}

static void test_immediate_submit(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fd = connect_to(f->path);
    send_str(f->c, fd, "{\"cmd\":\"write\",\"device\":\"plc1\",\"tag\":\"sp\",\"value\":42}\n");
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":true,\"echo\":\"sp\"}");
    assert_string_equal(f->st.last_cmd, "write");
    close(fd);
}

/* Several requests in one write: replies come in request order, the later
 * ones waiting behind a command that is on the bus. */
static void test_pipelined_in_order(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fd = connect_to(f->path);
    send_str(f->c, fd, "{\"cmd\":\"read\",\"device\":\"plc1\",\"tag\":\"fast1\"}\n"
                       "{\"cmd\":\"read\",\"device\":\"plc1\",\"tag\":\"slow\"}\n"
                       "{\"cmd\":\"read\",\"device\":\"plc1\",\"tag\":\"fast2\"}\n"
                       "{\"cmd\":\"status\"}\n");
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":true,\"echo\":\"fast1\"}");
    /* Nothing more until the slow one is done. */
    assert_true(silent(f->c, fd, 200));
    assert_int_equal(f->st.submits, 2);
    assert_string_equal(f->st.last_cmd, "read");

    bus_cmd cmd = { .op = CMD_READ, .code = SP_OK, .ts = 1795743898123LL };
    cmd.value.kind = CV_F32;
    cmd.value.f32 = 123.456f;
    control_reply_cmd(f->c, f->st.last_client, &cmd);
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":true,\"v\":123.456,\"ts\":1795743898123}");
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":true,\"echo\":\"fast2\"}");
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_non_null(strstr(line, "\"version\""));
    close(fd);
}

static void test_reply_cmd_kinds(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fd = connect_to(f->path);

    /* probe */
    send_str(f->c, fd, "{\"cmd\":\"probe\",\"device\":\"plc1\",\"table\":\"holding\","
                       "\"address\":100,\"count\":2}\n");
    wait_submits(f, 1);
    assert_true(silent(f->c, fd, 100));
    bus_cmd p = { .op = CMD_PROBE, .code = SP_OK, .table = TABLE_HOLDING, .addr = 100,
                  .count = 2, .ts = 5 };
    p.regs[0] = 0xE979;
    p.regs[1] = 0x42F6;
    control_reply_cmd(f->c, f->st.last_client, &p);
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":true,\"table\":\"holding\",\"address\":100,"
                              "\"regs\":[59769,17142],\"ts\":5}");

    /* failure */
    send_str(f->c, fd, "{\"cmd\":\"write\",\"device\":\"plc1\",\"tag\":\"slow\",\"value\":1}\n");
    wait_submits(f, 2);
    bus_cmd w = { .op = CMD_WRITE, .code = SP_MODBUS_EXCEPTION };
    snprintf(w.detail, sizeof w.detail, "illegal data address");
    control_reply_cmd(f->c, f->st.last_client, &w);
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":false,\"error\":\"modbus_exception\","
                              "\"detail\":\"illegal data address\"}");

    /* a value that jansson would print with 17 digits, and a string */
    send_str(f->c, fd, "{\"cmd\":\"read\",\"device\":\"plc1\",\"tag\":\"slow\"}\n");
    wait_submits(f, 3);
    bus_cmd r = { .op = CMD_READ, .code = SP_OK, .ts = 7 };
    r.value.kind = CV_F64;
    r.value.f64 = 0.1;
    control_reply_cmd(f->c, f->st.last_client, &r);
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":true,\"v\":0.1,\"ts\":7}");
    send_str(f->c, fd, "{\"cmd\":\"read\",\"device\":\"plc1\",\"tag\":\"slow\"}\n");
    wait_submits(f, 4);
    r.value.kind = CV_STR;
    snprintf(r.value.s, sizeof r.value.s, "SN \"42\"");
    control_reply_cmd(f->c, f->st.last_client, &r);
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    json_t *j = parse(line);
    assert_string_equal(json_string_value(json_object_get(j, "v")), "SN \"42\"");
    json_decref(j);
    close(fd);
}

/* A reply for a client that left is dropped, and ids are not reused. */
static void test_reply_to_closed_client(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fd = connect_to(f->path);
    send_str(f->c, fd, "{\"cmd\":\"read\",\"device\":\"plc1\",\"tag\":\"slow\"}\n");
    wait_submits(f, 1);
    int gone = f->st.last_client;
    close(fd);
    pump(f->c, 10);
    pump(f->c, 10);

    int fd2 = connect_to(f->path);
    send_str(f->c, fd2, "{\"cmd\":\"read\",\"device\":\"plc1\",\"tag\":\"slow\"}\n");
    wait_submits(f, 2);
    assert_int_not_equal(f->st.last_client, gone);
    bus_cmd cmd = { .op = CMD_READ, .code = SP_OK, .ts = 1 };
    cmd.value.kind = CV_INT;
    cmd.value.i = 1;
    control_reply_cmd(f->c, gone, &cmd); /* dropped, no crash */
    assert_true(silent(f->c, fd2, 200));
    cmd.value.i = 2;
    control_reply_cmd(f->c, f->st.last_client, &cmd);
    assert_true(read_line(f->c, fd2, line, sizeof line) > 0);
    assert_string_equal(line, "{\"ok\":true,\"v\":2,\"ts\":1}");
    close(fd2);
}

static void test_oversized_request(void **state)
{
    fixture *f = *state;
    char line[4096];
    int other = connect_to(f->path);
    int fd = connect_to(f->path);
    size_t n = CONTROL_MAX_REQUEST + 4096;
    char *big = malloc(n);
    memset(big, ' ', n); /* whitespace: valid JSON so far, never a line */
    send_all(f->c, fd, big, n);
    free(big);
    ssize_t k = read_line(f->c, fd, line, sizeof line);
    assert_true(k > 0);
    assert_error_code(line, "bad_request");
    assert_true(closed_by_server(f->c, fd));
    close(fd);
    /* Everyone else is served as usual. */
    send_str(f->c, other, "{\"cmd\":\"status\"}\n");
    assert_true(read_line(f->c, other, line, sizeof line) > 0);
    close(other);
}

/* A request of exactly the limit is fine. */
static void test_request_at_limit(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fd = connect_to(f->path);
    size_t n = CONTROL_MAX_REQUEST + 1;
    char *req = malloc(n);
    memset(req, ' ', n);
    const char *cmd = "{\"cmd\":\"status\"}";
    memcpy(req, cmd, strlen(cmd));
    req[n - 1] = '\n';
    send_all(f->c, fd, req, n);
    free(req);
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_non_null(strstr(line, "\"version\""));
    close(fd);
}

static void test_too_many_clients(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fds[CONTROL_MAX_CLIENTS];
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        fds[i] = connect_to(f->path);
        pump(f->c, 5);
    }
    int extra = connect_to(f->path);
    pump(f->c, 5);
    assert_true(read_line(f->c, extra, line, sizeof line) > 0);
    assert_error_code(line, "busy");
    assert_true(closed_by_server(f->c, extra));
    close(extra);
    /* The 32 are all still served. */
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++) {
        send_str(f->c, fds[i], "{\"cmd\":\"status\"}\n");
        assert_true(read_line(f->c, fds[i], line, sizeof line) > 0);
    }
    /* A slot freed is a slot available. */
    close(fds[0]);
    pump(f->c, 10);
    fds[0] = connect_to(f->path);
    send_str(f->c, fds[0], "{\"cmd\":\"status\"}\n");
    assert_true(read_line(f->c, fds[0], line, sizeof line) > 0);
    assert_non_null(strstr(line, "\"version\""));
    for (int i = 0; i < CONTROL_MAX_CLIENTS; i++)
        close(fds[i]);
}

/* Replies larger than the socket buffer arrive whole to a slow reader. */
static void test_large_reply(void **state)
{
    fixture *f = *state;
    f->st.status_pad = 1024 * 1024;
    int fd = connect_to(f->path);
    /* Three at once: the later ones wait until the first has drained. */
    send_str(f->c, fd, "{\"cmd\":\"status\"}\n{\"cmd\":\"status\"}\n{\"cmd\":\"status\"}\n");
    char *line = malloc(LINE_MAX_T);
    for (int i = 0; i < 3; i++) {
        ssize_t k = read_line(f->c, fd, line, LINE_MAX_T);
        assert_true(k > (ssize_t)f->st.status_pad);
        json_t *j = parse(line);
        assert_int_equal(strlen(json_string_value(json_object_get(j, "pad"))), f->st.status_pad);
        json_decref(j);
    }
    free(line);
    close(fd);
}

/* A client that sends its request and shuts down its side still gets the
 * answer (echo ... | socat), then the connection ends. */
static void test_half_close(void **state)
{
    fixture *f = *state;
    char line[4096];
    int fd = connect_to(f->path);
    send_str(f->c, fd, "{\"cmd\":\"status\"}"); /* no newline either */
    shutdown(fd, SHUT_WR);
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    assert_non_null(strstr(line, "\"version\""));
    assert_true(closed_by_server(f->c, fd));
    close(fd);
}

static void test_idle_client_closed(void **state)
{
    fixture *f = *state;
    if (CONTROL_IDLE_MS > 1000)
        skip(); /* build with -DCONTROL_IDLE_MS=200 to run it */
    int fd = connect_to(f->path);
    send_str(f->c, fd, "{\"cmd\":");
    int64_t t0 = mono();
    assert_true(closed_by_server(f->c, fd));
    assert_true(mono() - t0 >= CONTROL_IDLE_MS - 50);
    close(fd);
}

static void test_socket_mode(void **state)
{
    fixture *f = *state;
    struct stat st;
    assert_int_equal(lstat(f->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0660);
}

static void test_close_removes_socket(void **state)
{
    fixture *f = *state;
    struct stat st;
    control_close(f->c);
    f->c = NULL;
    assert_int_equal(lstat(f->path, &st), -1);
    assert_int_equal(errno, ENOENT);
}

/* ---- control_open on what is already at the path ------------------------- */

static control *open_at(fixture *f, const char *path, char *err, size_t n)
{
    return control_open(path, &hooks, &f->st, err, n);
}

static void test_stale_socket_replaced(void **state)
{
    fixture *f = *state;
    char path[160], err[256];
    snprintf(path, sizeof path, "%s/other", f->dir);
    /* A socket file nobody listens on: what a crashed agent leaves. */
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    close(s);
    control *c = open_at(f, path, err, sizeof err);
    if (!c)
        fail_msg("stale socket not replaced: %s", err);
    int fd = connect_to(path);
    char line[4096];
    send_str(c, fd, "{\"cmd\":\"status\"}\n");
    assert_true(read_line(c, fd, line, sizeof line) > 0);
    close(fd);
    control_close(c);
}

static void test_live_socket_refused(void **state)
{
    fixture *f = *state;
    char err[256];
    assert_null(open_at(f, f->path, err, sizeof err));
    assert_non_null(strstr(err, "in use"));
    /* ... and the running one is untouched. */
    int fd = connect_to(f->path);
    char line[4096];
    send_str(f->c, fd, "{\"cmd\":\"status\"}\n");
    assert_true(read_line(f->c, fd, line, sizeof line) > 0);
    close(fd);
}

static void test_symlink_refused(void **state)
{
    fixture *f = *state;
    char path[160], err[256], target[160];
    struct stat st;
    snprintf(path, sizeof path, "%s/other", f->dir);
    snprintf(target, sizeof target, "%s/target", f->dir);
    assert_int_equal(symlink(target, path), 0);
    assert_null(open_at(f, path, err, sizeof err));
    assert_non_null(strstr(err, "symbolic link"));
    assert_non_null(strstr(err, path));
    assert_int_equal(lstat(path, &st), 0); /* left alone */
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(target, &st), -1); /* nothing created through it */
}

static void test_regular_file_refused(void **state)
{
    fixture *f = *state;
    char path[160], err[256];
    snprintf(path, sizeof path, "%s/other", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("precious\n", fp);
    fclose(fp);
    assert_null(open_at(f, path, err, sizeof err));
    assert_non_null(strstr(err, "not a socket"));
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_size, 9);
}

static void test_missing_directory(void **state)
{
    fixture *f = *state;
    char path[160], err[256], want[320];
    snprintf(path, sizeof path, "%s/nodir/mbgate.sock", f->dir);
    assert_null(open_at(f, path, err, sizeof err));
    snprintf(want, sizeof want, "cannot create control socket %s: No such file or directory", path);
    assert_string_equal(err, want);
}

static void test_path_too_long(void **state)
{
    fixture *f = *state;
    char path[300], err[512];
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    assert_null(open_at(f, path, err, sizeof err));
    assert_non_null(strstr(err, "too long"));
}

int main(void)
{
    log_init(LOG_ERR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_immediate_submit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_cmd_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_to_closed_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_at_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_client_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_removes_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_socket_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_symlink_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regular_file_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_too_long, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
