/* readers.c - see readers.h.
 *
 * The pool is process-wide and lives as long as the process: GLib's
 * g_once makes its start idempotent from any thread, and a reader is
 * picked round-robin with an atomic counter.  These are the only statics
 * of media/, and they are what a thread pool shared by every room needs.
 */
#include "readers.h"

#include <stdlib.h>

static gpointer
reader_main(gpointer data)
{
    GMainContext *ctx = data;
    GMainLoop *loop = g_main_loop_new(ctx, FALSE);
    g_main_loop_run(loop); /* for the life of the process */
    return NULL;
}

static GMainContext **readers;
static guint n_readers;

void
media_readers_start(void)
{
    static gsize once;
    if (!g_once_init_enter(&once))
        return;
    const char *e = g_getenv("CONSULTD_READERS");
    n_readers = e ? (guint)CLAMP(atoi(e), 0, 64) : (guint)CLAMP(g_get_num_processors(), 1, 4);
    readers = g_new0(GMainContext *, MAX(n_readers, 1));
    for (guint i = 0; i < n_readers; i++) {
        readers[i] = g_main_context_new();
        g_autofree char *name = g_strdup_printf("rtp-read%u", i);
        g_thread_unref(g_thread_new(name, reader_main, readers[i]));
    }
    g_once_init_leave(&once, 1);
}

GMainContext *
media_reader_context(void)
{
    static gint next;
    media_readers_start();
    return n_readers ? readers[(guint)g_atomic_int_add(&next, 1) % n_readers] : NULL;
}
