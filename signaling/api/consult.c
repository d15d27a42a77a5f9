/* consult.c - teachers, presence, favorites, consultations, my page.
 *
 * Handlers are thin: parse, check who may act on which object, call one
 * storage command (one transaction: rule + change + event), kick the event
 * dispatcher, answer.  The state machines themselves are documented and
 * enforced in storage/store_domain.c.
 *
 * Timers owned here: the request expiry sweep (requested -> expired after
 * request-timeout) and the presence sweep (an online teacher without an
 * events stream for presence-grace seconds goes offline).
 */
#include "api/consult.h"

#include "api/recordings.h"
#include "api/stream.h"
#include "core/events.h"

#include <string.h>
#include "core/ratelimit.h"
#include "core/task.h"

struct SigConsult {
    SigApp *app;
    SigLimiter *request_limit;
    SigLimiter *write_limit;   /* favorite, presence, profile: per user */
    SigLimiter *message_limit; /* chat messages: per user */
    json_t *teachers;          /* cached list without "favorite", or NULL */
    guint64 teachers_gen;      /* sig_events_generation() it was built at */
    gint64 teachers_at;        /* monotonic us; changes made by other processes
                              * (the CLI) show within TEACHERS_TTL */
    guint expiry_timer;
    guint presence_timer;
    SigTask expiry_task, presence_task;
};

#define INTRO_MAX 2000
#define TEACHERS_TTL (5 * G_USEC_PER_SEC)

/* ------------------------------------------------------------------ JSON */

static json_t *
teacher_json(const StoreTeacher *t, gboolean for_student)
{
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I}", "id", (json_int_t)t->id, "display_name",
                          t->display_name, "intro", t->intro, "status",
                          store_presence_name(t->status), "popularity", (json_int_t)t->popularity,
                          "consultation_count", (json_int_t)t->consultation_count);
    if (for_student)
        json_object_set_new(j, "favorite", json_boolean(t->favorite));
    return j;
}

json_t *
sig_consultation_json(const StoreConsultation *c)
{
    char whip[64], whep[64];
    g_snprintf(whip, sizeof whip, "/whip/consultations/%" G_GINT64_FORMAT, c->id);
    g_snprintf(whep, sizeof whep, "/whep/consultations/%" G_GINT64_FORMAT, c->id);
    /* node_id: where its media lives (several nodes; absent on one). */
    return json_pack(
        "{s:I, s:{s:I, s:s}, s:{s:I, s:s}, s:s, s:o, s:o, s:o, s:s?, s:{s:s, s:s},"
        " s:s?, s:I, s:b}",
        "id", (json_int_t)c->id, "teacher", "id", (json_int_t)c->teacher_id, "display_name",
        c->teacher_name, "student", "id", (json_int_t)c->student_id, "display_name",
        c->student_name, "status", store_consult_status_name(c->status), "requested_at",
        sig_json_time(c->requested_at), "started_at", sig_json_time(c->accepted_at), "ended_at",
        sig_json_time(c->ended_at), "end_reason", *c->end_reason ? c->end_reason : NULL, "media",
        "whip", whip, "whep", whep, "node_id", c->node_id, "messages", (json_int_t)c->messages,
        "from_line", c->from_line);
}

static gboolean
is_student(SigReq *r)
{
    return r->user->role == STORE_ROLE_STUDENT;
}

/* -------------------------------------------------------------- teachers */

/* The teacher list is the hottest read of all (every student page polls
 * it): it is built once per state change (sig_events_generation) and kept;
 * each request then only looks up the student's favorites. */
static json_t *
teachers_cached(SigApp *app, GError **error)
{
    SigConsult *c = app->consult;
    guint64 gen = sig_events_generation(app);
    gint64 now = g_get_monotonic_time();
    if (c->teachers && c->teachers_gen == gen && now - c->teachers_at < TEACHERS_TTL)
        return c->teachers;
    g_autoptr(GPtrArray) ts = store_teacher_list(app->store, 0, -1, error);
    if (!ts)
        return NULL;
    json_t *arr = json_array();
    for (guint i = 0; i < ts->len; i++)
        json_array_append_new(arr, teacher_json(ts->pdata[i], FALSE));
    json_decref(c->teachers);
    c->teachers = arr;
    c->teachers_gen = gen;
    c->teachers_at = now;
    return arr;
}

void
sig_h_teachers_list(SigReq *r)
{
    const char *q = sig_req_query(r, "status");
    if (q && store_presence_parse(q) < 0) {
        sig_reply_error(r, 400, "bad_query", "status must be offline, online or busy");
        return;
    }
    g_autoptr(GError) err = NULL;
    json_t *all = teachers_cached(r->app, &err);
    g_autoptr(GArray) favs = is_student(r) ? store_favorites_of(r->app->store, r->user->id) : NULL;
    if (!all) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(all, i, t)
    {
        if (q && strcmp(json_string_value(json_object_get(t, "status")), q))
            continue;
        json_t *copy = json_copy(t); /* shallow: members are shared, not changed */
        if (favs) {
            gint64 id = json_integer_value(json_object_get(t, "id"));
            gboolean fav = FALSE;
            for (guint k = 0; k < favs->len && !fav; k++)
                fav = g_array_index(favs, gint64, k) == id;
            json_object_set_new(copy, "favorite", json_boolean(fav));
        }
        json_array_append_new(arr, copy);
    }
    sig_reply_json(r, 200, json_pack("{s:o}", "teachers", arr));
}

void
sig_h_teacher_get(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    g_autoptr(GError) err = NULL;
    g_autoptr(StoreTeacher) t =
        store_teacher_get(r->app->store, id, is_student(r) ? r->user->id : 0, &err);
    if (!t) {
        sig_reply_store_error(r, err);
        return;
    }
    sig_reply_json(r, 200, teacher_json(t, is_student(r)));
}

/* The teacher themself (or, where ADMIN_TOO, an admin); else 403/404. */
static gint64
own_teacher_id(SigReq *r, gboolean admin_too)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return 0;
    if (r->user->role == STORE_ROLE_TEACHER && r->user->id == id)
        return id;
    if (admin_too && r->user->role == STORE_ROLE_ADMIN)
        return id;
    sig_reply_error(r, 403, "forbidden", "only the teacher themself may do this");
    return 0;
}

/* Each of these writes appends an event, a webhook row per URL and a
 * fan-out: one user may make write-rate-per-min of them a minute (429 with
 * Retry-After past that), so that one student toggling a favorite in a
 * loop cannot grow the log or delay everyone's webhooks. */
static gboolean
write_allowed(SigReq *r)
{
    char key[32];
    g_snprintf(key, sizeof key, "%" G_GINT64_FORMAT, r->user->id);
    guint wait = sig_limiter_hit(r->app->consult->write_limit, key);
    if (wait)
        sig_reply_retry(r, 429, "rate_limited", wait, "too many changes");
    return !wait;
}

/* The opening of a change a teacher makes to their own record (or, where
 * ADMIN_TOO, an admin): who (*ID), within the write rate, with a JSON body;
 * NULL when it has been answered already. */
static json_t *
teacher_change(SigReq *r, gboolean admin_too, gint64 *id)
{
    *id = own_teacher_id(r, admin_too);
    if (!*id || !write_allowed(r))
        return NULL;
    return sig_req_json(r);
}

void
sig_h_teacher_profile(SigReq *r)
{
    gint64 id;
    json_t *body = teacher_change(r, TRUE, &id);
    if (!body)
        return;
    json_t *v = json_object_get(body, "intro");
    if (!v) {
        sig_reply_error(r, 400, "missing_field", "field 'intro' is required");
        return;
    }
    const char *intro = sig_req_string(r, body, "intro", INTRO_MAX, FALSE);
    if (!intro)
        return;
    g_autoptr(GError) err = NULL;
    if (!store_teacher_set_intro(r->app->store, id, intro, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    sig_events_kick(r->app);
    g_autoptr(StoreTeacher) t = store_teacher_get(r->app->store, id, 0, NULL);
    sig_reply_json(r, 200, teacher_json(t, FALSE));
}

void
sig_h_teacher_presence(SigReq *r)
{
    gint64 id;
    json_t *body = teacher_change(r, FALSE, &id);
    if (!body)
        return;
    const char *status = sig_req_string(r, body, "status", 16, TRUE);
    if (!status)
        return;
    int to = store_presence_parse(status);
    if (to != STORE_PRESENCE_ONLINE && to != STORE_PRESENCE_OFFLINE) {
        sig_reply_error(r, 400, "bad_field", "status must be online or offline");
        return;
    }
    gboolean changed;
    g_autoptr(GError) err = NULL;
    if (!store_teacher_set_presence(r->app->store, id, to, &changed, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    if (to == STORE_PRESENCE_ONLINE)
        sig_streams_teacher_seen(r->app, id);
    if (changed)
        sig_events_kick(r->app);
    g_autoptr(StoreTeacher) t = store_teacher_get(r->app->store, id, 0, NULL);
    sig_reply_json(r, 200, teacher_json(t, FALSE));
}

static void
favorite(SigReq *r, gboolean on)
{
    gint64 id = sig_req_id(r, 0);
    if (!id || !write_allowed(r))
        return;
    gboolean changed;
    g_autoptr(GError) err = NULL;
    if (!store_favorite_set(r->app->store, r->user->id, id, on, &changed, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    if (changed)
        sig_events_kick(r->app);
    sig_reply_json(r, 200, json_pack("{s:I, s:b}", "teacher_id", (json_int_t)id, "favorite", on));
}

void
sig_h_favorite_add(SigReq *r)
{
    favorite(r, TRUE);
}

void
sig_h_favorite_remove(SigReq *r)
{
    favorite(r, FALSE);
}

/* ---------------------------------------------------------- waiting line */

/* What the caller may see of a line: its teacher (or an admin) every
 * student in it; a student their own place. */
static json_t *
line_json(SigReq *r, gint64 teacher, gboolean open, GPtrArray *entries)
{
    json_t *j = json_pack("{s:I, s:b, s:I}", "teacher_id", (json_int_t)teacher, "open", open,
                          "length", (json_int_t)entries->len);
    if (r->user->role == STORE_ROLE_STUDENT) {
        gint64 pos = 0;
        for (guint i = 0; i < entries->len && !pos; i++)
            if (((StoreLineEntry *)entries->pdata[i])->student_id == r->user->id)
                pos = i + 1;
        json_object_set_new(j, "position", json_integer(pos));
        json_object_set_new(j, "ahead", json_integer(pos ? pos - 1 : (json_int_t)entries->len));
        return j;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < entries->len; i++) {
        StoreLineEntry *e = entries->pdata[i];
        json_array_append_new(arr, json_pack("{s:I, s:s, s:o}", "id", (json_int_t)e->student_id,
                                             "display_name", e->display_name, "joined_at",
                                             sig_json_time(e->joined_at)));
    }
    json_object_set_new(j, "students", arr);
    return j;
}

static void
reply_line(SigReq *r, gint64 teacher, unsigned status)
{
    gboolean open = FALSE;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) entries = store_line_get(r->app->store, teacher, &open, &err);
    if (!entries) {
        sig_reply_store_error(r, err);
        return;
    }
    sig_reply_json(r, status, line_json(r, teacher, open, entries));
}

void
sig_h_line_get(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    if (r->user->role == STORE_ROLE_TEACHER && r->user->id != id) {
        sig_reply_error(r, 403, "forbidden", "only the teacher themself sees their line");
        return;
    }
    reply_line(r, id, 200);
}

void
sig_h_line_join(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id || !write_allowed(r))
        return;
    gint64 pos = 0;
    g_autoptr(GError) err = NULL;
    if (!store_line_join(r->app->store, id, r->user->id, r->app->cfg->line_max, &pos, &err)) {
        static const struct {
            StoreErrorCode code;
            const char *name;
        } why[] = {{STORE_ERROR_TEACHER_OFFLINE, "teacher_offline"},
                   {STORE_ERROR_BAD_STATE, "teacher_free"},
                   {STORE_ERROR_CONFLICT, "line_closed"},
                   {STORE_ERROR_FULL, "line_full"},
                   {STORE_ERROR_EXISTS, "already_waiting"}};
        for (guint i = 0; i < G_N_ELEMENTS(why); i++)
            if (g_error_matches(err, STORE_ERROR, why[i].code)) {
                sig_reply_error(r, 409, why[i].name, "%s", err->message);
                return;
            }
        sig_reply_store_error(r, err);
        return;
    }
    sig_events_kick(r->app);
    reply_line(r, id, 201);
}

void
sig_h_line_leave(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return;
    g_autoptr(GError) err = NULL;
    if (!store_line_leave(r->app->store, id, r->user->id, "left", &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    sig_events_kick(r->app);
    reply_line(r, id, 200);
}

void
sig_h_line_set(SigReq *r)
{
    gint64 id;
    json_t *body = teacher_change(r, FALSE, &id);
    if (!body)
        return;
    json_t *open = json_object_get(body, "open");
    if (!json_is_boolean(open)) {
        sig_reply_error(r, 400, "bad_field", "field 'open' must be true or false");
        return;
    }
    g_autoptr(GError) err = NULL;
    if (!store_line_set_open(r->app->store, id, json_is_true(open), &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    sig_events_kick(r->app);
    reply_line(r, id, 200);
}

/* --------------------------------------------------------- consultations */

/* Admission control, cheapest check first.  TRUE if the request may go on. */
static gboolean
admit(SigReq *r)
{
    SigApp *app = r->app;
    char key[32];
    g_snprintf(key, sizeof key, "%" G_GINT64_FORMAT, r->user->id);
    guint wait = sig_limiter_hit(app->consult->request_limit, key);
    if (wait) {
        sig_reply_retry(r, 429, "rate_limited", wait, "too many consultation requests");
        return FALSE;
    }
    if (store_consultation_count(app->store, STORE_CONSULT_REQUESTED) >= app->cfg->max_pending) {
        sig_reply_retry(r, 503, "over_capacity", 10, "too many requests are waiting");
        return FALSE;
    }
    if (store_consultation_count(app->store, STORE_CONSULT_LIVE) >= app->cfg->max_live) {
        sig_reply_retry(r, 503, "over_capacity", 30, "the server is at its consultation limit");
        return FALSE;
    }
    return TRUE;
}

void
sig_h_consultation_create(SigReq *r)
{
    json_t *body = sig_req_json(r);
    if (!body)
        return;
    json_t *tid = json_object_get(body, "teacher_id");
    if (!tid) {
        sig_reply_error(r, 400, "missing_field", "field 'teacher_id' is required");
        return;
    }
    if (!json_is_integer(tid) || json_integer_value(tid) <= 0) {
        sig_reply_error(r, 400, "bad_field", "teacher_id must be a positive integer");
        return;
    }
    if (!admit(r))
        return;
    g_autoptr(GError) err = NULL;
    g_autoptr(StoreConsultation) c =
        store_consultation_request(r->app->store, r->user->id, json_integer_value(tid), &err);
    if (!c) {
        sig_reply_store_error(r, err);
        return;
    }
    sig_events_kick(r->app);
    g_autofree char *loc = g_strdup_printf("/api/consultations/%" G_GINT64_FORMAT, c->id);
    sig_req_header(r, MHD_HTTP_HEADER_LOCATION, loc);
    sig_reply_json(r, 201, sig_consultation_json(c));
}

/* Loads path consultation {id} if the caller takes part in it (or is an
 * admin); otherwise answers 404, so ids of others' consultations tell
 * nothing. */
static StoreConsultation *
load_own(SigReq *r)
{
    gint64 id = sig_req_id(r, 0);
    if (!id)
        return NULL;
    g_autoptr(GError) err = NULL;
    StoreConsultation *c = store_consultation_get(r->app->store, id, &err);
    if (!c) {
        sig_reply_store_error(r, err);
        return NULL;
    }
    gint64 me = r->user->id;
    if (r->user->role == STORE_ROLE_ADMIN || c->teacher_id == me || c->student_id == me)
        return c;
    store_consultation_free(c);
    sig_reply_error(r, 404, "not_found", "no consultation %" G_GINT64_FORMAT, id);
    return NULL;
}

void
sig_h_consultation_get(SigReq *r)
{
    g_autoptr(StoreConsultation) c = load_own(r);
    if (!c)
        return;
    json_t *j = sig_consultation_json(c);
    /* Who shares a screen now: a page that opens mid-call subscribes. */
    json_t *screens = json_array();
    guint roles = c->status == STORE_CONSULT_LIVE || c->status == STORE_CONSULT_INTERRUPTED
                      ? store_consultation_screens(r->app->store, c->id)
                      : 0;
    for (int k = 0; k < CONSULTD_N_ROLES; k++)
        if (roles & (1u << k))
            json_array_append_new(screens, json_string(consultd_role_name((ConsultdRole)k)));
    json_object_set_new(j, "screens", screens);
    sig_reply_json(r, 200, j);
}

void
sig_h_consultations_list(SigReq *r)
{
    int status = -1;
    const char *q = sig_req_query(r, "status");
    if (q && (status = store_consult_status_parse(q)) < 0) {
        sig_reply_error(r, 400, "bad_query", "unknown status '%s'", q);
        return;
    }
    gint64 teacher = r->user->role == STORE_ROLE_TEACHER ? r->user->id : 0;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) cs = store_consultation_list(r->app->store, teacher, status, 500, &err);
    if (!cs) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < cs->len; i++)
        json_array_append_new(arr, sig_consultation_json(cs->pdata[i]));
    sig_reply_json(r, 200, json_pack("{s:o}", "consultations", arr));
}

/* One transition by its owner.  WHO says which participant may do it. */
typedef enum {
    BY_TEACHER,
    BY_STUDENT,
    BY_TEACHER_OR_ADMIN
} Who;

static void
transition(SigReq *r, StoreConsultStatus to, Who who, const char *reason)
{
    g_autoptr(StoreConsultation) c = load_own(r);
    if (!c)
        return;
    gint64 me = r->user->id;
    gboolean allowed =
        (who == BY_TEACHER && c->teacher_id == me) || (who == BY_STUDENT && c->student_id == me) ||
        (who == BY_TEACHER_OR_ADMIN && (c->teacher_id == me || r->user->role == STORE_ROLE_ADMIN));
    if (!allowed) {
        sig_reply_error(r, 403, "forbidden", "only the consultation's %s may do this",
                        who == BY_STUDENT ? "student" : "teacher");
        return;
    }
    g_autoptr(GError) err = NULL;
    if (!store_consultation_transition(r->app->store, c->id, to, reason, &err)) {
        sig_reply_store_error(r, err);
        return;
    }
    /* Ending its media and composing its recordings are reactions to the
     * event (workers/reactions.c), not this handler's business. */
    sig_events_kick(r->app);
    if (to == STORE_CONSULT_LIVE && store_shared(r->app->store)) {
        /* Several nodes: its media goes to the least-loaded one now, so
         * that a burst of accepts spreads.  If none has room, the first
         * publish tries again (and answers 503). */
        g_autofree char *node = NULL, *url = NULL;
        g_autoptr(GError) perr = NULL;
        if (!store_consultation_place(r->app->store, c->id, &node, &url, &perr))
            g_info("consultation %" G_GINT64_FORMAT ": not placed yet: %s", c->id, perr->message);
    }
    g_autoptr(StoreConsultation) now = store_consultation_get(r->app->store, c->id, NULL);
    sig_reply_json(r, 200, sig_consultation_json(now));
}

void
sig_h_consultation_accept(SigReq *r)
{
    transition(r, STORE_CONSULT_LIVE, BY_TEACHER, NULL);
}

void
sig_h_consultation_decline(SigReq *r)
{
    transition(r, STORE_CONSULT_DECLINED, BY_TEACHER, "declined");
}

void
sig_h_consultation_cancel(SigReq *r)
{
    transition(r, STORE_CONSULT_CANCELED, BY_STUDENT, "canceled");
}

void
sig_h_consultation_end(SigReq *r)
{
    transition(r, STORE_CONSULT_ENDED, BY_TEACHER_OR_ADMIN,
               r->user->role == STORE_ROLE_ADMIN ? "ended_by_admin" : "ended_by_teacher");
}

/* --------------------------------------------------------------- my page */

void
sig_h_mypage(SigReq *r)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) rows = store_mypage(r->app->store, r->user->id, &err);
    if (!rows) {
        sig_reply_store_error(r, err);
        return;
    }
    g_autoptr(GPtrArray) recs = store_mypage_recordings(r->app->store, r->user->id, NULL);
    json_t *arr = json_array();
    for (guint i = 0; i < rows->len; i++) {
        StoreMyPageRow *m = rows->pdata[i];
        json_t *rj = json_array();
        for (guint k = 0; recs && k < recs->len; k++) {
            StoreMyRecording *x = recs->pdata[k];
            if (x->consultation_id == m->consultation_id)
                json_array_append_new(rj, sig_recording_json(x->consultation_id, x->file, x->role,
                                                             CONSULTD_REC_READY, x->duration_ms,
                                                             x->size, x->offset_ms));
        }
        gint64 dur = m->started_at && m->ended_at ? (m->ended_at - m->started_at) : 0;
        json_array_append_new(
            arr,
            json_pack("{s:I, s:{s:I, s:s}, s:s, s:o, s:o, s:o, s:f, s:s?, s:o, s:I}",
                      "consultation_id", (json_int_t)m->consultation_id, "teacher", "id",
                      (json_int_t)m->teacher_id, "display_name", m->teacher_name, "status",
                      store_consult_status_name(m->status), "requested_at",
                      sig_json_time(m->requested_at), "started_at", sig_json_time(m->started_at),
                      "ended_at", sig_json_time(m->ended_at), "duration_seconds", dur / 1000.0,
                      "end_reason", *m->end_reason ? m->end_reason : NULL, "recordings", rj,
                      "messages", (json_int_t)m->messages));
    }
    sig_reply_json(r, 200,
                   json_pack("{s:o, s:I}", "consultations", arr, "as_of_event",
                             (json_int_t)store_cursor(r->app->store, "projections")));
}

/* ------------------------------------------------------------------ chat */

/* A message as the API shows it: where it falls in the recording (from
 * the consultation's start; 0 for one said before). */
static json_t *
message_json(const StoreMessage *m, const StoreConsultation *c)
{
    gint64 offset = store_consultation_offset(c, m->created_at);
    return json_pack("{s:I, s:I, s:{s:I, s:s}, s:s, s:o, s:f}", "id", (json_int_t)m->id,
                     "consultation_id", (json_int_t)m->consultation_id, "author", "id",
                     (json_int_t)m->author_id, "role", consultd_role_name(m->role), "body", m->body,
                     "created_at", sig_json_time(m->created_at), "offset_seconds", offset / 1000.0);
}

void
sig_h_messages_list(SigReq *r)
{
    g_autoptr(StoreConsultation) c = load_own(r);
    if (!c)
        return;
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) ms = store_messages_list(r->app->store, c->id, &err);
    if (!ms) {
        sig_reply_store_error(r, err);
        return;
    }
    json_t *arr = json_array();
    for (guint i = 0; i < ms->len; i++)
        json_array_append_new(arr, message_json(ms->pdata[i], c));
    sig_reply_json(r, 200,
                   json_pack("{s:I, s:o}", "consultation_id", (json_int_t)c->id, "messages", arr));
}

void
sig_h_message_create(SigReq *r)
{
    g_autoptr(StoreConsultation) c = load_own(r);
    if (!c)
        return;
    if (r->user->id != c->teacher_id && r->user->id != c->student_id) {
        sig_reply_error(r, 403, "not_participant", "only its participants write in its chat");
        return;
    }
    json_t *body = sig_req_json(r);
    if (!body)
        return;
    const char *text = sig_req_string(r, body, "body", 4 * STORE_MESSAGE_MAX, TRUE);
    if (!text)
        return;
    if (!store_message_body_ok(text)) {
        sig_reply_error(r, 400, "bad_message", "a message is 1 to %d characters, not only spaces",
                        STORE_MESSAGE_MAX);
        return;
    }
    char key[32];
    g_snprintf(key, sizeof key, "%" G_GINT64_FORMAT, r->user->id);
    guint wait = sig_limiter_hit(r->app->consult->message_limit, key);
    if (wait) {
        sig_reply_retry(r, 429, "rate_limited", wait, "too many messages");
        return;
    }
    g_autoptr(GError) err = NULL;
    g_autoptr(StoreMessage) m = store_message_add(r->app->store, c->id, r->user->id, text, &err);
    if (!m) {
        if (g_error_matches(err, STORE_ERROR, STORE_ERROR_CONFLICT))
            sig_reply_error(r, 409, "not_open", "%s", err->message);
        else
            sig_reply_store_error(r, err);
        return;
    }
    sig_events_kick(r->app);
    sig_reply_json(r, 201, message_json(m, c));
}

/* ---------------------------------------------------------------- timers */

static void
expire_requests(gpointer data)
{
    SigApp *app = data;
    gint64 before = store_now_ms() - app->cfg->request_timeout * 1000;
    g_autoptr(GArray) ids = store_consultations_requested_before(app->store, before);
    guint n = 0;
    for (guint i = 0; i < ids->len; i++)
        if (store_consultation_transition(app->store, g_array_index(ids, gint64, i),
                                          STORE_CONSULT_EXPIRED, "timeout", NULL))
            n++;
    /* A consultation lasts at most max-consultation-minutes: it ends with
     * reason max_duration (and its media and recordings with it). */
    gint64 started_before = store_now_ms() - app->cfg->max_consultation_minutes * 60000;
    g_autoptr(GArray) longs = store_consultations_live_since_before(app->store, started_before);
    guint ended = 0;
    for (guint i = 0; i < longs->len; i++)
        if (store_consultation_transition(app->store, g_array_index(longs, gint64, i),
                                          STORE_CONSULT_ENDED, "max_duration", NULL))
            ended++;
    if (ended)
        g_message("ended %u consultation(s) at max-consultation-minutes", ended);
    if (n)
        g_info("expired %u unanswered request(s)", n);
    if (n || ended)
        sig_events_kick(app);
}

static void
sweep_presence(gpointer data)
{
    SigApp *app = data;
    /* With several nodes, a teacher's console may be on another one: each
     * node records the consoles it holds, and only a teacher no node has
     * seen within the grace goes offline. */
    gint64 unseen_since = 0;
    /* Students waiting in a line leave it once no node has seen their
     * events stream for the presence grace. */
    g_autoptr(GArray) students = sig_streams_students_present(app);
    gint64 t = store_now_ms();
    if (store_line_sweep(app->store, students, t, t - app->cfg->presence_grace * 1000, NULL) > 0)
        sig_events_kick(app);
    if (store_shared(app->store)) {
        /* Failover: consultations on a node whose lease ran out. */
        g_autoptr(GError) err = NULL;
        gint64 lost = store_consultations_orphans_interrupt(app->store, &err);
        if (lost < 0)
            g_warning("failover: %s", err->message);
        else if (lost > 0)
            g_message("failover: %" G_GINT64_FORMAT " consultation(s) interrupted: their node"
                      " lost its lease; the next publish places them anew",
                      lost);
        if (lost > 0)
            sig_events_kick(app);
        /* Their unfinished recordings wait for that node (it repairs them
         * when it starts again) or for an admin's write-off. */
        g_clear_error(&err);
        gint64 recs = store_recordings_mark_lost(app->store, &err);
        if (recs < 0)
            g_warning("failover: recordings: %s", err->message);
        else if (recs > 0)
            g_message("failover: %" G_GINT64_FORMAT " unfinished recording(s) wait for their"
                      " node, which lost its lease",
                      recs);
        g_autoptr(GArray) mine = sig_streams_teachers_present(app);
        gint64 now = store_now_ms();
        store_teachers_console_seen(app->store, mine, now, NULL);
        unseen_since = now - app->cfg->presence_grace * 1000;
    }
    g_autoptr(GArray) online = store_teachers_online(app->store, unseen_since);
    guint n = 0;
    for (guint i = 0; i < online->len; i++) {
        gint64 id = g_array_index(online, gint64, i);
        if (!sig_streams_teacher_gone(app, id, app->cfg->presence_grace))
            continue;
        gboolean changed = FALSE;
        if (store_teacher_set_presence(app->store, id, STORE_PRESENCE_OFFLINE, &changed, NULL) &&
            changed) {
            g_info("teacher %" G_GINT64_FORMAT
                   " went offline: no events stream for %" G_GINT64_FORMAT " s",
                   id, app->cfg->presence_grace);
            n++;
        }
    }
    if (n)
        sig_events_kick(app);
}

SigConsult *
sig_consult_new(SigApp *app)
{
    SigConsult *c = g_new0(SigConsult, 1);
    c->app = app;
    c->request_limit = sig_limiter_new((guint)app->cfg->request_rate_per_min, 60);
    c->write_limit = sig_limiter_new((guint)app->cfg->write_rate_per_min, 60);
    c->message_limit = sig_limiter_new((guint)app->cfg->message_rate_per_min, 60);
    c->expiry_task = SIG_TASK_INIT(app, expire_requests, app);
    c->presence_task = SIG_TASK_INIT(app, sweep_presence, app);
    c->expiry_timer = g_timeout_add(500, sig_task_tick, &c->expiry_task);
    c->presence_timer = g_timeout_add(1000, sig_task_tick, &c->presence_task);
    return c;
}

void
sig_consult_free(SigConsult *c)
{
    if (!c)
        return;
    g_source_remove(c->expiry_timer);
    g_source_remove(c->presence_timer);
    sig_limiter_free(c->request_limit);
    sig_limiter_free(c->write_limit);
    sig_limiter_free(c->message_limit);
    json_decref(c->teachers);
    g_free(c);
}
