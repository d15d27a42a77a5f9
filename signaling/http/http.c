/* http.c - libmicrohttpd driven by the GLib main loop.
 *
 * Design notes
 * - MHD runs in external-epoll mode: MHD_USE_EPOLL without a thread.  A
 *   custom GSource polls MHD's epoll fd and honours MHD_get_timeout(), so
 *   connection timeouts fire and data MHD already buffered (timeout 0) is
 *   processed without waiting for the fd.
 * - MHD calls the access handler several times per request.  The first call
 *   (headers only) routes, authenticates and checks Content-Length, so 404,
 *   405, 401, 403 and 413 are answered before any body is read.  Body calls
 *   append to r->body under the cap.  The last call runs the handler once.
 * - A reply is built into r->response and queued by the access handler.  A
 *   suspended request gets its reply later; sig_req_resume() makes MHD call
 *   the access handler again, which queues it.
 * - The request-completed callback logs, counts and frees the SigReq: it is
 *   the single owner's destroy notify.
 *
 * Lifetime: SigReq is created on the first call, owned by the connection
 * (*con_cls) and freed only in on_completed().
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <string.h>

#include "core/metrics.h"
#include "core/task.h"
#include "fiber.h"

struct SigHttp {
    SigApp *app;
    struct MHD_Daemon *d;
    GSource *src;
    const SigRoute *routes;
    guint n_routes;
    SigIdentifyFunc identify; /* who the caller is: given by main.c */
    GPtrArray *trusted;       /* GInetAddressMask *: trusted-proxies */
    GHashTable *per_ip;       /* char *socket address -> open connections */
    guint16 port;
    guint in_flight; /* requests begun and not completed */
    gboolean kick;   /* a connection was resumed: run MHD once, now */
};

typedef struct {
    GSource base;
    SigHttp *h;
    gpointer tag;
    gint64 deadline; /* g_source_get_time() units; -1: none */
} MhdSource;

/* ---------------------------------------------------------------- source */

static gboolean
src_prepare(GSource *s, gint *timeout)
{
    MhdSource *m = (MhdSource *)s;
    MHD_UNSIGNED_LONG_LONG to;
    if (m->h->kick) {
        *timeout = 0;
        return TRUE;
    }
    if (MHD_get_timeout(m->h->d, &to) != MHD_YES) {
        m->deadline = -1;
        *timeout = -1;
        return FALSE;
    }
    if (to == 0) {
        *timeout = 0;
        return TRUE;
    }
    *timeout = (gint)MIN(to, (MHD_UNSIGNED_LONG_LONG)G_MAXINT);
    m->deadline = g_source_get_time(s) + (gint64)to * 1000;
    return FALSE;
}

static gboolean
src_check(GSource *s)
{
    MhdSource *m = (MhdSource *)s;
    if (m->h->kick)
        return TRUE;
    if (g_source_query_unix_fd(s, m->tag) & G_IO_IN)
        return TRUE;
    return m->deadline >= 0 && g_source_get_time(s) >= m->deadline;
}

static gboolean
src_dispatch(GSource *s, GSourceFunc cb, gpointer data)
{
    MhdSource *m = (MhdSource *)s;
    m->h->kick = FALSE;
    guint before = sig_http_connections(m->h);
    MHD_run(m->h->d);
    /* At its connection limit MHD takes the listen socket out of its epoll
     * set and puts it back only at the start of a later MHD_run().  When
     * this run closed connections (timeouts, hang-ups) nothing else may
     * cause one, and clients queued in the backlog would wait forever
     * (found by the open-file-limit test).  So run once more. */
    if (sig_http_connections(m->h) < before)
        m->h->kick = TRUE;
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs mhd_source_funcs = {
    .prepare = src_prepare,
    .check = src_check,
    .dispatch = src_dispatch,
};

/* --------------------------------------------------------------- replies */

static void
set_response(SigReq *r, unsigned status, struct MHD_Response *resp)
{
    if (r->response) {
        /* A second reply is a programming error; keep the first. */
        g_critical("http: second reply to %s %s ignored", r->method, r->path);
        MHD_destroy_response(resp);
        return;
    }
    r->status = status;
    r->response = resp;
}

void
sig_reply_response(SigReq *r, unsigned status, struct MHD_Response *resp)
{
    set_response(r, status, resp);
}

void
sig_reply_retry(SigReq *r, unsigned status, const char *code, guint secs, const char *what)
{
    char buf[16];
    g_snprintf(buf, sizeof buf, "%u", secs);
    sig_req_header(r, "Retry-After", buf);
    sig_reply_error(r, status, code, "%s; retry in %u s", what, secs);
}

void
sig_reply_data(SigReq *r, unsigned status, const char *content_type, const void *data, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    set_response(r, status, resp);
}

void
sig_reply_empty(SigReq *r, unsigned status)
{
    set_response(r, status, MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT));
}

void
sig_reply_json(SigReq *r, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(12));
    json_decref(body);
    if (!text) {
        sig_reply_error(r, 500, "internal", "could not encode the reply");
        return;
    }
    size_t len = strlen(text);
    text = g_realloc(text, len + 2);
    text[len++] = '\n';
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    set_response(r, status, resp);
}

void
sig_reply_error(SigReq *r, unsigned status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *raw = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    /* Messages may quote what the client sent (a path parameter, a header):
     * JSON needs valid UTF-8, so bad bytes become U+FFFD rather than a 500. */
    g_autofree char *msg = g_utf8_make_valid(raw, -1);
    sig_reply_json(r, status, json_pack("{s:s, s:s}", "error", code, "message", msg));
}

void
sig_reply_store_error(SigReq *r, const GError *err)
{
    if (!err || err->domain != STORE_ERROR) {
        sig_reply_error(r, 500, "internal", "%s", err ? err->message : "unknown error");
        return;
    }
    switch ((StoreErrorCode)err->code) {
    case STORE_ERROR_NOT_FOUND: sig_reply_error(r, 404, "not_found", "%s", err->message); return;
    case STORE_ERROR_EXISTS: sig_reply_error(r, 409, "conflict", "%s", err->message); return;
    case STORE_ERROR_CONFLICT: sig_reply_error(r, 409, "conflict", "%s", err->message); return;
    case STORE_ERROR_TEACHER_OFFLINE:
        sig_reply_error(r, 409, "teacher_offline", "%s", err->message);
        return;
    case STORE_ERROR_TEACHER_BUSY:
        sig_reply_error(r, 409, "teacher_busy", "%s", err->message);
        return;
    case STORE_ERROR_BAD_STATE:
        sig_reply_error(r, 409, "invalid_transition", "%s", err->message);
        return;
    case STORE_ERROR_BUSY:
        sig_req_header(r, "Retry-After", "1");
        sig_reply_error(r, 503, "database_busy", "the database is busy; retry");
        return;
    case STORE_ERROR_FULL:
        sig_req_header(r, "Retry-After", "60");
        sig_reply_error(r, 503, "storage_full", "the server's disk is full");
        return;
    case STORE_ERROR_UNAVAILABLE:
    case STORE_ERROR_FENCED:
        /* Nothing was written; the node reconnects (or registers again)
         * by itself. */
        sig_req_header(r, "Retry-After", "2");
        sig_reply_error(r, 503, "database_unavailable",
                        "the database cannot be reached now; retry");
        return;
    case STORE_ERROR_FAILED: break;
    }
    g_autofree char *path = sig_log_escape(r->path);
    g_warning("storage error on %s %s: %s", r->method, path, err->message);
    sig_reply_error(r, 500, "internal", "a storage error occurred");
}

void
sig_req_header(SigReq *r, const char *name, const char *value)
{
    g_ptr_array_add(r->headers, g_strdup(name));
    g_ptr_array_add(r->headers, g_strdup(value));
}

/* -------------------------------------------------------------- requests */

const char *
sig_req_get_header(SigReq *r, const char *name)
{
    if (r->conn)
        return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
    for (guint i = 0; r->fake_headers && r->fake_headers[i]; i += 2)
        if (!g_ascii_strcasecmp(r->fake_headers[i], name))
            return r->fake_headers[i + 1];
    return NULL;
}

const char *
sig_req_query(SigReq *r, const char *name)
{
    return r->conn ? MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name) : NULL;
}

gint64
sig_req_id(SigReq *r, guint i)
{
    gint64 v = 0;
    if (i >= r->n_params || !g_ascii_string_to_signed(r->params[i], 10, 1, G_MAXINT64, &v, NULL)) {
        sig_reply_error(r, 400, "bad_id", "'%s' is not a valid id",
                        i < r->n_params ? r->params[i] : "");
        return 0;
    }
    return v;
}

json_t *
sig_req_json(SigReq *r)
{
    if (r->json)
        return r->json;
    /* Exactly application/json (parameters allowed): a form or text/plain
     * body is what a cross-site page can send without asking. */
    const char *ct = sig_req_get_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
    gsize n = ct ? strcspn(ct, ";") : 0;
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (!ct || n != 16 || g_ascii_strncasecmp(ct, "application/json", 16) != 0) {
        sig_reply_error(r, 415, "unsupported_media_type", "the body must be application/json");
        return NULL;
    }
    json_error_t err;
    json_t *j = json_loadb(r->body->str, r->body->len, JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        sig_reply_error(r, 400, "bad_json", "malformed JSON at line %d column %d: %s", err.line,
                        err.column, err.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        sig_reply_error(r, 400, "bad_json", "the body must be a JSON object");
        return NULL;
    }
    r->json = j;
    return j;
}

const char *
sig_req_string(SigReq *r, json_t *obj, const char *key, gsize max, gboolean required)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required)
            sig_reply_error(r, 400, "missing_field", "field '%s' is required", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        sig_reply_error(r, 400, "bad_field", "field '%s' must be a string", key);
        return NULL;
    }
    const char *s = json_string_value(v);
    /* jansson guarantees valid UTF-8 and rejects embedded NULs in keys; a
     * string value may still hold \u0000, which we refuse. */
    if (strlen(s) != json_string_length(v)) {
        sig_reply_error(r, 400, "bad_field", "field '%s' contains a NUL", key);
        return NULL;
    }
    glong n = g_utf8_strlen(s, -1);
    if ((required && n == 0) || (gsize)n > max) {
        sig_reply_error(r, 400, "bad_field",
                        "field '%s' must be %s1 to %" G_GSIZE_FORMAT " characters", key,
                        required ? "" : "0 or ", max);
        return NULL;
    }
    return s;
}

static const char *
skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

gboolean
sig_etag_match(const char *header, const char *etag)
{
    const char *p = skip_ows(header);
    if (*p == '*')
        return *skip_ows(p + 1) == '\0';
    gsize want = strlen(etag);
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return FALSE;
        gboolean weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        if (*p != '"')
            return FALSE;
        const char *end = strchr(p + 1, '"');
        if (!end)
            return FALSE;
        if (!weak && (gsize)(end - p - 1) == want && !memcmp(p + 1, etag, want))
            return TRUE;
        p = skip_ows(end + 1);
        if (*p && *p != ',')
            return FALSE;
    }
}

gboolean
sig_parse_event_id(const char *value, gint64 *seq)
{
    *seq = -1;
    if (!value || !*value)
        return TRUE;
    gint64 v;
    if (!g_ascii_string_to_signed(value, 10, 0, G_MAXINT64, &v, NULL))
        return FALSE;
    *seq = v;
    return TRUE;
}

/* The connection is suspended while anything holds it: the handler
 * (sig_req_suspend) or a step asleep in a fiber. */
static void
hold(SigReq *r)
{
    if (r->holds++ == 0 && r->conn) /* NULL in the in-process fuzz harness */
        MHD_suspend_connection(r->conn);
}

static void
unhold(SigReq *r)
{
    g_return_if_fail(r->holds > 0);
    if (--r->holds > 0 || !r->conn)
        return;
    MHD_resume_connection(r->conn);
    /* In external-epoll mode MHD only notices a resumed connection on its
     * next MHD_run(); the epoll fd does not become readable for it. */
    sig_http_kick(r->http);
}

void
sig_req_suspend(SigReq *r)
{
    g_return_if_fail(!r->suspended);
    r->suspended = TRUE;
    hold(r);
}

void
sig_req_resume(SigReq *r)
{
    g_return_if_fail(r->suspended);
    r->suspended = FALSE;
    unhold(r);
}

/* On PostgreSQL a step that needs the database (finding the session, the
 * handler) runs in a fiber: while it waits for a reply its request is
 * suspended and the loop serves everything else. */
static void
step_in_fiber(gpointer data)
{
    SigReq *r = data;
    r->step(r);
}

static void
step_done(gpointer data)
{
    SigReq *r = data;
    if (r->in_fiber) {
        r->in_fiber = FALSE;
        unhold(r);
    }
}

static void
run_step(SigReq *r, void (*step)(SigReq *r))
{
    if (!sig_task_fibers(r->app)) {
        step(r);
        return;
    }
    r->step = step;
    if (!fiber_run(step_in_fiber, r, step_done)) {
        r->in_fiber = TRUE;
        hold(r);
    }
}

void
sig_http_kick(SigHttp *h)
{
    h->kick = TRUE;
}

/* ---------------------------------------------------------------- router */

gboolean
sig_route_match(const char *pattern, const char *path, char **params, guint max, guint *n_out)
{
    guint n = 0;
    const char *p = pattern, *u = path;
    while (*p && *u) {
        if (*p == '{') {
            const char *pe = strchr(p, '}');
            const char *ue = strchr(u, '/');
            if (!ue)
                ue = u + strlen(u);
            if (ue == u || n >= max || !pe)
                goto fail;
            params[n++] = g_strndup(u, ue - u);
            p = pe + 1;
            u = ue;
            continue;
        }
        if (*p != *u)
            goto fail;
        p++;
        u++;
    }
    if (*p || *u)
        goto fail;
    *n_out = n;
    return TRUE;
fail:
    while (n > 0)
        g_clear_pointer(&params[--n], g_free);
    *n_out = 0;
    return FALSE;
}

/* Matches PATH against PATTERN; on success fills r->params. */
static gboolean
match(const char *pattern, const char *path, SigReq *r)
{
    return sig_route_match(pattern, path, r->params, G_N_ELEMENTS(r->params), &r->n_params);
}

static void
clear_params(SigReq *r)
{
    for (guint i = 0; i < G_N_ELEMENTS(r->params); i++)
        g_clear_pointer(&r->params[i], g_free);
    r->n_params = 0;
}

/* Finds the route; on a miss answers 404 or 405 with Allow. */
static gboolean
route(SigHttp *h, SigReq *r)
{
    const char *method = strcmp(r->method, "HEAD") == 0 ? "GET" : r->method;
    g_autoptr(GString) allow = g_string_new(NULL);
    for (guint i = 0; i < h->n_routes; i++) {
        const SigRoute *rt = &h->routes[i];
        clear_params(r);
        if (!match(rt->pattern, r->path, r))
            continue;
        if (strcmp(rt->method, method) == 0) {
            r->route = rt;
            return TRUE;
        }
        if (!strstr(allow->str, rt->method)) {
            if (allow->len)
                g_string_append(allow, ", ");
            g_string_append(allow, rt->method);
            if (strcmp(rt->method, "GET") == 0)
                g_string_append(allow, ", HEAD");
        }
    }
    clear_params(r);
    if (allow->len) {
        sig_req_header(r, MHD_HTTP_HEADER_ALLOW, allow->str);
        sig_reply_error(r, 405, "method_not_allowed", "%s is not allowed on %s", r->method,
                        r->path);
    } else {
        sig_reply_error(r, 404, "not_found", "no such resource");
    }
    return FALSE;
}

/* --------------------------------------------------------------- handler */

char *
sig_log_escape(const char *s)
{
    GString *out = g_string_new(NULL);
    for (const unsigned char *p = (const unsigned char *)s; *p && out->len < 200; p++) {
        if (*p < 0x20 || *p == 0x7f || *p == '\\')
            g_string_append_printf(out, "\\x%02x", *p);
        else
            g_string_append_c(out, (char)*p);
    }
    return g_string_free(out, FALSE);
}

/* libmicrohttpd's unescaping, made strict: a path or query value that
 * decodes to a NUL (%00) or to bytes that are not UTF-8 becomes "" instead.
 * Left as MHD decodes it, "/recordings/1/teacher.webm%00.txt" reached the
 * handlers as ".../teacher.webm" (C strings end at the NUL), and invalid
 * UTF-8 went on into JSON, logs and GVariant strings.  An empty path is
 * refused with 400 in req_begin(); an empty query value is a missing one. */
static size_t
unescape_strict(void *cls, struct MHD_Connection *c, char *val)
{
    size_t n = MHD_http_unescape(val);
    if (memchr(val, '\0', n) || !g_utf8_validate(val, (gssize)n, NULL)) {
        val[0] = '\0';
        return 0;
    }
    return n;
}

/* ------------------------------------------------------- client address */

static void
sockaddr_text(const struct sockaddr *sa, char *out, gsize size)
{
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
    else
        g_strlcpy(out, "unknown", size);
}

static gboolean
is_trusted(SigHttp *h, const char *addr)
{
    if (!h->trusted->len)
        return FALSE;
    g_autoptr(GInetAddress) a = g_inet_address_new_from_string(addr);
    for (guint i = 0; a && i < h->trusted->len; i++)
        if (g_inet_address_mask_matches(h->trusted->pdata[i], a))
            return TRUE;
    return FALSE;
}

/* One hop of X-Forwarded-For ("203.0.113.7", "[2001:db8::1]:443") or of
 * Forwarded's for= ("for=\"[2001:db8::1]:4711\"", "for=198.51.100.17"), as
 * a plain address; NULL if it is none (unknown, obfuscated, garbage). */
static char *
hop_address(const char *hop, gboolean forwarded)
{
    g_autofree char *v = g_strstrip(g_strdup(hop));
    char *p = v;
    if (forwarded) {
        g_auto(GStrv) kv = g_strsplit(v, ";", -1);
        char *f = NULL;
        for (guint i = 0; kv[i] && !f; i++) {
            char *x = g_strstrip(kv[i]);
            if (!g_ascii_strncasecmp(x, "for=", 4))
                f = g_strdup(x + 4);
        }
        if (!f)
            return NULL;
        g_free(v);
        v = f;
        p = v;
        if (*p == '"') {
            p++;
            char *q = strchr(p, '"');
            if (q)
                *q = '\0';
        }
    }
    if (*p == '[') { /* [v6] or [v6]:port */
        p++;
        char *q = strchr(p, ']');
        if (!q)
            return NULL;
        *q = '\0';
    } else if (strchr(p, '.') && strchr(p, ':')) {
        *strchr(p, ':') = '\0'; /* v4:port */
    }
    g_autoptr(GInetAddress) a = g_inet_address_new_from_string(p);
    return a ? g_inet_address_to_string(a) : NULL;
}

typedef struct {
    GPtrArray *xff, *fwd; /* hops in order, as sent */
} Hops;

static enum MHD_Result
collect_hops(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    Hops *hp = cls;
    GPtrArray *into = !g_ascii_strcasecmp(key, "X-Forwarded-For") ? hp->xff
                      : !g_ascii_strcasecmp(key, "Forwarded")     ? hp->fwd
                                                                  : NULL;
    if (into && value) {
        g_auto(GStrv) parts = g_strsplit(value, ",", -1);
        for (guint i = 0; parts[i]; i++)
            g_ptr_array_add(into, g_strdup(parts[i]));
    }
    return MHD_YES;
}

/* From a trusted proxy only: the client is the right-most hop of
 * X-Forwarded-For (else Forwarded) that is not itself a trusted proxy.
 * Everything else keeps the socket's address. */
static void
client_address(SigHttp *h, SigReq *r)
{
    if (!is_trusted(h, r->peer))
        return;
    Hops hp = {g_ptr_array_new_with_free_func(g_free), g_ptr_array_new_with_free_func(g_free)};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_hops, &hp);
    gboolean forwarded = hp.xff->len == 0;
    GPtrArray *hops = forwarded ? hp.fwd : hp.xff;
    g_autofree char *client = NULL;
    for (guint i = hops->len; i > 0 && !client; i--) {
        char *a = hop_address(hops->pdata[i - 1], forwarded);
        if (!a)
            break; /* a hop we cannot read: trust nothing left of it */
        if (!is_trusted(h, a) || i == 1)
            client = a; /* the first untrusted one, or the left-most */
        else
            g_free(a);
    }
    if (client)
        g_strlcpy(r->peer, client, sizeof r->peer);
    g_ptr_array_unref(hp.xff);
    g_ptr_array_unref(hp.fwd);
}

/* The per-address connection limit (per-ip-conn-limit), by socket address;
 * trusted proxies are exempt (they carry many clients). */
static enum MHD_Result
on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
    SigHttp *h = cls;
    char a[64];
    sockaddr_text(addr, a, sizeof a);
    if (is_trusted(h, a))
        return MHD_YES;
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(h->per_ip, a));
    return n < (guint)h->app->cfg->per_ip_conn_limit ? MHD_YES : MHD_NO;
}

static void
on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
              enum MHD_ConnectionNotificationCode code)
{
    SigHttp *h = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char a[64];
    sockaddr_text(ci ? ci->client_addr : NULL, a, sizeof a);
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(h->per_ip, a));
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        g_hash_table_insert(h->per_ip, g_strdup(a), GUINT_TO_POINTER(n + 1));
    else if (n > 1)
        g_hash_table_insert(h->per_ip, g_strdup(a), GUINT_TO_POINTER(n - 1));
    else
        g_hash_table_remove(h->per_ip, a);
}

/* ------------------------------------------------------------- requests */

/* "/n/<this node>/rest" is "/rest": the entry point routes the prefix to
 * this node and strips it, and a client that came straight here with it
 * (a Location of ours, no entry point) means the same. */
static const char *
own_path(SigHttp *h, const char *url)
{
    const char *id = h->app->cfg->node_id;
    if (!id || !*id || !g_str_has_prefix(url, "/n/"))
        return url;
    gsize n = strlen(id);
    if (strncmp(url + 3, id, n) == 0 && url[3 + n] == '/')
        return url + 3 + n;
    return url;
}

static SigReq *
req_new(SigHttp *h, struct MHD_Connection *c, const char *url, const char *method)
{
    SigReq *r = g_new0(SigReq, 1);
    r->app = h->app;
    r->http = h;
    r->conn = c;
    r->method = method; /* MHD keeps it for the request's lifetime */
    r->path = g_strdup(own_path(h, url));
    r->body = g_string_new(NULL);
    r->headers = g_ptr_array_new_with_free_func(g_free);
    r->t_start = g_get_monotonic_time();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    sockaddr_text(ci ? ci->client_addr : NULL, r->peer, sizeof r->peer);
    client_address(h, r);
    return r;
}

void
sig_req_free(SigReq *r)
{
    if (r->data_free)
        r->data_free(r->data);
    clear_params(r);
    g_free(r->path);
    g_string_free(r->body, TRUE);
    json_decref(r->json);
    store_user_free(r->user);
    g_free(r->token_hash);
    if (r->response)
        MHD_destroy_response(r->response);
    g_ptr_array_unref(r->headers);
    g_free(r);
}

/* Headers every reply carries, then the handler's own. */
static enum MHD_Result
queue(SigReq *r)
{
    struct MHD_Response *resp = r->response;
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    /* Which node answered, behind the entry point (haproxy). */
    if (r->app->cfg->node_id && *r->app->cfg->node_id)
        MHD_add_response_header(resp, "X-Consultd-Node", r->app->cfg->node_id);
    if (!MHD_get_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    for (guint i = 0; i + 1 < r->headers->len; i += 2)
        MHD_add_response_header(resp, r->headers->pdata[i], r->headers->pdata[i + 1]);
    r->queued = TRUE;
    return MHD_queue_response(r->conn, r->status, resp);
}

/* The first call: everything that can be decided from the headers alone. */
/* Whether a request that carries the session cookie proves it comes from
 * our own pages: reads always do; a write (any method but GET, HEAD,
 * OPTIONS) needs Origin equal to public-url's origin or Sec-Fetch-Site:
 * same-origin.  SameSite=Strict alone lets a sibling subdomain of the
 * school post with the cookie.  Bearer tokens are not sent by browsers on
 * their own and need nothing. */
static gboolean
same_origin(SigReq *r)
{
    if (!strcmp(r->method, "GET") || !strcmp(r->method, "HEAD") || !strcmp(r->method, "OPTIONS"))
        return TRUE;
    const char *site = sig_req_get_header(r, "Sec-Fetch-Site");
    if (site && !strcmp(site, "same-origin"))
        return TRUE;
    const char *origin = sig_req_get_header(r, "Origin");
    if (!origin)
        return FALSE;
    const char *pub = r->app->cfg->public_url;
    const char *host = strstr(pub, "://");
    gsize len = host ? (gsize)(host + 3 - pub) + strcspn(host + 3, "/") : strlen(pub);
    return strlen(origin) == len && g_ascii_strncasecmp(origin, pub, len) == 0;
}

static void
req_begin(SigReq *r)
{
    SigHttp *h = r->http;
    if (r->path[0] != '/') { /* unescape_strict() refused it */
        sig_reply_error(r, 400, "bad_path", "the path is not UTF-8 or holds a NUL (%%00)");
        return;
    }
    if (!route(h, r))
        return;
    const char *cl = sig_req_get_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    guint64 len = 0;
    if (cl && (!g_ascii_string_to_unsigned(cl, 10, 0, G_MAXUINT64, &len, NULL) ||
               len > (guint64)h->app->cfg->max_body)) {
        sig_req_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
        sig_reply_error(r, 413, "body_too_large",
                        "the body is larger than %" G_GINT64_FORMAT " bytes",
                        h->app->cfg->max_body);
        return;
    }
    g_autoptr(GError) err = NULL;
    if (r->route->flags & SIG_ROUTE_PUBLIC) {
        h->identify(r, NULL); /* optional: public routes may use the user */
        return;
    }
    if (!h->identify(r, &err)) {
        if (err)
            sig_reply_store_error(r, err);
        else
            sig_reply_error(r, 401, "unauthorized", "log in first");
        return;
    }
    if (!(r->route->roles & r->user->role)) {
        sig_reply_error(r, 403, "forbidden", "a %s may not do this",
                        store_role_name(r->user->role));
        return;
    }
    if (r->cookie_session && !same_origin(r))
        sig_reply_error(r, 403, "cross_origin",
                        "a write with the session cookie must come from this server's pages");
}

static enum MHD_Result
on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
    SigHttp *h = cls;
    SigReq *r = *con_cls;

    if (!r) {
        r = req_new(h, c, url, method);
        *con_cls = r;
        h->in_flight++;
        run_step(r, req_begin);
        r->first_again = r->holds > 0;
        return r->response && !r->holds ? queue(r) : MHD_YES;
    }
    if (r->queued || r->holds)
        return MHD_YES;
    if (r->first_again) {
        /* A connection suspended in the first call gets the first call
         * again when resumed; the body and the last call follow. */
        r->first_again = FALSE;
        return r->response ? queue(r) : MHD_YES;
    }
    if (*upload_data_size > 0) {
        gsize room = (gsize)h->app->cfg->max_body - r->body->len;
        if (r->too_large || *upload_data_size > room) {
            /* A chunked body grew past the cap: stop keeping it.  The rest
             * is read and dropped, and 413 goes out when it ends
             * (libmicrohttpd 0.9.75 cannot send a response in the middle of
             * an upload: tried, it only closes).  A sender that goes on
             * past four times the cap (at least 64 KiB) is cut off. */
            r->too_large = TRUE;
            g_string_truncate(r->body, 0);
            r->dropped += *upload_data_size;
            if (r->dropped > MAX(4 * (guint64)h->app->cfg->max_body, 65536)) {
                *upload_data_size = 0;
                return MHD_NO;
            }
        } else {
            g_string_append_len(r->body, upload_data, *upload_data_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!r->handled) {
        r->handled = TRUE;
        if (r->too_large) {
            sig_req_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
            sig_reply_error(r, 413, "body_too_large",
                            "the body is larger than %" G_GINT64_FORMAT " bytes",
                            h->app->cfg->max_body);
        } else {
            run_step(r, r->route->handler);
        }
    }
    if (r->response && !r->holds)
        return queue(r);
    if (!r->holds) {
        g_critical("http: %s %s returned without a reply", r->method, r->path);
        sig_reply_error(r, 500, "internal", "the handler gave no reply");
        return queue(r);
    }
    return MHD_YES;
}

static void
on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
             enum MHD_RequestTerminationCode toe)
{
    SigHttp *h = cls;
    SigReq *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    h->in_flight--;
    double secs = (g_get_monotonic_time() - r->t_start) / 1e6;
    const char *pattern = r->route ? r->route->pattern : "unmatched";
    guint flags = r->route ? r->route->flags : 0;
    unsigned status = r->queued ? r->status : 0; /* 0: closed before a reply */
    sig_metrics_http(h->app->metrics, pattern, status, secs, !(flags & SIG_ROUTE_STREAM));
    if (!(flags & SIG_ROUTE_NO_LOG)) {
        g_autofree char *path = sig_log_escape(r->path);
        g_info("%s %s %u %.1fms %s%s", r->method, path, status, secs * 1000, r->peer,
               toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
    }
    sig_req_free(r);
}

/* ----------------------------------------------------------------- start */

static gboolean
parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *len, GError **error)
{
    g_autoptr(GSocketConnectable) na = g_network_address_parse(listen, 0, error);
    if (!na)
        return FALSE;
    const char *host = g_network_address_get_hostname(G_NETWORK_ADDRESS(na));
    guint16 port = g_network_address_get_port(G_NETWORK_ADDRESS(na));
    g_autoptr(GInetAddress) ia = g_inet_address_new_from_string(host);
    if (!ia) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "listen: '%s' is not an IP address", host);
        return FALSE;
    }
    g_autoptr(GSocketAddress) sa = g_inet_socket_address_new(ia, port);
    *len = g_socket_address_get_native_size(sa);
    return g_socket_address_to_native(sa, ss, sizeof *ss, error);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    g_strchomp(msg);
    g_debug("libmicrohttpd: %s", msg);
}

SigHttp *
sig_http_start(SigApp *app, const char *listen, const SigRoute *routes, guint n_routes,
               SigIdentifyFunc identify, GError **error)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (!parse_listen(listen, &ss, &sslen, error))
        return NULL;
    SigHttp *h = g_new0(SigHttp, 1);
    h->app = app;
    h->routes = routes;
    h->n_routes = n_routes;
    h->identify = identify;
    h->trusted = g_ptr_array_new_with_free_func(g_object_unref);
    g_auto(GStrv) proxies = g_strsplit(app->cfg->trusted_proxies, ",", -1);
    for (guint i = 0; proxies[i]; i++) {
        GInetAddressMask *m = *g_strstrip(proxies[i]) ? sig_config_parse_cidr(proxies[i]) : NULL;
        if (m)
            g_ptr_array_add(h->trusted, m);
    }
    h->per_ip = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(
        flags, 0, on_accept, h, on_access, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)app->cfg->conn_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)app->cfg->conn_limit, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_UNESCAPE_CALLBACK, unescape_strict, NULL,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (!h->d) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "cannot listen on %s (address in use or not permitted)", listen);
        g_ptr_array_unref(h->trusted);
        g_hash_table_destroy(h->per_ip);
        g_free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *pi = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = pi ? pi->port : 0;
    h->src = g_source_new(&mhd_source_funcs, sizeof(MhdSource));
    MhdSource *m = (MhdSource *)h->src;
    m->h = h;
    m->deadline = -1;
    m->tag = g_source_add_unix_fd(h->src, di->epoll_fd, G_IO_IN);
    g_source_set_name(h->src, "libmicrohttpd");
    g_source_attach(h->src, NULL);
    return h;
}

void
sig_http_quiesce(SigHttp *h)
{
    /* Take in first what already waits in the listen backlog: those
     * clients have connected and sent their request, and closing the
     * listen socket would reset them (seen as a flaky SIGTERM test). */
    for (int i = 0; i < 64; i++) {
        guint before = sig_http_connections(h);
        MHD_run(h->d);
        if (sig_http_connections(h) <= before)
            break;
    }
    MHD_socket s = MHD_quiesce_daemon(h->d);
    if (s != MHD_INVALID_SOCKET)
        close(s);
}

guint
sig_http_connections(SigHttp *h)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

guint
sig_http_in_flight(SigHttp *h)
{
    return h->in_flight;
}

guint16
sig_http_port(SigHttp *h)
{
    return h->port;
}

void
sig_http_stop(SigHttp *h)
{
    if (!h)
        return;
    if (h->src) {
        g_source_destroy(h->src);
        g_source_unref(h->src);
    }
    MHD_stop_daemon(h->d);
    g_ptr_array_unref(h->trusted);
    g_hash_table_destroy(h->per_ip);
    g_free(h);
}
