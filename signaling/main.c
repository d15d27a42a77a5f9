/* main.c - consultd's entry point: the server and the admin subcommands.
 *
 *   consultd [OPTIONS]                      serve (the default)
 *   consultd user add --role R --username U [--display-name N] [OPTIONS]
 *   consultd user list [OPTIONS]
 *   consultd rebuild-projections [OPTIONS]
 *   consultd migrate [OPTIONS]               apply pending schema migrations
 *
 * Shutdown order on SIGTERM/SIGINT: stop accepting, give in-flight requests
 * up to shutdown-grace seconds, then stop HTTP, the hash pool and the
 * database, in that order (each needs the ones after it).
 */
#include <glib-unix.h>
#include <locale.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/accounts.h"
#include "api/consult.h"
#include "api/ice.h"
#include "api/routes.h"
#include "api/stream.h"
#include "build-config.h"
#include "core/app.h"
#include "core/events.h"
#include "core/health.h"
#include "core/metrics.h"
#include "core/task.h"
#include "core/webhooks.h"
#include "workers/media.h"
#include "workers/reactions.h"
#include "workers/recordings.h"
#include "workers/sandbox.h"
#include "workers/uploads.h"

/* ---------------------------------------------------------------- logging */

static GLogWriterOutput
log_writer(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer data)
{
    GLogLevelFlags l = level & G_LOG_LEVEL_MASK;
    GLogLevelFlags max_level = (GLogLevelFlags)GPOINTER_TO_UINT(data);
    if (l > max_level && !(level & G_LOG_FLAG_FATAL))
        return G_LOG_WRITER_HANDLED;
    const char *msg = NULL, *domain = NULL;
    for (gsize i = 0; i < n; i++) {
        if (!strcmp(fields[i].key, "MESSAGE"))
            msg = fields[i].value;
        else if (!strcmp(fields[i].key, "GLIB_DOMAIN"))
            domain = fields[i].value;
    }
    const char *name = l <= G_LOG_LEVEL_ERROR      ? "ERROR"
                       : l <= G_LOG_LEVEL_CRITICAL ? "CRITICAL"
                       : l <= G_LOG_LEVEL_WARNING  ? "WARN"
                       : l <= G_LOG_LEVEL_MESSAGE  ? "NOTE"
                       : l <= G_LOG_LEVEL_INFO     ? "INFO"
                                                   : "DEBUG";
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *ts = g_date_time_format(now, "%H:%M:%S.%f");
    ts[12] = '\0'; /* milliseconds are enough */
    fprintf(stderr, "%s %-5s %s%s%s\n", ts, name,
            domain && strcmp(domain, "consultd") ? domain : "",
            domain && strcmp(domain, "consultd") ? ": " : "", msg ? msg : "");
    return G_LOG_WRITER_HANDLED;
}

static void
setup_logging(const char *level)
{
    static const struct {
        const char *name;
        GLogLevelFlags flag;
    } levels[] = {{"error", G_LOG_LEVEL_CRITICAL},
                  {"warning", G_LOG_LEVEL_WARNING},
                  {"message", G_LOG_LEVEL_MESSAGE},
                  {"info", G_LOG_LEVEL_INFO},
                  {"debug", G_LOG_LEVEL_DEBUG}};
    GLogLevelFlags max_level = G_LOG_LEVEL_INFO;
    for (guint i = 0; i < G_N_ELEMENTS(levels); i++)
        if (!strcmp(level, levels[i].name))
            max_level = levels[i].flag;
    g_log_set_writer_func(log_writer, GUINT_TO_POINTER(max_level), NULL);
}

/* --------------------------------------------------------------- systemd */

/* Tells systemd STATE (READY=1, WATCHDOG=1, STOPPING=1) when it asked
 * (Type=notify: NOTIFY_SOCKET); a no-op otherwise.  No libsystemd needed. */
static void
sd_notify_state(const char *state)
{
    const char *path = g_getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= 108)
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path));
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* an abstract socket */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        g_debug("sd_notify: %s", g_strerror(errno));
    close(fd);
}

/* The watchdog ping runs on the main loop: a loop that stops turning stops
 * pinging, and systemd (WatchdogSec=) restarts the service. */
static gboolean
watchdog_ping(gpointer data)
{
    sd_notify_state("WATCHDOG=1");
    return G_SOURCE_CONTINUE;
}

/* --------------------------------------------------------------- serving */

static gboolean
shutdown_poll(gpointer data)
{
    SigApp *app = data;
    guint open = sig_http_in_flight(app->http);
    if (open == 0 || g_get_monotonic_time() >= app->stop_deadline) {
        if (open)
            g_warning("shutdown: %u request(s) still in flight after %" G_GINT64_FORMAT
                      " s; closing them",
                      open, app->cfg->shutdown_grace);
        g_main_loop_quit(app->loop);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean
on_signal(gpointer data)
{
    SigApp *app = data;
    if (app->stopping)
        return G_SOURCE_CONTINUE;
    g_message("shutting down: no new connections, finishing requests in flight");
    app->stopping = TRUE;
    sd_notify_state("STOPPING=1");
    app->stop_deadline = g_get_monotonic_time() + app->cfg->shutdown_grace * G_USEC_PER_SEC;
    sig_http_quiesce(app->http);
    sig_streams_close_all(app);
    g_timeout_add(50, shutdown_poll, app);
    return G_SOURCE_CONTINUE;
}

/* ---------------------------------------------------------------- drain
 *
 * A draining node takes no new consultations (the registry's flag keeps
 * placement away; /readyz is 503, so the entry point sends new HTTP
 * elsewhere), lets the ones it holds run until they end, and exits 0 when
 * none is left.  After drain-timeout it interrupts what is left: each
 * resumes on another node at its participants' next publish. */

static struct {
    SigTask task;
    guint timer;
    gint64 deadline; /* monotonic us */
} drain;

static gboolean
stop_now(gpointer data)
{
    on_signal(data);
    return G_SOURCE_REMOVE;
}

static void
drain_check(gpointer data)
{
    SigApp *app = data;
    if (app->stopping)
        return;
    g_autoptr(GArray) here = store_consultations_here(app->store);
    /* Stopping waits for the recordings too: finalized, combined and (with
     * a recording store) uploaded here, they are ready when the node is
     * gone.  Uploads to a store that is down wait until drain-timeout;
     * then they are left for the node's next start. */
    gboolean past = g_get_monotonic_time() >= drain.deadline;
    if (here->len == 0 && sig_media_idle(app) && sig_recordings_idle(app) &&
        (sig_uploads_idle(app) || past)) {
        if (!sig_uploads_idle(app))
            g_warning("drain: uploads to the recording store are left for the next start");
        g_message("drain: no consultation left here; stopping");
        g_clear_handle_id(&drain.timer, g_source_remove);
        /* From the loop's stack: stopping runs libmicrohttpd, whose
         * requests start fibers of their own. */
        g_idle_add(stop_now, app);
        return;
    }
    if (!past)
        return;
    g_message("drain: drain-timeout passed; interrupting the %u consultation(s) left here, to"
              " resume elsewhere",
              here->len);
    for (guint i = 0; i < here->len; i++) {
        gint64 id = g_array_index(here, gint64, i);
        g_autoptr(GError) err = NULL;
        if (!store_consultation_unplace(app->store, id, "drained", &err))
            g_warning("drain: consultation %" G_GINT64_FORMAT ": %s", id, err->message);
        else
            sig_media_end(app, id);
    }
    sig_events_kick(app);
}

static void
drain_start(SigApp *app, const char *why)
{
    if (app->draining || app->stopping)
        return;
    app->draining = TRUE;
    drain.deadline = g_get_monotonic_time() + app->cfg->drain_timeout * G_USEC_PER_SEC;
    g_autoptr(GError) err = NULL;
    if (store_shared(app->store) &&
        !store_node_set_draining(app->store, app->cfg->node_id, TRUE, &err))
        g_warning("drain: could not tell the registry: %s", err->message);
    g_message("drain (%s): no new consultations here; stopping when the ones here have ended"
              " (at most %" G_GINT64_FORMAT " s, drain-timeout)",
              why, app->cfg->drain_timeout);
    sd_notify_state("STATUS=draining");
    drain.task = SIG_TASK_INIT(app, drain_check, app);
    drain.timer = g_timeout_add(1000, sig_task_tick, &drain.task);
    sig_task_run(&drain.task);
}

static gboolean
on_usr1(gpointer data)
{
    drain_start(data, "SIGUSR1");
    return G_SOURCE_CONTINUE;
}

static gboolean
drain_ready(SigApp *app, char **why)
{
    if (!app->draining)
        return TRUE;
    *why = g_strdup("draining: this node takes no new work");
    return FALSE;
}

static gboolean
purge_sessions(gpointer data)
{
    SigApp *app = data;
    gint64 n = store_session_purge(app->store, store_now_ms());
    if (n)
        g_info("purged %" G_GINT64_FORMAT " expired session(s)", n);
    return G_SOURCE_CONTINUE;
}

static void
domain_metrics(SigApp *app, GString *out)
{
    g_string_append_printf(
        out,
        "# HELP consultd_event_streams Open Server-Sent Events streams\n"
        "# TYPE consultd_event_streams gauge\nconsultd_event_streams %u\n"
        "# HELP consultd_webhooks_in_flight Webhook deliveries being sent\n"
        "# TYPE consultd_webhooks_in_flight gauge\nconsultd_webhooks_in_flight %u\n"
        "# HELP consultd_event_log_seq Last event sequence number\n"
        "# TYPE consultd_event_log_seq gauge\nconsultd_event_log_seq %" G_GINT64_FORMAT "\n"
        "# HELP consultd_event_lag Events not yet dispatched to read models\n"
        "# TYPE consultd_event_lag gauge\nconsultd_event_lag %" G_GINT64_FORMAT "\n",
        sig_streams_count(app), sig_webhooks_in_flight(app), store_events_last_seq(app->store),
        store_events_last_seq(app->store) - store_cursor(app->store, "projections"));
    static const StoreConsultStatus sts[] = {STORE_CONSULT_REQUESTED, STORE_CONSULT_LIVE,
                                             STORE_CONSULT_INTERRUPTED};
    g_string_append(out, "# HELP consultd_consultations Open consultations by status\n"
                         "# TYPE consultd_consultations gauge\n");
    for (guint i = 0; i < G_N_ELEMENTS(sts); i++)
        g_string_append_printf(out, "consultd_consultations{status=\"%s\"} %" G_GINT64_FORMAT "\n",
                               store_consult_status_name(sts[i]),
                               store_consultation_count(app->store, sts[i]));
}

/* The shared store woke us: another node appended events, or the
 * connection came back. */
static void
on_store_event(gpointer data, gboolean reconnected)
{
    SigApp *app = data;
    if (app->events)
        sig_events_kick(app);
}

/* Every 2 s: this node's lease (6 s) and the load it reports.  A node that
 * lost its lease (frozen, cut off) registers again with a new epoch. */
static void
renew_lease(gpointer data)
{
    SigApp *app = data;
    if (!store_available(app->store))
        return; /* reconnecting; the lease is checked when back */
    g_autoptr(GError) err = NULL;
    gint64 was = store_node_epoch(app->store);
    g_autoptr(GArray) ws = sig_media_workers(app);
    gint64 pids[64];
    guint n = 0;
    for (guint i = 0; i < ws->len && n < G_N_ELEMENTS(pids); i++)
        pids[n++] = g_array_index(ws, SigWorkerInfo, i).pid;
    gint64 cpu = sig_health_cpu(app, pids, n);
    if (!store_node_renew(app->store, sig_streams_count(app), sig_media_session_count(app), cpu,
                          &err))
        g_warning("node lease: %s", err->message);
    else if (was && store_node_epoch(app->store) != was) {
        sig_metrics_add(app->metrics, "consultd_node_fenced_total",
                        "Times this node lost its lease and registered again", "", 1);
        /* Its consultations were placed under the old epoch: the other
         * nodes interrupt and place them anew.  Relaying on would split
         * them; their media here ends (recordings finalize as usual). */
        g_message("node lease: lost; ending the media held under epoch %" G_GINT64_FORMAT, was);
        sig_media_end_all(app);
    }
    if (store_node_draining(app->store))
        drain_start(app, "the node registry: consultd drain or the admin API");
}

/* /readyz: a shared store must be reachable. */
static gboolean
database_ready(SigApp *app, char **why)
{
    if (store_available(app->store))
        return TRUE;
    *why = g_strdup("the database cannot be reached (reconnecting)");
    return FALSE;
}

static gboolean
retention_tick(gpointer data)
{
    sig_recordings_prune(data);
    return G_SOURCE_CONTINUE;
}

/* Descriptors kept for everything that is not an HTTP connection: the
 * database and its WAL, worker channels and their children's pipes,
 * recording files served, webhook sockets, GLib's own. */
#define FD_RESERVE 128

/* Raises the soft open-file limit to the hard one and keeps conn-limit
 * under it, so that a connection flood is refused by libmicrohttpd's limit
 * (the client sees its connection closed) instead of running the process
 * out of descriptors, where accept() fails silently and SQLite, workers and
 * files would fail with it. */
static void
fit_fd_limit(SigApp *app)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        return;
    gint64 room = (gint64)rl.rlim_cur - FD_RESERVE;
    if (app->cfg->conn_limit > room) {
        gint64 was = app->cfg->conn_limit;
        app->cfg->conn_limit = MAX(room, 16);
        app->cfg->per_ip_conn_limit = MIN(app->cfg->per_ip_conn_limit, app->cfg->conn_limit);
        g_warning("conn-limit lowered from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                  ": the open-file limit is %llu (raise it: ulimit -n, LimitNOFILE=)",
                  was, app->cfg->conn_limit, (unsigned long long)rl.rlim_cur);
    }
}

static int
serve(SigApp *app)
{
    g_autoptr(GError) err = NULL;
    app->metrics = sig_metrics_new();
    app->media_bin = sig_find_media_bin();
    sig_health_new(app);
    /* The loop's one thread must not stall behind a tool's lock: fail fast
     * (503 + Retry-After) instead.  Subcommands keep store_open's 5 s. */
    store_set_busy_timeout(app->store, (int)app->cfg->db_busy_timeout);
    fit_fd_limit(app);
    guint n_routes;
    const SigRoute *routes = sig_routes(&n_routes);
    app->http = sig_http_start(app, app->cfg->listen, routes, n_routes, sig_auth_identify, &err);
    if (!app->http) {
        g_critical("%s", err->message);
        return 1;
    }
    if (*app->cfg->metrics_listen) {
        /* /metrics on an address of its own, off the public port. */
        const SigRoute *mroutes = sig_metrics_routes(&n_routes);
        app->metrics_http = sig_http_start(app, app->cfg->metrics_listen, mroutes, n_routes,
                                           sig_auth_identify, &err);
        if (!app->metrics_http) {
            g_critical("metrics-listen: %s", err->message);
            return 1;
        }
        g_message("metrics on http://%s/metrics", app->cfg->metrics_listen);
    }
    /* What was bound, so that port 0 works too. */
    g_autofree char *host = g_strdup(app->cfg->listen);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = '\0';
    g_autofree char *bound = g_strdup_printf("http://%s:%u", host, sig_http_port(app->http));
    if (!*app->cfg->public_url) {
        g_free(app->cfg->public_url);
        app->cfg->public_url = g_strdup(bound);
    }
    guint lease = 0;
    SigTask lease_task = SIG_TASK_INIT(app, renew_lease, app);
    if (store_shared(app->store)) {
        store_node_set_url(app->store,
                           *app->cfg->node_url ? app->cfg->node_url : app->cfg->public_url);
        store_node_set_capacity(app->store, app->cfg->media_workers > 0 ? app->cfg->max_live : 0);
        if (!store_node_register(app->store, &err)) {
            g_critical("node registry: %s", err->message);
            return 1;
        }
        lease = g_timeout_add(2000, sig_task_tick, &lease_task);
        sig_health_add_ready_check(app, "database", database_ready);
        g_message("node %s (epoch %" G_GINT64_FORMAT ") on shared PostgreSQL state",
                  app->cfg->node_id, store_node_epoch(app->store));
    }
    app->auth = sig_auth_new(app);
    sig_ice_new(app);
    /* The dispatcher first: the others register as its listeners. */
    sig_events_new(app);
    sig_streams_new(app);
    sig_webhooks_new(app);
    app->consult = sig_consult_new(app);
    sig_recordings_new(app);
    sig_uploads_new(app);
    sig_sandbox_new(app);
    sig_media_new(app);
    sig_reactions_init(app);
    sig_recordings_repair(app, NULL); /* whatever a crash left unfinished */
    sig_recordings_compose_resume(app);
    sig_uploads_resume(app); /* after the repairs: theirs join the queue as they finish */
    sig_health_add_ready_check(app, "media", sig_media_ready);
    sig_health_add_ready_check(app, "draining", drain_ready);
    app->drain = drain_start;
    sig_health_add_metrics(app, sig_media_metrics);
    sig_health_add_metrics(app, domain_metrics);
    if (app->cfg->demo && !sig_auth_seed_demo(app, &err)) {
        g_critical("demo seed: %s", err->message);
        return 1;
    }
    guint sig_term = g_unix_signal_add(SIGTERM, on_signal, app);
    guint sig_int = g_unix_signal_add(SIGINT, on_signal, app);
    guint sig_usr1 = g_unix_signal_add(SIGUSR1, on_usr1, app);
    guint purge = g_timeout_add_seconds(600, purge_sessions, app);
    guint retention = g_timeout_add_seconds(3600, retention_tick, app);
    sig_recordings_prune(app);
    if (app->cfg->record)
        g_message("recordings: kept %" G_GINT64_FORMAT " days (retention-days; 0 keeps them), "
                  "held while under %" G_GINT64_FORMAT " MiB free (record-min-free-bytes); "
                  "consultations end after %" G_GINT64_FORMAT " minutes",
                  app->cfg->retention_days, app->cfg->record_min_free_bytes >> 20,
                  app->cfg->max_consultation_minutes);
    if (strcmp(bound, app->cfg->public_url) != 0)
        fprintf(stderr, "consultd %s: listening on %s (public URL %s, data dir %s)\n",
                CONSULTD_VERSION, bound, app->cfg->public_url, app->cfg->data_dir);
    else
        fprintf(stderr, "consultd %s: listening on %s (data dir %s)\n", CONSULTD_VERSION, bound,
                app->cfg->data_dir);
    sd_notify_state("READY=1");
    guint64 wd_usec =
        g_ascii_strtoull(g_getenv("WATCHDOG_USEC") ? g_getenv("WATCHDOG_USEC") : "0", NULL, 10);
    guint wd = wd_usec ? g_timeout_add((guint)MAX(wd_usec / 2000, 100), watchdog_ping, NULL) : 0;
    g_main_loop_run(app->loop);
    /* From here subsystems are freed: what still waits for the database
     * finishes now, and nothing starts a fiber any more. */
    app->stopped = TRUE;
    store_settle(app->store);
    if (wd)
        g_source_remove(wd);

    /* Removing its last source gives a signal back its default action,
     * which for these is to terminate: a second SIGTERM (a supervisor that
     * repeats it, or one sent while the first is being handled) would turn
     * a clean stop into death by signal.  The stop is under way; they are
     * ignored from here. */
    g_source_remove(sig_term);
    g_source_remove(sig_int);
    g_source_remove(sig_usr1);
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    g_clear_handle_id(&drain.timer, g_source_remove);
    g_source_remove(purge);
    g_source_remove(retention);
    if (lease)
        g_source_remove(lease);
    g_clear_pointer(&app->consult, sig_consult_free);
    g_clear_pointer(&app->media, sig_media_free);
    sig_auth_drain(app->auth); /* answers queued logins while HTTP still runs */
    g_clear_pointer(&app->http, sig_http_stop);
    g_clear_pointer(&app->metrics_http, sig_http_stop);
    g_clear_pointer(&app->webhooks, sig_webhooks_free);
    g_clear_pointer(&app->recordings, sig_recordings_free);
    g_clear_pointer(&app->uploads, sig_uploads_free);
    g_clear_pointer(&app->sandbox, sig_sandbox_free);
    g_clear_pointer(&app->streams, sig_streams_free);
    g_clear_pointer(&app->events, sig_events_free);
    g_clear_pointer(&app->auth, sig_auth_free);
    g_clear_pointer(&app->ice, sig_ice_free);
    g_message("stopped cleanly");
    return 0;
}

/* ----------------------------------------------------------- subcommands */

static char *
read_password_stdin(void)
{
    char buf[SIG_PASSWORD_MAX + 2];
    if (!fgets(buf, sizeof buf, stdin))
        return NULL;
    buf[strcspn(buf, "\r\n")] = '\0';
    char *pw = g_strdup(buf);
    sodium_memzero(buf, sizeof buf);
    return pw;
}

static int
cmd_user_add(SigApp *app, const char *role, const char *username, const char *display_name)
{
    StoreRole rl = store_role_parse(role);
    if (!rl || !sig_username_valid(username)) {
        fprintf(stderr, "consultd user add: need --role admin|teacher|student and "
                        "--username of a-z 0-9 . _ -\n");
        return 2;
    }
    g_autofree char *pw = read_password_stdin();
    if (!pw || g_utf8_strlen(pw, -1) < SIG_PASSWORD_MIN) {
        fprintf(stderr,
                "consultd user add: the password (one line on stdin) must "
                "have at least %d characters\n",
                SIG_PASSWORD_MIN);
        return 2;
    }
    g_autofree char *hash = sig_auth_hash_password(pw);
    sodium_memzero(pw, strlen(pw));
    g_autoptr(GError) err = NULL;
    gint64 id = hash ? store_user_add(app->store, username, rl,
                                      display_name ? display_name : username, "", hash, &err)
                     : 0;
    if (!id) {
        fprintf(stderr, "consultd user add: %s\n", err ? err->message : "hash failed");
        return 1;
    }
    printf("%" G_GINT64_FORMAT "\t%s\t%s\n", id, username, role);
    return 0;
}

static int
cmd_user_list(SigApp *app)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) users = store_user_list(app->store, &err);
    if (!users) {
        fprintf(stderr, "consultd user list: %s\n", err->message);
        return 1;
    }
    printf("id\tusername\trole\tdisplay_name\n");
    for (guint i = 0; i < users->len; i++) {
        StoreUser *u = users->pdata[i];
        printf("%" G_GINT64_FORMAT "\t%s\t%s\t%s\n", u->id, u->username, store_role_name(u->role),
               u->display_name);
    }
    return 0;
}

/* Parses the subcommand's own flags out of ARGV before the common ones. */
static int
run_user(SigApp *app, int argc, char **argv)
{
    g_autofree char *role = NULL, *username = NULL, *display = NULL;
    GOptionEntry entries[] = {
        {"role", 0, 0, G_OPTION_ARG_STRING, &role, "admin, teacher or student", "R"},
        {"username", 0, 0, G_OPTION_ARG_STRING, &username, "login name", "U"},
        {"display-name", 0, 0, G_OPTION_ARG_STRING, &display, "shown name", "N"},
        G_OPTION_ENTRY_NULL};
    g_autoptr(GOptionContext) ctx = g_option_context_new("add|list");
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_ignore_unknown_options(ctx, TRUE);
    g_option_context_set_help_enabled(ctx, FALSE);
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
        fprintf(stderr, "consultd user: %s\n", err->message);
        return 2;
    }
    if (argc >= 2 && !strcmp(argv[1], "add"))
        return cmd_user_add(app, role, username, display);
    if (argc >= 2 && !strcmp(argv[1], "list"))
        return cmd_user_list(app);
    fprintf(stderr, "usage: consultd user add|list ...\n");
    return 2;
}

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    signal(SIGPIPE, SIG_IGN);
    /* Nothing consultd writes is for other users: the data dir, the
     * recordings and logs 0750/0640 at most, the database 0600
     * (store_open_path()). */
    umask(027);
    if (sodium_init() < 0) {
        fprintf(stderr, "consultd: libsodium failed to initialise\n");
        return 1;
    }
    /* The subcommand word goes first; what follows it is parsed by the
     * subcommand, then the common options (data dir etc.) by config. */
    const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
    if (sub && !strcmp(sub, "config-table")) {
        sig_config_print_table(); /* the README's configuration table */
        return 0;
    }
    if (sub) {
        memmove(&argv[1], &argv[2], (argc - 2) * sizeof *argv);
        argv[--argc] = NULL;
    }
    g_autoptr(GError) err = NULL;
    SigApp app = {0};
    char **sub_argv = NULL;
    int sub_argc = 0;
    if (sub && !strcmp(sub, "user")) {
        /* Split out "add"/"list" and its flags; keep common flags for config. */
        sub_argv = g_new0(char *, argc + 2);
        sub_argv[sub_argc++] = argv[0];
        int keep = 1;
        for (int i = 1; i < argc; i++) {
            gboolean own = g_str_has_prefix(argv[i], "--role") ||
                           g_str_has_prefix(argv[i], "--username") ||
                           g_str_has_prefix(argv[i], "--display-name") || !strcmp(argv[i], "add") ||
                           !strcmp(argv[i], "list");
            gboolean takes_next = own && !strchr(argv[i], '=') && argv[i][0] == '-';
            if (own) {
                sub_argv[sub_argc++] = argv[i];
                if (takes_next && i + 1 < argc)
                    sub_argv[sub_argc++] = argv[++i];
            } else {
                argv[keep++] = argv[i];
            }
        }
        argc = keep;
        argv[argc] = NULL;
    }
    app.cfg = sig_config_load(&argc, &argv, &err);
    if (!app.cfg) {
        fprintf(stderr, "consultd: %s\n", err->message);
        g_free(sub_argv);
        return 2;
    }
    if (argc > 1) {
        fprintf(stderr, "consultd: unexpected argument '%s' (see --help)\n", argv[1]);
        g_free(sub_argv);
        return 2;
    }
    setup_logging(app.cfg->log_level);
    app.started_at = g_get_monotonic_time();
    if (!*app.cfg->node_id) {
        g_free(app.cfg->node_id);
        app.cfg->node_id = g_strdup(g_get_host_name());
    }
    /* The server is a node of the shared store; a subcommand is a tool
     * (no lease, no fence).  Both apply pending migrations, under an
     * advisory lock on PostgreSQL. */
    StoreOptions so = {.timeout_ms = (int)app.cfg->database_timeout, .migrate = TRUE};
    if (!sub) {
        so.node_id = app.cfg->node_id;
        so.on_event = on_store_event;
        so.data = &app;
    }
    app.store = store_open_database(app.cfg->database, app.cfg->data_dir, &so, &err);
    int rc;
    if (!app.store) {
        fprintf(stderr, "consultd: %s\n", err->message);
        rc = 1;
    } else if (!sub) {
        app.loop = g_main_loop_new(NULL, FALSE);
        rc = serve(&app);
        g_main_loop_unref(app.loop);
    } else if (!strcmp(sub, "drain")) {
        if (store_node_set_draining(app.store, app.cfg->node_id, TRUE, &err)) {
            printf("node %s drains: it takes no new consultations and stops when its own have"
                   " ended (within 2 s it notices)\n",
                   app.cfg->node_id);
            rc = 0;
        } else {
            fprintf(stderr, "consultd drain: %s (one node on SQLite: send it SIGUSR1)\n",
                    err->message);
            rc = 1;
        }
    } else if (!strcmp(sub, "migrate")) {
        printf("%s schema at version %d\n", store_kind_name(app.store),
               store_schema_version(app.store));
        rc = 0;
    } else if (!strcmp(sub, "prune-recordings")) {
        sig_uploads_new(&app);
        guint n = sig_recordings_prune(&app);
        while (!sig_uploads_idle(&app)) /* deletions from the recording store */
            g_main_context_iteration(NULL, TRUE);
        g_clear_pointer(&app.uploads, sig_uploads_free);
        printf("deleted %u recording(s); %" G_GINT64_FORMAT " bytes kept\n", n,
               store_recordings_bytes(app.store));
        rc = 0;
    } else if (!strcmp(sub, "rebuild-projections")) {
        if (store_rebuild_projections(app.store, &err)) {
            printf("rebuilt the read models from %" G_GINT64_FORMAT " events\n",
                   store_cursor(app.store, "projections"));
            rc = 0;
        } else {
            fprintf(stderr, "consultd rebuild-projections: %s\n", err->message);
            rc = 1;
        }
    } else if (!strcmp(sub, "user")) {
        rc = run_user(&app, sub_argc, sub_argv);
    } else {
        fprintf(stderr, "consultd: unknown subcommand '%s' (see --help)\n", sub);
        rc = 2;
    }
    g_free(sub_argv);
    store_close(app.store);
    sig_health_free(app.health);
    g_free(app.media_bin);
    sig_metrics_free(app.metrics);
    sig_config_free(app.cfg);
    return rc;
}
