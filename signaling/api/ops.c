/* ops.c - see ops.h.
 *
 * /healthz proves only that the loop answers (a liveness probe must not
 * depend on the database, or a slow disk would get the process killed).
 * /readyz runs every registered check; /metrics renders counters plus the
 * gauges subsystems append (core/health.h holds both registries).
 */
#include "api/ops.h"

#include <string.h>

#include "build-config.h"
#include "core/health.h"
#include "api/stream.h"
#include "core/metrics.h"
#include "workers/media.h"

void
sig_h_healthz(SigReq *r)
{
    sig_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* NULL when the database answers, else why not (newly allocated). */
static char *
database_ready(SigApp *app)
{
    g_autoptr(GError) err = NULL;
    return store_ping(app->store, &err) ? NULL : g_strdup(err->message);
}

typedef struct {
    json_t *checks, *failing;
} ReadyAcc;

/* /readyz is public: it names the check that failed and says "failing";
 * why (a database error's text, a path) goes to the log only. */
static void
ready_one(const char *name, const char *why, gpointer data)
{
    ReadyAcc *acc = data;
    json_object_set_new(acc->checks, name, json_string(why ? "failing" : "ok"));
    if (why) {
        json_array_append_new(acc->failing, json_string(name));
        g_autofree char *safe = sig_log_escape(why);
        g_message("readyz: %s is not ready: %s", name, safe);
    }
}

void
sig_h_readyz(SigReq *r)
{
    json_t *checks = json_object();
    json_t *failing = json_array();
    ReadyAcc acc = {checks, failing};
    g_autofree char *db = database_ready(r->app);
    ready_one("database", db, &acc);
    sig_health_check(r->app, ready_one, &acc);
    if (r->app->stopping) {
        json_object_set_new(checks, "server", json_string("shutting down"));
        json_array_append_new(failing, json_string("server"));
    }
    if (json_array_size(failing) == 0) {
        json_decref(failing);
        sig_reply_json(r, 200, json_pack("{s:s, s:o}", "status", "ready", "checks", checks));
        return;
    }
    sig_reply_json(r, 503,
                   json_pack("{s:s, s:s, s:o, s:o}", "error", "not_ready", "message",
                             "some subsystems are not ready", "not_ready", failing, "checks",
                             checks));
}

void
sig_h_metrics(SigReq *r)
{
    if (*r->app->cfg->metrics_listen) {
        sig_reply_error(r, 404, "not_found", "metrics are served on metrics-listen");
        return;
    }
    sig_h_metrics_private(r);
}

void
sig_h_metrics_private(SigReq *r)
{
    SigApp *app = r->app;
    g_autoptr(GString) out = g_string_sized_new(4096);
    g_string_append_printf(
        out,
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
    sig_health_metrics(app, out);
    sig_reply_data(r, 200, "text/plain; version=0.0.4; charset=utf-8", out->str, out->len);
}

/* GET /api/admin/webhook-deliveries: the newest deliveries and their state. */
void
sig_h_webhook_deliveries(SigReq *r)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) ds = store_deliveries_list(r->app->store, 500, &err);
    if (!ds) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < ds->len; i++) {
        StoreDelivery *d = ds->pdata[i];
        char eid[32];
        g_snprintf(eid, sizeof eid, "evt_%" G_GINT64_FORMAT, d->event_seq);
        json_array_append_new(
            arr,
            json_pack("{s:I, s:s, s:s, s:s, s:I, s:o, s:s, s:o}", "id", (json_int_t)d->id,
                      "event_id", eid, "url", d->url, "state", d->state, "attempts",
                      (json_int_t)d->attempts, "next_attempt_at",
                      strcmp(d->state, "pending") ? json_null() : sig_json_time(d->next_attempt_at),
                      "last_error", d->last_error, "delivered_at", sig_json_time(d->delivered_at)));
    }
    sig_reply_json(r, 200, json_pack("{s:o}", "deliveries", arr));
}

/* POST /api/admin/nodes/{id}/drain: that node takes no new consultations
 * and stops when its own have ended (or at drain-timeout).  Any node takes
 * the request: the registry carries it, and the node notices within its
 * lease renewal (2 s).  On SQLite: this node only. */
void
sig_h_admin_node_drain(SigReq *r)
{
    SigApp *app = r->app;
    const char *id = r->params[0];
    gboolean self = !strcmp(id, app->cfg->node_id);
    g_autoptr(GError) err = NULL;
    if (store_shared(app->store) && !store_node_set_draining(app->store, id, TRUE, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    if (!store_shared(app->store) && !self) {
        sig_reply_error(r, 404, "not_found", "no node %s here", id);
        return;
    }
    if (self && app->drain)
        app->drain(app, "the admin API");
    sig_reply_json(r, 202, json_pack("{s:s, s:b}", "node_id", id, "draining", 1));
}

/* GET /api/admin/nodes: the nodes sharing this store, their leases and the
 * load they last reported.  On SQLite: this process alone. */
void
sig_h_admin_nodes(SigReq *r)
{
    SigApp *app = r->app;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) nodes = store_nodes_list(app->store, &err);
    if (!nodes) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < nodes->len; i++) {
        StoreNode *n = nodes->pdata[i];
        gboolean self = !strcmp(n->node_id, app->cfg->node_id);
        json_array_append_new(
            arr,
            json_pack("{s:s, s:s, s:I, s:b, s:I, s:o, s:o, s:I, s:I, s:b, s:I, s:b, s:I, s:I}",
                      "node_id", n->node_id, "url", n->url, "epoch", (json_int_t)n->epoch, "alive",
                      n->lease_left_ms > 0, "lease_remaining_ms", (json_int_t)n->lease_left_ms,
                      "started_at", sig_json_time(n->started_at), "renewed_at",
                      sig_json_time(n->renewed_at), "event_streams", (json_int_t)n->streams,
                      "media_sessions", (json_int_t)n->live, "self", self, "max_live",
                      (json_int_t)n->max_live, "draining", n->draining, "consultations",
                      (json_int_t)n->placed, "cpu_permille", (json_int_t)n->cpu));
    }
    if (!store_shared(app->store))
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:I, s:b, s:n, s:n, s:n, s:I, s:I, s:b}", "node_id",
                           app->cfg->node_id, "url", app->cfg->public_url, "epoch", (json_int_t)0,
                           "alive", 1, "lease_remaining_ms", "started_at", "renewed_at",
                           "event_streams", (json_int_t)sig_streams_count(app), "media_sessions",
                           (json_int_t)sig_media_session_count(app), "self", 1));
    sig_reply_json(r, 200,
                   json_pack("{s:s, s:s, s:o}", "backend", store_kind_name(app->store), "node_id",
                             app->cfg->node_id, "nodes", arr));
}
