/* config.c - defaults, file, environment and flags, in that order.
 *
 * One table describes every key; the four sources are applied to the same
 * struct one after another, each value parsed and checked by its type.  A
 * bad value anywhere is an error at start-up, never a silent default.
 */
#include "core/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build-config.h" /* CONSULTD_VERSION */

typedef enum {
    CFG_STR,
    CFG_INT,
    CFG_BOOL
} CfgType;

typedef struct {
    const char *key;
    CfgType type;
    size_t offset;
    const char *def;
    gint64 min, max; /* CFG_INT bounds; CFG_STR: min 1 = not empty */
    const char *help;
} CfgOpt;

#define OFF(f) G_STRUCT_OFFSET(SigConfig, f)
static const CfgOpt opts[] = {
    {"listen", CFG_STR, OFF(listen), "127.0.0.1:8080", 1, 0,
     "address and port to listen on (ADDR:PORT, [ADDR6]:PORT)"},
    {"data-dir", CFG_STR, OFF(data_dir), "./data", 1, 0,
     "directory for the database and recordings"},
    {"database", CFG_STR, OFF(database), "", 0, 0,
     "where the state lives: empty or sqlite: (DATA_DIR/consultd.db), sqlite:PATH, or a "
     "PostgreSQL URL or connection string (several nodes)"},
    {"database-timeout", CFG_INT, OFF(database_timeout), "1000", 100, 600000,
     "ms a PostgreSQL statement may take, and the wait for any reply (503 after)"},
    {"node-id", CFG_STR, OFF(node_id), "", 0, 0,
     "this node's name among several sharing PostgreSQL (default: the host name)"},
    {"node-url", CFG_STR, OFF(node_url), "", 0, 0,
     "how other nodes and the entry point reach this node (default: public-url)"},
    {"public-url", CFG_STR, OFF(public_url), "", 0, 0,
     "absolute base URL clients reach the server at (default: from listen)"},
    {"log-level", CFG_STR, OFF(log_level), "info", 0, 0, "error, warning, message, info or debug"},
    {"db-busy-timeout", CFG_INT, OFF(db_busy_timeout), "250", 0, 60000,
     "ms a request waits for a database locked by another process (503 after)"},
    {"max-body", CFG_INT, OFF(max_body), "1048576", 1024, G_GINT64_CONSTANT(1) << 32,
     "largest request body accepted, in bytes (413 above)"},
    {"conn-timeout", CFG_INT, OFF(conn_timeout), "30", 1, 86400,
     "seconds an idle HTTP connection is kept"},
    {"conn-limit", CFG_INT, OFF(conn_limit), "4096", 1, 1000000, "most HTTP connections at once"},
    {"per-ip-conn-limit", CFG_INT, OFF(per_ip_conn_limit), "256", 1, 1000000,
     "most HTTP connections at once from one IP address (trusted proxies are exempt)"},
    {"trusted-proxies", CFG_STR, OFF(trusted_proxies), "", 0, 0,
     "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For is believed"},
    {"session-ttl", CFG_INT, OFF(session_ttl), "43200", 60, 31536000,
     "seconds a login session lasts"},
    {"login-ip-per-min", CFG_INT, OFF(login_ip_per_min), "120", 1, 1000000,
     "login attempts per minute from one client address (429 above; a class behind one NAT)"},
    {"login-user-fail-per-15min", CFG_INT, OFF(login_user_fail_per_15min), "10", 1, 1000000,
     "failed logins per 15 minutes for one username from one client address (429 above; "
     "waits double from the 4th)"},
    {"shutdown-grace", CFG_INT, OFF(shutdown_grace), "10", 0, 3600,
     "seconds in-flight requests get to finish on SIGTERM"},
    {"drain-timeout", CFG_INT, OFF(drain_timeout), "600", 0, 86400,
     "seconds a draining node (SIGUSR1, consultd drain, the admin API) lets its consultations "
     "run before it interrupts them to resume elsewhere"},
    {"request-timeout", CFG_INT, OFF(request_timeout), "60", 1, 86400,
     "seconds a consultation request waits for the teacher before it expires"},
    {"presence-grace", CFG_INT, OFF(presence_grace), "60", 1, 86400,
     "seconds an online teacher may be without an events stream before going offline"},
    {"max-live", CFG_INT, OFF(max_live), "200", 1, 1000000,
     "live consultations at once (503 with Retry-After above)"},
    {"max-pending", CFG_INT, OFF(max_pending), "200", 1, 1000000,
     "consultation requests waiting at once (503 with Retry-After above)"},
    {"request-rate-per-min", CFG_INT, OFF(request_rate_per_min), "10", 1, 1000000,
     "consultation requests per student per minute (429 above)"},
    {"line-max", CFG_INT, OFF(line_max), "10", 1, 1000,
     "students who may wait in one busy teacher's line"},
    {"message-rate-per-min", CFG_INT, OFF(message_rate_per_min), "30", 1, 1000000,
     "chat messages per user per minute (429 above)"},
    {"write-rate-per-min", CFG_INT, OFF(write_rate_per_min), "60", 1, 1000000,
     "favorite, presence and profile changes per user per minute (429 above)"},
    {"event-retention-days", CFG_INT, OFF(event_retention_days), "30", 0, 36500,
     "delete events older than this that no read model needs (presence, favorites, "
     "profiles, participants) once applied and delivered (0 keeps them)"},
    {"sse-per-user", CFG_INT, OFF(sse_per_user), "8", 1, 10000,
     "open event streams per user (429 above)"},
    {"webhook-urls", CFG_STR, OFF(webhook_urls), "", 0, 0,
     "comma-separated URLs that receive every event as a signed JSON POST"},
    {"webhook-secret", CFG_STR, OFF(webhook_secret), "", 0, 0,
     "HMAC-SHA256 key for X-Consultd-Signature (at least 32 bytes when webhook-urls is set)"},
    {"webhook-max-attempts", CFG_INT, OFF(webhook_max_attempts), "15", 1, 1000,
     "delivery attempts before a webhook delivery is marked failed"},
    {"webhook-retry-ms", CFG_INT, OFF(webhook_retry_ms), "1000", 10, 3600000,
     "first webhook retry delay in ms; doubles each attempt, capped at 5 minutes"},
    {"media-workers", CFG_INT, OFF(media_workers), "1", 0, 64,
     "media worker processes (0 disables media)"},
    {"media-ice-loopback", CFG_BOOL, OFF(media_ice_loopback), "false", 0, 0,
     "also offer 127.0.0.1 as an ICE candidate (tests, single-host demos)"},
    {"media-ice-addresses", CFG_STR, OFF(media_ice_addresses), "", 0, 0,
     "comma-separated local addresses to gather ICE candidates on (default: all)"},
    {"media-port-min", CFG_INT, OFF(media_port_min), "0", 0, 65535,
     "lowest UDP port for media (0: any)"},
    {"media-port-max", CFG_INT, OFF(media_port_max), "0", 0, 65535,
     "highest UDP port for media (0: any)"},
    {"media-public-ip", CFG_STR, OFF(media_public_ip), "", 0, 0,
     "address advertised in host candidates instead of the local one (1:1 NAT)"},
    {"media-stun", CFG_STR, OFF(media_stun), "", 0, 0,
     "STUN server (stun:host:port) used by the server and handed to clients"},
    {"media-turn", CFG_STR, OFF(media_turn), "", 0, 0,
     "TURN servers handed to clients, comma-separated (turn:host:3478?transport=udp,turns:...)"},
    {"media-turn-secret", CFG_STR, OFF(media_turn_secret), "", 0, 0,
     "the TURN server's shared secret (coturn static-auth-secret): credentials are minted per "
     "user"},
    {"media-turn-ttl", CFG_INT, OFF(media_turn_ttl), "7200", 60, 31536000,
     "seconds a minted TURN credential stays valid"},
    {"media-timeout", CFG_INT, OFF(media_timeout), "15", 1, 3600,
     "seconds without RTP after which a participant counts as gone"},
    {"media-max-bitrate", CFG_INT, OFF(media_max_bitrate), "2500", 100, 100000,
     "kbit/s a publisher's video may use at most (b=AS in the answer, REMB to the publisher)"},
    {"media-end-grace", CFG_INT, OFF(media_end_grace), "60", 1, 86400,
     "seconds a live consultation may have nobody publishing before it ends itself"},
    {"record", CFG_BOOL, OFF(record), "true", 0, 0,
     "record every consultation to WebM files under data-dir/recordings"},
    {"compose", CFG_BOOL, OFF(compose), "true", 0, 0,
     "after a consultation, make one side-by-side file of it (nice'd, one at a time)"},
    {"retention-days", CFG_INT, OFF(retention_days), "365", 0, 36500,
     "delete recordings older than this many days (0 keeps them; said at start)"},
    {"retention-max-bytes", CFG_INT, OFF(retention_max_bytes), "0", 0, G_MAXINT64,
     "delete the oldest recordings while they take more than this (0: no quota)"},
    {"max-consultation-minutes", CFG_INT, OFF(max_consultation_minutes), "120", 1, 100000,
     "a consultation ends by itself after this long (reason max_duration)"},
    {"record-min-free-bytes", CFG_INT, OFF(record_min_free_bytes), "536870912", 0, G_MAXINT64,
     "recordings stop (reason disk_low) while the recordings disk has less free"},
    {"media-user", CFG_STR, OFF(media_user), "consultd-media", 0, 0,
     "when run as root: the user media workers run as (owns the recordings, not the database)"},
    {"media-worker-stall", CFG_INT, OFF(media_worker_stall), "20", 2, 3600,
     "seconds a media worker may send nothing or read nothing before it is killed and replaced"},
    {"media-restart-max", CFG_INT, OFF(media_restart_max), "30", 1, 3600,
     "longest wait before restarting a media worker that keeps crashing (backoff cap, s)"},
    {"demo", CFG_BOOL, OFF(demo), "false", 0, 0,
     "seed and print demo accounts (password 'demo'); without it they cannot log in"},
    {"demo-public", CFG_BOOL, OFF(demo_public), "false", 0, 0,
     "allow --demo on a listen address other than loopback"},
    {"metrics-listen", CFG_STR, OFF(metrics_listen), "", 0, 0,
     "a separate ADDR:PORT for /metrics (default: on the main listener)"},
    {"recordings-store", CFG_STR, OFF(recordings_store), "local", 1, 0,
     "where finalized recordings go: local (data-dir), dir:/path (a mount all nodes share) or "
     "s3://bucket/prefix (S3-compatible object storage); replayable from any node"},
    {"recordings-serve", CFG_STR, OFF(recordings_serve), "auto", 1, 0,
     "how a replay reaches a stored recording: redirect (to a presigned URL; s3 only), proxy "
     "(streamed through this node) or auto (redirect for s3)"},
    {"recordings-url-ttl", CFG_INT, OFF(recordings_url_ttl), "300", 10, 604800,
     "seconds a presigned replay URL stays valid"},
    {"s3-endpoint", CFG_STR, OFF(s3_endpoint), "", 0, 0,
     "the object store's URL, http(s)://host[:port] (default: AWS's for s3-region)"},
    {"s3-region", CFG_STR, OFF(s3_region), "us-east-1", 1, 0, "the object store's region"},
    {"s3-access-key", CFG_STR, OFF(s3_access_key), "", 0, 0,
     "the object store's access key (give it in the environment or the config file)"},
    {"s3-secret-key", CFG_STR, OFF(s3_secret_key), "", 0, 0,
     "the object store's secret key (environment or config file; never logged)"},
    {"s3-addressing", CFG_STR, OFF(s3_addressing), "auto", 1, 0,
     "path (endpoint/bucket/key), virtual (bucket.endpoint/key) or auto (virtual on AWS, path "
     "with s3-endpoint)"},
    {"s3-part-size", CFG_INT, OFF(s3_part_size), "16777216", 65536, G_GINT64_CONSTANT(5) << 30,
     "bytes per part of a multipart upload; larger files go up in parts"},
    {"upload-retry-max", CFG_INT, OFF(upload_retry_max), "30", 1, 3600,
     "longest wait between attempts to upload a recording to an unreachable store (s)"},
};
#undef OFF

static gboolean
apply(SigConfig *cfg, const CfgOpt *o, const char *value, const char *source, GError **error)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type) {
    case CFG_STR:
        if (o->min > 0 && !*value) { /* min 1: required */
            g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s: %s must not be empty",
                        source, o->key);
            return FALSE;
        }
        g_free(*(char **)field);
        *(char **)field = g_strdup(value);
        return TRUE;
    case CFG_INT: {
        gint64 v;
        if (!g_ascii_string_to_signed(value, 10, o->min, o->max, &v, NULL)) {
            g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "%s: %s must be an integer from %" G_GINT64_FORMAT " to %" G_GINT64_FORMAT
                        ", not \"%s\"",
                        source, o->key, o->min, o->max, value);
            return FALSE;
        }
        *(gint64 *)field = v;
        return TRUE;
    }
    case CFG_BOOL:
        if (!g_ascii_strcasecmp(value, "true") || !strcmp(value, "1") ||
            !g_ascii_strcasecmp(value, "yes")) {
            *(gboolean *)field = TRUE;
        } else if (!g_ascii_strcasecmp(value, "false") || !strcmp(value, "0") ||
                   !g_ascii_strcasecmp(value, "no")) {
            *(gboolean *)field = FALSE;
        } else {
            g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "%s: %s must be true or false, not \"%s\"", source, o->key, value);
            return FALSE;
        }
        return TRUE;
    }
    return FALSE;
}

static char *
env_name(const char *key)
{
    g_autofree char *up = g_ascii_strup(key, -1);
    g_strdelimit(up, "-", '_');
    return g_strconcat("CONSULTD_", up, NULL);
}

static gboolean
apply_file(SigConfig *cfg, const char *path, GError **error)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, error)) {
        g_prefix_error(error, "config file %s: ", path);
        return FALSE;
    }
    g_auto(GStrv) keys = g_key_file_get_keys(kf, "consultd", NULL, NULL);
    for (guint k = 0; keys && keys[k]; k++) {
        const CfgOpt *o = NULL;
        for (guint i = 0; i < G_N_ELEMENTS(opts); i++)
            if (!strcmp(opts[i].key, keys[k]))
                o = &opts[i];
        if (!o) {
            g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION,
                        "config file %s: unknown key \"%s\"", path, keys[k]);
            return FALSE;
        }
        g_autofree char *v = g_key_file_get_string(kf, "consultd", keys[k], NULL);
        if (v && !apply(cfg, o, v, path, error))
            return FALSE;
    }
    return TRUE;
}

/* Whether LISTEN ("ADDR:PORT", "[ADDR6]:PORT") is a loopback address. */
static gboolean
listen_is_loopback(const char *listen)
{
    g_autofree char *host = NULL;
    if (listen[0] == '[')
        host = g_strndup(listen + 1, strcspn(listen + 1, "]"));
    else
        host = g_strndup(listen, strrchr(listen, ':') ? (gsize)(strrchr(listen, ':') - listen)
                                                      : strlen(listen));
    if (!g_ascii_strcasecmp(host, "localhost"))
        return TRUE;
    g_autoptr(GInetAddress) a = g_inet_address_new_from_string(host);
    return a && g_inet_address_get_is_loopback(a);
}

static gboolean
derive(SigConfig *cfg, GError **error)
{
    static const char *const levels[] = {"error", "warning", "message", "info", "debug", NULL};
    if (!g_strv_contains(levels, cfg->log_level)) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "log-level must be one of error, warning, message, info, debug");
        return FALSE;
    }
    if (cfg->media_port_min && cfg->media_port_max && cfg->media_port_min > cfg->media_port_max) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "media-port-min (%" G_GINT64_FORMAT
                    ") is above media-port-max (%" G_GINT64_FORMAT ")",
                    cfg->media_port_min, cfg->media_port_max);
        return FALSE;
    }
    g_auto(GStrv) proxies = g_strsplit(cfg->trusted_proxies, ",", -1);
    for (guint i = 0; proxies[i]; i++) {
        const char *p = g_strstrip(proxies[i]);
        if (!*p)
            continue;
        g_autoptr(GInetAddressMask) mask = sig_config_parse_cidr(p);
        if (!mask) {
            g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "trusted-proxies: \"%s\" is not an address or CIDR", p);
            return FALSE;
        }
    }
    if (cfg->demo && !cfg->demo_public && !listen_is_loopback(cfg->listen)) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--demo seeds accounts with the password 'demo': on %s (not loopback) it "
                    "also needs --demo-public",
                    cfg->listen);
        return FALSE;
    }
    if (*cfg->webhook_urls && strlen(cfg->webhook_secret) < 32) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "webhook-urls needs a webhook-secret of at least 32 bytes");
        return FALSE;
    }
    const char *store = cfg->recordings_store;
    gboolean s3 = g_str_has_prefix(store, "s3://") && store[5] && store[5] != '/';
    if (strcmp(store, "local") && !s3 && !(g_str_has_prefix(store, "dir:") && store[4] == '/')) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "recordings-store must be local, dir:/absolute/path or s3://bucket[/prefix]");
        return FALSE;
    }
    if (s3 && (!*cfg->s3_access_key || !*cfg->s3_secret_key)) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "recordings-store %s needs s3-access-key and s3-secret-key", store);
        return FALSE;
    }
    static const char *const serve[] = {"auto", "redirect", "proxy", NULL};
    static const char *const addressing[] = {"auto", "path", "virtual", NULL};
    if (!g_strv_contains(serve, cfg->recordings_serve) ||
        (!s3 && !strcmp(cfg->recordings_serve, "redirect"))) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "recordings-serve must be auto, proxy or (with an s3:// store) redirect");
        return FALSE;
    }
    if (!g_strv_contains(addressing, cfg->s3_addressing)) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "s3-addressing must be auto, path or virtual");
        return FALSE;
    }
    if (*cfg->s3_endpoint && !g_str_has_prefix(cfg->s3_endpoint, "http://") &&
        !g_str_has_prefix(cfg->s3_endpoint, "https://")) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "s3-endpoint must be an http:// or https:// URL");
        return FALSE;
    }
    /* A trailing slash would double up when paths are appended. */
    gsize n = strlen(cfg->public_url);
    while (n > 0 && cfg->public_url[n - 1] == '/')
        cfg->public_url[--n] = '\0';
    return TRUE;
}

/* Boolean flags take an optional value: --demo, --demo=true, --record=false.
 * GOption hands the callback the flag's name and the group's data, the
 * bool_vals[] array, where its value lands at the option's index. */
static gboolean
bool_flag(const char *name, const char *value, gpointer data, GError **error)
{
    char **bool_vals = data;
    for (guint i = 0; i < G_N_ELEMENTS(opts); i++) {
        if (opts[i].type == CFG_BOOL && !strcmp(name + 2, opts[i].key)) {
            g_free(bool_vals[i]);
            bool_vals[i] = g_strdup(value ? value : "true");
            return TRUE;
        }
    }
    return FALSE;
}

SigConfig *
sig_config_load(int *argc, char ***argv, GError **error)
{
    g_autoptr(SigConfig) cfg = g_new0(SigConfig, 1);
    g_autofree char **flag_vals = g_new0(char *, G_N_ELEMENTS(opts));
    char **bool_vals = g_new0(char *, G_N_ELEMENTS(opts));
    gboolean version = FALSE;
    g_autofree char *config_file = NULL;
    GOptionEntry *entries = g_new0(GOptionEntry, G_N_ELEMENTS(opts) + 3);
    guint e = 0;

    for (guint i = 0; i < G_N_ELEMENTS(opts); i++) {
        if (!apply(cfg, &opts[i], opts[i].def, "default", error))
            g_assert_not_reached();
        if (opts[i].type == CFG_BOOL)
            entries[e++] = (GOptionEntry){opts[i].key,
                                          0,
                                          G_OPTION_FLAG_OPTIONAL_ARG,
                                          G_OPTION_ARG_CALLBACK,
                                          (gpointer)bool_flag,
                                          opts[i].help,
                                          "[true|false]"};
        else
            entries[e++] = (GOptionEntry){opts[i].key,
                                          0,
                                          0,
                                          G_OPTION_ARG_STRING,
                                          &flag_vals[i],
                                          opts[i].help,
                                          opts[i].type == CFG_INT ? "N" : "VALUE"};
    }
    entries[e++] = (GOptionEntry){
        "config", 'c', 0, G_OPTION_ARG_FILENAME, &config_file, "configuration file (GKeyFile)",
        "FILE"};
    entries[e++] = (GOptionEntry){
        "version", 'V', 0, G_OPTION_ARG_NONE, &version, "print the version and exit", NULL};

    g_autoptr(GOptionContext) ctx = g_option_context_new("[user|rebuild-projections ...]");
    g_option_context_set_summary(
        ctx, "consultd: a self-hosted video consultation server.\n\n"
             "Subcommands:\n"
             "  user add --role ROLE --username U [--display-name N]  (password on stdin)\n"
             "  user list\n"
             "  rebuild-projections\n"
             "  migrate            (apply the database's pending migrations)\n"
             "  drain              (node-id stops taking consultations and exits when empty)\n"
             "  prune-recordings   (apply retention-days / retention-max-bytes now)\n\n"
             "Every option can also be set as CONSULTD_<NAME> in the environment\n"
             "or as NAME=VALUE in group [consultd] of the config file.");
    GOptionGroup *main_group = g_option_group_new(NULL, NULL, NULL, bool_vals, NULL);
    g_option_group_add_entries(main_group, entries);
    g_option_context_set_main_group(ctx, main_group);
    gboolean parsed = g_option_context_parse(ctx, argc, argv, error);
    if (!parsed) {
        for (guint i = 0; i < G_N_ELEMENTS(opts); i++) {
            g_free(flag_vals[i]);
            g_free(bool_vals[i]);
        }
        g_clear_pointer(&bool_vals, g_free);
        g_free(entries);
        return NULL;
    }
    g_free(entries);
    if (version) {
        printf("consultd %s\n", CONSULTD_VERSION);
        exit(0);
    }

    gboolean ok = TRUE;
    if (config_file) {
        cfg->config_file = g_strdup(config_file);
        ok = apply_file(cfg, config_file, error);
    }
    for (guint i = 0; ok && i < G_N_ELEMENTS(opts); i++) {
        g_autofree char *name = env_name(opts[i].key);
        const char *v = g_getenv(name);
        if (v)
            ok = apply(cfg, &opts[i], v, name, error);
    }
    for (guint i = 0; i < G_N_ELEMENTS(opts); i++) {
        if (ok && flag_vals[i])
            ok = apply(cfg, &opts[i], flag_vals[i], "command line", error);
        if (ok && bool_vals[i])
            ok = apply(cfg, &opts[i], bool_vals[i], "command line", error);
        g_free(flag_vals[i]);
        g_free(bool_vals[i]);
    }
    g_clear_pointer(&bool_vals, g_free);
    if (!ok || !derive(cfg, error))
        return NULL;
    return g_steal_pointer(&cfg);
}

void
sig_config_free(SigConfig *cfg)
{
    if (!cfg)
        return;
    for (guint i = 0; i < G_N_ELEMENTS(opts); i++)
        if (opts[i].type == CFG_STR)
            g_free(*(char **)((char *)cfg + opts[i].offset));
    g_free(cfg->config_file);
    g_free(cfg);
}

void
sig_config_print_table(void)
{
    printf("| flag | environment | default | meaning |\n|---|---|---|---|\n");
    for (guint i = 0; i < G_N_ELEMENTS(opts); i++) {
        g_autofree char *env = env_name(opts[i].key);
        printf("| `--%s` | `%s` | `%s` | %s |\n", opts[i].key, env, opts[i].def, opts[i].help);
    }
}

char *
sig_find_bin(const char *name, const char *env_var)
{
    const char *env = g_getenv(env_var);
    if (env && *env)
        return g_strdup(env);
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    if (self) {
        g_autofree char *dir = g_path_get_dirname(self);
        char *p = g_build_filename(dir, name, NULL);
        if (g_file_test(p, G_FILE_TEST_IS_EXECUTABLE))
            return p;
        g_free(p);
    }
    char *p = g_find_program_in_path(name);
    return p ? p : g_strdup(name);
}

char *
sig_find_media_bin(void)
{
    return sig_find_bin("consultd-media", "CONSULTD_MEDIA_BIN");
}

GInetAddressMask *
sig_config_parse_cidr(const char *text)
{
    g_autoptr(GError) err = NULL;
    if (strchr(text, '/'))
        return g_inet_address_mask_new_from_string(text, &err);
    g_autoptr(GInetAddress) a = g_inet_address_new_from_string(text);
    return a ? g_inet_address_mask_new(
                   a, g_inet_address_get_family(a) == G_SOCKET_FAMILY_IPV4 ? 32 : 128, NULL)
             : NULL;
}
