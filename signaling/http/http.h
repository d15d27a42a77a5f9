/* http.h - libmicrohttpd inside the GLib main loop, requests and replies.
 *
 * The daemon runs without a thread of its own: its epoll fd is a GSource on
 * the main context and MHD_run() is called from the loop, so every handler
 * runs on the loop's thread and may touch application state freely.
 *
 * A handler gets a SigReq, already routed, authenticated and with its whole
 * body read (under the configured cap).  It answers with exactly one
 * sig_reply_*() call.  A handler that has to wait (a password hash on the
 * worker pool, a media worker's answer) calls sig_req_suspend() and later
 * answers with sig_reply_*() followed by sig_req_resume(); the HTTP
 * connection waits, the loop never does.
 */
#pragma once

#include <jansson.h>
#include <microhttpd.h>

#include "core/app.h"
#include "core/json.h"

typedef struct SigReq SigReq;
typedef void (*SigHandler)(SigReq *r);

/* Route flags. */
enum {
    SIG_ROUTE_PUBLIC = 1 << 0, /* no login needed */
    SIG_ROUTE_NO_LOG = 1 << 1, /* not logged per request (probes) */
    SIG_ROUTE_STREAM = 1 << 2, /* long-lived response (SSE): no latency metric */
};

typedef struct SigRoute {
    const char *method;  /* "GET", "POST", ...; GET routes also answer HEAD */
    const char *pattern; /* "/api/teachers/{id}/favorite" */
    SigHandler handler;
    guint roles; /* StoreRole mask allowed; ignored when PUBLIC */
    guint flags;
} SigRoute;

struct SigReq {
    SigApp *app;
    SigHttp *http; /* the server it came to (the API's or the metrics') */
    struct MHD_Connection *conn;
    const SigRoute *route;
    const char *method;
    char *path;
    char *params[4]; /* path parameters, in pattern order */
    guint n_params;
    GString *body;
    json_t *json;                    /* parsed body, owned (sig_req_json) */
    StoreUser *user;                 /* logged-in user or NULL */
    char *token_hash;                /* the session's hash, when logged in */
    gboolean cookie_session;         /* the session came by cookie, not a bearer token */
    const char *const *fake_headers; /* no connection (in-process fuzzing): name, value, ... */
    char peer[64];                   /* client IP address as text */
    gint64 t_start;                  /* monotonic, microseconds */
    unsigned status;
    struct MHD_Response *response;
    GPtrArray *headers; /* name, value, name, value ... */
    gboolean too_large, handled, suspended, queued;
    gboolean in_fiber;    /* a step of it sleeps in a fiber (a database reply) */
    gboolean first_again; /* req_begin() slept: MHD repeats the first call */
    guint holds;          /* reasons the connection is suspended: suspended, in_fiber */
    void (*step)(SigReq *r);
    guint64 dropped; /* body bytes read and thrown away past the cap */
    gpointer data;   /* handler's per-request state */
    GDestroyNotify data_free;
};

/* Finds the caller's session and sets r->user and r->token_hash.  FALSE if
 * there is none or it is invalid; FALSE with ERROR set if it could not be
 * looked up (a 503, not a 401).  HTTP knows nothing above it: the accounts
 * layer gives it this at start (api/accounts.c, sig_auth_identify). */
typedef gboolean (*SigIdentifyFunc)(SigReq *r, GError **error);

/* Starts listening on LISTEN ("ADDR:PORT") with ROUTES (a static table),
 * learning who each caller is from IDENTIFY.  Returns NULL and sets ERROR
 * if the address is bad or cannot be bound. */
SigHttp *sig_http_start(SigApp *app, const char *listen, const SigRoute *routes, guint n_routes,
                        SigIdentifyFunc identify, GError **error);
/* Stops accepting new connections; requests in flight go on. */
void sig_http_quiesce(SigHttp *h);
/* Connections currently open (suspended ones included). */
guint sig_http_connections(SigHttp *h);
/* Requests begun and not yet completed (idle keep-alive connections are
 * not counted). */
guint sig_http_in_flight(SigHttp *h);
void sig_http_stop(SigHttp *h); /* NULL-safe; closes everything. */
/* The port actually bound (useful with port 0). */
guint16 sig_http_port(SigHttp *h);
/* Makes the loop run MHD once soon (after resuming a connection). */
void sig_http_kick(SigHttp *h);

/* Matches PATH against PATTERN ("/a/{id}/b"): on success stores up to MAX
 * newly allocated parameters in PARAMS and their count in *N; on failure
 * stores nothing.  Exposed for tests and fuzzing. */
gboolean sig_route_match(const char *pattern, const char *path, char **params, guint max, guint *n);

/* ---- replies: exactly one per request ---- */
void sig_reply_json(SigReq *r, unsigned status, json_t *body /* stolen */);
/* S as it may go into the log: control characters (a newline that would
 * start a forged log line, escape sequences) and backslashes as \xNN, at
 * most 200 bytes of it.  Newly allocated. */
char *sig_log_escape(const char *s);

void sig_reply_error(SigReq *r, unsigned status, const char *code, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* A 429 or 503 the client may retry: Retry-After SECS and the message
 * "WHAT; retry in SECS s". */
void sig_reply_retry(SigReq *r, unsigned status, const char *code, guint secs, const char *what);
void sig_reply_data(SigReq *r, unsigned status, const char *content_type, const void *data,
                    size_t len); /* copies DATA */
void sig_reply_empty(SigReq *r, unsigned status);
/* Replies with a prepared response (for streams and files); takes it. */
void sig_reply_response(SigReq *r, unsigned status, struct MHD_Response *resp);
/* Adds a header to the reply (before or after sig_reply_*, before it is sent). */
void sig_req_header(SigReq *r, const char *name, const char *value);

/* Maps a STORE_ERROR to its HTTP status and error code: the one place
 * where storage and domain errors become HTTP. */
void sig_reply_store_error(SigReq *r, const GError *err);

/* Frees R and whatever it holds (its reply included, if not sent).  The
 * request-completed callback calls it; the in-process fuzz harness too. */
void sig_req_free(SigReq *r);

/* ---- waiting ---- */
void sig_req_suspend(SigReq *r);
void sig_req_resume(SigReq *r);

/* ---- request helpers ---- */
/* Whether an If-Match value ("*" or a list of entity-tags) matches ETAG
 * (given without its quotes) by strong comparison (RFC 9110 13.1.1): weak
 * tags never match, a malformed list matches nothing. */
gboolean sig_etag_match(const char *header, const char *etag);
/* Parses a Last-Event-ID value: a decimal event number >= 0.  Empty or
 * NULL gives -1 (start from the cursor).  FALSE if malformed. */
gboolean sig_parse_event_id(const char *value, gint64 *seq);
const char *sig_req_get_header(SigReq *r, const char *name);
const char *sig_req_query(SigReq *r, const char *name);
/* Path parameter I as a positive id; on failure replies 400 and returns 0. */
gint64 sig_req_id(SigReq *r, guint i);
/* The body as a JSON object; on failure replies 400 and returns NULL. */
json_t *sig_req_json(SigReq *r);
/* String member KEY of the body: required, 1..MAX characters (UTF-8 code
 * points).  On failure replies 400 and returns NULL.  Borrowed. */
const char *sig_req_string(SigReq *r, json_t *obj, const char *key, gsize max, gboolean required);
