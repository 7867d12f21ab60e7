/* mqtt.c - the broker connection (libmosquitto), non-blocking.
 *
 * Every connection attempt gets a fresh libmosquitto session: configured
 * (protocol, credentials, Last Will, TLS), connected with
 * mosquitto_connect_bind_async and then driven by the agent's poll loop
 * through mosquitto_loop_read/write/misc. A failure anywhere (TCP, TLS,
 * CONNACK refusal, keepalive) destroys the session; the next attempt goes to
 * the next broker of mqtt.brokers, at once when there is one left in the
 * list, after the backoff when the list starts over.
 *
 * Delivery reports: libmosquitto calls on_publish when a QoS 0 message has
 * been written to the socket, on PUBACK for QoS 1 and on PUBCOMP for QoS 2;
 * each is passed on as cb.acked(mid), which is what the outbox deletes on. */
#include "mqtt.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mqtt_protocol.h>

#include "log.h"
#include "sample.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 10000
/* OpenSSL's hashed certificate directory on Debian (what the system store is) */
#define SYSTEM_CA_DIR "/etc/ssl/certs"

struct mqtt {
    const config *cfg;
    mqtt_callbacks cb;
    void *ctx;
    struct mosquitto *mosq;  /* the current session; NULL between attempts */
    char password[256];
    bool have_password;
    bool up;                 /* CONNACK accepted */
    bool lost;               /* the session failed; drop it at the end of mqtt_io */
    bool err_set;            /* this session's failure has been reported ... */
    char why[sizeof ((mqtt_stats *)0)->last_error]; /* ... and this is it */
    bool closing;            /* mqtt_shutdown: our own DISCONNECT */
    bool in_publish;         /* inside mosquitto_publish (see on_publish) */
    size_t broker;           /* index in cfg->mqtt.brokers */
    int64_t retry_at;        /* mono ms */
    int64_t attempt_at;      /* mono ms the current attempt started */
    unsigned backoff_ms;
    char (*logged)[sizeof ((mqtt_stats *)0)->last_error]; /* per broker: last line logged */
    char lib_error[160];     /* first error libmosquitto (OpenSSL) logged in this session */
    int *acks;               /* delivery reports held back until mqtt_io */
    size_t nacks, capacks;
    int lowat;               /* SO_RCVLOWAT of this session's socket (1: default) */
    int64_t last_read;       /* mono ms of the last loop_read */
    mqtt_stats st;
};

static void strip_period(char *s)
{
    size_t n = strlen(s);
    if (n && s[n - 1] == '.')
        s[n - 1] = 0;
}

/* Show a broker problem in status last_error and, if log, as one log line
 * per new condition and broker (not one per attempt of a retry loop). */
static void note_error(mqtt *m, const char *text, bool log)
{
    char msg[sizeof m->st.last_error];
    snprintf(msg, sizeof msg, "%s", text);
    strip_period(msg);
    char *seen = m->logged[m->broker];
    if (log && strcmp(seen, msg) != 0) {
        log_warn("mqtt: %s: %s", m->st.broker, msg);
        snprintf(seen, sizeof *m->logged, "%s", msg);
    }
    /* with a broker list the address says which broker this was about */
    if (m->cfg->mqtt.nbrokers > 1)
        snprintf(m->st.last_error, sizeof m->st.last_error, "%s: %s", m->st.broker, msg);
    else
        snprintf(m->st.last_error, sizeof m->st.last_error, "%s", msg);
    m->st.last_error_ts = now_ms();
}

/* Say why the session failed (it is dropped at the end of mqtt_io). The
 * end of an established connection is logged by drop_session, in one line
 * with this reason. */
static void set_error(mqtt *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(mqtt *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->why, sizeof m->why, fmt, ap);
    va_end(ap);
    strip_period(m->why);
    note_error(m, m->why, !m->up);
    m->err_set = true;
}

/* ---- TLS failure reasons ---------------------------------------------------
 *
 * When the handshake fails libmosquitto drains OpenSSL's error queue into its
 * log callback ("OpenSSL Error[0]: error:0A000086:SSL routines::certificate
 * verify failed") and returns only MOSQ_ERR_TLS, so the reason is taken from
 * there. "certificate verify failed" does not say what was wrong with the
 * certificate; OpenSSL keeps that in the SSL object (SSL_get_verify_result),
 * which is still alive while libmosquitto logs. The two functions are looked
 * up in the libssl that libmosquitto itself loaded: mbgate needs no OpenSSL
 * link dependency of its own and cannot ask a different copy. Without them
 * the reason stays OpenSSL's generic one. */

typedef long (*verify_result_fn)(const void *ssl);
typedef const char *(*verify_string_fn)(long n);

static void tls_verify_detail(struct mosquitto *mosq, char *buf, size_t n)
{
    static bool looked_up;
    static verify_result_fn get_result;
    static verify_string_fn get_string;
    if (!looked_up) {
        looked_up = true;
        get_result = (verify_result_fn)dlsym(RTLD_DEFAULT, "SSL_get_verify_result");
        get_string = (verify_string_fn)dlsym(RTLD_DEFAULT, "X509_verify_cert_error_string");
    }
    void *ssl = mosquitto_ssl_get(mosq);
    long v = ssl && get_result && get_string ? get_result(ssl) : 0;
    snprintf(buf, n, "%s", v ? get_string(v) : ""); /* 0: X509_V_OK */
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *str)
{
    mqtt *m = obj;
    if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
        log_debug("mqtt: libmosquitto: %s", str);
    if (level != MOSQ_LOG_ERR || *m->lib_error)
        return;
    const char *reason = str;
    if (strncmp(str, "OpenSSL Error", 13) == 0) {
        /* "OpenSSL Error[0]: error:CODE:LIBRARY:FUNCTION:REASON" -> REASON */
        const char *p = strstr(str, "error:");
        for (int colons = 0; p && *p; p++)
            if (*p == ':' && ++colons == 4) {
                reason = p + 1;
                break;
            }
    } else if (strncmp(str, "Error: ", 7) == 0) {
        reason = str + 7;
    }
    const typeof(m->cfg->mqtt.tls) *t = &m->cfg->mqtt.tls;
    char detail[120] = "";
    if (strstr(reason, "certificate verify failed"))
        tls_verify_detail(mosq, detail, sizeof detail);
    else if (strstr(reason, "host name verification failed"))
        snprintf(detail, sizeof detail, "the broker's certificate is not valid for \"%s\"",
                 m->cfg->mqtt.brokers[m->broker].host);
    else if ((strstr(reason, "certificate required") || strstr(reason, "alert handshake failure")) &&
             !*t->cert_file)
        snprintf(detail, sizeof detail, "the broker wants a client certificate: "
                 "set tls.cert_file and tls.key_file");
    char text[sizeof m->lib_error];
    snprintf(text, sizeof text, "%s", reason);
    strip_period(text);
    snprintf(m->lib_error, sizeof m->lib_error, *detail ? "%s (%s)" : "%s%s", text, detail);
}

/* ---- callbacks (run inside libmosquitto calls on the agent's thread) ---- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    (void)mosq;
    (void)flags;
    mqtt *m = obj;
    if (rc != 0) {
        /* CONNACK refused: bad credentials, not authorised, server unavailable */
        if (m->cfg->mqtt.v5) {
            char *why = NULL;
            mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &why, false);
            set_error(m, "broker refused the connection: %s (reason code 0x%02x)%s%s",
                      mosquitto_reason_string(rc), rc, why ? ": " : "", why ? why : "");
            free(why);
        } else {
            char text[120];
            const char *s = mosquitto_connack_string(rc);
            if (strncmp(s, "Connection Refused: ", 20) == 0)
                s += 20;
            snprintf(text, sizeof text, "%s", s);
            strip_period(text);
            set_error(m, "broker refused the connection: %s (CONNACK code %d)", text, rc);
        }
        m->lost = true;
        return;
    }
    m->up = true;
    m->backoff_ms = 0;
    m->lib_error[0] = 0;
    for (size_t i = 0; i < m->cfg->mqtt.nbrokers; i++)
        m->logged[i][0] = 0; /* the next outage is news again */
    m->st.connected = true;
    m->st.since = now_ms();
    log_info("mqtt: connected to %s%s (MQTT %s)", m->st.broker,
             m->cfg->mqtt.tls.enabled ? " over TLS" : "", m->cfg->mqtt.v5 ? "5" : "3.1.1");
    if (m->cfg->mqtt.tls.enabled && m->cfg->mqtt.tls.insecure)
        log_warn("mqtt: TLS certificate verification is OFF (tls.insecure = true)");
    if (m->cb.connected)
        m->cb.connected(m->ctx);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
    (void)mosq;
    mqtt *m = obj;
    if (m->closing)
        return;
    m->lost = true;
    /* MQTT 5: the broker said why it closed the session (DISCONNECT reason
     * codes are 0 or >= 0x80; libmosquitto's own error codes are below) */
    if (m->cfg->mqtt.v5 && m->up && (rc == 0 || rc >= 0x80)) {
        char *why = NULL;
        mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &why, false);
        set_error(m, "broker closed the connection: %s (reason code 0x%02x)%s%s",
                  mosquitto_reason_string(rc), rc, why ? ": " : "", why ? why : "");
        free(why);
    }
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    (void)mosq;
    mqtt *m = obj;
    if (rc >= 0x80) { /* MQTT 5: below 0x80 are successes (0x10 no matching subscribers) */
        /* Not acknowledged: the message stays in the outbox, resent in the
         * next session. Shown once per reason and session. */
        char *why = NULL, msg[sizeof m->st.last_error];
        mosquitto_property_read_string(props, MQTT_PROP_REASON_STRING, &why, false);
        snprintf(msg, sizeof msg, "broker refused a message: %s (reason code 0x%02x)%s%s; "
                 "it stays in the outbox", mosquitto_reason_string(rc), rc, why ? ": " : "",
                 why ? why : "");
        free(why);
        note_error(m, msg, true);
        log_debug("mqtt: message %d refused (reason code 0x%02x)", mid, rc);
        if (m->cb.refused)
            m->cb.refused(m->ctx, mid);
        return;
    }
    /* Outside the loop's callbacks mosquitto_publish writes at once, so a
     * QoS 0 message can be reported written before mqtt_publish has
     * returned its mid to the caller: hold such reports until mqtt_io. */
    if (m->in_publish) {
        if (m->nacks == m->capacks) {
            size_t cap = m->capacks ? m->capacks * 2 : 64;
            int *a = realloc(m->acks, cap * sizeof *a);
            if (!a)
                return; /* the sample stays in the outbox: sent twice rather than lost */
            m->acks = a;
            m->capacks = cap;
        }
        m->acks[m->nacks++] = mid;
        return;
    }
    if (m->cb.acked)
        m->cb.acked(m->ctx, mid);
}

static void flush_acks(mqtt *m)
{
    /* acked() may not publish, but take the list first to stay safe if it does */
    for (size_t i = 0; i < m->nacks; i++)
        if (m->cb.acked)
            m->cb.acked(m->ctx, m->acks[i]);
    m->nacks = 0;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)mosq;
    mqtt *m = obj;
    /* MQTT 5 Message Expiry: the broker never hands out an expired message
     * (and sends the remaining interval in props); nothing to do here. */
    if (m->cb.message)
        m->cb.message(m->ctx, msg, props);
}

/* ---- life cycle ----------------------------------------------------------- */

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
    if (!m || !(m->logged = calloc(cfg->mqtt.nbrokers, sizeof *m->logged))) {
        free(m);
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
    if (m->have_password && !*cfg->mqtt.username)
        log_warn("mqtt: a password is configured but no mqtt.username; it is not sent");
    if (cfg->mqtt.tls.enabled && cfg->mqtt.tls.insecure)
        log_warn("mqtt: TLS certificate verification is OFF (tls.insecure = true)");
    else if (cfg->mqtt.tls.enabled && !cfg->mqtt.tls.verify_hostname)
        log_warn("mqtt: TLS host name verification is off (tls.verify_hostname = false)");
    m->retry_at = 0;
    return m;
}

static void drop_session(mqtt *m)
{
    bool was_up = m->up;
    /* QoS 0 messages reported written before the session ended are delivered */
    flush_acks(m);
    if (m->mosq) {
        mosquitto_destroy(m->mosq);
        m->mosq = NULL;
    }
    m->up = false;
    m->lost = false;
    m->lowat = 1; /* no socket: no batching, the retry timer decides */
    if (was_up) {
        bool plain = strcmp(m->why, "connection lost") == 0;
        log_warn("mqtt: connection to %s lost%s%s", m->st.broker, plain ? "" : ": ",
                 plain ? "" : m->why);
        m->st.connected = false;
        m->st.since = now_ms();
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
    free(m->acks);
    free(m->logged);
    free(m);
}

static int configure_tls(mqtt *m, struct mosquitto *mosq)
{
    const typeof(m->cfg->mqtt.tls) *t = &m->cfg->mqtt.tls;
    const char *ca_file = *t->ca_file ? t->ca_file : NULL;
    const char *ca_path = *t->ca_path ? t->ca_path : NULL;
    const char *cert = *t->cert_file ? t->cert_file : NULL;
    const char *key = *t->key_file ? t->key_file : NULL;
    int rc;
    if (!t->enabled)
        return 0;
    if (!ca_file && !ca_path) {
        /* the system store; libmosquitto 2.0's tls_set insists on a CA file
         * or directory, which is only needed for a client certificate */
        mosquitto_int_option(mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
        if (cert)
            ca_path = SYSTEM_CA_DIR;
    }
    const struct { const char *key, *path; } files[] = {
        { "tls.ca_file", ca_file }, { "tls.cert_file", cert }, { "tls.key_file", key }
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (files[i].path && access(files[i].path, R_OK) != 0) {
            set_error(m, "TLS setup failed: cannot read %s %s: %s", files[i].key, files[i].path,
                      strerror(errno));
            return -1;
        }
    if (ca_file || ca_path) {
        rc = mosquitto_tls_set(mosq, ca_file, ca_path, cert, key, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            set_error(m, "TLS setup failed: %s", mosquitto_strerror(rc));
            return -1;
        }
    }
    if (t->insecure) {
        /* no certificate check at all (SSL_VERIFY_NONE), name included */
        mosquitto_tls_opts_set(mosq, 0, NULL, NULL);
        mosquitto_tls_insecure_set(mosq, true);
    } else if (!t->verify_hostname) {
        /* the chain is still verified; only the host name check is skipped */
        mosquitto_tls_insecure_set(mosq, true);
    }
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
    mosquitto_log_callback_set(mosq, on_log);
    int rc;
    if (*c->mqtt.username &&
        (rc = mosquitto_username_pw_set(mosq, c->mqtt.username, m->have_password ? m->password : NULL))) {
        set_error(m, "cannot use mqtt.username: %s", mosquitto_strerror(rc));
        return -1;
    }
    const char *wt = NULL;
    const void *wp = NULL;
    int wl = 0;
    bool wr = false;
    if (m->cb.will)
        m->cb.will(m->ctx, &wt, &wp, &wl, &wr);
    if (wt && (rc = mosquitto_will_set(mosq, wt, wl, wp, 1, wr))) {
        set_error(m, "cannot set the Last Will: %s", mosquitto_strerror(rc));
        return -1;
    }
    return configure_tls(m, mosq);
}

/* Say why the session failed (rc from libmosquitto, e the errno after it). */
static void report(mqtt *m, int rc, int e)
{
    if (*m->lib_error && m->cfg->mqtt.tls.enabled) {
        /* OpenSSL's reason, whatever libmosquitto made of it (TLS, PROTOCOL,
         * CONN_LOST: a TLS 1.3 broker rejects a client certificate after the
         * client has finished its side of the handshake) */
        set_error(m, "%s: %s", m->up ? "TLS error" : "TLS handshake failed", m->lib_error);
        return;
    }
    if (m->cfg->mqtt.tls.enabled && rc == MOSQ_ERR_ERRNO && e == EPROTO) {
        /* libmosquitto's errno for a TLS failure OpenSSL gave no reason for */
        set_error(m, "%s: %s", m->up ? "TLS error" : "TLS handshake failed", strerror(e));
        return;
    }
    const char *pre = m->mosq && mosquitto_socket(m->mosq) >= 0 ? "" : "cannot connect: ";
    switch (rc) {
    case MOSQ_ERR_TLS:
        set_error(m, "%s: unknown reason", m->up ? "TLS error" : "TLS handshake failed");
        break;
    case MOSQ_ERR_EAI:
        set_error(m, "cannot resolve host name %s", m->cfg->mqtt.brokers[m->broker].host);
        break;
    case MOSQ_ERR_ERRNO:
        set_error(m, "%s%s", m->up ? "" : pre, strerror(e));
        break;
    case MOSQ_ERR_CONN_LOST:
        set_error(m, "%s", m->up ? "connection lost" : "the broker closed the connection before CONNACK");
        break;
    case MOSQ_ERR_KEEPALIVE:
        set_error(m, "no answer from the broker within the keepalive (%u s)", m->cfg->mqtt.keepalive);
        break;
    default:
        set_error(m, "%s%s", m->up ? "" : pre, mosquitto_strerror(rc));
    }
}

static void attempt(mqtt *m, int64_t now)
{
    const cfg_broker *b = &m->cfg->mqtt.brokers[m->broker];
    snprintf(m->st.broker, sizeof m->st.broker, "%s:%u", b->host, b->port);
    m->attempt_at = now;
    m->lowat = 1;
    m->err_set = false;
    m->lib_error[0] = 0;
    /* clean session: MQTT 3.1.1 clean session, MQTT 5 clean start with no
     * Session Expiry Interval, i.e. session expiry 0. The broker keeps
     * nothing for us between connections and that is deliberate: every
     * attempt is a fresh session, what was unacknowledged is the outbox's
     * to resend, and setpoints sent while we were away are not queued for
     * later (SPEC §5). */
    m->mosq = mosquitto_new(m->cfg->mqtt.client_id, true, m);
    if (!m->mosq) {
        set_error(m, "cannot create client: %s", strerror(errno));
        goto fail;
    }
    if (configure(m, m->mosq) < 0)
        goto fail;
    /* Non-blocking TCP connect (and TLS handshake), completed by mqtt_io.
     * Resolving the host name is not: libmosquitto calls getaddrinfo here,
     * which blocks the loop for as long as DNS takes (an IP address or
     * /etc/hosts entry costs nothing). */
    int rc = mosquitto_connect_bind_async(m->mosq, b->host, (int)b->port, (int)m->cfg->mqtt.keepalive, NULL);
    int e = errno;
    if (rc != MOSQ_ERR_SUCCESS) {
        report(m, rc, e);
        goto fail;
    }
    return;
fail:
    m->lost = true;
}

/* Schedule the next attempt, on the next broker of the list. */
static void backoff(mqtt *m, int64_t now)
{
    if (!m->err_set)
        set_error(m, "%s", m->up ? "connection lost" : "connection failed");
    drop_session(m);
    m->st.reconnects++;
    m->broker = (m->broker + 1) % m->cfg->mqtt.nbrokers;
    m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (m->backoff_ms > BACKOFF_MAX_MS)
        m->backoff_ms = BACKOFF_MAX_MS;
    /* with several brokers, try the next one at once; wait before starting over */
    unsigned wait = m->cfg->mqtt.nbrokers > 1 && m->broker != 0 ? 0 : m->backoff_ms;
    m->retry_at = now + wait;
}

int mqtt_fd(mqtt *m) { return m->mosq ? mosquitto_socket(m->mosq) : -1; }

bool mqtt_want_write(mqtt *m) { return m->mosq && mosquitto_want_write(m->mosq); }

void mqtt_io(mqtt *m, short revents)
{
    int64_t now = mono_ms();
    flush_acks(m);
    if (!m->mosq) {
        if (now >= m->retry_at)
            attempt(m, now);
        if (m->lost)
            backoff(m, now);
        return;
    }
    int rc = MOSQ_ERR_SUCCESS, e = 0;
    /* with a raised SO_RCVLOWAT a few waiting bytes do not wake poll: read
     * them anyway when they may have waited MQTT_ACK_BATCH_MAX_MS */
    bool stale = m->lowat > 1 && now - m->last_read >= MQTT_ACK_BATCH_MAX_MS;
    if ((revents & (POLLIN | POLLERR | POLLHUP)) || stale) {
        m->last_read = now;
        rc = mosquitto_loop_read(m->mosq, 64);
        e = errno;
    }
    if (rc == MOSQ_ERR_SUCCESS && !m->lost && (revents & POLLOUT)) {
        rc = mosquitto_loop_write(m->mosq, 64);
        e = errno;
    }
    if (rc == MOSQ_ERR_SUCCESS && !m->lost) {
        rc = mosquitto_loop_misc(m->mosq);
        e = errno;
    }
    if (!m->up && !m->lost && now - m->attempt_at > (int64_t)m->cfg->mqtt.keepalive * 1000) {
        set_error(m, "no answer to CONNECT within %u s", m->cfg->mqtt.keepalive);
        m->lost = true;
    }
    if (rc != MOSQ_ERR_SUCCESS && !m->err_set)
        report(m, rc, e);
    if (rc != MOSQ_ERR_SUCCESS)
        m->lost = true;
    if (m->lost)
        backoff(m, now);
}

void mqtt_ack_batch(mqtt *m, unsigned n)
{
    int fd = mqtt_fd(m), want = n > 1 ? (int)n * 4 : 1;
    if (fd < 0 || !m->up || want == m->lowat)
        return;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &want, sizeof want) == 0)
        m->lowat = want;
}

int mqtt_timeout(mqtt *m)
{
    if (m->nacks)
        return 0;
    if (m->lowat > 1)
        return MQTT_ACK_BATCH_MAX_MS;
    if (!m->mosq) {
        int64_t d = m->retry_at - mono_ms();
        return d < 0 ? 0 : d > 1000 ? 1000 : (int)d;
    }
    return 1000; /* keepalive is handled in mqtt_io at least once a second */
}

bool mqtt_is_connected(mqtt *m) { return m->up && !m->lost; }

int mqtt_publish(mqtt *m, const char *topic, const void *payload, int len, int qos,
                 bool retain, const mosquitto_property *props, int *mid)
{
    if (!m->up || m->lost)
        return -1;
    m->in_publish = true;
    int rc = mosquitto_publish_v5(m->mosq, mid, topic, len, payload, qos, retain,
                                  m->cfg->mqtt.v5 ? props : NULL);
    int e = errno;
    m->in_publish = false;
    if (rc != MOSQ_ERR_SUCCESS) {
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO ||
            rc == MOSQ_ERR_TLS) {
            report(m, rc, e);
            m->lost = true;
        }
        log_debug("mqtt: publish %s: %s", topic, mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

int mqtt_subscribe(mqtt *m, const char *pattern, int qos)
{
    if (!m->up || m->lost)
        return -1;
    /* MQTT 5: keep the retain flag on live delivery, so that a retained
     * setpoint published while we are subscribed is still refused; 3.1.1
     * brokers clear it, which README documents */
    int opts = m->cfg->mqtt.v5 ? MQTT_SUB_OPT_RETAIN_AS_PUBLISHED : 0;
    return mosquitto_subscribe_v5(m->mosq, NULL, pattern, qos, opts, NULL) == MOSQ_ERR_SUCCESS ? 0 : -1;
}

void mqtt_shutdown(mqtt *m, int timeout_ms)
{
    flush_acks(m);
    if (!m->mosq)
        return;
    int64_t end = mono_ms() + timeout_ms;
    while (m->up && mosquitto_want_write(m->mosq) && mono_ms() < end) {
        struct pollfd p = { mosquitto_socket(m->mosq), POLLOUT, 0 };
        if (poll(&p, 1, 100) > 0 && mosquitto_loop_write(m->mosq, 64) != MOSQ_ERR_SUCCESS)
            break;
    }
    m->closing = true;
    if (m->up)
        mosquitto_disconnect(m->mosq);
    mosquitto_loop_write(m->mosq, 1);
    flush_acks(m);
    mosquitto_destroy(m->mosq);
    m->mosq = NULL;
    m->up = false;
    m->closing = false;
}

void mqtt_stats_get(mqtt *m, mqtt_stats *out) { *out = m->st; }
