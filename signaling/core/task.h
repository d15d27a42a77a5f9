/* task.h - loop work that talks to the database, run so that a slow reply
 * does not stop the loop.
 *
 * On PostgreSQL (store_waits_in_fibers) a task runs in a fiber: while it
 * waits for the database, HTTP, SSE heartbeats and media control go on.
 * On SQLite it runs at once, on the loop's stack, as before.  A task runs
 * once at a time: asked again while it runs, it runs once more after. */
#pragma once

#include "core/app.h"

typedef struct {
    SigApp *app;
    void (*fn)(gpointer data);
    gpointer data;
    gboolean running, again;
} SigTask;

#define SIG_TASK_INIT(app_, fn_, data_) ((SigTask){.app = (app_), .fn = (fn_), .data = (data_)})

void sig_task_run(SigTask *t);
/* Whether work for APP may start a fiber now: on PostgreSQL, from the
 * loop's stack, while the loop runs.  Once it has ended (shutting down:
 * subsystems are being freed) work runs at once, so that no fiber
 * outlives what it uses. */
gboolean sig_task_fibers(SigApp *app);
/* For a GSource: runs the SigTask DATA and keeps the source. */
gboolean sig_task_tick(gpointer data);
