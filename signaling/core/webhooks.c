/* webhooks.c - see webhooks.h.
 *
 * In-flight deliveries are remembered by id so a delivery is never sent
 * twice at once; at most MAX_IN_FLIGHT go out together.  Receivers get
 * WEBHOOK_TIMEOUT_S to answer.
 */
#include "core/webhooks.h"

#include <libsoup/soup.h>

#include "core/events.h"
#include "core/metrics.h"
#include "core/task.h"

#define MAX_IN_FLIGHT 16
#define WEBHOOK_TIMEOUT_S 10
#define BACKOFF_CAP_MS (5 * 60 * 1000)

struct SigWebhooks {
    SigApp *app;
    SoupSession *session;
    GCancellable *cancel;
    GHashTable *in_flight; /* gint64 *delivery id -> NULL */
    guint timer, idle;
    SigTask pump_task;
};

typedef struct {
    SigWebhooks *w;
    gint64 id;
    gint64 attempts;
    char *url;
} Send;

static void
send_free(Send *s)
{
    g_free(s->url);
    g_free(s);
}

static gint64
backoff_ms(SigApp *app, gint64 attempts)
{
    gint64 d = app->cfg->webhook_retry_ms;
    for (gint64 i = 1; i < attempts && d < BACKOFF_CAP_MS; i++)
        d *= 2;
    return MIN(d, BACKOFF_CAP_MS);
}

static void
record(Send *s, gboolean ok, const char *why)
{
    SigApp *app = s->w->app;
    gint64 attempts = s->attempts + 1;
    gint64 next = 0;
    if (!ok && attempts < app->cfg->webhook_max_attempts)
        next = store_now_ms() + backoff_ms(app, attempts);
    g_autoptr(GError) err = NULL;
    if (!store_delivery_result(app->store, s->id, ok, why, next, &err))
        g_warning("webhooks: cannot record delivery %" G_GINT64_FORMAT ": %s", s->id, err->message);
    sig_metrics_add(app->metrics, "consultd_webhook_attempts_total",
                    "Webhook delivery attempts by outcome",
                    ok ? "outcome=\"ok\"" : "outcome=\"error\"", 1);
    if (!ok) {
        g_autofree char *url = sig_webhooks_url_for_log(s->url);
        g_message("webhooks: delivery %" G_GINT64_FORMAT " to %s failed (attempt %" G_GINT64_FORMAT
                  "): %s%s",
                  s->id, url, attempts, why, next ? "" : "; giving up");
    }
}

char *
sig_webhooks_url_for_log(const char *url)
{
    g_autoptr(GUri) u = g_uri_parse(url, G_URI_FLAGS_NONE, NULL);
    return u ? g_uri_to_string_partial(u, G_URI_HIDE_USERINFO | G_URI_HIDE_QUERY)
             : g_strdup("(not a URL)");
}

char *
sig_webhooks_signature(const char *secret, gint64 t, const char *body, gsize len)
{
    g_autoptr(GHmac) mac = g_hmac_new(G_CHECKSUM_SHA256, (const guchar *)secret, strlen(secret));
    char ts[32];
    g_snprintf(ts, sizeof ts, "%" G_GINT64_FORMAT ".", t);
    g_hmac_update(mac, (const guchar *)ts, (gssize)strlen(ts));
    g_hmac_update(mac, (const guchar *)body, (gssize)len);
    return g_strdup_printf("t=%" G_GINT64_FORMAT ",v1=%s", t, g_hmac_get_string(mac));
}

static void
on_sent(GObject *src, GAsyncResult *res, gpointer data)
{
    Send *s = data;
    g_autoptr(GError) err = NULL;
    /* The answer's status is all that counts: its body is not read (a
     * receiver cannot make us hold more than the socket buffer). */
    g_autoptr(GInputStream) body = soup_session_send_finish(SOUP_SESSION(src), res, &err);
    if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        send_free(s); /* shutting down; the queue keeps it pending */
        return;
    }
    SigWebhooks *w = s->w;
    SoupMessage *msg = soup_session_get_async_result_message(SOUP_SESSION(src), res);
    guint status = msg ? soup_message_get_status(msg) : 0;
    if (err) {
        record(s, FALSE, err->message);
    } else if (status >= 200 && status < 300) {
        record(s, TRUE, NULL);
    } else {
        g_autofree char *why = g_strdup_printf("HTTP %u", status);
        record(s, FALSE, why);
    }
    g_hash_table_remove(w->in_flight, &s->id);
    send_free(s);
    sig_webhooks_kick(w->app);
}

static void
start_send(SigWebhooks *w, const StoreDelivery *d)
{
    SigApp *app = w->app;
    g_autoptr(StoreEvent) e = store_event_get(app->store, d->event_seq);
    g_autoptr(SoupMessage) msg = e ? soup_message_new("POST", d->url) : NULL;
    if (!msg) {
        Send tmp = {.w = w, .id = d->id, .attempts = G_MAXINT32, .url = d->url};
        record(&tmp, FALSE, e ? "invalid URL" : "event missing");
        return;
    }
    json_t *j = sig_event_json(e);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    gsize len = strlen(text);
    /* Signed with the time, so that a captured delivery cannot be replayed
     * later: the receiver checks t against its clock (docs/api.md). */
    g_autofree char *sig_header = sig_webhooks_signature(
        app->cfg->webhook_secret, g_get_real_time() / G_USEC_PER_SEC, text, len);
    g_autofree char *event_id = g_strdup_printf("evt_%" G_GINT64_FORMAT, e->seq);
    SoupMessageHeaders *h = soup_message_get_request_headers(msg);
    soup_message_headers_replace(h, "X-Consultd-Signature", sig_header);
    soup_message_headers_replace(h, "X-Consultd-Event-Id", event_id);
    soup_message_headers_replace(h, "X-Consultd-Event-Type", e->type);
    g_autoptr(GBytes) body = g_bytes_new_take(text, len);
    soup_message_set_request_body_from_bytes(msg, "application/json", body);
    soup_message_add_flags(msg, SOUP_MESSAGE_NO_REDIRECT); /* a 3xx is a failure */
    Send *s = g_new0(Send, 1);
    s->w = w;
    s->id = d->id;
    s->attempts = d->attempts;
    s->url = g_strdup(d->url);
    g_hash_table_add(w->in_flight, g_memdup2(&s->id, sizeof s->id));
    soup_session_send_async(w->session, msg, G_PRIORITY_DEFAULT, w->cancel, on_sent, s);
}

static void
pump_run(gpointer data)
{
    SigWebhooks *w = data;
    guint room = MAX_IN_FLIGHT - MIN(MAX_IN_FLIGHT, g_hash_table_size(w->in_flight));
    if (room == 0)
        return;
    /* Claimed for longer than an attempt can take: no other node sends it
     * meanwhile, and if this node dies with it in flight another one
     * retries it when the claim runs out. */
    g_autoptr(GPtrArray) due =
        store_deliveries_claim(w->app->store, store_now_ms(), (WEBHOOK_TIMEOUT_S + 5) * 1000, room);
    for (guint i = 0; due && i < due->len && room > 0; i++) {
        StoreDelivery *d = due->pdata[i];
        if (g_hash_table_contains(w->in_flight, &d->id))
            continue;
        start_send(w, d);
        room--;
    }
}

static gboolean
pump(gpointer data)
{
    SigWebhooks *w = data;
    w->idle = 0;
    sig_task_run(&w->pump_task);
    return G_SOURCE_REMOVE;
}

static gboolean
tick(gpointer data)
{
    sig_webhooks_kick(((SigWebhooks *)data)->app);
    return G_SOURCE_CONTINUE;
}

void
sig_webhooks_kick(SigApp *app)
{
    SigWebhooks *w = app->webhooks;
    if (w && !w->idle)
        w->idle = g_idle_add(pump, w);
}

guint
sig_webhooks_in_flight(SigApp *app)
{
    return app->webhooks ? g_hash_table_size(app->webhooks->in_flight) : 0;
}

/* A dispatched event may have queued deliveries. */
static void
on_event(SigApp *app, const StoreEvent *e, gpointer data)
{
    sig_webhooks_kick(app);
}

SigWebhooks *
sig_webhooks_new(SigApp *app)
{
    SigWebhooks *w = g_new0(SigWebhooks, 1);
    w->app = app;
    w->session = soup_session_new_with_options("timeout", WEBHOOK_TIMEOUT_S, "user-agent",
                                               "consultd-webhooks", NULL);
    w->cancel = g_cancellable_new();
    w->in_flight = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    w->pump_task = SIG_TASK_INIT(app, pump_run, w);
    /* Retries come due by time, not by events: look every 250 ms. */
    w->timer = g_timeout_add(250, tick, w);
    app->webhooks = w;
    sig_events_listen(app, on_event, NULL);
    sig_webhooks_kick(app);
    return w;
}

void
sig_webhooks_free(SigWebhooks *w)
{
    if (!w)
        return;
    g_clear_handle_id(&w->timer, g_source_remove);
    g_clear_handle_id(&w->idle, g_source_remove);
    g_cancellable_cancel(w->cancel);
    /* Let the cancelled sends call back and free themselves. */
    while (g_hash_table_size(w->in_flight) > 0 && g_main_context_iteration(NULL, FALSE))
        ;
    g_object_unref(w->session);
    g_object_unref(w->cancel);
    g_hash_table_destroy(w->in_flight);
    w->app->webhooks = NULL;
    g_free(w);
}
