/* fuzz_config.c - libFuzzer target: config_load() on arbitrary file text.
 *
 * The input is written to a memfd and loaded through /proc/self/fd/N, so a
 * run touches no file system. Inputs with a libconfig "@include" directive
 * are skipped: they make libconfig open arbitrary paths (including FIFOs and
 * /dev/zero), which is the config author's privilege, not an input bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

static int mfd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    mfd = memfd_create("fuzz_config", 0);
    if (mfd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
    return 0;
}

/* What validation promises (SPEC §3): a model that loads is one the rest of
 * the agent can use without re-checking. */
static void check_model(const config *cfg)
{
    if (cfg->mqtt.nbrokers < 1 || cfg->mqtt.qos < 0 || cfg->mqtt.qos > 2)
        abort();
    for (size_t i = 0; i < cfg->ndevices; i++) {
        const cfg_device *d = &cfg->devices[i];
        if (!d->name[0] || config_device(cfg, d->name) != d)
            abort(); /* empty or duplicate device name */
        if (d->poll_ms == 0 || d->max_read_registers == 0 || d->max_read_bits == 0)
            abort();
        for (size_t j = 0; j < d->ntags; j++) {
            const cfg_tag *t = &d->tags[j];
            if (!t->name[0] || config_tag(d, t->name) != t)
                abort(); /* empty or duplicate tag name */
            if ((unsigned)t->type > CT_STRING || (unsigned)t->order > CO_DCBA ||
                (unsigned)t->table > TABLE_HOLDING)
                abort();
            if (t->bit < -1 || t->bit > 15)
                abort();
            if (t->type == CT_STRING && (t->length == 0 || t->length > CODEC_STR_MAX))
                abort();
            if (t->count == 0 || t->address > 65535 || t->address + t->count > 65536)
                abort();
            if (t->poll_ms == 0)
                abort();
            if (t->writable && !config_table_is_writable(t->table))
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[4096];
    if (size > 256 * 1024 || memmem(data, size, "include", 7))
        return -1;
    if (ftruncate(mfd, 0) < 0 || pwrite(mfd, data, size, 0) != (ssize_t)size)
        abort();
    config *cfg = config_load(path, err, sizeof err);
    if (cfg)
        check_model(cfg);
    if (!cfg && err[0] == '\0')
        abort(); /* a refusal must say why */
    config_free(cfg);
    return 0;
}
