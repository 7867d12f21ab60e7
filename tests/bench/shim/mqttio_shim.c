/* mqttio_shim.c - an LD_PRELOAD experiment, not product code (not part of `make bench`).
 *
 * Question: how much of mbgate's CPU per sample is libmosquitto 2.0's system
 * call pattern? Per QoS 1 message it costs about 5.7 calls: a PUBACK is read
 * with three read()s (command byte, remaining length, payload), each PUBLISH
 * is one send plus a one-byte write() to the library's internal socketpair
 * (meant to wake a threaded loop; mbgate never reads it, so from the ~300th
 * message on every such write fails with EAGAIN). This shim, preloaded into
 * `mbgate run`, removes exactly that and nothing else:
 *   - read() on a TCP socket is served from a 64 KiB per-fd buffer, filled by
 *     one real read() of whatever the socket holds;
 *   - poll() reports POLLIN at once for a polled fd whose buffer holds data;
 *   - a one-byte write() to either end of an AF_UNIX socketpair created by
 *     the process (libmosquitto's) is dropped (returns 1);
 *   - with MQTTIO_SHIM_CORK=1, the first write() to a TCP socket after a
 *     poll() sets TCP_CORK and poll() clears it before sleeping: what one
 *     loop turn publishes leaves in as few TCP segments as possible.
 *   - with MQTTIO_SHIM_LOWAT=N, SO_RCVLOWAT = N bytes on polled TCP sockets:
 *     poll() wakes once N bytes (N/4 PUBACKs) are there, not on every ack
 *     (an experiment only: a lone small packet then waits for the caller's
 *     poll timeout).
 * MQTTIO_SHIM_READ=0 / MQTTIO_SHIM_PAIR=0 turn the first two off.
 * Build:  cc -O2 -shared -fPIC -o build/bench/mqttio_shim.so tests/bench/shim/mqttio_shim.c -ldl
 * Use:    compare.py's B side via a wrapper (see tests/bench/shim/mbgate-shim). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXFD 4096
#define BUFSZ 65536

typedef struct {
    int kind;          /* 0 unknown, 1 TCP socket (buffered), 2 other, 3 socketpair end */
    int corked;
    int lowat_set;
    long reads;
    size_t pos, len;
    unsigned char *buf;
} fdinfo;

static fdinfo fds[MAXFD];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_close)(int);
static int (*real_socketpair)(int, int, int, int[2]);
static int opt_read = 1, opt_pair = 1, opt_cork = 0, opt_lowat = 0;

static int env_flag(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v ? atoi(v) : dflt;
}

static void init(void)
{
    if (real_read)
        return;
    opt_read = env_flag("MQTTIO_SHIM_READ", 1);
    opt_pair = env_flag("MQTTIO_SHIM_PAIR", 1);
    opt_cork = env_flag("MQTTIO_SHIM_CORK", 0);
    opt_lowat = env_flag("MQTTIO_SHIM_LOWAT", 0);
    real_write = dlsym(RTLD_NEXT, "write");
    real_poll = dlsym(RTLD_NEXT, "poll");
    real_close = dlsym(RTLD_NEXT, "close");
    real_socketpair = dlsym(RTLD_NEXT, "socketpair");
    real_read = dlsym(RTLD_NEXT, "read");
}

static int kind_of(int fd)
{
    if (fd < 0 || fd >= MAXFD)
        return 2;
    if (!fds[fd].kind) {
        int dom = 0, type = 0;
        socklen_t l = sizeof dom;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &l) == 0 &&
            (l = sizeof type, getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) == 0) &&
            (dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM)
            fds[fd].kind = 1;
        else
            fds[fd].kind = 2;
    }
    return fds[fd].kind;
}

int socketpair(int domain, int type, int protocol, int sv[2])
{
    init();
    int rc = real_socketpair(domain, type, protocol, sv);
    if (rc == 0 && domain == AF_UNIX) {
        pthread_mutex_lock(&mu);
        for (int i = 0; i < 2; i++)
            if (sv[i] >= 0 && sv[i] < MAXFD)
                fds[sv[i]] = (fdinfo){ .kind = 3 };
        pthread_mutex_unlock(&mu);
    }
    return rc;
}

int close(int fd)
{
    init();
    if (fd >= 0 && fd < MAXFD) {
        pthread_mutex_lock(&mu);
        free(fds[fd].buf);
        fds[fd] = (fdinfo){ 0 };
        pthread_mutex_unlock(&mu);
    }
    return real_close(fd);
}

ssize_t write(int fd, const void *p, size_t n)
{
    init();
    if (opt_pair && n == 1 && fd >= 0 && fd < MAXFD && fds[fd].kind == 3)
        return 1; /* libmosquitto's wake-up byte: nobody reads it */
    if (opt_cork && kind_of(fd) == 1 && !fds[fd].corked) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
        fds[fd].corked = 1;
    }
    return real_write(fd, p, n);
}

ssize_t read(int fd, void *p, size_t n)
{
    init();
    if (!opt_read || kind_of(fd) != 1)
        return real_read(fd, p, n);
    fdinfo *f = &fds[fd];
    f->reads++;
    if (f->pos == f->len) {
        if (!f->buf && !(f->buf = malloc(BUFSZ)))
            return real_read(fd, p, n);
        ssize_t r = real_read(fd, f->buf, BUFSZ);
        if (r <= 0)
            return r;
        f->pos = 0;
        f->len = (size_t)r;
    }
    size_t k = f->len - f->pos < n ? f->len - f->pos : n;
    memcpy(p, f->buf + f->pos, k);
    f->pos += k;
    return (ssize_t)k;
}

int poll(struct pollfd *pfd, nfds_t n, int timeout)
{
    init();
    int ready = 0;
    for (nfds_t i = 0; i < n; i++) {
        int fd = pfd[i].fd;
        if (opt_lowat && (pfd[i].events & POLLIN) && kind_of(fd) == 1 && !fds[fd].lowat_set &&
            fds[fd].reads > 1000) { /* connected and busy */
            setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &opt_lowat, sizeof opt_lowat);
            fds[fd].lowat_set = 1;
        }
        if (fd >= 0 && fd < MAXFD && fds[fd].corked) {
            int zero = 0;
            setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
            fds[fd].corked = 0;
        }
        if (fd >= 0 && fd < MAXFD && fds[fd].kind == 1 && fds[fd].pos < fds[fd].len &&
            (pfd[i].events & POLLIN))
            ready = 1;
    }
    int rc = real_poll(pfd, n, ready ? 0 : timeout);
    if (rc < 0 || !ready)
        return rc;
    rc = 0;
    for (nfds_t i = 0; i < n; i++) {
        int fd = pfd[i].fd;
        if (fd >= 0 && fd < MAXFD && fds[fd].kind == 1 && fds[fd].pos < fds[fd].len &&
            (pfd[i].events & POLLIN))
            pfd[i].revents |= POLLIN;
        if (pfd[i].revents)
            rc++;
    }
    return rc;
}
