/* main.c - the mbgate command line (SPEC §2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>

#include "agent.h"
#include "check.h"
#include "cli.h"
#include "config.h"
#include "log.h"
#include "sim.h"

#define DEFAULT_CONFIG "/etc/mbgate/mbgate.conf"

static const struct {
    const char *name, *usage, *help;
} commands[] = {
    { "run", "run [-c FILE]", "Run the agent in the foreground (under systemd: Type=notify)." },
    { "check", "check [-c FILE]", "Validate the config; print devices, tags and the read plan. Exit 0 valid, 1 invalid." },
    { "status", "status [--json] [--socket PATH]", "Show the running agent's state. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN." },
    { "read", "read DEVICE TAG", "Read one tag now, through the running agent." },
    { "write", "write DEVICE TAG VALUE", "Write one tag now, through the running agent, validated like an MQTT setpoint." },
    { "probe", "probe DEVICE TABLE ADDRESS [COUNT]", "Read raw registers through the agent and show every decoding side by side." },
    { "sim", "sim [-c FILE] [--listen HOST:PORT]", "Simulate a Modbus TCP PLC serving the config's tags." },
    { "help", "help [COMMAND]", "Show help for a command." },
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *f)
{
    fprintf(f, "usage: mbgate COMMAND [options]\n\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-40s %s\n", commands[i].usage, commands[i].help);
    fprintf(f, "\nOptions: -c FILE (or MBGATE_CONFIG; default %s), --version, --help\n", DEFAULT_CONFIG);
}

static int help(const char *cmd)
{
    for (size_t i = 0; cmd && i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, cmd) == 0) {
            printf("usage: mbgate %s\n\n%s\n", commands[i].usage, commands[i].help);
            return 0;
        }
    if (cmd) {
        fprintf(stderr, "mbgate: unknown command '%s'\n", cmd);
        usage(stderr);
        return 2;
    }
    usage(stdout);
    return 0;
}

typedef struct {
    const char *config;
    const char *socket;
    const char *listen;
    bool json;
    int argc;          /* positional arguments after the command */
    char **argv;
} options;

/* Options may come before or after the arguments; anything that is not a
 * known option is an argument, so a value like -5 stays a value. */
static int parse(int argc, char **argv, options *o)
{
    static char *positional[16];
    o->config = getenv("MBGATE_CONFIG") ? getenv("MBGATE_CONFIG") : DEFAULT_CONFIG;
    o->argc = 0;
    o->argv = positional;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        if (!strcmp(a, "-c") || !strcmp(a, "--config"))
            target = &o->config;
        else if (!strcmp(a, "-s") || !strcmp(a, "--socket"))
            target = &o->socket;
        else if (!strcmp(a, "-l") || !strcmp(a, "--listen"))
            target = &o->listen;
        else if (!strcmp(a, "-j") || !strcmp(a, "--json"))
            o->json = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return 1;
        else if (!strncmp(a, "--", 2) && a[2])
            return -1;
        else if (o->argc < (int)(sizeof positional / sizeof *positional))
            positional[o->argc++] = argv[i];
        else
            return -1;
        if (target) {
            if (++i >= argc)
                return -1;
            *target = argv[i];
        }
    }
    return 0;
}

static config *load(const char *path)
{
    char err[16384];
    config *cfg = config_load(path, err, sizeof err);
    if (!cfg)
        fprintf(stderr, "%s%s", err, err[strlen(err) - 1] == '\n' ? "" : "\n");
    return cfg;
}

/* The control socket: --socket, else the config's, else the default. */
static const char *socket_path(const options *o, char *buf, size_t n)
{
    if (o->socket)
        return o->socket;
    char err[16384];
    config *cfg = config_load(o->config, err, sizeof err);
    snprintf(buf, n, "%s", cfg ? cfg->control.socket : "/run/mbgate/mbgate.sock");
    config_free(cfg);
    return buf;
}

static int wrong_args(const char *cmd)
{
    fprintf(stderr, "mbgate: wrong arguments for '%s'\n", cmd);
    help(cmd);
    return 2;
}

static int dispatch(const char *cmd, options *o)
{
    char sock[1100];
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "check") == 0 || strcmp(cmd, "sim") == 0) {
        if (o->argc)
            return wrong_args(cmd);
        if (cmd[0] == 'r')
            return agent_run(o->config);
        config *cfg = load(o->config);
        if (!cfg)
            return 1;
        int rc = cmd[1] == 'h' ? (check_print(cfg, stdout, stderr), 0) : sim_run(cfg, o->listen);
        config_free(cfg);
        return rc;
    }
    if (strcmp(cmd, "status") == 0)
        return o->argc ? wrong_args(cmd) : cli_status(socket_path(o, sock, sizeof sock), o->json);
    if (strcmp(cmd, "read") == 0)
        return o->argc != 2 ? wrong_args(cmd) : cli_read(socket_path(o, sock, sizeof sock), o->argv[0], o->argv[1]);
    if (strcmp(cmd, "write") == 0)
        return o->argc != 3 ? wrong_args(cmd)
                            : cli_write(socket_path(o, sock, sizeof sock), o->argv[0], o->argv[1], o->argv[2]);
    if (strcmp(cmd, "probe") == 0) {
        char *end;
        unsigned long addr, count = 4;
        if (o->argc < 3 || o->argc > 4)
            return wrong_args(cmd);
        addr = strtoul(o->argv[2], &end, 0);
        if (*end || addr > 65535 || (o->argc == 4 && ((count = strtoul(o->argv[3], &end, 0)) == 0 || *end || count > 125))) {
            fprintf(stderr, "mbgate: probe: ADDRESS 0..65535 and COUNT 1..125 expected\n");
            return 2;
        }
        return cli_probe(socket_path(o, sock, sizeof sock), o->argv[0], o->argv[1], (unsigned)addr, (unsigned)count);
    }
    fprintf(stderr, "mbgate: unknown command '%s' (see mbgate --help)\n", cmd);
    return 2;
}

int main(int argc, char **argv)
{
    options o = { 0 };
    if (argc < 2)
        return usage(stderr), 2;
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("mbgate %s\n", MBGATE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return help(NULL);
    if (strcmp(cmd, "help") == 0)
        return help(argc > 2 ? argv[2] : NULL);
    int p = parse(argc - 1, argv + 1, &o);
    if (p > 0)
        return help(cmd);
    if (p < 0)
        return wrong_args(cmd);
    log_init(LOG_INFO);
    mosquitto_lib_init();
    int rc = dispatch(cmd, &o);
    mosquitto_lib_cleanup();
    return rc;
}
