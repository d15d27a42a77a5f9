/* health.c - see health.h. */
#include "core/health.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    SigReadyFunc fn;
} ReadyCheck;

struct SigHealth {
    GArray *checks;           /* ReadyCheck */
    GArray *metrics;          /* SigMetricsFunc */
    gint64 cpu_ticks, cpu_at; /* at the last sig_health_cpu() */
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

/* utime + stime of process PID (0: this one), in clock ticks; 0 if gone. */
static gint64
proc_ticks(gint64 pid)
{
    g_autofree char *path =
        pid ? g_strdup_printf("/proc/%" G_GINT64_FORMAT "/stat", pid) : g_strdup("/proc/self/stat");
    g_autofree char *text = NULL;
    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    /* The command name may hold spaces and parentheses: fields count from
     * the last ')'.  utime and stime are fields 14 and 15. */
    const char *p = strrchr(text, ')');
    for (int field = 2; p && field < 14; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return 0;
    char *end;
    gint64 utime = g_ascii_strtoll(p + 1, &end, 10);
    gint64 stime = g_ascii_strtoll(end, NULL, 10);
    return utime + stime;
}

gint64
sig_health_cpu(SigApp *app, const gint64 *pids, guint n)
{
    SigHealth *h = app->health;
    gint64 ticks = proc_ticks(0);
    for (guint i = 0; i < n; i++)
        ticks += pids[i] > 0 ? proc_ticks(pids[i]) : 0;
    gint64 now = g_get_monotonic_time();
    gint64 used = ticks - h->cpu_ticks, span = now - h->cpu_at;
    gboolean first = h->cpu_at == 0;
    h->cpu_ticks = ticks;
    h->cpu_at = now;
    if (first || used < 0 || span <= 0) /* a worker ended: its ticks left the sum */
        return 0;
    long hz = sysconf(_SC_CLK_TCK), cores = sysconf(_SC_NPROCESSORS_ONLN);
    gint64 cpu = used * G_USEC_PER_SEC / MAX(hz, 1) * 1000 / span / MAX(cores, 1);
    return CLAMP(cpu, 0, 1000);
}
