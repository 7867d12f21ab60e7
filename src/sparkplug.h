/* sparkplug.h - the Sparkplug B 3.0 edge node session (SPEC §8).
 *
 * Used by the agent instead of the JSON topics when mqtt.format is
 * "sparkplug": NDEATH as the Will with a persisted bdSeq, NCMD/DCMD
 * subscribed before NBIRTH, a DBIRTH per device with every tag as a metric
 * (aliases unique across the node), DDATA by alias, DDEATH/DBIRTH as PLCs
 * come and go, seq 0..255 shared across node and devices, Rebirth on NCMD,
 * and, with primary_host_id, births and data only while that host is
 * online (data is held in the outbox meanwhile and replayed as historical;
 * an offline STATE newer than the last one gets an NDEATH, a stale one is
 * ignored). A device that comes up while the node is born gets its DBIRTH
 * just before its first DDATA, so that the birth carries its values; no
 * DDATA goes out for a device without a DBIRTH in the session (after its
 * DDEATH). Births and data go out at QoS 0 and unretained, as Sparkplug
 * requires; the outbox deletes a sample once it was written to the socket. */
#ifndef MBGATE_SPARKPLUG_H
#define MBGATE_SPARKPLUG_H

#include <stdbool.h>
#include <stdint.h>

#include <mosquitto.h>

#include "config.h"
#include "mqtt.h"
#include "outbox.h"
#include "sample.h"

typedef struct sparkplug sparkplug;

/* A DCMD write for the setpoint pipeline: json is the value as JSON text,
 * ts the command payload's timestamp (0 when absent). */
typedef void (*sparkplug_write_fn)(void *ctx, const cfg_device *d, const cfg_tag *t,
                                   const char *json, int64_t ts);

sparkplug *sparkplug_new(const config *cfg, mqtt *mq, outbox *ob, char *err, size_t errlen);
void sparkplug_free(sparkplug *sp);

/* Devices and tags changed (SIGHUP): new aliases, then a rebirth if online. */
void sparkplug_set_config(sparkplug *sp, const config *cfg);

/* The Will for the next connection attempt: NDEATH with the next bdSeq. */
void sparkplug_will(sparkplug *sp, const char **topic, const void **payload, int *len);

/* The broker connection came up (subscribe; births unless waiting for the
 * primary host) or went down. */
void sparkplug_connected(sparkplug *sp);
void sparkplug_disconnected(sparkplug *sp);

/* A device went up or down: DBIRTH or DDEATH. */
void sparkplug_device_state(sparkplug *sp, const char *dev, bool up);

/* A fresh sample: remembered as the tag's current value for births. */
void sparkplug_observe(sparkplug *sp, const sample *s);

/* Publish a sample as DDATA; 0 with *mid (-1: nothing was sent and the
 * sample is done with: a removed tag, a device without a DBIRTH, the value
 * already in the DBIRTH), or -1 (then retry later). */
int sparkplug_publish(sparkplug *sp, const sample *s, int *mid);

/* A message on one of our subscriptions (STATE, NCMD, DCMD). */
void sparkplug_message(sparkplug *sp, const struct mosquitto_message *m,
                       sparkplug_write_fn write, void *ctx);

/* Connected, but holding data because the primary host is offline. */
bool sparkplug_host_offline(const sparkplug *sp);

/* Clean shutdown: NDEATH before the disconnect. */
void sparkplug_shutdown(sparkplug *sp);

#endif
