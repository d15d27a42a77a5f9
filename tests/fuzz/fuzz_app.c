/* fuzz_app.c - see fuzz_app.h. */
#include "fuzz_app.h"

#include <glib/gstdio.h>
#include <sodium.h>
#include <string.h>

#include "api/accounts.h"
#include "api/consult.h"
#include "core/events.h"
#include "workers/media.h"
#include "core/metrics.h"
#include "core/webhooks.h"
#include "core/health.h"
#include "api/stream.h"
#include "api/ice.h"
#include "workers/reactions.h"
#include "workers/recordings.h"

static SigApp *app;
static char *dir; /* the temporary data dir, kept for the process */
static StoreUser *users[FUZZ_N_USERS];
static const char *const usernames[FUZZ_N_USERS] = {NULL, "admin", "teacher1", "teacher2",
                                                    "student1"};

static void
quiet(const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
    if (level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))
        g_printerr("%s\n", message);
}

SigApp *
fuzz_app(void)
{
    if (app)
        return app;
    g_assert(sodium_init() >= 0);
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    g_log_set_default_handler(quiet, NULL);
    g_autoptr(GError) err = NULL;
    dir = g_dir_make_tmp("consultd-fuzz-XXXXXX", &err);
    g_assert_no_error(err);
    char *argv_[] = {"fuzz",     "--data-dir",  dir, "--media-workers", "0", "--record=false",
                     "--listen", "127.0.0.1:0", NULL};
    char **argv = argv_;
    int argc = G_N_ELEMENTS(argv_) - 1;
    app = g_new0(SigApp, 1);
    app->cfg = sig_config_load(&argc, &argv, &err);
    g_assert_no_error(err);
    app->store = store_open(dir, &err);
    g_assert_no_error(err);
    app->loop = g_main_loop_new(NULL, FALSE);
    app->metrics = sig_metrics_new();
    app->media_bin = sig_find_media_bin();
    sig_health_new(app);
    app->auth = sig_auth_new(app);
    sig_ice_new(app);
    sig_events_new(app);
    sig_streams_new(app);
    sig_webhooks_new(app);
    app->consult = sig_consult_new(app);
    sig_recordings_new(app);
    sig_media_new(app);
    sig_reactions_init(app);
    g_assert(sig_auth_seed_demo(app, &err));
    for (guint i = 1; i < FUZZ_N_USERS; i++) {
        users[i] = store_user_get_by_name(app->store, usernames[i], NULL, NULL);
        g_assert(users[i]);
    }
    return app;
}

gint64
fuzz_user_id(FuzzUser u)
{
    fuzz_app();
    return users[u] ? users[u]->id : 0;
}

void
fuzz_settle(void)
{
    while (g_main_context_iteration(NULL, FALSE))
        ;
}

static StoreUser *
user_copy(FuzzUser u)
{
    if (!users[u])
        return NULL;
    return store_user_get(app->store, users[u]->id, NULL);
}

unsigned
fuzz_request(SigHandler handler, const char *method, const char *path, char *const *params, guint n,
             FuzzUser user, const void *body, gsize len)
{
    fuzz_app();
    SigReq *r = g_new0(SigReq, 1);
    r->app = app;
    r->method = method;
    r->path = g_strdup(path);
    g_assert(n <= G_N_ELEMENTS(r->params));
    for (guint i = 0; i < n; i++)
        r->params[r->n_params++] = g_strdup(params[i]);
    r->body = g_string_new_len(body, (gssize)len);
    r->user = user_copy(user);
    g_strlcpy(r->peer, "127.0.0.1", sizeof r->peer);
    r->t_start = g_get_monotonic_time();
    r->headers = g_ptr_array_new_with_free_func(g_free);
    static const char *const headers[] = {"Content-Type", "application/json", NULL};
    r->fake_headers = headers;
    handler(r);
    while (r->suspended)
        g_main_context_iteration(NULL, TRUE);
    g_assert(r->response != NULL);
    unsigned status = r->status;
    g_assert(status >= 200 && status < 600);
    g_assert(status < 500 || status == 503);
    sig_req_free(r);
    return status;
}
