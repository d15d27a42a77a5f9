/* tmpdir.h - the unit tests' temporary directories. */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>

/* Removes DIR (flat: files only, as the tests make them) and frees it. */
static inline void
tmpdir_remove(char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *n;
    while (d && (n = g_dir_read_name(d))) {
        g_autofree char *p = g_build_filename(dir, n, NULL);
        g_unlink(p);
    }
    g_rmdir(dir);
    g_free(dir);
}
