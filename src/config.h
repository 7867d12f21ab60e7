/* config.h - the configuration model (SPEC §3) and its libconfig loader.
 *
 * config_load() reads and validates the whole file, resolves every default
 * (device values inherited by tags, broker list, client id, topic prefix),
 * and returns a read-only model shared by all threads. Validation errors are
 * collected, one per line, as "FILE:LINE: what is wrong (what was expected)". */
#ifndef MBGATE_CONFIG_H
#define MBGATE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "codec.h"

#define CFG_NAME_MAX 64   /* device/tag/gateway names, [A-Za-z0-9_-]+ */
#define CFG_TEXT_MAX 256  /* hosts, topics, ids */
#define CFG_PATH_MAX 1024

typedef enum { TABLE_COIL, TABLE_DISCRETE, TABLE_INPUT, TABLE_HOLDING } cfg_table;
typedef enum { SIM_DRIFT, SIM_TOGGLE, SIM_COUNTER, SIM_FIXED } cfg_sim;
typedef enum { TRANSPORT_TCP, TRANSPORT_RTU } cfg_transport;
typedef enum { LOG_ERROR_L, LOG_WARNING_L, LOG_INFO_L, LOG_DEBUG_L } cfg_log_level;

typedef struct {
    char name[CFG_NAME_MAX];
    cfg_table table;
    unsigned address;     /* 0-based protocol address */
    int bit;              /* -1, or 0..15 for a bit inside a holding/input register */
    codec_type type;
    codec_order order;    /* the tag's byte_order, else the device's */
    unsigned length;      /* string length in bytes (strings only) */
    unsigned count;       /* registers (or coils/inputs) the tag spans */
    double scale, offset; /* 1, 0 by default */
    bool has_min, has_max;
    double min, max;
    bool has_deadband;    /* absent: publish every poll */
    double deadband;
    unsigned heartbeat_s; /* 0: none */
    unsigned poll_ms;     /* the tag's poll_ms, else the device's */
    bool writable;
    bool verify;          /* default true */
    char unit[CFG_NAME_MAX];
    cfg_sim sim;          /* default: toggle for bool, fixed for string, else drift */
    bool has_sim_value;
    double sim_value;             /* numeric/bool initial value for the simulator */
    char *sim_text;       /* string initial value (only the simulator reads it), or NULL */
    int line;
} cfg_tag;

typedef struct {
    char name[CFG_NAME_MAX];
    cfg_transport transport;
    char host[CFG_TEXT_MAX];
    unsigned port;               /* 502 */
    char serial[CFG_PATH_MAX];
    unsigned baud;               /* 19200 */
    char parity;                 /* 'N', 'E', 'O' (config: "none"|"even"|"odd") */
    unsigned data_bits;          /* 8 */
    unsigned stop_bits;          /* 1 */
    bool rs485;
    unsigned frame_gap_us;       /* frame_gap_ms given, else 3.5 character times */
    unsigned unit_id;            /* 1 */
    unsigned poll_ms;            /* 1000 */
    unsigned timeout_ms;         /* 1000 */
    unsigned retries;            /* 1 */
    codec_order order;           /* byte_order, ABCD */
    unsigned max_read_registers; /* 125 */
    unsigned max_read_bits;      /* 2000 */
    unsigned max_gap;            /* 16 */
    bool write_multiple;
    cfg_tag *tags;
    size_t ntags;
    int line;
} cfg_device;

typedef struct {
    char host[CFG_TEXT_MAX];
    unsigned port;
} cfg_broker;

typedef struct {
    char path[CFG_PATH_MAX];
    struct {
        char id[CFG_NAME_MAX];
        char state_dir[CFG_PATH_MAX]; /* /var/lib/mbgate */
        cfg_log_level log_level;      /* info */
    } gateway;
    struct {
        cfg_broker *brokers;          /* host/port, or the brokers list */
        size_t nbrokers;
        char client_id[CFG_TEXT_MAX]; /* "mbgate-" + gateway.id */
        char username[CFG_TEXT_MAX];
        char password_file[CFG_PATH_MAX];
        bool v5;                      /* protocol "5" (else "3.1.1") */
        unsigned keepalive;           /* 30 */
        int qos;                      /* 1 */
        bool retain;                  /* false */
        char topic_prefix[CFG_TEXT_MAX]; /* "mbgate/" + gateway.id */
        bool sparkplug;               /* format "sparkplug" (else "json") */
        bool layout_device;           /* layout "device" (else "tag") */
        unsigned max_inflight;        /* 100: messages awaiting the broker's ack */
        struct {
            bool enabled;             /* a tls section is present */
            char ca_file[CFG_PATH_MAX];
            char ca_path[CFG_PATH_MAX]; /* default: the system store */
            char cert_file[CFG_PATH_MAX];
            char key_file[CFG_PATH_MAX];
            bool verify_hostname;     /* true */
            bool insecure;            /* true: no certificate check at all (logged loudly) */
        } tls;
        struct {
            char group_id[CFG_TEXT_MAX];
            char edge_node_id[CFG_TEXT_MAX]; /* gateway.id */
            char primary_host_id[CFG_TEXT_MAX];
        } sparkplug_cfg;
    } mqtt;
    struct {
        unsigned max_mb;     /* 256 */
        unsigned max_age_s;  /* 0 */
        bool sync_full;      /* sync "full" (else "normal") */
        unsigned replay_rate;/* 0 */
    } buffer;
    struct {
        bool enabled;        /* true */
        unsigned max_age_s;  /* 30 */
        bool accept_retained;/* false */
        unsigned max_rate;   /* 10 */
    } setpoints;
    struct {
        char socket[CFG_PATH_MAX]; /* /run/mbgate/mbgate.sock */
    } control;
    struct {
        unsigned publish_interval_s; /* 30 */
    } status;
    cfg_device *devices;
    size_t ndevices;
} config;

/* Load and validate path. On failure returns NULL and writes every error,
 * one "FILE:LINE: message" per line, into err. */
config *config_load(const char *path, char *err, size_t errlen);
void config_free(config *cfg);

/* Lookups by name; NULL when absent. */
const cfg_device *config_device(const config *cfg, const char *name);
const cfg_tag *config_tag(const cfg_device *dev, const char *name);

const char *config_table_name(cfg_table t);      /* "holding" */
int config_table_parse(const char *name, cfg_table *out);
bool config_table_is_bits(cfg_table t);           /* coil, discrete */
bool config_table_is_writable(cfg_table t);       /* coil, holding */

/* Modicon-style reference of a table address: holding 100 -> "40101",
 * coil 0 -> "00001", discrete 5 -> "10006", input 10 -> "30011"; six
 * digits past 9999 (holding 65535 -> "465536"). */
void config_modicon(cfg_table t, unsigned address, char *buf, size_t n);

/* Link key: devices with equal keys share one link ("tcp:host:port",
 * "rtu:/dev/ttyUSB0"). */
void config_link_key(const cfg_device *dev, char *buf, size_t n);

#endif
