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
    if (!store_waits_in_fibers(t->app->store) || fiber_self()) {
        t->fn(t->data);
        return;
    }
    t->running = TRUE;
    fiber_run(task_body, t, task_done);
}

gboolean
sig_task_tick(gpointer data)
{
    sig_task_run(data);
    return G_SOURCE_CONTINUE;
}
