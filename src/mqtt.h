/* mqtt.h - the broker connection (libmosquitto), driven by the agent's loop.
 *
 * Non-blocking: the agent polls mqtt_fd() and calls mqtt_io(). Each
 * connection attempt uses a fresh libmosquitto session (clean session,
 * MQTT 5 session expiry 0), so nothing is retransmitted behind the outbox's
 * back: what was in flight when a connection dropped is the outbox's to
 * resend. A failed or lost connection moves on to the next broker of
 * mqtt.brokers at once; when the list starts over, attempts back off
 * exponentially (1 s doubling to 10 s).
 *
 * TLS (mqtt.tls): the broker's certificate is verified against ca_file /
 * ca_path or the system store, its name against the host (unless
 * verify_hostname = false); tls.insecure = true turns verification off and
 * is logged as a warning. Why a connection failed (TCP, TLS handshake with
 * OpenSSL's reason, CONNACK refusal with the MQTT 5 reason code or the
 * 3.1.1 return code) is logged once per condition and kept in
 * mqtt_stats.last_error. The password (password_file, or the systemd
 * credential mqtt-password) is never logged.
 *
 * Callbacks run on the agent's thread, from inside mqtt_io() (acked also
 * from mqtt_shutdown(); none from inside mqtt_publish(), so the caller
 * always knows a mid before its acked arrives). acked(mid) means: QoS 0
 * written to the socket, QoS 1 PUBACK, QoS 2 PUBCOMP. */
#ifndef MBGATE_MQTT_H
#define MBGATE_MQTT_H

#include <stdbool.h>
#include <stdint.h>

#include <mosquitto.h>

#include "config.h"

typedef struct {
    /* Before each connection attempt: the Last Will (retained iff retain,
     * QoS 1), or topic NULL for none. Sparkplug's changes per attempt (bdSeq). */
    void (*will)(void *ctx, const char **topic, const void **payload, int *len, bool *retain);
    void (*connected)(void *ctx);
    void (*disconnected)(void *ctx);
    void (*acked)(void *ctx, int mid);
    /* MQTT 5: the broker refused message mid (reason code >= 0x80). */
    void (*refused)(void *ctx, int mid);
    void (*message)(void *ctx, const struct mosquitto_message *msg,
                    const mosquitto_property *props);
} mqtt_callbacks;

typedef struct {
    bool connected;
    int64_t since;          /* wall ms of the last state change */
    uint64_t reconnects;
    char broker[CFG_TEXT_MAX + 8]; /* host:port in use or last tried */
    char last_error[256];
    int64_t last_error_ts;
} mqtt_stats;

typedef struct mqtt mqtt;

mqtt *mqtt_new(const config *cfg, const mqtt_callbacks *cb, void *ctx,
               char *err, size_t errlen);
void mqtt_free(mqtt *m);

/* The socket to poll (-1 while not connected) and whether to poll for writing. */
int mqtt_fd(mqtt *m);
bool mqtt_want_write(mqtt *m);

/* Do what is due: read/write per revents, keepalive, (re)connect attempts. */
void mqtt_io(mqtt *m, short revents);
/* How long the agent may sleep before mqtt_io is due again (ms). */
int mqtt_timeout(mqtt *m);

/* Wake-up batching while many messages are in flight: poll reports the
 * socket readable only once about n PUBACKs (4 bytes each) are waiting
 * (SO_RCVLOWAT), instead of on every one; n <= 1 restores "any byte".
 * mqtt_io reads anyway once MQTT_ACK_BATCH_MAX_MS passed without a read, so
 * a lone packet (a command, PINGRESP) waits at most that long. */
#define MQTT_ACK_BATCH_MAX_MS 10
void mqtt_ack_batch(mqtt *m, unsigned n);

/* CONNACK accepted and the session has not failed since. */
bool mqtt_is_connected(mqtt *m);

/* Publish; returns 0 and fills *mid, or -1 (not connected, or out of
 * memory) with nothing sent. props may be NULL (MQTT 5 only). */
int mqtt_publish(mqtt *m, const char *topic, const void *payload, int len, int qos,
                 bool retain, const mosquitto_property *props, int *mid);
int mqtt_subscribe(mqtt *m, const char *pattern, int qos);

/* Flush what is queued (up to timeout_ms) and disconnect cleanly. */
void mqtt_shutdown(mqtt *m, int timeout_ms);

void mqtt_stats_get(mqtt *m, mqtt_stats *out);

#endif
