/* bus.h - link threads: each owns one Modbus link and the devices on it.
 *
 * A link is a TCP endpoint or a serial port (devices sharing one share the
 * link, polled in turn by unit id). Its thread is the only one that touches
 * the libmodbus context: it polls on a drift-free schedule, reconnects with
 * capped exponential backoff, backs off devices that stop answering, and
 * runs commands (setpoint writes, reads, probes) ahead of queued polls.
 * Everything it produces goes to the agent's queue as events.
 *
 * Failures are kept where they belong. A device that does not answer costs
 * its retries once, then is down and probed with one attempt at 1 s doubling
 * to 30 s; the other devices on the link keep their period. The link is
 * closed and reopened (0.5 s doubling to 10 s) on an I/O error, after 3 bad
 * frames in a row, and, on TCP only, when no device on it answers at all (a
 * half-open connection); a serial port is never closed for a silent slave. */
#ifndef MBGATE_BUS_H
#define MBGATE_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "queue.h"
#include "sample.h"
#include "setpoint.h"

enum { EV_SAMPLES = 1, EV_STATE, EV_CMD };

typedef struct {
    queue_item q;  /* kind EV_SAMPLES */
    sample *list;  /* one poll's samples, in order */
} bus_samples;

typedef struct {
    queue_item q;  /* kind EV_STATE */
    char dev[CFG_NAME_MAX];
    bool up;
    int64_t ts;
    char error[160];
} bus_state;

typedef enum { CMD_WRITE, CMD_READ, CMD_PROBE } bus_op;

#define BUS_PROBE_MAX 125

typedef struct bus_cmd {
    queue_item q;          /* kind EV_CMD when it comes back */
    bus_op op;
    const cfg_device *dev;
    const cfg_tag *tag;    /* CMD_WRITE, CMD_READ */
    codec_value raw;       /* CMD_WRITE: the raw value to write */
    cfg_table table;       /* CMD_PROBE */
    unsigned addr, count;
    int64_t deadline;      /* mono ms: not started by then = timeout, never run late */
    /* results */
    sp_code code;          /* SP_OK, SP_DEVICE_DOWN, SP_TIMEOUT, SP_MODBUS_EXCEPTION, SP_VERIFY_FAILED */
    char detail[256];
    codec_value value;     /* engineering value read (back) */
    uint16_t regs[BUS_PROBE_MAX]; /* CMD_PROBE: registers, or bits as 0/1 */
    int64_t ts;            /* when the PLC answered */
    double ms;             /* how long it took */
    void *origin;          /* the submitter's context, untouched */
} bus_cmd;

typedef struct {
    bool up;
    bool known;            /* polled at least once */
    int64_t last_good_ts;  /* wall ms of the last good poll */
    unsigned poll_ms;
    double p50_ms, p99_ms; /* request latency over the last 256 requests */
    uint64_t polls, errors, skipped;
    char last_error[160];
    int64_t last_error_ts;
} bus_dev_stats;

typedef struct bus bus;

/* Start one thread per link for every device of cfg; events go to out.
 * NULL with err filled on failure. */
bus *bus_start(const config *cfg, queue *out, char *err, size_t errlen);
/* Stop and join every thread; samples not yet handed over are discarded. */
void bus_stop(bus *b);

/* Hand cmd to the thread owning cmd->dev's link. Always comes back on the
 * queue as EV_CMD: a device known to be down answers device_down at once. */
void bus_submit(bus *b, bus_cmd *cmd);

/* Statistics of device name; -1 when unknown. */
int bus_device_stats(bus *b, const char *dev, bus_dev_stats *out);

/* The oldest "last progress" time (mono ms) among the link threads, for the
 * watchdog: a thread stuck beyond its longest request drags this back. */
int64_t bus_oldest_progress(bus *b);

#endif
