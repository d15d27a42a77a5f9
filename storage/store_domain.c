/* store_domain.c - teachers, favorites and consultations: the write model.
 *
 * Two state machines live here.  Each transition is one function call, one
 * transaction, and appends exactly one domain event per machine it moves.
 *
 * Teacher presence (teachers.status)
 *
 *     offline --teacher.online--> online --teacher.offline--> offline
 *     online  --teacher.busy----> busy     (only with consultation.requested)
 *     busy    --teacher.available-> online (only when the consultation closes)
 *
 * Consultation (consultations.status)
 *
 *     requested --accept--> live        consultation.accepted
 *     requested --decline-> declined    consultation.declined    (teacher freed)
 *     requested --cancel--> canceled    consultation.canceled    (teacher freed)
 *     requested --timeout-> expired     consultation.expired     (teacher freed)
 *     live      --end-----> ended       consultation.ended       (teacher freed)
 *     live      --crash---> interrupted consultation.interrupted
 *     interrupted --rejoin-> live       consultation.resumed
 *     interrupted --end----> ended      consultation.ended       (teacher freed)
 *
 * Invariant (asserted by check_teacher_consistent() in debug builds and
 * enforced by a partial unique index): a teacher is busy exactly when they
 * have one consultation in requested, live or interrupted.
 */
#include "store_events.h"

#include <string.h>

static const char *const presence_names[] = {"offline", "online", "busy"};

const char *
store_presence_name(StorePresence p)
{
    return (guint)p < G_N_ELEMENTS(presence_names) ? presence_names[p] : "unknown";
}

int
store_presence_parse(const char *name)
{
    return consultd_name_index(presence_names, G_N_ELEMENTS(presence_names), name);
}

static gboolean
consult_open(StoreConsultStatus st)
{
    return st == STORE_CONSULT_REQUESTED || st == STORE_CONSULT_LIVE ||
           st == STORE_CONSULT_INTERRUPTED;
}

/* The transition table: TRUE if FROM -> TO is legal. */
static gboolean
consult_legal(StoreConsultStatus from, StoreConsultStatus to)
{
    switch (from) {
    case STORE_CONSULT_REQUESTED:
        return to == STORE_CONSULT_LIVE || to == STORE_CONSULT_DECLINED ||
               to == STORE_CONSULT_CANCELED || to == STORE_CONSULT_EXPIRED;
    case STORE_CONSULT_LIVE: return to == STORE_CONSULT_ENDED || to == STORE_CONSULT_INTERRUPTED;
    case STORE_CONSULT_INTERRUPTED: return to == STORE_CONSULT_LIVE || to == STORE_CONSULT_ENDED;
    default: return FALSE;
    }
}

static const char *
consult_event(StoreConsultStatus from, StoreConsultStatus to)
{
    switch (to) {
    case STORE_CONSULT_LIVE:
        return from == STORE_CONSULT_INTERRUPTED ? "consultation.resumed" : "consultation.accepted";
    case STORE_CONSULT_ENDED: return "consultation.ended";
    case STORE_CONSULT_DECLINED: return "consultation.declined";
    case STORE_CONSULT_CANCELED: return "consultation.canceled";
    case STORE_CONSULT_EXPIRED: return "consultation.expired";
    case STORE_CONSULT_INTERRUPTED: return "consultation.interrupted";
    default: return "consultation.requested";
    }
}

/* ------------------------------------------------------------- teachers */

void
store_teacher_free(StoreTeacher *t)
{
    if (!t)
        return;
    g_free(t->username);
    g_free(t->display_name);
    g_free(t->intro);
    g_free(t);
}

#define TEACHER_SELECT                                                                             \
    "SELECT u.id, u.username, u.display_name, u.intro, t.status,"                                  \
    " coalesce(ts.popularity, 0), coalesce(ts.consultation_count, 0),"                             \
    " EXISTS (SELECT 1 FROM favorites f WHERE f.teacher_id = u.id"                                 \
    "         AND f.student_id = ?1)"                                                              \
    " FROM teachers t JOIN users u ON u.id = t.user_id"                                            \
    " LEFT JOIN teacher_stats ts ON ts.teacher_id = t.user_id"                                     \
    " WHERE u.deleted_at IS NULL"

static StoreTeacher *
teacher_from_row(StoreStmt *st)
{
    StoreTeacher *t = g_new0(StoreTeacher, 1);
    t->id = store_col_int64(st, 0);
    t->username = store_col_strdup(st, 1);
    t->display_name = store_col_strdup(st, 2);
    t->intro = store_col_strdup(st, 3);
    t->status = (StorePresence)MAX(0, store_presence_parse(store_col_text(st, 4)));
    t->popularity = store_col_int64(st, 5);
    t->consultation_count = store_col_int64(st, 6);
    t->favorite = store_col_int64(st, 7) != 0;
    return t;
}

GPtrArray *
store_teacher_list(Store *s, gint64 viewer, int status, GError **error)
{
    StoreStmt *st = store_stmt(
        s, TEACHER_SELECT
        " AND (CAST(?2 AS TEXT) IS NULL OR t.status = ?2) ORDER BY u.display_name, u.id");
    store_bind_int64(st, 1, viewer);
    if (status >= 0)
        store_bind_text(st, 2, store_presence_name(status));
    return STORE_COLLECT(s, st, teacher_from_row, store_teacher_free, "list teachers", error);
}

StoreTeacher *
store_teacher_get(Store *s, gint64 id, gint64 viewer, GError **error)
{
    StoreStmt *st = store_stmt(s, TEACHER_SELECT " AND u.id = ?2");
    store_bind_int64(st, 1, viewer);
    store_bind_int64(st, 2, id);
    StoreTeacher *t = NULL;
    if (store_step(st) == STORE_ROW)
        t = teacher_from_row(st);
    else
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT, id);
    store_stmt_reset(st);
    return t;
}

/* Current presence of teacher ID inside a transaction; -1 if none. */
static int
teacher_status(Store *s, gint64 id)
{
    StoreStmt *st = store_stmt(s, "SELECT t.status FROM teachers t JOIN users u ON u.id = t.user_id"
                                  " WHERE t.user_id = ?1 AND u.deleted_at IS NULL");
    store_bind_int64(st, 1, id);
    int v = -1;
    if (store_step(st) == STORE_ROW)
        v = store_presence_parse(store_col_text(st, 0));
    store_stmt_reset(st);
    return v;
}

static gboolean line_reset(Store *s, gint64 teacher, gboolean online, GError **error);
static gboolean line_leave(Store *s, gint64 teacher, gint64 student, const char *reason,
                           GError **error);

static gboolean
teacher_move(Store *s, gint64 id, StorePresence to, gint64 consultation, GError **error)
{
    static const char *const events[] = {"teacher.offline", "teacher.online", "teacher.busy"};
    StoreStmt *st =
        store_stmt(s, "UPDATE teachers SET status = ?2, status_at = ?3 WHERE user_id = ?1");
    store_bind_int64(st, 1, id);
    store_bind_text(st, 2, store_presence_name(to));
    store_bind_int64(st, 3, store_now_ms());
    if (!store_step_done(s, st, error, "teacher presence"))
        return FALSE;
    /* busy -> online is "available", not "online": the teacher did not log
     * in, they finished a consultation. */
    const char *type = events[to];
    if (to == STORE_PRESENCE_ONLINE && consultation)
        type = "teacher.available";
    g_autofree char *payload = g_strdup_printf(
        "{\"teacher_id\":%" G_GINT64_FORMAT ",\"status\":\"%s\"}", id, store_presence_name(to));
    if (!store_event_append(s, type, id, 0, consultation, payload, error))
        return FALSE;
    /* Going offline closes the line and sends its students away; coming
     * online (not back from a consultation) opens it again. */
    if (to == STORE_PRESENCE_OFFLINE || (to == STORE_PRESENCE_ONLINE && !consultation))
        return line_reset(s, id, to == STORE_PRESENCE_ONLINE, error);
    return TRUE;
}

#ifndef NDEBUG
/* The busy invariant from the top of this file. */
static void
check_teacher_consistent(Store *s, gint64 id)
{
    StoreStmt *st = store_stmt(s, "SELECT t.status = 'busy', EXISTS (SELECT 1 FROM consultations c"
                                  "  WHERE c.teacher_id = t.user_id"
                                  "  AND c.status IN ('requested','live','interrupted'))"
                                  " FROM teachers t WHERE t.user_id = ?1");
    store_bind_int64(st, 1, id);
    if (store_step(st) == STORE_ROW)
        g_assert_cmpint(store_col_int64(st, 0), ==, store_col_int64(st, 1));
    store_stmt_reset(st);
}
#else
#define check_teacher_consistent(s, id) ((void)0)
#endif

gboolean
store_teacher_set_intro(Store *s, gint64 id, const char *intro, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = TRUE;
    if (teacher_status(s, id) < 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT, id);
        ok = FALSE;
    }
    if (ok) {
        StoreStmt *st = store_stmt(s, "UPDATE users SET intro = ?2 WHERE id = ?1");
        store_bind_int64(st, 1, id);
        store_bind_text(st, 2, intro);
        ok = store_step_done(s, st, error, "set intro");
    }
    if (ok) {
        g_autofree char *payload = g_strdup_printf("{\"teacher_id\":%" G_GINT64_FORMAT "}", id);
        ok = store_event_append(s, "teacher.profile_updated", id, 0, 0, payload, error);
    }
    return store_autocommit(s, began, ok, error);
}

gboolean
store_teacher_set_presence(Store *s, gint64 id, StorePresence to, gboolean *changed, GError **error)
{
    g_return_val_if_fail(to != STORE_PRESENCE_BUSY, FALSE);
    *changed = FALSE;
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = TRUE;
    int now = teacher_status(s, id);
    if (now < 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT, id);
        ok = FALSE;
    } else if (now == STORE_PRESENCE_BUSY) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_TEACHER_BUSY,
                    "the teacher is in a consultation");
        ok = FALSE;
    } else if (now != (int)to) {
        ok = teacher_move(s, id, to, 0, error);
        *changed = ok;
    }
    return store_autocommit(s, began, ok, error);
}

gboolean
store_logout(Store *s, const char *token_hash, gint64 user, gboolean *went_offline, GError **error)
{
    *went_offline = FALSE;
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = store_session_delete(s, token_hash, error);
    if (ok && teacher_status(s, user) == STORE_PRESENCE_ONLINE) {
        ok = teacher_move(s, user, STORE_PRESENCE_OFFLINE, 0, error);
        *went_offline = ok;
    }
    return store_autocommit(s, began, ok, error);
}

gboolean
store_favorite_set(Store *s, gint64 student, gint64 teacher, gboolean on, gboolean *changed,
                   GError **error)
{
    *changed = FALSE;
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = TRUE;
    if (teacher_status(s, teacher) < 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT,
                    teacher);
        ok = FALSE;
    }
    StoreStmt *st;
    if (ok && on) {
        st = store_stmt(s, "INSERT INTO favorites (student_id, teacher_id, created_at)"
                           " VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING");
        store_bind_int64(st, 3, store_now_ms());
    } else {
        st = store_stmt(s, "DELETE FROM favorites WHERE student_id = ?1 AND teacher_id = ?2");
    }
    if (ok) {
        store_bind_int64(st, 1, student);
        store_bind_int64(st, 2, teacher);
        ok = store_step_done(s, st, error, "favorite");
    }
    if (ok && store_changes(s) > 0) {
        g_autofree char *payload = g_strdup_printf("{\"teacher_id\":%" G_GINT64_FORMAT
                                                   ",\"student_id\":%" G_GINT64_FORMAT "}",
                                                   teacher, student);
        ok = store_event_append(s, on ? "teacher.favorited" : "teacher.unfavorited", teacher,
                                student, 0, payload, error);
        *changed = ok;
    }
    return store_autocommit(s, began, ok, error);
}

static GArray *
id_column(Store *s, StoreStmt *st)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(gint64));
    while (store_step(st) == STORE_ROW) {
        gint64 v = store_col_int64(st, 0);
        g_array_append_val(out, v);
    }
    store_stmt_reset(st);
    return out;
}

GArray *
store_favorers(Store *s, gint64 teacher)
{
    StoreStmt *st =
        store_stmt(s, "SELECT f.student_id FROM favorites f JOIN users u ON u.id = f.student_id"
                      " WHERE f.teacher_id = ?1 AND u.deleted_at IS NULL");
    store_bind_int64(st, 1, teacher);
    return id_column(s, st);
}

GArray *
store_favorites_of(Store *s, gint64 student)
{
    StoreStmt *st = store_stmt(s, "SELECT teacher_id FROM favorites WHERE student_id = ?1");
    store_bind_int64(st, 1, student);
    return id_column(s, st);
}

GArray *
store_teachers_online(Store *s, gint64 unseen_since)
{
    StoreStmt *st =
        store_stmt(s, "SELECT user_id FROM teachers WHERE status = 'online' AND console_at < ?1");
    store_bind_int64(st, 1, unseen_since > 0 ? unseen_since : G_MAXINT64);
    return id_column(s, st);
}

gboolean
store_teachers_console_seen(Store *s, GArray *ids, gint64 now_ms, GError **error)
{
    if (!ids->len)
        return TRUE;
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = TRUE;
    for (guint i = 0; ok && i < ids->len; i++) {
        StoreStmt *st = store_stmt(s, "UPDATE teachers SET console_at = ?2 WHERE user_id = ?1");
        store_bind_int64(st, 1, g_array_index(ids, gint64, i));
        store_bind_int64(st, 2, now_ms);
        ok = store_step_done(s, st, error, "console seen");
    }
    return store_autocommit(s, began, ok, error);
}

/* -------------------------------------------------------- consultations */

void
store_consultation_free(StoreConsultation *c)
{
    if (!c)
        return;
    g_free(c->teacher_name);
    g_free(c->student_name);
    g_free(c->end_reason);
    g_free(c->node_id);
    g_free(c);
}

#define CONSULT_SELECT                                                                             \
    "SELECT c.id, c.teacher_id, c.student_id, tu.display_name, su.display_name,"                   \
    " c.status, c.requested_at, c.accepted_at, c.ended_at, c.end_reason, c.node_id,"               \
    " (SELECT count(*) FROM messages m WHERE m.consultation_id = c.id), c.from_line"               \
    " FROM consultations c JOIN users tu ON tu.id = c.teacher_id"                                  \
    " JOIN users su ON su.id = c.student_id"

static StoreConsultation *
consult_from_row(StoreStmt *st)
{
    StoreConsultation *c = g_new0(StoreConsultation, 1);
    c->id = store_col_int64(st, 0);
    c->teacher_id = store_col_int64(st, 1);
    c->student_id = store_col_int64(st, 2);
    c->teacher_name = store_col_strdup(st, 3);
    c->student_name = store_col_strdup(st, 4);
    c->status = (StoreConsultStatus)MAX(0, store_consult_status_parse(store_col_text(st, 5)));
    c->requested_at = store_col_int64(st, 6);
    c->accepted_at = store_col_int64(st, 7);
    c->ended_at = store_col_int64(st, 8);
    c->end_reason = store_col_strdup(st, 9);
    const char *node = store_col_text(st, 10);
    c->node_id = node && *node ? g_strdup(node) : NULL;
    c->messages = store_col_int64(st, 11);
    c->from_line = store_col_int64(st, 12) != 0;
    return c;
}

gint64
store_consultation_offset(const StoreConsultation *c, gint64 at_ms)
{
    return c->accepted_at > 0 && at_ms > c->accepted_at ? at_ms - c->accepted_at : 0;
}

StoreConsultation *
store_consultation_get(Store *s, gint64 id, GError **error)
{
    StoreStmt *st = store_stmt(s, CONSULT_SELECT " WHERE c.id = ?1");
    store_bind_int64(st, 1, id);
    StoreConsultation *c = NULL;
    if (store_step(st) == STORE_ROW)
        c = consult_from_row(st);
    else
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no consultation %" G_GINT64_FORMAT,
                    id);
    store_stmt_reset(st);
    return c;
}

GPtrArray *
store_consultation_list(Store *s, gint64 teacher, int status, guint limit, GError **error)
{
    StoreStmt *st = store_stmt(
        s, CONSULT_SELECT
        " WHERE (?1 = 0 OR c.teacher_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR c.status = ?2)"
        " ORDER BY c.id DESC LIMIT ?3");
    store_bind_int64(st, 1, teacher);
    if (status >= 0)
        store_bind_text(st, 2, store_consult_status_name(status));
    store_bind_int64(st, 3, limit);
    return STORE_COLLECT(s, st, consult_from_row, store_consultation_free, "list consultations",
                         error);
}

gint64
store_consultation_count(Store *s, StoreConsultStatus status)
{
    StoreStmt *st = store_stmt(s, "SELECT count(*) FROM consultations WHERE status = ?1");
    store_bind_text(st, 1, store_consult_status_name(status));
    return store_scalar(s, st, 0);
}

gint64
store_consultations_open_for(Store *s, gint64 user, GError **error)
{
    StoreStmt *st = store_stmt(
        s, "SELECT count(*) FROM consultations WHERE (teacher_id = ?1 OR student_id = ?1)"
           " AND status IN ('requested', 'live', 'interrupted')");
    store_bind_int64(st, 1, user);
    gint64 n = -1;
    if (store_step(st) == STORE_ROW)
        n = store_col_int64(st, 0);
    else
        store_set_error(s, error, "open consultations");
    store_stmt_reset(st);
    return n;
}

GArray *
store_consultations_requested_before(Store *s, gint64 before_ms)
{
    StoreStmt *st = store_stmt(
        s, "SELECT id FROM consultations WHERE status = 'requested' AND requested_at < ?1");
    store_bind_int64(st, 1, before_ms);
    return id_column(s, st);
}

GArray *
store_consultations_live_since_before(Store *s, gint64 before_ms)
{
    StoreStmt *st = store_stmt(s, "SELECT id FROM consultations WHERE status IN ('live',"
                                  " 'interrupted') AND accepted_at > 0 AND accepted_at < ?1");
    store_bind_int64(st, 1, before_ms);
    return id_column(s, st);
}

static char *
consult_payload(gint64 id, gint64 teacher, gint64 student, StoreConsultStatus st,
                const char *reason)
{
    /* REASON is one of our own fixed words (no escaping needed); assert so. */
    g_assert(!reason || strpbrk(reason, "\"\\") == NULL);
    return g_strdup_printf(
        "{\"consultation_id\":%" G_GINT64_FORMAT ",\"teacher_id\":%" G_GINT64_FORMAT
        ",\"student_id\":%" G_GINT64_FORMAT ",\"status\":\"%s\",\"reason\":\"%s\"}",
        id, teacher, student, store_consult_status_name(st), reason ? reason : "");
}

StoreConsultation *
store_consultation_request(Store *s, gint64 student, gint64 teacher, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return NULL;
    gboolean ok = TRUE;
    gint64 id = 0;
    int now = teacher_status(s, teacher);
    if (now < 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT,
                    teacher);
        ok = FALSE;
    } else if (now == STORE_PRESENCE_OFFLINE) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_TEACHER_OFFLINE, "the teacher is offline");
        ok = FALSE;
    } else if (now == STORE_PRESENCE_BUSY) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_TEACHER_BUSY, "the teacher is busy");
        ok = FALSE;
    }
    if (ok) {
        StoreStmt *st =
            store_stmt(s, "INSERT INTO consultations (teacher_id, student_id, status, requested_at)"
                          " VALUES (?1, ?2, 'requested', ?3) RETURNING id");
        store_bind_int64(st, 1, teacher);
        store_bind_int64(st, 2, student);
        store_bind_int64(st, 3, store_now_ms());
        id = store_step_id(s, st, error, "request consultation");
        ok = id > 0;
    }
    if (ok) {
        g_autofree char *payload =
            consult_payload(id, teacher, student, STORE_CONSULT_REQUESTED, NULL);
        ok =
            store_event_append(s, "consultation.requested", teacher, student, id, payload, error) &&
            teacher_move(s, teacher, STORE_PRESENCE_BUSY, id, error);
    }
    /* Asking a teacher directly leaves any line the student waits in. */
    gint64 waited = 0;
    if (ok) {
        StoreStmt *st = store_stmt(s, "SELECT teacher_id FROM line_entries WHERE student_id = ?1");
        store_bind_int64(st, 1, student);
        waited = store_scalar(s, st, 0);
    }
    if (ok && waited)
        ok = line_leave(s, waited, student, "asked_elsewhere", error);
    if (ok)
        check_teacher_consistent(s, teacher);
    if (!store_autocommit(s, began, ok, error))
        return NULL;
    return store_consultation_get(s, id, error);
}

/* --------------------------------------------------------- waiting line */

void
store_line_entry_free(StoreLineEntry *e)
{
    if (!e)
        return;
    g_free(e->display_name);
    g_free(e);
}

/* Whether TEACHER's line is open: 1, 0, or -1 for no such teacher. */
static gint64
line_open(Store *s, gint64 teacher)
{
    StoreStmt *st = store_stmt(s, "SELECT line_open <> 0 FROM teachers WHERE user_id = ?1");
    store_bind_int64(st, 1, teacher);
    return store_scalar(s, st, -1);
}

GArray *
store_line_members(Store *s, gint64 teacher)
{
    StoreStmt *st =
        store_stmt(s, "SELECT student_id FROM line_entries WHERE teacher_id = ?1 ORDER BY id");
    store_bind_int64(st, 1, teacher);
    GArray *out = g_array_new(FALSE, FALSE, sizeof(gint64));
    while (store_step(st) == STORE_ROW) {
        gint64 v = store_col_int64(st, 0);
        g_array_append_val(out, v);
    }
    store_stmt_reset(st);
    return out;
}

/* The payload of a line event: the teacher, the student it is about (0:
 * none), the line's length after it, REASON (a fixed word or NULL) and, for
 * an offer, the consultation. */
static char *
line_payload(Store *s, gint64 teacher, gint64 student, const char *reason, gint64 consultation)
{
    g_autoptr(GArray) m = store_line_members(s, teacher);
    GString *ids = g_string_new(NULL);
    for (guint i = 0; i < m->len; i++)
        g_string_append_printf(ids, "%s%" G_GINT64_FORMAT, i ? "," : "",
                               g_array_index(m, gint64, i));
    g_assert(!reason || strpbrk(reason, "\"\\") == NULL);
    char *p =
        g_strdup_printf("{\"teacher_id\":%" G_GINT64_FORMAT ",\"student_id\":%" G_GINT64_FORMAT
                        ",\"length\":%u,\"waiting\":[%s],\"reason\":\"%s\""
                        ",\"consultation_id\":%" G_GINT64_FORMAT "}",
                        teacher, student, m->len, ids->str, reason ? reason : "", consultation);
    g_string_free(ids, TRUE);
    return p;
}

static gboolean
line_event(Store *s, const char *type, gint64 teacher, gint64 student, const char *reason,
           gint64 consultation, GError **error)
{
    g_autofree char *payload = line_payload(s, teacher, student, reason, consultation);
    return store_event_append(s, type, teacher, student, consultation, payload, error);
}

static gboolean
line_reset(Store *s, gint64 teacher, gboolean online, GError **error)
{
    StoreStmt *st = store_stmt(s, "UPDATE teachers SET line_open = ?2 WHERE user_id = ?1");
    store_bind_int64(st, 1, teacher);
    store_bind_int64(st, 2, online);
    if (!store_step_done(s, st, error, "line"))
        return FALSE;
    if (online)
        return TRUE;
    g_autoptr(GArray) m = store_line_members(s, teacher);
    if (m->len == 0)
        return TRUE;
    st = store_stmt(s, "DELETE FROM line_entries WHERE teacher_id = ?1");
    store_bind_int64(st, 1, teacher);
    gboolean ok = store_step_done(s, st, error, "line closed");
    for (guint i = 0; ok && i < m->len; i++)
        ok = line_event(s, "line.left", teacher, g_array_index(m, gint64, i), "teacher_offline", 0,
                        error);
    return ok && line_event(s, "line.closed", teacher, 0, "teacher_offline", 0, error);
}

/* The teacher is free again: the first of the line, if any, is offered a
 * consultation (requested, from_line) in this same transaction, and the
 * teacher is busy again. */
static gboolean
line_offer(Store *s, gint64 teacher, GError **error)
{
    if (teacher_status(s, teacher) != STORE_PRESENCE_ONLINE)
        return TRUE;
    StoreStmt *st = store_stmt(s, "SELECT student_id FROM line_entries WHERE teacher_id = ?1"
                                  " ORDER BY id LIMIT 1");
    store_bind_int64(st, 1, teacher);
    gint64 student = store_scalar(s, st, 0);
    if (!student)
        return TRUE;
    st = store_stmt(s, "DELETE FROM line_entries WHERE student_id = ?1");
    store_bind_int64(st, 1, student);
    if (!store_step_done(s, st, error, "line offer"))
        return FALSE;
    st = store_stmt(s, "INSERT INTO consultations (teacher_id, student_id, status, requested_at,"
                       " from_line) VALUES (?1, ?2, 'requested', ?3, 1) RETURNING id");
    store_bind_int64(st, 1, teacher);
    store_bind_int64(st, 2, student);
    store_bind_int64(st, 3, store_now_ms());
    gint64 id = store_step_id(s, st, error, "line offer");
    if (id <= 0)
        return FALSE;
    g_autofree char *payload =
        consult_payload(id, teacher, student, STORE_CONSULT_REQUESTED, "from_line");
    return store_event_append(s, "consultation.requested", teacher, student, id, payload, error) &&
           teacher_move(s, teacher, STORE_PRESENCE_BUSY, id, error) &&
           line_event(s, "line.left", teacher, student, "offered", id, error) &&
           line_event(s, "line.offered", teacher, student, NULL, id, error);
}

gboolean
store_line_join(Store *s, gint64 teacher, gint64 student, gint64 max, gint64 *position,
                GError **error)
{
    *position = 0;
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = TRUE;
    int now = teacher_status(s, teacher);
    gboolean open = line_open(s, teacher) > 0;
    g_autoptr(GArray) m = store_line_members(s, teacher);
    for (guint i = 0; i < m->len; i++)
        if (g_array_index(m, gint64, i) == student)
            *position = i + 1;
    if (now < 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT,
                    teacher);
        ok = FALSE;
    } else if (*position) {
        return store_autocommit(s, began, TRUE, error); /* there already */
    } else if (now == STORE_PRESENCE_OFFLINE) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_TEACHER_OFFLINE, "the teacher is offline");
        ok = FALSE;
    } else if (now == STORE_PRESENCE_ONLINE) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_BAD_STATE,
                    "the teacher is free: ask for a consultation directly");
        ok = FALSE;
    } else if (!open) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_CONFLICT, "the teacher's line is closed");
        ok = FALSE;
    } else if ((gint64)m->len >= max) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_FULL,
                    "the line is full (%" G_GINT64_FORMAT " waiting)", max);
        ok = FALSE;
    }
    if (ok) {
        StoreStmt *st =
            store_stmt(s, "SELECT (SELECT count(*) FROM line_entries WHERE student_id = ?1)"
                          " + (SELECT count(*) FROM consultations WHERE student_id = ?1"
                          "    AND status IN ('requested','live','interrupted'))");
        store_bind_int64(st, 1, student);
        if (store_scalar(s, st, 0) > 0) {
            g_set_error(error, STORE_ERROR, STORE_ERROR_EXISTS,
                        "already waiting in a line or in a consultation");
            ok = FALSE;
        }
    }
    if (ok) {
        gint64 t = store_now_ms();
        StoreStmt *st =
            store_stmt(s, "INSERT INTO line_entries (teacher_id, student_id, joined_at, seen_at)"
                          " VALUES (?1, ?2, ?3, ?3)");
        store_bind_int64(st, 1, teacher);
        store_bind_int64(st, 2, student);
        store_bind_int64(st, 3, t);
        ok = store_step_done(s, st, error, "line join");
        *position = (gint64)m->len + 1;
    }
    if (ok)
        ok = line_event(s, "line.joined", teacher, student, NULL, 0, error);
    return store_autocommit(s, began, ok, error);
}

/* Inside a transaction: STUDENT leaves TEACHER's line for REASON. */
static gboolean
line_leave(Store *s, gint64 teacher, gint64 student, const char *reason, GError **error)
{
    StoreStmt *st =
        store_stmt(s, "DELETE FROM line_entries WHERE teacher_id = ?1 AND student_id = ?2");
    store_bind_int64(st, 1, teacher);
    store_bind_int64(st, 2, student);
    if (!store_step_done(s, st, error, "line leave"))
        return FALSE;
    if (store_changes(s) == 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "not in this line");
        return FALSE;
    }
    return line_event(s, "line.left", teacher, student, reason, 0, error);
}

gboolean
store_line_leave(Store *s, gint64 teacher, gint64 student, const char *reason, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gboolean ok = line_leave(s, teacher, student, reason, error);
    return store_autocommit(s, began, ok, error);
}

static StoreLineEntry *
line_entry_from_row(StoreStmt *st)
{
    StoreLineEntry *e = g_new0(StoreLineEntry, 1);
    e->student_id = store_col_int64(st, 0);
    e->display_name = store_col_strdup(st, 1);
    e->joined_at = store_col_int64(st, 2);
    return e;
}

GPtrArray *
store_line_get(Store *s, gint64 teacher, gboolean *open, GError **error)
{
    gint64 v = line_open(s, teacher);
    if (v < 0) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT,
                    teacher);
        return NULL;
    }
    *open = v != 0;
    StoreStmt *st =
        store_stmt(s, "SELECT l.student_id, u.display_name, l.joined_at FROM line_entries l"
                      " JOIN users u ON u.id = l.student_id WHERE l.teacher_id = ?1"
                      " ORDER BY l.id");
    store_bind_int64(st, 1, teacher);
    return STORE_COLLECT(s, st, line_entry_from_row, store_line_entry_free, "line", error);
}

gboolean
store_line_set_open(Store *s, gint64 teacher, gboolean open, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    gint64 was = line_open(s, teacher);
    gboolean ok = was >= 0;
    if (!ok)
        g_set_error(error, STORE_ERROR, STORE_ERROR_NOT_FOUND, "no teacher %" G_GINT64_FORMAT,
                    teacher);
    if (ok && (was != 0) != open) {
        StoreStmt *st = store_stmt(s, "UPDATE teachers SET line_open = ?2 WHERE user_id = ?1");
        store_bind_int64(st, 1, teacher);
        store_bind_int64(st, 2, open);
        ok = store_step_done(s, st, error, "line open") &&
             line_event(s, open ? "line.opened" : "line.closed", teacher, 0, NULL, 0, error);
    }
    return store_autocommit(s, began, ok, error);
}

gint64
store_line_sweep(Store *s, GArray *students, gint64 now_ms, gint64 before_ms, GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return -1;
    /* Lines are short: every entry is read, and only those waiting get
     * written (seen here now, or gone). */
    StoreStmt *st = store_stmt(s, "SELECT teacher_id, student_id, seen_at FROM line_entries"
                                  " ORDER BY id");
    g_autoptr(GArray) rows = g_array_new(FALSE, FALSE, sizeof(gint64));
    while (store_step(st) == STORE_ROW) {
        gint64 row[3] = {store_col_int64(st, 0), store_col_int64(st, 1), store_col_int64(st, 2)};
        g_array_append_vals(rows, row, 3);
    }
    store_stmt_reset(st);
    gboolean ok = TRUE;
    gint64 n = 0;
    for (guint i = 0; ok && i + 2 < rows->len; i += 3) {
        gint64 teacher = g_array_index(rows, gint64, i),
               student = g_array_index(rows, gint64, i + 1);
        gboolean here = FALSE;
        for (guint k = 0; students && k < students->len && !here; k++)
            here = g_array_index(students, gint64, k) == student;
        gint64 seen = g_array_index(rows, gint64, i + 2);
        if (here && seen < now_ms - (now_ms - before_ms) / 2) { /* written twice a grace */
            st = store_stmt(s, "UPDATE line_entries SET seen_at = ?2 WHERE student_id = ?1");
            store_bind_int64(st, 1, student);
            store_bind_int64(st, 2, now_ms);
            ok = store_step_done(s, st, error, "line seen");
        } else if (!here && seen < before_ms) {
            ok = line_leave(s, teacher, student, "gone", error);
            n++;
        }
    }
    return store_autocommit(s, began, ok, error) ? n : -1;
}

gboolean
store_consultation_transition(Store *s, gint64 id, StoreConsultStatus to, const char *reason,
                              GError **error)
{
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    g_autoptr(StoreConsultation) c = store_consultation_get(s, id, error);
    gboolean ok = c != NULL;
    if (ok && !consult_legal(c->status, to)) {
        g_set_error(error, STORE_ERROR, STORE_ERROR_BAD_STATE,
                    "consultation %" G_GINT64_FORMAT " is %s; it cannot become %s", id,
                    store_consult_status_name(c->status), store_consult_status_name(to));
        ok = FALSE;
    }
    if (ok) {
        gint64 now = store_now_ms();
        StoreStmt *st =
            store_stmt(s, "UPDATE consultations SET status = ?2,"
                          " accepted_at = CASE WHEN ?2 = 'live' AND accepted_at = 0 THEN ?3"
                          "               ELSE accepted_at END,"
                          " ended_at = CASE WHEN ?4 <> 0 THEN ?3 ELSE ended_at END,"
                          " end_reason = CASE WHEN ?4 <> 0 THEN ?5 ELSE end_reason END"
                          " WHERE id = ?1");
        store_bind_int64(st, 1, id);
        store_bind_text(st, 2, store_consult_status_name(to));
        store_bind_int64(st, 3, now);
        store_bind_int64(st, 4, !consult_open(to));
        store_bind_text(st, 5, reason ? reason : "");
        ok = store_step_done(s, st, error, "consultation transition");
    }
    if (ok) {
        g_autofree char *payload = consult_payload(id, c->teacher_id, c->student_id, to, reason);
        ok = store_event_append(s, consult_event(c->status, to), c->teacher_id, c->student_id, id,
                                payload, error);
    }
    if (ok && !consult_open(to))
        ok = teacher_move(s, c->teacher_id, STORE_PRESENCE_ONLINE, id, error) &&
             line_offer(s, c->teacher_id, error);
    if (ok)
        check_teacher_consistent(s, c->teacher_id);
    return store_autocommit(s, began, ok, error);
}

guint
store_consultation_screens(Store *s, gint64 id)
{
    guint roles = 0;
    for (int r = 0; r < CONSULTD_N_ROLES; r++) {
        StoreStmt *st = store_stmt2(
            s,
            "SELECT type = 'screen.started' FROM events WHERE consultation_id = ?1"
            " AND type IN ('screen.started','screen.stopped')"
            " AND json_extract(payload, '$.role') = ?2 ORDER BY seq DESC LIMIT 1",
            "SELECT (type = 'screen.started')::int FROM events WHERE consultation_id = $1"
            " AND type IN ('screen.started','screen.stopped')"
            " AND payload::jsonb ->> 'role' = $2 ORDER BY seq DESC LIMIT 1");
        store_bind_int64(st, 1, id);
        store_bind_text(st, 2, consultd_role_name((ConsultdRole)r));
        if (store_scalar(s, st, 0) == 1)
            roles |= 1u << r;
    }
    return roles;
}

gboolean
store_participant_event(Store *s, gint64 id, ConsultdRole role, ConsultdStream stream,
                        gboolean joined, const char *reason, GError **error)
{
    g_return_val_if_fail(role < CONSULTD_N_ROLES && stream < CONSULTD_N_STREAMS, FALSE);
    const char *type = stream == CONSULTD_STREAM_SCREEN
                           ? (joined ? "screen.started" : "screen.stopped")
                           : (joined ? "participant.joined" : "participant.left");
    gboolean began;
    if (!store_autobegin(s, &began, error))
        return FALSE;
    g_autoptr(StoreConsultation) c = store_consultation_get(s, id, error);
    gboolean ok = c != NULL;
    if (ok) {
        g_assert(!reason || strpbrk(reason, "\"\\") == NULL);
        g_autofree char *payload = g_strdup_printf(
            "{\"consultation_id\":%" G_GINT64_FORMAT ",\"teacher_id\":%" G_GINT64_FORMAT
            ",\"student_id\":%" G_GINT64_FORMAT ",\"role\":\"%s\",\"stream\":\"%s\","
            "\"reason\":\"%s\"}",
            id, c->teacher_id, c->student_id, consultd_role_name(role),
            consultd_stream_name(stream), reason ? reason : "");
        ok = store_event_append(s, type, c->teacher_id, c->student_id, id, payload, error);
    }
    return store_autocommit(s, began, ok, error);
}
