/* accounts.c - see accounts.h.
 *
 * Session tokens are 32 random bytes as 64 hex characters, handed to the
 * client once (body and HttpOnly cookie) and stored only as their SHA-256.
 *
 * Login is limited twice, by the client's address (http.c: the socket
 * peer, or behind a trusted proxy the forwarded client):
 *   - attempts per address per minute (login-ip-per-min), sized so that a
 *     class behind one NAT logs in at once;
 *   - failures per (username, address): the first three are free, then
 *     each doubles a wait (1 s, 2 s, ... 60 s), and login-user-fail-per-15min
 *     of them lock the pair for the rest of its 15 minutes.  Keyed by the
 *     pair, so that nobody can lock an account out for its owner elsewhere.
 * An attempt counts as a failure when it is queued, before hashing (so a
 * burst of concurrent guesses cannot all pass the check), and a success
 * clears the pair.  A login for an unknown user verifies against a dummy
 * hash, so the answer takes as long as for a real one.
 */
#include "api/accounts.h"

#include <gio/gio.h>
#include <sodium.h>
#include <string.h>

#include "api/stream.h"
#include "core/events.h"
#include "core/ratelimit.h"

/* The session cookie: __Host- prefixed (Secure, Path=/, no Domain: no
 * sibling subdomain can set or read it) when the server is reached over
 * https; browsers refuse that prefix without TLS, so plain http keeps the
 * bare name. */
static gboolean
secure(SigApp *app)
{
    return g_str_has_prefix(app->cfg->public_url, "https:");
}

static const char *
cookie_name(SigApp *app)
{
    return secure(app) ? "__Host-consultd_session" : "consultd_session";
}
#define HASH_QUEUE_MAX 256

struct SigAuth {
    SigApp *app;
    GThreadPool *pool;
    char *dummy_hash;
    SigLimiter *ip_limit;
    SigLimiter *fail_limit; /* per (username, client address) */
    SigBackoffRule fail_rule;
};

typedef enum {
    JOB_VERIFY, /* login: PASSWORD against HASH */
    JOB_HASH,   /* a new user: HASH of PASSWORD */
    JOB_SET,    /* an admin's reset: HASH of PASSWORD */
    JOB_CHANGE  /* the user's own: PASSWORD against HASH, then HASH of NEW_PASSWORD */
} JobKind;

typedef struct {
    JobKind kind;
    SigAuth *a;
    SigReq *r;
    char *password;
    char *new_password; /* JOB_CHANGE */
    char *hash;         /* JOB_VERIFY, JOB_CHANGE: stored hash; JOB_HASH, JOB_SET: result */
    gint64 target;      /* JOB_SET, JOB_CHANGE: whose password */
    gboolean ok;
    StoreUser *user; /* JOB_VERIFY: the user, if it exists */
    char *username;  /* JOB_VERIFY: as typed, for the log */
    char *fail_key;  /* JOB_VERIFY: (username, address), for the failure limiter */
} HashJob;

static void
job_free(HashJob *j)
{
    for (char **p = (char *[]){j->password, j->new_password, NULL}; *p; p++) {
        sodium_memzero(*p, strlen(*p));
        g_free(*p);
    }
    g_free(j->hash);
    g_free(j->username);
    g_free(j->fail_key);
    store_user_free(j->user);
    g_free(j);
}

char *
sig_auth_hash_password(const char *password)
{
    char out[crypto_pwhash_STRBYTES];
#ifdef CONSULTD_FUZZ
    /* libFuzzer builds only: cheap hashes, so that a valid login is not
     * 70 ms of argon2 per input. */
    const unsigned long long ops = crypto_pwhash_OPSLIMIT_MIN;
    const size_t mem = crypto_pwhash_MEMLIMIT_MIN;
#else
    const unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    const size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
#endif
    if (crypto_pwhash_str(out, password, strlen(password), ops, mem) != 0)
        return NULL;
    return g_strdup(out);
}

gboolean
sig_auth_verify_password(const char *hash, const char *password)
{
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

char *
sig_auth_token_hash(const char *token)
{
    return g_compute_checksum_for_string(G_CHECKSUM_SHA256, token, -1);
}

static void job_done_verify(HashJob *j);
static void job_done_hash(HashJob *j);
static void job_done_password(HashJob *j);

static gboolean
job_done(gpointer data)
{
    HashJob *j = data;
    if (j->kind == JOB_VERIFY)
        job_done_verify(j);
    else if (j->kind == JOB_HASH)
        job_done_hash(j);
    else
        job_done_password(j);
    sig_req_resume(j->r);
    job_free(j);
    return G_SOURCE_REMOVE;
}

/* Runs on a pool thread: touches nothing but the job. */
static void
job_run(gpointer data, gpointer user_data)
{
    HashJob *j = data;
    if (j->kind == JOB_VERIFY) {
        j->ok = sig_auth_verify_password(j->hash, j->password);
    } else if (j->kind == JOB_CHANGE) {
        j->ok = sig_auth_verify_password(j->hash, j->password);
        g_clear_pointer(&j->hash, g_free);
        if (j->ok)
            j->hash = sig_auth_hash_password(j->new_password);
    } else {
        j->hash = sig_auth_hash_password(j->password);
        j->ok = j->hash != NULL;
    }
    g_main_context_invoke(NULL, job_done, j);
}

static HashJob *
job_new(SigReq *r, JobKind kind, const char *password)
{
    HashJob *j = g_new0(HashJob, 1);
    j->kind = kind;
    j->a = r->app->auth;
    j->r = r;
    j->password = g_strdup(password);
    return j;
}

/* Queues J and suspends its request; on overload answers 503 instead. */
static void
job_start(HashJob *j)
{
    if (!j->a->pool) { /* sig_auth_drain(): shutting down */
        sig_req_header(j->r, "Retry-After", "2");
        sig_reply_error(j->r, 503, "shutting_down", "the server is shutting down; retry");
        job_free(j);
        return;
    }
    if (g_thread_pool_unprocessed(j->a->pool) >= HASH_QUEUE_MAX) {
        sig_req_header(j->r, "Retry-After", "1");
        sig_reply_error(j->r, 503, "overloaded", "too many logins at once; retry");
        job_free(j);
        return;
    }
    sig_req_suspend(j->r);
    g_thread_pool_push(j->a->pool, j, NULL);
}

SigAuth *
sig_auth_new(SigApp *app)
{
    SigAuth *a = g_new0(SigAuth, 1);
    a->app = app;
    /* Two threads: the machine has two cores and each hash is memory-hard. */
    a->pool = g_thread_pool_new(job_run, a, 2, FALSE, NULL);
    char rnd[33];
    randombytes_buf(rnd, 32);
    for (int i = 0; i < 32; i++)
        rnd[i] = 'a' + (rnd[i] & 15);
    rnd[32] = 0;
    a->dummy_hash = sig_auth_hash_password(rnd);
    a->ip_limit = sig_limiter_new((guint)app->cfg->login_ip_per_min, 60);
    a->fail_rule = (SigBackoffRule){3, (guint)app->cfg->login_user_fail_per_15min, 60, 15 * 60};
    a->fail_limit = sig_limiter_new(a->fail_rule.max, a->fail_rule.window_s);
    return a;
}

void
sig_auth_drain(SigAuth *a)
{
    if (!a || !a->pool)
        return;
    /* Every queued job runs (the pool waits for them), and its completion,
     * queued on the main context, answers and resumes its request: no
     * request stays suspended when HTTP stops (libmicrohttpd aborts on one
     * that is).  Logins that come meanwhile get 503. */
    GThreadPool *pool = g_steal_pointer(&a->pool);
    g_thread_pool_free(pool, FALSE, TRUE);
    while (g_main_context_iteration(NULL, FALSE))
        ;
}

void
sig_auth_free(SigAuth *a)
{
    if (!a)
        return;
    sig_auth_drain(a);
    g_free(a->dummy_hash);
    sig_limiter_free(a->ip_limit);
    sig_limiter_free(a->fail_limit);
    g_free(a);
}

/* ----------------------------------------------------------- identify */

static gboolean
token_well_formed(const char *t)
{
    if (!t || strlen(t) != 64)
        return FALSE;
    for (const char *p = t; *p; p++)
        if (!g_ascii_isxdigit(*p))
            return FALSE;
    return TRUE;
}

gboolean
sig_auth_identify(SigReq *r, GError **error)
{
    const char *authz = sig_req_get_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    gboolean bearer = authz && g_ascii_strncasecmp(authz, "Bearer ", 7) == 0;
    const char *token =
        bearer ? authz + 7
               : MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, cookie_name(r->app));
    if (!token_well_formed(token))
        return FALSE;
    g_autofree char *th = sig_auth_token_hash(token);
    g_autoptr(GError) err = NULL;
    StoreUser *u = store_session_user(r->app->store, th, store_now_ms(), &err);
    if (!u) {
        if (!g_error_matches(err, STORE_ERROR, STORE_ERROR_NOT_FOUND))
            g_propagate_error(error, g_steal_pointer(&err));
        return FALSE;
    }
    r->user = u;
    r->token_hash = g_steal_pointer(&th);
    r->cookie_session = !bearer;
    return TRUE;
}

/* --------------------------------------------------------------- JSON */

json_t *
sig_user_json(const StoreUser *u)
{
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:o}", "id", (json_int_t)u->id, "username",
                          u->username, "role", store_role_name(u->role), "display_name",
                          u->display_name, "created_at", sig_json_time(u->created_at));
    if (u->role == STORE_ROLE_TEACHER)
        json_object_set_new(j, "intro", json_string(u->intro));
    return j;
}

gboolean
sig_username_valid(const char *username)
{
    gsize n = username ? strlen(username) : 0;
    if (n == 0 || n > 64)
        return FALSE;
    for (const char *p = username; *p; p++)
        if (!(g_ascii_islower(*p) || g_ascii_isdigit(*p) || *p == '.' || *p == '_' || *p == '-'))
            return FALSE;
    return TRUE;
}

/* -------------------------------------------------------------- login */

void
sig_h_login(SigReq *r)
{
    SigAuth *a = r->app->auth;
    json_t *body = sig_req_json(r);
    if (!body)
        return;
    const char *username = sig_req_string(r, body, "username", 64, TRUE);
    if (!username)
        return;
    const char *password = sig_req_string(r, body, "password", SIG_PASSWORD_MAX, TRUE);
    if (!password)
        return;
    guint wait = sig_limiter_hit(a->ip_limit, r->peer);
    if (wait) {
        sig_reply_retry(r, 429, "rate_limited", wait, "too many login attempts from this address");
        return;
    }
    g_autofree char *fail_key = g_strdup_printf("%s\n%s", username, r->peer);
    wait = sig_backoff_wait(a->fail_limit, &a->fail_rule, fail_key);
    if (!wait)
        wait = sig_limiter_hit(a->fail_limit, fail_key); /* a failure until it succeeds */
    if (wait) {
        sig_reply_retry(r, 429, "rate_limited", wait,
                        "too many failed logins for this user from this address");
        return;
    }
    HashJob *j = job_new(r, JOB_VERIFY, password);
    j->username = g_strdup(username);
    j->fail_key = g_steal_pointer(&fail_key);
    j->user = store_user_get_by_name(r->app->store, username, &j->hash, NULL);
    if (!j->user)
        j->hash = g_strdup(a->dummy_hash);
    job_start(j);
}

static void
job_done_verify(HashJob *j)
{
    SigReq *r = j->r;
    SigApp *app = r->app;
    if (!j->ok || !j->user) {
        /* Counted when it was queued. */
        g_autofree char *who = sig_log_escape(j->username);
        g_message("login failed for '%s' from %s", who, r->peer);
        sig_reply_error(r, 401, "invalid_credentials", "wrong username or password");
        return;
    }
    sig_limiter_reset(j->a->fail_limit, j->fail_key);
    /* "demo" is shorter than any password the API accepts: only a seeded
     * account has it, marked or (seeded by an older build) not. */
    if ((j->user->demo || !strcmp(j->password, "demo")) && !app->cfg->demo) {
        g_message("login refused for demo account '%s': this server runs without --demo",
                  j->user->username);
        sig_reply_error(r, 403, "demo_disabled",
                        "demo accounts only work while the server runs with --demo");
        return;
    }
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw);
    char token[65];
    sodium_bin2hex(token, sizeof token, raw, sizeof raw);
    g_autofree char *th = sig_auth_token_hash(token);
    gint64 expires = store_now_ms() + app->cfg->session_ttl * 1000;
    g_autoptr(GError) err = NULL;
    if (!store_session_add(app->store, th, j->user->id, expires, &err)) {
        g_warning("login: cannot store session: %s", err->message);
        sig_reply_store_error(r, err);
        return;
    }
    g_autofree char *cookie = g_strdup_printf(
        "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%" G_GINT64_FORMAT "%s",
        cookie_name(app), token, app->cfg->session_ttl, secure(app) ? "; Secure" : "");
    sig_req_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    sig_reply_json(r, 200,
                   json_pack("{s:s, s:o, s:o}", "token", token, "expires_at",
                             sig_json_time(expires), "user", sig_user_json(j->user)));
    sodium_memzero(token, sizeof token);
}

void
sig_h_logout(SigReq *r)
{
    g_autoptr(GError) err = NULL;
    /* One transaction: the session goes, and a teacher who was online is
     * offline (a busy one stays busy: the consultation goes on). */
    gboolean offline = FALSE;
    if (!store_logout(r->app->store, r->token_hash, r->user->id, &offline, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    if (offline)
        sig_events_kick(r->app);
    sig_streams_close_session(r->app, r->token_hash);
    g_autofree char *gone = g_strdup_printf("%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s",
                                            cookie_name(r->app), secure(r->app) ? "; Secure" : "");
    sig_req_header(r, MHD_HTTP_HEADER_SET_COOKIE, gone);
    sig_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

void
sig_h_me(SigReq *r)
{
    sig_reply_json(r, 200, sig_user_json(r->user));
}

/* -------------------------------------------------------------- users */

void
sig_h_users_list(SigReq *r)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) users = store_user_list(r->app->store, &err);
    if (!users) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < users->len; i++)
        json_array_append_new(arr, sig_user_json(users->pdata[i]));
    sig_reply_json(r, 200, json_pack("{s:o}", "users", arr));
}

/* A new password: at least SIG_PASSWORD_MIN characters; else replies 400. */
static gboolean
new_password_ok(SigReq *r, const char *password)
{
    if (g_utf8_strlen(password, -1) < SIG_PASSWORD_MIN) {
        sig_reply_error(r, 400, "bad_field", "password must be at least %d characters",
                        SIG_PASSWORD_MIN);
        return FALSE;
    }
    return TRUE;
}

typedef struct {
    char *username, *display_name, *intro;
    StoreRole role;
} NewUser;

static void
new_user_free(gpointer p)
{
    NewUser *n = p;
    g_free(n->username);
    g_free(n->display_name);
    g_free(n->intro);
    g_free(n);
}

void
sig_h_users_create(SigReq *r)
{
    json_t *body = sig_req_json(r);
    if (!body)
        return;
    const char *username = sig_req_string(r, body, "username", 64, TRUE);
    const char *password =
        username ? sig_req_string(r, body, "password", SIG_PASSWORD_MAX, TRUE) : NULL;
    const char *role = password ? sig_req_string(r, body, "role", 16, TRUE) : NULL;
    if (!role)
        return;
    const char *display = sig_req_string(r, body, "display_name", 100, FALSE);
    if (r->response)
        return;
    const char *intro = sig_req_string(r, body, "intro", 2000, FALSE);
    if (r->response)
        return;
    if (!sig_username_valid(username)) {
        sig_reply_error(r, 400, "bad_field", "username must be 1-64 of a-z, 0-9, '.', '_' and '-'");
        return;
    }
    if (!new_password_ok(r, password))
        return;
    StoreRole rl = store_role_parse(role);
    if (!rl) {
        sig_reply_error(r, 400, "bad_field", "role must be admin, teacher or student");
        return;
    }
    NewUser *n = g_new0(NewUser, 1);
    n->username = g_strdup(username);
    n->display_name = g_strdup(display && *display ? display : username);
    n->intro = g_strdup(intro ? intro : "");
    n->role = rl;
    r->data = n;
    r->data_free = new_user_free;
    job_start(job_new(r, JOB_HASH, password));
}

static void
job_done_hash(HashJob *j)
{
    SigReq *r = j->r;
    NewUser *n = r->data;
    if (!j->ok) {
        sig_reply_error(r, 503, "unavailable", "could not hash the password");
        return;
    }
    g_autoptr(GError) err = NULL;
    gint64 id = store_user_add(r->app->store, n->username, n->role, n->display_name, n->intro,
                               j->hash, &err);
    if (!id) {
        if (g_error_matches(err, STORE_ERROR, STORE_ERROR_EXISTS))
            sig_reply_error(r, 409, "username_taken", "username '%s' is taken", n->username);
        else
            sig_reply_store_error(r, err);
        return;
    }
    g_message("user %s (%s) created by %s", n->username, store_role_name(n->role),
              r->user->username);
    sig_events_kick(r->app); /* readers' caches: a new teacher may be listed */
    g_autoptr(StoreUser) u = store_user_get(r->app->store, id, NULL);
    g_autofree char *loc = g_strdup_printf("/api/users/%" G_GINT64_FORMAT, id);
    sig_req_header(r, MHD_HTTP_HEADER_LOCATION, loc);
    sig_reply_json(r, 201, sig_user_json(u));
}

void
sig_h_users_delete(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    if (id == r->user->id) {
        sig_reply_error(r, 409, "cannot_delete_self", "an admin cannot delete themself");
        return;
    }
    g_autoptr(GError) err = NULL;
    if (!store_user_delete(r->app->store, id, &err)) {
        if (g_error_matches(err, STORE_ERROR, STORE_ERROR_NOT_FOUND))
            sig_reply_error(r, 404, "not_found", "no user %" G_GINT64_FORMAT, id);
        else
            sig_reply_store_error(r, err);
        return;
    }
    g_message("user %" G_GINT64_FORMAT " deleted by %s", id, r->user->username);
    sig_streams_close_user(r->app, id, NULL);
    sig_events_kick(r->app);
    sig_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

/* ---------------------------------------------------------- passwords */

/* PUT /api/me/password {"current_password", "new_password"}: the user's
 * own change; every other session of theirs ends (and its streams). */
void
sig_h_me_password(SigReq *r)
{
    json_t *body = sig_req_json(r);
    if (!body)
        return;
    const char *current = sig_req_string(r, body, "current_password", SIG_PASSWORD_MAX, TRUE);
    const char *next =
        current ? sig_req_string(r, body, "new_password", SIG_PASSWORD_MAX, TRUE) : NULL;
    if (!next || !new_password_ok(r, next))
        return;
    HashJob *j = job_new(r, JOB_CHANGE, current);
    j->target = r->user->id;
    g_autoptr(StoreUser) u =
        store_user_get_by_name(r->app->store, r->user->username, &j->hash, NULL);
    if (!u) {
        job_free(j);
        sig_reply_error(r, 404, "not_found", "no such user");
        return;
    }
    j->new_password = g_strdup(next);
    job_start(j);
}

/* POST /api/users/{id}/password {"password"}: an admin's reset; every
 * session of that user ends (and its streams). */
void
sig_h_user_password(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    json_t *body = sig_req_json(r);
    if (!body)
        return;
    const char *password = sig_req_string(r, body, "password", SIG_PASSWORD_MAX, TRUE);
    if (!password || !new_password_ok(r, password))
        return;
    HashJob *j = job_new(r, JOB_SET, password);
    j->target = id;
    job_start(j);
}

static void
job_done_password(HashJob *j)
{
    SigReq *r = j->r;
    if (j->kind == JOB_CHANGE && !j->ok) {
        sig_reply_error(r, 403, "invalid_credentials", "the current password is wrong");
        return;
    }
    if (!j->hash) {
        sig_reply_error(r, 503, "unavailable", "could not hash the password");
        return;
    }
    /* A change keeps the session it came with; a reset ends them all. */
    const char *keep = j->kind == JOB_CHANGE ? r->token_hash : NULL;
    g_autoptr(GError) err = NULL;
    if (!store_user_set_password(r->app->store, j->target, j->hash, keep, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    sig_streams_close_user(r->app, j->target, keep);
    g_message("password of user %" G_GINT64_FORMAT " %s by %s", j->target,
              j->kind == JOB_CHANGE ? "changed" : "reset", r->user->username);
    sig_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

/* --------------------------------------------------------------- demo */

typedef struct {
    const char *username;
    StoreRole role;
    const char *display_name;
    const char *intro;
} DemoUser;

static const DemoUser demo_users[] = {
    {"admin", STORE_ROLE_ADMIN, "Administrator", NULL},
    {"teacher1", STORE_ROLE_TEACHER, "Kim Minji",
     "Mathematics, grades 7-9. Ask me about algebra and geometry."},
    {"teacher2", STORE_ROLE_TEACHER, "Lee Junho", "English conversation and essay writing."},
    {"teacher3", STORE_ROLE_TEACHER, "Park Soyeon", "Physics and chemistry; lab reports reviewed."},
    {"student1", STORE_ROLE_STUDENT, "Student One", NULL},
    {"student2", STORE_ROLE_STUDENT, "Student Two", NULL},
    {"student3", STORE_ROLE_STUDENT, "Student Three", NULL},
    {"student4", STORE_ROLE_STUDENT, "Student Four", NULL},
    {"student5", STORE_ROLE_STUDENT, "Student Five", NULL},
};

gboolean
sig_auth_seed_demo(SigApp *app, GError **error)
{
    g_autofree char *hash = NULL;
    guint added = 0;
    for (guint i = 0; i < G_N_ELEMENTS(demo_users); i++) {
        const DemoUser *d = &demo_users[i];
        g_autoptr(StoreUser) have = store_user_get_by_name(app->store, d->username, NULL, NULL);
        gint64 id = have ? have->id : 0;
        if (!id) {
            if (!hash && !(hash = sig_auth_hash_password("demo"))) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot hash");
                return FALSE;
            }
            g_autoptr(GError) err = NULL;
            id = store_user_add(app->store, d->username, d->role, d->display_name, d->intro, hash,
                                &err);
            if (!id && g_error_matches(err, STORE_ERROR, STORE_ERROR_EXISTS)) {
                /* Another node seeding the shared store at the same time. */
                g_clear_pointer(&have, store_user_free);
                have = store_user_get_by_name(app->store, d->username, NULL, error);
                if (!have)
                    return FALSE;
                id = have->id;
            } else if (!id) {
                g_propagate_error(error, g_steal_pointer(&err));
                return FALSE;
            } else {
                added++;
            }
        }
        /* Seeded by an older build too: marked now. */
        if ((!have || !have->demo) && !store_user_mark_demo(app->store, id, error))
            return FALSE;
    }
    fprintf(stderr,
            "consultd: DEMO MODE (%u account%s added now). Log in at %s/ with\n"
            "  admin / demo            (administrator)\n"
            "  teacher1..teacher3 / demo\n"
            "  student1..student5 / demo\n",
            added, added == 1 ? "" : "s", app->cfg->public_url);
    return TRUE;
}
