/* task.c - see task.h. */
#include "core/task.h"

#include "fiber.h"

static void
task_body(gpointer data)
{
    SigTask *t = data;
    t->fn(t->data);
}

static void
task_done(gpointer data)
{
    SigTask *t = data;
    t->running = FALSE;
    if (t->again) {
        t->again = FALSE;
        sig_task_run(t);
    }
}

void
sig_task_run(SigTask *t)
{
    if (t->running) {
        t->again = TRUE;
        return;
    }
    if (!sig_task_fibers(t->app)) {
        t->fn(t->data);
        return;
    }
    t->running = TRUE;
    fiber_run(task_body, t, task_done);
}

gboolean
sig_task_fibers(SigApp *app)
{
    return store_waits_in_fibers(app->store) && !app->stopped && !fiber_self();
}

gboolean
sig_task_tick(gpointer data)
{
    sig_task_run(data);
    return G_SOURCE_CONTINUE;
}
