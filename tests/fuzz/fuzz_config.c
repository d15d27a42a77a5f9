/* Fuzz target: configuration files ([consultd] key file) through the same
 * loader as start-up (sig_config_load with --config).  A bad file must be
 * an error, never a crash; a good one must give values inside their
 * bounds. */
#include <glib/gstdio.h>
#include <stdint.h>
#include <unistd.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char *path;
    if (!path) {
        int fd = g_file_open_tmp("consultd-fuzz-XXXXXX.conf", &path, NULL);
        g_assert(fd >= 0);
        close(fd);
    }
    g_assert(g_file_set_contents(path, (const char *)data, (gssize)size, NULL));
    char *argv_[] = {"fuzz", "--config", path, NULL};
    char **argv = argv_;
    int argc = 3;
    GError *err = NULL;
    SigConfig *cfg = sig_config_load(&argc, &argv, &err);
    g_assert((cfg == NULL) != (err == NULL));
    if (cfg) {
        g_assert(cfg->media_workers >= 0 && cfg->media_workers <= 64);
        g_assert(cfg->data_dir && *cfg->data_dir);
        sig_config_free(cfg);
    }
    g_clear_error(&err);
    return 0;
}
