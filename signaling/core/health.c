/* health.c - see health.h. */
#include "core/health.h"

typedef struct {
    const char *name;
    SigReadyFunc fn;
} ReadyCheck;

struct SigHealth {
    GArray *checks;  /* ReadyCheck */
    GArray *metrics; /* SigMetricsFunc */
};

SigHealth *
sig_health_new(SigApp *app)
{
    SigHealth *h = g_new0(SigHealth, 1);
    h->checks = g_array_new(FALSE, FALSE, sizeof(ReadyCheck));
    h->metrics = g_array_new(FALSE, FALSE, sizeof(SigMetricsFunc));
    app->health = h;
    return h;
}

void
sig_health_free(SigHealth *h)
{
    if (!h)
        return;
    g_array_unref(h->checks);
    g_array_unref(h->metrics);
    g_free(h);
}

void
sig_health_add_ready_check(SigApp *app, const char *name, SigReadyFunc fn)
{
    ReadyCheck c = {name, fn};
    g_array_append_val(app->health->checks, c);
}

void
sig_health_add_metrics(SigApp *app, SigMetricsFunc fn)
{
    g_array_append_val(app->health->metrics, fn);
}

gboolean
sig_health_check(SigApp *app, void (*fn)(const char *name, const char *why, gpointer data),
                 gpointer data)
{
    gboolean all = TRUE;
    for (guint i = 0; i < app->health->checks->len; i++) {
        const ReadyCheck *c = &g_array_index(app->health->checks, ReadyCheck, i);
        g_autofree char *why = NULL;
        gboolean ok = c->fn(app, &why);
        fn(c->name, ok ? NULL : why ? why : "not ready", data);
        all &= ok;
    }
    return all;
}

void
sig_health_metrics(SigApp *app, GString *out)
{
    for (guint i = 0; i < app->health->metrics->len; i++)
        g_array_index(app->health->metrics, SigMetricsFunc, i)(app, out);
}
