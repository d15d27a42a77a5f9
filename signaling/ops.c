/* ops.c - see ops.h.
 *
 * /healthz proves only that the loop answers (a liveness probe must not
 * depend on the database, or a slow disk would get the process killed).
 * /readyz runs every registered check; /metrics renders counters plus the
 * gauges subsystems append.  The registries are filled once at start-up.
 */
#include "ops.h"

#include "build-config.h"
#include "metrics.h"

typedef struct {
    const char *name;
    SigReadyFunc fn;
} ReadyCheck;

static ReadyCheck ready_checks[16];
static guint n_ready_checks;
static SigMetricsFunc metrics_fns[16];
static guint n_metrics_fns;

void
sig_ops_add_ready_check(const char *name, SigReadyFunc fn)
{
    g_return_if_fail(n_ready_checks < G_N_ELEMENTS(ready_checks));
    ready_checks[n_ready_checks++] = (ReadyCheck){name, fn};
}

void
sig_ops_add_metrics(SigMetricsFunc fn)
{
    g_return_if_fail(n_metrics_fns < G_N_ELEMENTS(metrics_fns));
    metrics_fns[n_metrics_fns++] = fn;
}

void
sig_h_healthz(SigReq *r)
{
    sig_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static gboolean
database_ready(SigApp *app, char **why)
{
    g_autoptr(GError) err = NULL;
    if (store_ping(app->store, &err))
        return TRUE;
    *why = g_strdup(err->message);
    return FALSE;
}

void
sig_h_readyz(SigReq *r)
{
    json_t *checks = json_object();
    json_t *failing = json_array();
    const ReadyCheck all[] = {{"database", database_ready}};
    for (guint i = 0; i < G_N_ELEMENTS(all) + n_ready_checks; i++) {
        const ReadyCheck *c = i < G_N_ELEMENTS(all) ? &all[i]
                                                    : &ready_checks[i - G_N_ELEMENTS(all)];
        g_autofree char *why = NULL;
        if (c->fn(r->app, &why)) {
            json_object_set_new(checks, c->name, json_string("ok"));
        } else {
            json_object_set_new(checks, c->name, json_string(why ? why : "not ready"));
            json_array_append_new(failing, json_string(c->name));
        }
    }
    if (r->app->stopping) {
        json_object_set_new(checks, "server", json_string("shutting down"));
        json_array_append_new(failing, json_string("server"));
    }
    if (json_array_size(failing) == 0) {
        json_decref(failing);
        sig_reply_json(r, 200, json_pack("{s:s, s:o}", "status", "ready", "checks", checks));
        return;
    }
    sig_reply_json(r, 503, json_pack("{s:s, s:s, s:o, s:o}", "error", "not_ready",
                                     "message", "some subsystems are not ready",
                                     "not_ready", failing, "checks", checks));
}

void
sig_h_metrics(SigReq *r)
{
    SigApp *app = r->app;
    g_autoptr(GString) out = g_string_sized_new(4096);
    g_string_append_printf(out,
        "# HELP consultd_build_info Build information\n"
        "# TYPE consultd_build_info gauge\n"
        "consultd_build_info{version=\"%s\"} 1\n"
        "# HELP consultd_uptime_seconds Seconds since the process started\n"
        "# TYPE consultd_uptime_seconds gauge\n"
        "consultd_uptime_seconds %.1f\n"
        "# HELP consultd_db_commits_total Committed database write transactions\n"
        "# TYPE consultd_db_commits_total counter\n"
        "consultd_db_commits_total %" G_GUINT64_FORMAT "\n"
        "# HELP consultd_http_connections Open HTTP connections\n"
        "# TYPE consultd_http_connections gauge\n"
        "consultd_http_connections %u\n",
        CONSULTD_VERSION, (g_get_monotonic_time() - app->started_at) / 1e6,
        store_commit_count(app->store), sig_http_connections(app->http));
    sig_metrics_render(app->metrics, out);
    for (guint i = 0; i < n_metrics_fns; i++)
        metrics_fns[i](app, out);
    sig_reply_data(r, 200, "text/plain; version=0.0.4; charset=utf-8", out->str,
                   out->len);
}
