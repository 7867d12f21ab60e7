/* mqtt.c - the broker connection (libmosquitto), non-blocking. */
#include "mqtt.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sample.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 10000

struct mqtt {
    const config *cfg;
    mqtt_callbacks cb;
    void *ctx;
    struct mosquitto *mosq;  /* the current session; NULL between attempts */
    char password[256];
    bool have_password;
    bool up;                 /* CONNACK accepted */
    bool lost;               /* the session failed inside a callback */
    size_t broker;           /* index in cfg->mqtt.brokers */
    int64_t retry_at;        /* mono ms */
    int64_t attempt_at;      /* mono ms the current attempt started */
    unsigned backoff_ms;
    bool error_logged;
    mqtt_stats st;
};

static void set_error(mqtt *m, const char *fmt, const char *arg)
{
    char msg[sizeof m->st.last_error];
    snprintf(msg, sizeof msg, fmt, arg);
    /* one line per new condition, not one per attempt */
    if (!m->error_logged || strcmp(msg, m->st.last_error) != 0)
        log_warn("mqtt: %s: %s", m->st.broker, msg);
    m->error_logged = true;
    snprintf(m->st.last_error, sizeof m->st.last_error, "%s", msg);
    m->st.last_error_ts = now_ms();
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    (void)mosq;
    (void)flags;
    (void)props;
    mqtt *m = obj;
    if (rc != 0) {
        set_error(m, "broker refused the connection: %s",
                  m->cfg->mqtt.v5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc));
        m->lost = true;
        return;
    }
    m->up = true;
    m->backoff_ms = 0;
    m->error_logged = false;
    m->st.connected = true;
    m->st.since = now_ms();
    log_info("mqtt: connected to %s", m->st.broker);
    if (m->cb.connected)
        m->cb.connected(m->ctx);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    mqtt *m = obj;
    if (rc != 0)
        m->lost = true;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    mqtt *m = obj;
    if (rc != 0 && rc < 0x80) /* v5 reason codes below 0x80 are successes */
        rc = 0;
    if (rc != 0) {
        log_warn("mqtt: broker refused publish %d: %s (kept in the outbox)", mid,
                 mosquitto_reason_string(rc));
        return;
    }
    if (m->cb.acked)
        m->cb.acked(m->ctx, mid);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)mosq;
    mqtt *m = obj;
    if (m->cb.message)
        m->cb.message(m->ctx, msg, props);
}

static int read_password(mqtt *m, char *err, size_t errlen)
{
    char path[CFG_PATH_MAX + 64];
    const char *cred = getenv("CREDENTIALS_DIRECTORY");
    const char *file = m->cfg->mqtt.password_file;
    /* a systemd credential named mqtt-password wins over the file */
    if (cred) {
        snprintf(path, sizeof path, "%s/mqtt-password", cred);
        FILE *f = fopen(path, "r");
        if (f) {
            fclose(f);
            file = path;
        }
    }
    if (!*file)
        return 0;
    FILE *f = fopen(file, "r");
    if (!f) {
        snprintf(err, errlen, "mqtt: cannot read password_file %s: %s", file, strerror(errno));
        return -1;
    }
    if (!fgets(m->password, sizeof m->password, f))
        m->password[0] = 0;
    fclose(f);
    m->password[strcspn(m->password, "\r\n")] = 0;
    m->have_password = true;
    return 0;
}

mqtt *mqtt_new(const config *cfg, const mqtt_callbacks *cb, void *ctx, char *err, size_t errlen)
{
    mqtt *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->cfg = cfg;
    m->cb = *cb;
    m->ctx = ctx;
    if (read_password(m, err, errlen) < 0) {
        mqtt_free(m);
        return NULL;
    }
    m->retry_at = 0;
    return m;
}

static void drop_session(mqtt *m)
{
    bool was_up = m->up;
    if (m->mosq) {
        mosquitto_destroy(m->mosq);
        m->mosq = NULL;
    }
    m->up = false;
    m->lost = false;
    if (was_up) {
        m->st.connected = false;
        m->st.since = now_ms();
        log_warn("mqtt: connection to %s lost", m->st.broker);
        if (m->cb.disconnected)
            m->cb.disconnected(m->ctx);
    }
}

void mqtt_free(mqtt *m)
{
    if (!m)
        return;
    if (m->mosq)
        mosquitto_destroy(m->mosq);
    memset(m->password, 0, sizeof m->password);
    free(m);
}

static int configure_tls(mqtt *m, struct mosquitto *mosq)
{
    const typeof(m->cfg->mqtt.tls) *t = &m->cfg->mqtt.tls;
    int rc;
    if (!t->enabled)
        return 0;
    if (!*t->ca_file && !*t->ca_path)
        mosquitto_int_option(mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
    rc = mosquitto_tls_set(mosq, *t->ca_file ? t->ca_file : NULL, *t->ca_path ? t->ca_path : NULL,
                           *t->cert_file ? t->cert_file : NULL, *t->key_file ? t->key_file : NULL, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        set_error(m, "TLS setup failed: %s", mosquitto_strerror(rc));
        return -1;
    }
    if (t->insecure || !t->verify_hostname)
        mosquitto_tls_insecure_set(mosq, true);
    return 0;
}

static int configure(mqtt *m, struct mosquitto *mosq)
{
    const config *c = m->cfg;
    mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, c->mqtt.v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
    mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(mosq, c->mqtt.max_inflight);
    mosquitto_connect_v5_callback_set(mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(mosq, on_publish);
    mosquitto_message_v5_callback_set(mosq, on_message);
    if (*c->mqtt.username &&
        mosquitto_username_pw_set(mosq, c->mqtt.username, m->have_password ? m->password : NULL))
        return -1;
    const char *wt = NULL;
    const void *wp = NULL;
    int wl = 0;
    bool wr = false;
    if (m->cb.will)
        m->cb.will(m->ctx, &wt, &wp, &wl, &wr);
    if (wt && mosquitto_will_set(mosq, wt, wl, wp, 1, wr))
        return -1;
    return configure_tls(m, mosq);
}

static void attempt(mqtt *m, int64_t now)
{
    const cfg_broker *b = &m->cfg->mqtt.brokers[m->broker];
    snprintf(m->st.broker, sizeof m->st.broker, "%s:%u", b->host, b->port);
    m->mosq = mosquitto_new(m->cfg->mqtt.client_id, true, m);
    m->attempt_at = now;
    if (!m->mosq) {
        set_error(m, "cannot create client: %s", strerror(errno));
        goto fail;
    }
    if (configure(m, m->mosq) < 0)
        goto fail;
    int rc = mosquitto_connect_bind_async(m->mosq, b->host, (int)b->port, (int)m->cfg->mqtt.keepalive, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        set_error(m, "cannot connect: %s",
                  rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        goto fail;
    }
    return;
fail:
    m->lost = true;
}

/* Schedule the next attempt, on the next broker of the list. */
static void backoff(mqtt *m, int64_t now)
{
    drop_session(m);
    m->st.reconnects++;
    m->broker = (m->broker + 1) % m->cfg->mqtt.nbrokers;
    m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (m->backoff_ms > BACKOFF_MAX_MS)
        m->backoff_ms = BACKOFF_MAX_MS;
    /* with several brokers, try the next one at once after the first failure */
    unsigned wait = m->cfg->mqtt.nbrokers > 1 && m->broker != 0 ? 0 : m->backoff_ms;
    m->retry_at = now + wait;
}

int mqtt_fd(mqtt *m) { return m->mosq ? mosquitto_socket(m->mosq) : -1; }

bool mqtt_want_write(mqtt *m) { return m->mosq && mosquitto_want_write(m->mosq); }

static bool fatal(int rc) { return rc != MOSQ_ERR_SUCCESS; }

void mqtt_io(mqtt *m, short revents)
{
    int64_t now = mono_ms();
    if (!m->mosq) {
        if (now >= m->retry_at)
            attempt(m, now);
        if (m->lost)
            backoff(m, now);
        return;
    }
    int rc = MOSQ_ERR_SUCCESS;
    if (revents & (POLLIN | POLLERR | POLLHUP))
        rc = mosquitto_loop_read(m->mosq, 64);
    if (!fatal(rc) && !m->lost && (revents & POLLOUT))
        rc = mosquitto_loop_write(m->mosq, 64);
    if (!fatal(rc) && !m->lost)
        rc = mosquitto_loop_misc(m->mosq);
    if (!m->up && !m->lost && now - m->attempt_at > (int64_t)m->cfg->mqtt.keepalive * 1000) {
        set_error(m, "%s", "no answer to CONNECT (timeout)");
        m->lost = true;
    }
    if (fatal(rc) && !m->lost) {
        if (rc == MOSQ_ERR_ERRNO)
            set_error(m, "%s", strerror(errno));
        else
            set_error(m, "%s", mosquitto_strerror(rc));
        m->lost = true;
    }
    if (m->lost)
        backoff(m, now);
}

int mqtt_timeout(mqtt *m)
{
    if (!m->mosq) {
        int64_t d = m->retry_at - mono_ms();
        return d < 0 ? 0 : d > 1000 ? 1000 : (int)d;
    }
    return 1000; /* keepalive is handled in mqtt_io at least once a second */
}

bool mqtt_is_connected(mqtt *m) { return m->up; }

int mqtt_publish(mqtt *m, const char *topic, const void *payload, int len, int qos,
                 bool retain, const mosquitto_property *props, int *mid)
{
    if (!m->up)
        return -1;
    int rc = mosquitto_publish_v5(m->mosq, mid, topic, len, payload, qos, retain,
                                  m->cfg->mqtt.v5 ? props : NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        if (rc != MOSQ_ERR_OVERSIZE_PACKET)
            m->lost = rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO;
        log_debug("mqtt: publish %s: %s", topic, mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

int mqtt_subscribe(mqtt *m, const char *pattern, int qos)
{
    if (!m->up)
        return -1;
    return mosquitto_subscribe(m->mosq, NULL, pattern, qos) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

void mqtt_shutdown(mqtt *m, int timeout_ms)
{
    if (!m->mosq)
        return;
    int64_t end = mono_ms() + timeout_ms;
    while (m->up && mosquitto_want_write(m->mosq) && mono_ms() < end) {
        struct pollfd p = { mosquitto_socket(m->mosq), POLLOUT, 0 };
        if (poll(&p, 1, 100) > 0 && fatal(mosquitto_loop_write(m->mosq, 64)))
            break;
    }
    if (m->up)
        mosquitto_disconnect(m->mosq);
    mosquitto_loop_write(m->mosq, 1);
    mosquitto_destroy(m->mosq);
    m->mosq = NULL;
    m->up = false;
}

void mqtt_stats_get(mqtt *m, mqtt_stats *out) { *out = m->st; }
